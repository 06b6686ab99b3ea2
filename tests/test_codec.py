import dataclasses
import math
from pathlib import Path

import pytest
import torch

from codec12 import Codec, CodecConfig
from codec12.codec import CodecOutput
from tests.conftest import distinct_codes, tiny_codec, tiny_config

ROOT = Path(__file__).resolve().parents[1]

VARIANTS = [
    dict(sample_rate=16000, acoustic="rvq", layout="shared"),
    dict(sample_rate=24000, acoustic="rvq", layout="shared"),
    dict(sample_rate=16000, acoustic="fsq", layout="concat"),
    dict(sample_rate=24000, acoustic="fsq", layout="shared"),
    dict(sample_rate=24000, acoustic="rvq", layout="concat"),
    dict(sample_rate=16000, acoustic="rvq", layout="shared", istft=True),
    dict(sample_rate=16000, acoustic="rvq", layout="shared", istft=True, istft_phase="integrated"),
    dict(sample_rate=16000, acoustic="rvq", layout="shared", istft=True, istft_harmonic=True),
    dict(sample_rate=16000, acoustic="rvq", layout="shared", istft=True, istft_harmonic=True,
         istft_harmonic_envelope="shared"),
]


def noise(codec, frames, batch=1, seed=0, extra=0):
    g = torch.Generator().manual_seed(seed)
    return 0.3 * torch.randn(batch, codec.channels, frames * codec.frame_size + extra, generator=g)


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(map(str, v.values())))
def test_shapes_and_framing(variant):
    codec = tiny_codec(**variant)
    assert codec.frame_rate == 12.5 and codec.frame_size == codec.sample_rate // 12.5
    for extra in (0, 1, codec.frame_size // 2):
        wav = noise(codec, 5, batch=2, extra=extra)
        frames = math.ceil(wav.shape[-1] / codec.frame_size)
        codes = codec.encode(wav)
        assert codes.shape == (2, codec.num_codebooks, frames) and codes.dtype == torch.int64
        for row, size in enumerate(codec.codebook_sizes):
            assert 0 <= codes[:, row].min() and codes[:, row].max() < size
        assert codec.decode(codes).shape == (2, 1, frames * codec.frame_size)
        z = codec.encode_latents(wav)
        assert z.shape == (2, codec.latent_dim, frames) and z.dtype == torch.float32
        assert codec.decode_latents(z).shape == (2, 1, frames * codec.frame_size)


def test_properties_and_bitrate():
    codec = tiny_codec()
    assert codec.num_codebooks == len(codec.codebook_sizes) == 4
    assert codec.bitrate == pytest.approx(12.5 * (6 + 3 * 5))
    assert codec.bitrate_at(1) == pytest.approx(12.5 * 6)
    with pytest.raises(ValueError, match="num_codebooks"):
        codec.bitrate_at(5)


def test_encode_latents_then_quantize_equals_encode():
    codec = tiny_codec(acoustic="fsq", layout="concat")
    wav = noise(codec, 6, batch=2)
    codes = codec.encode(wav)
    assert min(distinct_codes(codes)) >= 3, distinct_codes(codes)
    assert torch.equal(codec.quantizer.encode(codec.encode_latents(wav)), codes)


def test_encode_with_latents_equals_encode_and_encode_latents():
    codec = tiny_codec(acoustic="fsq", layout="concat")
    wav = noise(codec, 6, batch=2)
    for k in (None, 1, 3):
        codes, z = codec.encode_with_latents(wav, k)
        assert torch.equal(codes, codec.encode(wav, k)) and torch.equal(z, codec.encode_latents(wav))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast cannot change the codes, as with encode
        codes, z = codec.encode_with_latents(wav, 2)
    assert torch.equal(codes, codec.encode(wav, 2)) and z.dtype == torch.float32
    with pytest.raises(ValueError, match="num_codebooks"):
        codec.encode_with_latents(wav, codec.num_codebooks + 1)


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(map(str, v.values())))
def test_streaming_equals_offline(variant):
    codec = tiny_codec(**variant)
    frames = 17  # context is 7 steps at 25 Hz: the attention window is crossed several times
    wav = noise(codec, frames, batch=2)
    tolerance = 1e-5
    if variant.get("istft_harmonic"):
        # The harmonic phase integrates the predicted F0, so float32 rounding differences between a chunk's and
        # the whole file's F0 add up (test_harmonic.py bounds them); in float64 the two agree to rounding.
        codec, wav, tolerance = codec.double(), wav.double(), 1e-9
    codes, z = codec.encode(wav), codec.encode_latents(wav)
    assert min(distinct_codes(codes)) >= 4, distinct_codes(codes)  # every row varies: its parity means something
    audio, audio_z = codec.decode(codes), codec.decode_latents(z)
    fs = codec.frame_size
    for chunk in (1, 2, 5):
        spans = [(i, min(i + chunk, frames)) for i in range(0, frames, chunk)]
        with codec.streaming(batch_size=2):
            s_codes = torch.cat([codec.encode(wav[..., a * fs:b * fs]) for a, b in spans], dim=-1)
        with codec.streaming(batch_size=2):
            s_z = torch.cat([codec.encode_latents(wav[..., a * fs:b * fs]) for a, b in spans], dim=-1)
        with codec.streaming(batch_size=2):
            s_audio = torch.cat([codec.decode(codes[..., a:b]) for a, b in spans], dim=-1)
        with codec.streaming(batch_size=2):
            s_audio_z = torch.cat([codec.decode_latents(z[..., a:b]) for a, b in spans], dim=-1)
        assert torch.equal(s_codes, codes), f"chunk={chunk}"
        assert (s_z - z).abs().max() < 1e-5
        assert (s_audio - audio).abs().max() < tolerance
        assert (s_audio_z - audio_z).abs().max() < tolerance


def test_streaming_with_fewer_codebooks_and_restart():
    codec = tiny_codec()
    wav = noise(codec, 6)
    codes = codec.encode(wav, num_codebooks=2)
    for _ in range(2):  # a second stream starts from a clean state
        with codec.streaming(1):
            s = torch.cat([codec.encode(wav[..., i * 1280:(i + 3) * 1280], num_codebooks=2) for i in (0, 3)], -1)
        assert torch.equal(s, codes)


def test_partial_last_frame_equals_zero_padded_stream():
    codec = tiny_codec()
    wav = noise(codec, 4, extra=300)
    padded = torch.nn.functional.pad(wav, (0, -wav.shape[-1] % codec.frame_size))
    with codec.streaming(1):
        s = torch.cat([codec.encode(padded[..., :3 * 1280]), codec.encode(padded[..., 3 * 1280:])], -1)
    assert torch.equal(codec.encode(wav), s)


def test_appending_input_never_changes_earlier_outputs():
    codec = tiny_codec()
    wav = noise(codec, 12)
    short = wav[..., : 7 * codec.frame_size]
    assert torch.equal(codec.encode(wav)[..., :7], codec.encode(short))
    z = codec.encode_latents(wav)
    assert torch.allclose(codec.encode_latents(short), z[..., :7], atol=1e-6)
    codes = codec.encode(wav)
    assert torch.allclose(codec.decode(codes[..., :7]), codec.decode(codes)[..., : 7 * codec.frame_size],
                          atol=1e-6)


def test_decode_fewer_codebooks():
    codec = tiny_codec()
    codes = codec.encode(noise(codec, 6))
    full = codec.decode(codes)
    for k in range(1, codec.num_codebooks):
        audio = codec.decode(codes[:, :k])
        assert audio.shape == full.shape and not torch.allclose(audio, full)
    assert torch.equal(codec.encode(noise(codec, 6), num_codebooks=2), codes[:, :2])


def test_training_forward_output_and_gradients():
    torch.manual_seed(0)
    codec = Codec.from_config(tiny_config()).train()
    wav = noise(codec, 4, batch=3)
    out = codec(wav, generator=torch.Generator().manual_seed(1))
    assert isinstance(out, CodecOutput)
    assert out.audio.shape == wav.shape and out.latents.shape == (3, 32, 4)
    assert out.semantic.shape == out.quantized.shape == (3, 32, 4)
    assert 1 <= out.codes.shape[1] <= codec.num_codebooks
    loss = (out.audio - wav).pow(2).mean() + out.losses["commitment"]
    loss.backward()
    grads = [p.grad for p in codec.encoder.parameters()]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_training_randomness_is_replayed_by_generator():
    codec = Codec.from_config(tiny_config()).train()
    wav = noise(codec, 3, batch=4)
    state = {k: v.clone() for k, v in codec.state_dict().items()}
    a = codec(wav, generator=torch.Generator().manual_seed(5))
    codec.load_state_dict(state)  # undo the EMA update of the first call
    b = codec(wav, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a.codes, b.codes) and torch.allclose(a.audio, b.audio)


def test_level_dropout_keeps_semantic_and_varies_acoustic():
    codec = Codec.from_config(tiny_config()).train()
    wav = noise(codec, 2)
    g = torch.Generator().manual_seed(0)
    counts = {codec(wav, generator=g).codes.shape[1] for _ in range(30)}
    assert min(counts) >= 1 and len(counts) > 1 and max(counts) <= 4


def test_unquantized_rate_one_passes_latents_through():
    cfg = tiny_config()
    cfg = cfg.replace(quantizer=cfg.quantizer.__class__(**{**cfg.quantizer.__dict__, "unquantized_rate": 1.0}))
    codec = Codec.from_config(cfg).train()
    out = codec(noise(codec, 3, batch=2))
    assert torch.equal(out.quantized, out.latents)


def test_unquantized_rate_with_fsq_skips_only_the_semantic_vq():
    cfg = tiny_config(acoustic="fsq", layout="concat")
    cfg = cfg.replace(quantizer=dataclasses.replace(cfg.quantizer, unquantized_rate=1.0, fsq_dither=(1.0, 0.0, 0.0)))
    codec = Codec.from_config(cfg).train()
    out = codec(noise(codec, 3, batch=2))
    d_s = cfg.quantizer.semantic_dim
    # semantic slice passes through; the FSQ slice is still quantized (its dither says: always quantize)
    assert torch.equal(out.quantized[:, :d_s], out.latents[:, :d_s])
    fsq = codec.quantizer.acoustic
    assert torch.allclose(out.quantized[:, d_s:], fsq.decode(out.codes[:, 1:]), atol=1e-6)
    assert not torch.allclose(out.quantized[:, d_s:], out.latents[:, d_s:], atol=1e-3)


def test_fsq_dither_mixes_quantized_noisy_and_continuous():
    codec = Codec.from_config(tiny_config(acoustic="fsq", layout="concat")).train()
    fsq = codec.quantizer.acoustic
    x = torch.randn(400, 4, 3)
    q, codes, _ = fsq.quantize(x, 4, torch.Generator().manual_seed(0))
    grid = (codes.float() - 2) / 2
    on_grid = (q - grid).abs().amax(dim=(1, 2)) < 1e-6
    continuous = (q - fsq.bounded(x)).abs().amax(dim=(1, 2)) < 1e-6
    noisy = ~on_grid & ~continuous
    fractions = [m.float().mean().item() for m in (on_grid, noisy, continuous)]
    assert fractions == pytest.approx([0.5, 0.25, 0.25], abs=0.08)


def test_batch_items_are_independent():
    codec = tiny_codec()
    wav = noise(codec, 5, batch=3)
    assert torch.equal(codec.encode(wav)[1:2], codec.encode(wav[1:2]))


@pytest.mark.slow
@pytest.mark.parametrize("name, params", [("c12-mimi-24k", 79.3e6), ("c12-fsq-24k", None), ("c12-tiny-16k", None)])
def test_full_size_presets(name, params):
    codec = Codec.from_config(CodecConfig.from_preset(name)).eval()
    n = sum(p.numel() for p in codec.parameters())
    if params:
        assert abs(n - params) / params < 0.01
    wav = noise(codec, 10)
    codes = codec.encode(wav)
    assert codes.shape == (1, codec.num_codebooks, 10)
    assert codec.decode(codes).shape == wav.shape


def test_long_offline_attention_is_blocked_and_exact():
    # 60 frames = 120 transformer steps > 2 x context (7): the blocked path, checked against streaming
    codec = tiny_codec()
    wav = noise(codec, 60)
    with codec.streaming(1):
        streamed = torch.cat([codec.encode_latents(wav[..., i * 1280:(i + 10) * 1280]) for i in range(0, 60, 10)], -1)
    assert (codec.encode_latents(wav) - streamed).abs().max() < 1e-5


def test_half_precision_models_decode():
    for kwargs in (dict(acoustic="fsq", layout="concat"), dict()):
        codec = tiny_codec(**kwargs).to(torch.bfloat16)
        codes = codec.encode(noise(codec, 3))
        assert codec.decode(codes).dtype == torch.bfloat16
        z = codec.encode_latents(noise(codec, 3))
        audio = codec.decode_latents(z)
        assert z.dtype == audio.dtype == torch.bfloat16 and audio.shape == (1, 1, 3 * codec.frame_size)


def test_inference_api_builds_no_autograd_graph():
    """The weights require gradients (a model being trained), yet what the inference API returns carries no
    graph, even from latents that require gradients."""
    codec = tiny_codec()
    assert all(p.requires_grad for p in codec.parameters())
    wav = noise(codec, 3).requires_grad_(True)
    z = codec.encode_latents(wav)
    assert not z.requires_grad and not codec.encode(wav).requires_grad
    assert not codec.decode_latents(z.clone().requires_grad_(True)).requires_grad
    assert not codec.decode(codec.encode(wav)).requires_grad


def test_repr_is_one_line_with_rates_codebooks_and_size():
    codec = Codec.from_pretrained("c12-tiny-16k")
    assert repr(codec) == ("Codec(c12-tiny-16k: 16000 Hz, 12.5 frames/s, 12 codebooks (12x1024), 1.50 kbps, "
                           "10.69 M parameters)")
    from codec12.codec import _sizes_text

    assert _sizes_text((8192,) + (21,) * 36) == "8192 + 36x21" and _sizes_text((4, 8, 8)) == "4 + 2x8"


def test_encode_batch_of_variable_length_clips_equals_encoding_each_alone():
    from tests.conftest import speechlike

    codec = tiny_codec(seed=1)
    n = codec.frame_size
    clips = [torch.from_numpy(speechlike(length / codec.sample_rate, codec.sample_rate, seed=i).T.copy())
             for i, length in enumerate((4 * n + 3, 1, n, 5 * n // 2))]
    for k in (None, 2):
        batch = codec.encode_batch(clips, k)
        assert batch.lengths.tolist() == [5, 1, 1, 3]
        assert batch.codes.shape == (4, k or codec.num_codebooks, 5) and batch.codes.dtype == torch.int64
        for clip, codes, length, padded in zip(clips, batch.unbatched(), batch.lengths, batch.codes):
            assert torch.equal(codes, codec.encode(clip[None], k)[0])
            assert not padded[:, length:].any()  # zeros after each item's frames
    assert max(distinct_codes(batch.codes[:1, :, :5])) > 1
    with pytest.raises(ValueError, match=r"clip 1 must be a non-empty \[C, T\] tensor, got \(1, 1, 100\)"):
        codec.encode_batch([clips[0], torch.zeros(1, 1, 100)])
    with pytest.raises(ValueError, match="non-empty list"):
        codec.encode_batch([])
    with codec.streaming(1), pytest.raises(ValueError, match="while streaming"):
        codec.encode_batch(clips)


@pytest.mark.slow
def test_torch_compile_of_the_parts_keeps_codes_and_audio():
    """docs/inference.md: the parts compiled in place (module.compile(), keeping the state dict's names) give the
    same codes and audio within 6e-4 (measured: at most 5.6e-4 on the example clips) on the bundled model."""
    from codec12 import load_audio

    codec = Codec.from_pretrained("c12-tiny-16k")
    compiled = Codec.from_pretrained("c12-tiny-16k")
    for module in (compiled.encoder, compiled.encoder_transformer, compiled.decoder_transformer, compiled.decoder):
        module.compile()
    assert compiled.state_dict().keys() == codec.state_dict().keys()
    wav = load_audio(ROOT / "examples" / "hibari_en.flac", codec.sample_rate)[None]
    for clip in (wav, wav[..., : 3 * codec.sample_rate]):  # a second length compiles again (dynamic shapes)
        codes = codec.encode(clip)
        assert torch.equal(compiled.encode(clip), codes)
        assert (compiled.decode(codes) - codec.decode(codes)).abs().max() < 6e-4
