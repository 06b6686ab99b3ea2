"""Causal SEANet encoder: waveform [B, C, T] -> features [B, dimension, T / prod(ratios)]."""

from __future__ import annotations

import torch
from torch import nn

from codec12.config import SEANetConfig
from codec12.nn.conv import StreamingConv1d
from codec12.nn.seanet import ResnetBlock


class SEANetEncoder(nn.Module):
    """Downsamples by ``ratios`` in reverse order (4, 5, 6, 8 for Mimi), doubling channels at each stride."""

    def __init__(self, config: SEANetConfig) -> None:
        super().__init__()
        c = config
        layers: list[nn.Module] = [StreamingConv1d(c.channels, c.n_filters, c.kernel_size, pad_mode=c.pad_mode,
                                                   norm=c.norm)]
        width = c.n_filters
        for ratio in reversed(c.ratios):
            for j in range(c.n_residual_layers):
                layers.append(ResnetBlock(width, c.residual_kernel_size, c.dilation_base ** j, c.compress,
                                          c.pad_mode, c.norm))
            layers += [nn.ELU(), StreamingConv1d(width, width * 2, 2 * ratio, stride=ratio, pad_mode=c.pad_mode,
                                                 norm=c.norm)]
            width *= 2
        layers += [nn.ELU(), StreamingConv1d(width, c.dimension, c.last_kernel_size, pad_mode=c.pad_mode,
                                             norm=c.norm)]
        self.layers = nn.ModuleList(layers)
        self.hop_length = c.hop_length

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x
