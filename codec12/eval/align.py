"""Delay compensation: classical codecs shift their output (codec2's analysis window, resampler filters), and
PESQ/STOI/SI-SDR punish a shift far more than any codec artefact. The decoded signal is aligned to the
reference by the lag that maximises their cross-correlation before it is scored."""

from __future__ import annotations

import numpy as np


def estimate_delay(reference: np.ndarray, degraded: np.ndarray, max_shift: int) -> int:
    """Samples by which ``degraded`` [T2] lags ``reference`` [T1] (negative: it leads), within ``±max_shift``.

    FFT cross-correlation, so it costs O(T log T) for files of any length.
    """
    ref = np.asarray(reference, dtype=np.float64).ravel()
    deg = np.asarray(degraded, dtype=np.float64).ravel()
    if ref.size == 0 or deg.size == 0:
        raise ValueError("cannot align empty signals")
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    n = 1 << int(np.ceil(np.log2(ref.size + deg.size)))
    xcorr = np.fft.irfft(np.fft.rfft(deg, n) * np.conj(np.fft.rfft(ref, n)), n)
    # xcorr[k] = sum_t deg[t + k] * ref[t]; negative lags wrap to the end of the buffer.
    lags = np.arange(-max_shift, max_shift + 1)
    lags = lags[(lags < deg.size) & (lags > -ref.size)]
    return int(lags[np.argmax(xcorr[lags % n])])


def align(reference: np.ndarray, degraded: np.ndarray, max_shift: int) -> tuple[np.ndarray, int]:
    """Shift ``degraded`` onto ``reference`` and cut or zero-pad it to the reference's length.

    Returns (aligned [T1], delay in samples as given by :func:`estimate_delay`).
    """
    delay = estimate_delay(reference, degraded, max_shift)
    deg = np.asarray(degraded, dtype=np.float32).ravel()
    deg = deg[delay:] if delay >= 0 else np.concatenate([np.zeros(-delay, np.float32), deg])
    return fit_length(deg, len(reference)), delay


def fit_length(x: np.ndarray, length: int) -> np.ndarray:
    """Cut or zero-pad [T] to ``length`` samples."""
    x = np.asarray(x, dtype=np.float32).ravel()[:length]
    return np.pad(x, (0, length - x.size)) if x.size < length else x
