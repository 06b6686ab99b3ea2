"""The ``.c12`` container: one encoded file.

Layout (little-endian): magic ``b"C12\\x00"`` | version u8 | header length u32 | UTF-8 JSON header | codes.
The header names the model (name, config hash and its format, sample rate, frame rate, codebook sizes) and the
original length in samples, so decoding can check the model and trim. A header without ``config_hash_format``
holds a format-1 hash (files written before the field). Version 2 packs the codes: row ``k`` of every frame takes
``code_bits[k]`` bits (the header's list; ``ceil(log2(codebook size))`` as written by :func:`write_c12`), frame
after frame, most significant bit first, with zero bits to fill the last byte; so the file holds the model's
bitrate plus the header. Version 1 (still read) stored codes as uint16 ``[K, T']`` row-major.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from codec12._fs import atomic_write
from codec12.command import DEFAULT_MODEL
from codec12.config import CONFIG_HASH_FORMAT, CONFIG_HASH_FORMATS

MAGIC = b"C12\x00"
VERSION = 2
READ_VERSIONS = (1, 2)
_HEAD = struct.Struct("<4sBI")
_MAX_HEADER_BYTES = 1 << 20  # written headers are a few hundred bytes
# Header fields and the JSON types they must have (every writer of this version writes them all).
_HEADER_TYPES = {"num_codebooks": int, "num_frames": int, "num_samples": int, "sample_rate": int,
                 "codebook_sizes": list, "config_hash": str, "weights_hash": str, "model": str, "frame_rate": float,
                 "channels": int, "code_bits": list, "config_hash_format": int}
# What ``codec12 encode`` writes and ``codec12 decode`` needs (``config_hash_format``: 1 when absent).
HEADER_FIELDS = tuple(k for k in _HEADER_TYPES if k not in ("code_bits", "config_hash_format"))


def bits_for(codebook_size: int) -> int:
    """Bits that hold every code of a codebook: ``ceil(log2(size))``, at least 1."""
    return max(1, (int(codebook_size) - 1).bit_length())


def pack_codes(codes: np.ndarray, code_bits: list[int]) -> bytes:
    """Codes [K, T'] (each row ``k`` below ``2 ** code_bits[k]``) -> bytes: frame after frame, row ``k`` in
    ``code_bits[k]`` bits, most significant bit first, zero bits after the last code up to a whole byte."""
    columns = [(codes[k][:, None] >> np.arange(b - 1, -1, -1)) & 1 for k, b in enumerate(code_bits)]
    return np.packbits(np.concatenate(columns, axis=1).astype(np.uint8)).tobytes()  # [T', sum(bits)] row-major


def unpack_codes(body: bytes, code_bits: list[int], num_frames: int) -> np.ndarray:
    """The inverse of :func:`pack_codes`: bytes -> codes int64 [K, T']."""
    width = sum(code_bits)
    bits = np.unpackbits(np.frombuffer(body, np.uint8), count=num_frames * width).reshape(num_frames, width)
    rows, start = [], 0
    for b in code_bits:
        rows.append(bits[:, start:start + b].astype(np.int64) @ (1 << np.arange(b - 1, -1, -1, dtype=np.int64)))
        start += b
    return np.stack(rows) if rows else np.zeros((0, num_frames), np.int64)


def packed_size(code_bits: list[int], num_frames: int) -> int:
    """Bytes of codes in a version-2 file."""
    return (sum(code_bits) * num_frames + 7) // 8


def write_c12(path: str | os.PathLike, codes, header: dict[str, Any]) -> None:
    """Write codes [K, T'] (a numpy array or a torch tensor) with ``header``, atomically. Each row is packed in
    ``ceil(log2(size))`` bits of its codebook size (``header["codebook_sizes"]``; without it, in the bits its
    largest code needs)."""
    codes = np.asarray(codes.cpu() if hasattr(codes, "cpu") else codes).astype(np.int64)
    if codes.ndim != 2:
        raise ValueError(f"{path}: codes must be [K, T'], got shape {codes.shape}")
    if codes.size and (codes.min() < 0 or codes.max() > 65535):
        raise ValueError(f"{path}: codes must be in [0, 65535]")
    if "codebook_sizes" in header:
        sizes = list(header["codebook_sizes"])
        if len(sizes) != codes.shape[0]:
            raise ValueError(f"{path}: {len(sizes)} codebook_sizes for {codes.shape[0]} rows of codes")
        if codes.size and (codes >= np.asarray(sizes)[:, None]).any():
            row = int((codes >= np.asarray(sizes)[:, None]).any(axis=1).nonzero()[0][0])
            raise ValueError(f"{path}: codes out of range in row {row} (codebook size {sizes[row]})")
    else:
        sizes = [int(row.max()) + 1 if row.size else 2 for row in codes]
    code_bits = [bits_for(s) for s in sizes]
    header = {**header, "num_codebooks": int(codes.shape[0]), "num_frames": int(codes.shape[1]),
              "code_bits": code_bits}
    blob = json.dumps(header, sort_keys=True).encode()
    atomic_write(path, lambda p: p.write_bytes(_HEAD.pack(MAGIC, VERSION, len(blob)) + blob
                                              + pack_codes(codes, code_bits)))


def read_c12(path: str | os.PathLike) -> tuple[np.ndarray, dict[str, Any]]:
    """Read a container of version 1 or 2: (codes int64 [K, T'], header). Corrupt files, and header fields of the
    wrong type or out of range (:func:`check_header`), raise ValueError naming the file and the field."""
    path = Path(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(_HEAD.size)
        if len(head) < _HEAD.size:
            raise ValueError(f"{path}: too short to be a .c12 file ({len(head)} bytes)")
        magic, version, header_size = _HEAD.unpack(head)
        if magic != MAGIC:
            raise ValueError(f"{path}: not a .c12 file (bad magic {magic!r})")
        if version not in READ_VERSIONS:
            raise ValueError(f"{path}: .c12 version {version} is not supported (this codec12 reads versions "
                             f"{', '.join(map(str, READ_VERSIONS))})")
        if header_size > min(_MAX_HEADER_BYTES, size - _HEAD.size):
            raise ValueError(f"{path}: corrupt .c12 header (its length field says {header_size} bytes, the file has "
                             f"{size - _HEAD.size} after the fixed part)")
        try:
            header = json.loads(f.read(header_size).decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: corrupt .c12 header ({e})") from e
        check_header(header, path, required=("num_codebooks", "num_frames") + (("code_bits",) if version >= 2 else ()))
        k, t = header["num_codebooks"], header["num_frames"]
        body_size = size - _HEAD.size - header_size
        expected = packed_size(header["code_bits"], t) if version >= 2 else 2 * k * t
        if body_size != expected:
            raise ValueError(f"{path}: truncated .c12 file: the header says {k} x {t} codes ({expected} bytes), "
                             f"the file holds {body_size} bytes of codes")
        body = f.read(body_size)
        if version >= 2:
            codes = unpack_codes(body, header["code_bits"], t)
        else:
            codes = np.frombuffer(body, dtype="<u2").reshape(k, t).astype(np.int64)
    if "codebook_sizes" in header:
        bad = (codes >= np.asarray(header["codebook_sizes"])[:, None]).any(axis=1)
        if bad.any():
            row = int(bad.nonzero()[0][0])
            raise ValueError(f"{path}: codes out of range in row {row} (codebook size {header['codebook_sizes'][row]})")
    return codes, header


def check_header(header: Any, path: str | os.PathLike, required: tuple[str, ...] = HEADER_FIELDS) -> None:
    """Check a ``.c12`` header: the ``required`` fields are there, and every known field present has its type
    and a value in range (codebook sizes that match the rows, a sample count that fits the frames...)."""
    if not isinstance(header, dict):
        raise ValueError(f"{path}: corrupt .c12 header (a JSON {type(header).__name__}, not an object)")
    missing = [k for k in required if k not in header]
    if missing:
        raise ValueError(f"{path}: .c12 header lacks {missing}")
    for key, kind in _HEADER_TYPES.items():
        if key not in header:
            continue
        value = header[key]
        ok = isinstance(value, (int, float)) and math.isfinite(value) if kind is float else isinstance(value, kind)
        if not ok or isinstance(value, bool):
            raise ValueError(f"{path}: .c12 header field {key} must be {_KIND_NAMES[kind]}, got {value!r:.80}")
    k, t = header["num_codebooks"], header["num_frames"]
    checks = [(1 <= k <= 65536, f"num_codebooks must be in [1, 65536], got {k}"),
              (t >= 1, f"num_frames must be >= 1, got {t}")]
    if "codebook_sizes" in header:
        sizes = header["codebook_sizes"]
        checks.append((len(sizes) == k and all(isinstance(s, int) and not isinstance(s, bool) and 2 <= s <= 65536
                                                for s in sizes),
                       f"codebook_sizes must be {k} integers in [2, 65536], got {sizes!r:.80}"))
    if "code_bits" in header:
        bits = header["code_bits"]
        checks.append((len(bits) == k and all(isinstance(b, int) and not isinstance(b, bool) and 1 <= b <= 16
                                              for b in bits),
                       f"code_bits must be {k} integers in [1, 16], got {bits!r:.80}"))
    if "sample_rate" in header:
        checks.append((0 < header["sample_rate"] <= 1_000_000,
                       f"sample_rate must be in [1, 1000000], got {header['sample_rate']}"))
    if "frame_rate" in header:
        checks.append((header["frame_rate"] > 0, f"frame_rate must be positive, got {header['frame_rate']}"))
    if "channels" in header:
        checks.append((header["channels"] in (1, 2), f"channels must be 1 or 2, got {header['channels']}"))
    if "model" in header:
        checks.append((bool(header["model"]), "model is an empty string"))
    if "num_samples" in header:
        checks.append((header["num_samples"] >= 1, f"num_samples must be >= 1, got {header['num_samples']}"))
    if "config_hash_format" in header:
        checks.append((header["config_hash_format"] in CONFIG_HASH_FORMATS,
                       f"config_hash_format {header['config_hash_format']} is not supported (this codec12 reads "
                       f"{', '.join(map(str, CONFIG_HASH_FORMATS))})"))
    for ok, problem in checks:
        if not ok:
            raise ValueError(f"{path}: .c12 header field {problem}")
    if {"num_samples", "sample_rate", "frame_rate"} <= header.keys():
        frame_size = header["sample_rate"] / header["frame_rate"]
        n = header["num_samples"]
        if not (t - 1) * frame_size < n <= t * frame_size:
            raise ValueError(f"{path}: .c12 header field num_samples ({n}) does not fit {t} frames of {frame_size:g} "
                             f"samples")


_KIND_NAMES = {int: "an integer", float: "a number", str: "a string", list: "a list"}


def _output_path(path: Path, force: bool) -> Path:
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists; pass -f to overwrite")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _cmd_encode(args: argparse.Namespace) -> int:
    from codec12 import Codec, load_audio

    out = _output_path(Path(args.output), args.force)
    codec = Codec.from_pretrained(args.model, device=args.device)
    wav = load_audio(args.input, codec.sample_rate, codec.channels)
    codes = codec.encode(wav[None].to(args.device), args.num_codebooks)[0]
    source = Path(args.model)
    write_c12(out, codes, {
        "model": str(source.resolve()) if source.is_dir() else str(args.model),
        "config_hash": codec.config.config_hash(), "config_hash_format": CONFIG_HASH_FORMAT,
        "weights_hash": codec.weights_hash(), "sample_rate": codec.sample_rate, "frame_rate": codec.frame_rate,
        "codebook_sizes": list(codec.codebook_sizes[: codes.shape[0]]), "num_samples": int(wav.shape[-1]),
        "channels": codec.channels,
    })
    return 0


def _cmd_decode(args: argparse.Namespace) -> int:
    import torch

    from codec12 import Codec, save_audio

    out = _output_path(Path(args.output), args.force)
    codes, header = read_c12(args.input)
    check_header(header, args.input, tuple(k for k in HEADER_FIELDS if k != "model" or args.model is None))
    model = args.model or header["model"]
    # A model the file names is only looked for locally (bundled, or a directory): a file must not start a download.
    try:
        codec = Codec.from_pretrained(model, device=args.device, local_only=args.model is None)
    except ValueError as e:
        if args.model is not None:
            raise
        raise ValueError(f"{args.input}: names model {model!r}, which cannot be used ({e}); pass the model it was "
                         f"encoded with as --model") from e
    if (not codec.config.hash_matches(header["config_hash"], header.get("config_hash_format", 1))
            or header["weights_hash"] != codec.weights_hash()):
        raise ValueError(f"{args.input}: encoded with model {header.get('model')!r} (config {header['config_hash']}, "
                         f"weights {header['weights_hash']}), which is not the model {model!r}; pass the model it was "
                         f"encoded with as --model")
    if (header["sample_rate"], header["channels"], header["codebook_sizes"]) != (
            codec.sample_rate, codec.channels, list(codec.codebook_sizes[: codes.shape[0]])):
        raise ValueError(f"{args.input}: the header's sample_rate, channels or codebook_sizes differ from the model's")
    wav = codec.decode(torch.from_numpy(codes)[None].to(args.device))[0]
    save_audio(out, wav[..., : header["num_samples"]], codec.sample_rate)
    return 0


def add_parsers(sub) -> None:

    p = sub.add_parser("encode", help="encode one audio file to a .c12 file")
    p.add_argument("input", help="audio file (any soundfile format; resampled to the model rate)")
    p.add_argument("output", help="output .c12 file")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"model name or directory (default: {DEFAULT_MODEL})")
    p.add_argument("--num-codebooks", type=int, default=None, help="codebooks to keep (default: all)")
    p.add_argument("--device", default="cpu", help="torch device to run the model on: cpu, cuda, cuda:N (default: cpu)")
    p.add_argument("-f", "--force", action="store_true", help="overwrite the output")
    p.set_defaults(func=_cmd_encode)

    p = sub.add_parser("decode", help="decode a .c12 file to audio")
    p.add_argument("input", help=".c12 file")
    p.add_argument("output", help="output audio file (format from the suffix, e.g. .wav, .flac)")
    p.add_argument("--model", default=None, help="model name or directory (default: the one in the file)")
    p.add_argument("--device", default="cpu", help="torch device to run the model on: cpu, cuda, cuda:N (default: cpu)")
    p.add_argument("-f", "--force", action="store_true", help="overwrite the output")
    p.set_defaults(func=_cmd_decode)
