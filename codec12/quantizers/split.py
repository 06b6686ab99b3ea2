"""Split quantizer: one semantic codebook (row 0) + acoustic codes (residual VQ levels or FSQ dimensions)."""

from __future__ import annotations

import torch
from torch import nn

from codec12.config import QuantizerConfig
from codec12.quantizers.base import QuantizerOutput
from codec12.quantizers.fsq import ScalarQuantizer
from codec12.quantizers.vq import ResidualVQ


class SplitQuantizer(nn.Module):
    """Quantizes a latent [B, latent_dim, T'] into codes [B, K, T'] (see :class:`QuantizerConfig`)."""

    def __init__(self, config: QuantizerConfig, latent_dim: int) -> None:
        super().__init__()
        c = config
        self.config = c
        self.latent_dim = latent_dim
        shared = c.layout == "shared"
        vq_args = dict(decay=c.ema_decay, threshold_ema_dead_code=c.threshold_ema_dead_code,
                       kmeans_init=c.kmeans_init)
        self.semantic = ResidualVQ(latent_dim if shared else c.semantic_dim, c.semantic_dim,
                                   c.semantic_codebook_size, 1, **vq_args)
        acoustic_in = latent_dim if shared else c.acoustic_dim
        if c.acoustic == "rvq":
            self.acoustic = ResidualVQ(acoustic_in, c.acoustic_dim, c.acoustic_codebook_size, c.num_acoustic,
                                       **vq_args)
        else:
            self.acoustic = ScalarQuantizer(acoustic_in, c.num_acoustic, c.acoustic_codebook_size, c.fsq_dither)
        self.codebook_sizes = c.codebook_sizes

    @property
    def num_codebooks(self) -> int:
        return len(self.codebook_sizes)

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.config.layout == "shared":
            return x, x
        return x[:, : self.config.semantic_dim], x[:, self.config.semantic_dim:]

    def _join(self, semantic: torch.Tensor, acoustic: torch.Tensor) -> torch.Tensor:
        if self.config.layout == "shared":
            return semantic + acoustic
        return torch.cat([semantic, acoustic], dim=1)

    def encode(self, x: torch.Tensor, num_codebooks: int | None = None) -> torch.Tensor:
        """x: [B, latent_dim, T'] -> codes int64 [B, num_codebooks, T']."""
        k = self.num_codebooks if num_codebooks is None else num_codebooks
        s, a = self._split(x)
        return torch.cat([self.semantic.encode(s, 1), self.acoustic.encode(a, k - 1)], dim=1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes: [B, K', T'] with 1 <= K' <= K -> quantized latent [B, latent_dim, T']."""
        return self._join(self.semantic.decode(codes[:, :1]), self.acoustic.decode(codes[:, 1:]))

    def continuous(self, x: torch.Tensor) -> torch.Tensor:
        """What the decoder receives for an unquantized latent (continuous mode)."""
        s, a = self._split(x)
        if self.config.layout == "shared":
            return x
        return self._join(self.semantic.continuous(s), self.acoustic.continuous(a))

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> QuantizerOutput:
        """Training-time quantization.

        In training mode: acoustic RVQ levels are dropped (a random number of them, the same for the whole
        batch, never the semantic level), FSQ is dithered, and each sequence passes unquantized with
        probability ``unquantized_rate``: the whole latent (Mimi's quantization rate), except with the concat
        layout and an FSQ acoustic branch, where only the semantic VQ is skipped and the FSQ slice keeps its
        own dither schedule (Voxtral: VQ applied half the time; FSQ 50% quantized / 25% dithered / 25% not).
        ``generator`` (CPU) makes these draws reproducible.
        """
        c = self.config
        n_acoustic = self.acoustic.num_levels
        if self.training and c.level_dropout and c.acoustic == "rvq" and n_acoustic > 0:
            n_acoustic = int(torch.randint(0, n_acoustic + 1, (1,), generator=generator))
        s, a = self._split(x)
        sem_q, sem_codes, sem_loss = self.semantic.quantize(s, 1)
        ac_q, ac_codes, ac_loss = self.acoustic.quantize(a, n_acoustic, generator)
        quantized = self._join(sem_q, ac_q)
        if self.training and c.unquantized_rate > 0:
            keep = (torch.rand(x.shape[0], generator=generator).to(x.device) < c.unquantized_rate)[:, None, None]
            if c.layout == "concat" and c.acoustic == "fsq":
                quantized = self._join(torch.where(keep, self.semantic.continuous(s), sem_q), ac_q)
            else:
                quantized = torch.where(keep, self.continuous(x), quantized)
        return QuantizerOutput(quantized=quantized, codes=torch.cat([sem_codes, ac_codes], dim=1),
                               semantic=sem_q, losses={"commitment": sem_loss + ac_loss})
