"""Encode/decode speed of codec12 presets in PyTorch eager on this machine's CPU.

Prints seconds of compute per second of audio (lower is faster; < 1 is faster than real time), the
parameter count and the bitrate of each preset. Random weights: speed does not depend on them.

    python benchmarks/core_speed.py [--seconds 10] [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from codec12 import Codec, CodecConfig
from codec12.config import PRESETS


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--presets", default=",".join(sorted(PRESETS)))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {args.seconds:g} s of audio, best of {args.repeats}")
    print("| preset | params (M) | codebooks | bitrate (bps) | encode (s/s) | decode (s/s) |")
    print("|---|---|---|---|---|---|")
    for name in args.presets.split(","):
        torch.manual_seed(0)
        codec = Codec.from_config(CodecConfig.from_preset(name)).eval()
        wav = 0.1 * torch.randn(1, 1, int(args.seconds * codec.sample_rate))
        with torch.inference_mode():
            codec.encode(wav[..., : codec.frame_size * 4])  # warm-up
            codes = codec.encode(wav)
            enc = best_of(lambda c=codec, w=wav: c.encode(w), args.repeats) / args.seconds
            dec = best_of(lambda c=codec, k=codes: c.decode(k), args.repeats) / args.seconds
        params = sum(p.numel() for p in codec.parameters()) / 1e6
        print(f"| {name} | {params:.2f} | {codec.num_codebooks} | {codec.bitrate:.0f} | {enc:.4f} | {dec:.4f} |")


if __name__ == "__main__":
    main()
