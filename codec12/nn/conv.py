"""Causal convolutions that stream: same forward offline and chunk by chunk."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations, parametrize

from codec12.nn.streaming import StreamingModule


def apply_norm(module: nn.Module, norm: str) -> nn.Module:
    if norm == "weight_norm":
        return parametrizations.weight_norm(module)
    if norm != "none":
        raise ValueError(f"unknown norm {norm!r}")
    return module


def fold_norm(module: nn.Module) -> None:
    """Fold weight norm into plain weights (for releases and export)."""
    if parametrize.is_parametrized(module, "weight"):
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)


@dataclass
class ConvState:
    previous: torch.Tensor  # [B, C_in, kernel_eff - stride]: input tail the next chunk needs
    first: torch.Tensor  # [B] bool: no input seen yet (replicate / reflect padding use the first samples)


class StreamingConv1d(StreamingModule):
    """Causal Conv1d. Offline: left padding ``kernel_eff - stride`` and right padding so the last window is
    full. Streaming: input chunks must be multiples of ``stride``; the left context comes from the state.

    ``pad_mode`` ``reflect`` mirrors the first ``kernel_eff - stride`` steps after step 0 (Voxtral's patch
    convs): offline the input must be longer than that, and so must the first streamed chunk."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1, groups: int = 1, bias: bool = True, pad_mode: str = "constant",
                 norm: str = "none") -> None:
        super().__init__()
        if pad_mode not in ("constant", "replicate", "reflect"):
            raise ValueError(f"pad_mode must be 'constant', 'replicate' or 'reflect', got {pad_mode!r}")
        self.conv = apply_norm(nn.Conv1d(in_channels, out_channels, kernel_size, stride, dilation=dilation,
                                         groups=groups, bias=bias), norm)
        self.stride = stride
        self.pad_mode = pad_mode
        self.padding_total = (kernel_size - 1) * dilation + 1 - stride
        if self.padding_total < 0:
            raise ValueError(f"kernel_size {kernel_size} (dilation {dilation}) is smaller than stride {stride}")

    def init_state(self, batch_size, device, dtype):
        if self.padding_total <= 0:
            return None
        prev = torch.zeros(batch_size, self.conv.in_channels, self.padding_total, device=device, dtype=dtype)
        return ConvState(prev, torch.ones(batch_size, dtype=torch.bool, device=device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C_in, T] -> [B, C_out, ceil(T / stride)]."""
        state = self._state
        if state is None:
            extra = -x.shape[-1] % self.stride  # so that the last window is full
            return self.conv(F.pad(x, (self.padding_total, extra), mode=self.pad_mode))
        if x.shape[-1] % self.stride:
            raise ValueError(f"streaming chunk of {x.shape[-1]} steps is not a multiple of stride {self.stride}")
        if isinstance(state, ConvState):
            prev = state.previous
            if self.pad_mode == "replicate":
                prev = torch.where(state.first[:, None, None], x[..., :1].expand_as(prev), prev)
            elif self.pad_mode == "reflect":
                start = x[..., 1:self.padding_total + 1].flip(-1)
                prev = torch.where(state.first[:, None, None], start, prev)
            x = torch.cat([prev, x], dim=-1)
            # A copy: a view would keep this chunk's whole input alive until the next chunk, in every layer.
            state.previous = x[..., x.shape[-1] - self.padding_total:].clone()
            state.first = torch.zeros_like(state.first)
        return self.conv(x)


@dataclass
class ConvTrState:
    partial: torch.Tensor  # [B, C_out, kernel - stride]: overlap-add tail, bias removed


class OverlapAdd(StreamingModule):
    """Causal transposed convolution's streaming contract: T steps in -> T * stride samples out; offline the
    ``padding_total`` samples past the last step are dropped, streaming they are kept in the state and added to
    the next chunk. Subclasses set ``out_channels``, ``stride`` and ``padding_total`` and call :meth:`_emit`."""

    out_channels: int
    stride: int
    padding_total: int

    def init_state(self, batch_size, device, dtype):
        if self.padding_total <= 0:
            return None
        return ConvTrState(torch.zeros(batch_size, self.out_channels, self.padding_total, device=device,
                                       dtype=dtype))

    def _emit(self, y: torch.Tensor, steps: int, bias: torch.Tensor | None = None) -> torch.Tensor:
        """y: the full transposed-conv output of ``steps`` input steps -> the samples this chunk emits."""
        n = steps * self.stride
        state = self._state
        if not isinstance(state, ConvTrState):
            return y[..., :n]
        p = self.padding_total
        y = torch.cat([y[..., :p] + state.partial, y[..., p:]], dim=-1)
        tail = y[..., n:].clone()  # not a view, which would keep the whole output alive
        state.partial = tail if bias is None else tail - bias[:, None]  # the next chunk adds its own bias
        return y[..., :n]


class StreamingConvTranspose1d(OverlapAdd):
    """Causal ConvTranspose1d: output trimmed on the right by ``kernel - stride`` (offline), or that tail kept
    in the state and added to the next chunk (streaming). T steps in -> T * stride out."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1, bias: bool = True, norm: str = "none") -> None:
        super().__init__()
        self.conv = apply_norm(nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride, groups=groups,
                                                  bias=bias), norm)
        self.out_channels = out_channels
        self.stride = stride
        self.padding_total = kernel_size - stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._emit(self.conv(x), x.shape[-1], self.conv.bias)
