"""Reading, resampling and writing audio files."""

from __future__ import annotations

import functools
import math
import os
import struct
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF
import torchaudio.transforms as AT

from codec12._fs import atomic_write

# File sample rates codec12 reads; others are refused (nothing real records speech outside this range).
MIN_FILE_RATE = 1_000
MAX_FILE_RATE = 1_000_000
# torchaudio.functional.resample's defaults (a Hann-windowed sinc, 6 zero crossings, cut-off 0.99 x Nyquist).
LOWPASS_FILTER_WIDTH = 6
ROLLOFF = 0.99
# torchaudio builds its polyphase kernel as one [new, 2 * width + orig] tensor of the gcd-reduced rates: 76 K taps
# for 44100 -> 16000 Hz, but 700 M (gigabytes, and as many multiply-adds per output sample) for 44101 -> 16000.
# Above this many taps the same filter is evaluated at each output sample instead (see resample).
_MAX_KERNEL_TAPS = 1 << 20
_CHUNK_TAPS = 1 << 20  # taps evaluated at once by the per-sample path (tens of MB)
_READ_SAMPLES = 1 << 22  # samples (all channels) read from a file at once


def load_audio(path: str | os.PathLike, sample_rate: int, channels: int | None = 1) -> torch.Tensor:
    """Read any soundfile-supported file as float32 [C, T] at ``sample_rate``.

    ``channels=1`` mixes down to mono, ``channels=2`` duplicates a mono file, ``None`` keeps the file's
    channels. Unreadable, empty, truncated and non-finite files, and sample rates outside 1 kHz - 1 MHz, raise
    ``ValueError`` naming the file and the reason. The file is read block by block, so memory follows the audio
    it holds, whatever length its header claims.
    """
    path = Path(path)
    f = open_audio(path)
    with f:
        check_file_rate(path, f.samplerate)
        declared, blocks, total = f.frames, [], 0
        try:
            while True:
                data = f.read(max(1, _READ_SAMPLES // f.channels), dtype="float32", always_2d=True)
                if not data.shape[0]:
                    break
                if not np.isfinite(data).all():
                    raise ValueError(f"{path}: audio contains NaN or Inf samples")
                blocks.append(convert_channels(torch.from_numpy(np.ascontiguousarray(data.T)), channels, path))
                total += data.shape[0]
        except sf.LibsndfileError as e:
            raise ValueError(f"{path}: not a readable audio file ({e})") from e
    if total < declared:
        raise ValueError(f"{path}: truncated audio: the header declares {declared} samples, the data ends after "
                         f"{total}")
    check_declared_length(path, total)
    if total == 0:
        raise ValueError(f"{path}: empty audio (0 samples)")
    wav = blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=-1)
    return resample(wav, f.samplerate, sample_rate)


def open_audio(path: Path) -> sf.SoundFile:
    """Open an audio file for reading; failures raise ``ValueError`` naming the file and the reason."""
    try:
        return sf.SoundFile(str(path))
    except Exception as e:  # soundfile raises LibsndfileError, RuntimeError, TypeError...
        reason = "file not found" if not path.exists() else f"not a readable audio file ({e})"
        raise ValueError(f"{path}: {reason}") from e


def convert_channels(wav: torch.Tensor, channels: int | None, path: Path) -> torch.Tensor:
    """[C, T] -> [channels, T]: a mono mix-down, or a mono file duplicated (per sample, so block-wise is exact)."""
    if channels is None or wav.shape[0] == channels:
        return wav
    if channels == 1:
        return wav.mean(dim=0, keepdim=True)
    if wav.shape[0] == 1:
        return wav.expand(channels, -1).contiguous()
    raise ValueError(f"{path}: has {wav.shape[0]} channels, cannot convert to {channels}")


def check_file_rate(path: str | os.PathLike, rate: int) -> None:
    """Refuse a file whose header gives a sample rate outside [MIN_FILE_RATE, MAX_FILE_RATE]."""
    if not MIN_FILE_RATE <= rate <= MAX_FILE_RATE:
        raise ValueError(f"{path}: sample rate {rate} Hz is outside what codec12 reads ({MIN_FILE_RATE} to "
                         f"{MAX_FILE_RATE} Hz)")


def check_declared_length(path: str | os.PathLike, frames: int) -> None:
    """Refuse a WAV (RIFF, RIFX, RF64), AIFF or AU file whose header declares more sample data than the file
    holds (a copy or download cut short). ``frames``: the samples the decoder delivers, which libsndfile
    silently clamps to what the file holds. Headers that leave the length open (0 or 0xFFFFFFFF, as streaming
    writers do) are accepted."""
    declared = _declared_frames(Path(path))
    if declared is not None and declared > frames:
        raise ValueError(f"{path}: truncated audio: the header declares {declared} samples, the file holds "
                         f"{frames}")


def _declared_frames(path: Path) -> int | None:
    """Sample frames the header of a WAV/AIFF/AU file declares, or None (another format, or an open length)."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)  # the chunks before the sample data
    except OSError:
        return None
    if len(head) >= 12 and head[:4] in (b"RIFF", b"RIFX", b"RF64") and head[8:12] == b"WAVE":
        return _wav_frames(head)
    if len(head) >= 12 and head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return _aiff_frames(head)
    if len(head) >= 24 and head[:4] == b".snd":  # AU: big-endian offset, size, encoding, rate, channels
        _, size_field, encoding, _, channels = struct.unpack_from(">IIIII", head, 4)
        width = {2: 1, 3: 2, 4: 3, 5: 4, 6: 4, 7: 8}.get(encoding)  # linear PCM and float encodings
        if size_field in (0, 0xFFFFFFFF) or width is None or channels == 0:
            return None
        return size_field // (width * channels)
    return None


def _wav_frames(head: bytes) -> int | None:
    endian = ">" if head[:4] == b"RIFX" else "<"
    ds64_data = block_align = None
    offset = 12
    while offset + 8 <= len(head):
        chunk, length = head[offset:offset + 4], struct.unpack_from(endian + "I", head, offset + 4)[0]
        if chunk == b"ds64" and offset + 24 <= len(head):
            ds64_data = struct.unpack_from("<Q", head, offset + 16)[0]
        elif chunk == b"fmt " and offset + 22 <= len(head):
            block_align = struct.unpack_from(endian + "H", head, offset + 20)[0]
        elif chunk == b"data":
            if length == 0xFFFFFFFF and head[:4] == b"RF64":
                length = ds64_data
            if not length or length == 0xFFFFFFFF or not block_align:
                return None
            return length // block_align
        offset += 8 + length + (length & 1)
    return None


def _aiff_frames(head: bytes) -> int | None:
    offset = 12
    while offset + 8 <= len(head):
        chunk, length = head[offset:offset + 4], struct.unpack_from(">I", head, offset + 4)[0]
        if chunk == b"COMM" and offset + 14 <= len(head):
            return struct.unpack_from(">I", head, offset + 10)[0]
        offset += 8 + length + (length & 1)
    return None


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

def resample(wav: torch.Tensor, orig_rate: int, new_rate: int) -> torch.Tensor:
    """Resample [..., T] from ``orig_rate`` to ``new_rate`` Hz -> [..., ceil(T * new_rate / orig_rate)].

    The filter is torchaudio's (``torchaudio.functional.resample`` with its defaults). Where torchaudio's kernel
    for the gcd-reduced rates stays small (every common pair of rates) it runs as it is; otherwise (44101 Hz,
    96001 Hz, any rate coprime with the model's) the same windowed sinc is evaluated at each output sample, in
    memory bounded by a chunk of output samples and time linear in the length: the result equals torchaudio's up
    to float32 rounding (within 1e-6 of it).
    """
    if orig_rate == new_rate:
        return wav
    g = math.gcd(orig_rate, new_rate)
    orig, new = orig_rate // g, new_rate // g
    width = filter_width(orig, new)
    if new * (2 * width + orig) <= _MAX_KERNEL_TAPS:
        if wav.dtype == torch.float32 and wav.device.type == "cpu":
            return _resampler(orig_rate, new_rate)(wav)
        return AF.resample(wav, orig_rate, new_rate)
    return _resample_per_sample(wav, orig, new, width)


@functools.lru_cache(maxsize=8)
def _resampler(orig_rate: int, new_rate: int) -> torch.nn.Module:
    """torchaudio's resampler with its kernel built once per pair of rates (building it took as long as applying
    it to 8 s of audio). Its float32 kernel is the one ``torchaudio.functional.resample`` builds for float32
    audio, so the result is bitwise the same."""
    return AT.Resample(orig_rate, new_rate, dtype=torch.float32)


def filter_width(orig: int, new: int) -> int:
    """Input samples the resampling filter reaches on either side of an output sample (gcd-reduced rates)."""
    return math.ceil(LOWPASS_FILTER_WIDTH * orig / (min(orig, new) * ROLLOFF))


def _resample_per_sample(wav: torch.Tensor, orig: int, new: int, width: int) -> torch.Tensor:
    # Output m sits at input position m * orig / new; input n weighs sinc(pi * t) * cos(pi * t / 12) ** 2 (Hann,
    # 6 zero crossings) with t = (n / orig - m / new) * base clamped to [-6, 6], scaled by base / orig: torchaudio's
    # kernel, computed in float64 from the exact integer n * new - m * orig.
    shape, length = wav.shape, wav.shape[-1]
    x = wav.reshape(-1, length)
    out_length = -(-new * length // orig)
    base = min(orig, new) * ROLLOFF
    taps = torch.arange(-width, width + 2)  # covers |n - m * orig / new| <= width
    x = torch.nn.functional.pad(x, (width + 1, width + 2))  # zeros beyond both ends, as torchaudio pads
    out = x.new_empty(x.shape[0], out_length)
    step = max(1, _CHUNK_TAPS // len(taps))
    for start in range(0, out_length, step):
        m = torch.arange(start, min(start + step, out_length), dtype=torch.int64)
        n = (m * orig // new)[:, None] + taps[None]  # [M, taps] input indices
        t = (n * new - m[:, None] * orig).double() * (base / (orig * new))
        t = t.clamp_(-LOWPASS_FILTER_WIDTH, LOWPASS_FILTER_WIDTH)
        window = torch.cos(t * (math.pi / LOWPASS_FILTER_WIDTH / 2)) ** 2
        t *= math.pi
        kernel = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / t) * window * (base / orig)
        frames = x[:, n + width + 1]  # [C, M, taps]
        out[:, start:start + len(m)] = (frames * kernel.to(x.dtype)).sum(-1)
    return out.reshape(*shape[:-1], out_length)
