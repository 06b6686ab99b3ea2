"""Voxtral TTS's codec in codec12: the preset's topology, checkpoint conversion, and exactness against the
reference implementation (vllm-omni's ``VoxtralTTSAudioTokenizer``, built with random weights under the
checkpoint's own names): same codes, same audio offline and streamed, ONNX export, decode-only models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from codec12 import Codec, CodecConfig
from codec12.cli import main
from codec12.convert.voxtral import (
    ARG_DEFAULTS,
    codec12_key,
    codec12_to_voxtral_state,
    read_voxtral,
    save_voxtral,
    voxtral_args,
    voxtral_codec_config,
    voxtral_key,
)
from codec12.quantizers import vq_layout
from codec12.voxtral.reference import INSTALL, load_reference_module

FRAME = 1920
# Parity bounds, just above what the tests measure with audio peaking near 1 (the bound is 1e-5).
# Offline decoding measures 0. Streamed, attention and convolutions sum over other lengths: <= 1.4e-6 here, 3.4e-6
# at full size with one frame per chunk. The encoder's latents differ by float32 rounding (1.9e-6 here): the
# reference runs its encoder transformers on the batch flattened into one sequence, its tensors laid out otherwise
# in memory; the codes are identical. A model written back from folded weights is re-parametrized (magnitude,
# direction), which moves weights by a rounding step (1.3e-6 on the audio).
OFFLINE_ATOL = 1e-6
STREAM_ATOL = 4e-6
LATENT_ATOL = 3e-6
REFOLDED_ATOL = 2e-6

# Small widths with the released layout otherwise: 4 stages of 2 layers, strides 2,2,2,1 over 240-sample patches,
# grouped key/value heads, and LayerScale 1 so that the transformers shape the output. The 16-step window (8, 4, 2
# at the lower rates) is crossed by the 12-frame test audio at every stage.
TINY = {**ARG_DEFAULTS, "dim": 32, "hidden_dim": 64, "head_dim": 8, "n_heads": 4, "n_kv_heads": 2,
        "semantic_codebook_size": 64, "semantic_dim": 16, "acoustic_dim": 8, "layer_scale_init": 1.0}
# Stages without a conv (kernel and stride 1) shift Voxtral's block indices; 480-sample patches keep 12.5 Hz.
SKIPPING = {**TINY, "pretransform_patch_size": 480, "patch_proj_kernel_size": 3,
            "encoder_convs_kernels_str": "4,1,4,3", "encoder_convs_strides_str": "2,1,2,1",
            "decoder_convs_kernels_str": "3,4,1,4", "decoder_convs_strides_str": "1,2,1,2"}
# What the released params.json holds besides the codec's arguments (vllm-omni reads the same file).
RELEASED = {"channels": 1, "sampling_rate": 24000, "pretransform_patch_size": 240, "patch_proj_kernel_size": 7,
            "semantic_codebook_size": 8192, "semantic_dim": 256, "acoustic_codebook_size": 21, "acoustic_dim": 36,
            "conv_weight_norm": True, "causal": True, "attn_sliding_window_size": 16,
            "half_attn_window_upon_downsampling": True, "dim": 1024, "hidden_dim": 4096, "head_dim": 128,
            "n_heads": 8, "n_kv_heads": 8, "qk_norm_eps": 1e-06, "qk_norm": True, "use_biases": False,
            "norm_eps": 0.01, "layer_scale": True, "layer_scale_init": 0.01,
            "decoder_transformer_lengths_str": "2,2,2,2", "decoder_convs_kernels_str": "3,4,4,4",
            "decoder_convs_strides_str": "1,2,2,2", "voice": {"neutral_female": 0, "casual_male": 1}}
# A few tensors of the TTS model around the codec, as consolidated.safetensors names them.
TTS_TENSORS = {"layers.0.attention.wq.weight": torch.zeros(4, 4), "norm.weight": torch.zeros(4),
               "mm_audio_embeddings.tok_embeddings.weight": torch.zeros(8, 4),
               "mm_audio_embeddings.audio_codebook_embeddings.embeddings.weight": torch.zeros(8, 4),
               "acoustic_transformer.input_projection.weight": torch.zeros(4, 2)}


def _reference_or_skip():
    try:
        return load_reference_module()
    except ImportError as e:
        pytest.skip(f"Voxtral reference not installed ({e}); `make install` installs it ({INSTALL})")


def _audio(frames: int, batch: int = 1, seed: int = 1) -> torch.Tensor:
    """Noise whose loudness jumps every 80 ms frame, so that latents (and codes) vary from frame to frame."""
    g = torch.Generator().manual_seed(seed)
    gain = torch.rand(batch, 1, frames, 1, generator=g).pow(2) * 0.8 + 0.02
    return (torch.randn(batch, 1, frames, FRAME, generator=g) * gain).reshape(batch, 1, frames * FRAME)


def _random_reference(args: dict, seed: int = 0):
    """The reference codec with random weights, spread so that codes vary: every parameter randomized, codebook
    entries placed like the encoder's semantic latents of test audio, the FSQ channels scaled to use many levels,
    and the output conv scaled so that decoded audio peaks near 1 (absolute tolerances then mean what they
    would for a real model)."""
    from codec12.voxtral.reference import build_reference

    torch.manual_seed(seed)
    model = build_reference(args)
    g = torch.Generator().manual_seed(seed)
    sd = args["semantic_dim"]
    last = model.encoder_blocks[-1].conv.parametrizations.weight
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("norm.weight", "_scale")):
                p.copy_(1 + 0.3 * torch.randn(p.shape, generator=g))
            elif name.endswith("original0"):
                p.mul_(0.5 + torch.rand(p.shape, generator=g))
        latents = model._forward_encoder(_audio(12, seed=seed + 5))
        last.original0[sd:] *= 1.0 / latents[:, sd:].std(dim=(0, 2))[:, None, None]
        cb = model.quantizer.semantic_codebook
        usage = torch.rand(cb.cluster_usage.shape, generator=g) * 3 + 0.05
        mean, std = latents[:, :sd].mean(dim=(0, 2)), latents[:, :sd].std(dim=(0, 2))
        cb.embedding_sum.copy_((mean + std * torch.randn(cb.embedding_sum.shape, generator=g)) * usage[:, None])
        usage[:2] = 0  # dead entries, looked up through the epsilon clamp (and far from every latent)
        cb.embedding_sum[:2] *= 1e-4
        cb.cluster_usage.copy_(usage)
        cb._embedding = None  # the reference caches the normalized table
        peak = model.decode(model.quantizer.encode(model._forward_encoder(_audio(12, seed=seed + 6)))).abs().max()
        model.output_proj.conv.parametrizations.weight.original0 /= peak
    return model


def _checkpoint(directory, model, args: dict, *, encoder: bool = True, extra: dict | None = None):
    """A Voxtral TTS model directory as released: params.json and consolidated.safetensors holding the codec's
    tensors under ``audio_tokenizer.`` (without the encoder's unless ``encoder``) and some of the TTS model's."""
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {f"audio_tokenizer.{k}": v.contiguous() for k, v in model.state_dict().items()
               if not k.startswith("audio_token_embedding.")
               and (encoder or not k.startswith(("input_proj.", "encoder_blocks.")))}
    save_file({**tensors, **TTS_TENSORS, **(extra or {})}, str(directory / "consolidated.safetensors"))
    params = {"dim": 3072, "n_layers": 26, "multimodal": {"audio_tokenizer_args": args,
                                                         "audio_model_args": {"n_acoustic_codebook": 36}}}
    (directory / "params.json").write_text(json.dumps(params))
    return directory


def _unique(codes: torch.Tensor) -> list[int]:
    return [int(codes[:, i].unique().numel()) for i in range(codes.shape[1])]


@pytest.fixture(scope="module")
def voxtral(tmp_path_factory):
    """(reference model, full checkpoint dir, converted codec12 model, test audio, reference codes and audio)."""
    _reference_or_skip()
    model = _random_reference(TINY)
    directory = _checkpoint(tmp_path_factory.mktemp("voxtral"), model, TINY)
    audio = _audio(12)
    with torch.no_grad():
        codes = model.quantizer.encode(model._forward_encoder(audio))
        return model, directory, Codec.from_pretrained(directory), audio, codes, model.decode(codes)


# ---------------------------------------------------------------------------------------------------- config
def test_released_arguments_are_the_c12_voxtral_24k_preset():
    preset = CodecConfig.from_preset("c12-voxtral-24k")
    config = voxtral_codec_config(RELEASED, name=preset.name)
    assert config == preset
    assert voxtral_codec_config(RELEASED, encoder=False) != preset  # the release ships no encoder
    assert preset.frame_size == 1920 and preset.latent_dim == 292
    assert preset.codebook_sizes == (8192,) + (21,) * 36 and round(preset.bitrate) == 2139
    assert preset.voxtral.encoder_windows == (16, 8, 4, 2) and preset.voxtral.decoder_windows == (2, 4, 8, 16)
    # and back: every AudioTokenizerArgs field, the released values
    args = voxtral_args(preset)
    assert set(args) == set(ARG_DEFAULTS)
    assert {k: v for k, v in args.items() if k in RELEASED} == {k: v for k, v in RELEASED.items() if k != "voice"}


def test_preset_json_round_trip_and_other_presets_unchanged(tmp_path):
    preset = CodecConfig.from_preset("c12-voxtral-24k")
    data = preset.to_dict()
    assert "seanet" not in data and "transformer" not in data and "istft" not in data
    (tmp_path / "config.json").write_text(preset.to_json())
    assert CodecConfig.from_json_file(tmp_path / "config.json") == preset
    assert CodecConfig.from_preset("c12-fsq-24k").to_dict()["voxtral"] is None
    with pytest.raises(ValueError, match=r"\['depthwise_upsample'\] do not apply to the Voxtral topology"):
        preset.replace(depthwise_upsample=False)
    assert preset.with_norm("none").voxtral.norm == "none" and preset.norm == "weight_norm"


@pytest.mark.parametrize("change, named", [
    ({"causal": False}, "causal"),
    ({"n_kv_heads": 3}, "num_kv_heads"),
    ({"attn_sliding_window_size": 8}, "window"),
    ({"decoder_convs_strides_str": "2,2,2,1"}, "decoder_strides"),
    ({"encoder_convs_kernels_str": "4,4,x,3"}, "encoder_convs_kernels_str"),
    ({"pretransform_patch_size": 200}, "sample_rate"),
    ({"n_head": 8}, "n_head"),  # a typo is an unknown key, not a silent default
])
def test_unsupported_arguments_are_rejected_by_name(change, named):
    with pytest.raises(ValueError, match=named):
        voxtral_codec_config({**TINY, **change}, where="x/params.json")


@pytest.mark.parametrize("args", [TINY, SKIPPING], ids=["tiny", "stages-without-conv"])
def test_tensor_names_map_both_ways(args):
    """Every codec12 tensor has one Voxtral name and back."""
    config = voxtral_codec_config(args)
    keys = [k for k in Codec.from_config(config).state_dict() if not k.startswith("quantizer.")]
    theirs = [voxtral_key(k, config) for k in keys]
    assert len(set(theirs)) == len(keys) and [codec12_key(k, config) for k in theirs] == keys


@pytest.mark.parametrize("args", [TINY, SKIPPING], ids=["tiny", "stages-without-conv"])
def test_tensor_names_are_the_reference_parameters(args):
    _reference_or_skip()
    config = voxtral_codec_config(args)
    theirs = {voxtral_key(k, config) for k in Codec.from_config(config).state_dict() if not k.startswith("quantizer.")}
    reference = _random_reference(args)
    assert theirs == {k for k in reference.state_dict() if not k.startswith(("audio_token_embedding.", "quantizer."))}


def test_frozen_codebook_passes_gradients_and_keeps_its_entries():
    """Behind a frozen semantic codebook (its module in eval mode, as the trainer holds frozen parts) the encoder
    still learns: straight-through gradients and a commitment loss, and no EMA update; a codebook that trains
    moves its entries. Out of training, the FSQ values are the decoded codes."""
    torch.manual_seed(0)
    codec = Codec.from_config(voxtral_codec_config(TINY)).train()
    quantizer = codec.quantizer
    latents = torch.cat([torch.randn(4, 16, 6), torch.rand(4, 8, 6) * 2 - 1], dim=1).requires_grad_(True)
    quantizer.semantic.eval()
    before = {k: v.clone() for k, v in quantizer.state_dict().items()}
    out = quantizer(latents, generator=torch.Generator().manual_seed(0))
    (out.quantized[:, :16].sum() + out.losses["commitment"]).backward()
    assert latents.grad[:, :16].abs().min() > 0.5 and out.losses["commitment"] > 0
    assert all(torch.equal(v, quantizer.state_dict()[k]) for k, v in before.items())
    assert torch.equal(out.codes, quantizer.encode(latents.detach()))
    quantizer.semantic.train()
    quantizer(latents.detach())
    assert not torch.equal(vq_layout.read_codebook(before, "semantic.layers.0").ema_sum,
                           vq_layout.read_layer(quantizer.semantic.layers[0]).ema_sum)
    quantizer.eval()
    values = quantizer(latents.detach()).quantized[:, 16:]
    assert torch.equal(values, quantizer.acoustic.decode(quantizer.encode(latents.detach())[:, 1:]))


# ---------------------------------------------------------------------------------------------------- parity
def test_codes_are_identical(voxtral):
    model, _, codec, audio, ref_codes, _ = voxtral
    assert codec.config.has_encoder and codec.config.norm == "weight_norm"
    codes = codec.encode(audio)
    assert codes.shape == (1, 9, 12)
    assert min(_unique(codes)) >= 5, "degenerate codes would make parity vacuous"
    assert torch.equal(codes, ref_codes)


def test_quantizer_matches_at_the_rounding_boundaries(voxtral):
    """Voxtral's quantizer against the reference's on many latents, the FSQ values within 1e-4 of a rounding
    boundary (a bound with a margin, as codec12's own FSQ has, would round some of them the other way) and the
    semantic latents between codebook entries; decoding every level."""
    model, _, codec = voxtral[:3]
    g = torch.Generator().manual_seed(5)
    level = torch.randint(0, 20, (2, 8, 4000), generator=g)
    near = (level + 0.5 + (torch.rand(level.shape, generator=g) - 0.5) * 2e-4) * 2 / 20 - 1
    raw = torch.cat([torch.randn(2, 16, 4000, generator=g), torch.atanh(near)], dim=1)
    entries = model.quantizer.semantic_codebook.embedding
    pairs = torch.randint(0, 64, (2, 2, 4000), generator=g)
    raw[:, :16] = (entries[pairs[:, 0]] + entries[pairs[:, 1]]).transpose(1, 2) / 2 + 1e-3 * raw[:, :16]
    raw = raw.transpose(1, 2).contiguous().transpose(1, 2)  # laid out as the reference's encoder leaves it
    with torch.no_grad():
        expected = model.quantizer.encode(raw)
        codes = codec.quantizer.encode(torch.cat([raw[:, :16], torch.tanh(raw[:, 16:])], dim=1))
        assert torch.equal(codes, expected)
        assert torch.equal(codec.quantizer.decode(codes), model.quantizer.decode(codes))
        every = torch.arange(21).repeat(1, 9, 1) % torch.tensor([64] + [21] * 8)[None, :, None]
        assert torch.equal(codec.quantizer.decode(every), model.quantizer.decode(every))


def test_latents_are_the_decoder_input_before_rounding(voxtral):
    """encode_latents: the encoder's 292-d output with the FSQ channels tanh-bounded, i.e. what Voxtral's FSQ
    rounds; decode_latents decodes it exactly as the reference decoder does."""
    model, _, codec, audio, ref_codes, _ = voxtral
    z = codec.encode_latents(audio)
    with torch.no_grad():
        emb = model._forward_encoder(audio)
        expected = torch.cat([emb[:, :16], torch.tanh(emb[:, 16:])], dim=1)
        ref_audio = model._forward_decoder(z)
    assert (z - expected).abs().max() <= LATENT_ATOL
    assert torch.equal(codec.quantizer.encode(z), ref_codes)
    assert (codec.decode_latents(z) - ref_audio).abs().max() <= OFFLINE_ATOL


def test_decoded_audio_is_identical(voxtral):
    model, _, codec, _, ref_codes, ref_audio = voxtral
    assert (codec.decode(ref_codes) - ref_audio).abs().max() <= OFFLINE_ATOL
    assert ref_audio.abs().max() > 0.5
    g = torch.Generator().manual_seed(3)  # random codes over the whole range, a batch of two
    codes = torch.cat([torch.randint(0, 64, (2, 1, 20), generator=g), torch.randint(0, 21, (2, 8, 20), generator=g)],
                      dim=1)
    with torch.no_grad():
        assert (codec.decode(codes) - model.decode(codes)).abs().max() <= OFFLINE_ATOL


def test_frame_latents_decode_generated_frames(voxtral):
    """A TTS frame (semantic token + continuous FSQ values) decodes in one call; on the FSQ grid it is decode."""
    model, _, codec, _, ref_codes, ref_audio = voxtral
    values = ref_codes[:, 1:] * 2 / 20 - 1
    z = codec.quantizer.frame_latents(ref_codes[:, 0], values)
    assert torch.equal(codec.decode_latents(z), codec.decode(ref_codes))
    g = torch.Generator().manual_seed(4)
    continuous = torch.rand(values.shape, generator=g) * 2 - 1
    z = codec.quantizer.frame_latents(ref_codes[:, 0], continuous)
    with torch.no_grad():
        expected = model._forward_decoder(torch.cat([model.quantizer.semantic_codebook.decode(ref_codes[:, :1]),
                                                     continuous], dim=1))
    assert (codec.decode_latents(z) - expected).abs().max() <= OFFLINE_ATOL
    with pytest.raises(ValueError, match="frame_latents takes"):
        codec.quantizer.frame_latents(ref_codes[:, 0], continuous[:, :3])


@pytest.mark.parametrize("chunk_frames", [1, 2, 5])
def test_streaming_parity(voxtral, chunk_frames):
    model, _, codec, audio, ref_codes, ref_audio = voxtral
    codes, wav, from_latents = [], [], []
    with codec.streaming(batch_size=1):
        for start in range(0, audio.shape[-1], chunk_frames * FRAME):
            step = codec.encode(audio[..., start:start + chunk_frames * FRAME])
            codes.append(step)
            wav.append(codec.decode(step))
    assert torch.equal(torch.cat(codes, dim=-1), ref_codes)
    assert (torch.cat(wav, dim=-1) - ref_audio).abs().max() <= STREAM_ATOL
    z = codec.encode_latents(audio)
    with codec.streaming(batch_size=1):
        for start in range(0, z.shape[-1], chunk_frames):
            from_latents.append(codec.decode_latents(z[..., start:start + chunk_frames]))
    with torch.no_grad():
        assert (torch.cat(from_latents, dim=-1) - model._forward_decoder(z)).abs().max() <= STREAM_ATOL


@pytest.mark.parametrize("side, stage", [("decoder", 0), ("decoder", 3), ("encoder", 0)])
def test_parity_is_sensitive_to_the_attention_window(voxtral, side, stage):
    """One step more of attention window in one stage moves the latents or the audio far beyond the parity
    bounds: the windows (16 steps at 100 Hz, halved per stride-2 conv) are checked, not assumed."""
    _, _, codec, audio, ref_codes, ref_audio = voxtral
    wrong = Codec.from_config(codec.config).eval()
    wrong.load_state_dict(codec.state_dict())
    transformers = [b for b in getattr(wrong, f"{side}_transformer").blocks if hasattr(b, "layers")]
    for layer in transformers[stage].layers:
        layer.attention.window += 1
    if side == "decoder":
        assert (wrong.decode(ref_codes) - ref_audio).abs().max() > 100 * STREAM_ATOL
    else:
        assert (wrong.encode_latents(audio) - codec.encode_latents(audio)).abs().max() > 100 * LATENT_ATOL


def test_stages_without_conv(tmp_path):
    _reference_or_skip()
    model = _random_reference(SKIPPING)
    codec = Codec.from_pretrained(_checkpoint(tmp_path, model, SKIPPING))
    audio = _audio(12, seed=3)
    with torch.no_grad():
        ref_codes = model.quantizer.encode(model._forward_encoder(audio))
        ref_audio = model.decode(ref_codes)
    codes = codec.encode(audio)
    assert min(_unique(codes)) >= 4 and torch.equal(codes, ref_codes)
    assert (codec.decode(codes) - ref_audio).abs().max() <= OFFLINE_ATOL


def test_partial_last_frame(voxtral):
    """codec12 zero-pads a partial last frame to a whole one (as streaming would); the reference pads each conv.
    Every whole frame's codes agree."""
    model, _, codec, audio, _, _ = voxtral
    ragged = audio[..., : 10 * FRAME + 700]
    with torch.no_grad():  # _tokenize_audio's steps in float32: zeros up to a whole patch, then the encoder
        ref = model.quantizer.encode(model._forward_encoder(torch.nn.functional.pad(ragged, (0, -700 % 240))))
    codes = codec.encode(ragged)
    assert codes.shape[-1] == ref.shape[-1] == 11
    assert torch.equal(codes[..., :10], ref[..., :10])


def test_weights_folded_at_conversion_when_the_patch_convs_are_plain(voxtral, tmp_path):
    """conv_weight_norm false: the patch convs hold plain weights; the model converts with every conv folded."""
    model, _, _, audio, ref_codes, ref_audio = voxtral
    args = {**TINY, "conv_weight_norm": False}
    state = model.state_dict()
    extra = {}
    for conv in ("input_proj", "output_proj"):
        g, v = (state.pop(f"{conv}.conv.parametrizations.weight.original{i}") for i in (0, 1))
        extra[f"audio_tokenizer.{conv}.conv.weight"] = torch._weight_norm(v, g, 0)
    save_file({**{f"audio_tokenizer.{k}": v.contiguous() for k, v in state.items()
                  if not k.startswith("audio_token_embedding.")}, **extra},
              str(tmp_path / "consolidated.safetensors"))
    (tmp_path / "params.json").write_text(json.dumps({"multimodal": {"audio_tokenizer_args": args}}))
    codec = Codec.from_pretrained(tmp_path)
    assert codec.config.norm == "none"
    assert torch.equal(codec.encode(audio), ref_codes)
    assert (codec.decode(ref_codes) - ref_audio).abs().max() <= OFFLINE_ATOL


# ---------------------------------------------------------------------------------------------------- checkpoints
def test_decode_only_release(voxtral, tmp_path):
    model, _, _, audio, ref_codes, ref_audio = voxtral
    directory = _checkpoint(tmp_path, model, TINY, encoder=False)
    checkpoint = read_voxtral(directory)
    assert not checkpoint.has_encoder
    assert checkpoint.left_out == {"layers.*": 1, "norm.*": 1, "mm_audio_embeddings.*": 2, "acoustic_transformer.*": 1}
    codec = Codec.from_pretrained(directory)
    assert not codec.config.has_encoder and not codec.config.voxtral.encoder
    assert not any(k.startswith(("encoder.", "encoder_transformer.", "downsample.")) for k in codec.state_dict())
    assert (codec.decode(ref_codes) - ref_audio).abs().max() <= OFFLINE_ATOL
    with pytest.raises(ValueError, match=r"no encoder.*input_proj.*voxtral-encoder recipe"):
        codec.encode(audio)
    with pytest.raises(ValueError, match="voxtral-encoder"):
        codec.encode_latents(audio)
    codec.save_pretrained(tmp_path / "c12")
    again = Codec.from_pretrained(tmp_path / "c12")
    assert not again.config.has_encoder and torch.equal(again.decode(ref_codes), codec.decode(ref_codes))


def test_release_layout_names(voxtral):
    """The names vllm-omni loads from the checkpoint (its load_weight raises on any other)."""
    keys = set(load_file(str(voxtral[1] / "consolidated.safetensors")))
    for name in ("audio_tokenizer.input_proj.conv.parametrizations.weight.original0",
                 "audio_tokenizer.encoder_blocks.7.conv.parametrizations.weight.original1",
                 "audio_tokenizer.decoder_blocks.0.conv.parametrizations.weight.original0",
                 "audio_tokenizer.decoder_blocks.1.layers.0.attention.wq.weight",
                 "audio_tokenizer.decoder_blocks.7.layers.1.attention.k_norm.weight",
                 "audio_tokenizer.decoder_blocks.7.layers.1.feed_forward.w3.weight",
                 "audio_tokenizer.decoder_blocks.3.layers.0.attention_scale",
                 "audio_tokenizer.output_proj.conv.parametrizations.weight.original1",
                 "audio_tokenizer.quantizer.semantic_codebook.embedding_sum",
                 "audio_tokenizer.quantizer.semantic_codebook.cluster_usage"):
        assert name in keys


def test_codebook_keeps_the_ema_statistics(voxtral):
    model, _, codec = voxtral[:3]
    cb, ours = model.quantizer.semantic_codebook, vq_layout.read_layer(codec.quantizer.semantic.layers[0])
    assert torch.equal(ours.ema_sum, cb.embedding_sum) and torch.equal(ours.ema_count, cb.cluster_usage)
    assert torch.equal(ours.entries, cb.embedding)


def test_save_voxtral_loads_in_the_reference(voxtral, tmp_path):
    """Written back in Voxtral's layout (every conv weight-normed, as vllm-omni loads them), from the converted
    model and from a folded one (a release): the reference gives the same codes and audio."""
    from codec12.voxtral.reference import build_reference

    _, _, codec, audio, ref_codes, ref_audio = voxtral
    for name, model in (("converted", codec), ("folded", codec.folded())):
        save_voxtral(model, tmp_path / name)
        checkpoint = read_voxtral(tmp_path / name)
        back = build_reference(checkpoint.args, checkpoint.tensors)
        with torch.no_grad():
            assert torch.equal(back.quantizer.encode(back._forward_encoder(audio)), ref_codes)
            bound = OFFLINE_ATOL if name == "converted" else REFOLDED_ATOL
            assert (back.decode(ref_codes) - ref_audio).abs().max() <= bound
    state = codec12_to_voxtral_state(codec)
    original = load_file(str(voxtral[1] / "consolidated.safetensors"))
    assert all(torch.equal(v, original[f"audio_tokenizer.{k}"]) for k, v in state.items())


def test_missing_unexpected_and_foreign_tensors_are_named(voxtral, tmp_path):
    state = load_file(str(voxtral[1] / "consolidated.safetensors"))
    params = (voxtral[1] / "params.json").read_text()

    def write(name, tensors):
        (tmp_path / name).mkdir()
        save_file(tensors, str(tmp_path / name / "consolidated.safetensors"))
        (tmp_path / name / "params.json").write_text(params)
        return tmp_path / name

    gone = "audio_tokenizer.decoder_blocks.5.layers.1.feed_forward.w2.weight"
    missing = {k: v for k, v in state.items() if k != gone}
    with pytest.raises(ValueError, match=r"missing tensors \[decoder_blocks\.5\.layers\.1\.feed_forward\.w2\.weight"):
        Codec.from_pretrained(write("missing", missing))
    partial = {k: v for k, v in state.items() if not k.startswith("audio_tokenizer.encoder_blocks.3.")}
    with pytest.raises(ValueError, match=r"missing tensors \[encoder_blocks\.3\.conv"):
        Codec.from_pretrained(write("partial-encoder", partial))
    with pytest.raises(ValueError, match=r"unexpected tensors \[decoder_blocks\.9\.conv\.weight\]"):
        Codec.from_pretrained(write("extra", {**state, "audio_tokenizer.decoder_blocks.9.conv.weight": torch.zeros(1)}))
    with pytest.raises(ValueError, match=r"neither the codec's .* \[vision_encoder\.patch\.weight\]"):
        Codec.from_pretrained(write("foreign", {**state, "vision_encoder.patch.weight": torch.zeros(1)}))
    wide = json.loads(params)
    wide["multimodal"]["audio_tokenizer_args"]["hidden_dim"] = 48
    (tmp_path / "wide").mkdir()
    (tmp_path / "wide" / "params.json").write_text(json.dumps(wide))
    save_file(state, str(tmp_path / "wide" / "consolidated.safetensors"))
    with pytest.raises(ValueError, match="wrong shapes"):
        Codec.from_pretrained(tmp_path / "wide")
    (tmp_path / "nothing").mkdir()
    (tmp_path / "nothing" / "params.json").write_text(params)
    with pytest.raises(ValueError, match="no consolidated.safetensors"):
        Codec.from_pretrained(tmp_path / "nothing")


def test_cli_convert(voxtral, tmp_path, capsys):
    model, directory, _, audio, ref_codes, ref_audio = voxtral
    release = _checkpoint(tmp_path / "release", model, TINY, encoder=False)
    out = tmp_path / "converted"
    assert main(["convert", str(release), str(out)]) == 0
    printed = capsys.readouterr().out
    assert "left out the TTS model's 5" in printed and "decoder side only" in printed
    loaded = Codec.from_pretrained(out)
    assert (loaded.decode(ref_codes) - ref_audio).abs().max() <= OFFLINE_ATOL
    back = tmp_path / "back"
    assert main(["convert", str(directory), str(back), "--format", "voxtral"]) == 0
    assert torch.equal(Codec.from_pretrained(back).encode(audio), ref_codes)
    assert main(["convert", str(release), str(out)]) == 1
    assert "exists (use -f" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------- ONNX
def test_onnx_export(voxtral, tmp_path):
    pytest.importorskip("onnxruntime")
    from codec12.export.onnx import export_onnx
    from codec12.export.runtime import OnnxCodec

    _, _, codec, audio, ref_codes, ref_audio = voxtral
    export_onnx(codec, tmp_path / "full")
    runtime = OnnxCodec(tmp_path / "full")
    wav, codes = audio.numpy(), ref_codes.numpy()
    assert np.array_equal(runtime.encode(wav), codes)
    assert np.abs(runtime.decode(codes) - ref_audio.numpy()).max() <= STREAM_ATOL
    z = codec.encode_latents(audio)
    assert np.abs(runtime.encode_latents(wav) - z.numpy()).max() <= STREAM_ATOL
    assert np.abs(runtime.decode_latents(z.numpy()) - codec.decode_latents(z).numpy()).max() <= STREAM_ATOL
    with runtime.streaming(batch_size=1):
        streamed = [runtime.encode(c) for c in np.split(wav, 4, axis=-1)]
        decoded = [runtime.decode(c) for c in np.split(codes, 6, axis=-1)]
    assert np.array_equal(np.concatenate(streamed, -1), codes)
    assert np.abs(np.concatenate(decoded, -1) - ref_audio.numpy()).max() <= STREAM_ATOL


def test_onnx_export_of_a_decode_only_model(voxtral, tmp_path):
    pytest.importorskip("onnxruntime")
    from codec12.export.onnx import export_onnx
    from codec12.export.runtime import OnnxCodec

    model, _, _, audio, ref_codes, ref_audio = voxtral
    codec = Codec.from_pretrained(_checkpoint(tmp_path / "release", model, TINY, encoder=False))
    export = export_onnx(codec, tmp_path / "onnx")
    assert set(export.files) == {"decoder", "decoder_latents", "decoder_step", "decoder_latents_step"}
    runtime = OnnxCodec(tmp_path / "onnx")
    assert np.abs(runtime.decode(ref_codes.numpy()) - ref_audio.numpy()).max() <= STREAM_ATOL
    with pytest.raises(ValueError, match="no 'encoder' graph"):
        runtime.encode(audio.numpy())
    with runtime.streaming(batch_size=1):
        decoded = [runtime.decode(c) for c in np.split(ref_codes.numpy(), 3, axis=-1)]
        with pytest.raises(ValueError, match="no 'encoder' graph"):
            runtime.encode(audio.numpy())
    assert np.abs(np.concatenate(decoded, -1) - ref_audio.numpy()).max() <= STREAM_ATOL


# ---------------------------------------------------------------------------------------------------- full size
@pytest.mark.slow
def test_full_size_parity(tmp_path):
    """The released arguments, random weights: identical codes, audio within the bounds, offline and streamed."""
    _reference_or_skip()
    args = {**ARG_DEFAULTS, **{k: v for k, v in RELEASED.items() if k != "voice"}}
    model = _random_reference(args)
    codec = Codec.from_pretrained(_checkpoint(tmp_path, model, args))
    assert codec.config.replace(name="c12-voxtral-24k") == CodecConfig.from_preset("c12-voxtral-24k")
    assert 298.5e6 < sum(p.numel() for p in codec.parameters()) < 299.5e6
    audio = _audio(8, seed=3)
    with torch.no_grad():
        ref_codes = model.quantizer.encode(model._forward_encoder(audio))
        ref_audio = model.decode(ref_codes)
    codes = codec.encode(audio)
    assert min(_unique(codes)) >= 3 and torch.equal(codes, ref_codes)
    assert (codec.decode(codes) - ref_audio).abs().max() <= OFFLINE_ATOL
    wav = []
    with codec.streaming(batch_size=1):
        for start in range(0, audio.shape[-1], 2 * FRAME):
            step = codec.encode(audio[..., start:start + 2 * FRAME])
            assert torch.equal(step, ref_codes[..., start // FRAME:start // FRAME + 2])
            wav.append(codec.decode(step))
    assert (torch.cat(wav, dim=-1) - ref_audio).abs().max() <= STREAM_ATOL
