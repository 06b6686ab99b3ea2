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
from collections.abc import Iterator
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
    onnx_config,
    read_meta,
    read_tokenized,
    shard_paths,
    shard_prefix,
)
from codec12.data.detokenize import DetokenizeSummary, detokenize_dataset
from codec12.data.inputs import id_problem, partition
from codec12.data.locking import partition_lock
from codec12.data.manifest import ManifestRow
from codec12.data.plan import GPU_SHARE, WorkPlan, load_cost, plan_work, resident_bytes, work_budget
from codec12.export.runtime import OnnxCodec

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class TokenizeOptions:
    """How :func:`tokenize_dataset` runs.

    num_codebooks: codes rows to keep (semantic + first K-1 acoustic); None keeps all.
    latents: also store the continuous latents (float16 [D][T']).
    max_memory_mb: the peak memory (resident set, MiB) the run aims for, counting what the process holds when it
        starts (libraries, the model); the audio worked on at once follows from it and the model's size (see
        :mod:`codec12.data.plan`). None: 1536 MiB, or what the process holds plus 512 MiB if that is more.
    batch_size / max_batch_seconds: files per batch and padded audio per batch; files are batched with others
        of similar length (a pool of loaded files is sorted by length), so padding stays small. None: as the
        plan says (on a CPU the amount that encodes fastest, on a GPU up to 160 s, both within the budget).
    workers: DataLoader worker processes that read and resample files (0: in the main process).
    shard_size: rows per shard file.
    long_file_seconds / chunk_seconds: files longer than a batch are encoded in streaming chunks (streaming ==
        offline), and files too big to read whole within the budget are read block by block; these cap the
        plan: files longer than ``long_file_seconds`` are always read block by block, and chunks are never
        longer than ``chunk_seconds``. None: the plan alone decides.
    min_duration: shorter files are recorded as errors ("too short").
    num_shards / shard_index: process only this part of the inputs (see ``inputs.partition``).
    retry_failed: try again the inputs ``errors.jsonl`` already lists (otherwise they are skipped).
    progress: show a progress bar (otherwise log lines).
    """

    num_codebooks: int | None = None
    latents: bool = False
    max_memory_mb: float | None = None
    batch_size: int = 16
    max_batch_seconds: float | None = None
    workers: int = 0
    shard_size: int = 1000
    long_file_seconds: float | None = None
    chunk_seconds: float | None = None
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
        for name in ("max_memory_mb", "max_batch_seconds", "long_file_seconds", "chunk_seconds"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"{name} must be positive (or None), got {value!r}")
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
    this call; ``streamed``: files encoded in streaming chunks (longer than a batch); ``plan``: the batch and chunk
    sizes the memory budget gave; ``timings``: seconds the main process spent reading audio (or waiting for the
    worker processes), encoding and writing shards."""

    total: int
    ok: int
    failed: int
    skipped: int
    done_before: int
    audio_seconds: float
    elapsed_s: float
    shards: list[str] = field(default_factory=list)
    streamed: int = 0
    plan: WorkPlan | None = None
    timings: dict[str, float] = field(default_factory=dict)

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
    """One input as a worker returns it: ``wav`` [C, T] at the model rate, or ``long`` (to be read block by block
    by the main process), or ``error``."""

    index: int
    wav: torch.Tensor | None = None
    long: bool = False
    error: str | None = None


class _LoadDataset(torch.utils.data.Dataset):
    """Reads whole the files whose reading fits ``load_bytes`` (and that are not over ``long_file_seconds``);
    the others are left to be streamed."""

    def __init__(self, inputs: list[ManifestRow], sample_rate: int, channels: int, load_bytes: float,
                 long_file_seconds: float | None, min_duration: float) -> None:
        self.inputs, self.sample_rate, self.channels = inputs, sample_rate, channels
        self.load_bytes, self.long_file_seconds, self.min_duration = load_bytes, long_file_seconds, min_duration

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> _Loaded:
        path = self.inputs[index].path
        try:
            info = probe_audio(path)
            cost = load_cost(info.duration_s, info.sample_rate, info.channels, self.sample_rate, self.channels)
            if cost > self.load_bytes or (self.long_file_seconds is not None
                                          and info.duration_s > self.long_file_seconds):
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


# ---------------------------------------------------------------- the model, on either runtime
class _TorchRuntime:
    """A :class:`~codec12.Codec` on ``device``."""

    name = "torch"

    def __init__(self, codec, device: torch.device) -> None:
        self.codec, self.device = codec, device

    def encode(self, wav: torch.Tensor, k: int, latents: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """[B, C, T] -> codes uint16 [B, K, T'] (and latents float16 [B, D, T'] when asked)."""
        wav = wav.to(self.device)
        with torch.inference_mode():
            if not latents:
                return _codes(self.codec.encode(wav, k).to("cpu", torch.int32).numpy()), None
            codes, z = self.codec.encode_with_latents(wav, k)
            return _codes(codes.to("cpu", torch.int32).numpy()), z.to("cpu", torch.float16).numpy()

    def streaming(self):
        return self.codec.streaming(batch_size=1)


class _OnnxRuntime:
    """An :class:`~codec12.export.runtime.OnnxCodec` (numpy in and out)."""

    name = "onnx"

    def __init__(self, codec: OnnxCodec) -> None:
        self.codec = codec

    def encode(self, wav: torch.Tensor, k: int, latents: bool) -> tuple[np.ndarray, np.ndarray | None]:
        x = wav.numpy()
        if not latents:
            return _codes(self.codec.encode(x, k)), None
        codes, z = self.codec.encode_with_latents(x, k)
        return _codes(codes), z.astype(np.float16)

    def streaming(self):
        return self.codec.streaming(batch_size=1)


def _codes(codes: np.ndarray) -> np.ndarray:
    return codes.astype(np.uint16)  # what the shards store; every codebook fits (checked at the start)


# ---------------------------------------------------------------- the job
def progress_postfix(audio_seconds: float, elapsed_s: float, failed: int) -> str:
    """The progress bar's rate: audio hours per second of wall time and the real-time factor, e.g.
    ``0.0278 audio-h/s (100x real time), 0 failed``."""
    rate = audio_seconds / elapsed_s if elapsed_s > 0 else 0.0
    return f"{rate / 3600:.3g} audio-h/s ({rate:.3g}x real time), {failed} failed"


class _Tokenizer:
    def __init__(self, runtime, model, options: TokenizeOptions, plan: WorkPlan, num_codebooks: int,
                 writer: ShardWriter, errors: ErrorLog) -> None:
        self.runtime, self.model, self.options, self.plan, self.k = runtime, model, options, plan, num_codebooks
        self.writer, self.errors = writer, errors
        self.chunk = max(1, round(plan.chunk_seconds * model.frame_rate)) * model.frame_size  # samples
        self.max_batch = plan.batch_seconds * model.sample_rate  # padded samples
        self.ok = 0
        self.streamed = 0
        self.processed = 0  # ok + failed in this run
        self.audio_seconds = 0.0
        self.timings = {"read": 0.0, "encode": 0.0, "write": 0.0}
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

    def emit(self, item: ManifestRow, num_samples: int, codes: np.ndarray, latents: np.ndarray | None) -> None:
        row = {"id": item.id, "path": item.path, "num_samples": num_samples,
               "duration_s": num_samples / self.model.sample_rate, "codes": codes}
        if latents is not None:
            row["latents"] = latents
        start = time.perf_counter()
        self.writer.add(row)
        self.timings["write"] += time.perf_counter() - start
        self.ok += 1
        self.audio_seconds += row["duration_s"]
        self.done()

    def encode(self, wav: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        """[B, C, T] -> codes uint16 [B, K, T'] (and latents float16 [B, D, T'] when stored)."""
        start = time.perf_counter()
        try:
            return self.runtime.encode(wav, self.k, self.options.latents)
        finally:
            self.timings["encode"] += time.perf_counter() - start

    def encode_pool(self, pool: list[tuple[ManifestRow, torch.Tensor]]) -> None:
        """Encode loaded files in batches of similar length. Zero padding at the end cannot change earlier
        frames (the model is causal, and ``encode`` itself pads a partial last frame with zeros), so each
        item is cut back to ceil(T / frame_size) frames and equals encoding it alone. A file longer than a batch
        is encoded alone in streaming chunks (streaming == offline)."""
        pool.sort(key=lambda x: x[1].shape[-1])
        batch: list[tuple[ManifestRow, torch.Tensor]] = []
        for entry in pool:
            n = entry[1].shape[-1]
            if n > self.max_batch:
                self.encode_chunked(*entry)
                continue
            if batch and (len(batch) >= self.options.batch_size or (len(batch) + 1) * n > self.max_batch):
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
            n = math.ceil(w.shape[-1] / self.model.frame_size)
            self.emit(item, w.shape[-1], codes[i, :, :n], None if latents is None else latents[i, :, :n])

    def encode_chunked(self, item: ManifestRow, wav: torch.Tensor) -> None:
        """Encode a file loaded whole, [C, T], in streaming chunks."""
        self.encode_stream(item, iter((wav,)))

    def encode_long(self, item: ManifestRow) -> None:
        """Read, resample and encode a long file block by block, in streaming chunks."""
        blocks = iter_audio_blocks(item.path, self.model.sample_rate, self.model.channels,
                                   min(self.plan.chunk_seconds, _BLOCK_SECONDS))
        self.encode_stream(item, blocks)

    def encode_stream(self, item: ManifestRow, blocks: Iterator[torch.Tensor]) -> None:
        """Encode the audio of ``blocks`` ([C, n] each) in streaming chunks of whole frames (streaming ==
        offline); the codes of each chunk are kept as uint16, so what a file holds in memory is its codes."""
        frame_size = self.model.frame_size
        codes, latents, total = [], [], 0
        pending = torch.zeros(self.model.channels, 0)
        blocks = _timed(blocks, self.timings)
        try:
            with self.runtime.streaming():
                for block in blocks:
                    total += block.shape[-1]
                    pending = block if not pending.shape[-1] else torch.cat([pending, block], dim=-1)
                    while pending.shape[-1] >= self.chunk:
                        c, z = self.encode(pending[None, :, :self.chunk])
                        codes.append(c[0])
                        latents.append(None if z is None else z[0])
                        pending = pending[:, self.chunk:]
                if pending.shape[-1]:
                    pad = -pending.shape[-1] % frame_size  # as offline encode pads the last frame
                    c, z = self.encode(torch.nn.functional.pad(pending, (0, pad))[None])
                    codes.append(c[0])
                    latents.append(None if z is None else z[0])
            _check_duration(total, self.model.sample_rate, self.options.min_duration)
        except Exception as e:
            self.fail(item, _reason(e, item.path))
            return
        self.streamed += 1
        self.emit(item, total, np.concatenate(codes, axis=-1),
                  None if not self.options.latents else np.concatenate(latents, axis=-1))


# Blocks read from a file at a time when it is streamed (at most: the chunk when shorter), so a file at a high rate
# or with many channels holds little more than the chunk.
_BLOCK_SECONDS = 10.0


def _timed(blocks: Iterator[torch.Tensor], timings: dict[str, float]) -> Iterator[torch.Tensor]:
    """``blocks``, with the time spent producing them added to ``timings["read"]``."""
    while True:
        start = time.perf_counter()
        try:
            block = next(blocks)
        except StopIteration:
            return
        finally:
            timings["read"] += time.perf_counter() - start
        yield block


def tokenize_dataset(inputs: list[ManifestRow], out_dir: str | os.PathLike, codec, options: TokenizeOptions,
                     *, model_source: str = "", device: str | torch.device | None = None) -> TokenizeSummary:
    """Tokenize this partition of ``inputs`` into ``out_dir`` (see the module docstring); resumable.

    ``codec``: a :class:`~codec12.Codec` (PyTorch, on ``device``: by default where its weights are) or an
    :class:`~codec12.export.runtime.OnnxCodec` (onnxruntime; ``device`` then only says whether its activations
    are in a GPU's memory). The dataset's metadata records which (``runtime``), and a dataset is continued only
    with the runtime that began it.

    Inputs already in a shard of ``out_dir`` (or failed in an earlier run, unless ``retry_failed``) are
    skipped. Failures are appended to ``errors.jsonl`` and never stop the run. Raises ``ValueError`` when
    ``out_dir`` holds a dataset made by another model or with other settings.
    """
    start = time.monotonic()
    out_dir = Path(out_dir)
    if isinstance(codec, OnnxCodec):
        codec.check_fit_for_tokenize()  # a float16/int8 export whose codes were not shown to match float32's
        runtime = _OnnxRuntime(codec)
        device = torch.device(device) if device is not None else torch.device("cpu")
        config = onnx_config(codec)
    else:
        device = torch.device(device) if device is not None else next(codec.parameters()).device
        runtime = _TorchRuntime(codec, device)
        config = codec.config
    k = codec.num_codebooks if options.num_codebooks is None else options.num_codebooks
    if not 1 <= k <= codec.num_codebooks:
        raise ValueError(f"num_codebooks must be in [1, {codec.num_codebooks}] for this model, got {k}")
    if max(codec.codebook_sizes[:k]) > 65536:
        raise ValueError(f"codebooks of {max(codec.codebook_sizes[:k])} entries do not fit uint16 shards")
    plan = _plan(config, runtime.name, device, options)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = dataset_meta(codec, model_source=model_source, num_codebooks=k, latents=options.latents,
                        num_shards=options.num_shards)
    ensure_meta(out_dir, meta, config)
    mine = partition(inputs, options.num_shards, options.shard_index)
    prefix = shard_prefix(options.num_shards, options.shard_index)
    errors = ErrorLog(out_dir / ERRORS_NAME)
    with partition_lock(out_dir, prefix):
        done = completed_ids(out_dir)
        skip = done if options.retry_failed else done | failed_ids(out_dir)
        pending = [x for x in mine if x.id not in skip]
        done_before = sum(x.id in done for x in mine)
        writer = ShardWriter(out_dir, prefix, shard_size=options.shard_size, latents=options.latents, metadata=meta,
                             max_bytes=plan.writer_bytes)
        job = _Tokenizer(runtime, codec, options, plan, k, writer, errors)
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
            flush_start = time.perf_counter()
            writer.flush()  # rows already encoded are kept even when the run stops on an exception
            job.timings["write"] += time.perf_counter() - flush_start
            errors.close()
    return TokenizeSummary(total=len(mine), ok=job.ok, failed=errors.count, skipped=len(mine) - len(pending),
                           done_before=done_before, audio_seconds=job.audio_seconds,
                           elapsed_s=time.monotonic() - start, shards=writer.written, streamed=job.streamed,
                           plan=plan, timings=dict(job.timings))


def _plan(config, runtime: str, device: torch.device, options: TokenizeOptions) -> WorkPlan:
    """The run's :class:`~codec12.data.plan.WorkPlan`, from the memory budget left when it starts."""
    budget = work_budget(options.max_memory_mb)
    activations = None
    if device.type == "cuda":  # activations in the GPU's memory, the audio in the host's
        activations = GPU_SHARE * torch.cuda.mem_get_info(device)[0]
    plan = plan_work(config, budget, runtime=runtime, device_type=device.type, activation_bytes=activations,
                     max_batch_seconds=options.max_batch_seconds, chunk_seconds=options.chunk_seconds,
                     loading_files=1 + _PREFETCH * options.workers)
    log.info("memory budget %.0f MiB over the %.0f MiB held at the start: batches of up to %.1f s of audio; longer "
             "files in streaming chunks of %.2f s, read block by block past %.0f MiB", budget / 2**20,
             resident_bytes() / 2**20, plan.batch_seconds, plan.chunk_seconds, plan.load_bytes / 2**20)
    return plan


_PREFETCH = 2  # files each worker process reads ahead


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
    model = job.model
    dataset = _LoadDataset(pending, model.sample_rate, model.channels, job.plan.load_bytes, options.long_file_seconds,
                           options.min_duration)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=None, shuffle=False, num_workers=options.workers, collate_fn=_identity,
        worker_init_fn=_worker_init if options.workers else None,
        prefetch_factor=_PREFETCH if options.workers else None)
    # Loaded files wait in a pool until enough are there to batch them by length; the pool is bounded in files
    # and in bytes (the plan's share of the budget), so memory does not grow with the dataset.
    pool: list[tuple[ManifestRow, torch.Tensor]] = []
    pool_bytes = 0
    from tqdm import tqdm

    job.bar = tqdm(total=len(pending), unit="file", disable=not options.progress, dynamic_ncols=True,
                   smoothing=0.05)
    last_log = time.monotonic()
    received = 0
    try:
        iterator = iter(loader)
        while True:
            read_start = time.perf_counter()
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
            finally:
                job.timings["read"] += time.perf_counter() - read_start
            received += 1
            entry = pending[item.index]
            if item.error is not None:
                job.fail(entry, item.error)
            elif item.long:
                job.encode_long(entry)
            else:
                pool.append((entry, item.wav))
                pool_bytes += item.wav.numel() * item.wav.element_size()
                if len(pool) >= 8 * options.batch_size or pool_bytes >= job.plan.pool_bytes:
                    job.encode_pool(pool)
                    pool_bytes = 0
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
