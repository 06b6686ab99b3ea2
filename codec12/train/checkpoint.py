"""Training checkpoints: safetensors for tensors, JSON for everything else, no pickles.

A checkpoint is a directory ``checkpoints/step-XXXXXXXX/`` written under a temporary name (every file synced to
disk) and renamed, then ``checkpoints/latest`` (a one-line text file) is replaced to point at it, so a crash at any
moment leaves the previous checkpoint intact and ``latest`` always names a complete one. ``state.json`` lists the
files. Resuming verifies the newest checkpoint (every file present, each safetensors header whole and matching its
file's length) and falls back to the newest one that passes, saying which were skipped and why: a disk that lost
data, or a copy cut short, costs the steps since the checkpoint before, not the run.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from codec12._fs import atomic_directory, atomic_write
from codec12._tensors import load_tensors, tensor_shapes

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
    # atomic_directory syncs each file before the directory is renamed into place: a crash must not leave a
    # complete-looking checkpoint whose files the disk had not written yet.
    with atomic_directory(final, f".tmp-step-{step:08d}-{os.getpid()}") as tmp:
        for name, tensors in files.items():
            save_file(tensors, str(tmp / f"{name}.safetensors"), metadata={"format": "pt"})
        listed = {"format_version": FORMAT_VERSION, **state, "files": sorted(f"{n}.safetensors" for n in files)}
        (tmp / "state.json").write_text(json.dumps(listed, indent=1) + "\n")
    atomic_write(root / LATEST, lambda p: p.write_text(final.name + "\n"))
    for old in sorted(p for p in root.glob("step-*") if p.is_dir())[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def checkpoint_dirs(root: Path) -> list[Path]:
    """The checkpoint directories under ``root``, newest first."""
    return sorted((p for p in root.glob("step-*") if p.is_dir()), key=lambda p: p.name, reverse=True)


def latest_checkpoint(root: Path) -> Path | None:
    """The checkpoint ``latest`` names (None when there is none yet)."""
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    path = root / pointer.read_text().strip()
    if not (path / "state.json").is_file():
        raise ValueError(f"{pointer} names {path.name}, which is not a complete checkpoint")
    return path


def resume_checkpoint(root: Path, log: Callable[[str], None]) -> Path | None:
    """The newest checkpoint under ``root`` that passes :func:`verify_checkpoint` (None when there is none).
    Newer ones that fail are reported through ``log`` with the reason, and skipped; ValueError, naming each and
    its reason, when there are checkpoints and none passes."""
    failed = []
    for path in checkpoint_dirs(root):
        try:
            verify_checkpoint(path)
        except ValueError as e:
            failed.append(str(e))
            log(f"cannot resume from {path.name}: {e}")
            continue
        if failed:
            log(f"resuming from {path.name}, the newest checkpoint that reads whole ({len(failed)} newer one"
                f"{'s' if len(failed) > 1 else ''} skipped)")
        return path
    if failed:
        raise ValueError(f"{root}: no checkpoint can be read: " + "; ".join(failed))
    return None


def verify_checkpoint(path: Path) -> dict[str, Any]:
    """Check that a checkpoint reads whole without loading its tensors: ``state.json`` parses, the files it lists
    are there, and each safetensors header is whole and covers its file exactly. Returns the state; ValueError
    naming the file and what is wrong otherwise."""
    state = _read_state(path)
    names = state.get("files")  # listed since checkpoints were fsynced; older ones: the files present
    if names is None:
        names = sorted(p.name for p in path.glob("*.safetensors"))
    for name in names:
        tensor_shapes(path / name)
    return state


def read_checkpoint(path: Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    """-> ({file name: tensors}, state); a file that is missing, cut short or damaged raises ValueError naming it."""
    state = verify_checkpoint(path)
    files = {p.name[: -len(".safetensors")]: load_tensors(p) for p in sorted(path.glob("*.safetensors"))}
    return files, state


def _read_state(path: Path) -> dict[str, Any]:
    try:
        state = json.loads((path / "state.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}/state.json: cannot read checkpoint state: {e}") from e
    if not isinstance(state, dict):
        raise ValueError(f"{path}/state.json: not a checkpoint state (a JSON {type(state).__name__})")
    if state.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint format_version {state.get('format_version')} is not supported")
    files = state.get("files")
    if files is not None and (not isinstance(files, list) or not all(isinstance(f, str) and "/" not in f
                                                                      for f in files)):
        raise ValueError(f"{path}/state.json: 'files' must be a list of file names, got {files!r}")
    return state
