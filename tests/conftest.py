"""Shared fixtures: tiny codecs that run in milliseconds on two CPU cores."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from codec12 import Codec, CodecConfig, ISTFTDecoderConfig, QuantizerConfig, SEANetConfig, TransformerConfig
from codec12.quantizers import ResidualVQ


def tiny_config(sample_rate: int = 16000, acoustic: str = "rvq", layout: str = "shared", context: int = 7,
                norm: str = "weight_norm", istft: bool = False, istft_phase: str = "direct",
                istft_harmonic: bool = False, istft_harmonic_envelope: str = "own") -> CodecConfig:
    """A codec with a few thousand parameters; ``context`` small so tests cross the attention window.
    ``istft``: the Vocos-style decoder (hop 80, window 320, phase ``istft_phase``, the harmonic branch with
    ``istft_harmonic``, its envelope ``istft_harmonic_envelope``) in place of the SEANet one."""
    ratios = {16000: (8, 5, 4, 4), 24000: (8, 6, 5, 4)}[sample_rate]
    if acoustic == "fsq":
        q = QuantizerConfig(layout=layout, semantic_codebook_size=64, semantic_dim=8, acoustic="fsq",
                            num_acoustic=4, acoustic_codebook_size=5, acoustic_dim=4)
    else:
        q = QuantizerConfig(layout=layout, semantic_codebook_size=64, semantic_dim=8, num_acoustic=3,
                            acoustic_codebook_size=32, acoustic_dim=8)
    latent = 32 if layout == "shared" else q.semantic_dim + q.acoustic_dim
    return CodecConfig(
        name=f"tiny-{sample_rate}-{acoustic}-{layout}", sample_rate=sample_rate,
        seanet=SEANetConfig(dimension=32, n_filters=4, ratios=ratios, norm=norm),
        transformer=TransformerConfig(d_model=32, num_heads=2, num_layers=2, dim_feedforward=64, context=context),
        latent_dim=latent, depthwise_upsample=layout == "shared", quantizer=q,
        istft=ISTFTDecoderConfig(dim=16, intermediate_dim=32, num_layers=2, n_fft=320, hop_length=80,
                                 phase=istft_phase, harmonic=istft_harmonic,
                                 harmonic_envelope=istft_harmonic_envelope) if istft else None,
    )


def tiny_codec(seed: int = 0, **kwargs) -> Codec:
    """A random tiny codec whose codes vary as a trained one's do (:func:`spread_quantizer`). The integrated-phase
    head starts at zero and the harmonic head nearly so; here they get random weights too, so that tests see the
    deviations and harmonics they predict."""
    torch.manual_seed(seed)
    codec = Codec.from_config(tiny_config(**kwargs)).eval()
    spread_quantizer(codec, seed)
    head = getattr(codec.decoder, "deviation_head", None)
    if head is not None:
        with torch.no_grad():
            for p in head.parameters():
                p.normal_(0.0, 0.5)
    head = getattr(codec.decoder, "harmonic_head", None)
    if head is not None:  # harmonics at about speech's level (0.05 each, 0.5 at the pulses' peaks)
        with torch.no_grad():
            head.weight.normal_(0.0, 0.2)
            head.bias.normal_(0.0, 0.5)
            if not codec.decoder.shared_envelope:  # (a shared envelope's share logits stay around 0: half)
                head.bias.view(codec.channels, 2, -1)[:, 0] += math.log(0.05)  # per channel: log-amplitudes first
            # An untrained F0 classifier is nearly flat: its F0, a probability-weighted mean over the classes, then
            # moves with every float rounding difference, and the harmonic phase adds those moves up frame after
            # frame (to 2e-4 in the audio). A trained one is decisive. Sharpen its logits as training does: the top
            # class then holds about half the probability (0.3 to 0.75), its neighbours the rest.
            codec.decoder.pitch_head[-1].weight.mul_(50.0)
    return codec


@torch.no_grad()
def spread_quantizer(codec: Codec, seed: int = 0) -> None:
    """Make a random codec use its whole codebooks, so that tests comparing codes compare values that vary.

    A random encoder's latents sit off centre with a spread of about 0.01 per channel, far from
    vector-quantize-pytorch's initial codebooks: every frame picks the same one to three RVQ entries and every FSQ
    row one level. Here, measured on probe audio (speech-like and noise): the downsampling conv (no bias) is made
    blind to the mean of its input features, which centres the latents, and every latent channel is scaled to the
    latents' former overall size (their RMS, about 0.03: the absolute latent tolerances of the tests are set for
    it), which the upsampling conv undoes, so the decoder sees inputs of the size it saw; FSQ rows are scaled to
    unit spread (in the FSQ input projection, or in the latent where there is none) so that their codes reach
    every level; each RVQ level gets random entries with the mean and spread of its residual. The global random
    state is left alone."""
    g = torch.Generator().manual_seed(10_000 + seed)
    t = 16 * codec.frame_size
    speech = torch.from_numpy(speechlike(t / codec.sample_rate, codec.sample_rate, seed, codec.channels).T)
    probe = torch.stack([speech, 0.3 * torch.randn(codec.channels, t, generator=g)])
    size = codec.encode_latents(probe).pow(2).mean().sqrt()
    weight = codec.downsample.conv.weight  # [D, C, K]
    mean = codec.encoder_transformer(codec.encoder(probe)).mean(dim=(0, 2))  # [C]
    along = (weight * mean[:, None]).sum(dim=(1, 2)) / (weight.shape[-1] * mean.pow(2).sum())
    weight.sub_(along[:, None, None] * mean[:, None])
    q = codec.quantizer
    target = torch.full((codec.latent_dim,), float(size))
    if q.config.acoustic == "fsq" and q.config.layout == "concat" and not isinstance(q.acoustic.input_proj,
                                                                                      torch.nn.Conv1d):
        target[q.config.semantic_dim:] = 1.0
    scale = codec.encode_latents(probe).std(dim=(0, 2)) / target  # [D]
    weight.div_(scale[:, None, None])
    codec.upsample.conv.weight.mul_(scale[:, None, None])  # ConvTranspose1d: [in = D, out / groups, kernel]
    latents = codec.encode_latents(probe)
    for branch, x in zip((q.semantic, q.acoustic), q._split(latents)):
        if isinstance(branch, ResidualVQ):
            residual = branch.input_proj(x)
            for level in range(branch.num_levels):
                mean, std = residual.mean(dim=(0, 2)), residual.std(dim=(0, 2))
                branch.set_codebook(level, mean + std * torch.randn(branch.codebook(level).shape, generator=g))
                residual = residual - branch._lookup(level, branch._nearest(level, residual))
        elif isinstance(branch.input_proj, torch.nn.Conv1d):
            branch.input_proj.weight.div_(branch.input_proj(x).std(dim=(0, 2))[:, None, None])


def distinct_codes(codes) -> list[int]:
    """The number of distinct values in each code row of [B, K, T'] codes (a tensor or an array)."""
    return [len(np.unique(np.asarray(codes)[:, k])) for k in range(codes.shape[1])]


def speechlike(seconds: float, sample_rate: int, seed: int = 0, channels: int = 1) -> np.ndarray:
    """Deterministic speech-like test audio [T, C]: a gliding harmonic tone with a syllable envelope and noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t + seed)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 8))
    env = 0.5 * (1 + np.sin(2 * np.pi * 3.0 * t)) ** 2
    x = 0.15 * voice * env + 0.01 * rng.standard_normal(t.shape)
    return np.stack([x * (1 - 0.2 * c) for c in range(channels)], axis=1).astype(np.float32)


@pytest.fixture
def write_wav(tmp_path):
    """write_wav(name, seconds, sample_rate, channels=1, seed=0) -> path of a generated file."""

    def write(name: str, seconds: float, sample_rate: int, channels: int = 1, seed: int = 0):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), speechlike(seconds, sample_rate, seed, channels), sample_rate)
        return path

    return write
