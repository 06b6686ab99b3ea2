"""Voxtral TTS's codec (Mistral) in codec12: its exact topology as the ``c12-voxtral-24k`` preset, a streaming
ALiBi transformer, its quantizer, and an adapter to the reference implementation for parity checks.

Checkpoints convert with :mod:`codec12.convert.voxtral`; the missing encoder trains with the
``voxtral-encoder`` recipe (docs/voxtral.md).
"""

from codec12._lazy import lazy_exports

_EXPORTS = {
    "AlibiTransformer": "codec12.voxtral.transformer",
    "MISSING_ENCODER": "codec12.voxtral.model",
    "VoxtralFSQ": "codec12.voxtral.quantizer",
    "VoxtralQuantizer": "codec12.voxtral.quantizer",
    "voxtral_parts": "codec12.voxtral.model",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
