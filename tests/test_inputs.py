"""Bad input to every public entry point is a ValueError that says what is wrong."""

import numpy as np
import pytest
import soundfile as sf
import torch

from codec12 import load_audio, save_audio
from tests.conftest import tiny_codec


@pytest.fixture(scope="module")
def codec():
    return tiny_codec()


@pytest.mark.parametrize("make, match", [
    (lambda: torch.zeros(1, 1, 0), "empty audio"),
    (lambda: torch.zeros(0, 1, 1280), "empty audio"),
    (lambda: torch.full((1, 1, 1280), float("nan")), "NaN or Inf"),
    (lambda: torch.tensor([[[0.0, float("inf")] * 640]]), "NaN or Inf"),
    (lambda: torch.zeros(1, 1280), r"rank 2.*wav\[None\]"),
    (lambda: torch.zeros(1280), "rank 1"),
    (lambda: torch.zeros(1, 2, 1280), "2 channels"),
    (lambda: torch.zeros(1, 1, 1280, dtype=torch.int16), "floating point"),
    (lambda: np.zeros((1, 1, 1280), dtype=np.float32), "torch.Tensor"),
])
def test_bad_audio(codec, make, match):
    with pytest.raises(ValueError, match=match):
        codec.encode(make())
    with pytest.raises(ValueError, match=match):
        codec.encode_latents(make())


def test_sample_rate_mismatch(codec):
    with pytest.raises(ValueError, match="24000 Hz but the model expects 16000"):
        codec.encode(torch.zeros(1, 1, 1280), sample_rate=24000)
    assert codec.encode(torch.zeros(1, 1, 1280), sample_rate=16000).shape[-1] == 1


@pytest.mark.parametrize("make, match", [
    (lambda: torch.zeros(1, 5, 3, dtype=torch.long), "5 codebooks"),
    (lambda: torch.zeros(1, 0, 3, dtype=torch.long), "0 codebooks"),
    (lambda: torch.zeros(4, 3, dtype=torch.long), r"\[B, K, T'\]"),
    (lambda: torch.zeros(1, 2, 3), "integers"),
    (lambda: torch.tensor([[[0, 64, 1]]]), r"row 0.*\[0, 64\)"),
    (lambda: torch.tensor([[[0, 1], [31, 32]]]), r"row 1.*\[0, 32\)"),
    (lambda: torch.tensor([[[-1]]]), "out of range"),
    (lambda: torch.zeros(1, 2, 0, dtype=torch.long), "empty codes"),
])
def test_bad_codes(codec, make, match):
    with pytest.raises(ValueError, match=match):
        codec.decode(make())


@pytest.mark.parametrize("make, match", [
    (lambda: torch.zeros(1, 31, 3), r"\[B, 32, T'\]"),
    (lambda: torch.zeros(32, 3), r"\[B, 32, T'\]"),
    (lambda: torch.full((1, 32, 2), float("nan")), "NaN"),
])
def test_bad_latents(codec, make, match):
    with pytest.raises(ValueError, match=match):
        codec.decode_latents(make())


def test_inputs_on_another_device_are_named(codec):
    # the meta device stands in for a GPU here: the check must fire before any computation
    assert codec.device == torch.device("cpu")
    with pytest.raises(ValueError, match="audio on meta, but the model is on cpu"):
        codec.encode(torch.zeros(1, 1, 1280, device="meta"))
    with pytest.raises(ValueError, match="codes on meta"):
        codec.decode(torch.zeros(1, 2, 3, dtype=torch.long, device="meta"))
    with pytest.raises(ValueError, match="latents on meta"):
        codec.decode_latents(torch.zeros(1, 32, 3, device="meta"))


def test_streaming_needs_whole_frames_and_same_batch(codec):
    with codec.streaming(batch_size=1):
        with pytest.raises(ValueError, match="whole frames.*1000.*1280"):
            codec.encode(torch.zeros(1, 1, 1000))
        with pytest.raises(ValueError, match="batch_size=1, got a batch of 2"):
            codec.encode(torch.zeros(2, 1, 1280))
        with pytest.raises(ValueError, match="batch_size=1"):
            codec.decode(torch.zeros(2, 1, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="batch_size"):
        with codec.streaming(batch_size=0):
            pass


def test_load_audio_resamples_and_mixes(tmp_path, write_wav):
    path = write_wav("stereo.flac", 1.0, 44100, channels=2)
    wav = load_audio(path, 16000)
    assert wav.shape == (1, 16000) and wav.dtype == torch.float32
    assert load_audio(path, 16000, channels=None).shape == (2, 16000)
    mono = write_wav("mono.wav", 0.5, 16000)
    assert load_audio(mono, 16000, channels=2).shape == (2, 8000)
    data, _ = sf.read(str(mono), dtype="float32")
    assert torch.allclose(load_audio(mono, 16000)[0], torch.from_numpy(data))


def test_load_audio_errors_name_the_file(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n" * 20)
    silent = tmp_path / "zero.wav"
    sf.write(str(silent), np.zeros((0, 1), dtype=np.float32), 16000)
    nan = tmp_path / "nan.wav"
    sf.write(str(nan), np.full((100, 1), np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    for path, reason in [(empty, "not a readable audio file"), (text, "not a readable audio file"),
                         (silent, "empty audio"), (nan, "NaN"), (tmp_path / "missing.wav", "not found")]:
        with pytest.raises(ValueError, match=f"{path.name}.*{reason}"):
            load_audio(path, 16000)


def test_save_audio_round_trip_and_keeps_old_file_on_error(tmp_path, monkeypatch):
    path = tmp_path / "out.wav"
    wav = torch.linspace(-0.5, 0.5, 1600)[None]
    save_audio(path, wav, 16000)
    data, rate = sf.read(str(path), dtype="float32")
    assert rate == 16000 and np.allclose(data, wav[0].numpy(), atol=1e-4)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="shape"):
        save_audio(path, torch.zeros(1, 1, 5), 16000)
    with pytest.raises(ValueError, match=r"out.xyz: unknown audio file type '.xyz'"):
        save_audio(tmp_path / "out.xyz", wav, 16000)

    def broken_write(file, data, *args, **kwargs):  # a writer that dies half-way
        with open(file, "wb") as f:
            f.write(b"RIFF")
        raise RuntimeError("disk full")

    monkeypatch.setattr(sf, "write", broken_write)
    with pytest.raises(RuntimeError, match="disk full"):
        save_audio(path, wav, 16000)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["out.wav"]
