"""Weighted sum of named losses, with optional per-loss weight schedules.

The names are the ones the trainer logs (``l1``, ``stft``, ``mel``, ``commitment``, ``adv_msstft``,
``feat_msstft``, ``adv_mpd``, ``feat_mpd``, ``distill_cosine``, ``distill_ctc``...), so a recipe's
``losses.weights`` reads like the TensorBoard scalar list.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True, kw_only=True)
class WeightSchedule:
    """Moves a loss weight from its recipe value to ``end_weight`` between ``start_step`` and
    ``start_step + steps`` (``linear`` or ``cosine``), then holds it (Voxtral's decaying reconstruction)."""

    end_weight: float = 0.0
    steps: int = 1
    start_step: int = 0
    shape: str = "linear"

    def __post_init__(self):
        if self.steps < 1 or self.start_step < 0:
            raise ValueError(f"weight schedule: steps must be >= 1 and start_step >= 0, got {self.steps}, "
                             f"{self.start_step}")
        if self.shape not in ("linear", "cosine"):
            raise ValueError(f"weight schedule: shape must be 'linear' or 'cosine', got {self.shape!r}")

    def __call__(self, weight: float, step: int) -> float:
        progress = min(max(step - self.start_step, 0) / self.steps, 1.0)
        if self.shape == "cosine":
            progress = 0.5 * (1 - math.cos(math.pi * progress))
        return weight + (self.end_weight - weight) * progress


class Balancer(nn.Module):
    """``forward(losses, step) -> total``: sum of ``weight(name, step) * loss`` over the losses given.

    A loss without a weight is an error (a typo in the recipe would otherwise silently drop it); a weight of
    0 leaves the loss out of the total (it can still be logged).
    """

    def __init__(self, weights: Mapping[str, float], schedules: Mapping[str, WeightSchedule] | None = None) -> None:
        super().__init__()
        self.weights = {str(k): float(v) for k, v in weights.items()}
        self.schedules = dict(schedules or {})
        unknown = sorted(set(self.schedules) - set(self.weights))
        if unknown:
            raise ValueError(f"losses.schedules names {unknown}, which have no entry in losses.weights")

    def weight(self, name: str, step: int) -> float:
        if name not in self.weights:
            raise ValueError(f"loss {name!r} has no weight in losses.weights (weighted: {sorted(self.weights)})")
        w = self.weights[name]
        schedule = self.schedules.get(name)
        return schedule(w, step) if schedule is not None else w

    def forward(self, losses: Mapping[str, torch.Tensor], step: int) -> torch.Tensor:
        total = None
        for name, value in losses.items():
            w = self.weight(name, step)
            if w == 0.0:
                continue
            term = w * value.float()
            total = term if total is None else total + term
        if total is None:
            raise ValueError(f"no loss has a non-zero weight at step {step} (losses: {sorted(losses)})")
        return total
