"""The tokenized dataset's files: ``codec12_meta.json``, the Parquet shards and ``errors.jsonl``; reading and
writing them.

Output directory layout (DESIGN.md §4)::

    codec12_meta.json                 model name, config hash (+ its format) and weights hash, rates, codebook
                                      sizes, num_codebooks, the compute dtype, the runtime (torch or onnx) and the
                                      partitioning (num_shards)
    shard-00000.parquet ...           one row per input (``shard-IIIII-of-NNNNN-00000.parquet`` when partitioned)
    errors.jsonl                      one JSON line per input that failed: id, path, reason

Row columns: ``id`` (string), ``path`` (string), ``duration_s`` (float64), ``num_samples`` (int64, at the model
rate), ``num_frames`` (int32), ``codes`` (list<list<uint16>>, [K][T']), ``latents`` (list<list<float16>>,
[D][T'], with ``latents=True``). Codes equal ``Codec.encode(load_audio(path, codec.sample_rate,
codec.channels)[None], K)``.

Never losing work: a shard is written to a hidden temporary name, synced and renamed, so a shard either
exists whole or not at all; each error line is appended with one ``write`` and synced as soon as it happens.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from codec12 import __version__
from codec12._fs import atomic_write as _atomic_write
from codec12.config import CONFIG_HASH_FORMAT, CONFIG_HASH_FORMATS, CodecConfig
from codec12.data.locking import exclusive
from codec12.data.manifest import ManifestRow
from codec12.export.runtime import SIDECAR_NAME, OnnxCodec

log = logging.getLogger(__name__)

META_NAME = "codec12_meta.json"
ERRORS_NAME = "errors.jsonl"
META_FORMAT_VERSION = 1
# Meta keys that must match for a run to add rows to an existing dataset; "dtype" and "num_shards" too, when the
# dataset records them (datasets made before they were recorded do not), and "runtime" ("torch" when not recorded:
# datasets made before the ONNX runtime could tokenize).
_MUST_MATCH = ("config_hash", "weights_hash", "num_codebooks", "latents", "sample_rate", "channels")
# The keys codec12_meta.json must hold, and their JSON types.
_META_TYPES = {"model": (str,), "model_source": (str,), "config_hash": (str,), "weights_hash": (str,),
               "sample_rate": (int,), "channels": (int,), "frame_rate": (int, float), "frame_size": (int,),
               "codebook_sizes": (list,), "num_codebooks": (int,), "latents": (bool,), "latent_dim": (int,)}
# Optional: datasets made before a key was recorded lack it (``config_hash_format``: 1 when absent; ``runtime``:
# torch when absent).
_META_OPTIONAL_TYPES = {"dtype": (str,), "runtime": (str,), "num_shards": (int,), "codec12_version": (str,),
                        "config_hash_format": (int,)}
_MAX_SHARD_BYTES = 256 << 20  # flush a shard early when its rows get this big (long files, latents)


def dataset_meta(codec, *, model_source: str, num_codebooks: int, latents: bool, num_shards: int = 1) -> dict:
    """The ``codec12_meta.json`` content for a dataset tokenized by ``codec`` in ``num_shards`` partitions.

    ``codec``: a :class:`~codec12.Codec` or an :class:`~codec12.export.runtime.OnnxCodec`, recorded as ``runtime``
    ``"torch"`` or ``"onnx"``; an export names its model by the config and weights hashes of the model it was
    exported from, so a dataset made through it decodes with that model. ``dtype``: what the codes were computed
    in (the weights' dtype: ``Codec.encode`` runs in it whatever the autocast; an export's ``dtype``)."""
    if isinstance(codec, OnnxCodec):
        config = onnx_config(codec)
        config_hash = config.config_hash()  # in this version's format, whatever format the sidecar recorded
        weights_hash = codec.meta.get("weights_hash")
        if not isinstance(weights_hash, str):
            raise ValueError(f"{codec.directory}: this export does not record the hash of its weights (an earlier "
                             f"codec12 made it); export the model again (codec12 export onnx), or give the model "
                             f"itself")
        dtype, runtime = codec.dtype, "onnx"  # what the export's layers hold (float32, float16, int8)
    else:
        config, config_hash, weights_hash = codec.config, codec.config.config_hash(), codec.weights_hash()
        dtype, runtime = str(next(codec.parameters()).dtype).removeprefix("torch."), "torch"
    return {
        "format_version": META_FORMAT_VERSION,
        "model": config.name or str(model_source),
        "model_source": str(model_source),
        "config_hash": config_hash,
        "config_hash_format": CONFIG_HASH_FORMAT,
        "weights_hash": weights_hash,
        "sample_rate": codec.sample_rate,
        "channels": codec.channels,
        "frame_rate": codec.frame_rate,
        "frame_size": codec.frame_size,
        "codebook_sizes": list(codec.codebook_sizes[:num_codebooks]),
        "num_codebooks": num_codebooks,
        "latents": latents,
        "latent_dim": codec.latent_dim,
        "dtype": dtype,
        "runtime": runtime,
        "num_shards": num_shards,
        "codec12_version": __version__,
    }


def onnx_config(codec: OnnxCodec) -> CodecConfig:
    """The config of the model an ONNX export was made from (its sidecar holds it)."""
    return CodecConfig.from_dict(codec.meta.get("config"), where=f"{codec.directory / SIDECAR_NAME}")


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
    if config_hash_format(meta) not in CONFIG_HASH_FORMATS:
        raise ValueError(f"{path}: config_hash_format {meta['config_hash_format']} is not supported (this codec12 "
                         f"reads {', '.join(map(str, CONFIG_HASH_FORMATS))})")
    return meta


def config_hash_format(meta: dict) -> int:
    """The format of the config hash ``meta`` records (1 for datasets made before it was recorded)."""
    return meta.get("config_hash_format", 1)


def ensure_meta(out_dir: Path, meta: dict, config=None) -> None:
    """Write ``meta`` to a new dataset, or check that an existing one was made the same way. Processes that
    start together (torchrun ranks, job-array tasks) take turns, so none sees another's first shard before
    its metadata. ``config``: the model's :class:`~codec12.config.CodecConfig`, to accept the config hash an
    earlier version recorded for it."""
    with exclusive(out_dir / f".{META_NAME}.lock"):
        _ensure_meta(out_dir, meta, config)


def _ensure_meta(out_dir: Path, meta: dict, config=None) -> None:
    path = out_dir / META_NAME
    if path.exists():
        old = read_meta(out_dir)

        def same(k: str) -> bool:
            if k == "config_hash" and config is not None:
                return config.hash_matches(old.get(k), config_hash_format(old))
            if k == "runtime":
                return old.get(k, "torch") == meta[k]
            return old.get(k) == meta[k]

        keys = _MUST_MATCH + (("dtype",) if "dtype" in old else ()) + ("runtime",)
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

    def record(self, item: ManifestRow, reason: str) -> None:
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
    """Collects rows and writes them as ``{prefix}{seq:05d}.parquet`` shards (temp name, fsync, rename): a shard
    holds ``shard_size`` rows, or fewer when their codes and latents reach ``max_bytes``."""

    def __init__(self, out_dir: Path, prefix: str, *, shard_size: int, latents: bool, metadata: dict,
                 max_bytes: float = _MAX_SHARD_BYTES) -> None:
        self.out_dir, self.prefix, self.shard_size, self.max_bytes = out_dir, prefix, shard_size, max_bytes
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
        if len(self.rows) >= self.shard_size or self.bytes >= self.max_bytes:
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


__all__ = [
    "ERRORS_NAME", "META_FORMAT_VERSION", "META_NAME", "ErrorLog", "ShardWriter", "completed_ids", "config_hash_format",
    "dataset_meta", "ensure_meta", "failed_ids", "onnx_config", "read_meta", "read_tokenized", "shard_paths",
    "shard_prefix",
]
