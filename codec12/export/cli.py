"""The ``codec12 export`` command group: ``export onnx``.

Only argument parsing lives here, so that building the CLI parser imports nothing heavy; each command
imports its implementation when it runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def _cmd_export_onnx(args: argparse.Namespace) -> int:
    from codec12.cli import CLIError
    from codec12.codec import Codec
    from codec12.export.onnx import SIDECAR_NAME, export_onnx

    out = Path(args.out_dir)
    if out.exists() and not out.is_dir():
        raise CLIError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not args.force:
        raise CLIError(f"{out} is not empty; pass -f to overwrite its files")
    codec = Codec.from_pretrained(args.model)
    opset = {} if args.opset is None else {"opset": args.opset}
    result = export_onnx(codec, out, overwrite=args.force, **opset)
    size = sum(p.stat().st_size for p in result.files.values())
    print(f"wrote {len(result.files)} graphs + {SIDECAR_NAME} to {out} ({size / 1e6:.1f} MB)")
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("export", help="export a model (onnx)")
    export_sub = p.add_subparsers(dest="export_command", metavar="FORMAT", required=True)
    p = export_sub.add_parser("onnx", help="export a model to ONNX (offline + streaming graphs, JSON sidecar)")
    p.add_argument("model", help="model directory or bundled model name")
    p.add_argument("out_dir", help="output directory")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (>= 17; default: 17)")
    p.add_argument("-f", "--force", action="store_true", help="overwrite files in a non-empty OUT_DIR")
    p.set_defaults(func=_cmd_export_onnx)
