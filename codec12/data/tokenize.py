"""Tokenizing a dataset into Parquet shards: the batching, resumable job (the files it writes are described in
:mod:`codec12.data.dataset_format`; :mod:`codec12.data.detokenize` decodes them back).

Never losing work: shards are written whole or not at all (see :class:`~codec12.data.dataset_format.ShardWriter`);
a re-run reads the ids of the shards present (and of ``errors.jsonl``) and only does the rest; each error line is
synced as soon as it happens. Inputs whose rows were still in memory when the process died are simply done again.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from codec12.audio import load_audio
from codec12.data.blocks import iter_audio_blocks, probe_audio
from codec12.data.dataset_format import (
    ERRORS_NAME,
    META_NAME,
    ErrorLog,
    ShardWriter,
    completed_ids,
    dataset_meta,
    ensure_meta,
    failed_ids,
    read_meta,
    read_tokenized,
    shard_paths,
    shard_prefix,
)
from codec12.data.detokenize import DetokenizeSummary, detokenize_dataset
from codec12.data.inputs import id_problem, partition
from codec12.data.locking import partition_lock
from codec12.data.manifest import ManifestRow

log = logging.getLogger(__name__)


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
    def __init__(self, inputs: list[ManifestRow], sample_rate: int, channels: int, long_file_seconds: float,
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

    def fail(self, item: ManifestRow, reason: str) -> None:
        self.errors.record(item, reason)
        self.done()

    def emit(self, item: ManifestRow, num_samples: int, codes: torch.Tensor, latents: torch.Tensor | None) -> None:
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
            return self.codec.encode_with_latents(wav, self.k)

    def encode_pool(self, pool: list[tuple[ManifestRow, torch.Tensor]]) -> None:
        """Encode loaded files in batches of similar length. Zero padding at the end cannot change earlier
        frames (the model is causal, and ``encode`` itself pads a partial last frame with zeros), so each
        item is cut back to ceil(T / frame_size) frames and equals encoding it alone."""
        pool.sort(key=lambda x: x[1].shape[-1])
        max_samples = self.options.max_batch_seconds * self.codec.sample_rate
        batch: list[tuple[ManifestRow, torch.Tensor]] = []
        for entry in pool:
            if batch and (len(batch) >= self.options.batch_size or (len(batch) + 1) * entry[1].shape[-1] > max_samples):
                self.encode_batch(batch)
                batch = []
            batch.append(entry)
        if batch:
            self.encode_batch(batch)
        pool.clear()

    def encode_batch(self, batch: list[tuple[ManifestRow, torch.Tensor]]) -> None:
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

    def encode_long(self, item: ManifestRow) -> None:
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


def tokenize_dataset(inputs: list[ManifestRow], out_dir: str | os.PathLike, codec, options: TokenizeOptions,
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
    with partition_lock(out_dir, prefix):
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


def _input_problem(item: ManifestRow) -> str | None:
    problem = id_problem(item.id)
    if problem is None:
        try:
            item.path.encode("utf-8")
        except UnicodeEncodeError:
            problem = "the file's path is not valid UTF-8 (rename the file)"
    return problem


def _run(job: _Tokenizer, pending: list[ManifestRow], options: TokenizeOptions, start: float) -> None:
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
    pool: list[tuple[ManifestRow, torch.Tensor]] = []
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


# The dataset format's names and detokenize_dataset are imported here too, so code that imports them from this
# module keeps working.
__all__ = [
    "ERRORS_NAME", "META_NAME", "DetokenizeSummary", "ErrorLog", "ShardWriter", "TokenizeOptions",
    "TokenizeSummary", "completed_ids", "dataset_meta", "detokenize_dataset", "ensure_meta", "failed_ids",
    "progress_postfix", "read_meta", "read_tokenized", "shard_paths", "tokenize_dataset",
]
