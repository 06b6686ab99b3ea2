"""Residual vector quantization on vector-quantize-pytorch codebooks (EMA updates, dead-code replacement).

Training goes through ``vector_quantize_pytorch.VectorQuantize`` (EMA, straight-through/rotation trick,
commitment loss). Inference (``encode``/``decode``) picks the nearest entry by Euclidean distance on the same
codebooks, read through :mod:`codec12.quantizers.vq_layout` (the one module that knows the library's private
names), in plain tensor operations that trace to ONNX: the exported graphs run this code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from vector_quantize_pytorch import VectorQuantize

from codec12.quantizers import vq_layout


def _projection(dim_in: int, dim_out: int) -> nn.Module:
    return nn.Conv1d(dim_in, dim_out, 1, bias=False) if dim_in != dim_out else nn.Identity()


def nearest_entry(x: torch.Tensor, entries: torch.Tensor) -> torch.Tensor:
    """x: [B, T, D], entries: [N, D] -> index of the nearest entry by Euclidean distance, int64 [B, T].

    The matrix-product form of the distance that ``torch.cdist`` uses (its default for more than 25 rows or
    entries): ``sqrt(max([-2x, |x|^2, 1] @ [e, 1, |e|^2]^T, 0))``, on the same [1, B*T, D] layout, so the indices
    equal ``torch.cdist(...).argmin`` bit for bit and ties go to the first entry. Written out, it traces to ONNX
    and needs no [B*T, N, D] difference tensor.
    """
    b, t, d = x.shape
    x = x.reshape(1, -1, d)
    x_norm = x.pow(2).sum(-1, keepdim=True)
    e_norm = entries.pow(2).sum(-1, keepdim=True)
    x_ = torch.cat([x.mul(-2), x_norm, torch.ones_like(x_norm)], dim=-1)
    e_ = torch.cat([entries, torch.ones_like(e_norm), e_norm], dim=-1)[None]
    dist = torch.matmul(x_, e_.transpose(1, 2)).clamp_min(0).sqrt()
    return dist.argmin(dim=-1).reshape(b, t)


class ResidualVQ(nn.Module):
    """``num_levels`` VQ levels on the residual of a ``codebook_dim`` projection of a [B, dim, T] input."""

    def __init__(self, dim: int, codebook_dim: int, codebook_size: int, num_levels: int, *, decay: float = 0.99,
                 threshold_ema_dead_code: float = 2.0, kmeans_init: bool = False) -> None:
        super().__init__()
        self.dim = dim
        self.codebook_size = codebook_size
        self.input_proj = _projection(dim, codebook_dim)
        self.output_proj = _projection(codebook_dim, dim)
        self.layers = nn.ModuleList([
            VectorQuantize(dim=codebook_dim, codebook_size=codebook_size, decay=decay,
                           threshold_ema_dead_code=threshold_ema_dead_code, kmeans_init=kmeans_init,
                           channel_last=False, commitment_weight=1.0)
            for _ in range(num_levels)
        ])

    @property
    def num_levels(self) -> int:
        return len(self.layers)

    def codebook(self, level: int) -> torch.Tensor:
        """Entries of one level: [codebook_size, codebook_dim]."""
        return vq_layout.entries(self.layers[level])

    @torch.no_grad()
    def set_codebook(self, level: int, entries: torch.Tensor) -> None:
        """Replace one level's entries [codebook_size, codebook_dim], with EMA statistics that hold them (each
        entry counted once, as a new codebook starts)."""
        if entries.shape != self.codebook(level).shape:
            raise ValueError(f"codebook entries must have shape {tuple(self.codebook(level).shape)}, got "
                             f"{tuple(entries.shape)}")
        vq_layout.write_layer(self.layers[level], entries)

    def _nearest(self, level: int, residual: torch.Tensor) -> torch.Tensor:
        """residual: [B, Dc, T] -> indices [B, T] (in float32 whatever the weights' dtype)."""
        return nearest_entry(residual.transpose(1, 2).float(), self.codebook(level).float())

    def _lookup(self, level: int, indices: torch.Tensor) -> torch.Tensor:
        return F.embedding(indices, self.codebook(level)).transpose(1, 2)

    def encode(self, x: torch.Tensor, num_levels: int) -> torch.Tensor:
        """x: [B, dim, T] -> codes int64 [B, num_levels, T]."""
        residual = self.input_proj(x)
        codes = []
        for level in range(num_levels):
            indices = self._nearest(level, residual)
            residual = residual - self._lookup(level, indices).to(residual.dtype)
            codes.append(indices)
        if not codes:
            return torch.zeros(x.shape[0], 0, x.shape[-1], dtype=torch.long, device=x.device)
        return torch.stack(codes, dim=1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes: [B, n, T] with n <= num_levels -> [B, dim, T] (zeros when n == 0).

        A code equal to ``codebook_size`` stands for no entry: its level adds nothing there. A graph of fixed
        shape (the ONNX decoder takes every row) decodes fewer levels by filling the others with it."""
        b, n, t = codes.shape
        device, dtype = codes.device, self.codebook(0).dtype if self.layers else torch.float32
        if n == 0:
            return torch.zeros(b, self.dim, t, device=device, dtype=dtype)
        out = None
        for level in range(n):
            indices = codes[:, level]
            entries = self._lookup(level, indices.clamp(max=self.codebook_size - 1))
            entries = entries * (indices < self.codebook_size)[:, None].to(entries.dtype)
            out = entries if out is None else out + entries
        return self.output_proj(out)

    def quantize(self, x: torch.Tensor, num_levels: int,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training path: (quantized [B, dim, T] with straight-through gradients, codes [B, n, T], commitment
        loss). ``generator`` is unused: RVQ draws nothing at random here."""
        if not self.training:
            codes = self.encode(x, num_levels)
            return self.decode(codes), codes, x.new_zeros(())
        z = self.input_proj(x)
        residual, out, codes, loss = z, torch.zeros_like(z), [], z.new_zeros(())
        for layer in self.layers[:num_levels]:
            quantized, indices, commit = layer(residual)
            residual = residual - quantized.detach()
            out = out + quantized
            codes.append(indices)
            loss = loss + commit.sum()
        if not codes:
            return torch.zeros_like(x), torch.zeros(x.shape[0], 0, x.shape[-1], dtype=torch.long,
                                                    device=x.device), loss
        return self.output_proj(out), torch.stack(codes, dim=1), loss

    def continuous(self, x: torch.Tensor) -> torch.Tensor:
        """What the decoder receives for an unquantized pass: the input itself."""
        return x
