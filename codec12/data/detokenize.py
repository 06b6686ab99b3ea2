"""Decoding a tokenized dataset (see :mod:`codec12.data.dataset_format`) back to audio files."""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from codec12._fs import atomic_write as _atomic_write
from codec12.data.dataset_format import config_hash_format, read_meta, shard_paths
from codec12.data.inputs import id_problem

log = logging.getLogger(__name__)


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
    if (not codec.config.hash_matches(meta["config_hash"], config_hash_format(meta))
            or meta["weights_hash"] != codec.weights_hash()):
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


__all__ = ["DetokenizeSummary", "detokenize_dataset"]
