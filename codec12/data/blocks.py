"""Reading long audio files block by block, resampled to the model rate, in memory bounded by the block size.

:func:`iter_audio_blocks` yields ``[C, n]`` blocks whose concatenation equals ``codec12.load_audio`` of the
same file: the same decoding, channel conversion and NaN/empty checks, and the same resampler
(``codec12.audio.resample``: torchaudio's windowed-sinc filter, as a strided convolution or evaluated per output
sample for rates whose reduced ratio would make that convolution huge). Each block
is resampled from a slice of the input with enough context on both sides for every output sample of the
block to see exactly the input samples it sees in the whole-file resampling. Without resampling the result
is bitwise identical; with resampling it is identical up to float rounding of the convolution (differences
of ~1e-7, which only change a code where two codebook entries are within rounding of each other).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from codec12.audio import check_declared_length, check_file_rate, convert_channels, filter_width, open_audio, resample


@dataclass(frozen=True)
class AudioInfo:
    """What the file header says: ``frames`` samples per channel at ``sample_rate``."""

    frames: int
    sample_rate: int
    channels: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


def probe_audio(path: str | os.PathLike) -> AudioInfo:
    """Read the header only; unreadable files, sample rates codec12 does not read and headers that declare more
    samples than the file holds raise ``ValueError`` naming the file and the reason."""
    path = Path(path)
    with open_audio(path) as f:
        info = AudioInfo(frames=int(f.frames), sample_rate=int(f.samplerate), channels=int(f.channels))
    check_file_rate(path, info.sample_rate)
    check_declared_length(path, info.frames)
    return info


def resample_context(orig_rate: int, new_rate: int) -> tuple[int, int, int]:
    """(orig step, new step, context) for block-wise resampling: rates reduced by their gcd, and the number of
    input samples (a multiple of the orig step) each block needs on either side."""
    g = math.gcd(orig_rate, new_rate)
    orig, new = orig_rate // g, new_rate // g
    width = filter_width(orig, new)
    # The filter of output group j covers input [j*orig - width, j*orig + orig + width): one extra step of margin.
    context = (math.ceil((width + orig) / orig) + 1) * orig
    return orig, new, context


def iter_audio_blocks(path: str | os.PathLike, sample_rate: int, channels: int | None = 1,
                      block_seconds: float = 10.0) -> Iterator[torch.Tensor]:
    """Yield float32 blocks [C, n] of the file at ``sample_rate``, each about ``block_seconds`` long.

    Concatenated, they equal ``load_audio(path, sample_rate, channels)`` (see the module docstring for the
    resampling rounding). Raises ``ValueError`` naming the file for unreadable, empty or non-finite audio
    (for a NaN late in the file, after the blocks before it were yielded).
    """
    path = Path(path)
    info = probe_audio(path)
    if info.frames == 0:
        raise ValueError(f"{path}: empty audio (0 samples)")
    if block_seconds <= 0:
        raise ValueError(f"block_seconds must be positive, got {block_seconds}")
    file_rate, total = info.sample_rate, info.frames
    with sf.SoundFile(str(path)) as f:

        def read(n: int) -> torch.Tensor:
            try:
                data = f.read(n, dtype="float32", always_2d=True)
            except sf.LibsndfileError as e:
                raise ValueError(f"{path}: not a readable audio file ({e})") from e
            if data.shape[0] != n:
                raise ValueError(f"{path}: truncated audio: header says {total} samples, data ends early")
            if not np.isfinite(data).all():
                raise ValueError(f"{path}: audio contains NaN or Inf samples")
            return convert_channels(torch.from_numpy(np.ascontiguousarray(data.T)), channels, path)

        if file_rate == sample_rate:
            block = max(1, round(block_seconds * file_rate))
            for start in range(0, total, block):
                yield read(min(block, total - start))
            return

        orig, new, context = resample_context(file_rate, sample_rate)
        block = max(1, round(block_seconds * file_rate / orig)) * orig
        out_total = math.ceil(new * total / orig)
        buf = read(min(total, block + context))  # input samples [buf_start, buf_start + buf.shape[-1])
        buf_start = 0
        for start in range(0, total, block):
            # Input slice [lo, hi): the block plus context (lo and start are multiples of orig, so the slice's
            # output grid lines up with the whole file's).
            lo, hi = max(0, start - context), min(total, start + block + context)
            have = buf_start + buf.shape[-1]
            if hi > have:
                buf = torch.cat([buf, read(hi - have)], dim=-1)
            buf = buf[:, lo - buf_start:]
            buf_start = lo
            out = resample(buf[:, : hi - lo], file_rate, sample_rate)
            first = (start - lo) * new // orig
            count = min(block * new // orig, out_total - start * new // orig)
            yield out[:, first:first + count].contiguous()

