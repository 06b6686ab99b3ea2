"""How much audio ``codec12 tokenize`` works on at once: the batch, the files it streams and the streaming chunk,
chosen from a memory budget and the model's size, so that memory stays flat in file length at any model size.

**Memory of encoding.** Encoding holds a few activations of the model's widest layer at a time: for SEANet the
first stage (``n_filters`` channels at the full sample rate: an input of T samples makes [n_filters, T] tensors),
for Voxtral the first transformer stage (``hidden_dim`` channels at ``sample_rate / patch_size``). The estimate
is :data:`CONV_FACTOR` such tensors per second of audio (measured peaks, with the allocator's slack, were 4.2 to
5.3 of them on ``c12-tiny-16k`` and ``c12-mimi-24k``, PyTorch and onnxruntime, offline and streaming), plus one
layer's attention scores. Those depend on how the attention runs: PyTorch offline attends in blocks (memory
bounded by the context), the exported offline graph attends over the whole input (quadratic in its length), and
streaming attends from the chunk to itself and the cached context. The estimate is computed from the config, not
measured at start: it is the same on every machine and runtime, costs nothing, and cannot be skewed by what the
allocator or onnxruntime's arena already hold.

**The budget** (:func:`plan_work`) is the memory the run may add to what the process holds when it starts
(libraries, model weights): half of it for the model's activations, a quarter for audio in memory (the pool of
loaded files waiting to be batched, files read whole), a tenth for rows waiting to be written to a shard; the
rest is slack for the allocator. On a GPU the activations are in GPU memory and get half of what it has free.

**Speed on a CPU.** Throughput falls when one call's activations outgrow the caches: ``c12-tiny-16k`` encoded
18x real time in calls of 4 to 16 s of audio but 10x in calls of 64 s (one thread), ``c12-mimi-24k`` 3.9x at 4 s
and 2.5x at 16 s and more. The best calls were those whose widest tensor was about :data:`CPU_CALL_BYTES`, so on
a CPU batches are cut to that much audio and longer files are encoded in streaming chunks of it (streaming ==
offline); on a GPU, large batches pay and only the budget bounds them.
"""

from __future__ import annotations

import math
import os
import resource
import sys
from dataclasses import dataclass

from codec12.config import CodecConfig
from codec12.voxtral.transformer import BLOCK

FLOAT_BYTES = 4
CONV_FACTOR = 5.0  # widest-layer tensors alive at the peak of encoding (measured 4.2 to 5.3, see above)
ATTENTION_FACTOR = 3.0  # one layer's [heads, queries, keys] float tensors alive at once: scores, weights, mask
CPU_CALL_BYTES = 24 << 20  # a CPU call's widest tensor at the measured best throughput (see above)
ACTIVATION_SHARE = 0.5
AUDIO_SHARE = 0.25
WRITER_SHARE = 0.1
GPU_SHARE = 0.5  # of the GPU's free memory, for activations
DEFAULT_MEMORY_MB = 1536  # the default peak the run aims for ...
MIN_WORK_MB = 512  # ... or what the process holds at the start plus this, if more
GPU_BATCH_SECONDS = 160.0  # the padded audio of a batch on a GPU when the budget allows it
# Loading a file whole holds its samples at the file's rate twice (the blocks read, then joined) and once
# resampled at the model's.
_LOAD_COPIES = 2


@dataclass(frozen=True)
class AttentionStack:
    """One transformer stack of the encoder: ``steps_per_second`` of audio, ``heads``, ``context`` (past steps
    each step attends to) and ``block`` (the queries per block when PyTorch attends offline in blocks)."""

    steps_per_second: float
    heads: int
    context: int
    block: int


@dataclass(frozen=True)
class EncoderFootprint:
    """What encoding costs in memory, per second of audio of one batch item: ``widest_bytes_per_second``, the
    largest activation tensor; ``attention``, the encoder's transformer stacks."""

    widest_bytes_per_second: float
    attention: tuple[AttentionStack, ...]

    def encode_bytes(self, seconds: float, attention: str) -> float:
        """Estimated peak bytes of encoding ``seconds`` of audio (a batch: the sum of its padded items).

        ``attention``: ``"blocked"`` (PyTorch offline), ``"full"`` (an exported offline graph: every query
        against every key) or ``"streaming"`` (a chunk against itself and the cached context)."""
        if attention not in ("blocked", "full", "streaming"):
            raise ValueError(f"attention must be 'blocked', 'full' or 'streaming', got {attention!r}")
        scores = 0.0
        for stack in self.attention:
            q = math.ceil(seconds * stack.steps_per_second)
            if attention == "full":
                keys = q
            elif attention == "streaming":
                keys = q + stack.context
            elif q > 2 * stack.block:
                q, keys = stack.block, stack.block + stack.context
            else:
                keys = q
            scores = max(scores, stack.heads * q * keys * FLOAT_BYTES * ATTENTION_FACTOR)
        return CONV_FACTOR * self.widest_bytes_per_second * seconds + scores


def encoder_footprint(config: CodecConfig) -> EncoderFootprint:
    """The encoder's widest activation per second of audio and its attention stacks, from ``config``."""
    sr, channels = config.sample_rate, config.channels
    widest = channels * sr  # the input itself
    stacks = []
    v = config.voxtral
    if v is not None:
        rate = sr / v.patch_size
        for layers, stride, window in zip(v.encoder_layers, v.encoder_strides, v.encoder_windows):
            widest = max(widest, max(v.dim, v.hidden_dim if layers else 0) * rate)
            if layers:
                stacks.append(AttentionStack(rate, v.num_heads, window, BLOCK))
            rate /= stride
    else:
        s, t = config.seanet, config.transformer
        width, rate = s.n_filters, float(sr)
        widest = max(widest, width * rate)
        for ratio in reversed(s.ratios):
            width, rate = width * 2, rate / ratio
            widest = max(widest, width * rate)
        rate = sr / s.hop_length
        widest = max(widest, max(s.dimension, t.dim_feedforward if t.num_layers else 0) * rate)
        if t.num_layers:
            stacks.append(AttentionStack(rate, t.num_heads, t.context, t.context))
    return EncoderFootprint(widest * FLOAT_BYTES, tuple(stacks))


@dataclass(frozen=True)
class WorkPlan:
    """How much audio a tokenize run works on at once.

    batch_seconds: padded audio per batch (the sum over its files).
    chunk_seconds: the streaming chunk, whole frames: files longer than ``batch_seconds`` are encoded chunk by
        chunk, from memory or, past ``load_bytes``, read from the file block by block.
    load_bytes: a file whose whole-file reading (:func:`load_cost`) would take more is streamed from the file.
    pool_bytes: audio loaded and waiting to be batched.
    writer_bytes: rows held before a shard is written.
    """

    batch_seconds: float
    chunk_seconds: float
    load_bytes: float
    pool_bytes: float
    writer_bytes: float


def load_cost(duration_s: float, file_rate: int, file_channels: int, model_rate: int, model_channels: int) -> float:
    """Bytes that reading a file whole holds at once: its samples as read and joined, and resampled."""
    return duration_s * FLOAT_BYTES * (_LOAD_COPIES * file_rate * file_channels + model_rate * model_channels)


def plan_work(config: CodecConfig, budget_bytes: float, *, runtime: str = "torch", device_type: str = "cpu",
              activation_bytes: float | None = None, max_batch_seconds: float | None = None,
              chunk_seconds: float | None = None, loading_files: int = 2) -> WorkPlan:
    """The plan for a model of ``config`` given ``budget_bytes`` of working memory (see the module docstring).

    runtime: ``"torch"`` or ``"onnx"`` (whose offline graph attends over the whole input).
    device_type: ``"cpu"`` cuts batches and chunks to the size that encodes fastest there (:data:`CPU_CALL_BYTES`).
    activation_bytes: where the activations live when not in the budget (a GPU's memory); None: the budget's share.
    max_batch_seconds, chunk_seconds: upper bounds the user set (None: none).
    loading_files: files that may be loaded whole at once besides the pool (the one being read, those in flight
        from worker processes).
    """
    if budget_bytes <= 0:
        raise ValueError(f"the memory budget must be positive, got {budget_bytes} bytes")
    footprint = encoder_footprint(config)
    frame_s = 1 / config.frame_rate
    audio_per_s = config.sample_rate * config.channels * FLOAT_BYTES
    acts = ACTIVATION_SHARE * budget_bytes if activation_bytes is None else activation_bytes
    audio = AUDIO_SHARE * budget_bytes
    offline = "full" if runtime == "onnx" else "blocked"
    # A batch also holds its padded audio (twice: the files and the stacked tensor); a chunk its slice and what is
    # pending of the file.
    batch = _largest_seconds(lambda s: footprint.encode_bytes(s, offline) + 2 * audio_per_s * s, acts, frame_s)
    chunk = _largest_seconds(lambda s: footprint.encode_bytes(s, "streaming") + 3 * audio_per_s * s, acts, frame_s)
    if device_type == "cpu":
        fast = max(frame_s, CPU_CALL_BYTES / footprint.widest_bytes_per_second)
        batch, chunk = min(batch, fast), min(chunk, fast)
    else:
        batch = min(batch, GPU_BATCH_SECONDS)
    if max_batch_seconds is not None:
        batch = min(batch, max_batch_seconds)
    chunk = min(chunk, batch) if chunk_seconds is None else min(chunk, chunk_seconds)
    chunk = max(1, math.floor(chunk / frame_s + 1e-9)) * frame_s
    return WorkPlan(batch_seconds=max(batch, frame_s), chunk_seconds=chunk,
                    load_bytes=audio / (2 + loading_files), pool_bytes=audio, writer_bytes=WRITER_SHARE * budget_bytes)


def _largest_seconds(cost, limit: float, frame_s: float) -> float:
    """The most whole frames of audio (at least one) whose ``cost(seconds)`` fits ``limit`` (cost increases)."""
    lo, hi = 1, 1
    while cost(2 * hi * frame_s) <= limit and hi < 1 << 24:
        hi *= 2
    hi *= 2  # cost(hi) > limit, or hi is past any real file
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if cost(mid * frame_s) <= limit:
            lo = mid
        else:
            hi = mid
    return lo * frame_s


def resident_bytes() -> int:
    """The memory this process holds now (its resident set); where that cannot be read, its peak so far."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


def work_budget(max_memory_mb: float | None) -> float:
    """Bytes of working memory for a run that aims to peak at ``max_memory_mb`` MiB, counting what the process
    holds now. None: :data:`DEFAULT_MEMORY_MB`, or what it holds plus :data:`MIN_WORK_MB` if that is more.
    Raises ``ValueError`` when the process already holds (nearly) all of an explicit budget."""
    held = resident_bytes()
    if max_memory_mb is None:
        return max(DEFAULT_MEMORY_MB * 2**20 - held, MIN_WORK_MB * 2**20)
    work = max_memory_mb * 2**20 - held
    if work < 16 * 2**20:
        raise ValueError(f"max_memory_mb={max_memory_mb:g}: the process already holds {held / 2**20:.0f} MiB "
                         f"(libraries and the model) before any audio; allow at least "
                         f"{math.ceil(held / 2**20) + 64} MiB")
    return work
