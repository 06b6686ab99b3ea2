"""Quality metrics, all computed on mono float32 audio at 16 kHz.

Core metrics (``pesq``, ``pystoi``, torch) always run. Optional ones need a package that is not a codec12
dependency; when it is missing the metric is skipped with a message saying what to install. A metric that
cannot score one clip (PESQ on silence, STOI on under ~0.4 s of speech) raises :class:`MetricError`; the
harness records the reason and counts the clip as not covered instead of averaging in a placeholder value.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from codec12._optional import install_hint, require

SAMPLE_RATE = 16000


class MetricError(Exception):
    """This metric cannot score this clip (too short, silent...): the clip is counted as not covered."""


class MetricUnavailable(Exception):
    """The metric's package is not installed: the metric is skipped for the whole run."""


@dataclass(frozen=True, kw_only=True)
class Metric:
    """One metric. ``load()`` returns ``score(reference [T], degraded [T], transcript | None) -> float``."""

    name: str
    label: str
    higher_is_better: bool
    optional: bool
    load: Callable[[], Callable[[np.ndarray, np.ndarray, str | None], float]]
    needs_transcript: bool = False


# ---- core metrics
def _load_pesq(mode: str):
    pesq_module = require("pesq", "eval", "the PESQ metric")
    PesqError, pesq = pesq_module.PesqError, pesq_module.pesq

    def score(ref: np.ndarray, deg: np.ndarray, transcript: str | None) -> float:
        try:
            return float(pesq(SAMPLE_RATE, ref, deg, mode))
        except PesqError as e:
            raise MetricError(f"PESQ: {type(e).__name__}: {e}") from e

    return score


def _load_stoi(extended: bool):
    stoi = require("pystoi", "eval", "the STOI metric").stoi

    def score(ref: np.ndarray, deg: np.ndarray, transcript: str | None) -> float:
        with warnings.catch_warnings():
            # pystoi warns and returns 1e-5 when fewer than 30 non-silent frames remain: that is "no score".
            warnings.simplefilter("error", RuntimeWarning)
            try:
                return float(stoi(ref, deg, SAMPLE_RATE, extended=extended))
            except RuntimeWarning as e:
                raise MetricError(f"{'ESTOI' if extended else 'STOI'}: {e}") from e

    return score


_MEL: dict[str, torch.nn.Module] = {}


def _load_mel_distance():
    import torchaudio

    if "mel" not in _MEL:
        _MEL["mel"] = torchaudio.transforms.MelSpectrogram(SAMPLE_RATE, n_fft=1024, hop_length=256, n_mels=80,
                                                           power=1.0)
    mel = _MEL["mel"]

    def score(ref: np.ndarray, deg: np.ndarray, transcript: str | None) -> float:
        with torch.no_grad():
            a = torch.log10(mel(torch.from_numpy(ref)).clamp_min(1e-5))
            b = torch.log10(mel(torch.from_numpy(deg)).clamp_min(1e-5))
        return float((a - b).abs().mean())

    return score


def si_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Scale-invariant SDR in dB (zero-mean signals); capped at 100 dB so identical signals stay finite."""
    ref = np.asarray(reference, np.float64) - np.mean(reference)
    est = np.asarray(estimate, np.float64) - np.mean(estimate)
    energy = float(ref @ ref)
    if energy <= 1e-12:
        raise MetricError("SI-SDR: the reference is silent")
    target = (est @ ref) / energy * ref
    noise = est - target
    return float(min(100.0, 10 * np.log10(max(float(target @ target), 1e-20) / max(float(noise @ noise), 1e-20))))


def _load_si_sdr():
    return lambda ref, deg, transcript: si_sdr(ref, deg)


# ---- optional metrics
def _load_speaker_similarity():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # webrtcvad imports the deprecated pkg_resources
            from resemblyzer import VoiceEncoder
    except ImportError as e:
        raise MetricUnavailable(f"resemblyzer is not installed ({e}); {install_hint('metrics')}") from e
    encoder = VoiceEncoder("cpu", verbose=False)

    def score(ref: np.ndarray, deg: np.ndarray, transcript: str | None) -> float:
        a, b = encoder.embed_utterance(ref), encoder.embed_utterance(deg)
        return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))

    return score


def _load_dnsmos():
    """DNSMOS P.835 overall score (the model speechmos ships), without speechmos' P.808 pass and librosa
    features that triple its cost: 9.01 s windows, 1 s hop, short clips repeated to one window."""
    try:
        import os

        import onnxruntime as ort
        import speechmos
    except ImportError as e:
        raise MetricUnavailable(f"speechmos is not installed ({e}); {install_hint('metrics')}") from e
    model = os.path.join(os.path.dirname(speechmos.__file__), "dnsmos_models", "sig_bak_ovr.onnx")
    if not os.path.isfile(model):
        raise MetricUnavailable(f"speechmos ships no DNSMOS model at {model}")
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    window = int(9.01 * SAMPLE_RATE)
    overall = np.poly1d([-0.06766283, 1.11546468, 0.04602535])  # DNSMOS' calibration of the raw OVRL output

    def score(ref: np.ndarray, deg: np.ndarray, transcript: str | None) -> float:
        x = np.asarray(deg, np.float32)
        peak = float(np.abs(x).max())
        if peak == 0.0:
            raise MetricError("DNSMOS: silent output")
        if peak > 1.0:
            x = x / peak
        x = np.tile(x, -(-window // len(x))) if len(x) < window else x
        starts = range(0, len(x) - window + 1, SAMPLE_RATE)
        raw = [session.run(None, {name: x[None, s:s + window]})[0][0][2] for s in starts]
        return float(np.mean(overall(np.asarray(raw))))

    return score


def _load_wer():
    try:
        import jiwer
        from pocketsphinx import Decoder
    except ImportError as e:
        raise MetricUnavailable(f"pocketsphinx or jiwer is not installed ({e}); {install_hint('metrics')}") from e
    decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")

    def normalize(text: str) -> str:
        return " ".join("".join(c if c.isalnum() or c == "'" else " " for c in text.lower()).split())

    def score(ref: np.ndarray, deg: np.ndarray, transcript: str | None) -> float:
        if not transcript or not normalize(transcript):
            raise MetricError("WER: no transcript for this file")
        pcm = (np.clip(deg, -1, 1) * 32767).astype("<i2").tobytes()
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        return float(jiwer.wer(normalize(transcript), normalize(hyp.hypstr if hyp else "") or "<empty>"))

    return score


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric(name="pesq_wb", label="PESQ-WB", higher_is_better=True, optional=False, load=lambda: _load_pesq("wb")),
    Metric(name="pesq_nb", label="PESQ-NB", higher_is_better=True, optional=False, load=lambda: _load_pesq("nb")),
    Metric(name="stoi", label="STOI", higher_is_better=True, optional=False, load=lambda: _load_stoi(False)),
    Metric(name="estoi", label="ESTOI", higher_is_better=True, optional=False, load=lambda: _load_stoi(True)),
    Metric(name="mel_distance", label="mel dist", higher_is_better=False, optional=False, load=_load_mel_distance),
    Metric(name="si_sdr", label="SI-SDR dB", higher_is_better=True, optional=False, load=_load_si_sdr),
    Metric(name="speaker_similarity", label="SPK-SIM", higher_is_better=True, optional=True,
           load=_load_speaker_similarity),
    Metric(name="dnsmos", label="DNSMOS", higher_is_better=True, optional=True, load=_load_dnsmos),
    Metric(name="wer", label="WER", higher_is_better=False, optional=True, load=_load_wer, needs_transcript=True),
)}
CORE_METRICS = tuple(n for n, m in METRICS.items() if not m.optional)


def parse_metrics(spec: str) -> tuple[str, ...]:
    """``all``, ``core`` or a comma list of names (groups may be mixed with names) -> metric names in order."""
    names: list[str] = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        group = list(METRICS) if item == "all" else list(CORE_METRICS) if item == "core" else [item]
        for name in group:
            if name not in METRICS:
                raise ValueError(f"unknown metric {name!r}; known: all, core, {', '.join(METRICS)}")
            if name not in names:
                names.append(name)
    if not names:
        raise ValueError("no metrics selected")
    return tuple(names)
