"""Losses on a harmonic decoder's pitch predictions against a pitch teacher (:mod:`codec12.distill.pitch`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class F0Loss(nn.Module):
    """Cross-entropy of an F0 classifier against the teacher's F0, over the frames the teacher calls voiced (0 when
    there are none). The target is a Gaussian over the classes' log-F0 centres ``grid`` (log2 Hz), ``sigma_cents``
    wide around the teacher's F0, as CREPE: neighbouring classes are near misses, an octave is not.

    ``forward(logits, target, voiced)``: logits [B, C, bins, frames]; target [B, C, frames] Hz; voiced bool."""

    def __init__(self, grid: torch.Tensor, sigma_cents: float = 25.0) -> None:
        super().__init__()
        self.register_buffer("grid", grid.float(), persistent=False)
        self.sigma = sigma_cents / 1200.0

    def forward(self, logits: torch.Tensor, target: torch.Tensor, voiced: torch.Tensor) -> torch.Tensor:
        if logits.dim() != 4 or logits.shape[2] != self.grid.numel() or logits.shape[:2] + logits.shape[3:] \
                != target.shape or voiced.shape != target.shape:
            raise ValueError(f"f0 loss: logits must be [B, C, {self.grid.numel()}, frames] and target and voiced "
                             f"[B, C, frames]; got {tuple(logits.shape)}, {tuple(target.shape)}, "
                             f"{tuple(voiced.shape)}")
        log_f0 = torch.log2(target.float().clamp_min(1.0))[:, :, None]  # [B, C, 1, frames]
        weights = torch.exp(-0.5 * ((self.grid[:, None] - log_f0) / self.sigma) ** 2)
        weights = weights / weights.sum(2, keepdim=True).clamp_min(1e-12)
        ce = -(weights * torch.log_softmax(logits.float(), dim=2)).sum(2)  # [B, C, frames]
        return torch.where(voiced, ce, torch.zeros_like(ce)).sum() / voiced.sum().clamp_min(1)


def f0_error(pred: torch.Tensor, target: torch.Tensor, voiced: torch.Tensor) -> torch.Tensor:
    """Mean absolute F0 error in octaves, ``|log2 pred - log2 target|``, over the voiced frames (a metric)."""
    err = (torch.log2(pred.float().clamp_min(1.0)) - torch.log2(target.float().clamp_min(1.0))).abs()
    return torch.where(voiced, err, torch.zeros_like(err)).sum() / voiced.sum().clamp_min(1)


class VoicingLoss(nn.Module):
    """Binary cross-entropy of voicing logits against the teacher's voiced frames, over the frames it knows.
    ``forward(logits, voiced, known)``: [B, C, frames]."""

    def forward(self, logits: torch.Tensor, voiced: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        if logits.shape != voiced.shape or known.shape != voiced.shape:
            raise ValueError(f"voicing loss: shapes differ: {tuple(logits.shape)}, {tuple(voiced.shape)}, "
                             f"{tuple(known.shape)}")
        bce = F.binary_cross_entropy_with_logits(logits.float(), voiced.float(), reduction="none")
        return torch.where(known, bce, torch.zeros_like(bce)).sum() / known.sum().clamp_min(1)
