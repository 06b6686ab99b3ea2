from pathlib import Path

import pytest
import torch
from vector_quantize_pytorch import FSQ

from codec12 import Codec, QuantizerConfig, load_audio
from codec12.quantizers import ResidualVQ, ScalarQuantizer, SplitQuantizer
from codec12.quantizers.fsq import BOUND_MARGIN
from codec12.quantizers.vq import nearest_entry

ROOT = Path(__file__).resolve().parents[1]


def fit_codebooks(rvq: ResidualVQ, x: torch.Tensor) -> None:
    """Set each level's entries to samples of that level's residual, as k-means init would."""
    g = torch.Generator().manual_seed(0)
    for level in range(rvq.num_levels):
        residual = x - rvq.decode(rvq.encode(x, level)) if level else x
        flat = residual.transpose(1, 2).reshape(-1, residual.shape[1])
        pick = torch.randperm(flat.shape[0], generator=g)[: rvq.codebook_size]
        rvq.set_codebook(level, flat[pick])


def test_rvq_error_decreases_with_each_level():
    torch.manual_seed(0)
    rvq = ResidualVQ(dim=8, codebook_dim=8, codebook_size=128, num_levels=4).eval()
    x = torch.randn(4, 8, 100)
    fit_codebooks(rvq, x)
    errors = [(rvq.decode(rvq.encode(x, k)) - x).pow(2).mean().item() for k in range(1, 5)]
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.5 * errors[0]


def test_rvq_round_trip_on_codebook_entries():
    torch.manual_seed(0)
    rvq = ResidualVQ(dim=6, codebook_dim=6, codebook_size=32, num_levels=2).eval()
    codes = torch.randint(0, 32, (2, 1, 9))
    x = rvq.decode(codes)  # exact level-0 entries
    again = rvq.encode(x, 2)
    assert torch.equal(again[:, :1], codes)
    assert torch.allclose(rvq.decode(again[:, :1]), x)


def test_rvq_codes_match_library_nearest_neighbour():
    torch.manual_seed(0)
    rvq = ResidualVQ(dim=8, codebook_dim=8, codebook_size=64, num_levels=3).eval()
    x = torch.randn(2, 8, 20)
    codes = rvq.encode(x, 3)
    residual = x
    for level, layer in enumerate(rvq.layers):
        quantized, indices, _ = layer(residual)  # vector-quantize-pytorch's own eval path
        assert torch.equal(indices, codes[:, level])
        residual = residual - quantized


@pytest.mark.parametrize("rows, entries", [(40, 64), (3, 1024), (500, 32)])
def test_nearest_entry_is_torch_cdist_bit_for_bit(rows, entries):
    """The traced nearest-entry search computes torch.cdist's distances exactly (what inference used before it was
    written out for export), so no code moves by a rounding difference: checked on points almost halfway between
    two entries, where another arithmetic of the same distance picks the other entry now and then."""
    g = torch.Generator().manual_seed(rows)
    table = torch.randn(entries, 8, generator=g)
    pairs = torch.randint(0, entries, (2, 2 * rows), generator=g)
    halfway = (table[pairs[0]] + table[pairs[1]]) / 2 + 1e-6 * torch.randn(2 * rows, 8, generator=g)
    x = torch.cat([torch.randn(2 * rows, 8, generator=g), halfway]).reshape(4, rows, 8)
    reference = torch.cdist(x.reshape(1, -1, 8), table[None])[0].argmin(-1).view(4, rows)
    assert torch.equal(nearest_entry(x, table), reference)
    tied = torch.cat([table, table])  # every entry twice: ties go to the first copy
    assert torch.equal(nearest_entry(x, tied), reference)


def test_rvq_code_equal_to_codebook_size_adds_nothing():
    torch.manual_seed(0)
    rvq = ResidualVQ(dim=12, codebook_dim=6, codebook_size=32, num_levels=3).eval()
    codes = torch.randint(0, 32, (2, 3, 5))
    padded = codes.clone()
    padded[:, 2] = 32
    assert torch.equal(rvq.decode(padded), rvq.decode(codes[:, :2]))
    padded[:, 1:] = 32
    assert torch.equal(rvq.decode(padded), rvq.decode(codes[:, :1]))
    assert not torch.allclose(rvq.decode(codes), rvq.decode(codes[:, :2]))


@pytest.mark.parametrize("levels", [3, 5, 7, 13, 21])
def test_fsq_codes_and_values_are_the_librarys(levels):
    """ScalarQuantizer.encode/decode (written out to trace) against vector-quantize-pytorch's own FSQ, on a dense
    sweep and on the 129 float32 neighbours of each level's edge: a drift of the bound (its margin; its scale in
    float64 instead of the library's float32, one ulp apart for 7 and 13 levels) moves codes there."""
    dims = 4
    ours = ScalarQuantizer(dim=dims, num_dims=dims, levels=levels, dither=(1.0, 0.0, 0.0)).eval()
    library = FSQ(levels=[levels], num_codebooks=dims, dim=dims).eval()
    edges = torch.atanh((torch.arange(levels - 1, dtype=torch.float64) - levels // 2 + 0.5) / ours.half_range).float()
    ulp = torch.nextafter(edges.abs(), torch.tensor(float("inf"))) - edges.abs()
    near = (edges[:, None] + torch.arange(-64, 65) * ulp[:, None]).flatten()
    near = torch.cat([near, near[: -near.numel() % dims or None].new_zeros(-near.numel() % dims)])
    z = torch.cat([torch.linspace(-4, 4, 2 ** 16), near]).reshape(1, dims, -1)  # [B, D, T]
    for x in (z, z.double()):  # the library rounds float64 input in float64, so does encode
        values, indices = library(x.transpose(1, 2))
        codes = ours.encode(x, dims)
        assert torch.equal(codes, indices.transpose(1, 2).long())
        assert torch.equal(ours.decode(codes), values.transpose(1, 2).float())
        assert sorted(codes.unique().tolist()) == list(range(levels))


def test_bundled_model_codes_are_the_librarys():
    """Every code of the shipped model on real speech, level by level, is what vector-quantize-pytorch's own
    quantizers (their eval forward) pick, and what torch.cdist picks."""
    codec = Codec.from_pretrained("c12-tiny-16k")
    wav = load_audio(ROOT / "examples" / "hibari_en.flac", codec.sample_rate)[None, :, : 6 * codec.sample_rate]
    codes, latents = codec.encode_with_latents(wav)
    q = codec.quantizer
    assert q.config.layout == "shared" and q.config.acoustic == "rvq"
    row = 0
    with torch.no_grad():
        for branch in (q.semantic, q.acoustic):
            residual = branch.input_proj(latents)
            for level, layer in enumerate(branch.layers):
                quantized, indices, _ = layer(residual)
                nearest = torch.cdist(residual.transpose(1, 2), branch.codebook(level)[None]).argmin(-1)
                assert torch.equal(codes[:, row], indices) and torch.equal(codes[:, row], nearest), row
                assert len(indices.unique()) >= 20, row  # real codes, many of them
                residual = residual - quantized
                row += 1
    assert row == codec.num_codebooks


def test_rvq_training_updates_ema_codebooks_and_returns_commitment():
    torch.manual_seed(0)
    rvq = ResidualVQ(dim=16, codebook_dim=8, codebook_size=32, num_levels=2).train()
    before = rvq.codebook(0).clone()
    x = torch.randn(2, 16, 10, requires_grad=True)
    q, codes, loss = rvq.quantize(x, 2)
    assert q.shape == x.shape and codes.shape == (2, 2, 10) and loss.item() > 0
    assert not torch.equal(before, rvq.codebook(0))
    q.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_fsq_rows_levels_and_round_trip():
    fsq = ScalarQuantizer(dim=36, num_dims=36, levels=21, dither=(1.0, 0.0, 0.0)).eval()
    codes = torch.randint(0, 21, (2, 36, 7))
    values = fsq.decode(codes)
    assert values.min() >= -1 and values.max() <= 1
    assert torch.equal(fsq.encode(torch.atanh(values.clamp(-0.999, 0.999) / (1 + BOUND_MARGIN)), 36), codes)
    x = torch.randn(3, 36, 5) * 3
    c = fsq.encode(x, 36)
    assert c.min() >= 0 and c.max() <= 20
    assert torch.equal(fsq.encode(fsq.decode(c).atanh().mul(1 / (1 + BOUND_MARGIN)), 36), c)


def test_fsq_fewer_rows_decode_as_centre():
    fsq = ScalarQuantizer(dim=4, num_dims=4, levels=5, dither=(1.0, 0.0, 0.0)).eval()
    codes = torch.randint(0, 5, (1, 4, 3))
    assert torch.equal(fsq.decode(codes[:, :2])[:, 2:], torch.zeros(1, 2, 3))


def test_fsq_full_voxtral_size_builds():
    # FSQ(levels=[21]*36) would need a 21**36-entry implicit codebook; one row per dimension does not.
    q = SplitQuantizer(QuantizerConfig(layout="concat", semantic_codebook_size=64, semantic_dim=8, acoustic="fsq",
                                       num_acoustic=36, acoustic_codebook_size=21, acoustic_dim=36), 44).eval()
    codes = q.encode(torch.randn(1, 44, 4))
    assert codes.shape == (1, 37, 4) and q.codebook_sizes == (64,) + (21,) * 36


def _nearest(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """By hand: x [B, D, T], table [N, D] -> index of the nearest entry (squared Euclidean distance) [B, T]."""
    return (x.transpose(1, 2)[..., None, :] - table).pow(2).sum(-1).argmin(-1)


@pytest.mark.parametrize("layout", ["shared", "concat"])
def test_split_decode_of_encode_is_consistent(layout):
    torch.manual_seed(0)
    cfg = QuantizerConfig(layout=layout, semantic_codebook_size=64, semantic_dim=8, num_acoustic=3,
                          acoustic_codebook_size=32, acoustic_dim=8)
    q = SplitQuantizer(cfg, 16 if layout == "concat" else 24).eval()
    g = torch.Generator().manual_seed(1)
    for rvq in (q.semantic, q.acoustic):  # entries at the inputs' scale, so that the codes vary
        for level in range(rvq.num_levels):
            rvq.set_codebook(level, 0.5 * torch.randn(rvq.codebook(level).shape, generator=g))
    x = torch.randn(2, q.latent_dim, 6)
    codes = q.encode(x)
    assert codes.shape == (2, 4, 6)
    assert min(len(codes[:, k].unique()) for k in range(4)) >= 6
    # decoding is deterministic and re-encoding the semantic part of a decoded latent is a fixed point
    assert torch.equal(q.decode(codes), q.decode(codes.clone()))
    if layout == "concat":
        assert torch.equal(q.encode(q.decode(codes[:, :1]))[:, :1], codes[:, :1])
    # The values, by hand. Shared: both branches read the whole latent and their outputs add up (Mimi); concat:
    # the semantic branch reads the first semantic_dim channels, the acoustic one the rest, outputs side by side.
    s, a = (x, x) if layout == "shared" else (x[:, :8], x[:, 8:])
    assert torch.equal(codes[:, 0], _nearest(q.semantic.input_proj(s), q.semantic.codebook(0)))
    semantic = q.semantic.output_proj(q.semantic.codebook(0)[codes[:, 0]].transpose(1, 2))
    only_semantic = semantic if layout == "shared" else torch.cat([semantic, torch.zeros_like(a)], dim=1)
    assert torch.allclose(q.decode(codes[:, :1]), only_semantic, atol=1e-6)
    residual, acoustic = q.acoustic.input_proj(a), 0
    for level in range(3):
        assert torch.equal(codes[:, 1 + level], _nearest(residual, q.acoustic.codebook(level)))
        entry = q.acoustic.codebook(level)[codes[:, 1 + level]].transpose(1, 2)
        residual, acoustic = residual - entry, acoustic + entry
        parts = (semantic, q.acoustic.output_proj(acoustic))
        expected = parts[0] + parts[1] if layout == "shared" else torch.cat(parts, dim=1)
        assert torch.allclose(q.decode(codes[:, : 2 + level]), expected, atol=1e-6), level
