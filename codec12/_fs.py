"""Crash-safe file output (a file or directory exists whole or not at all, and what was there before is never
lost half-way), and the one walk of a directory for audio files."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> None:
    """Write ``path`` through ``write(tmp)`` into the hidden temp name ``.NAME.tmpPID`` beside it, fsync, and
    rename it into place (then fsync the directory). Every file codec12 writes goes through here or through
    :func:`atomic_directory`. ``write`` gets a name without the file's suffix: writers that pick a format by
    suffix (soundfile, matplotlib) must be given the format."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        fsync_file(tmp)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def atomic_directory(final: str | os.PathLike, tmp_name: str | None = None) -> Iterator[Path]:
    """A directory written whole or not at all: the block writes into the hidden temporary directory it is given
    (``.NAME.tmpPID`` beside ``final``, or ``tmp_name`` there); when it ends without an error, every file in it is
    fsynced and it replaces ``final`` (:func:`replace_dir`); on an error it is removed and ``final`` is untouched."""
    final = Path(final)
    tmp = final.with_name(tmp_name or f".{final.name}.tmp{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        fsync_tree(tmp)
        replace_dir(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def replace_dir(tmp: str | os.PathLike, final: str | os.PathLike) -> None:
    """Move the finished directory ``tmp`` to ``final``. An existing ``final`` is renamed aside first and
    removed only once the new one is in place, so a crash leaves the old or the new one, never neither."""
    tmp, final = Path(tmp), Path(final)
    old = final.with_name(f".{final.name}.old{os.getpid()}")
    if final.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
    os.replace(tmp, final)
    fsync_dir(final.parent)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)


def fsync_file(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(directory: str | os.PathLike) -> None:
    """fsync every file under ``directory`` and the directories themselves (before they are renamed into place)."""
    for root, _, files in os.walk(directory):
        for name in files:
            fsync_file(os.path.join(root, name))
        fsync_dir(root)


def fsync_dir(directory: str | os.PathLike) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not possible on every platform
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# Formats libsndfile reads (soundfile), matched case-insensitively when a directory is walked for audio; its
# .mat, .htk and .sd2 are left out: in speech corpora those names are mostly MATLAB data and HTK features.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".au", ".snd",
                    ".caf", ".w64", ".rf64", ".sph", ".nist", ".voc", ".wv")


def find_audio_files(directory: str | os.PathLike) -> list[Path]:
    """Audio files (by extension) under ``directory``, recursively, sorted. Tokenize, train and eval all
    walk directories with this."""
    return sorted(p for p in Path(directory).rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
