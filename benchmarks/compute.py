"""Compute of codec12 presets: FLOPs per second of audio, and how much of this CPU's matmul peak they reach.

    .venv/bin/python benchmarks/compute.py [--seconds 4] [--repeats 3] [--threads 2] [--no-write]

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` (matmuls, convolutions, attention: the ops
that dominate; elementwise ops are not counted), for offline encode and decode of ``--seconds`` of audio,
divided by the duration. The fp32 peak is measured here: the best throughput of square ``torch.mm`` over a few
sizes. Utilisation = counted FLOPs / measured time / peak; low values mean the model is bound by memory
traffic, small kernels or framework overhead rather than by arithmetic.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import machine_line, update_docs  # noqa: E402
from speed import PRESETS, best_of, build, test_audio  # noqa: E402


def matmul_peak(repeats: int) -> tuple[float, int]:
    """(best fp32 GFLOP/s of torch.mm, the size that reached it)."""
    best, best_n = 0.0, 0
    for n in (512, 1024, 2048):
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(a, b)
        t = best_of(lambda: torch.mm(a, b), repeats)  # noqa: B023
        rate = 2 * n**3 / t / 1e9
        if rate > best:
            best, best_n = rate, n
    return best, best_n


def count_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--systems", default=",".join(PRESETS + ("mimi-8cb", "encodec-24k")))
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    peak, peak_n = matmul_peak(args.repeats)
    print(f"fp32 matmul peak: {peak:.1f} GFLOP/s ({peak_n}x{peak_n})", file=sys.stderr)
    rows = []
    for name in (n for n in args.systems.split(",") if n):
        model, sr, enc, dec, _ = build(name)
        wav = test_audio(args.seconds, sr)
        with torch.inference_mode():
            codes = enc(wav)
            f_enc, f_dec = count_flops(lambda: enc(wav)), count_flops(lambda: dec(codes))  # noqa: B023
            dec(codes)
            t_enc = best_of(lambda: enc(wav), args.repeats)  # noqa: B023
            t_dec = best_of(lambda: dec(codes), args.repeats)  # noqa: B023
        s = args.seconds
        rows.append((name, f_enc / s / 1e9, f_dec / s / 1e9, f_enc / t_enc / 1e9 / peak, f_dec / t_dec / 1e9 / peak))
        print(f"  {name}: {rows[-1]}", file=sys.stderr)
        del model
    lines = ["| system | encode GFLOP per s of audio | decode GFLOP per s of audio | encode % of peak | "
             "decode % of peak |", "|---|---|---|---|---|"]
    lines += [f"| {n} | {fe:.2f} | {fd:.2f} | {100 * ue:.1f} | {100 * ud:.1f} |" for n, fe, fd, ue, ud in rows]
    cmd = "python benchmarks/compute.py " + " ".join(sys.argv[1:])
    text = (f"{machine_line(args.threads)}  \nCommand: `{cmd.strip()}`  \n"
            f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M UTC}; measured fp32 matmul peak "
            f"{peak:.1f} GFLOP/s (torch.mm {peak_n}×{peak_n}); FLOPs counted by torch's FlopCounterMode on "
            f"{args.seconds:g} s of audio; mimi-8cb = transformers MimiModel at 8 codebooks, encodec-24k = "
            f"transformers EncodecModel at 1.5 kbps.\n\n" + "\n".join(lines))
    print(text)
    if not args.no_write:
        update_docs("compute", "Compute (FLOPs and matmul utilisation)", text)


if __name__ == "__main__":
    main()
