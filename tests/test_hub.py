"""Hugging Face conventions without the network: the model card save_pretrained writes, what push_to_hub would
upload (huggingface_hub's HfApi patched), the hub download's options, and loading in another dtype."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import huggingface_hub
import pytest
import torch
from huggingface_hub import ModelCard
from safetensors.torch import load_file

import codec12.codec as codec_module
from codec12 import Codec
from tests.conftest import speechlike, tiny_codec


def _wav(codec, seconds=0.8, seed=0):
    return torch.from_numpy(speechlike(seconds, codec.sample_rate, seed).T.copy())[None]


# ------------------------------------------------------------------------------------------------- the model card
def test_save_pretrained_writes_a_model_card(tmp_path):
    codec = tiny_codec()
    codec.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["README.md", "config.json", "model.safetensors"]
    card = ModelCard.load(tmp_path / "m" / "README.md")
    assert card.data.library_name == "codec12" and card.data.license == "unknown"
    assert {"codec12", "audio", "speech", "audio-codec"} <= set(card.data.tags)
    params = sum(p.numel() for p in codec.parameters())
    for text in ("16000 Hz, 1 channel", "12.5 frames/s (1280 samples, 80 ms per frame)",
                 "4 (64 + 3x32): 1 semantic (64 entries) + 3 residual VQ levels x 32",
                 f"{codec.bitrate / 1000:.2f} kbps with all codebooks", f"{params / 1e6:.2f} M",
                 "weights stored as float32", codec.config.config_hash(),
                 'Codec.from_pretrained("path/to/this/directory")', "codes = codec.encode(wav)"):
        assert text in card.text, text
    # The card is beside the model, not part of it: the directory loads as before.
    back = Codec.from_pretrained(tmp_path / "m")
    assert all(torch.equal(a, b) for a, b in zip(codec.state_dict().values(), back.state_dict().values()))


def test_model_card_options_and_an_existing_readme_is_kept(tmp_path):
    codec = tiny_codec(acoustic="fsq", layout="concat")
    codec.save_pretrained(tmp_path / "a", dtype="bfloat16", license="apache-2.0", repo_id="me/fsq-codec")
    card = ModelCard.load(tmp_path / "a" / "README.md")
    assert card.data.license == "apache-2.0" and "`apache-2.0`" in card.text
    assert 'Codec.from_pretrained("me/fsq-codec")' in card.text and "4 FSQ dimensions x 5 levels" in card.text
    assert "weights stored as bfloat16" in card.text
    assert load_file(str(tmp_path / "a" / "model.safetensors"))["upsample.conv.weight"].dtype == torch.bfloat16
    codec.save_pretrained(tmp_path / "b", model_card=False)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["config.json", "model.safetensors"]
    (tmp_path / "b" / "README.md").write_text("# my own card\n")
    codec.save_pretrained(tmp_path / "b")  # a README.md already there may be a card written by hand
    assert (tmp_path / "b" / "README.md").read_text() == "# my own card\n"


def test_a_decode_only_card_says_so():
    from codec12.convert.voxtral import ARG_DEFAULTS, voxtral_codec_config
    from codec12.hub import model_card

    args = {**ARG_DEFAULTS, "dim": 32, "hidden_dim": 64, "head_dim": 8, "n_heads": 4, "n_kv_heads": 2,
            "semantic_codebook_size": 64, "semantic_dim": 16, "acoustic_dim": 8}
    codec = Codec.from_config(voxtral_codec_config(args, name="tiny-voxtral", encoder=False))
    text = model_card(codec).text
    assert "# tiny-voxtral" in text and "8 FSQ dimensions" in text
    assert "this model decodes only" in text and "codec.encode" not in text


# ------------------------------------------------------------------------------------------------------- uploads
@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """HfApi's create_repo/create_branch/upload_folder replaced: each call is recorded, and the folder that would be
    uploaded is copied to ``uploads/N`` (push_to_hub's temporary directory is gone when it returns)."""
    calls: list[tuple[str, dict]] = []

    def create_repo(self, repo_id, **kwargs):
        calls.append(("create_repo", {"repo_id": repo_id, "token": self.token, **kwargs}))
        return SimpleNamespace(repo_id=repo_id)

    def create_branch(self, repo_id, **kwargs):
        calls.append(("create_branch", {"repo_id": repo_id, **kwargs}))

    def upload_folder(self, **kwargs):
        copy = tmp_path / "uploads" / str(len(calls))
        shutil.copytree(kwargs["folder_path"], copy)
        calls.append(("upload_folder", {**kwargs, "folder_path": copy}))
        return SimpleNamespace(commit_url=f"https://huggingface.co/{kwargs['repo_id']}/commit/abc", oid="abc")

    for name, fn in (("create_repo", create_repo), ("create_branch", create_branch),
                     ("upload_folder", upload_folder)):
        monkeypatch.setattr(huggingface_hub.HfApi, name, fn)
    return calls


def test_push_to_hub_uploads_what_save_pretrained_writes(fake_hub):
    codec = tiny_codec()
    commit = codec.push_to_hub("me/tiny-codec", private=True, token="hf_test", revision="v1",
                               commit_message="first release", dtype=torch.float16, license="cc-by-4.0")
    assert commit.oid == "abc"
    (_, repo), (_, branch), (_, upload) = fake_hub
    assert repo == {"repo_id": "me/tiny-codec", "token": "hf_test", "private": True, "repo_type": "model",
                    "exist_ok": True}
    assert branch == {"repo_id": "me/tiny-codec", "branch": "v1", "repo_type": "model", "exist_ok": True}
    assert (upload["repo_id"], upload["revision"], upload["commit_message"], upload["repo_type"]) == (
        "me/tiny-codec", "v1", "first release", "model")
    folder = upload["folder_path"]
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "codec12" and card.data.license == "cc-by-4.0"
    assert 'Codec.from_pretrained("me/tiny-codec")' in card.text and "weights stored as float16" in card.text
    assert all(t.dtype == torch.float16 for t in load_file(str(folder / "model.safetensors")).values()
               if t.is_floating_point())
    pushed = Codec.from_pretrained(folder)
    assert pushed.config == codec.config
    for name, value in codec.state_dict().items():
        assert torch.equal(pushed.state_dict()[name], value.half().float() if value.is_floating_point() else value)


def test_push_to_hub_defaults_and_a_pull_request_revision(fake_hub):
    codec = tiny_codec()
    codec.push_to_hub("me/tiny-codec", model_card=False)
    codec.push_to_hub("me/tiny-codec", revision="refs/pr/3")
    (_, repo), (_, upload), (_, _), (_, pr) = fake_hub  # no branch is made for main or for a PR ref
    assert repo["private"] is None and repo["token"] is None
    assert upload["revision"] is None and upload["commit_message"] == "Upload codec12 model"
    assert sorted(p.name for p in upload["folder_path"].iterdir()) == ["config.json", "model.safetensors"]
    assert pr["revision"] == "refs/pr/3"


# ----------------------------------------------------------------------------------------------------- downloads
def test_from_pretrained_passes_hub_options_to_the_download(tmp_path, monkeypatch):
    codec = tiny_codec()
    codec.save_pretrained(tmp_path / "snapshot")
    asked = []

    def fake_snapshot_download(repo_id, **kwargs):
        asked.append((repo_id, kwargs))
        return str(tmp_path / "snapshot")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    loaded = Codec.from_pretrained("me/tiny-codec", revision="v1", cache_dir=tmp_path / "cache", token="hf_x",
                                   dtype="bfloat16")
    ((repo_id, kwargs),) = asked
    assert repo_id == "me/tiny-codec" and kwargs["revision"] == "v1" and kwargs["cache_dir"] == tmp_path / "cache"
    assert kwargs["token"] == "hf_x" and kwargs["library_name"] == "codec12"
    assert kwargs["allow_patterns"] == ["*.json", "*.safetensors"]  # not the README, nor anything else
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
    Codec.from_pretrained("me/tiny-codec")
    assert asked[1][1]["revision"] is None

    def missing(repo_id, **kwargs):
        raise OSError("Revision Not Found")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", missing)
    with pytest.raises(ValueError, match="me/tiny-codec: could not download from the hub at revision 'v9'"):
        Codec.from_pretrained("me/tiny-codec", revision="v9")


def test_revision_is_refused_where_there_is_no_hub_repo(tmp_path, monkeypatch):
    monkeypatch.setattr(codec_module, "_download", lambda *a, **k: pytest.fail("tried to download"))
    tiny_codec().save_pretrained(tmp_path / "m")
    with pytest.raises(ValueError, match=r"revision='v1': '.*m' is a local path; revision selects a version"):
        Codec.from_pretrained(tmp_path / "m", revision="v1")
    with pytest.raises(ValueError, match="revision='main': 'c12-tiny-16k' is a bundled model"):
        Codec.from_pretrained("c12-tiny-16k", revision="main")
    # cache_dir and token only concern downloads: a local model ignores them
    assert Codec.from_pretrained(tmp_path / "m", token="hf_x", cache_dir=tmp_path).num_codebooks == 4


def test_the_bundled_model_loads_offline_in_any_dtype(monkeypatch):
    def offline(*args, **kwargs):
        raise AssertionError("tried the hub")

    monkeypatch.setattr(codec_module, "_download", offline)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for dtype in (None, "float16", torch.bfloat16):
        codec = Codec.from_pretrained("c12-tiny-16k", dtype=dtype)
        assert codec.config.name == "c12-tiny-16k" and not codec.training
        assert {p.dtype for p in codec.parameters()} == {dtype and getattr(torch, str(dtype).split(".")[-1])
                                                          or torch.float32}


# --------------------------------------------------------------------------------------------------------- dtype
@pytest.mark.parametrize(("variant", "bounds"), [
    # relative RMS error of the decoded audio against float32, measured: float16 1.7e-3, bfloat16 4.9e-3
    (dict(), {"float16": 2.5e-3, "bfloat16": 7e-3}),
    # the inverse-STFT decoder: float16 1.1e-3, bfloat16 8.0e-3
    (dict(istft=True), {"float16": 2e-3, "bfloat16": 1.1e-2}),
])
def test_from_pretrained_dtype_casts_the_weights_and_stays_close(tmp_path, variant, bounds):
    codec = tiny_codec(**variant)
    codec.save_pretrained(tmp_path)
    wav = _wav(codec)
    codes, z = codec.encode(wav), codec.encode_latents(wav)
    audio, audio_z = codec.decode(codes), codec.decode_latents(z)
    for dtype, bound in bounds.items():
        half = Codec.from_pretrained(tmp_path, dtype=dtype)
        assert {p.dtype for p in half.parameters()} == {getattr(torch, dtype)}
        assert all(b.dtype == getattr(torch, dtype) for b in half.buffers() if b.is_floating_point())
        out, out_z = half.decode(codes), half.decode_latents(z.to(getattr(torch, dtype)))
        assert out.dtype == out_z.dtype == getattr(torch, dtype)
        for got, want in ((out, audio), (out_z, audio_z)):
            error = ((got.float() - want).pow(2).mean() / want.pow(2).mean()).sqrt().item()
            assert 1e-5 < error < bound, (dtype, error)
        assert half.encode(wav).shape == codes.shape  # encodes too (its codes may differ: see docs/inference.md)


@pytest.mark.parametrize("bad", ["fp16", "int8", torch.int64, torch.float8_e4m3fn, 16])
def test_dtype_must_be_a_floating_type_by_name_or_torch_dtype(bad, tmp_path):
    with pytest.raises(ValueError, match="dtype must be one of float32, float16, bfloat16, float64"):
        Codec.from_pretrained("c12-tiny-16k", dtype=bad)
    with pytest.raises(ValueError, match="dtype must be one of"):
        tiny_codec().save_pretrained(tmp_path, dtype=bad)
    assert not (tmp_path / "model.safetensors").exists()
