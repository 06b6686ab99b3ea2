"""Causal SEANet decoder: features [B, dimension, T] -> waveform [B, C, T * prod(ratios)]."""

from __future__ import annotations

import torch
from torch import nn

from codec12.config import SEANetConfig
from codec12.nn.conv import StreamingConv1d, StreamingConvTranspose1d
from codec12.nn.seanet import ResnetBlock


class SEANetDecoder(nn.Module):
    """Mirror of :class:`~codec12.encoder.SEANetEncoder`: upsamples by ``ratios`` in order, halving channels."""

    def __init__(self, config: SEANetConfig) -> None:
        super().__init__()
        c = config
        width = c.n_filters * 2 ** len(c.ratios)
        layers: list[nn.Module] = [StreamingConv1d(c.dimension, width, c.kernel_size, pad_mode=c.pad_mode,
                                                   norm=c.norm)]
        for ratio in c.ratios:
            layers += [nn.ELU(), StreamingConvTranspose1d(width, width // 2, 2 * ratio, stride=ratio, norm=c.norm)]
            width //= 2
            for j in range(c.n_residual_layers):
                layers.append(ResnetBlock(width, c.residual_kernel_size, c.dilation_base ** j, c.compress,
                                          c.pad_mode, c.norm))
        layers += [nn.ELU(), StreamingConv1d(width, c.channels, c.last_kernel_size, pad_mode=c.pad_mode,
                                             norm=c.norm)]
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x
