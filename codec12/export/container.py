"""The ``.c12`` container: one encoded file.

Layout (little-endian): magic ``b"C12\\x00"`` | version u8 | header length u32 | UTF-8 JSON header |
codes as uint16 ``[K, T']`` row-major. The header names the model (name, config hash, sample rate, frame
rate, codebook sizes) and the original length in samples, so decoding can check the model and trim.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from codec12._fs import atomic_write
from codec12.command import DEFAULT_MODEL

MAGIC = b"C12\x00"
VERSION = 1
_HEAD = struct.Struct("<4sBI")


def write_c12(path: str | os.PathLike, codes, header: dict[str, Any]) -> None:
    """Write codes [K, T'] (a numpy array or a torch tensor, values < 65536) with ``header``; temp file then
    rename."""
    codes = np.asarray(codes.cpu() if hasattr(codes, "cpu") else codes)
    if codes.ndim != 2:
        raise ValueError(f"{path}: codes must be [K, T'], got shape {codes.shape}")
    if codes.size and (codes.min() < 0 or codes.max() > 65535):
        raise ValueError(f"{path}: codes must fit uint16")
    header = {**header, "num_codebooks": int(codes.shape[0]), "num_frames": int(codes.shape[1])}
    blob = json.dumps(header, sort_keys=True).encode()
    atomic_write(path, lambda p: p.write_bytes(_HEAD.pack(MAGIC, VERSION, len(blob)) + blob
                                              + codes.astype("<u2").tobytes()))


def read_c12(path: str | os.PathLike) -> tuple[np.ndarray, dict[str, Any]]:
    """Read a container: (codes int64 [K, T'], header). Corrupt files raise ValueError naming the file."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) < _HEAD.size:
        raise ValueError(f"{path}: too short to be a .c12 file ({len(data)} bytes)")
    magic, version, size = _HEAD.unpack_from(data)
    if magic != MAGIC:
        raise ValueError(f"{path}: not a .c12 file (bad magic {magic!r})")
    if version != VERSION:
        raise ValueError(f"{path}: .c12 version {version} is not supported (this codec12 reads {VERSION})")
    try:
        header = json.loads(data[_HEAD.size:_HEAD.size + size].decode())
        k, t = int(header["num_codebooks"]), int(header["num_frames"])
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: corrupt .c12 header ({e})") from e
    body = data[_HEAD.size + size:]
    if len(body) != 2 * k * t:
        raise ValueError(f"{path}: truncated .c12 file: expected {2 * k * t} bytes of codes, found {len(body)}")
    codes = np.frombuffer(body, dtype="<u2").reshape(k, t).astype(np.int64)
    return codes, header


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
        "config_hash": codec.config.config_hash(), "weights_hash": codec.weights_hash(),
        "sample_rate": codec.sample_rate, "frame_rate": codec.frame_rate,
        "codebook_sizes": list(codec.codebook_sizes[: codes.shape[0]]), "num_samples": int(wav.shape[-1]),
        "channels": codec.channels,
    })
    return 0


def _cmd_decode(args: argparse.Namespace) -> int:
    import torch

    from codec12 import Codec, save_audio

    out = _output_path(Path(args.output), args.force)
    codes, header = read_c12(args.input)
    model = args.model or header.get("model")
    if not model:
        raise ValueError(f"{args.input}: the file names no model; pass --model")
    codec = Codec.from_pretrained(model, device=args.device)
    if not codec.config.hash_matches(header.get("config_hash")) or header.get("weights_hash") != codec.weights_hash():
        raise ValueError(f"{args.input}: encoded with model {header.get('model')!r} (config "
                         f"{header.get('config_hash')}, weights {header.get('weights_hash')}), which is not the model "
                         f"{model!r}; pass the model it was encoded with as --model")
    wav = codec.decode(torch.from_numpy(codes)[None].to(args.device))[0]
    save_audio(out, wav[..., : int(header.get("num_samples", wav.shape[-1]))], codec.sample_rate)
    return 0


def add_parsers(sub) -> None:

    p = sub.add_parser("encode", help="encode one audio file to a .c12 file")
    p.add_argument("input", help="audio file (any soundfile format; resampled to the model rate)")
    p.add_argument("output", help="output .c12 file")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"model name or directory (default: {DEFAULT_MODEL})")
    p.add_argument("--num-codebooks", type=int, default=None, help="codebooks to keep (default: all)")
    p.add_argument("--device", default="cpu")
    p.add_argument("-f", "--force", action="store_true", help="overwrite the output")
    p.set_defaults(func=_cmd_encode)

    p = sub.add_parser("decode", help="decode a .c12 file to audio")
    p.add_argument("input", help=".c12 file")
    p.add_argument("output", help="output audio file (format from the suffix, e.g. .wav, .flac)")
    p.add_argument("--model", default=None, help="model name or directory (default: the one in the file)")
    p.add_argument("--device", default="cpu")
    p.add_argument("-f", "--force", action="store_true", help="overwrite the output")
    p.set_defaults(func=_cmd_decode)
