"""Tokenize's throughput against the model's own on the same files, and where tokenize's time goes.

    .venv/bin/python benchmarks/tokenize_speed.py                       # c12-tiny-16k, c12-mimi-24k; 16, 44.1 kHz
    .venv/bin/python benchmarks/tokenize_speed.py --runtime onnx        # through the ONNX export
    .venv/bin/python benchmarks/tokenize_speed.py --presets micro --files 4 --seconds 2    # a quick check

For each preset and input rate, ``--files`` speech-like files (``--seconds`` long on average, lengths spread by
+-20 %) are written at that rate. The model's throughput: ``Codec.encode`` (``OnnxCodec.encode`` with
``--runtime onnx``) on each file alone, read and resampled beforehand and not timed: what the model does.
Tokenize's: ``tokenize_dataset`` on the same files from disk: reading and resampling (in ``--workers``
processes), batching, encoding, writing Parquet. The ratio of the two is printed with where tokenize's wall time
went: the main process reading audio or waiting for the workers, encoding, writing shards, and the rest. The
model is timed before and after tokenize and the mean taken; other work on the machine still moves the numbers,
so take them on an idle machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tokenize_common import save_random_model, speechlike  # noqa: E402

from codec12 import Codec, load_audio  # noqa: E402
from codec12.data import TokenizeOptions, discover_inputs, tokenize_dataset  # noqa: E402
from codec12.export import OnnxCodec, export_onnx  # noqa: E402


def write_files(directory: Path, files: int, seconds: float, rate: int) -> None:
    directory.mkdir(parents=True)
    for i in range(files):
        length = seconds * (0.8 + 0.4 * i / max(1, files - 1))
        sf.write(str(directory / f"utt{i:04d}.wav"), speechlike(length, rate, seed=i), rate)


def model_seconds(model, wavs: list) -> float:
    """Wall time of encoding each clip alone."""
    start = time.perf_counter()
    for wav in wavs:
        model.encode(wav[None])
    return time.perf_counter() - start


def run(preset: str, rate: int, args: argparse.Namespace, work: Path) -> None:
    codec = Codec.from_pretrained(save_random_model(preset, work / f"model-{preset}"))
    if args.runtime == "onnx":
        export = work / f"onnx-{preset}"
        if not export.exists():
            export_onnx(codec, export)
        model = OnnxCodec(export, num_threads=torch.get_num_threads())
    else:
        model = codec
    data = work / f"data-{preset}-{rate}"
    write_files(data, args.files, args.seconds, rate)
    inputs = discover_inputs(data)
    wavs = [load_audio(x.path, codec.sample_rate, codec.channels) for x in inputs]
    if args.runtime == "onnx":
        wavs = [w.numpy() for w in wavs]
    options = TokenizeOptions(workers=args.workers, batch_size=args.batch_size, progress=False,
                              max_memory_mb=args.max_memory_mb)
    # Warm-up (thread pools, allocator, graphs) on two files, not counted.
    tokenize_dataset(inputs[:2], work / f"warm-{preset}-{rate}", model, options)
    model_seconds(model, wavs[:2])
    before = model_seconds(model, wavs)
    summary = tokenize_dataset(inputs, work / f"out-{preset}-{rate}", model, options)
    after = model_seconds(model, wavs)
    audio = summary.audio_seconds
    model_rtf, tok_rtf = audio / ((before + after) / 2), summary.real_time_factor
    t = summary.timings
    other = summary.elapsed_s - sum(t.values())
    share = "  ".join(f"{name} {100 * v / summary.elapsed_s:4.1f}%" for name, v in [*t.items(), ("other", other)])
    print(f"{preset:13s} {rate / 1000:5.1f} kHz {audio:7.1f} s audio | model {model_rtf:6.1f}x "
          f"(before {audio / before:.1f}, after {audio / after:.1f}) | tokenize {tok_rtf:6.1f}x | "
          f"ratio {tok_rtf / model_rtf:5.3f} | {share} | batches <= {summary.plan.batch_seconds:.1f} s, "
          f"{summary.streamed} files streamed", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="c12-tiny-16k,c12-mimi-24k", help="comma-separated ('micro': test size)")
    parser.add_argument("--rates", default="16000,44100", help="sample rates of the input files")
    parser.add_argument("--runtime", choices=("torch", "onnx"), default="torch")
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=8.0, help="mean file length")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-memory-mb", type=float, default=None)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"cpu cores: {os.cpu_count()}, torch threads: {torch.get_num_threads()}, runtime: {args.runtime}, "
          f"workers: {args.workers}, load average: {os.getloadavg()[0]:.1f} (other work on the machine moves these "
          f"numbers)", flush=True)
    with tempfile.TemporaryDirectory(prefix="c12-tokspeed-") as tmp:
        for preset in filter(None, args.presets.split(",")):
            for rate in (int(r) for r in args.rates.split(",")):
                run(preset, rate, args, Path(tmp))


if __name__ == "__main__":
    main()
