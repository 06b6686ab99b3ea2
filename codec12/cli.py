"""codec12 command line: one entry point with argparse subcommands.

Each command lives next to the code it drives and registers itself through ``add_parsers(subparsers)``
(setting ``func``). Errors, usage errors too, go to stderr as one line ``codec12 CMD: error: ...`` with exit
status 1.
"""

from __future__ import annotations

import importlib
import sys

from codec12 import __version__
from codec12._optional import MissingExtra
from codec12.command import DEFAULT_MODEL, ArgumentParser, CLIError, add_model_argument

__all__ = ["DEFAULT_MODEL", "CLIError", "add_model_argument", "build_parser", "main"]

# Modules that register subcommands, in the order they appear in --help.
COMMAND_MODULES = (
    "codec12.export.container",  # encode, decode
    "codec12.data.cli",  # tokenize, detokenize
    "codec12.export.cli",  # export onnx
    "codec12.train.cli",  # train
    "codec12.distill.measure",  # semantic-measure
    "codec12.eval.cli",  # eval
    "codec12.convert.cli",  # convert
)


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="codec12", description="12.5 Hz neural speech codec")
    parser.add_argument("--version", action="version", version=f"codec12 {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (CLIError, MissingExtra, ValueError, FileNotFoundError, FileExistsError, NotADirectoryError) as e:
        print(f"codec12 {args.command}: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # permissions, a directory where a file was expected, a full disk...
        where = f"{e.filename}: " if e.filename else ""
        print(f"codec12 {args.command}: error: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"codec12 {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # CLIError lives in codec12.command, so this __main__ copy catches what the subcommands raise.
    sys.exit(main())
