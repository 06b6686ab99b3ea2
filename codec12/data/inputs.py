"""Finding the audio files of a dataset: a directory, a manifest or a glob, and splitting them into shards.

Every input gets a stable ``id`` (unique within the dataset) that names it in the tokenized shards, in
``errors.jsonl`` and in the files ``codec12 detokenize`` writes. Ids do not depend on the order files are
found in, so a re-run with the same arguments sees the same ids and can skip what is already done.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

from codec12._fs import AUDIO_EXTENSIONS, find_audio_files

MANIFEST_EXTENSIONS = (".jsonl", ".json", ".tsv", ".csv", ".txt", ".lst", ".list", ".scp")
# Column names accepted for the audio path in JSONL / TSV / CSV manifests, in order of preference.
PATH_KEYS = ("path", "audio_filepath", "audio_path", "audio", "file", "filename", "wav")
ID_KEYS = ("id", "key", "utt_id", "utterance_id")


@dataclass(frozen=True)
class AudioInput:
    """One input file. ``id``: unique, stable name in the dataset; ``path``: where to read it."""

    id: str
    path: str


def discover_inputs(spec: str | os.PathLike) -> list[AudioInput]:
    """The inputs named by ``spec``, sorted by id.

    - a directory: every audio file below it (recursive); id = path relative to it without the suffix
      (with the suffix when two files differ only by it, e.g. ``a.wav`` and ``a.flac``);
    - a manifest (``.jsonl``/``.json``, ``.tsv``, ``.csv``, or a plain list ``.txt``/``.lst``/``.list``/``.scp``):
      see :func:`read_manifest`;
    - a glob (``data/**/*.flac``): the matching files; ids are relative to the glob's fixed leading part;
    - a single audio file.

    Raises ``ValueError`` naming ``spec`` when it names nothing, or when ids collide.
    """
    text = str(spec)
    path = Path(text)
    if path.is_dir():
        files = find_audio_files(path)
        inputs = _ids_relative_to(path, files)
        if not inputs:
            raise ValueError(f"{spec}: no audio files ({', '.join(AUDIO_EXTENSIONS[:4])}, ...) in this directory")
    elif path.is_file() and path.suffix.lower() in MANIFEST_EXTENSIONS:
        inputs = read_manifest(path)
        if not inputs:
            raise ValueError(f"{spec}: the manifest lists no files")
    elif path.is_file():
        inputs = [AudioInput(id=path.stem, path=str(path))]
    elif glob.has_magic(text):
        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        inputs = _ids_relative_to(_glob_root(text), files)
        if not inputs:
            raise ValueError(f"{spec}: the pattern matches no files")
    else:
        raise ValueError(f"{spec}: no such file, directory or matching files")
    _check_unique(inputs, str(spec))
    return sorted(inputs, key=lambda x: x.id)


def read_manifest(path: str | os.PathLike) -> list[AudioInput]:
    """Read a manifest; relative paths are taken relative to the manifest's directory.

    - JSONL (``.jsonl``/``.json``): one object per line with a path column (``path``, ``audio_filepath``,
      ``audio``, ``file``, ...) and optionally ``id``;
    - TSV/CSV: a header row naming a path column (and optionally ``id``); without such a header the first
      column is the path. A fairseq-style manifest (first line: a root directory alone) is understood too;
    - anything else: one path per line (``#`` comments and blank lines skipped).

    Ids default to the path relative to the manifest's root without the suffix. Malformed lines raise
    ``ValueError`` naming the manifest and the line.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read manifest ({e})") from e
    root = path.parent
    suffix = path.suffix.lower()
    rows: list[tuple[str | None, str]] = []  # (id or None, path)
    if suffix in (".jsonl", ".json"):
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not a JSON object ({e.msg})") from e
            if not isinstance(obj, dict):
                raise ValueError(f"{path}:{n}: expected a JSON object, got {type(obj).__name__}")
            key = next((k for k in PATH_KEYS if isinstance(obj.get(k), str)), None)
            if key is None:
                raise ValueError(f"{path}:{n}: no path column (one of {', '.join(PATH_KEYS)})")
            uid = next((str(obj[k]) for k in ID_KEYS if obj.get(k) is not None), None)
            rows.append((uid, obj[key]))
    elif suffix in (".tsv", ".csv"):
        table = [r for r in csv.reader(lines, delimiter="\t" if suffix == ".tsv" else ",") if r and any(r)]
        if table and len(table[0]) == 1 and Path(_resolve(root, table[0][0])).is_dir() and len(table) > 1:
            root = Path(_resolve(root, table[0][0]))  # fairseq: root dir, then "relative/path<TAB>num_samples"
            table = table[1:]
        header = [c.strip().lower() for c in table[0]] if table else []
        path_col = next((header.index(k) for k in PATH_KEYS if k in header), None)
        id_col = next((header.index(k) for k in ID_KEYS if k in header), None)
        if path_col is not None:
            table = table[1:]
        else:
            path_col = 0
        for n, r in enumerate(table, 1):
            if path_col >= len(r) or not r[path_col].strip():
                raise ValueError(f"{path}: row {n} has no path")
            rows.append((r[id_col] if id_col is not None and id_col < len(r) else None, r[path_col].strip()))
    else:
        rows = [(None, s.strip()) for s in lines if s.strip() and not s.lstrip().startswith("#")]
    inputs = []
    for uid, p in rows:
        full = _resolve(root, p)
        if uid is None:
            rel = os.path.relpath(full, root) if not os.path.isabs(p) else p.lstrip("/")
            rel = rel if not rel.startswith("..") else full.lstrip("/")
            uid = str(Path(rel).with_suffix("")).replace(os.sep, "/")
        inputs.append(AudioInput(id=uid, path=full))
    return inputs


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


def partition(inputs: list[AudioInput], num_shards: int, shard_index: int) -> list[AudioInput]:
    """The inputs of shard ``shard_index`` out of ``num_shards``: shards are disjoint and together complete."""
    if not isinstance(num_shards, int) or num_shards < 1:
        raise ValueError(f"num_shards must be a positive int, got {num_shards!r}")
    if not isinstance(shard_index, int) or not 0 <= shard_index < num_shards:
        raise ValueError(f"shard_index must be in [0, {num_shards}), got {shard_index!r}")
    if num_shards == 1:
        return list(inputs)
    return [x for x in inputs if shard_of(x.id, num_shards) == shard_index]


def _resolve(root: Path, p: str) -> str:
    p = os.path.expanduser(p)
    return os.path.normpath(p if os.path.isabs(p) else os.path.join(root, p))


def _glob_root(pattern: str) -> Path:
    """The directory part of ``pattern`` before its first wildcard."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _ids_relative_to(root: Path, files: list[Path]) -> list[AudioInput]:
    rel = [p.relative_to(root) if p.is_relative_to(root) else p for p in files]
    stems = [str(r.with_suffix("")).replace(os.sep, "/") for r in rel]
    counts: dict[str, int] = {}
    for s in stems:
        counts[s] = counts.get(s, 0) + 1
    return [AudioInput(id=s if counts[s] == 1 else str(r).replace(os.sep, "/"), path=str(p))
            for s, r, p in zip(stems, rel, files)]


def _check_unique(inputs: list[AudioInput], where: str) -> None:
    seen: dict[str, str] = {}
    for x in inputs:
        if x.id in seen:
            raise ValueError(f"{where}: id {x.id!r} is used twice ({seen[x.id]} and {x.path}); ids must be unique")
        seen[x.id] = x.path
