"""vector-quantize-pytorch's private codebook layout, as codec12/quantizers/vq_layout.py knows it.

Saved codec12 models (the bundled one, releases, converted Mimi and Voxtral weights) name their codebooks by the
library's private attributes. These tests build the library's own layers and fail loudly when an upgrade lays
them out otherwise, before a checkpoint fails to load.
"""

from importlib.metadata import version

import pytest
import torch
from safetensors import safe_open
from vector_quantize_pytorch import FSQ, VectorQuantize

from codec12 import Codec
from codec12.codec import ASSETS_DIR
from codec12.command import DEFAULT_MODEL
from codec12.quantizers import ResidualVQ, vq_layout
from codec12.weights import load_state_dict_strict

MENDING = (f"vector-quantize-pytorch {version('vector-quantize-pytorch')} lays out its codebooks otherwise than "
           "the names codec12 saves. Every saved codec12 model uses the old names, so do not rename tensors: mend "
           "codec12/quantizers/vq_layout.py, the one module that knows the library's private names, so that it "
           "maps them onto the new layout (or keep the library at a version that passes this test).")


def library_layer(n: int = 16, d: int = 8, **kwargs) -> VectorQuantize:
    """A VectorQuantize built as codec12's ResidualVQ builds its levels."""
    args = dict(decay=0.99, threshold_ema_dead_code=2.0, kmeans_init=False, channel_last=False, commitment_weight=1.0)
    return VectorQuantize(dim=d, codebook_size=n, **{**args, **kwargs})


@pytest.mark.parametrize("kmeans_init", [False, True])
def test_vector_quantize_state_dict_is_the_layout_codec12_saves(kmeans_init):
    got = {k: (tuple(v.shape), v.dtype) for k, v in library_layer(16, 8, kmeans_init=kmeans_init).state_dict().items()}
    expected = vq_layout.layer_state_layout(16, 8)
    assert got == expected, f"{MENDING}\nVectorQuantize(dim=8, codebook_size=16) saves {got}; expected {expected}"


def test_fsq_saves_nothing():
    # codec12's FSQ checkpoints hold no FSQ tensor: a persistent buffer would be a key every saved model lacks.
    saved = list(FSQ(levels=[5], num_codebooks=4, dim=4).state_dict())
    assert saved == [], f"{MENDING}\nFSQ now saves {saved}"


def test_codec12_levels_save_only_the_adapters_keys():
    rvq = ResidualVQ(dim=8, codebook_dim=4, codebook_size=16, num_levels=3)
    assert vq_layout.vq_layer_names(rvq) == ["layers.0", "layers.1", "layers.2"]
    codebook_keys = {k for name in vq_layout.vq_layer_names(rvq) for k in vq_layout.codebook_keys(name)}
    saved = {k for k in rvq.state_dict() if vq_layout.is_codebook_key(k)}
    assert saved == codebook_keys, f"{MENDING}\nsaved {sorted(saved)}, expected {sorted(codebook_keys)}"
    assert not vq_layout.is_codebook_key("layers.0.project_in.weight")


def test_the_library_reads_what_the_adapter_writes():
    """Entries written through the adapter are the ones the library's forward looks up, ``initialised`` stops its
    k-means from replacing them, and its EMA update recomputes the entries as ema_sum / ema_count."""
    torch.manual_seed(0)
    layer = library_layer(16, 8, kmeans_init=True, decay=1.0).eval()  # decay 1: the statistics stay as written
    entries = torch.randn(16, 8)
    vq_layout.write_layer(layer, entries, ema_sum=6 * entries, ema_count=torch.full((16,), 3.0))
    order = torch.randperm(16)
    x = (entries[order] + 0.01 * torch.randn(16, 8)).T[None]  # [1, D, 16]
    quantized, indices, _ = layer(x)
    assert torch.equal(indices[0], order), MENDING
    assert torch.equal(quantized[0].T, entries[order]) and torch.equal(vq_layout.entries(layer), entries), MENDING
    layer.train()
    layer(x)
    torch.testing.assert_close(vq_layout.entries(layer), 2 * entries, atol=1e-4, rtol=0, msg=MENDING)
    read = vq_layout.read_layer(layer)
    assert torch.equal(read.ema_sum, 6 * entries) and torch.equal(read.ema_count, torch.full((16,), 3.0))


def test_state_dicts_from_the_adapter_load_strictly_into_the_library():
    torch.manual_seed(0)
    codebook = vq_layout.Codebook(entries=torch.randn(16, 8), ema_sum=torch.randn(16, 8), ema_count=torch.rand(16))
    state = vq_layout.codebook_state("quantizer.semantic.layers.0", codebook)
    assert tuple(state) == vq_layout.codebook_keys("quantizer.semantic.layers.0")
    layer = library_layer(16, 8, kmeans_init=True)
    prefix = "quantizer.semantic.layers.0."
    load_state_dict_strict(layer, {k[len(prefix):]: v for k, v in state.items()}, "adapter state")
    fields = ("entries", "ema_sum", "ema_count")
    for back in (vq_layout.read_layer(layer), vq_layout.read_codebook(state, "quantizer.semantic.layers.0")):
        assert all(torch.equal(getattr(back, f), getattr(codebook, f)) for f in fields)


def test_bundled_model_names_its_codebooks_as_the_adapter_does():
    """The codebook names in the bundled model's file are the adapter's: a change there would break every release."""
    codec = Codec.from_pretrained(DEFAULT_MODEL)
    names = vq_layout.vq_layer_names(codec)
    assert names == sorted([f"quantizer.acoustic.layers.{i}" for i in range(codec.config.quantizer.num_acoustic)]
                           + ["quantizer.semantic.layers.0"])
    with safe_open(str(ASSETS_DIR / DEFAULT_MODEL / "model.safetensors"), "pt") as f:
        saved = {k for k in f.keys() if vq_layout.is_codebook_key(k)}
    assert saved == {k for name in names for k in vq_layout.codebook_keys(name)}, MENDING
    q = codec.config.quantizer
    assert vq_layout.read_codebook(codec.state_dict(), names[-1]).entries.shape == (q.semantic_codebook_size,
                                                                                   q.semantic_dim)
