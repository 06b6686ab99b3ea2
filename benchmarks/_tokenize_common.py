"""Shared by the tokenize benchmarks: speech-like audio files and random-weight models of the presets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from codec12 import Codec, CodecConfig, QuantizerConfig, SEANetConfig, TransformerConfig


def speechlike(seconds: float, sample_rate: int, seed: int = 0, offset: float = 0.0) -> np.ndarray:
    """Speech-like audio [T]: a gliding harmonic tone with a syllable envelope and a little noise."""
    rng = np.random.default_rng(seed)
    t = offset + np.arange(int(round(seconds * sample_rate))) / sample_rate
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t + seed)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 8))
    env = 0.5 * (1 + np.sin(2 * np.pi * 3.0 * t)) ** 2
    return (0.15 * voice * env + 0.01 * rng.standard_normal(t.shape)).astype(np.float32)


def write_long(path: Path, minutes: float, sample_rate: int) -> None:
    """Write ``minutes`` of audio in one-minute blocks (the file is never whole in memory)."""
    total = int(minutes * 60 * sample_rate)
    with sf.SoundFile(str(path), "w", samplerate=sample_rate, channels=1, subtype="PCM_16") as f:
        for i, start in enumerate(range(0, total, 60 * sample_rate)):
            n = min(60 * sample_rate, total - start)
            f.write(speechlike(n / sample_rate, sample_rate, seed=i))


def micro_config() -> CodecConfig:
    """A codec of a few thousand parameters (the test suite's size): its runs show what the tokenizer itself
    costs (reading, batching, writing), with little model time."""
    return CodecConfig(
        name="micro-16k", sample_rate=16000,
        seanet=SEANetConfig(dimension=32, n_filters=4, ratios=(8, 5, 4, 4)),
        transformer=TransformerConfig(d_model=32, num_heads=2, num_layers=2, dim_feedforward=64, context=7),
        latent_dim=32, quantizer=QuantizerConfig(semantic_codebook_size=64, semantic_dim=8, num_acoustic=3,
                                                 acoustic_codebook_size=32, acoustic_dim=8))


def config_of(preset: str) -> CodecConfig:
    """A preset's config, or ``micro``'s."""
    return micro_config() if preset == "micro" else CodecConfig.from_preset(preset)


def save_random_model(preset: str, directory: Path) -> Path:
    """A model of ``preset`` with random weights (speed and memory do not depend on them), weight norm folded
    as in a release, saved to ``directory`` (once)."""
    if not (directory / "config.json").is_file():
        torch.manual_seed(0)
        Codec.from_config(config_of(preset)).eval().fold_weight_norm().save_pretrained(directory)
    return directory
