"""Tokenization throughput (x real time) and peak memory of `codec12 tokenize` on this machine.

    .venv/bin/python benchmarks/tokenize_speed.py                      # throughput + long-file memory
    .venv/bin/python benchmarks/tokenize_speed.py --long ''            # throughput only
    .venv/bin/python benchmarks/tokenize_speed.py --presets '' --long c12-tiny-16k:60   # 1 hour, full tiny model

Models have random weights (speed does not depend on them), saved to a temporary directory. Throughput:
``--files`` speech-like files of ``--seconds`` each, half at the model rate and half at 44.1 kHz (so the
resampling in the DataLoader worker is part of it), tokenized by ``tokenize_dataset`` in this process.
Memory: ``codec12 tokenize`` run as a child process on one generated file per ``--long`` entry (written block by
block, never held in memory); the peak RSS of each child is printed. Files longer than 60 s are streamed, so
their peak should not grow with their length.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from codec12 import Codec, CodecConfig
from codec12.data import TokenizeOptions, discover_inputs, tokenize_dataset


def speechlike(seconds: float, sample_rate: int, seed: int = 0, offset: float = 0.0) -> np.ndarray:
    """Speech-like audio [T]: a gliding harmonic tone with a syllable envelope and a little noise."""
    rng = np.random.default_rng(seed)
    t = offset + np.arange(int(round(seconds * sample_rate))) / sample_rate
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t + seed)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 8))
    env = 0.5 * (1 + np.sin(2 * np.pi * 3.0 * t)) ** 2
    return (0.15 * voice * env + 0.01 * rng.standard_normal(t.shape)).astype(np.float32)


def write_long(path: Path, hours: float, sample_rate: int) -> None:
    """Write ``hours`` of audio in one-minute blocks (the file is never whole in memory)."""
    total = int(hours * 3600 * sample_rate)
    with sf.SoundFile(str(path), "w", samplerate=sample_rate, channels=1, subtype="PCM_16") as f:
        for i, start in enumerate(range(0, total, 60 * sample_rate)):
            n = min(60 * sample_rate, total - start)
            f.write(speechlike(n / sample_rate, sample_rate, seed=i))


def micro_config() -> CodecConfig:
    """A codec of a few thousand parameters (the test suite's size): the memory of a long file's run then
    shows what the tokenizer itself holds (blocks, chunks, codes), with little model time."""
    from codec12 import QuantizerConfig, SEANetConfig, TransformerConfig

    return CodecConfig(
        name="micro-16k", sample_rate=16000,
        seanet=SEANetConfig(dimension=32, n_filters=4, ratios=(8, 5, 4, 4)),
        transformer=TransformerConfig(d_model=32, num_heads=2, num_layers=2, dim_feedforward=64, context=7),
        latent_dim=32, quantizer=QuantizerConfig(semantic_codebook_size=64, semantic_dim=8, num_acoustic=3,
                                                 acoustic_codebook_size=32, acoustic_dim=8))


def config_of(preset: str) -> CodecConfig:
    return micro_config() if preset == "micro" else CodecConfig.from_preset(preset)


def save_random_model(preset: str, directory: Path) -> Path:
    torch.manual_seed(0)
    Codec.from_config(config_of(preset)).eval().save_pretrained(directory)
    return directory


def throughput(preset: str, files: int, seconds: float, workers: int, batch_size: int, work: Path) -> None:
    model_dir = save_random_model(preset, work / f"model-{preset}")
    codec = Codec.from_pretrained(model_dir)
    data = work / f"data-{preset}"
    data.mkdir()
    for i in range(files):
        rate = codec.sample_rate if i % 2 == 0 else 44100
        sf.write(str(data / f"utt{i:04d}.wav"), speechlike(seconds * (0.8 + 0.4 * i / max(1, files - 1)), rate,
                                                           seed=i), rate)
    inputs = discover_inputs(data)
    options = TokenizeOptions(workers=workers, batch_size=batch_size, progress=False)
    # Warm-up (thread pools, allocator) on a copy of two files, not counted.
    tokenize_dataset(inputs[:2], work / f"warm-{preset}", codec, options)
    summary = tokenize_dataset(inputs, work / f"out-{preset}", codec, options)
    print(f"{preset:14s} {summary.ok:4d} files, {summary.audio_seconds:7.1f} s of audio in {summary.elapsed_s:6.1f} s"
          f" -> {summary.real_time_factor:6.1f}x real time, {summary.ok / summary.elapsed_s:6.2f} files/s "
          f"({torch.get_num_threads()} threads, workers={workers}, batch={batch_size})", flush=True)


# The child reports its own high-water mark: ru_maxrss from wait4 would also count the copy of this (large)
# process that existed between fork and exec.
_CHILD = """
import sys
from codec12.cli import main
rc = main(sys.argv[1:])
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print("VMHWM_KB", int(hwm.split()[1]), file=sys.stderr)
sys.exit(rc)
"""


def peak_rss(args: list[str]) -> tuple[float, float, int]:
    """Run ``codec12 tokenize ARGS`` in a child process; (peak RSS in MiB, wall seconds, exit status)."""
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", _CHILD, "tokenize", *args], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    if proc.returncode:
        print(proc.stderr[-2000:], file=sys.stderr)
    kb = [int(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("VMHWM_KB")]
    return (kb[0] / 1024 if kb else float("nan")), time.monotonic() - start, proc.returncode


def long_file_memory(preset: str, minutes: float, work: Path) -> None:
    model_dir = work / f"model-long-{preset}"
    if not model_dir.exists():
        save_random_model(preset, model_dir)
    path = work / f"long-{minutes:g}min.wav"
    write_long(path, minutes / 60, config_of(preset).sample_rate)
    rss, wall, rc = peak_rss([str(path), "--out", str(work / f"out-long-{preset}-{minutes:g}"), "--model",
                              str(model_dir), "--quiet", "--workers", "0", "--device", "cpu"])
    print(f"{preset:14s} one {minutes:5g}-minute file: peak RSS {rss:6.0f} MiB, {wall:7.1f} s "
          f"({minutes * 60 / wall:5.1f}x real time incl. start-up), exit {rc}", flush=True)
    path.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="c12-tiny-16k,c12-mimi-24k", help="'' skips the throughput runs")
    parser.add_argument("--files", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=8.0, help="mean file length")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--long", default="micro:1,micro:60,c12-tiny-16k:1.5,c12-tiny-16k:10",
                        help="PRESET:MINUTES,... single-file runs whose peak RSS is measured ('' skips them; "
                             "'micro' is a test-sized codec); files over 60 s take the streaming path")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"cpu cores: {os.cpu_count()}, torch threads: {torch.get_num_threads()}, "
          f"load average: {os.getloadavg()[0]:.1f} (other work on the machine slows these numbers)", flush=True)
    with tempfile.TemporaryDirectory(prefix="c12-tokbench-") as tmp:
        work = Path(tmp)
        for preset in filter(None, args.presets.split(",")):
            throughput(preset, args.files, args.seconds, args.workers, args.batch_size, work)
        for entry in filter(None, args.long.split(",")):
            preset, minutes = entry.rsplit(":", 1)
            long_file_memory(preset, float(minutes), work)


if __name__ == "__main__":
    main()
