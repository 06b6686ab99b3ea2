"""The bundled default model: it loads by name, reconstructs the example speech far better than its architecture
with random weights, fits the size budget, and its checksum is the documented one."""

import hashlib
import re
from pathlib import Path

import pytest
import torch
import torchaudio

from codec12 import Codec, load_audio
from codec12.cli import DEFAULT_MODEL
from codec12.codec import ASSETS_DIR
from codec12.losses import MelLoss

ROOT = Path(__file__).resolve().parents[1]


def _log_mel(wav: torch.Tensor) -> torch.Tensor:
    """Log-mel spectrogram with each band's mean over time removed: what is left is how the speech moves
    (onsets, formants, pauses), not the fixed tilt that any speech-like sound shares."""
    mel = torchaudio.transforms.MelSpectrogram(16000, n_fft=1024, hop_length=320, n_mels=64)
    log_mel = (mel(wav) + 1e-5).log()
    return log_mel - log_mel.mean(dim=-1, keepdim=True)


@pytest.fixture(scope="module")
def codec():
    return Codec.from_pretrained(DEFAULT_MODEL)


@pytest.fixture(scope="module")
def untrained(codec):
    """The bundled model's architecture with random weights."""
    torch.manual_seed(0)
    return Codec.from_config(codec.config).eval()


@pytest.mark.parametrize("clip", ["hibari_en", "fillets_nl", "fillets_cs"])
def test_bundled_model_reconstructs_the_examples(codec, untrained, clip):
    assert codec.config.name == "c12-tiny-16k" and codec.frame_rate == 12.5 and codec.sample_rate == 16000
    wav = load_audio(ROOT / "examples" / f"{clip}.flac", codec.sample_rate)[None]
    codes = codec.encode(wav)
    assert codes.shape == (1, 12, -(-wav.shape[-1] // codec.frame_size))
    audio = codec.decode(codes)
    assert audio.shape[-1] == codes.shape[-1] * codec.frame_size and torch.isfinite(audio).all()
    # A trained model, not a random one: the output's log-mel spectrogram moves with the input's (random
    # c12-tiny-16k weights score 0.03 to 0.15 here, the shipped model 0.91 to 0.96).
    a, b = _log_mel(wav[0, 0]), _log_mel(audio[0, 0, : wav.shape[-1]].float())
    assert torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1] > 0.88
    # Far better than untrained: the mel distance through the codes is under half the untrained model's
    # (measured: 0.23 / 1.41, 0.34 / 1.37, 0.23 / 0.79 for the three clips).
    mel = MelLoss(codec.sample_rate)
    base = untrained.decode(untrained.encode(wav))[..., : wav.shape[-1]]
    trained_mel, untrained_mel = float(mel(audio[..., : wav.shape[-1]].float(), wav)), float(mel(base, wav))
    assert trained_mel < 0.5 * untrained_mel, (trained_mel, untrained_mel)


def test_bundled_release_size_and_documented_checksum():
    weights = ASSETS_DIR / DEFAULT_MODEL / "model.safetensors"
    assert weights.stat().st_size <= 25 * 1024 * 1024
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    card = (ROOT / "docs" / "models.md").read_text()
    assert re.search(rf"sha256[^\n]*{digest}", card), "docs/models.md must give the shipped file's sha256"


def test_bundled_model_starts_a_training_run(codec):
    # `codec12 train ... --init c12-tiny-16k` copies the release into a weight-normed training codec, which must
    # train (finite forward and gradients). The release before this one had an all-zero channel that broke this;
    # tests/test_checkpoint.py keeps that case on a small model.
    from codec12.weights import copy_weights

    trainable = Codec.from_config(codec.config.with_norm("weight_norm"))
    copy_weights(codec, trainable, where=DEFAULT_MODEL)
    wav = load_audio(ROOT / "examples" / "hibari_en.flac", codec.sample_rate)[None, :, : 12 * codec.frame_size]
    out = trainable.train()(wav)
    (out.audio - wav).abs().mean().backward()
    assert torch.isfinite(out.audio).all()
    assert all(torch.isfinite(p.grad).all() for p in trainable.parameters() if p.grad is not None)
