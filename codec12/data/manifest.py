"""Manifests: the one reader of the lists of audio files that ``tokenize``, ``train``, ``eval`` and
``semantic-measure`` take. The format is documented once, in docs/manifests.md.

A manifest is read by its suffix: ``.jsonl``/``.json`` (one JSON object per line), ``.tsv``/``.csv`` (a table),
anything else a plain list of paths, unless its first line shows it is JSONL (starts with ``{``) or a table
(a header that names a known column). Every row becomes a :class:`ManifestRow`; relative paths are resolved
against the manifest's folder (or the ``root`` the caller gives). A row that cannot be read (not JSON, no path)
raises ``ValueError`` naming the manifest and the line, before anything is done with the others. Whether the
files exist, or whether their ids can name output files, is for the callers to check row by row: batch jobs
record such rows and go on.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANIFEST_SUFFIXES = (".jsonl", ".json", ".tsv", ".csv", ".txt", ".lst", ".list", ".scp")
# Column names, in order of preference, of the audio path, the id, the transcript and its language.
PATH_KEYS = ("path", "audio_filepath", "audio_path", "audio", "file", "filename", "wav")
ID_KEYS = ("id", "key", "utt_id", "utterance_id")
TEXT_KEYS = ("text", "transcript")
LANGUAGE_KEYS = ("language",)
_KNOWN_KEYS = frozenset(PATH_KEYS + ID_KEYS + TEXT_KEYS + LANGUAGE_KEYS)


@dataclass(frozen=True)
class ManifestRow:
    """One audio file of a dataset.

    id: a name unique within the dataset (the manifest's ``id`` column, else the path relative to the manifest's
    folder without its suffix); path: where to read the file (resolved, normalised); text: its transcript and
    language: the transcript's language (an espeak-ng voice such as ``nl`` or ``en-us``), ``None`` when absent or
    blank; extra: the row's other columns by name, as read (JSON values, or strings from a table); where:
    ``MANIFEST:LINE`` for messages (``None`` for files found in a directory).
    """

    id: str
    path: str
    text: str | None = None
    language: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)
    where: str | None = None


def read_manifest(path: str | os.PathLike, root: str | os.PathLike | None = None) -> list[ManifestRow]:
    """The rows of a manifest, in its order (format: docs/manifests.md). Relative paths are resolved against
    ``root`` (default: the manifest's folder; a fairseq table's first line may name another). Raises
    ``ValueError`` naming the manifest (and the line) when it cannot be read, a row is malformed, or it lists
    no files."""
    rows = list(iter_manifest(path, root))
    if not rows:
        raise ValueError(f"{path}: the manifest lists no files")
    return rows


def iter_manifest(path: str | os.PathLike, root: str | os.PathLike | None = None) -> Iterator[ManifestRow]:
    """:func:`read_manifest` one row at a time (memory does not grow with the manifest); an empty one yields
    nothing."""
    path = Path(path)
    root = Path(path.parent if root is None else root)
    first = _first_line(path)
    kind = _format(path, first)
    if kind == "jsonl":
        yield from _jsonl_rows(path, root)
    elif kind == "table":
        yield from _table_rows(path, root, "\t" if path.suffix.lower() == ".tsv" or "\t" in first else ",")
    else:
        for n, line in _lines(path):
            p = line.strip()
            if p and not p.startswith("#"):
                yield _row(path, n, root, p, None, None, None, {})


def resolve_path(root: str | os.PathLike, p: str) -> str:
    """A manifest's path ``p`` as a file name: ``~`` expanded, relative paths joined to ``root``, normalised."""
    p = os.path.expanduser(p)
    return os.path.normpath(p if os.path.isabs(p) else os.path.join(root, p))


def default_id(root: str | os.PathLike, p: str) -> str:
    """The id of a row without one: its path relative to ``root`` without the suffix; for a path outside
    ``root``, or an absolute one, the full path without its leading ``/`` (and suffix)."""
    full = resolve_path(root, p)
    rel = os.path.relpath(full, root) if not os.path.isabs(p) else p.lstrip("/")
    rel = rel if not rel.startswith("..") else full.lstrip("/")
    return str(Path(rel).with_suffix("")).replace(os.sep, "/")


# ---------------------------------------------------------------- formats
def _format(path: Path, first: str) -> str:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return "jsonl"
    if suffix in (".tsv", ".csv"):
        return "table"
    if first.lstrip().startswith("{"):
        return "jsonl"
    if _header(next(csv.reader([first], delimiter="\t" if "\t" in first else ","), [])) is not None:
        return "table"
    return "list"


def _jsonl_rows(path: Path, root: Path) -> Iterator[ManifestRow]:
    for n, line in _lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: not JSON ({e.msg})") from e
        if not isinstance(obj, dict):
            raise ValueError(f"{path}:{n}: expected a JSON object, got {type(obj).__name__}")
        path_key = next((k for k in PATH_KEYS if isinstance(obj.get(k), str)), None)
        if path_key is None:
            raise ValueError(f"{path}:{n}: no path column (one of {', '.join(PATH_KEYS)})")
        id_key = next((k for k in ID_KEYS if obj.get(k) is not None), None)
        text_key = next((k for k in TEXT_KEYS if obj.get(k) is not None), None)
        language_key = next((k for k in LANGUAGE_KEYS if obj.get(k) is not None), None)
        for key in (text_key, language_key):
            if key is not None and not isinstance(obj[key], str):
                raise ValueError(f"{path}:{n}: 'text' and 'language' must be strings; {key!r} is "
                                 f"{type(obj[key]).__name__}")
        used = {path_key, id_key, text_key, language_key}
        yield _row(path, n, root, obj[path_key], None if id_key is None else str(obj[id_key]),
                   obj.get(text_key), obj.get(language_key), {k: v for k, v in obj.items() if k not in used})


def _header(cells: list[str]) -> dict[str, int] | None:
    """The known columns a table's first row names ({name: column}), or None when it names none (no header)."""
    names = [c.strip().lower() for c in cells]
    found = {k: names.index(k) for k in _KNOWN_KEYS if k in names}
    return found or None


def _table_rows(path: Path, root: Path, delimiter: str) -> Iterator[ManifestRow]:
    line = 0

    def text() -> Iterator[str]:  # csv may join several lines into one row (a newline inside quotes)
        nonlocal line
        for n, s in _lines(path):
            line = n
            yield s

    rows = ((line, r) for r in csv.reader(text(), delimiter=delimiter) if any(c.strip() for c in r))
    first = next(rows, None)
    if first is None:
        return
    second = next(rows, None)
    if second is not None and len(first[1]) == 1 and Path(resolve_path(root, first[1][0])).is_dir():
        # fairseq: the root directory alone on the first line, then "relative/path<TAB>num_samples"
        root = Path(resolve_path(root, first[1][0]))
        first, second = second, next(rows, None)
    header = _header(first[1])
    pending = ([first] if header is None else []) + ([second] if second is not None else [])
    columns = header or {}
    path_col = next((columns[k] for k in PATH_KEYS if k in columns), None)
    id_col = next((columns[k] for k in ID_KEYS if k in columns), None)
    text_col = next((columns[k] for k in TEXT_KEYS if k in columns), None)
    language_col = next((columns[k] for k in LANGUAGE_KEYS if k in columns), None)
    if header is None:
        path_col = 0  # no header: the path is the first column
    elif path_col is None and id_col is None:
        raise ValueError(f"{path}:{first[0]}: the header names no path column (one of {', '.join(PATH_KEYS)})")
    names = [c.strip() for c in first[1]] if header is not None else []
    used = {path_col, id_col, text_col, language_col}
    extra = [(i, name) for i, name in enumerate(names) if i not in used and name]

    def cell(r: list[str], i: int | None) -> str | None:
        return r[i] if i is not None and i < len(r) else None

    for n, r in itertools.chain(pending, rows):
        uid = cell(r, id_col)
        p = (cell(r, path_col) if path_col is not None else uid) or ""  # a header with ids only: ids name files
        if not p.strip():
            raise ValueError(f"{path}:{n}: no path")
        yield _row(path, n, root, p.strip(), uid, cell(r, text_col), cell(r, language_col),
                   {name: r[i] for i, name in extra if i < len(r)})


def _row(manifest: Path, n: int, root: Path, p: str, uid: str | None, text: str | None, language: str | None,
         extra: dict) -> ManifestRow:
    return ManifestRow(id=default_id(root, p) if uid is None else uid, path=resolve_path(root, p),
                       text=_optional(text), language=_optional(language), extra=extra, where=f"{manifest}:{n}")


def _optional(value: str | None) -> str | None:
    # A blank transcript is no transcript: an empty CTC target would teach that speech is silence.
    return (value or "").strip() or None


# ---------------------------------------------------------------- reading lines
def _open(path: Path):
    try:
        return open(path, "rb")
    except OSError as e:
        raise ValueError(f"{path}: cannot read manifest ({e.strerror or e})") from e


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text with its line ending) of a UTF-8 file, a byte-order mark dropped."""
    with _open(path) as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if n == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"{path}:{n}: not UTF-8 text ({e.reason}); is this a manifest?") from e
            yield n, line


def _first_line(path: Path) -> str:
    """The first line that is neither blank nor a ``#`` comment ("" when there is none)."""
    lines = _lines(path)
    try:
        for _, line in lines:
            if line.strip() and not line.lstrip().startswith("#"):
                return line.rstrip("\r\n")
        return ""
    finally:
        lines.close()
