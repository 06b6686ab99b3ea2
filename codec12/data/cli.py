"""``codec12 tokenize`` and ``codec12 detokenize``.

Under ``torchrun`` (RANK / WORLD_SIZE in the environment) every process takes its share of the inputs by
itself: no process group is needed, since the shards are disjoint and their file names never collide.
``--num-shards N --shard-index I`` splits further, e.g. one job-array task per node with torchrun inside.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from codec12.command import DEFAULT_MODEL, CLIError

log = logging.getLogger("codec12.data")


def _distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank) from the torchrun environment; (0, 1, 0) otherwise."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as e:
        raise ValueError(f"RANK / WORLD_SIZE / LOCAL_RANK must be integers ({e})") from e
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK={rank} is not in [0, WORLD_SIZE={world})")
    return rank, world, local


def _device(name: str, local_rank: int) -> str:
    import torch

    if name != "auto":
        return name
    if torch.cuda.is_available():
        return f"cuda:{local_rank % torch.cuda.device_count()}"
    return "cpu"


def _setup_logging(quiet: bool, prefix: str) -> None:
    logger = logging.getLogger("codec12.data")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"%(asctime)s {prefix}%(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
    # With a bar, only warnings interrupt it; --quiet gives plain periodic log lines instead.
    logger.setLevel(logging.INFO if quiet else logging.WARNING)


def _cmd_tokenize(args: argparse.Namespace) -> int:
    from codec12.data.inputs import discover_inputs
    from codec12.data.tokenize import TokenizeOptions, tokenize_dataset

    rank, world, local = _distributed()
    if (args.shard_index is None) != (args.num_shards is None):
        raise CLIError("--num-shards and --shard-index go together")
    if args.num_shards is not None and args.num_shards < 1:
        raise CLIError(f"--num-shards must be at least 1, got {args.num_shards}")
    num_shards, shard_index = args.num_shards or 1, args.shard_index or 0
    if not 0 <= shard_index < num_shards:
        raise CLIError(f"--shard-index must be in [0, {num_shards}), got {shard_index}")
    # Each torchrun process takes a sub-share of the (optional) --num-shards share.
    options = TokenizeOptions(
        num_codebooks=args.num_codebooks, latents=args.latents, max_memory_mb=args.max_memory_mb,
        batch_size=args.batch_size, max_batch_seconds=args.max_batch_seconds, workers=args.workers,
        shard_size=args.shard_size, long_file_seconds=args.long_file_seconds, chunk_seconds=args.chunk_seconds,
        min_duration=args.min_duration, num_shards=num_shards * world, shard_index=shard_index * world + rank,
        retry_failed=args.retry_failed,
        progress=not args.quiet and local == 0,  # one bar per machine; the other processes log
    )
    prefix = f"[{options.shard_index}/{options.num_shards}] " if options.num_shards > 1 else ""
    _setup_logging(args.quiet or not options.progress, prefix)
    inputs = discover_inputs(args.input)
    device = _device(args.device, local)
    import torch

    if world > 1 and device == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    with _model(args.model, args.runtime, device, torch.get_num_threads(), args.device == "auto") as (codec, device):
        summary = tokenize_dataset(inputs, Path(args.out), codec, options, model_source=args.model, device=device)
    print(f"codec12 tokenize: {prefix}{summary.describe()}; output in {args.out}", file=sys.stderr)
    if summary.failed:
        print(f"codec12 tokenize: {prefix}failures are listed in {Path(args.out) / 'errors.jsonl'}", file=sys.stderr)
    if args.strict and summary.failed:
        return 1
    # Non-zero only when nothing could be processed: inputs failed and this partition has no row at all.
    return 0 if summary.usable else 1


@contextmanager
def _model(name: str, runtime: str, device: str, threads: int, auto: bool) -> Iterator[tuple[object, str]]:
    """The model to tokenize with, and the device it runs on: a Codec, or an OnnxCodec for ``--runtime onnx``. An
    ONNX export directory is run as it is; a model is exported to a temporary directory first (removed at the
    end)."""
    from codec12 import Codec

    is_export = _is_export(name)
    if runtime == "torch":
        if is_export:
            raise CLIError(f"{name} is an ONNX export: tokenize through it with --runtime onnx, or give the model "
                           f"it was exported from")
        yield Codec.from_pretrained(name, device=device), device
        return
    from codec12.export.runtime import OnnxCodec

    providers, device = _onnx_providers(device, auto)
    if is_export:
        yield OnnxCodec(name, providers=providers, num_threads=threads), device
        return
    from codec12.export.onnx import export_onnx

    codec = Codec.from_pretrained(name)
    with tempfile.TemporaryDirectory(prefix="codec12-onnx-") as tmp:
        log.info("exporting %s to ONNX in %s", name, tmp)
        export_onnx(codec, Path(tmp) / "onnx")
        del codec  # the export is all the run needs
        yield OnnxCodec(Path(tmp) / "onnx", providers=providers, num_threads=threads), device


def _onnx_providers(device: str, auto: bool) -> tuple[list, str]:
    """onnxruntime execution providers for ``--device`` (cpu, cuda, cuda:N), and the device they run on. With
    ``--device auto``, a GPU only where this onnxruntime can use it."""
    from codec12._optional import require

    ort = require("onnxruntime", "onnx", "--runtime onnx")
    if device == "cpu":
        return ["CPUExecutionProvider"], device
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        if auto:
            return ["CPUExecutionProvider"], "cpu"
        raise CLIError(f"--device {device}: this onnxruntime runs on the CPU only (install onnxruntime-gpu), or "
                       f"use --device cpu")
    index = int(device.partition(":")[2] or 0)
    return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"], device


def _cmd_detokenize(args: argparse.Namespace) -> int:
    from codec12 import Codec
    from codec12.data.dataset_format import read_meta
    from codec12.data.detokenize import detokenize_dataset

    meta = read_meta(args.input)
    model = args.model
    if model is None:  # the dataset's model: a bundled one or a local directory, never a download
        source = meta["model_source"]
        model = source if source and Path(source).is_dir() and not _is_export(source) else meta["model"]
    try:
        codec = Codec.from_pretrained(model, device=_device(args.device, 0), local_only=args.model is None)
    except ValueError as e:
        if args.model is None and _is_export(meta["model_source"]):
            raise CLIError(f"{args.input} was tokenized through the ONNX export {meta['model_source']}; pass --model "
                           f"with the model it was exported from ({e})") from None
        raise
    summary = detokenize_dataset(args.input, args.out, codec, num_codebooks=args.num_codebooks,
                                 from_latents=args.from_latents, force=args.force, progress=not args.quiet,
                                 suffix=args.format if args.format.startswith(".") else f".{args.format}")
    for line in summary.damaged_shards:
        print(f"codec12 detokenize: damaged shard skipped: {line}", file=sys.stderr)
    for uid in summary.failed[:10]:
        print(f"codec12 detokenize: row {uid!r} failed: {summary.reasons[uid]}", file=sys.stderr)
    if len(summary.failed) > 10:
        print(f"codec12 detokenize: ... and {len(summary.failed) - 10} more failed rows", file=sys.stderr)
    print(f"codec12 detokenize: {summary.written} written, {summary.skipped} already there, "
          f"{len(summary.failed)} failed, {len(summary.damaged_shards)} damaged shards skipped; "
          f"{summary.audio_seconds / 3600:.3f} h of audio in {summary.elapsed_s:.1f} s", file=sys.stderr)
    # Non-zero only when nothing could be done: rows or shards failed and no file was written or already there.
    return 1 if (summary.failed or summary.damaged_shards) and not (summary.written or summary.skipped) else 0


def _is_export(path: str) -> bool:
    from codec12.export.runtime import SIDECAR_NAME

    return bool(path) and (Path(path) / SIDECAR_NAME).is_file()


def add_parsers(sub) -> None:

    p = sub.add_parser("tokenize", help="tokenize a dataset into Parquet shards (resumable, parallel)",
                       description="Encode every audio file of INPUT into codes stored in Parquet shards under "
                                   "--out. Resumable: run the same command again after any interruption.")
    p.add_argument("input", help="directory (searched recursively), manifest (.jsonl/.tsv/.csv/.txt) or glob")
    p.add_argument("--out", required=True, help="output directory (shards, codec12_meta.json, errors.jsonl)")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"model name or directory; with --runtime onnx also an ONNX export directory "
                        f"(default: {DEFAULT_MODEL})")
    p.add_argument("--runtime", choices=("torch", "onnx"), default="torch",
                   help="run the model with PyTorch or through its ONNX export on onnxruntime (a model that is not "
                        "an export is exported to a temporary directory first); default: torch")
    p.add_argument("--num-codebooks", type=int, default=None, help="codebooks to keep (default: all)")
    p.add_argument("--latents", action="store_true", help="also store the continuous latents (float16)")
    p.add_argument("--max-memory-mb", type=float, default=None,
                   help="peak memory (resident set, MiB) to aim for, libraries and model included; batches, "
                        "streaming chunks and the files read whole follow from it and the model's size (default: "
                        "1536, or what the process holds after loading the model plus 512 if more)")
    p.add_argument("--batch-size", type=int, default=16, help="files per batch (default: 16)")
    p.add_argument("--max-batch-seconds", type=float, default=None,
                   help="at most this much padded audio per batch, in seconds (default: what encodes fastest "
                        "within the memory budget: a few seconds on a CPU, up to 160 on a GPU)")
    p.add_argument("--workers", type=int, default=min(4, max(1, (os.cpu_count() or 2) // 2)),
                   help="worker processes reading and resampling files (0: none; default: %(default)s)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N (default: cuda when present, per torchrun "
                                                    "local rank)")
    p.add_argument("--num-shards", type=int, default=None, help="split the inputs into N disjoint parts ...")
    p.add_argument("--shard-index", type=int, default=None, help="... and process part I (0-based)")
    p.add_argument("--shard-size", type=int, default=1000, help="rows per Parquet shard file (default: 1000)")
    p.add_argument("--long-file-seconds", type=float, default=None,
                   help="always read files longer than this block by block (default: only those too big to read "
                        "whole within the memory budget)")
    p.add_argument("--chunk-seconds", type=float, default=None,
                   help="at most this much audio per streaming chunk, for files longer than a batch (default: as "
                        "the memory budget allows, and on a CPU what encodes fastest)")
    p.add_argument("--min-duration", type=float, default=0.02,
                   help="shorter files are recorded as errors (default: 0.02 s)")
    p.add_argument("--retry-failed", action="store_true", help="try again the inputs errors.jsonl already lists")
    p.add_argument("--strict", action="store_true", help="exit with status 1 if any input failed")
    p.add_argument("--quiet", action="store_true", help="no progress bar; plain log lines")
    p.set_defaults(func=_cmd_tokenize)

    p = sub.add_parser("detokenize", help="decode a tokenized dataset back to audio files",
                       description="Decode every row of a dataset made by `codec12 tokenize` to WAV_DIR/{id}.wav, "
                                   "trimmed to the original length. Files already there are kept unless -f.")
    p.add_argument("input", help="tokenized dataset directory")
    p.add_argument("--out", required=True, help="output directory for the audio files")
    p.add_argument("--model", default=None, help="model name or directory (default: the one in codec12_meta.json)")
    p.add_argument("--num-codebooks", type=int, default=None, help="decode with the first K codebooks only")
    p.add_argument("--from-latents", action="store_true", help="decode the stored latents instead of the codes")
    p.add_argument("--format", default="wav", help="output format / suffix: wav or flac (default: wav)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N (default: cuda when present, else cpu)")
    p.add_argument("-f", "--force", action="store_true", help="overwrite existing output files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_detokenize)
