"""``codec12 train RECIPE [--set key=value ...] [--out DIR] [--resume | --init MODEL]`` (also under torchrun)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
from pathlib import Path


def _run(args: argparse.Namespace) -> int:
    from codec12.command import CLIError
    from codec12.train.recipe import load_recipe
    from codec12.train.trainer import NonFiniteError, run

    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # --init is a path or a model name, never parsed as a --set value (a directory called "2000" or "null")
    recipe = load_recipe(args.recipe, args.set + ([f"model.init={json.dumps(args.init)}"] if args.init else []))
    out = Path(args.out) if args.out else Path("runs") / Path(args.recipe).stem
    try:
        result = run(recipe, out, resume=args.resume, until_step=args.until_step, progress=not args.no_progress)
    except NonFiniteError as e:  # the run's last checkpoint is kept; the message says how to go on
        raise CLIError(str(e)) from None
    if rank == 0:
        by = f" ({signal.Signals(result.stop_signal).name})" if result.stop_signal else ""
        print(f"stopped at step {result.step}{by}; checkpoint {result.checkpoint}"
              + (f"; release {result.release}" if result.release else ""))
    return 0


def add_parsers(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a codec from a recipe (runs under torchrun for several processes)",
                              description="Train a codec from a recipe file (JSON or TOML). Bundled recipes can be "
                                          "named without a path: base, mimi-24k, fsq-24k, tiny-16k-cpu, "
                                          "tiny-16k-cpu-phonetic, voxtral-encoder.")
    p.add_argument("recipe", help="recipe file, or the name of a bundled recipe")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value, e.g. --set train.steps=1000 --set data.train=/data/speech")
    p.add_argument("--out", help="run directory for logs, checkpoints and the release (default: runs/RECIPE)")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's latest checkpoint")
    p.add_argument("--init", metavar="MODEL_OR_CHECKPOINT", default=None,
                   help="start a new run from these weights (fine-tuning): a run or checkpoint directory, a release, "
                        "a bundled model, a Mimi or a Voxtral TTS checkpoint; same as --set model.init=...")
    p.add_argument("--until-step", type=int, default=None,
                   help="stop with a checkpoint at this step (continue later with --resume)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)
