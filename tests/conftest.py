"""Shared fixtures: tiny codecs that run in milliseconds on two CPU cores."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from codec12 import Codec, CodecConfig, ISTFTDecoderConfig, QuantizerConfig, SEANetConfig, TransformerConfig


def tiny_config(sample_rate: int = 16000, acoustic: str = "rvq", layout: str = "shared", context: int = 7,
                norm: str = "weight_norm", istft: bool = False, istft_phase: str = "direct",
                istft_harmonic: bool = False) -> CodecConfig:
    """A codec with a few thousand parameters; ``context`` small so tests cross the attention window.
    ``istft``: the Vocos-style decoder (hop 80, window 320, phase ``istft_phase``, the harmonic branch with
    ``istft_harmonic``) in place of the SEANet one."""
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
                                 phase=istft_phase, harmonic=istft_harmonic) if istft else None,
    )


def tiny_codec(seed: int = 0, **kwargs) -> Codec:
    """A random tiny codec. The integrated-phase head starts at zero and the harmonic head nearly so; here they
    get random weights too, so that tests see the deviations and harmonics they predict."""
    torch.manual_seed(seed)
    codec = Codec.from_config(tiny_config(**kwargs)).eval()
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
            head.bias.view(codec.channels, 2, -1)[:, 0] += math.log(0.05)  # per channel: log-amplitudes first
            # An untrained F0 classifier is nearly flat, so near ties between classes tip either way under float
            # rounding; a trained one is decisive. Sharpen its logits as training does.
            codec.decoder.pitch_head[-1].weight.mul_(20.0)
    return codec


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
