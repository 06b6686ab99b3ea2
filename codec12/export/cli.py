"""The ``codec12 export`` command group: ``export onnx`` and ``export release``.

Only argument parsing lives here, so that building the CLI parser imports nothing heavy; each command
imports its implementation when it runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from codec12.command import CLIError


def _check_audio_files(paths: list[str]) -> list[Path]:
    """``--check-audio`` arguments (files, or directories searched for audio files) -> the files."""
    from codec12._fs import find_audio_files

    files: list[Path] = []
    for arg in paths:
        path = Path(arg)
        if path.is_dir():
            found = find_audio_files(path)
            if not found:
                raise CLIError(f"--check-audio {path}: no audio files in this directory")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise CLIError(f"--check-audio {path}: no such file or directory")
    return files


def _cmd_export_onnx(args: argparse.Namespace) -> int:
    from codec12.codec import Codec
    from codec12.export.onnx import SIDECAR_NAME, export_onnx
    from codec12.export.runtime import OnnxCodec

    out = Path(args.out_dir)
    if out.exists() and not out.is_dir():
        raise CLIError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not args.force:
        raise CLIError(f"{out} is not empty; pass -f to overwrite its files")
    files = _check_audio_files(args.check_audio or [])
    codec = Codec.from_pretrained(args.model)
    clips = None
    if files:
        from codec12.audio import load_audio

        clips = [load_audio(path, codec.sample_rate, codec.channels).numpy() for path in files]
    opset = {} if args.opset is None else {"opset": args.opset}

    def progress(name: str, seconds: float) -> None:
        print(f"{name}.onnx: {seconds:.1f} s", flush=True)

    result = export_onnx(codec, out, dtype=args.dtype, check_audio=clips, overwrite=args.force,
                         progress=None if args.quiet else progress, **opset)
    if not args.quiet:
        print(f"wrote {len(result.files)} graphs ({args.dtype}), {result.weights.name} "
              f"({result.weights.stat().st_size / 1e6:.1f} MB) and {SIDECAR_NAME} to {out}: "
              f"{result.total_bytes() / 1e6:.1f} MB in all")
        agreement = result.sidecar["code_agreement"]
        if agreement is not None:
            rows = " ".join(f"{share:.3f}" for share in agreement["rows"])
            print(f"codes equal to float32's on {agreement['clips']} clips ({agreement['seconds']:.1f} s, "
                  f"{agreement['frames']} frames), per row: {rows}; every row: {agreement['frames_all_rows']:.3f}")
        if agreement is not None or args.dtype != "float32":
            reason = OnnxCodec(out).unfit_reason
            print("fit to tokenize with" if reason is None else f"not fit to tokenize with: {reason}")
    return 0


def _cmd_export_release(args: argparse.Namespace) -> int:
    from codec12.train.release import release_from_checkpoint

    out = Path(args.out_dir)
    if out.exists() and not args.force:
        raise CLIError(f"{out} exists; pass -f to replace it")
    import torch

    release = release_from_checkpoint(args.checkpoint, out, ema=not args.no_ema,
                                      dtype=getattr(torch, args.dtype))
    print(f"wrote release {release} (config.json + model.safetensors + README.md model card)")
    if args.push_to_hub:
        from codec12.codec import Codec

        try:
            commit = Codec.from_pretrained(release).push_to_hub(args.push_to_hub, dtype=args.dtype)
        except Exception as e:  # network, authentication, permissions: one line, the release stays on disk
            raise CLIError(f"could not push {release} to {args.push_to_hub} ({type(e).__name__}: {e})") from e
        print(f"pushed to {args.push_to_hub}: {commit.commit_url}")
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("export", help="export a model (onnx) or a release from a training checkpoint")
    export_sub = p.add_subparsers(dest="export_command", metavar="FORMAT", required=True)
    p = export_sub.add_parser("onnx", help="export a model to ONNX (offline + streaming graphs, JSON sidecar)")
    p.add_argument("model", help="model directory or bundled model name")
    p.add_argument("out_dir", help="output directory")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (>= 17; default: 17)")
    p.add_argument("--dtype", choices=("float32", "float16", "int8"), default="float32",
                   help="precision of the weighted layers (float16: half the weights file; int8: dynamic "
                        "quantization of the matrix products); inputs, outputs and the quantizer stay float32")
    p.add_argument("--check-audio", nargs="+", metavar="PATH",
                   help="speech files or directories: encode them with the export and the float32 model and record "
                        "how often the codes agree (needed for a float16 or int8 export to tokenize with)")
    p.add_argument("-f", "--force", action="store_true", help="overwrite files in a non-empty OUT_DIR")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing (default: a line per graph and the "
                                                              "total size)")
    p.set_defaults(func=_cmd_export_onnx)
    p = export_sub.add_parser("release", help="write a release (config.json + model.safetensors, weight norm "
                                              "folded) from a training checkpoint")
    p.add_argument("checkpoint", help="a run directory, its checkpoints/ directory, or one step-* checkpoint")
    p.add_argument("out_dir", help="release directory to write")
    p.add_argument("--no-ema", action="store_true", help="use the raw weights, not the EMA weights")
    p.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                   help="storage type of the weights (float16: half the size)")
    p.add_argument("--push-to-hub", metavar="REPO_ID", default=None,
                   help="then upload the release to this Hugging Face model repo (owner/name; created if missing; "
                        "token from `hf auth login` or HF_TOKEN)")
    p.add_argument("-f", "--force", action="store_true", help="replace OUT_DIR")
    p.set_defaults(func=_cmd_export_release)
