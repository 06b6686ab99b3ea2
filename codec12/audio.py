"""Reading and writing audio files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from codec12._fs import atomic_write


def load_audio(path: str | os.PathLike, sample_rate: int, channels: int | None = 1) -> torch.Tensor:
    """Read any soundfile-supported file as float32 [C, T] at ``sample_rate``.

    ``channels=1`` mixes down to mono, ``channels=2`` duplicates a mono file, ``None`` keeps the file's
    channels. Unreadable, empty and non-finite files raise ``ValueError`` naming the file and the reason.
    """
    path = Path(path)
    try:
        data, file_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError, RuntimeError, TypeError...
        reason = "file not found" if not path.exists() else f"not a readable audio file ({e})"
        raise ValueError(f"{path}: {reason}") from e
    if data.shape[0] == 0:
        raise ValueError(f"{path}: empty audio (0 samples)")
    if not np.isfinite(data).all():
        raise ValueError(f"{path}: audio contains NaN or Inf samples")
    wav = torch.from_numpy(np.ascontiguousarray(data.T))
    if channels is not None and wav.shape[0] != channels:
        if channels == 1:
            wav = wav.mean(dim=0, keepdim=True)
        elif wav.shape[0] == 1:
            wav = wav.expand(channels, -1).contiguous()
        else:
            raise ValueError(f"{path}: has {wav.shape[0]} channels, cannot convert to {channels}")
    if file_rate != sample_rate:
        wav = AF.resample(wav, file_rate, sample_rate)
    return wav


def save_audio(path: str | os.PathLike, wav: torch.Tensor, sample_rate: int) -> None:
    """Write [C, T] (or [T]) float audio; the format follows the suffix (.wav, .flac, .ogg, ...). Written to a
    temporary name and renamed, so an existing file is never left half-written."""
    path = Path(path)
    file_format = path.suffix[1:].upper()
    if file_format not in sf.available_formats():
        raise ValueError(f"{path}: unknown audio file type {path.suffix!r}; use one of "
                         f"{', '.join('.' + f.lower() for f in sorted(sf.available_formats()))}")
    wav = torch.as_tensor(wav).detach().cpu().float()
    if wav.dim() == 1:
        wav = wav[None]
    if wav.dim() != 2:
        raise ValueError(f"{path}: expected audio of shape [C, T], got {tuple(wav.shape)}")
    data = wav.clamp(-1, 1).T.numpy()
    atomic_write(path, lambda tmp: sf.write(str(tmp), data, sample_rate, format=file_format))
