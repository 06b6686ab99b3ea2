"""The ``codec12 export`` command group: ``export onnx`` and ``export release``.

Only argument parsing lives here, so that building the CLI parser imports nothing heavy; each command
imports its implementation when it runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from codec12.command import CLIError


def _cmd_export_onnx(args: argparse.Namespace) -> int:
    from codec12.codec import Codec
    from codec12.export.onnx import SIDECAR_NAME, export_onnx

    out = Path(args.out_dir)
    if out.exists() and not out.is_dir():
        raise CLIError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not args.force:
        raise CLIError(f"{out} is not empty; pass -f to overwrite its files")
    codec = Codec.from_pretrained(args.model)
    opset = {} if args.opset is None else {"opset": args.opset}

    def progress(name: str, seconds: float) -> None:
        print(f"{name}.onnx: {seconds:.1f} s", flush=True)

    result = export_onnx(codec, out, overwrite=args.force, progress=None if args.quiet else progress, **opset)
    if not args.quiet:
        print(f"wrote {len(result.files)} graphs, {result.weights.name} ({result.weights.stat().st_size / 1e6:.1f} "
              f"MB) and {SIDECAR_NAME} to {out}: {result.total_bytes() / 1e6:.1f} MB in all")
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
