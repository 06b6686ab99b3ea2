"""The command line's manners: help for everything, --version, usage errors as one line with exit status 1,
and a README that lists every command."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from codec12 import __version__
from codec12.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ("codec12",)):
    """(command path, parser) of the parser and of every subcommand parser below it."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    yield path, parser
    for action in subs:
        for name, sub in action.choices.items():
            yield from _commands(sub, path + (name,))


def test_every_subcommand_and_argument_has_help():
    missing = []
    for path, parser in _commands(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {c.dest: c.help for c in action._choices_actions}
                missing += [f"{' '.join(path)} {name}" for name in action.choices if not helps.get(name)]
            elif not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{' '.join(path)} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"codec12 {__version__}"


@pytest.mark.parametrize(("argv", "where", "says"), [
    (["encode"], "codec12 encode", "the following arguments are required: input, output"),
    (["nonsense"], "codec12", "invalid choice: 'nonsense'"),
    (["export"], "codec12 export", "required: FORMAT"),
    (["tokenize", "x", "--out", "y", "--workers", "two"], "codec12 tokenize", "invalid int value: 'two'"),
    (["decode", "a.c12", "b.wav", "--frobnicate"], "codec12", "unrecognized arguments: --frobnicate"),
])
def test_usage_errors_are_one_line_with_exit_status_1(argv, where, says, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 1
    assert err.count("\n") == 1 and err.startswith(f"{where}: error: ") and says in err


def test_readme_lists_every_command():
    text = (ROOT / "README.md").read_text()
    block = text.split("## Command line", 1)[1].split("```")[1]
    for path, parser in _commands(build_parser()):
        if len(path) > 1 and not any(isinstance(a, argparse._SubParsersAction) for a in parser._actions):
            assert f"{' '.join(path)} " in block, path
