"""Finite scalar quantization, one code row per dimension, on vector-quantize-pytorch's FSQ.

Each of ``num_dims`` dimensions is tanh-bounded to ``levels`` (odd) values. Training can dither: per sequence,
quantized / bounded + uniform noise of one step / bounded and unquantized, so that the decoder also accepts
continuous latents.

Training quantizes through vector-quantize-pytorch's ``FSQ`` (straight-through rounding); ``encode``/``decode``
compute the same codes and values in plain tensor operations that trace to ONNX, with the library's bound
(:data:`BOUND_MARGIN`). tests/test_quantizers.py checks them against the library's output.
"""

from __future__ import annotations

import torch
from torch import nn
from vector_quantize_pytorch import FSQ

from codec12.quantizers.vq import _projection

# vector-quantize-pytorch's FSQ bounds z to tanh(z) * (L - 1) * (1 + margin) / 2 before rounding (the default
# ``eps`` of ``FSQ.bound``): a level's edge then sits a little inside tanh's range, so the outer levels are reached.
BOUND_MARGIN = 1e-3


def half_range(levels: int) -> float:
    """The bound's scale for odd ``levels``, ``(levels - 1) * (1 + BOUND_MARGIN) / 2``, in float32 as
    vector-quantize-pytorch computes it (from an int32 tensor of levels), so the rounding matches it."""
    return float((torch.tensor(levels, dtype=torch.int32, device="cpu") - 1) * (1 + BOUND_MARGIN) / 2)


class ScalarQuantizer(nn.Module):
    def __init__(self, dim: int, num_dims: int, levels: int, dither: tuple[float, float, float]) -> None:
        super().__init__()
        if levels % 2 == 0 or levels < 3:
            raise ValueError(f"FSQ levels must be odd and >= 3, got {levels}")
        self.dim = dim
        self.num_dims = num_dims
        self.levels = levels
        self.codebook_size = levels
        self.half_range = half_range(levels)
        self.dither = dither
        self.input_proj = _projection(dim, num_dims)
        self.output_proj = _projection(num_dims, dim)
        # levels=[L] with num_codebooks=D: D rows of L levels, without an L**D implicit codebook. FSQ reads a size
        # back with .item() while it is built, which the meta device (a codec built there to check a config
        # against a weights file) cannot do: its few buffers, none of them saved, are built on the CPU then.
        device = torch.empty(0).device
        with torch.device("cpu" if device.type == "meta" else device):
            self.fsq = FSQ(levels=[levels], num_codebooks=num_dims, dim=num_dims)

    @property
    def num_levels(self) -> int:
        return self.num_dims

    def bounded(self, z: torch.Tensor) -> torch.Tensor:
        """The tanh bound FSQ rounds, normalised to [-1, 1], before rounding."""
        return torch.tanh(z) * (self.half_range / (self.levels // 2))

    def _fsq(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        quantized, indices = self.fsq(z.transpose(1, 2))
        return quantized.transpose(1, 2), indices.transpose(1, 2).long()

    def encode(self, x: torch.Tensor, num_levels: int) -> torch.Tensor:
        """x: [B, dim, T] -> codes int64 [B, num_levels, T] in [0, levels): the library's codes,
        ``round(tanh(z) * half_range) + levels // 2`` (in float32 at least, as it rounds)."""
        z = self.input_proj(x)[:, :num_levels]
        if z.dtype not in (torch.float32, torch.float64):
            z = z.float()
        return (torch.round(torch.tanh(z) * self.half_range) + self.levels // 2).long()

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes: [B, n, T], n <= num_dims; missing dimensions decode as the centre level."""
        b, n, t = codes.shape
        half = self.levels // 2
        weight = next(self.output_proj.parameters(), None)
        values = ((codes.float() - half) / half).to(weight.dtype if weight is not None else torch.float32)
        if n < self.num_dims:
            values = torch.cat([values, values.new_zeros(b, self.num_dims - n, t)], dim=1)
        return self.output_proj(values)

    def quantize(self, x: torch.Tensor, num_levels: int,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z = self.input_proj(x)
        quantized, codes = self._fsq(z)
        if self.training:
            p_quant, p_noise, _ = self.dither
            u = torch.rand(z.shape[0], generator=generator).to(z.device)[:, None, None]
            bounded = self.bounded(z)
            noise = (torch.rand(z.shape, generator=generator).to(z) - 0.5) / (self.levels // 2)
            quantized = torch.where(u < p_quant, quantized, torch.where(u < p_quant + p_noise, bounded + noise,
                                                                        bounded))
        return self.output_proj(quantized), codes[:, :num_levels], z.new_zeros(())

    def continuous(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_proj(self.bounded(self.input_proj(x)))
