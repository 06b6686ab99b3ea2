"""Finding the audio files of a dataset: a directory, a manifest or a glob, and splitting them into shards.

Every input gets a stable ``id`` (unique within the dataset) that names it in the tokenized shards, in
``errors.jsonl`` and in the files ``codec12 detokenize`` writes. Ids do not depend on the order files are
found in, so a re-run with the same arguments sees the same ids and can skip what is already done.
"""

from __future__ import annotations

import glob
import os
import zlib
from pathlib import Path

from codec12._fs import AUDIO_EXTENSIONS, find_audio_files
from codec12.data.manifest import MANIFEST_SUFFIXES, ManifestRow, read_manifest


def discover_inputs(spec: str | os.PathLike) -> list[ManifestRow]:
    """The inputs named by ``spec``, sorted by id.

    - a directory: every audio file below it (recursive); id = path relative to it without the suffix
      (with the suffix when two files differ only by it, e.g. ``a.wav`` and ``a.flac``);
    - a manifest (``.jsonl``/``.json``, ``.tsv``, ``.csv``, or a plain list ``.txt``/``.lst``/``.list``/``.scp``):
      see :func:`codec12.data.manifest.read_manifest` (format: docs/manifests.md);
    - a glob (``data/**/*.flac``): the matching files; ids are relative to the glob's fixed leading part;
    - a single audio file.

    Raises ``ValueError`` naming ``spec`` when it names nothing, or when ids collide.
    """
    text = str(spec)
    path = Path(text)
    if path.is_dir():
        inputs = directory_inputs(path)
        if not inputs:
            raise ValueError(f"{spec}: no audio files ({', '.join(AUDIO_EXTENSIONS[:4])}, ...) in this directory")
    elif path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
        inputs = read_manifest(path)
    elif path.is_file():
        inputs = [ManifestRow(id=path.stem, path=str(path))]
    elif glob.has_magic(text):
        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        inputs = _ids_relative_to(_glob_root(text), files)
        if not inputs:
            raise ValueError(f"{spec}: the pattern matches no files")
    else:
        raise ValueError(f"{spec}: no such file, directory or matching files")
    _check_unique(inputs, str(spec))
    return sorted(inputs, key=lambda x: x.id)


# Bytes of one path component of an id: a file system's 255, less room for the output suffix (".flac") and the
# temporary name an atomic write uses beside it (".NAME.tmpPID").
MAX_ID_COMPONENT_BYTES = 230
MAX_ID_BYTES = 1024


def id_problem(input_id: object) -> str | None:
    """Why ``input_id`` cannot name an input (None when it can). An id names the files ``codec12 detokenize``
    writes (``OUT/{id}.wav``), so it must be a relative path of ordinary file names: not empty, UTF-8, no control
    characters (NUL included), no empty, ``.`` or ``..`` components, no leading ``/``, and each component short
    enough to be a file name."""
    if not isinstance(input_id, str):
        return f"the id must be a string, got {type(input_id).__name__}"
    shown = repr(input_id if len(input_id) <= 60 else input_id[:57] + "...")
    if not input_id:
        return "the id is empty"
    try:
        encoded = input_id.encode("utf-8")
    except UnicodeEncodeError:
        return f"the id {shown} is not valid UTF-8"
    if any(ord(c) < 32 or ord(c) == 127 for c in input_id):
        return f"the id {shown} holds a control character (NUL, newline, ...)"
    if input_id.startswith("/"):
        return f"the id {shown} is an absolute path"
    parts = input_id.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return f"the id {shown} has an empty, '.' or '..' path component"
    if len(encoded) > MAX_ID_BYTES:
        return f"the id is {len(encoded)} bytes long (at most {MAX_ID_BYTES})"
    longest = max(len(p.encode("utf-8")) for p in parts)
    if longest > MAX_ID_COMPONENT_BYTES:
        return f"the id {shown} has a {longest}-byte path component (at most {MAX_ID_COMPONENT_BYTES})"
    return None


def shard_of(input_id: str, num_shards: int) -> int:
    """The shard an id belongs to: a stable hash (crc32, the same on every machine and Python), so the split
    does not depend on the order inputs were found in and stays put when files are added."""
    return zlib.crc32(input_id.encode("utf-8")) % num_shards


def partition(inputs: list[ManifestRow], num_shards: int, shard_index: int) -> list[ManifestRow]:
    """The inputs of shard ``shard_index`` out of ``num_shards``: shards are disjoint and together complete."""
    if not isinstance(num_shards, int) or num_shards < 1:
        raise ValueError(f"num_shards must be a positive int, got {num_shards!r}")
    if not isinstance(shard_index, int) or not 0 <= shard_index < num_shards:
        raise ValueError(f"shard_index must be in [0, {num_shards}), got {shard_index!r}")
    if num_shards == 1:
        return list(inputs)
    return [x for x in inputs if shard_of(x.id, num_shards) == shard_index]


def _glob_root(pattern: str) -> Path:
    """The directory part of ``pattern`` before its first wildcard."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def directory_inputs(root: str | os.PathLike) -> list[ManifestRow]:
    """Every audio file below the directory ``root``, in :func:`~codec12._fs.find_audio_files` order; id = the
    path relative to ``root`` without the suffix (with it when two files differ only by it)."""
    return _ids_relative_to(Path(root), find_audio_files(Path(root)))


def _ids_relative_to(root: Path, files: list[Path]) -> list[ManifestRow]:
    rel = [p.relative_to(root) if p.is_relative_to(root) else p for p in files]
    stems = [str(r.with_suffix("")).replace(os.sep, "/") for r in rel]
    counts: dict[str, int] = {}
    for s in stems:
        counts[s] = counts.get(s, 0) + 1
    return [ManifestRow(id=s if counts[s] == 1 else str(r).replace(os.sep, "/"), path=str(p))
            for s, r, p in zip(stems, rel, files)]


def _check_unique(inputs: list[ManifestRow], where: str) -> None:
    seen: dict[str, str] = {}
    for x in inputs:
        if x.id in seen:
            raise ValueError(f"{where}: id {x.id!r} is used twice ({seen[x.id]} and {x.path}); ids must be unique")
        seen[x.id] = x.path
