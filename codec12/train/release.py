"""Releases from training checkpoints (``codec12 export release``): a release is an export of the weights a
checkpoint holds (:func:`codec12.export.release.export_release`)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from codec12.codec import Codec
from codec12.config import CodecConfig
from codec12.export.release import export_release
from codec12.train.checkpoint import latest_checkpoint, read_checkpoint
from codec12.weights import load_state_dict_strict


def release_from_checkpoint(checkpoint: str | os.PathLike, out_dir: str | os.PathLike, *, ema: bool = True,
                            dtype: torch.dtype = torch.float32) -> Path:
    """Write a release from a training checkpoint: a ``step-*`` directory, a run's ``checkpoints`` directory
    or a run directory (their latest checkpoint). ``ema``: use the EMA weights when the run kept them."""
    path = Path(checkpoint)
    if not (path / "state.json").is_file():
        path = latest_checkpoint(path / "checkpoints" if (path / "checkpoints").is_dir() else path)
        if path is None:
            raise ValueError(f"{checkpoint}: not a training checkpoint or run directory (no state.json or latest)")
    files, state = read_checkpoint(path)
    codec = Codec.from_config(CodecConfig.from_dict(state["codec_config"], where=f"{path}/state.json"))
    if "model" not in files:
        raise ValueError(f"{path}: checkpoint has no model.safetensors")
    load_state_dict_strict(codec, files["model"], f"{path}/model.safetensors")
    weights = files.get("ema") if ema else None
    return export_release(codec, out_dir, weights=weights, dtype=dtype)
