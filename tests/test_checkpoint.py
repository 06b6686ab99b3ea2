import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from codec12 import Codec, load_audio
from codec12.export.container import read_c12, write_c12
from codec12.weights import copy_weights
from tests.conftest import speechlike, tiny_codec, tiny_config


def test_save_load_bit_exact(tmp_path):
    codec = tiny_codec(acoustic="fsq", layout="concat")
    codec.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["README.md", "config.json", "model.safetensors"]
    back = Codec.from_pretrained(tmp_path / "m")
    assert back.config == codec.config
    a, b = codec.state_dict(), back.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    wav = 0.2 * torch.randn(1, 1, 5 * 1280)
    assert torch.equal(codec.encode(wav), back.encode(wav))
    assert torch.equal(codec.decode(codec.encode(wav)), back.decode(back.encode(wav)))


def test_weights_stored_in_float16_load_cast_back_into_every_tensor(tmp_path):
    codec = tiny_codec()
    codec.save_pretrained(tmp_path, dtype=torch.float16)
    back = Codec.from_pretrained(tmp_path).state_dict()
    for name, tensor in codec.state_dict().items():
        expected = tensor.half().to(tensor.dtype) if tensor.is_floating_point() else tensor
        assert back[name].dtype == tensor.dtype and torch.equal(back[name], expected), name


def test_strict_loading_names_missing_extra_and_misshaped(tmp_path):
    codec = tiny_codec()
    codec.save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    state = load_file(str(weights))
    key = "decoder.layers.0.conv.bias"
    state.pop(key)
    state["decoder.extra.weight"] = torch.zeros(1)
    save_file(state, str(weights))
    with pytest.raises(ValueError, match=rf"missing tensors \[{key}\].*unexpected tensors \[decoder.extra.weight\]"):
        Codec.from_pretrained(tmp_path)
    codec.save_pretrained(tmp_path)
    state = load_file(str(weights))
    state["downsample.conv.weight"] = torch.zeros(1, 1, 1)
    save_file(state, str(weights))
    with pytest.raises(ValueError, match="wrong shapes.*downsample.conv.weight"):
        Codec.from_pretrained(tmp_path)


def test_config_errors_on_load(tmp_path):
    codec = tiny_codec()
    codec.save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    data["seanet"]["n_filter"] = 3
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="n_filter"):
        Codec.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json: cannot read config"):
        Codec.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="no config.json"):
        Codec.from_pretrained(tmp_path / "..")


def test_unknown_name_and_offline_hub(tmp_path):
    with pytest.raises(ValueError, match="not a directory, a bundled model"):
        Codec.from_pretrained("no-such-model")
    with pytest.raises(ValueError, match="could not download|local directory"):
        Codec.from_pretrained("codec12-test/does-not-exist-anywhere")


def test_fold_weight_norm_keeps_outputs_and_reloads(tmp_path):
    codec = tiny_codec()
    assert any("parametrizations" in k for k in codec.state_dict())
    wav = 0.2 * torch.randn(1, 1, 4 * 1280)
    codes, audio = codec.encode(wav), codec.decode(codec.encode(wav))
    folded = codec.folded()  # a copy: the original keeps its weight norm and still works
    assert any("parametrizations" in k for k in codec.state_dict())
    assert torch.equal(folded.encode(wav), codes) and torch.allclose(folded.decode(codes), audio, atol=1e-5)
    assert torch.equal(codec.encode(wav), codes)
    codec.fold_weight_norm()
    assert codec.config.seanet.norm == "none" and not any("parametrizations" in k for k in codec.state_dict())
    assert torch.equal(codec.encode(wav), codes)
    assert torch.allclose(codec.decode(codes), audio, atol=1e-5)
    codec.save_pretrained(tmp_path)
    assert torch.allclose(Codec.from_pretrained(tmp_path).decode(codes), audio, atol=1e-5)


def test_c12_container_round_trip_and_corruption(tmp_path):
    codes = np.random.default_rng(0).integers(0, 65536, size=(5, 11))
    path = tmp_path / "x.c12"
    write_c12(path, codes, {"model": "m", "num_samples": 123})
    back, header = read_c12(path)
    assert np.array_equal(back, codes) and header["num_samples"] == 123 and header["num_codebooks"] == 5
    data = path.read_bytes()
    (tmp_path / "short.c12").write_bytes(data[:-3])
    (tmp_path / "magic.c12").write_bytes(b"RIFF" + data[4:])
    (tmp_path / "tiny.c12").write_bytes(b"C1")
    for name, match in [("short", "truncated"), ("magic", "bad magic"), ("tiny", "too short")]:
        with pytest.raises(ValueError, match=f"{name}.c12.*{match}"):
            read_c12(tmp_path / f"{name}.c12")


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "codec12.cli", *map(str, args)], capture_output=True, text=True)


def test_cli_encode_decode(tmp_path, write_wav):
    codec = tiny_codec()
    codec.save_pretrained(tmp_path / "model")
    wav_path = write_wav("speech.wav", 1.3, 22050)
    out = tmp_path / "speech.c12"
    r = run_cli("encode", wav_path, out, "--model", tmp_path / "model", "--num-codebooks", "3")
    assert r.returncode == 0, r.stderr
    codes, header = read_c12(out)
    wav = load_audio(wav_path, 16000)
    assert np.array_equal(codes, codec.encode(wav[None], 3)[0].numpy())
    assert header["num_samples"] == wav.shape[-1] and header["config_hash"] == codec.config.config_hash()
    assert header["model"] == str((tmp_path / "model").resolve())
    r = run_cli("decode", out, tmp_path / "back.wav")  # the model is found from the file's header
    assert r.returncode == 0, r.stderr
    back = load_audio(tmp_path / "back.wav", 16000)
    assert back.shape == wav.shape
    other = tiny_codec(seed=1)  # same architecture, other weights: refused, not decoded wrongly
    other.save_pretrained(tmp_path / "other")
    r = run_cli("decode", out, tmp_path / "back2.wav", "--model", tmp_path / "other")
    assert r.returncode == 1 and "is not the model" in r.stderr and not (tmp_path / "back2.wav").exists()
    r = run_cli("encode", wav_path, out, "--model", tmp_path / "model")
    assert r.returncode == 1 and "exists; pass -f" in r.stderr
    (tmp_path / "bad.wav").write_text("hello")
    r = run_cli("encode", tmp_path / "bad.wav", tmp_path / "bad.c12", "--model", tmp_path / "model")
    assert r.returncode == 1 and "bad.wav" in r.stderr and "Traceback" not in r.stderr


def test_copy_weights_between_folded_and_weight_normed_models(tmp_path):
    torch.manual_seed(0)
    trained = Codec.from_config(tiny_config())
    trained.save_pretrained(tmp_path / "release")
    release = Codec.from_pretrained(tmp_path / "release").folded()
    fresh = Codec.from_config(tiny_config())  # weight norm on, other random weights
    copy_weights(release, fresh, where="test")
    wav = torch.from_numpy(speechlike(0.48, 16000)).T[None].float()
    assert torch.equal(fresh.eval().encode(wav), release.encode(wav))
    assert torch.allclose(fresh.decode(release.encode(wav)), release.decode(release.encode(wav)), atol=1e-5)
    # and back: weight-normed -> folded
    torch.manual_seed(1)
    folded = Codec.from_config(tiny_config()).folded()
    copy_weights(trained, folded, where="test")
    assert torch.equal(folded.encode(wav), trained.eval().encode(wav))
    assert torch.allclose(folded.decode(trained.encode(wav)), trained.decode(trained.encode(wav)), atol=1e-5)
    with pytest.raises(ValueError, match=r"^x: (missing|unexpected|wrong shape)"):
        copy_weights(release, Codec.from_config(tiny_config().replace(latent_dim=16, depthwise_upsample=False)), "x")


def test_copy_weights_into_weight_norm_survives_a_dead_channel():
    # A trained model can end with an output channel whose weights are all zero (the shipped release has one in
    # its encoder). Weight norm has no direction for it; the copy must still give finite, equal weights and a
    # training forward without NaN (it used to fill the channel with 0/0 and every step was skipped).
    torch.manual_seed(0)
    release = Codec.from_config(tiny_config()).folded()
    conv = next(m for m in release.encoder.modules() if isinstance(m, torch.nn.Conv1d) and m.weight.shape[0] > 1)
    with torch.no_grad():
        conv.weight[1].zero_()
    fresh = Codec.from_config(tiny_config())
    copy_weights(release, fresh, where="test")
    weights = dict(fresh.named_modules())
    for name, module in release.named_modules():
        if isinstance(module, torch.nn.Conv1d):
            assert torch.allclose(weights[name].weight, module.weight, atol=1e-6), name
    assert torch.equal(weights[next(n for n, m in release.named_modules() if m is conv)].weight[1],
                       torch.zeros_like(conv.weight[1]))
    wav = torch.from_numpy(speechlike(0.48, 16000)).T[None].float()
    out = fresh.train()(wav)
    assert torch.isfinite(out.audio).all() and torch.isfinite(out.latents).all()


def test_copy_weights_keeps_the_target_s_own_submodules_whatever_the_source_has_there():
    # A new head for a trained model: the source has the head too (the same or another shape); the target's
    # stays as it is, and everything else comes from the source.
    torch.manual_seed(0)
    source = Codec.from_config(tiny_config(istft=True, istft_harmonic=True)).folded()
    target = Codec.from_config(tiny_config(istft=True, istft_harmonic=True, istft_harmonic_envelope="shared"))
    own = {k: v.clone() for k, v in target.decoder.harmonic_head.state_dict().items()}
    copy_weights(source.decoder, target.decoder, where="test", keep=("harmonic_head",))
    assert all(torch.equal(v, target.decoder.harmonic_head.state_dict()[k]) for k, v in own.items())
    assert not torch.equal(target.decoder.harmonic_head.bias, source.decoder.harmonic_head.bias)
    assert torch.equal(target.decoder.pitch_head[0].weight, source.decoder.pitch_head[0].weight)
    assert torch.equal(target.decoder.head.weight, source.decoder.head.weight)



def test_atomic_outputs_are_whole_or_absent(tmp_path, monkeypatch):
    """atomic_write and atomic_directory: a failing writer leaves what was there and no temporary behind; a
    finished one replaces it, its files fsynced before the rename."""
    from codec12 import _fs

    synced = []
    monkeypatch.setattr(_fs, "fsync_file", lambda p: synced.append(Path(p).name))
    target = tmp_path / "file.json"
    target.write_text("old")

    def failing(p):
        p.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        _fs.atomic_write(target, failing)
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["file.json"]
    _fs.atomic_write(target, lambda p: p.write_text("new"))
    assert target.read_text() == "new" and synced == [f".file.json.tmp{os.getpid()}"]

    directory = tmp_path / "model"
    directory.mkdir()
    (directory / "a.txt").write_text("old")
    with pytest.raises(OSError, match="disk full"):
        with _fs.atomic_directory(directory) as tmp:
            (tmp / "a.txt").write_text("half")
            raise OSError("disk full")
    assert [p.name for p in directory.iterdir()] == ["a.txt"] and (directory / "a.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.json", "model"]
    synced.clear()
    with _fs.atomic_directory(directory) as tmp:
        (tmp / "b.txt").write_text("new")
    assert [p.name for p in directory.iterdir()] == ["b.txt"] and synced == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.json", "model"]
