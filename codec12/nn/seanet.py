"""Causal SEANet blocks shared by the encoder and the decoder."""

from __future__ import annotations

import torch
from torch import nn

from codec12.nn.conv import StreamingConv1d


class ResnetBlock(nn.Module):
    """ELU -> conv(k, dilation) -> ELU -> conv(1), with an identity skip; the hidden width is dim // compress."""

    def __init__(self, dim: int, kernel_size: int, dilation: int, compress: int, pad_mode: str, norm: str) -> None:
        super().__init__()
        hidden = dim // compress
        self.block = nn.ModuleList([
            nn.ELU(),
            StreamingConv1d(dim, hidden, kernel_size, dilation=dilation, pad_mode=pad_mode, norm=norm),
            nn.ELU(),
            StreamingConv1d(hidden, dim, 1, pad_mode=pad_mode, norm=norm),
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for layer in self.block:
            y = layer(y)
        return x + y
