"""Tokenizing a dataset into Parquet shards, and decoding it back.

Output directory layout (DESIGN.md §4)::

    codec12_meta.json                 model name, config + weights hash, rates, codebook sizes, num_codebooks,
                                      the compute dtype and the partitioning (num_shards)
    shard-00000.parquet ...           one row per input (``shard-IIIII-of-NNNNN-00000.parquet`` when partitioned)
    errors.jsonl                      one JSON line per input that failed: id, path, reason

Row columns: ``id`` (string), ``path`` (string), ``duration_s`` (float64), ``num_samples`` (int64, at the model
rate), ``num_frames`` (int32), ``codes`` (list<list<uint16>>, [K][T']), ``latents`` (list<list<float16>>,
[D][T'], with ``latents=True``). Codes equal ``Codec.encode(load_audio(path, codec.sample_rate,
codec.channels)[None], K)``.

Never losing work: a shard is written to a hidden temporary name, synced and renamed, so a shard either
exists whole or not at all; a re-run reads the ids of the shards present (and of ``errors.jsonl``) and only
does the rest; each error line is appended with one ``write`` and synced as soon as it happens. Inputs whose
rows were still in memory when the process died are simply done again.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from codec12 import __version__
from codec12._fs import atomic_write as _atomic_write
from codec12.audio import load_audio
from codec12.data.blocks import iter_audio_blocks, probe_audio
from codec12.data.inputs import AudioInput, id_problem, partition

log = logging.getLogger(__name__)

META_NAME = "codec12_meta.json"
ERRORS_NAME = "errors.jsonl"
META_FORMAT_VERSION = 1
# Meta keys that must match for a run to add rows to an existing dataset; "dtype" and "num_shards" too, when the
# dataset records them (datasets made before they were recorded do not).
_MUST_MATCH = ("config_hash", "weights_hash", "num_codebooks", "latents", "sample_rate", "channels")
# The keys codec12_meta.json must hold, and their JSON types.
_META_TYPES = {"model": (str,), "model_source": (str,), "config_hash": (str,), "weights_hash": (str,),
               "sample_rate": (int,), "channels": (int,), "frame_rate": (int, float), "frame_size": (int,),
               "codebook_sizes": (list,), "num_codebooks": (int,), "latents": (bool,), "latent_dim": (int,)}
_META_OPTIONAL_TYPES = {"dtype": (str,), "num_shards": (int,), "codec12_version": (str,)}
_MAX_SHARD_BYTES = 256 << 20  # flush a shard early when its rows get this big (long files, latents)


@dataclass(frozen=True, kw_only=True)
class TokenizeOptions:
    """How :func:`tokenize_dataset` runs.

    num_codebooks: codes rows to keep (semantic + first K-1 acoustic); None keeps all.
    latents: also store the continuous latents (float16 [D][T']).
    batch_size / max_batch_seconds: files per batch and padded audio per batch; files are batched with others
        of similar length (a pool of loaded files is sorted by length), so padding stays small.
    workers: DataLoader worker processes that read and resample files (0: in the main process).
    shard_size: rows per shard file.
    long_file_seconds: files longer than this are not loaded whole: they are read block by block and encoded
        in streaming chunks of ``chunk_seconds`` (memory bounded by the chunk, not the file).
    min_duration: shorter files are recorded as errors ("too short").
    num_shards / shard_index: process only this part of the inputs (see ``inputs.partition``).
    retry_failed: try again the inputs ``errors.jsonl`` already lists (otherwise they are skipped).
    progress: show a progress bar (otherwise log lines).
    """

    num_codebooks: int | None = None
    latents: bool = False
    batch_size: int = 16
    max_batch_seconds: float = 160.0
    workers: int = 0
    shard_size: int = 1000
    long_file_seconds: float = 60.0
    chunk_seconds: float = 10.0
    min_duration: float = 0.02
    num_shards: int = 1
    shard_index: int = 0
    retry_failed: bool = False
    progress: bool = True

    def __post_init__(self):
        for name in ("batch_size", "shard_size", "num_shards"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive int, got {getattr(self, name)!r}")
        if not isinstance(self.workers, int) or self.workers < 0:
            raise ValueError(f"workers must be an int >= 0, got {self.workers!r}")
        for name in ("max_batch_seconds", "long_file_seconds", "chunk_seconds"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if not self.min_duration >= 0:
            raise ValueError(f"min_duration must be >= 0, got {self.min_duration!r}")
        if not isinstance(self.shard_index, int) or not 0 <= self.shard_index < self.num_shards:
            raise ValueError(f"shard_index must be in [0, {self.num_shards}), got {self.shard_index!r}")
        if self.num_codebooks is not None and (not isinstance(self.num_codebooks, int) or self.num_codebooks < 1):
            raise ValueError(f"num_codebooks must be a positive int or None, got {self.num_codebooks!r}")


@dataclass
class TokenizeSummary:
    """What one :func:`tokenize_dataset` call did. ``skipped``: inputs of this partition already in a shard
    (``done_before`` of them) or in ``errors.jsonl`` from an earlier run; ``audio_seconds``: audio tokenized by
    this call."""

    total: int
    ok: int
    failed: int
    skipped: int
    done_before: int
    audio_seconds: float
    elapsed_s: float
    shards: list[str] = field(default_factory=list)

    @property
    def audio_hours(self) -> float:
        return self.audio_seconds / 3600

    @property
    def real_time_factor(self) -> float:
        """Seconds of audio tokenized per second of wall time."""
        return self.audio_seconds / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def usable(self) -> bool:
        """Whether this partition has any row (now or from an earlier run), or had nothing that failed."""
        return self.ok + self.done_before > 0 or self.failed == 0

    def describe(self) -> str:
        return (f"{self.ok} ok, {self.failed} failed, {self.skipped} skipped (done before) of {self.total}; "
                f"{self.audio_hours:.3f} h of audio in {self.elapsed_s:.1f} s "
                f"({self.real_time_factor:.1f}x real time)")


# ---------------------------------------------------------------- dataset metadata and files on disk
def dataset_meta(codec, *, model_source: str, num_codebooks: int, latents: bool, num_shards: int = 1) -> dict:
    """The ``codec12_meta.json`` content for a dataset tokenized by ``codec`` in ``num_shards`` partitions.
    ``dtype``: what the codes were computed in (the weights' dtype: ``Codec.encode`` runs in it whatever the
    autocast)."""
    return {
        "format_version": META_FORMAT_VERSION,
        "model": codec.config.name or str(model_source),
        "model_source": str(model_source),
        "config_hash": codec.config.config_hash(),
        "weights_hash": codec.weights_hash(),
        "sample_rate": codec.sample_rate,
        "channels": codec.channels,
        "frame_rate": codec.frame_rate,
        "frame_size": codec.frame_size,
        "codebook_sizes": list(codec.codebook_sizes[:num_codebooks]),
        "num_codebooks": num_codebooks,
        "latents": latents,
        "latent_dim": codec.latent_dim,
        "dtype": str(next(codec.parameters()).dtype).removeprefix("torch."),
        "num_shards": num_shards,
        "codec12_version": __version__,
    }


def read_meta(data_dir: str | os.PathLike) -> dict:
    """Read ``codec12_meta.json``; a missing, corrupt or incomplete file (a key missing or of the wrong type)
    raises ``ValueError`` naming it and the key."""
    path = Path(data_dir) / META_NAME
    if not path.is_file():
        raise ValueError(f"{data_dir}: not a tokenized dataset (no {META_NAME})")
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read ({e})") from e
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: not dataset metadata (a JSON {type(meta).__name__}, not an object)")
    if meta.get("format_version") != META_FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported format_version {meta.get('format_version')!r} "
                         f"(this codec12 reads {META_FORMAT_VERSION})")
    missing = sorted(k for k in _META_TYPES if k not in meta)
    if missing:
        raise ValueError(f"{path}: incomplete dataset metadata: missing {missing}")
    for key, kinds in {**_META_TYPES, **_META_OPTIONAL_TYPES}.items():
        value = meta.get(key)
        if key in meta and (not isinstance(value, kinds) or isinstance(value, bool) is not (bool in kinds)):
            raise ValueError(f"{path}: {key} must be {' or '.join(k.__name__ for k in kinds)}, got {value!r}")
    sizes, k = meta["codebook_sizes"], meta["num_codebooks"]
    if not (k >= 1 and len(sizes) == k and all(isinstance(n, int) and not isinstance(n, bool) and 2 <= n <= 65536
                                                for n in sizes)):
        raise ValueError(f"{path}: codebook_sizes must list num_codebooks ({k}) sizes in [2, 65536], got {sizes!r}")
    if meta.get("num_shards", 1) < 1 or meta["sample_rate"] < 1 or meta["channels"] < 1:
        raise ValueError(f"{path}: sample_rate, channels and num_shards must be positive")
    return meta


def ensure_meta(out_dir: Path, meta: dict, config=None) -> None:
    """Write ``meta`` to a new dataset, or check that an existing one was made the same way. Processes that
    start together (torchrun ranks, job-array tasks) take turns, so none sees another's first shard before
    its metadata. ``config``: the model's :class:`~codec12.config.CodecConfig`, to accept the config hash an
    earlier version recorded for it."""
    with _exclusive(out_dir / f".{META_NAME}.lock"):
        _ensure_meta(out_dir, meta, config)


@contextmanager
def _exclusive(lock_path: Path, wait: bool = True) -> Iterator[bool]:
    """An exclusive advisory lock on ``lock_path`` (released by the OS even on SIGKILL). Yields whether a lock is
    held (False without fcntl); ``wait=False`` raises BlockingIOError when another process holds it."""
    try:
        import fcntl
    except ImportError:
        yield False
        return
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        yield True
    finally:
        os.close(fd)


def _ensure_meta(out_dir: Path, meta: dict, config=None) -> None:
    path = out_dir / META_NAME
    if path.exists():
        old = read_meta(out_dir)

        def same(k: str) -> bool:
            if k == "config_hash" and config is not None:
                return config.hash_matches(old.get(k))
            return old.get(k) == meta[k]

        keys = _MUST_MATCH + (("dtype",) if "dtype" in old else ())
        diff = [f"{k}: {old.get(k)!r} there, {meta[k]!r} now" for k in keys if not same(k)]
        if diff:
            raise ValueError(f"{out_dir} holds a dataset tokenized with model {old.get('model')!r} and other "
                             f"settings ({'; '.join(diff)}); use another --out directory, or the same model "
                             f"and options")
        # One directory, one partitioning: runs of two partitionings at once would each encode the ids the other
        # has not written yet. A dataset made before the partitioning was recorded shows it by its shard names.
        found = _partitionings(out_dir)
        recorded = old.get("num_shards")
        there = {recorded} if recorded is not None else found
        if len(there | found) > 1 or (there and there != {meta["num_shards"]}):
            raise ValueError(f"{out_dir} is tokenized in {_describe_partitionings(there | found)}, this run in "
                             f"{_describe_partitionings({meta['num_shards']})} (--num-shards x torchrun's "
                             f"WORLD_SIZE); one directory holds one partitioning: run with the same one, or use "
                             f"another --out directory")
        if recorded is None:
            _atomic_write_bytes(path, (json.dumps({**old, "num_shards": meta["num_shards"]}, indent=2,
                                                  sort_keys=True) + "\n").encode())
        return
    if any(shard_paths(out_dir)):
        raise ValueError(f"{out_dir} has shards but no {META_NAME}; refusing to add rows of unknown origin")
    _atomic_write_bytes(path, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())


def _partitionings(data_dir: Path) -> set[int]:
    """The partition counts the shard names in ``data_dir`` show (1 for unpartitioned ``shard-00000.parquet``)."""
    pattern = re.compile(r"shard-(?:\d+-of-(\d+)-)?\d+\.parquet")
    return {int(m.group(1) or 1) for p in shard_paths(data_dir) if (m := pattern.fullmatch(p.name))}


def _describe_partitionings(counts: set[int]) -> str:
    return " and ".join("one partition" if n == 1 else f"{n} partitions" for n in sorted(counts))


def shard_paths(data_dir: str | os.PathLike) -> list[Path]:
    """The shard files of a tokenized dataset, sorted. Pass them to ``pyarrow.parquet.read_table``,
    ``pandas.read_parquet`` or ``datasets.load_dataset("parquet", data_files=...)`` (the directory itself also
    holds the JSON files, which those readers would try to read as Parquet)."""
    return sorted(p for p in Path(data_dir).glob("shard-*.parquet") if p.is_file())


def read_tokenized(data_dir: str | os.PathLike, columns: list[str] | None = None) -> pa.Table:
    """All rows of a tokenized dataset as one pyarrow Table."""
    paths = shard_paths(data_dir)
    if not paths:
        raise ValueError(f"{data_dir}: no shard-*.parquet files")
    return pa.concat_tables([pq.read_table(p, columns=columns) for p in paths])


def completed_ids(data_dir: Path) -> set[str]:
    """Ids present in the shards (only the ``id`` column is read)."""
    done: set[str] = set()
    for p in shard_paths(data_dir):
        try:
            done.update(pq.read_table(p, columns=["id"]).column("id").to_pylist())
        except Exception as e:  # a shard is only ever renamed into place whole, so this is outside damage
            raise ValueError(f"{p}: cannot read shard ({e}); move it away and run again to redo its inputs") from e
    return done


def failed_ids(data_dir: Path) -> set[str]:
    """Ids listed in ``errors.jsonl`` (lines that do not parse are ignored)."""
    path = data_dir / ERRORS_NAME
    ids: set[str] = set()
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                ids.add(json.loads(line)["id"])
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
    return ids


class ErrorLog:
    """Appends one JSON line per failed input to ``errors.jsonl``, safe for several processes at once: each line
    is a single ``write`` on an ``O_APPEND`` descriptor, synced right away."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self._fd: int | None = None

    def record(self, item: AudioInput, reason: str) -> None:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            # A line cut short by a crash would swallow the next one: start on a fresh line.
            size = os.fstat(self._fd).st_size
            if size and _last_byte(self.path, size) != b"\n":
                os.write(self._fd, b"\n")
        entry = {"id": item.id, "path": item.path, "reason": reason, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        try:
            data = (json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8")
        except UnicodeEncodeError:  # a name that is not UTF-8 (undecodable bytes): escaped, so it reads back equal
            data = (json.dumps(entry) + "\n").encode("ascii")
        os.write(self._fd, data)
        os.fsync(self._fd)
        self.count += 1
        log.debug("failed: %s: %s", item.path, reason)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _last_byte(path: Path, size: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(size - 1)
        return f.read(1)


def shard_prefix(num_shards: int, shard_index: int) -> str:
    """File name prefix of one partition's shards; distinct partitions never share a name."""
    return "shard-" if num_shards == 1 else f"shard-{shard_index:05d}-of-{num_shards:05d}-"


class ShardWriter:
    """Collects rows and writes them as ``{prefix}{seq:05d}.parquet`` shards (temp name, fsync, rename)."""

    def __init__(self, out_dir: Path, prefix: str, *, shard_size: int, latents: bool, metadata: dict) -> None:
        self.out_dir, self.prefix, self.shard_size = out_dir, prefix, shard_size
        pattern = re.compile(re.escape(prefix) + r"(\d+)\.parquet")
        seqs = [int(m.group(1)) for p in out_dir.iterdir() if (m := pattern.fullmatch(p.name))]
        self.seq = max(seqs, default=-1) + 1
        fields = [pa.field("id", pa.string()), pa.field("path", pa.string()), pa.field("duration_s", pa.float64()),
                  pa.field("num_samples", pa.int64()), pa.field("num_frames", pa.int32()),
                  pa.field("codes", pa.list_(pa.list_(pa.uint16())))]
        if latents:
            fields.append(pa.field("latents", pa.list_(pa.list_(pa.float16()))))
        self.schema = pa.schema(fields, metadata={"codec12": json.dumps(metadata, sort_keys=True)})
        self.rows: list[dict] = []
        self.bytes = 0
        self.written: list[str] = []

    def add(self, row: dict) -> None:
        self.rows.append(row)
        self.bytes += row["codes"].nbytes + (row["latents"].nbytes if "latents" in row else 0)
        if len(self.rows) >= self.shard_size or self.bytes >= _MAX_SHARD_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        cols = {
            "id": pa.array([r["id"] for r in self.rows], pa.string()),
            "path": pa.array([r["path"] for r in self.rows], pa.string()),
            "duration_s": pa.array([r["duration_s"] for r in self.rows], pa.float64()),
            "num_samples": pa.array([r["num_samples"] for r in self.rows], pa.int64()),
            "num_frames": pa.array([r["codes"].shape[1] for r in self.rows], pa.int32()),
            "codes": _nested([r["codes"] for r in self.rows], pa.uint16()),
        }
        if "latents" in self.schema.names:
            cols["latents"] = _nested([r["latents"] for r in self.rows], pa.float16())
        table = pa.Table.from_pydict(cols, schema=self.schema)
        name = f"{self.prefix}{self.seq:05d}.parquet"
        _atomic_write(self.out_dir / name, lambda p: pq.write_table(table, str(p), compression="zstd"))
        log.info("wrote %s (%d rows)", name, len(self.rows))
        self.written.append(name)
        self.seq += 1
        self.rows, self.bytes = [], 0


def _nested(arrays: list[np.ndarray], value_type: pa.DataType) -> pa.Array:
    """[R] arrays of shape [K_r, T_r] -> list<list<value_type>> without going through Python lists."""
    inner_offsets, outer_offsets, flat = [np.zeros(1, np.int32)], [0], []
    total = 0
    for a in arrays:
        k, t = a.shape
        inner_offsets.append(total + t * np.arange(1, k + 1, dtype=np.int64))
        total += k * t
        outer_offsets.append(outer_offsets[-1] + k)
        flat.append(a.reshape(-1))
    values = pa.array(np.concatenate(flat) if flat else np.zeros(0), type=value_type)
    inner = pa.ListArray.from_arrays(pa.array(np.concatenate(inner_offsets).astype(np.int32)), values)
    return pa.ListArray.from_arrays(pa.array(np.asarray(outer_offsets, np.int32)), inner)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    _atomic_write(path, lambda p: p.write_bytes(data))


@contextmanager
def _partition_lock(out_dir: Path, prefix: str) -> Iterator[None]:
    """Hold an exclusive lock on one partition of ``out_dir``, so two processes never write the same shard
    names or remove each other's temp files."""
    with ExitStack() as stack:
        try:
            locked = stack.enter_context(_exclusive(out_dir / f".{prefix}lock", wait=False))
        except BlockingIOError:
            raise ValueError(f"{out_dir}: another process is tokenizing this partition ({prefix}*) right now"
                             ) from None
        if locked:  # without advisory locks, rely on distinct partitions and leave temp files alone
            # Temp files of this partition were left by a killed run (the lock proves nobody else writes them).
            stale = re.compile(re.escape(f".{prefix}") + r"\d+\.parquet\.tmp\d+")
            for p in out_dir.iterdir():
                if stale.fullmatch(p.name):
                    p.unlink(missing_ok=True)
        yield


# ---------------------------------------------------------------- loading (in DataLoader workers)
@dataclass
class _Loaded:
    """One input as a worker returns it: ``wav`` [C, T] at the model rate, or ``long`` (to be streamed by the
    main process), or ``error``."""

    index: int
    wav: torch.Tensor | None = None
    long: bool = False
    error: str | None = None


class _LoadDataset(torch.utils.data.Dataset):
    def __init__(self, inputs: list[AudioInput], sample_rate: int, channels: int, long_file_seconds: float,
                 min_duration: float) -> None:
        self.inputs, self.sample_rate, self.channels = inputs, sample_rate, channels
        self.long_file_seconds, self.min_duration = long_file_seconds, min_duration

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> _Loaded:
        path = self.inputs[index].path
        try:
            if probe_audio(path).duration_s > self.long_file_seconds:
                return _Loaded(index, long=True)
            wav = load_audio(path, self.sample_rate, self.channels)
            _check_duration(wav.shape[-1], self.sample_rate, self.min_duration)
            return _Loaded(index, wav=wav)
        except Exception as e:  # any failure of one file is recorded, never fatal
            return _Loaded(index, error=_reason(e, path))


def _check_duration(num_samples: int, sample_rate: int, min_duration: float) -> None:
    if num_samples < max(1, min_duration * sample_rate):
        raise ValueError(f"too short: {num_samples / sample_rate:.4f} s (minimum {min_duration} s)")


def _reason(e: BaseException, path: str) -> str:
    msg = str(e) or type(e).__name__
    if msg.startswith(f"{path}: "):  # errors.jsonl has the path in its own field
        msg = msg[len(path) + 2:]
    return msg if isinstance(e, ValueError) else f"{type(e).__name__}: {msg}"


def _worker_init(_: int) -> None:
    # Workers decode and resample; the model in the main process gets the cores' threads.
    torch.set_num_threads(1)


# ---------------------------------------------------------------- the job
def progress_postfix(audio_seconds: float, elapsed_s: float, failed: int) -> str:
    """The progress bar's rate: audio hours per second of wall time and the real-time factor, e.g.
    ``0.0278 audio-h/s (100x real time), 0 failed``."""
    rate = audio_seconds / elapsed_s if elapsed_s > 0 else 0.0
    return f"{rate / 3600:.3g} audio-h/s ({rate:.3g}x real time), {failed} failed"


class _Tokenizer:
    def __init__(self, codec, options: TokenizeOptions, num_codebooks: int, writer: ShardWriter,
                 errors: ErrorLog, device: torch.device) -> None:
        self.codec, self.options, self.k = codec, options, num_codebooks
        self.writer, self.errors, self.device = writer, errors, device
        self.ok = 0
        self.processed = 0  # ok + failed in this run
        self.audio_seconds = 0.0
        self.bar = None
        self.start = time.monotonic()

    def done(self, n: int = 1) -> None:
        self.processed += n
        if self.bar is not None:
            # The rate counts the audio of the files finished so far, so it moves with the bar (files are
            # encoded in pools of several batches, long after they are read).
            self.bar.set_postfix_str(progress_postfix(self.audio_seconds, time.monotonic() - self.start,
                                                      self.errors.count), refresh=False)
            self.bar.update(n)

    def fail(self, item: AudioInput, reason: str) -> None:
        self.errors.record(item, reason)
        self.done()

    def emit(self, item: AudioInput, num_samples: int, codes: torch.Tensor, latents: torch.Tensor | None) -> None:
        row = {"id": item.id, "path": item.path, "num_samples": num_samples,
               "duration_s": num_samples / self.codec.sample_rate,
               "codes": codes.to("cpu", torch.int32).numpy().astype(np.uint16)}
        if latents is not None:
            row["latents"] = latents.to("cpu", torch.float16).numpy()
        self.writer.add(row)
        self.ok += 1
        self.audio_seconds += row["duration_s"]
        self.done()

    def encode(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """[B, C, T] -> codes [B, K, T'] (and latents [B, D, T'] when stored)."""
        wav = wav.to(self.device)
        with torch.inference_mode():
            if not self.options.latents:
                return self.codec.encode(wav, self.k), None
            z = self.codec.encode_latents(wav)
            return self.codec.quantizer.encode(z, self.k), z

    def encode_pool(self, pool: list[tuple[AudioInput, torch.Tensor]]) -> None:
        """Encode loaded files in batches of similar length. Zero padding at the end cannot change earlier
        frames (the model is causal, and ``encode`` itself pads a partial last frame with zeros), so each
        item is cut back to ceil(T / frame_size) frames and equals encoding it alone."""
        pool.sort(key=lambda x: x[1].shape[-1])
        max_samples = self.options.max_batch_seconds * self.codec.sample_rate
        batch: list[tuple[AudioInput, torch.Tensor]] = []
        for entry in pool:
            if batch and (len(batch) >= self.options.batch_size or (len(batch) + 1) * entry[1].shape[-1] > max_samples):
                self.encode_batch(batch)
                batch = []
            batch.append(entry)
        if batch:
            self.encode_batch(batch)
        pool.clear()

    def encode_batch(self, batch: list[tuple[AudioInput, torch.Tensor]]) -> None:
        length = max(w.shape[-1] for _, w in batch)
        try:
            wav = torch.stack([torch.nn.functional.pad(w, (0, length - w.shape[-1])) for _, w in batch])
            codes, latents = self.encode(wav)
        except Exception as e:
            if len(batch) > 1:  # find the culprit (or fit in memory) one file at a time
                for entry in batch:
                    self.encode_batch([entry])
            else:
                self.fail(batch[0][0], f"encoding failed: {_reason(e, batch[0][0].path)}")
            return
        for i, (item, w) in enumerate(batch):
            n = math.ceil(w.shape[-1] / self.codec.frame_size)
            self.emit(item, w.shape[-1], codes[i, :, :n], None if latents is None else latents[i, :, :n])

    def encode_long(self, item: AudioInput) -> None:
        """Read, resample and encode a long file in streaming chunks of whole frames (streaming == offline)."""
        codec = self.codec
        chunk = max(1, round(self.options.chunk_seconds * codec.frame_rate)) * codec.frame_size
        codes, latents, total = [], [], 0
        pending = torch.zeros(codec.channels, 0)
        try:
            with codec.streaming(batch_size=1):
                for block in iter_audio_blocks(item.path, codec.sample_rate, codec.channels,
                                               self.options.chunk_seconds):
                    total += block.shape[-1]
                    pending = torch.cat([pending, block], dim=-1)
                    while pending.shape[-1] >= chunk:
                        c, z = self.encode(pending[None, :, :chunk])
                        codes.append(c.cpu())
                        latents.append(None if z is None else z.to("cpu", torch.float16))
                        pending = pending[:, chunk:]
                if pending.shape[-1]:
                    pad = -pending.shape[-1] % codec.frame_size  # as offline encode pads the last frame
                    c, z = self.encode(torch.nn.functional.pad(pending, (0, pad))[None])
                    codes.append(c.cpu())
                    latents.append(None if z is None else z.to("cpu", torch.float16))
            _check_duration(total, codec.sample_rate, self.options.min_duration)
        except Exception as e:
            self.fail(item, _reason(e, item.path))
            return
        self.emit(item, total, torch.cat(codes, dim=-1)[0],
                  None if not self.options.latents else torch.cat(latents, dim=-1)[0])


def tokenize_dataset(inputs: list[AudioInput], out_dir: str | os.PathLike, codec, options: TokenizeOptions,
                     *, model_source: str = "", device: str | torch.device | None = None) -> TokenizeSummary:
    """Tokenize this partition of ``inputs`` into ``out_dir`` (see the module docstring); resumable.

    Inputs already in a shard of ``out_dir`` (or failed in an earlier run, unless ``retry_failed``) are
    skipped. Failures are appended to ``errors.jsonl`` and never stop the run. Raises ``ValueError`` when
    ``out_dir`` holds a dataset made by another model or with other settings.
    """
    start = time.monotonic()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device) if device is not None else next(codec.parameters()).device
    k = codec.num_codebooks if options.num_codebooks is None else options.num_codebooks
    if not 1 <= k <= codec.num_codebooks:
        raise ValueError(f"num_codebooks must be in [1, {codec.num_codebooks}] for this model, got {k}")
    if max(codec.codebook_sizes[:k]) > 65536:
        raise ValueError(f"codebooks of {max(codec.codebook_sizes[:k])} entries do not fit uint16 shards")
    meta = dataset_meta(codec, model_source=model_source, num_codebooks=k, latents=options.latents,
                        num_shards=options.num_shards)
    ensure_meta(out_dir, meta, codec.config)
    mine = partition(inputs, options.num_shards, options.shard_index)
    prefix = shard_prefix(options.num_shards, options.shard_index)
    errors = ErrorLog(out_dir / ERRORS_NAME)
    with _partition_lock(out_dir, prefix):
        done = completed_ids(out_dir)
        skip = done if options.retry_failed else done | failed_ids(out_dir)
        pending = [x for x in mine if x.id not in skip]
        done_before = sum(x.id in done for x in mine)
        writer = ShardWriter(out_dir, prefix, shard_size=options.shard_size, latents=options.latents, metadata=meta)
        job = _Tokenizer(codec, options, k, writer, errors, device)
        log.info("%s: %d inputs in this partition, %d to do, %d done before", out_dir, len(mine), len(pending),
                 len(mine) - len(pending))
        try:
            # An id names the file detokenize writes, and ids and paths are stored as UTF-8: refuse what cannot.
            refused = {x.id: reason for x in pending if (reason := _input_problem(x)) is not None}
            for x in pending:
                if x.id in refused:
                    errors.record(x, refused[x.id])
            _run(job, [x for x in pending if x.id not in refused], options, start)
        finally:
            writer.flush()  # rows already encoded are kept even when the run stops on an exception
            errors.close()
    return TokenizeSummary(total=len(mine), ok=job.ok, failed=errors.count, skipped=len(mine) - len(pending),
                           done_before=done_before, audio_seconds=job.audio_seconds,
                           elapsed_s=time.monotonic() - start, shards=writer.written)


def _input_problem(item: AudioInput) -> str | None:
    problem = id_problem(item.id)
    if problem is None:
        try:
            item.path.encode("utf-8")
        except UnicodeEncodeError:
            problem = "the file's path is not valid UTF-8 (rename the file)"
    return problem


def _run(job: _Tokenizer, pending: list[AudioInput], options: TokenizeOptions, start: float) -> None:
    if not pending:
        return
    codec = job.codec
    dataset = _LoadDataset(pending, codec.sample_rate, codec.channels, options.long_file_seconds,
                           options.min_duration)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=None, shuffle=False, num_workers=options.workers, collate_fn=_identity,
        worker_init_fn=_worker_init if options.workers else None,
        prefetch_factor=4 if options.workers else None)
    # Loaded files wait in a pool until enough are there to batch them by length; the pool is bounded in files
    # and in samples (8 batches' worth), so memory does not grow with the dataset.
    pool: list[tuple[AudioInput, torch.Tensor]] = []
    pool_samples, pool_limit = 0, 8 * options.max_batch_seconds * codec.sample_rate
    from tqdm import tqdm

    job.bar = tqdm(total=len(pending), unit="file", disable=not options.progress, dynamic_ncols=True,
                   smoothing=0.05)
    last_log = time.monotonic()
    received = 0
    try:
        iterator = iter(loader)
        while True:
            try:
                item = next(iterator)
            except StopIteration:
                break
            except RuntimeError as e:
                if "DataLoader worker" not in str(e):
                    raise
                # A worker died (killed for memory, or a crash inside an audio decoder): keep what was loaded, then
                # stop with a message instead of a traceback. The rows done so far are written by the caller.
                job.encode_pool(pool)
                raise ValueError(f"a worker process reading the inputs died ({e}) at {pending[received].path} or a "
                                 f"file soon after it; the rows done so far are kept: run the same command again to "
                                 f"go on (with --workers 0 to find the file if it happens again)") from None
            received += 1
            entry = pending[item.index]
            if item.error is not None:
                job.fail(entry, item.error)
            elif item.long:
                job.encode_long(entry)
            else:
                pool.append((entry, item.wav))
                pool_samples += item.wav.shape[-1]
                if len(pool) >= 8 * options.batch_size or pool_samples >= pool_limit:
                    job.encode_pool(pool)
                    pool_samples = 0
            elapsed = time.monotonic() - start
            if not options.progress and time.monotonic() - last_log > 30:
                last_log = time.monotonic()
                log.info("%d/%d files, %d failed, %.3f audio-h (%.3g audio-h/s)", job.processed, len(pending),
                         job.errors.count, job.audio_seconds / 3600, job.audio_seconds / 3600 / max(elapsed, 1e-9))
        job.encode_pool(pool)
    finally:
        job.bar.close()


def _identity(x):
    return x


# ---------------------------------------------------------------- decoding a dataset back to audio
@dataclass
class DetokenizeSummary:
    """What one :func:`detokenize_dataset` call did. ``failed``: ids of rows that could not be decoded or written,
    with ``reasons`` (id -> reason); ``damaged_shards``: shards that could not be read (whole or past some row),
    each as ``"PATH: reason"``; their remaining rows were skipped."""

    written: int
    skipped: int
    failed: list[str]
    audio_seconds: float
    elapsed_s: float
    reasons: dict[str, str] = field(default_factory=dict)
    damaged_shards: list[str] = field(default_factory=list)


def detokenize_dataset(data_dir: str | os.PathLike, out_dir: str | os.PathLike, codec, *,
                       num_codebooks: int | None = None, from_latents: bool = False, force: bool = False,
                       chunk_seconds: float = 10.0, long_file_seconds: float = 60.0, progress: bool = True,
                       suffix: str = ".wav") -> DetokenizeSummary:
    """Decode every row of a tokenized dataset to ``out_dir/{id}{suffix}``, trimmed to the row's length.

    Existing outputs are kept (a re-run finishes an interrupted one) unless ``force``. Rows longer than
    ``long_file_seconds`` are decoded in streaming chunks written straight to the file (bounded memory).
    One bad row (an id that cannot be a file name, codes out of range or of the wrong shape, a length that does
    not fit them) or one damaged shard never stops the job: it is logged, recorded in the summary and skipped.
    Raises ``ValueError`` when ``codec`` is not the model that tokenized the dataset.
    """
    from tqdm import tqdm

    start = time.monotonic()
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if not re.fullmatch(r"\.[A-Za-z0-9]+", suffix):
        raise ValueError(f"output suffix must be like '.wav', got {suffix!r}")
    meta = read_meta(data_dir)
    if not codec.config.hash_matches(meta["config_hash"]) or meta["weights_hash"] != codec.weights_hash():
        raise ValueError(f"{data_dir} was tokenized with model {meta['model']!r} (config {meta['config_hash']}, "
                         f"weights {meta['weights_hash']}); the model given differs")
    if from_latents and not meta["latents"]:
        raise ValueError(f"{data_dir}: tokenized without --latents; there are no latents to decode")
    k = meta["num_codebooks"] if num_codebooks is None else num_codebooks
    if not 1 <= k <= meta["num_codebooks"]:
        raise ValueError(f"num_codebooks must be in [1, {meta['num_codebooks']}] for this dataset, got {k}")
    paths = shard_paths(data_dir)
    if not paths:
        raise ValueError(f"{data_dir}: no shard-*.parquet files")
    out_dir.mkdir(parents=True, exist_ok=True)
    column = "latents" if from_latents else "codes"
    summary = DetokenizeSummary(written=0, skipped=0, failed=[], audio_seconds=0.0, elapsed_s=0.0)

    def damaged(path: Path, e: Exception, rows_done: int) -> None:
        where = f"unreadable after {rows_done} rows" if rows_done else "unreadable"
        summary.damaged_shards.append(f"{path}: {where} ({type(e).__name__}: {e})")
        log.warning("%s: damaged shard, %s (%s); its remaining rows are skipped", path, where, e)

    shards = []
    for path in paths:
        try:
            shards.append((path, pq.ParquetFile(path)))
        except Exception as e:  # truncated, overwritten, not Parquet: pyarrow raises several types
            damaged(path, e, 0)
    total = sum(f.metadata.num_rows for _, f in shards)
    decoder = _RowDecoder(codec, out_dir, suffix, k, from_latents, force, chunk_seconds, long_file_seconds)
    with tqdm(total=total, unit="file", disable=not progress, dynamic_ncols=True) as bar:
        for path, parquet in shards:
            rows_done = 0
            try:
                for rb in parquet.iter_batches(batch_size=16, columns=["id", "num_samples", column]):
                    for uid, n, value in zip(*(rb.column(i) for i in range(3))):
                        rows_done += 1
                        bar.update(1)
                        decoder.row(summary, path, uid.as_py(), n.as_py(), value)
            except Exception as e:  # the shard, not a row: a row's failures are caught in _RowDecoder.row
                damaged(path, e, rows_done)
    summary.elapsed_s = time.monotonic() - start
    return summary


class _RowDecoder:
    """Decodes one row of a tokenized dataset to its file; a row that cannot be is recorded in the summary."""

    def __init__(self, codec, out_dir: Path, suffix: str, num_codebooks: int, from_latents: bool, force: bool,
                 chunk_seconds: float, long_file_seconds: float) -> None:
        self.codec, self.out_dir, self.suffix, self.k = codec, out_dir, suffix, num_codebooks
        self.from_latents, self.force = from_latents, force
        self.chunk_frames = max(1, round(chunk_seconds * codec.frame_rate))
        self.long_frames = long_file_seconds * codec.frame_rate
        self.device = next(codec.parameters()).device

    def row(self, summary: DetokenizeSummary, shard: Path, uid, num_samples, value) -> None:
        try:
            problem = id_problem(uid)
            if problem is not None:
                raise ValueError(f"{problem}; it cannot name a file")
            target = self.out_dir / f"{uid}{self.suffix}"
            if target.exists() and not self.force:
                summary.skipped += 1
                return
            x = self._tensor(value)
            frames = x.shape[-1]
            if not isinstance(num_samples, int) or not 0 < num_samples <= frames * self.codec.frame_size:
                raise ValueError(f"num_samples {num_samples!r} does not fit {frames} frames of "
                                 f"{self.codec.frame_size} samples")
            target.parent.mkdir(parents=True, exist_ok=True)
            _decode_to_file(self.codec, x.to(self.device), num_samples, target, self.from_latents,
                            self.chunk_frames if frames > self.long_frames else None)
        except Exception as e:  # one bad row never stops the job: ValueError, OSError, pyarrow's, torch's...
            key = uid if isinstance(uid, str) else repr(uid)
            summary.failed.append(key)
            summary.reasons[key] = str(e) if isinstance(e, (ValueError, OSError)) else f"{type(e).__name__}: {e}"
            log.warning("%s: id %r: %s; skipped", shard, uid, summary.reasons[key])
            return
        summary.written += 1
        summary.audio_seconds += num_samples / self.codec.sample_rate

    def _tensor(self, value) -> torch.Tensor:
        """A row's list<list<...>> codes [K][T'] (or latents [D][T']) -> [1, K or D, T']."""
        rows = value.values
        if rows is None or len(rows) == 0 or rows.null_count:
            raise ValueError(f"no {'latents' if self.from_latents else 'codes'} in this row")
        lengths = set(rows.value_lengths().to_pylist())
        if len(lengths) != 1 or 0 in lengths:
            raise ValueError(f"ragged or empty rows of {'latents' if self.from_latents else 'codes'} (lengths "
                             f"{sorted(lengths)[:4]})")
        array = rows.flatten().to_numpy(zero_copy_only=False).reshape(len(rows), -1)
        x = torch.from_numpy(array.astype(np.float32 if self.from_latents else np.int64))
        return (x if self.from_latents else x[:self.k])[None]


def _decode_to_file(codec, x: torch.Tensor, num_samples: int, target: Path, from_latents: bool,
                    chunk_frames: int | None) -> None:
    """Decode codes/latents [1, K|D, T'] to ``target`` trimmed to ``num_samples``; with ``chunk_frames``, in
    streaming chunks appended to the file as they come (memory bounded by the chunk)."""
    import soundfile as sf

    decode = codec.decode_latents if from_latents else codec.decode

    def write(tmp: Path) -> None:
        with sf.SoundFile(str(tmp), "w", samplerate=codec.sample_rate, channels=codec.channels,
                          format=target.suffix.lstrip(".").upper() or "WAV") as f:
            remaining = num_samples
            with torch.inference_mode(), (codec.streaming(1) if chunk_frames else _nothing()):
                step = chunk_frames or x.shape[-1]
                for s in range(0, x.shape[-1], step):
                    wav = decode(x[..., s:s + step])[0, :, :remaining]
                    f.write(wav.clamp(-1, 1).T.cpu().numpy())
                    remaining -= wav.shape[-1]

    _atomic_write(target, write)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


__all__ = [
    "DetokenizeSummary", "ErrorLog", "ShardWriter", "TokenizeOptions", "TokenizeSummary", "completed_ids",
    "dataset_meta", "detokenize_dataset", "ensure_meta", "failed_ids", "read_meta", "read_tokenized",
    "shard_paths", "tokenize_dataset",
]
