"""Mimi checkpoints load into codec12 exactly: same codes, same audio, offline and streaming."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from codec12 import Codec, CodecConfig
from codec12.cli import main
from codec12.convert import (
    codec12_to_mimi_state,
    detect_layout,
    mimi_codec_config,
    mimi_from_pretrained,
    save_mimi,
)
from codec12.quantizers import vq_layout

transformers = pytest.importorskip("transformers")

FRAME = 1920
# Small widths, few codebooks, an attention window of 5 steps (25 Hz) that 12 frames (24 steps) cross, and
# LayerScale 1 so the transformers matter to the output (at Mimi's 0.01 a wrong window would barely show).
TINY = dict(hidden_size=32, num_filters=4, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
            intermediate_size=64, codebook_size=16, codebook_dim=8, vector_quantization_hidden_dimension=8,
            num_quantizers=5, sliding_window=5, upsample_groups=32, layer_scale_initial_scale=1.0)
# Largest audio difference to transformers allowed (audio peaks near 1). Measured on these models at most 3.0e-7
# offline and 5.4e-7 streamed (one or two threads); the rotary embedding turned the other way gives 8e-6.
AUDIO_TOLERANCE = 1e-6


def _entries(z: torch.Tensor, shape, g: torch.Generator) -> torch.Tensor:
    """Random codebook entries [N, D] spread like z [B, D, T] (per-channel mean and spread), level by level on
    the residual, so that every level uses many codes."""
    mean, std = z.mean(dim=(0, 2)), z.std(dim=(0, 2))
    return mean + std * torch.randn(shape, generator=g)


def _randomize_codebooks(model, audio: torch.Tensor, seed: int = 0) -> None:
    """Give every codebook random entries at the scale of its input and random usage counts.

    The default init leaves embed_sum at zero (every code the same), which would make code parity vacuous.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        latents = model.encoder(audio).latents
        for rvq in (model.quantizer.semantic_residual_vector_quantizer,
                    model.quantizer.acoustic_residual_vector_quantizer):
            residual = rvq.input_proj(latents) if rvq.input_proj is not None else latents
            for layer in rvq.layers:
                cb = layer.codebook
                cb.cluster_usage.copy_(torch.rand(cb.cluster_usage.shape, generator=g) * 3 + 0.05)
                cb.embed_sum.copy_(_entries(residual, cb.embed_sum.shape, g) * cb.cluster_usage[:, None])
                cb._embed = None  # transformers caches the normalized table
                residual = residual - layer.decode(layer.encode(residual))


def _audio(frames: int, batch: int = 2, seed: int = 1) -> torch.Tensor:
    """Noise whose loudness jumps every 80 ms frame, so that latents (and codes) vary from frame to frame."""
    g = torch.Generator().manual_seed(seed)
    gain = torch.rand(batch, 1, frames, 1, generator=g).pow(2) * 0.8 + 0.02
    return (torch.randn(batch, 1, frames, FRAME, generator=g) * gain).reshape(batch, 1, frames * FRAME)


def _build(config_kwargs: dict, seed: int = 0):
    torch.manual_seed(seed)
    model = transformers.MimiModel(transformers.MimiConfig(**config_kwargs)).eval()
    audio = _audio(12, seed=seed + 10)
    _randomize_codebooks(model, audio, seed)
    # Random weights decode to samples in the thousands; scale the last (linear) conv so that audio peaks
    # near 1 like real speech, and the absolute audio tolerance means what it means for a real model.
    with torch.no_grad():
        peak = model(audio).audio_values.abs().max()
        last = model.decoder.decoder_seanet.layers[-1].conv
        last.weight /= peak
        last.bias /= peak
    return model


@pytest.fixture(scope="module")
def mimi(tmp_path_factory):
    """(transformers model, its save_pretrained dir, converted codec12 model, test audio, its reference codes
    and audio from transformers)."""
    model = _build(TINY)
    directory = tmp_path_factory.mktemp("mimi")
    model.save_pretrained(directory)
    audio = _audio(10)
    return (model, directory, Codec.from_pretrained(directory), audio) + _reference(model, audio)


def _reference(model, audio, k=None):
    with torch.no_grad():
        codes = model.encode(audio, num_quantizers=k).audio_codes
        return codes, model.decode(codes).audio_values


def _unique_codes(codes: torch.Tensor) -> list[int]:
    return [int(codes[:, i].unique().numel()) for i in range(codes.shape[1])]


# ---------------------------------------------------------------------------------------------------- config
def test_default_mimi_config_is_the_c12_mimi_24k_topology():
    config = mimi_codec_config(transformers.MimiConfig().to_dict())
    preset = CodecConfig.from_preset("c12-mimi-24k")
    # Mimi ships plain convs: weight norm is folded, everything else is the preset.
    assert config.seanet.norm == "none"
    assert config.replace(name=preset.name, seanet=dataclasses.replace(config.seanet, norm="weight_norm")) == preset
    assert config.frame_rate == 12.5 and config.codebook_sizes == (2048,) * 32


def test_legacy_config_keys_are_read():
    legacy = {"model_type": "mimi", "frame_rate": 12.5, "rope_theta": 10000.0, "torch_dtype": "float32",
              "transformers_version": "4.45.0.dev0"}
    assert mimi_codec_config(legacy) == mimi_codec_config({})


@pytest.mark.parametrize("change, named", [
    ({"num_key_value_heads": 4}, "num_key_value_heads"),
    ({"use_conv_shortcut": True}, "use_conv_shortcut"),
    ({"use_causal_conv": False}, "use_causal_conv"),
    ({"num_semantic_quantizers": 2}, "num_semantic_quantizers"),
    ({"hidden_act": "silu"}, "hidden_act"),
    ({"upsample_groups": 4}, "upsample_groups"),
    ({"rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4}}, "RoPE"),
    ({"frame_rate": 25.0}, "frame_rate"),
    ({"num_quantizer": 8}, "num_quantizer"),  # a typo is an unknown key, not a silent default
])
def test_unsupported_config_is_rejected_by_name(change, named):
    with pytest.raises(ValueError, match=named):
        mimi_codec_config({"model_type": "mimi", **change}, where="x/config.json")


# ---------------------------------------------------------------------------------------------------- parity
def test_offline_parity_all_and_fewer_codebooks(mimi):
    model, _, codec, audio, ref_codes, ref_audio = mimi
    assert codec.config.seanet.norm == "none" and codec.config.transformer.context == 5
    codes = codec.encode(audio)
    assert min(_unique_codes(codes)) >= 4, "degenerate codebooks would make parity vacuous"
    assert torch.equal(codes, ref_codes)
    assert (codec.decode(codes) - ref_audio).abs().max() <= AUDIO_TOLERANCE
    for k in (1, 3):
        ref_codes_k, ref_audio_k = _reference(model, audio, k)
        assert torch.equal(codec.encode(audio, num_codebooks=k), ref_codes_k)
        assert (codec.decode(ref_codes_k) - ref_audio_k).abs().max() <= AUDIO_TOLERANCE


def test_parity_is_sensitive_to_the_attention_window(mimi):
    """The test audio crosses the 5-step window: a 6-step window would fail the audio bound by far."""
    _, _, codec, audio, _, _ = mimi
    wrong = Codec.from_config(codec.config.replace(
        transformer=dataclasses.replace(codec.config.transformer, context=6))).eval()
    wrong.load_state_dict(codec.state_dict())
    codes = codec.encode(audio)
    assert (wrong.decode(codes) - codec.decode(codes)).abs().max() > 2e-4  # 200 times the parity bound


@pytest.mark.parametrize("chunk_frames", [1, 2, 5])
def test_streaming_parity(mimi, chunk_frames):
    _, _, codec, audio, ref_codes, ref_audio = mimi
    codes, wav = [], []
    with codec.streaming(batch_size=audio.shape[0]):
        for start in range(0, audio.shape[-1], chunk_frames * FRAME):
            step = codec.encode(audio[..., start:start + chunk_frames * FRAME])
            codes.append(step)
            wav.append(codec.decode(step))
    assert torch.equal(torch.cat(codes, dim=-1), ref_codes)
    assert (torch.cat(wav, dim=-1) - ref_audio).abs().max() <= AUDIO_TOLERANCE


def test_nested_transformers_state_dict_names(mimi, tmp_path):
    """transformers 5.x names tensors ``encoder.encoder_seanet...`` in memory; a file with those names loads."""
    model, directory, codec, audio, ref_codes, _ = mimi
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    assert any(k.startswith("encoder.encoder_seanet.") for k in state)
    save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text((directory / "config.json").read_text())
    assert detect_layout(state) == "transformers"
    assert torch.equal(Codec.from_pretrained(tmp_path).encode(audio), ref_codes)


def test_hub_layout_names(mimi):
    """save_pretrained writes the flat layout of the kyutai/mimi hub repo; check the names it uses."""
    directory = mimi[1]
    keys = set(load_file(str(directory / "model.safetensors")))
    for name in ("encoder.layers.0.conv.weight", "encoder_transformer.layers.0.self_attn.q_proj.weight",
                 "downsample.conv.weight", "upsample.conv.weight", "decoder.layers.0.conv.weight",
                 "quantizer.semantic_residual_vector_quantizer.layers.0.codebook.embed_sum"):
        assert name in keys


def test_converted_codebooks_keep_the_ema_statistics(mimi):
    model, codec = mimi[0], mimi[2]
    cb = model.quantizer.acoustic_residual_vector_quantizer.layers[2].codebook
    ours = vq_layout.read_layer(codec.quantizer.acoustic.layers[2])
    assert torch.equal(ours.ema_sum, cb.embed_sum) and torch.equal(ours.ema_count, cb.cluster_usage)
    assert torch.equal(ours.entries, cb.embed_sum / cb.cluster_usage.clamp(min=1e-5)[:, None])


def test_hub_id_goes_through_huggingface_hub(mimi, monkeypatch):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    _, directory, _, audio, ref_codes, _ = mimi
    asked = []

    def fake_snapshot_download(repo_id, **kwargs):
        asked.append(repo_id)
        return str(directory)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    loaded = Codec.from_pretrained("kyutai/mimi")
    assert asked == ["kyutai/mimi"]
    assert torch.equal(loaded.encode(audio), ref_codes)


def test_hub_id_offline_is_a_clear_error(monkeypatch):
    huggingface_hub = pytest.importorskip("huggingface_hub")

    def offline(repo_id, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(ValueError, match="kyutai/mimi: could not download"):
        Codec.from_pretrained("kyutai/mimi")


# ---------------------------------------------------------------------------------------------------- export back
def test_save_mimi_loads_in_transformers(mimi, tmp_path):
    model, _, codec, audio, ref_codes, ref_audio = mimi
    save_mimi(codec, tmp_path)
    back = transformers.MimiModel.from_pretrained(tmp_path).eval()
    codes, wav = _reference(back, audio)
    assert torch.equal(codes, ref_codes) and torch.equal(wav, ref_audio)  # the same weights in the same model
    assert torch.equal(load_file(str(tmp_path / "model.safetensors"))[
        "quantizer.semantic_residual_vector_quantizer.layers.0.codebook.embed_sum"],
        model.quantizer.semantic_residual_vector_quantizer.layers[0].codebook.embed_sum)


def test_moshi_layout_round_trip(mimi, tmp_path):
    _, directory, codec, audio, ref_codes, _ = mimi
    state = codec12_to_mimi_state(codec, "moshi")
    assert "encoder_transformer.transformer.layers.0.self_attn.in_proj_weight" in state
    assert "quantizer.rvq_rest.vq.layers.0._codebook.embedding_sum" in state
    assert "decoder.model.2.convtr.convtr.weight" in state and "upsample.convtr.convtr.convtr.weight" in state
    save_file(state, str(tmp_path / "tokenizer-test.safetensors"))
    (tmp_path / "config.json").write_text((directory / "config.json").read_text())
    back = Codec.from_pretrained(tmp_path / "tokenizer-test.safetensors")
    own = codec.state_dict()
    assert all(torch.equal(v, own[k]) for k, v in back.state_dict().items())
    assert torch.equal(back.encode(audio), ref_codes)


def test_moshi_package_parity(tmp_path):
    """The original layout against the moshi package itself (installed with --no-deps where available)."""
    pytest.importorskip("sentencepiece")
    loaders = pytest.importorskip("moshi.models.loaders")
    torch.manual_seed(0)
    cfg = copy.deepcopy(loaders._mimi_config)
    cfg["seanet"].update(dimension=32, n_filters=4)
    cfg["quantizer"].update(dimension=8, n_q=5, bins=16, input_dimension=32, output_dimension=32)
    cfg["transformer"].update(d_model=32, num_heads=2, num_layers=2, dim_feedforward=64, context=5,
                              layer_scale=1.0, input_dimension=32, output_dimensions=[32])
    model = loaders.get_mimi(None, cfg, num_codebooks=5)
    audio = _audio(10)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        latents = model._encode_to_unquantized_latent(audio)
        for rvq in (model.quantizer.rvq_first, model.quantizer.rvq_rest):
            residual = rvq.input_proj(latents)
            for layer in rvq.vq.layers:
                cb = layer._codebook
                cb.cluster_usage.copy_(torch.rand(cb.cluster_usage.shape, generator=g) * 3 + 0.05)
                cb.embedding_sum.copy_(_entries(residual, cb.embedding_sum.shape, g) * cb.cluster_usage[:, None])
                cb._initialized.fill_(1.0)
                cb._embedding = None
                cb._cached_initialized = False
                residual = residual - layer.decode(layer.encode(residual))
        ref_codes = model.encode(audio)
        ref_audio = model.decode(ref_codes)
    # The released tokenizer file names the fused projections the original way.
    state = {}
    for k, v in model.state_dict().items():
        k = k.replace("self_attn.in_projs.0.weight", "self_attn.in_proj_weight")
        state[k.replace("self_attn.out_projs.0.weight", "self_attn.out_proj.weight")] = v.contiguous()
    save_file(state, str(tmp_path / "tokenizer-tiny.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mimi", **TINY}))
    codec = mimi_from_pretrained(tmp_path)
    codes = codec.encode(audio)
    assert min(_unique_codes(codes)) >= 4
    assert torch.equal(codes, ref_codes)
    assert (codec.decode(codes) - ref_audio).abs().max() <= 3e-7  # measured 6e-8 to 7.5e-8 (peaks near 0.2)


# ---------------------------------------------------------------------------------------------------- errors
def _write(directory, state, config_text):
    directory.mkdir(parents=True, exist_ok=True)
    save_file(state, str(directory / "model.safetensors"))
    (directory / "config.json").write_text(config_text)
    return directory


def test_missing_and_extra_tensors_are_named(mimi, tmp_path):
    directory = mimi[1]
    state = load_file(str(directory / "model.safetensors"))
    config = (directory / "config.json").read_text()
    missing = dict(state)
    del missing["decoder_transformer.layers.1.mlp.fc2.weight"]
    del missing["quantizer.acoustic_residual_vector_quantizer.layers.3.codebook.cluster_usage"]
    with pytest.raises(ValueError, match=r"missing tensors .*decoder_transformer\.layers\.1\.mlp\.fc2\.weight") as e:
        Codec.from_pretrained(_write(tmp_path / "missing", missing, config))
    assert "layers.3.codebook.cluster_usage" in str(e.value)
    extra = {**state, "encoder.layers.99.conv.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match=r"unexpected tensors \[encoder\.layers\.99\.conv\.weight\]"):
        Codec.from_pretrained(_write(tmp_path / "extra", extra, config))


def test_wrong_shapes_and_foreign_files_are_errors(mimi, tmp_path):
    directory = mimi[1]
    state = load_file(str(directory / "model.safetensors"))
    config = json.loads((directory / "config.json").read_text())
    with pytest.raises(ValueError, match="wrong shapes"):  # a checkpoint of a wider model under this config
        Codec.from_pretrained(_write(tmp_path / "shape", state, json.dumps({**config, "intermediate_size": 48})))
    with pytest.raises(ValueError, match="not a Mimi checkpoint"):
        Codec.from_pretrained(_write(tmp_path / "foreign", {"weight": torch.zeros(2)}, json.dumps(config)))
    bad = tmp_path / "corrupt"
    bad.mkdir()
    (bad / "model.safetensors").write_bytes(b"not safetensors")
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="cannot read safetensors"):
        Codec.from_pretrained(bad)
    with pytest.raises(ValueError, match="unsupported Mimi settings.*num_key_value_heads"):
        Codec.from_pretrained(_write(tmp_path / "gqa", state, json.dumps({**config, "num_key_value_heads": 1})))


# ---------------------------------------------------------------------------------------------------- CLI
def test_cli_convert(mimi, tmp_path, capsys):
    _, directory, _, audio, ref_codes, _ = mimi
    out = tmp_path / "converted"
    assert main(["convert", str(directory), str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    loaded = Codec.from_pretrained(out)
    assert json.loads((out / "config.json").read_text())["format_version"] == 1
    assert torch.equal(loaded.encode(audio), ref_codes)

    assert main(["convert", str(directory), str(out)]) == 1
    assert "exists (use -f" in capsys.readouterr().err
    assert main(["convert", str(directory), str(out), "-f"]) == 0

    moshi_dir = tmp_path / "moshi"
    assert main(["convert", str(out), str(moshi_dir), "--format", "moshi"]) == 0
    assert (moshi_dir / "tokenizer-codec12.safetensors").is_file()
    assert main(["convert", str(tmp_path / "nothing-here"), str(tmp_path / "x")]) == 1
    assert "error" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------- full size
@pytest.mark.slow
def test_full_default_config_parity(tmp_path):
    model = _build({})
    model.save_pretrained(tmp_path)
    codec = Codec.from_pretrained(tmp_path)
    audio = _audio(8, batch=1)
    ref_codes, ref_audio = _reference(model, audio)
    codes = codec.encode(audio)
    assert codes.shape == (1, 32, 8) and min(_unique_codes(codes)) >= 2
    assert torch.equal(codes, ref_codes)
    assert (codec.decode(codes) - ref_audio).abs().max() <= 1e-4
    ref_codes_8, ref_audio_8 = _reference(model, audio, 8)
    assert torch.equal(codec.encode(audio, num_codebooks=8), ref_codes_8)
    assert (codec.decode(ref_codes_8) - ref_audio_8).abs().max() <= 1e-4
    wav = []
    with codec.streaming(batch_size=1):
        for start in range(0, audio.shape[-1], 2 * FRAME):
            wav.append(codec.decode(codec.encode(audio[..., start:start + 2 * FRAME])))
    assert (torch.cat(wav, dim=-1) - ref_audio).abs().max() <= 1e-4


@pytest.mark.slow
def test_full_model_parameter_count_matches_preset():
    torch.manual_seed(0)
    model = transformers.MimiModel(transformers.MimiConfig())
    preset = Codec.from_config(CodecConfig.from_preset("c12-mimi-24k")).fold_weight_norm()
    converted = Codec.from_config(mimi_codec_config(transformers.MimiConfig().to_dict()))
    count = [sum(p.numel() for p in m.parameters()) for m in (model, preset, converted)]
    assert count[0] == count[1] == count[2]
    assert 79.0e6 < count[0] < 79.5e6  # Mimi: 79.3M
