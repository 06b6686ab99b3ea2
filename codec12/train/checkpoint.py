"""Training checkpoints: safetensors for tensors, JSON for everything else, no pickles.

A checkpoint is a directory ``checkpoints/step-XXXXXXXX/`` written under a temporary name and renamed, then
``checkpoints/latest`` (a one-line text file) is replaced to point at it, so a crash at any moment leaves the
previous checkpoint intact and ``latest`` always names a complete one.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from codec12._fs import atomic_directory, atomic_write

FORMAT_VERSION = 1
LATEST = "latest"


def optimizer_tensors(optimizer: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state_dict into flat tensors (``prefix.param_index.name``) and JSON-able groups."""
    sd = optimizer.state_dict()
    tensors = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, state in sd["state"].items():
        for name, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}.{index}.{name}"] = value.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict,
                   prefix: str) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        head, index, name = key.split(".", 2)
        if head == prefix:
            state.setdefault(int(index), {})[name] = value
    for index, values in meta.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(values)
    groups = meta["param_groups"]
    if len(groups) != len(optimizer.param_groups) or any(
            len(g["params"]) != len(h["params"]) for g, h in zip(groups, optimizer.param_groups)):
        raise ValueError(f"{prefix} optimizer state does not match the model's parameters (was the recipe's model "
                         f"or distillation section, or optim.head_lr, changed?)")
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def rng_tensors() -> dict[str, torch.Tensor]:
    out = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["torch_cuda"] = torch.cuda.get_rng_state()
    return out


def set_rng(tensors: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    if "torch_cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["torch_cuda"])


def module_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}


def write_checkpoint(root: Path, step: int, files: dict[str, dict[str, torch.Tensor]], state: dict[str, Any],
                     keep: int) -> Path:
    """Write ``files`` (name -> tensors, saved as ``name.safetensors``) and ``state.json`` atomically; keep the
    newest ``keep`` checkpoints. Returns the checkpoint directory."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    with atomic_directory(final, f".tmp-step-{step:08d}-{os.getpid()}") as tmp:
        for name, tensors in files.items():
            save_file(tensors, str(tmp / f"{name}.safetensors"), metadata={"format": "pt"})
        (tmp / "state.json").write_text(json.dumps({"format_version": FORMAT_VERSION, **state}, indent=1) + "\n")
    atomic_write(root / LATEST, lambda p: p.write_text(final.name + "\n"))
    for old in sorted(p for p in root.glob("step-*") if p.is_dir())[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(root: Path) -> Path | None:
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    path = root / pointer.read_text().strip()
    if not (path / "state.json").is_file():
        raise ValueError(f"{pointer} names {path.name}, which is not a complete checkpoint")
    return path


def read_checkpoint(path: Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    """-> ({file name: tensors}, state)."""
    try:
        state = json.loads((path / "state.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}/state.json: cannot read checkpoint state: {e}") from e
    if state.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint format_version {state.get('format_version')} is not supported")
    files = {p.name[: -len(".safetensors")]: load_file(str(p)) for p in path.glob("*.safetensors")}
    return files, state
