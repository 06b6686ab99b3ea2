"""The ``codec12 eval`` command. Only argument parsing at import time; the harness loads when it runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from codec12.command import CLIError, add_model_argument

_DESCRIPTION = """Round-trip every audio file of --data through a codec12 model (at one or several numbers of
codebooks, and in continuous mode with --continuous) and through classical baselines, score each against the
original at 16 kHz, and write metrics.csv, summary.json, report.md and report.html (results with their spread over
files, the baselines at equal bitrate marked, a rate-quality plot, per-file scores, spectrograms) to --out."""


def _cmd_eval(args: argparse.Namespace) -> int:
    from codec12.eval.harness import build_systems, evaluate, parse_int_list, read_transcripts
    from codec12.eval.metrics import parse_metrics
    from codec12.eval.systems import BASELINES, parse_baseline

    if args.baselines is None:
        args.baselines = ",".join(BASELINES)

    baselines = [] if args.baselines.strip().lower() in ("", "none") else \
        [b.strip() for b in args.baselines.split(",") if b.strip()]
    for name in baselines:
        parse_baseline(name)  # unknown names fail before the model is loaded
    metrics = parse_metrics(args.metrics)
    if not 0 <= args.rate_tolerance < 100:
        raise CLIError(f"--rate-tolerance: expected a percentage in [0, 100), got {args.rate_tolerance:g}")
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.force:
        raise FileExistsError(f"{out} exists and is not empty; pass -f to overwrite the report")
    data = Path(args.data)
    if not data.is_dir():
        raise NotADirectoryError(f"{data}: not a directory")
    transcripts = read_transcripts(args.manifest, data) if args.manifest else None
    codec, info = None, {}
    if not args.no_model:
        from codec12 import Codec

        codec = Codec.from_pretrained(args.model, device=args.device)
        info = {"model": str(args.model), "model_name": codec.config.name, "config_hash": codec.config.config_hash(),
                "model_sample_rate": codec.sample_rate}
    ks = parse_int_list(args.num_codebooks) if args.num_codebooks else None
    systems, skipped = build_systems(codec, ks, baselines, continuous=args.continuous)
    for name, reason in skipped.items():
        print(f"codec12 eval: skipping {name}: {reason}", file=sys.stderr)
    if not systems:
        raise CLIError("nothing to evaluate: no model (--no-model) and no baseline could run")
    result = evaluate(data, systems, out, metrics=metrics, transcripts=transcripts, skipped_systems=skipped,
                      num_examples=args.examples, progress=not args.quiet, info=info,
                      rate_tolerance=args.rate_tolerance / 100)
    for name, reason in result.skipped_metrics.items():
        print(f"codec12 eval: metric {name} skipped: {reason}", file=sys.stderr)
    for bad in result.bad_files:
        print(f"codec12 eval: skipped bad file {bad['file']}: {bad['reason']}", file=sys.stderr)
    if not args.quiet:
        from codec12.eval.report import markdown_table

        print(markdown_table(result))
        print(f"\nreport: {out / 'report.html'}")
    return 0


def add_parsers(subparsers) -> None:

    p = subparsers.add_parser("eval", help="score a model and classical baselines on a directory of audio",
                              description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_argument(p)
    p.add_argument("--data", required=True,
                   help="directory of audio files (any soundfile format, searched recursively)")
    p.add_argument("--out", required=True, help="report directory")
    p.add_argument("--num-codebooks", default=None,
                   help="codebook counts to score, e.g. 4,8,12 for variable bitrate (default: all)")
    p.add_argument("--baselines", default=None,
                   help="comma list of classical baselines (codec2-1200, codec2-3200, opus-6k), or 'none' "
                        "(default: all of them)")
    p.add_argument("--continuous", action="store_true",
                   help="also score the continuous mode: the pre-quantization latents (as float16, the way "
                        "tokenize --latents stores them) through the decoder, with no quantizer in between")
    p.add_argument("--rate-tolerance", type=float, default=10.0, metavar="PERCENT",
                   help="a baseline counts as at the same bitrate as a codebook count of the model when their "
                        "measured bitrates differ by at most this percentage of the model's; the report marks "
                        "those pairs (default: 10)")
    p.add_argument("--no-model", action="store_true", help="score the baselines only")
    p.add_argument("--metrics", default="all",
                   help="'all', 'core' or a comma list of metric names (default: all; optional metrics whose "
                        "packages are missing are skipped)")
    p.add_argument("--manifest", default=None,
                   help="manifest with path and transcript columns, paths relative to --data (format: "
                        "docs/manifests.md); enables WER")
    p.add_argument("--examples", type=int, default=3, help="files with spectrograms and audio in the report")
    p.add_argument("--device", default="cpu", help="torch device to run the model on: cpu, cuda, cuda:N (default: cpu)")
    p.add_argument("-f", "--force", action="store_true", help="write into a non-empty report directory")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or table")
    p.set_defaults(func=_cmd_eval)
