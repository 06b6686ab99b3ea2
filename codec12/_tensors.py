"""Reading safetensors files, with errors that name the file and say what is wrong with it.

safetensors raises its own error type for a file cut short, an empty file or a file of another kind; every
reader in codec12 goes through here so that each of those becomes a ``ValueError`` naming the file.
"""

from __future__ import annotations

import json
import os
import struct
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


_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
           "BOOL": torch.bool}


@torch.no_grad()
def load_tensors_into(path: str | os.PathLike, targets: dict[str, torch.Tensor]) -> None:
    """Copy each tensor of ``path`` into the tensor of that name in ``targets`` (a module's ``state_dict()``),
    cast to its dtype. The names and shapes must match (check them with :func:`tensor_shapes` first).

    The file is read tensor by tensor with plain reads, so loading holds one tensor besides the targets: reading
    the whole file first (or through a memory map, whose pages count as the process's memory until it is closed)
    would hold a second copy of all the weights at once."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size))
            for name, info in header.items():
                if name == "__metadata__":
                    continue
                start, end = info["data_offsets"]
                target, dtype = targets[name], _DTYPES[info["dtype"]]
                data = bytearray(end - start)
                f.seek(8 + size + start)
                if f.readinto(data) != len(data):
                    raise ValueError("the data ends early")
                source = torch.frombuffer(data, dtype=dtype) if data else torch.empty(0, dtype=dtype)
                target.copy_(source.reshape(info["shape"]))
    except Exception as e:  # OSError, struct/JSON/key errors of a damaged file, a shape that does not fit
        raise ValueError(_reason(path, e)) from e


def _reason(path: Path, e: Exception) -> str:
    if not path.is_file():
        return f"{path}: no such file"
    size = path.stat().st_size
    if size == 0:
        return f"{path}: empty file (0 bytes), not a safetensors file; it was probably cut short while written"
    return f"{path}: truncated or not a safetensors file ({size} bytes; {e})"
