"""Typed quantizer results."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class QuantizerOutput:
    """Result of a quantizer forward.

    quantized: [B, D, T'] what the decoder receives (quantized, dithered or passed through unquantized).
    codes: int64 [B, K', T']; row 0 semantic, then the acoustic rows that were used (K' <= K under level
        dropout).
    semantic: [B, D_s, T'] output of the semantic branch, the target side of distillation losses.
    losses: scalar losses by name (e.g. ``commitment``), unweighted.
    """

    quantized: torch.Tensor
    codes: torch.Tensor
    semantic: torch.Tensor
    losses: dict[str, torch.Tensor] = field(default_factory=dict)
