"""Input checks shared by :class:`codec12.Codec` (torch tensors) and :class:`codec12.export.runtime.OnnxCodec`
(numpy arrays): one set of rules and messages for audio, codes, latents, ``num_codebooks`` and streamed chunks.

Plain Python and numpy, so that the torch-free runtime uses it too. The checks read an array through an
:class:`Arrays` (its type, shape and dtype, whether its values are finite, each code row's range); numpy's is
here, torch's lives with :class:`codec12.Codec`. Callers convert what passed (dtype, layout) themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


class Arrays:
    """How the checks read the arrays of one library: numpy's. Subclasses read other libraries' arrays."""

    name = "numpy array"  # in messages: "audio must be a numpy array [B, C, T], ..."

    def is_array(self, x: Any) -> bool:
        return isinstance(x, np.ndarray)

    def kind(self, x: Any) -> str:
        """``"f"`` floating point, ``"i"`` integer (signed or not), ``"b"`` bool, ``"c"`` complex, ``"?"`` other."""
        kind = x.dtype.kind
        return "i" if kind in "iu" else kind if kind in "fbc" else "?"

    def dtype(self, x: Any) -> str:
        return str(x.dtype)

    def check_place(self, x: Any, what: str) -> None:
        """Raise ValueError if ``x`` is not where the model runs (torch: its device). Called before any value is
        read."""

    def all_finite(self, x: Any) -> bool:
        return bool(np.isfinite(x).all())

    def row_ranges(self, codes: Any) -> list[tuple[int, int]]:
        """(min, max) of each row k of codes [B, K, T] (not empty)."""
        return list(zip(codes.min(axis=(0, 2)).tolist(), codes.max(axis=(0, 2)).tolist()))


@dataclass(frozen=True)
class InputChecks:
    """The checks of one model's inputs. Each raises ValueError saying what is wrong; ``stream_batch`` is the
    batch size of an open ``streaming()`` block (None outside one), which asks for whole frames of that batch."""

    arrays: Arrays
    channels: int
    frame_size: int
    latent_dim: int
    codebook_sizes: tuple[int, ...]
    sample_rate: int

    @property
    def num_codebooks(self) -> int:
        return len(self.codebook_sizes)

    def check_num_codebooks(self, k: Any) -> int:
        """An int in [1, K] (a numpy integer too) -> that int."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= self.num_codebooks:
            raise ValueError(f"num_codebooks must be an int in [1, {self.num_codebooks}], got {k!r}")
        return int(k)

    def check_audio(self, wav: Any, *, sample_rate: int | None = None, stream_batch: int | None = None) -> None:
        """Audio [B, C, T]: floating point, C channels, not empty, finite; ``sample_rate`` (when given) the
        model's."""
        a = self.arrays
        if not a.is_array(wav):
            raise ValueError(f"audio must be a {a.name} [B, C, T], got {type(wav).__name__}")
        if sample_rate is not None and sample_rate != self.sample_rate:
            raise ValueError(f"audio is at {sample_rate} Hz but the model expects {self.sample_rate} Hz: resample "
                             f"first (codec12.load_audio(path, codec.sample_rate) does)")
        shape = tuple(wav.shape)
        if len(shape) != 3:
            raise ValueError(f"audio must have shape [B, C, T], got rank {len(shape)} {shape}"
                             + (" (add a batch dimension: wav[None])" if len(shape) == 2 else ""))
        if shape[1] != self.channels:
            raise ValueError(f"audio has {shape[1]} channels but the model expects {self.channels}")
        if shape[0] == 0 or shape[-1] == 0:
            raise ValueError(f"empty audio: shape {shape}")
        if a.kind(wav) != "f":
            raise ValueError(f"audio must be floating point, got {a.dtype(wav)}")
        a.check_place(wav, "audio")
        if not a.all_finite(wav):
            raise ValueError("audio contains NaN or Inf samples")
        self.check_stream(stream_batch, shape[0], shape[-1], self.frame_size, "audio samples")

    def check_codes(self, codes: Any, *, stream_batch: int | None = None) -> None:
        """Codes [B, K', T'] with 1 <= K' <= K: integers, row k in [0, codebook_sizes[k])."""
        a = self.arrays
        if not a.is_array(codes):
            raise ValueError(f"codes must be a {a.name} [B, K, T'], got {type(codes).__name__}")
        shape = tuple(codes.shape)
        if len(shape) != 3:
            raise ValueError(f"codes must have shape [B, K, T'], got {shape}")
        if a.kind(codes) != "i":
            raise ValueError(f"codes must be integers, got {a.dtype(codes)}")
        b, k, t = shape
        if not 1 <= k <= self.num_codebooks:
            raise ValueError(f"codes have {k} codebooks; this model takes 1 to {self.num_codebooks}")
        if b == 0 or t == 0:
            raise ValueError(f"empty codes: shape {shape}")
        a.check_place(codes, "codes")
        for row, ((low, high), size) in enumerate(zip(a.row_ranges(codes), self.codebook_sizes)):
            if low < 0 or high >= size:
                raise ValueError(f"codes out of range in row {row}: values must be in [0, {size})")
        self.check_stream(stream_batch, b, t, 1, "frames")

    def check_latents(self, z: Any, *, stream_batch: int | None = None) -> None:
        """Latents [B, D, T']: floating point, not empty, finite."""
        a = self.arrays
        if not a.is_array(z) or len(z.shape) != 3 or z.shape[1] != self.latent_dim:
            shape = tuple(z.shape) if a.is_array(z) else type(z).__name__
            raise ValueError(f"latents must be a {a.name} of shape [B, {self.latent_dim}, T'], got {shape}")
        if a.kind(z) != "f":
            raise ValueError(f"latents must be floating point, got {a.dtype(z)}")
        if z.shape[0] == 0 or z.shape[-1] == 0:
            raise ValueError(f"empty latents: shape {tuple(z.shape)}")
        a.check_place(z, "latents")
        if not a.all_finite(z):
            raise ValueError("latents contain NaN or Inf")
        self.check_stream(stream_batch, z.shape[0], z.shape[-1], 1, "frames")

    def check_stream(self, stream_batch: int | None, batch: int, length: int, multiple: int, unit: str) -> None:
        """While streaming (``stream_batch`` set): the batch it was opened with, and whole frames (``length`` a
        multiple of ``multiple``, counted in ``unit``)."""
        if stream_batch is None:
            return
        if batch != stream_batch:
            raise ValueError(f"streaming was opened with batch_size={stream_batch}, got a batch of {batch}")
        if length % multiple:
            raise ValueError(f"while streaming, chunks must be whole frames: got {length} {unit}, not a multiple "
                             f"of {multiple} (frame_size={self.frame_size}); buffer until a whole frame is ready")


def check_batch_size(batch_size: Any) -> int:
    """The batch size of a ``streaming()`` block: a positive int."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    return batch_size
