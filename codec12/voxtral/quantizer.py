"""Voxtral's quantizer: a semantic VQ codebook (row 0) and FSQ on the tanh-bounded acoustic channels.

The latent [B, D_s + D_a, T'] is ``[semantic | acoustic]``; the acoustic channels arrive already tanh-bounded
(the encoder's last part applies the tanh, see :mod:`codec12.voxtral.model`). Codes and values are Voxtral's
exactly: semantic code = nearest codebook entry (Euclidean); FSQ code ``round((a + 1) / 2 * (L - 1))`` and value
``code * 2 / (L - 1) - 1``. Unlike codec12's own FSQ (:mod:`codec12.quantizers.fsq`) there are no projections
and no margin on the bound.

Training: the semantic codebook learns by EMA through vector-quantize-pytorch like codec12's other codebooks;
held fixed (a frozen quantizer: the codebook module in eval mode) it still passes straight-through gradients
and a commitment loss to the encoder, which is what training an encoder for a released codebook needs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from codec12.config import QuantizerConfig
from codec12.quantizers.base import QuantizerOutput
from codec12.quantizers.vq import ResidualVQ


class VoxtralFSQ(nn.Module):
    """FSQ on values already in [-1, 1]: one code row of ``levels`` levels per dimension, no weights.

    Training dither (per sequence, as Voxtral trains its decoder): quantized with straight-through gradients,
    bounded plus uniform noise of one quantization step, or bounded and unquantized, with probabilities
    ``dither``."""

    def __init__(self, num_dims: int, levels: int, dither: tuple[float, float, float]) -> None:
        super().__init__()
        if levels % 2 == 0 or levels < 3:
            raise ValueError(f"FSQ levels must be odd and >= 3, got {levels}")
        self.num_dims = num_dims
        self.levels = levels
        self.codebook_size = levels
        self.dither = dither

    @property
    def num_levels(self) -> int:
        return self.num_dims

    def encode(self, x: torch.Tensor, num_levels: int | None = None) -> torch.Tensor:
        """x: [B, num_dims, T] in [-1, 1] -> codes int64 [B, num_levels, T] in [0, levels)."""
        codes = (((x + 1) / 2) * (self.levels - 1)).round().long()
        return codes if num_levels is None else codes[:, :num_levels]

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes: [B, n, T], n <= num_dims -> values [B, num_dims, T]; missing dimensions decode as 0 (the
        centre level)."""
        values = (codes * 2 / (self.levels - 1) - 1).float()
        b, n, t = codes.shape
        if n < self.num_dims:
            values = torch.cat([values, values.new_zeros(b, self.num_dims - n, t)], dim=1)
        return values

    def quantize(self, x: torch.Tensor, num_levels: int,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training path: (values [B, num_dims, T], codes [B, num_levels, T], zero loss)."""
        scaled = ((x + 1) / 2) * (self.levels - 1)
        codes = scaled.round().long()
        quantized = (scaled + (scaled.round() - scaled).detach()) * 2 / (self.levels - 1) - 1
        if self.training:
            p_quant, p_noise, _ = self.dither
            u = torch.rand(x.shape[0], generator=generator).to(x.device)[:, None, None]
            noise = (torch.rand(x.shape, generator=generator).to(x) - 0.5) * 2 / (self.levels - 1)
            quantized = torch.where(u < p_quant, quantized, torch.where(u < p_quant + p_noise, x + noise, x))
        return quantized, codes[:, :num_levels], x.new_zeros(())


class VoxtralQuantizer(nn.Module):
    """Latents [B, semantic_dim + acoustic_dim, T'] <-> codes [B, 1 + acoustic_dim, T'] (row 0 semantic).

    ``continuous`` is the identity: the latents (semantic channels as the encoder gives them, FSQ channels
    before rounding) are what the decoder reads, and what ``decode_latents`` takes."""

    def __init__(self, config: QuantizerConfig) -> None:
        super().__init__()
        c = config
        self.config = c
        self.latent_dim = c.semantic_dim + c.acoustic_dim
        self.semantic = ResidualVQ(c.semantic_dim, c.semantic_dim, c.semantic_codebook_size, 1, decay=c.ema_decay,
                                   threshold_ema_dead_code=c.threshold_ema_dead_code, kmeans_init=c.kmeans_init)
        self.acoustic = VoxtralFSQ(c.num_acoustic, c.acoustic_codebook_size, c.fsq_dither)
        self.codebook_sizes = c.codebook_sizes

    @property
    def num_codebooks(self) -> int:
        return len(self.codebook_sizes)

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x[:, : self.config.semantic_dim], x[:, self.config.semantic_dim:]

    def _join(self, semantic: torch.Tensor, acoustic: torch.Tensor) -> torch.Tensor:
        return torch.cat([semantic, acoustic], dim=1)

    def encode(self, x: torch.Tensor, num_codebooks: int | None = None) -> torch.Tensor:
        """x: [B, latent_dim, T'] -> codes int64 [B, num_codebooks, T']."""
        k = self.num_codebooks if num_codebooks is None else num_codebooks
        s, a = self._split(x)
        return torch.cat([self.semantic.encode(s, 1), self.acoustic.encode(a, k - 1)], dim=1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes: [B, K', T'] with 1 <= K' <= K -> decoder input [B, latent_dim, T']."""
        return self._join(self.semantic.decode(codes[:, :1]), self.acoustic.decode(codes[:, 1:]))

    def continuous(self, x: torch.Tensor) -> torch.Tensor:
        """What the decoder receives for unquantized latents: the latents themselves."""
        return x

    def frame_latents(self, semantic_codes: torch.Tensor, acoustic: torch.Tensor) -> torch.Tensor:
        """The decoder input of generated frames: semantic codes [B, T'] (or [B, 1, T']) and continuous FSQ values
        [B, acoustic_dim, T'] in [-1, 1] (what Voxtral TTS's flow-matching head produces, before rounding) ->
        latents [B, latent_dim, T'] for ``decode_latents``."""
        if semantic_codes.dim() == 2:
            semantic_codes = semantic_codes[:, None]
        if semantic_codes.dim() != 3 or semantic_codes.shape[1] != 1 or acoustic.dim() != 3 \
                or acoustic.shape[1] != self.config.acoustic_dim or acoustic.shape[0] != semantic_codes.shape[0] \
                or acoustic.shape[2] != semantic_codes.shape[2]:
            raise ValueError(f"frame_latents takes semantic codes [B, T'] and FSQ values [B, "
                             f"{self.config.acoustic_dim}, T'], got {tuple(semantic_codes.shape)} and "
                             f"{tuple(acoustic.shape)}")
        semantic = self.semantic.decode(semantic_codes.long())
        return self._join(semantic, acoustic.to(semantic.dtype))

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> QuantizerOutput:
        """Training-time quantization: the semantic slice through the VQ (EMA-updated while the codebook module
        trains; held fixed, with straight-through gradients and a commitment loss, while it does not), passed
        unquantized for a sequence with probability ``unquantized_rate``; the FSQ slice dithered (see
        :class:`VoxtralFSQ`). ``generator`` (CPU) makes the draws reproducible."""
        c = self.config
        s, a = self._split(x)
        if self.semantic.training:
            sem_q, sem_codes, sem_loss = self.semantic.quantize(s, 1)
        else:
            sem_codes = self.semantic.encode(s, 1)
            entries = self.semantic.decode(sem_codes).to(s.dtype)
            sem_q = s + (entries - s).detach()
            sem_loss = F.mse_loss(s, entries.detach())
        ac_q, ac_codes, _ = self.acoustic.quantize(a, self.acoustic.num_levels, generator)
        sem_in = sem_q
        if self.training and c.unquantized_rate > 0:
            keep = (torch.rand(x.shape[0], generator=generator).to(x.device) < c.unquantized_rate)[:, None, None]
            sem_in = torch.where(keep, s, sem_q)
        return QuantizerOutput(quantized=self._join(sem_in, ac_q), codes=torch.cat([sem_codes, ac_codes], dim=1),
                               semantic=sem_q, losses={"commitment": sem_loss})
