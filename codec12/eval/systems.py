"""Systems under test: a codec12 model at some number of codebooks, and classical baselines run through their
Debian command-line tools. Each one round-trips mono 16 kHz audio and says how many bits it spent."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from codec12.eval.metrics import SAMPLE_RATE


class SystemUnavailable(Exception):
    """The system cannot run on this machine (a tool is missing): it is skipped for the whole run."""


@dataclass
class RoundTrip:
    """Decoded audio [T] at 16 kHz (any length: the harness aligns or trims it) and the bits it cost."""

    audio: np.ndarray
    bits: int


class System:
    """Base class. ``align``: decoded audio is delay-compensated against the reference before scoring.

    ``kind`` places the system in the report: ``"model"`` (the codec12 model under test: its codebook counts are
    joined as one curve in the rate-quality plot, ``num_codebooks`` None in continuous mode), ``"baseline"`` (a
    labelled point, compared with the model's settings at equal bitrate) or ``"reference"`` (the original,
    left out of both)."""

    name: str
    align: bool = False
    kind: str = "baseline"
    num_codebooks: int | None = None

    def roundtrip(self, wav: np.ndarray) -> RoundTrip:
        """Mono float32 [T] at 16 kHz -> :class:`RoundTrip`."""
        raise NotImplementedError


class FunctionSystem(System):
    """Any ``f(wav [T]) -> wav`` at 16 kHz with a nominal bitrate: reference rows and tests."""

    def __init__(self, name: str, fn: Callable[[np.ndarray], np.ndarray], bitrate: float = 0.0,
                 align: bool = False, kind: str = "baseline") -> None:
        if kind not in ("model", "baseline", "reference"):
            raise ValueError(f"system {name!r}: kind must be 'model', 'baseline' or 'reference', got {kind!r}")
        self.name, self.fn, self.bitrate, self.align, self.kind = name, fn, bitrate, align, kind

    def roundtrip(self, wav: np.ndarray) -> RoundTrip:
        return RoundTrip(np.asarray(self.fn(wav), np.float32), round(self.bitrate * len(wav) / SAMPLE_RATE))


class ModelSystem(System):
    """A codec12 model at ``num_codebooks``: resample to the model rate, encode, decode, trim, back to 16 kHz.

    ``continuous=True`` scores the continuous mode instead: the pre-quantization latents, rounded to float16 as
    ``codec12 tokenize --latents`` stores them, decoded by the same decoder; their bits are those float16 values
    (``num_codebooks`` is then unused). The causal codec is sample-aligned by construction, so no delay is
    compensated.
    """

    kind = "model"

    def __init__(self, codec, num_codebooks: int | None = None, name: str | None = None, *,
                 continuous: bool = False) -> None:
        base = codec.config.name or "codec12"
        if continuous:
            self.name = name or f"{base}-continuous"
            self.bits_per_frame = 16 * codec.latent_dim
        else:
            self.name = name or f"{base}-{num_codebooks}cb"
            self.bits_per_frame = codec.bitrate_at(num_codebooks) / codec.frame_rate
        self.codec, self.num_codebooks, self.continuous = codec, num_codebooks, continuous

    def roundtrip(self, wav: np.ndarray) -> RoundTrip:
        codec = self.codec
        x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))[None, None]
        if codec.sample_rate != SAMPLE_RATE:
            x = AF.resample(x, SAMPLE_RATE, codec.sample_rate)
        x = x.expand(1, codec.channels, -1).to(next(codec.parameters()).device)
        with torch.no_grad():
            if self.continuous:
                z = codec.encode_latents(x)
                stream = z.to(torch.float16).to(z.dtype)
                y = codec.decode_latents(stream)
            else:
                stream = codec.encode(x, self.num_codebooks)
                y = codec.decode(stream)
            y = y[..., : x.shape[-1]].mean(dim=1)[0].float().cpu()
        if codec.sample_rate != SAMPLE_RATE:
            y = AF.resample(y, codec.sample_rate, SAMPLE_RATE)
        return RoundTrip(y.numpy(), round(self.bits_per_frame * stream.shape[-1]))


def _tool(name: str, path: str | None, package: str) -> str:
    found = shutil.which(name, path=path)
    if found is None:
        raise SystemUnavailable(f"{name} not found on PATH (install the Debian package {package}: "
                                f"apt-get install {package})")
    return found


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{Path(cmd[0]).name} failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}")


class Codec2System(System):
    """Codec2 (narrowband, 8 kHz raw s16) through ``c2enc``/``c2dec``; the .bit file is headerless."""

    align = True

    def __init__(self, mode: int, tool_path: str | None = None) -> None:
        self.name, self.mode = f"codec2-{mode}", str(mode)
        self.c2enc = _tool("c2enc", tool_path, "codec2")
        self.c2dec = _tool("c2dec", tool_path, "codec2")

    def roundtrip(self, wav: np.ndarray) -> RoundTrip:
        x8 = AF.resample(torch.from_numpy(np.ascontiguousarray(wav, np.float32)), SAMPLE_RATE, 8000).numpy()
        with tempfile.TemporaryDirectory(prefix="codec12-c2-") as tmp:
            raw_in, bits, raw_out = (os.path.join(tmp, n) for n in ("in.raw", "out.bit", "out.raw"))
            (np.clip(x8, -1, 1) * 32767).astype("<i2").tofile(raw_in)
            _run([self.c2enc, self.mode, raw_in, bits])
            _run([self.c2dec, self.mode, bits, raw_out])
            y8 = np.fromfile(raw_out, dtype="<i2").astype(np.float32) / 32768
            nbits = 8 * os.path.getsize(bits)
        y = AF.resample(torch.from_numpy(y8), 8000, SAMPLE_RATE).numpy()
        return RoundTrip(y, nbits)


def opus_payload_bytes(ogg: bytes) -> int:
    """Bytes of Opus audio packets in an Ogg Opus file: the container and the OpusHead/OpusTags header packets
    are left out, so the bitrate is what a packet transport (RTP) would carry."""
    sizes, current, pos = [], 0, 0
    while pos + 27 <= len(ogg):
        if ogg[pos:pos + 4] != b"OggS":
            raise ValueError("not an Ogg stream")
        nseg = ogg[pos + 26]
        lacing = ogg[pos + 27:pos + 27 + nseg]
        for n in lacing:
            current += n
            if n < 255:  # a lacing value below 255 ends a packet
                sizes.append(current)
                current = 0
        pos += 27 + nseg + sum(lacing)
    return sum(sizes[2:])


class OpusSystem(System):
    """Opus through ``opusenc``/``opusdec`` at a target bitrate; the bits counted are the Opus packets'
    (the Ogg container and header packets add about 1 kB per file on top)."""

    align = True

    def __init__(self, kbps: float, tool_path: str | None = None) -> None:
        self.name, self.kbps = f"opus-{kbps:g}k", kbps
        self.opusenc = _tool("opusenc", tool_path, "opus-tools")
        self.opusdec = _tool("opusdec", tool_path, "opus-tools")

    def roundtrip(self, wav: np.ndarray) -> RoundTrip:
        with tempfile.TemporaryDirectory(prefix="codec12-opus-") as tmp:
            src, enc, dst = (os.path.join(tmp, n) for n in ("in.wav", "out.opus", "out.wav"))
            sf.write(src, np.clip(wav, -1, 1), SAMPLE_RATE, subtype="PCM_16")
            _run([self.opusenc, "--quiet", "--bitrate", f"{self.kbps:g}", src, enc])
            _run([self.opusdec, "--quiet", "--rate", str(SAMPLE_RATE), enc, dst])
            y, rate = sf.read(dst, dtype="float32", always_2d=True)
            nbits = 8 * opus_payload_bytes(Path(enc).read_bytes())
        if rate != SAMPLE_RATE:
            raise RuntimeError(f"opusdec wrote {rate} Hz instead of {SAMPLE_RATE}")
        return RoundTrip(y.mean(axis=1), nbits)


BASELINES = ("codec2-1200", "codec2-3200", "opus-6k")


def parse_baseline(name: str) -> tuple[type[System], int | str | float]:
    """``codec2-<mode>`` or ``opus-<kbps>k`` -> (system class, its argument); ValueError for anything else."""
    kind, _, arg = name.partition("-")
    if kind == "codec2" and arg in ("3200", "2400", "1600", "1400", "1300", "1200", "700C"):
        return Codec2System, int(arg) if arg.isdigit() else arg
    if kind == "opus" and re.fullmatch(r"\d+(\.\d+)?k", arg) and 6 <= float(arg[:-1]) <= 256:
        return OpusSystem, float(arg[:-1])
    raise ValueError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)} (codec2-<3200|2400|1600|1400|1300|"
                     f"1200|700C>, opus-<6..256>k)")


def make_baseline(name: str, tool_path: str | None = None) -> System:
    """Build a baseline by name. Raises SystemUnavailable when its tools are not on ``tool_path`` (``None``: the
    PATH environment variable), ValueError for an unknown name."""
    cls, arg = parse_baseline(name)
    return cls(arg, tool_path)
