"""Releases: a trained codec as ``config.json`` + ``model.safetensors`` that ``Codec.from_pretrained`` loads.

Training-only parts never reach a release: discriminators and distillation heads live outside the codec, and
weight norm is folded into plain weights. The release is written under a temporary name, renamed into
place, reloaded strictly and checked against the in-memory model on one known input.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from codec12._fs import atomic_directory
from codec12.codec import Codec


def export_release(codec: Codec, out_dir: str | os.PathLike, *, weights: dict[str, torch.Tensor] | None = None,
                   dtype: torch.dtype = torch.float32, atol: float = 1e-5) -> Path:
    """Write a release of ``codec`` to ``out_dir`` (replaced if it exists) and return it.

    weights: optional parameter values by name (EMA weights) replacing the codec's parameters; buffers
    (codebooks) come from the codec.
    dtype: storage type of the weights (float16 halves the size); the model is rounded to it before the
    reload check, so the release reproduces exactly what was checked.
    """
    out_dir = Path(out_dir)
    state = {k: v.detach().cpu().float() for k, v in codec.state_dict().items()}
    if weights is not None:
        params = [name for name, _ in codec.named_parameters()]
        missing = sorted(set(params) - set(weights))
        if missing:
            raise ValueError(f"release weights are missing parameters {missing[:8]}")
        state.update({name: weights[name].detach().cpu().float() for name in params})
    # a fresh model, not copy.deepcopy: see Codec.folded
    model = Codec.from_config(codec.config)
    model.load_state_dict(state)
    model = model.eval().fold_weight_norm()
    if dtype != torch.float32:
        model.load_state_dict({k: v.to(dtype).float() if v.is_floating_point() else v
                               for k, v in model.state_dict().items()})
    with atomic_directory(out_dir) as tmp:
        model.save_pretrained(tmp, dtype=dtype)
        _check_reload(model, tmp, atol)
    return out_dir


@torch.no_grad()
def _check_reload(model: Codec, directory: Path, atol: float) -> None:
    """Reload strictly and compare one encode/decode on a fixed input with the model that was saved."""
    reloaded = Codec.from_pretrained(directory)
    g = torch.Generator().manual_seed(0)
    wav = 0.1 * torch.randn(1, model.channels, 2 * model.frame_size, generator=g)
    codes = model.encode(wav)
    if not torch.equal(codes, reloaded.encode(wav)):
        raise RuntimeError(f"{directory}: the reloaded release encodes differently from the trained model")
    diff = (model.decode(codes) - reloaded.decode(codes)).abs().max().item()
    if diff > atol:
        raise RuntimeError(f"{directory}: the reloaded release decodes differently (max diff {diff:.3g})")
