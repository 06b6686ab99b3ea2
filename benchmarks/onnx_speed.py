"""onnxruntime vs PyTorch eager speed: offline encode/decode (seconds per second of audio) and streaming
per-frame latency (p50/p99), on random-weight presets (speed does not depend on the weights).

    .venv/bin/python benchmarks/onnx_speed.py [--presets c12-mimi-24k c12-tiny-16k] [--seconds 10]
        [--repeats 3] [--frames 50] [--threads 2] [--no-write]

Both sides run the inference form of the model (weight norm folded) in float32 on CPU with the same number
of threads. Prints a markdown table and writes it into docs/benchmarks.md (unless ``--no-write``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import machine_line, update_docs  # noqa: E402
from _timing import best_of, speech_like  # noqa: E402

from codec12 import Codec, CodecConfig  # noqa: E402
from codec12.export import OnnxCodec, export_onnx  # noqa: E402


def _latencies(step, n: int) -> tuple[float, float]:
    times = []
    for i in range(n):
        t = time.perf_counter()
        step(i)
        times.append(time.perf_counter() - t)
    ms = np.asarray(times[2:]) * 1e3  # the first calls allocate
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def bench(preset: str, seconds: float, repeats: int, frames: int, threads: int, work: Path) -> list[dict]:
    torch.manual_seed(0)
    codec = Codec.from_config(CodecConfig.from_preset(preset)).eval()
    export_onnx(codec, work / preset)
    codec.fold_weight_norm()
    oc = OnnxCodec(work / preset, num_threads=threads)
    wav = speech_like(seconds, codec.sample_rate, codec.channels)
    wav_t = torch.from_numpy(wav)
    codes = oc.encode(wav)
    codes_t = torch.from_numpy(codes)
    fs = codec.frame_size
    stream_wav = speech_like(frames / codec.frame_rate + 1, codec.sample_rate, codec.channels)
    rows = []
    for runtime, enc, dec in [
        ("pytorch eager", lambda: codec.encode(wav_t), lambda: codec.decode(codes_t)),
        ("onnxruntime", lambda: oc.encode(wav), lambda: oc.decode(codes)),
    ]:
        enc(), dec()  # warm up
        row = {"model": preset, "runtime": runtime, "encode": best_of(enc, repeats) / seconds,
               "decode": best_of(dec, repeats) / seconds}
        model = codec if runtime == "pytorch eager" else oc
        convert = torch.from_numpy if model is codec else np.asarray
        chunks = [convert(np.ascontiguousarray(stream_wav[..., i * fs:(i + 1) * fs])) for i in range(frames)]
        steps = [convert(np.ascontiguousarray(codes[..., i % codes.shape[-1]][..., None])) for i in range(frames)]
        with model.streaming(1):
            row["enc_p50"], row["enc_p99"] = _latencies(lambda i: model.encode(chunks[i]), frames)  # noqa: B023
        with model.streaming(1):
            row["dec_p50"], row["dec_p99"] = _latencies(lambda i: model.decode(steps[i]), frames)  # noqa: B023
        rows.append(row)
        print(f"  {preset} {runtime}: done", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["c12-mimi-24k", "c12-tiny-16k"])
    parser.add_argument("--seconds", type=float, default=10.0, help="audio length for offline timing")
    parser.add_argument("--repeats", type=int, default=3, help="offline runs; the best is reported")
    parser.add_argument("--frames", type=int, default=50, help="frames streamed for the latency percentiles")
    parser.add_argument("--threads", type=int, default=2, help="threads for both runtimes")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    machine = machine_line(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for preset in args.presets:
            rows += bench(preset, args.seconds, args.repeats, args.frames, args.threads, Path(work))
    lines = ["| model | runtime | encode s/s | decode s/s | stream enc p50 | p99 | stream dec p50 | p99 |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['runtime']} | {r['encode']:.3f} | {r['decode']:.3f} | {r['enc_p50']:.1f} | "
                     f"{r['enc_p99']:.1f} | {r['dec_p50']:.1f} | {r['dec_p99']:.1f} |")
    cmd = "python benchmarks/onnx_speed.py " + " ".join(sys.argv[1:])
    text = (f"{machine}  \nCommand: `{cmd.strip()}`  \nDate: {datetime.now(UTC):%Y-%m-%d %H:%M UTC}; "
            f"random weights (speed does not depend on them), weight norm folded on both sides, float32; offline: "
            f"{args.seconds:g} s of audio, best of {args.repeats}, seconds per second of audio (lower is better); "
            f"streaming: one 80 ms frame per call over {args.frames} frames, ms.\n\n" + "\n".join(lines))
    print(text)
    if not args.no_write:
        update_docs("onnx_speed", "onnxruntime vs PyTorch eager (CPU)", text)


if __name__ == "__main__":
    main()
