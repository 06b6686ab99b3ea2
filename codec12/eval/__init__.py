"""Evaluation: round-trip audio through codec12 models and classical baselines, score it, write a report."""

from codec12._lazy import lazy_exports

# Imported eagerly (numpy only): the function ``align`` shares its name with the submodule ``align``, which
# would otherwise shadow it once imported.
from codec12.eval.align import align as align
from codec12.eval.align import estimate_delay as estimate_delay

_EXPORTS = {
    "BASELINES": "codec12.eval.systems",
    "CORE_METRICS": "codec12.eval.metrics",
    "Codec2System": "codec12.eval.systems",
    "EvalResult": "codec12.eval.harness",
    "FunctionSystem": "codec12.eval.systems",
    "METRICS": "codec12.eval.metrics",
    "MetricError": "codec12.eval.metrics",
    "MetricUnavailable": "codec12.eval.metrics",
    "ModelSystem": "codec12.eval.systems",
    "OpusSystem": "codec12.eval.systems",
    "RoundTrip": "codec12.eval.systems",
    "System": "codec12.eval.systems",
    "SystemUnavailable": "codec12.eval.systems",
    "build_systems": "codec12.eval.harness",
    "evaluate": "codec12.eval.harness",
    "list_audio_files": "codec12.eval.harness",
    "make_baseline": "codec12.eval.systems",
    "parse_metrics": "codec12.eval.metrics",
    "read_transcripts": "codec12.eval.harness",
    "si_sdr": "codec12.eval.metrics",
}
__all__ = sorted([*_EXPORTS, "align", "estimate_delay"])
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
