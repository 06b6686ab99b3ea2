import pytest
import torch

from codec12 import QuantizerConfig
from codec12.quantizers import ResidualVQ, ScalarQuantizer, SplitQuantizer


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
    assert torch.equal(fsq.encode(torch.atanh(values.clamp(-0.999, 0.999) / (1 + 1e-3)), 36), codes)
    x = torch.randn(3, 36, 5) * 3
    c = fsq.encode(x, 36)
    assert c.min() >= 0 and c.max() <= 20
    assert torch.equal(fsq.encode(fsq.decode(c).atanh().mul(1 / (1 + 1e-3)), 36), c)


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
