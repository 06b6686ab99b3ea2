"""Reading safetensors files, with errors that name the file and say what is wrong with it.

safetensors raises its own error type for a file cut short, an empty file or a file of another kind; every
reader in codec12 goes through here so that each of those becomes a ``ValueError`` naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file


def tensor_shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the tensors in ``path``, from its header alone (which safetensors checks against the
    file's length, so a truncated file is caught here without reading the data)."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:  # SafetensorError, OSError, ...
        raise ValueError(_reason(path, e)) from e


def load_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """All tensors of ``path`` (on the CPU)."""
    path = Path(path)
    try:
        return load_file(str(path))
    except Exception as e:  # SafetensorError, OSError, ...
        raise ValueError(_reason(path, e)) from e


def _reason(path: Path, e: Exception) -> str:
    if not path.is_file():
        return f"{path}: no such file"
    size = path.stat().st_size
    if size == 0:
        return f"{path}: empty file (0 bytes), not a safetensors file; it was probably cut short while written"
    return f"{path}: truncated or not a safetensors file ({size} bytes; {e})"
