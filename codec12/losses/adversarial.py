"""Discriminators and adversarial losses.

A discriminator maps audio ``[B, C, T]`` to one :class:`DiscriminatorOutput` per sub-discriminator (its
logits and the feature maps feature matching compares). :class:`AdversarialLoss` pairs a discriminator with
a GAN objective (``hinge`` or least squares ``lsgan``) and gives the two sides of the game:
``discriminator_loss(pred, target)`` and ``generator_loss(pred, target)`` (adversarial + L1 feature matching).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

GAN_LOSSES = ("hinge", "lsgan")


@dataclass
class DiscriminatorOutput:
    """One sub-discriminator's verdict: logits [B, 1, ...] and its intermediate feature maps."""

    logits: torch.Tensor
    features: list[torch.Tensor]


class STFTDiscriminator(nn.Module):
    """EnCodec's STFT discriminator at one window size: 2-D convs over (time, frequency) of the complex STFT
    (real and imaginary parts as channels), strided along frequency, dilated along time."""

    def __init__(self, n_fft: int, channels: int = 32, in_channels: int = 1, dilations: tuple[int, ...] = (1, 2, 4),
                 negative_slope: float = 0.2) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = n_fft // 4
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.negative_slope = negative_slope
        convs = [weight_norm(nn.Conv2d(2 * in_channels, channels, (3, 9), padding=(1, 4)))]
        for d in dilations:
            convs.append(weight_norm(nn.Conv2d(channels, channels, (3, 9), stride=(1, 2), dilation=(d, 1),
                                               padding=(d, 4))))
        convs.append(weight_norm(nn.Conv2d(channels, channels, (3, 3), padding=(1, 1))))
        self.convs = nn.ModuleList(convs)
        self.post = weight_norm(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))

    def forward(self, wav: torch.Tensor) -> DiscriminatorOutput:
        """wav [B, C, T] -> logits [B, 1, frames, bins']."""
        b, c, t = wav.shape
        with torch.autocast(wav.device.type, enabled=False):
            spec = torch.stft(wav.float().reshape(b * c, t), self.n_fft, self.hop_length, window=self.window,
                              return_complex=True, normalized=True)
        x = torch.view_as_real(spec).reshape(b, c, *spec.shape[1:], 2)  # [B, C, F, N, 2]
        x = x.permute(0, 1, 4, 3, 2).reshape(b, 2 * c, spec.shape[-1], spec.shape[-2])  # [B, 2C, N, F]
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), self.negative_slope)
            features.append(x)
        return DiscriminatorOutput(self.post(x), features)


class MultiScaleSTFTDiscriminator(nn.Module):
    """STFT discriminators at several window sizes (EnCodec uses 2048..128; Voxtral 8 resolutions)."""

    def __init__(self, n_ffts: tuple[int, ...] = (2048, 1024, 512, 256, 128), channels: int = 32,
                 in_channels: int = 1) -> None:
        super().__init__()
        if not n_ffts:
            raise ValueError("msstft discriminator needs at least one window size")
        self.discriminators = nn.ModuleList([STFTDiscriminator(n, channels, in_channels) for n in n_ffts])

    def forward(self, wav: torch.Tensor) -> list[DiscriminatorOutput]:
        return [d(wav) for d in self.discriminators]


class PeriodDiscriminator(nn.Module):
    """HiFi-GAN's period discriminator: the waveform folded to [T / p, p], 2-D convs along the first axis."""

    def __init__(self, period: int, channels: int = 32, in_channels: int = 1, negative_slope: float = 0.1) -> None:
        super().__init__()
        self.period = period
        self.negative_slope = negative_slope
        widths = [in_channels, channels, 4 * channels, 16 * channels, 32 * channels]
        convs = [weight_norm(nn.Conv2d(widths[i], widths[i + 1], (5, 1), stride=(3, 1), padding=(2, 0)))
                 for i in range(4)]
        convs.append(weight_norm(nn.Conv2d(widths[-1], widths[-1], (5, 1), padding=(2, 0))))
        self.convs = nn.ModuleList(convs)
        self.post = weight_norm(nn.Conv2d(widths[-1], 1, (3, 1), padding=(1, 0)))

    def forward(self, wav: torch.Tensor) -> DiscriminatorOutput:
        b, c, t = wav.shape
        x = F.pad(wav, (0, -t % self.period), mode="reflect" if t > self.period else "constant")
        x = x.view(b, c, -1, self.period)
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), self.negative_slope)
            features.append(x)
        return DiscriminatorOutput(self.post(x), features)


class MultiPeriodDiscriminator(nn.Module):
    """Period discriminators at several (prime) periods (HiFi-GAN: 2, 3, 5, 7, 11)."""

    def __init__(self, periods: tuple[int, ...] = (2, 3, 5, 7, 11), channels: int = 32, in_channels: int = 1) -> None:
        super().__init__()
        if not periods or any(p < 1 for p in periods):
            raise ValueError(f"mpd discriminator needs positive periods, got {periods}")
        self.discriminators = nn.ModuleList([PeriodDiscriminator(p, channels, in_channels) for p in periods])

    def forward(self, wav: torch.Tensor) -> list[DiscriminatorOutput]:
        return [d(wav) for d in self.discriminators]


def discriminator_loss(real: list[torch.Tensor], fake: list[torch.Tensor], kind: str = "hinge") -> torch.Tensor:
    """Discriminator objective over sub-discriminator logits, averaged over sub-discriminators."""
    _check_kind(kind)
    total = real[0].new_zeros((), dtype=torch.float32)
    for r, f in zip(real, fake):
        r, f = r.float(), f.float()
        if kind == "hinge":
            total = total + F.relu(1 - r).mean() + F.relu(1 + f).mean()
        else:
            total = total + ((1 - r) ** 2).mean() + (f ** 2).mean()
    return total / len(real)


def generator_loss(fake: list[torch.Tensor], kind: str = "hinge") -> torch.Tensor:
    """Generator objective over sub-discriminator logits of generated audio, averaged."""
    _check_kind(kind)
    total = fake[0].new_zeros((), dtype=torch.float32)
    for f in fake:
        f = f.float()
        total = total + (F.relu(1 - f).mean() if kind == "hinge" else ((1 - f) ** 2).mean())
    return total / len(fake)


def _check_kind(kind: str) -> None:
    if kind not in GAN_LOSSES:
        raise ValueError(f"GAN loss must be one of {GAN_LOSSES}, got {kind!r}")


FEATURE_MATCHING = ("l1", "relative")


class FeatureMatchingLoss(nn.Module):
    """L1 between discriminator feature maps of generated (pred) and real (target) audio, averaged over all
    layers of all sub-discriminators; the real side is detached. ``kind="relative"`` divides each layer's L1
    by the mean magnitude of its real feature map (as EnCodec does), so every layer weighs about the same
    whatever the scale of its activations; ``"l1"`` leaves them as they are."""

    def __init__(self, kind: str = "l1", eps: float = 1e-8) -> None:
        super().__init__()
        if kind not in FEATURE_MATCHING:
            raise ValueError(f"feature matching must be one of {FEATURE_MATCHING}, got {kind!r}")
        self.kind, self.eps = kind, eps

    def forward(self, pred: list[DiscriminatorOutput], target: list[DiscriminatorOutput]) -> torch.Tensor:
        total, count = None, 0
        for p, t in zip(pred, target):
            for fp, ft in zip(p.features, t.features):
                ft = ft.detach().float()
                term = F.l1_loss(fp.float(), ft)
                if self.kind == "relative":
                    term = term / ft.abs().mean().clamp_min(self.eps)
                total = term if total is None else total + term
                count += 1
        if total is None:
            raise ValueError("feature matching: the discriminator returned no feature maps")
        return total / count


@dataclass
class GeneratorLoss:
    """The generator side of one discriminator: adversarial and feature-matching scalars."""

    adversarial: torch.Tensor
    feature_matching: torch.Tensor


class AdversarialLoss(nn.Module):
    """A discriminator with its GAN objective. ``pred`` is generated audio, ``target`` real audio, [B, C, T]."""

    def __init__(self, discriminator: nn.Module, kind: str = "hinge", feature_matching: str = "l1") -> None:
        super().__init__()
        _check_kind(kind)
        self.discriminator = discriminator
        self.kind = kind
        self.feature_matching = FeatureMatchingLoss(feature_matching)

    def discriminator_loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss to minimise w.r.t. the discriminator (generated audio detached)."""
        fake = self.discriminator(pred.detach())
        real = self.discriminator(target)
        return discriminator_loss([o.logits for o in real], [o.logits for o in fake], self.kind)

    def generator_loss(self, pred: torch.Tensor, target: torch.Tensor) -> GeneratorLoss:
        """Losses to minimise w.r.t. the generator (gradients flow through the discriminator into ``pred``)."""
        fake = self.discriminator(pred)
        with torch.no_grad():
            real = self.discriminator(target)
        return GeneratorLoss(generator_loss([o.logits for o in fake], self.kind), self.feature_matching(fake, real))

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> GeneratorLoss:
        return self.generator_loss(pred, target)
