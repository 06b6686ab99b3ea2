"""Speed of codec12 presets side by side with transformers' Mimi and EnCodec, in one run on this CPU.

    .venv/bin/python benchmarks/speed.py [--seconds 10] [--repeats 3] [--frames 40] [--long-seconds 60]
        [--threads 2] [--systems c12-tiny-16k,c12-tiny-16k+istft,...] [--onnx] [--no-write]

``PRESET+istft`` is the preset with the inverse-STFT decoder (``CodecConfig.istft``) in place of the SEANet one;
``PRESET+harmonic`` the same with its harmonic branch (shared envelope), the bundled model's architecture.

Tables (printed, and written into docs/benchmarks.md between this script's markers):
1. offline encode / decode in seconds of compute per second of audio (best of N; < 1 is faster than real time),
   PyTorch eager, float32, random weights (speed does not depend on them). Mimi runs with the same topology as
   c12-mimi-24k (``MimiConfig()``), both at 8 codebooks; the other presets use all their codebooks.
   EnCodec with ``EncodecConfig()`` (24 kHz) at 1.5 kbps.
   ``--onnx`` adds onnxruntime columns for the codec12 presets when ``codec12.export.onnx`` is installed.
2. streaming: per-frame (80 ms) latency p50/p99 of encode and of decode inside ``codec.streaming(1)``.
3. peak memory: resident set size of a fresh process that encodes and decodes a ``--long-seconds`` file.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import machine_line, update_docs  # noqa: E402
from _timing import best_of  # noqa: E402

PRESETS = ("c12-tiny-16k", "c12-mimi-24k", "c12-fsq-24k")


def build(name: str):
    """(model, sample_rate, encode(wav [1,1,T]) -> codes, decode(codes) -> wav, streaming-capable codec or None)."""
    torch.manual_seed(0)
    if name.startswith("c12-"):
        from codec12 import Codec, CodecConfig, ISTFTDecoderConfig

        preset, _, variant = name.partition("+")  # "PRESET+istft": the preset with the inverse-STFT decoder
        config = CodecConfig.from_preset(preset)
        if variant == "istft":
            config = config.replace(istft=ISTFTDecoderConfig())
        elif variant == "harmonic":
            config = config.replace(istft=ISTFTDecoderConfig(harmonic=True, harmonic_envelope="shared"))
        elif variant:
            raise ValueError(f"unknown variant {variant!r} of {preset} (known: istft, harmonic)")
        codec = Codec.from_config(config).fold_weight_norm().eval()
        # Mimi's topology is compared with transformers' Mimi at the same 8 codebooks; the others use all.
        k = 8 if name == "c12-mimi-24k" else None
        return codec, codec.sample_rate, lambda w: codec.encode(w, k), codec.decode, codec
    if name == "mimi-8cb":
        from transformers import MimiConfig, MimiModel

        model = fold_parametrizations(MimiModel(MimiConfig())).eval()
        return (model, 24000, lambda w: model.encode(w, num_quantizers=8).audio_codes,
                lambda c: model.decode(c).audio_values, None)
    if name == "encodec-24k":
        from transformers import EncodecConfig, EncodecModel

        model = fold_parametrizations(EncodecModel(EncodecConfig())).eval()
        return (model, 24000, lambda w: model.encode(w, bandwidth=1.5).audio_codes,
                lambda c: model.decode(c, [None]).audio_values, None)
    raise ValueError(f"unknown system {name!r}")


def fold_parametrizations(model: torch.nn.Module) -> torch.nn.Module:
    """Bake weight-norm parametrizations into plain weights: the inference form (codec12 folds its own too)."""
    from torch.nn.utils import parametrize

    for module in model.modules():
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    return model


def test_audio(seconds: float, sample_rate: int) -> torch.Tensor:
    rng = np.random.default_rng(0)
    return torch.from_numpy(0.1 * rng.standard_normal((1, 1, int(seconds * sample_rate))).astype(np.float32))


def onnx_speed(codec, wav: torch.Tensor, repeats: int) -> tuple[float, float] | str:
    """(encode, decode) seconds for ``wav`` through the ONNX export, or why it could not run."""
    if importlib.util.find_spec("codec12.export.onnx") is None:
        return "codec12.export.onnx not installed"
    try:
        from codec12.export import OnnxCodec, export_onnx

        with tempfile.TemporaryDirectory() as tmp:
            export_onnx(codec, Path(tmp) / "m", check=False)
            oc = OnnxCodec(Path(tmp) / "m", num_threads=torch.get_num_threads())
            x = wav.numpy()
            codes = oc.encode(x)
            oc.decode(codes)
            return best_of(lambda: oc.encode(x), repeats), best_of(lambda: oc.decode(codes), repeats)
    except Exception as e:  # a benchmark column, not a test: report and go on
        return f"{type(e).__name__}: {e}"


def offline(names, seconds: float, repeats: int, with_onnx: bool) -> list[dict]:
    rows = []
    for name in names:
        model, sr, enc, dec, codec = build(name)
        wav = test_audio(seconds, sr)
        with torch.inference_mode():
            codes = enc(wav)
            dec(codes)  # warm-up
            t_enc = best_of(lambda: enc(wav), repeats)  # noqa: B023
            t_dec = best_of(lambda: dec(codes), repeats)  # noqa: B023
        row = {"system": name, "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
               "encode": t_enc / seconds, "decode": t_dec / seconds}
        if with_onnx and codec is not None:
            r = onnx_speed(codec, wav, repeats)
            row["onnx"] = r if isinstance(r, str) else (r[0] / seconds, r[1] / seconds)
        rows.append(row)
        print(f"  {name}: encode {row['encode']:.4f}, decode {row['decode']:.4f} s/s", file=sys.stderr)
        del model, codec
    return rows


def streaming_latency(names, frames: int) -> list[dict]:
    rows = []
    for name in names:
        _, sr, _, _, codec = build(name)
        wav = test_audio(frames * 0.08, sr)
        chunks = wav.split(codec.frame_size, dim=-1)
        enc_t, dec_t = [], []
        with torch.inference_mode(), codec.streaming(1):
            for i, chunk in enumerate(chunks):
                t0 = time.perf_counter()
                codes = codec.encode(chunk)
                t1 = time.perf_counter()
                codec.decode(codes)
                t2 = time.perf_counter()
                if i >= 3:  # the first frames allocate buffers
                    enc_t.append(t1 - t0)
                    dec_t.append(t2 - t1)
        ms = lambda xs, q: 1000 * float(np.percentile(xs, q))  # noqa: E731
        rows.append({"system": name, "enc_p50": ms(enc_t, 50), "enc_p99": ms(enc_t, 99), "dec_p50": ms(dec_t, 50),
                     "dec_p99": ms(dec_t, 99), "frames": len(enc_t)})
    return rows


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def peak_memory_child(name: str, seconds: float) -> None:
    """Run in a fresh process: print JSON with the RSS after building and the peak over encode + decode."""
    model, sr, enc, dec, _ = build(name)
    wav = test_audio(seconds, sr)
    base = _rss_kib("VmRSS")
    with torch.inference_mode():
        dec(enc(wav))
    print(json.dumps({"base_mib": base / 1024, "peak_mib": _rss_kib("VmHWM") / 1024}))


def peak_memory(names, seconds: float, threads: int) -> list[dict]:
    rows = []
    for name in names:
        proc = subprocess.run([sys.executable, __file__, "--child-memory", name, "--long-seconds", str(seconds),
                               "--threads", str(threads)], capture_output=True, text=True)
        if proc.returncode != 0:
            rows.append({"system": name, "error": proc.stderr.strip().splitlines()[-1:]})
            continue
        rows.append({"system": name, **json.loads(proc.stdout.strip().splitlines()[-1])})
    return rows


def render(args, off, stream, mem) -> str:
    f = lambda x: f"{x:.4f}" if x < 0.1 else f"{x:.3f}"  # noqa: E731
    onnx_cols = any("onnx" in r for r in off)
    head = "| system | params (M) | encode s/s | decode s/s |" + (" onnx encode | onnx decode |" if onnx_cols else "")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in off:
        cells = [r["system"], f"{r['params_m']:.1f}", f(r["encode"]), f(r["decode"])]
        if onnx_cols:
            o = r.get("onnx", "–")
            cells += [f(o[0]), f(o[1])] if isinstance(o, tuple) else [str(o)[:40], ""]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Streaming, one 80 ms frame per call (ms):", "",
              "| system | encode p50 | encode p99 | decode p50 | decode p99 | frames |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['system']} | {r['enc_p50']:.1f} | {r['enc_p99']:.1f} | {r['dec_p50']:.1f} | {r['dec_p99']:.1f} "
              f"| {r['frames']} |" for r in stream]
    lines += ["", f"Peak memory, encode + decode of {args.long_seconds:g} s in a fresh process (MiB):", "",
              "| system | RSS after building | peak RSS | peak − build |", "|---|---|---|---|"]
    for r in mem:
        if "error" in r:
            lines.append(f"| {r['system']} | failed: {r['error']} | | |")
        else:
            lines.append(f"| {r['system']} | {r['base_mib']:.0f} | {r['peak_mib']:.0f} | "
                         f"{r['peak_mib'] - r['base_mib']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--long-seconds", type=float, default=60.0)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--systems", default=",".join(PRESETS + ("mimi-8cb", "encodec-24k")))
    p.add_argument("--onnx", action="store_true", help="add onnxruntime columns (needs codec12.export.onnx)")
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    p.add_argument("--child-memory", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.child_memory:
        peak_memory_child(args.child_memory, args.long_seconds)
        return
    names = [n for n in args.systems.split(",") if n]
    off = offline(names, args.seconds, args.repeats, args.onnx)
    stream = streaming_latency([n for n in names if n.startswith("c12-")], args.frames)
    mem = peak_memory(names, args.long_seconds, args.threads)
    cmd = "python benchmarks/speed.py " + " ".join(sys.argv[1:])
    text = (f"{machine_line(args.threads)}  \nCommand: `{cmd.strip()}`  \n"
            f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M UTC}; {args.seconds:g} s of audio, best of "
            f"{args.repeats}, torch {torch.__version__}.\n\n{render(args, off, stream, mem)}")
    print(text)
    if not args.no_write:
        update_docs("speed", "Speed (PyTorch eager, CPU)", text)


if __name__ == "__main__":
    main()
