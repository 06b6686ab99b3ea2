"""What the ``codec12`` subcommands share: the default model, the user-facing error and the ``--model`` argument.

Each subcommand lives next to the code it drives and registers itself with :mod:`codec12.cli`, which gathers
them; the pieces they all need sit here, below both, and import nothing heavy.
"""

from __future__ import annotations

import argparse

DEFAULT_MODEL = "c12-tiny-16k"


class CLIError(Exception):
    """A user-facing error: printed without a traceback."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the project's manners: a usage error is one line on stderr and exit status 1, like every
    other bad input (argparse's own is the whole usage and status 2). Subcommand parsers inherit the class."""

    def error(self, message: str):
        self.exit(1, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"bundled model name, model directory, or hub id (default: {DEFAULT_MODEL})")
