"""What the speed benchmarks share: speech-like test audio and best-of-N timing (numpy and the standard library
only, so a process that measures onnxruntime alone does not load torch)."""

from __future__ import annotations

import time

import numpy as np


def speech_like(seconds: float, sample_rate: int, channels: int) -> np.ndarray:
    """Speech-like test audio float32 [1, C, T]: a gliding 120 Hz harmonic tone in faint noise (speed does not
    depend on what is said)."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    phase = 2 * np.pi * np.cumsum(120 + 40 * np.sin(2 * np.pi * 0.7 * t)) / sample_rate
    x = 0.15 * sum(np.sin(k * phase) / k for k in range(1, 8)) + 0.01 * rng.standard_normal(t.shape)
    return np.tile(x.astype(np.float32), (1, channels, 1))


def best_of(fn, repeats: int) -> float:
    """The shortest of ``repeats`` wall-clock runs of ``fn()``, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)
