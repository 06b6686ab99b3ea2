"""The pitch teacher of harmonic decoders: F0 and voicing of the training audio, per decoder STFT frame.

WORLD's DIO with StoneMask refinement (``pyworld``), run on the CPU at training time only: the decoder learns to
predict F0 from the codes, and nothing of the teacher is stored in the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from codec12._optional import require


@dataclass
class PitchTarget:
    """f0: [B, C, frames] Hz (0 where unvoiced). voiced: [B, C, frames] bool. known: [B, C, frames] bool, frames
    whose window centre lies inside the audio (the others have no target)."""

    f0: torch.Tensor
    voiced: torch.Tensor
    known: torch.Tensor


class PitchTeacher:
    """``teacher(wav) -> PitchTarget``: wav [B, C, T] at ``sample_rate``, frames of ``hop_length`` samples whose
    window of ``n_fft`` samples starts at the frame (the inverse-STFT decoder's causal frames), so frame t's F0 is
    the one at sample ``t * hop_length + n_fft / 2``."""

    def __init__(self, sample_rate: int, hop_length: int, n_fft: int, f0_min: float, f0_max: float) -> None:
        self._world = require("pyworld", "train", "the harmonic decoder's pitch teacher")
        self.sample_rate, self.hop_length, self.n_fft = sample_rate, hop_length, n_fft
        self.f0_min, self.f0_max = float(f0_min), float(f0_max)
        if n_fft % (2 * hop_length):
            raise ValueError(f"pitch teacher: n_fft / 2 ({n_fft // 2}) must be a whole number of hops ({hop_length})")
        self.offset = n_fft // (2 * hop_length)

    def track(self, x: np.ndarray) -> np.ndarray:
        """One signal [T] -> F0 [T // hop_length + 1] Hz at samples 0, hop, 2 hop, ... (0 = unvoiced)."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        period = 1000.0 * self.hop_length / self.sample_rate
        f0, times = self._world.dio(x, self.sample_rate, f0_floor=self.f0_min, f0_ceil=self.f0_max,
                                    frame_period=period)
        f0 = self._world.stonemask(x, f0, times, self.sample_rate)
        return np.where((f0 >= self.f0_min) & (f0 <= self.f0_max), f0, 0.0)

    def __call__(self, wav: torch.Tensor) -> PitchTarget:
        b, c, t = wav.shape
        frames = t // self.hop_length
        f0 = np.zeros((b, c, frames), dtype=np.float32)
        known = np.zeros((b, c, frames), dtype=bool)
        signals = wav.detach().float().cpu().numpy()
        for i in range(b):
            for j in range(c):
                track = self.track(signals[i, j])[self.offset: frames]  # centres inside the audio
                f0[i, j, : track.shape[0]] = track
                known[i, j, : track.shape[0]] = True
        f0_t = torch.from_numpy(f0).to(wav.device)
        return PitchTarget(f0_t, f0_t > 0, torch.from_numpy(known).to(wav.device))
