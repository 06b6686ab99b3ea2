"""vector-quantize-pytorch's codebook layout, known here and nowhere else.

codec12's VQ levels are ``vector_quantize_pytorch.VectorQuantize`` layers (:class:`~codec12.quantizers.vq.
ResidualVQ`), so a level's codebook is saved under the library's private names. A level at
``quantizer.acoustic.layers.3`` saves, in every checkpoint and release:

- ``quantizer.acoustic.layers.3._codebook.embed`` [1, N, D]: the entries looked up at inference;
- ``..._codebook.embed_avg`` [1, N, D]: the EMA of the vectors assigned to each entry, summed (not averaged,
  whatever the name says): the EMA update sets ``embed = embed_avg / cluster_size``;
- ``..._codebook.cluster_size`` [1, N]: the EMA of how many vectors each entry was assigned;
- ``..._codebook.initted`` [] bool: the codebook holds entries (false: k-means fills it on the first batch).

Those names cannot change without breaking every saved model, so the quantizers, the converters (Mimi, Voxtral)
and the tests read and write codebooks through the functions below. The library's FSQ keeps no state that is
saved. tests/test_vq_layout.py builds the library's layers and fails, naming this module, when a new version
lays them out otherwise: mend it here (map the saved names onto the library's new ones when loading and
saving) rather than renaming tensors in saved models.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from vector_quantize_pytorch import VectorQuantize

CODEBOOK = "_codebook"  # the VectorQuantize attribute that holds the codebook module
ENTRIES, EMA_SUM, EMA_COUNT, INITIALISED = "embed", "embed_avg", "cluster_size", "initted"
TENSORS = (INITIALISED, EMA_COUNT, EMA_SUM, ENTRIES)  # in the library's state-dict order


@dataclass(frozen=True, eq=False)
class Codebook:
    """One level's codebook: ``entries`` [N, D] (the lookup table), ``ema_sum`` [N, D] (the EMA of the vectors
    assigned to each entry, summed) and ``ema_count`` [N] (the EMA of how many were)."""

    entries: torch.Tensor
    ema_sum: torch.Tensor
    ema_count: torch.Tensor


def layer_state_layout(codebook_size: int, dim: int) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """The state dict of one ``VectorQuantize(dim=dim, codebook_size=codebook_size)`` as codec12 saves it:
    {key within the layer: (shape, dtype)}."""
    n, d = codebook_size, dim
    return {f"{CODEBOOK}.{INITIALISED}": ((), torch.bool), f"{CODEBOOK}.{EMA_COUNT}": ((1, n), torch.float32),
            f"{CODEBOOK}.{EMA_SUM}": ((1, n, d), torch.float32), f"{CODEBOOK}.{ENTRIES}": ((1, n, d), torch.float32)}


# ---------------------------------------------------------------- live layers
def _codebook_module(layer: nn.Module) -> nn.Module:
    return getattr(layer, CODEBOOK)


def entries(layer: nn.Module) -> torch.Tensor:
    """The entries [N, D] of a ``VectorQuantize`` layer: the library's own tensor (a view), not a copy."""
    return getattr(_codebook_module(layer), ENTRIES)[0]


def read_layer(layer: nn.Module) -> Codebook:
    """A ``VectorQuantize`` layer's codebook (views of its tensors)."""
    cb = _codebook_module(layer)
    return Codebook(entries=getattr(cb, ENTRIES)[0], ema_sum=getattr(cb, EMA_SUM)[0],
                    ema_count=getattr(cb, EMA_COUNT)[0])


@torch.no_grad()
def write_layer(layer: nn.Module, entries: torch.Tensor, ema_sum: torch.Tensor | None = None,
                ema_count: torch.Tensor | None = None) -> None:
    """Set a ``VectorQuantize`` layer's codebook in place and mark it initialised (no k-means on the next batch).
    Without EMA statistics, each entry counts once with itself as its sum, as a new codebook starts."""
    cb = _codebook_module(layer)
    getattr(cb, ENTRIES)[0].copy_(entries)
    getattr(cb, EMA_SUM)[0].copy_(entries if ema_sum is None else ema_sum)
    if ema_count is None:
        getattr(cb, EMA_COUNT).fill_(1.0)
    else:
        getattr(cb, EMA_COUNT)[0].copy_(ema_count)
    getattr(cb, INITIALISED).fill_(True)


def vq_layer_names(model: nn.Module) -> list[str]:
    """The names (state-dict prefixes) of the ``VectorQuantize`` layers in ``model``, sorted."""
    return sorted(name for name, m in model.named_modules() if isinstance(m, VectorQuantize))


# ---------------------------------------------------------------- state dicts
def codebook_keys(layer_name: str) -> tuple[str, ...]:
    """The state-dict keys the layer named ``layer_name`` saves its codebook under."""
    return tuple(f"{layer_name}.{CODEBOOK}.{t}" for t in TENSORS)


def is_codebook_key(key: str) -> bool:
    """Whether a state-dict key is part of a vector-quantize-pytorch codebook (EMA-updated, never a parameter)."""
    module, _, tensor = key.rpartition(".")
    return tensor in TENSORS and (module == CODEBOOK or module.endswith(f".{CODEBOOK}"))


def codebook_state(layer_name: str, codebook: Codebook) -> dict[str, torch.Tensor]:
    """The state-dict entries of the layer ``layer_name`` holding ``codebook``, marked initialised."""
    prefix = f"{layer_name}.{CODEBOOK}"
    return {f"{prefix}.{INITIALISED}": torch.tensor(True),
            f"{prefix}.{EMA_COUNT}": codebook.ema_count[None].clone(),
            f"{prefix}.{EMA_SUM}": codebook.ema_sum[None].clone(),
            f"{prefix}.{ENTRIES}": codebook.entries[None].clone()}


def read_codebook(state: dict[str, torch.Tensor], layer_name: str) -> Codebook:
    """The codebook of the layer ``layer_name`` in a state dict."""
    prefix = f"{layer_name}.{CODEBOOK}"
    return Codebook(entries=state[f"{prefix}.{ENTRIES}"][0], ema_sum=state[f"{prefix}.{EMA_SUM}"][0],
                    ema_count=state[f"{prefix}.{EMA_COUNT}"][0])
