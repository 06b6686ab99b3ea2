"""Streaming state owned by each module.

A :class:`StreamingModule` runs the same ``forward`` offline and while streaming. Inside
``streaming(model, batch_size)`` each such module holds a typed state (a dataclass of tensors) that carries
what the next chunk needs: conv tails, transposed-conv overlaps, attention caches. Export flattens these
states into explicit tensors with :func:`get_state_tensors` / :func:`set_state_tensors`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from codec12._checks import check_batch_size


class StreamingModule(nn.Module):
    """Base for modules with a per-stream state. ``self._state`` is None when not streaming."""

    def __init__(self) -> None:
        super().__init__()
        self._state = None

    def init_state(self, batch_size: int, device: torch.device, dtype: torch.dtype):
        """Return the state at the start of a stream (a dataclass of tensors), or None if stateless."""
        raise NotImplementedError

    @property
    def is_streaming(self) -> bool:
        return self._state is not None


def streaming_modules(module: nn.Module) -> list[StreamingModule]:
    """The streaming submodules of ``module`` in a fixed (registration) order."""
    return [m for m in module.modules() if isinstance(m, StreamingModule)]


def _param_device_dtype(module: nn.Module) -> tuple[torch.device, torch.dtype]:
    for p in module.parameters():
        return p.device, p.dtype
    return torch.device("cpu"), torch.float32


@contextmanager
def streaming(module: nn.Module, batch_size: int) -> Iterator[None]:
    """Turn on streaming state in every streaming submodule of ``module`` for the duration of the block."""
    check_batch_size(batch_size)
    mods = streaming_modules(module)
    if any(m.is_streaming for m in mods):
        raise RuntimeError("already streaming: nested streaming() blocks are not supported")
    device, dtype = _param_device_dtype(module)
    try:
        for m in mods:
            state = m.init_state(batch_size, device, dtype)
            m._state = state if state is not None else _Stateless()
        yield
    finally:
        for m in mods:
            m._state = None


class _Stateless:
    """Placeholder state for streaming modules that need none (marks them as streaming)."""


def _fields(state) -> list[str]:
    if isinstance(state, _Stateless):
        return []
    return [f.name for f in dataclasses.fields(state)]


def state_spec(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """(name, tensor) for every state tensor of ``module`` while streaming, in a stable order."""
    names = {m: n for n, m in module.named_modules()}
    out = []
    for m in streaming_modules(module):
        if m._state is None:
            raise RuntimeError("state_spec needs an active streaming() block")
        for f in _fields(m._state):
            out.append((f"{names[m]}.{f}" if names[m] else f, getattr(m._state, f)))
    return out


def get_state_tensors(module: nn.Module) -> list[torch.Tensor]:
    return [t for _, t in state_spec(module)]


def set_state_tensors(module: nn.Module, tensors: list[torch.Tensor]) -> None:
    """Overwrite the streaming state of ``module`` with ``tensors`` (in :func:`state_spec` order)."""
    i = 0
    for m in streaming_modules(module):
        for f in _fields(m._state):
            setattr(m._state, f, tensors[i])
            i += 1
    if i != len(tensors):
        raise ValueError(f"expected {i} state tensors, got {len(tensors)}")
