"""Where a model's reconstruction error lies: in the spectral magnitude or in the phase.

Decodes each clip, takes the STFT of the decoded and of the reference audio, and scores (PESQ-WB, STOI, ESTOI
against the reference, with the harness's metrics) four signals rebuilt by inverse STFT:

- decoded: the model's output as it is;
- decoded magnitude + reference phase: what a perfect phase would give the model's magnitudes;
- reference magnitude + decoded phase: what the model's phase costs on exact magnitudes;
- reference magnitude + random phase: the floor of a phase that knows nothing.

    .venv/bin/python benchmarks/magnitude_phase.py --data DEV_DIR [--model c12-tiny-16k] [--num-codebooks 12]
        [--n-fft 640] [--hop 160] [--max-files N]

Clips a metric cannot score (STOI needs ~0.4 s of speech) are left out of that metric's mean and counted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import machine_line  # noqa: E402

from codec12 import Codec  # noqa: E402
from codec12.audio import load_audio  # noqa: E402
from codec12.cli import DEFAULT_MODEL  # noqa: E402
from codec12.eval.harness import list_audio_files  # noqa: E402
from codec12.eval.metrics import METRICS, SAMPLE_RATE, MetricError  # noqa: E402

SIGNALS = ("decoded", "decoded magnitude + reference phase", "reference magnitude + decoded phase",
           "reference magnitude + random phase")
METRIC_NAMES = ("pesq_wb", "stoi", "estoi")


def hybrids(reference: torch.Tensor, decoded: torch.Tensor, n_fft: int, hop: int,
            generator: torch.Generator) -> dict[str, torch.Tensor]:
    """[T] reference and decoded audio -> the signals of :data:`SIGNALS`, each [T]."""
    window = torch.hann_window(n_fft)

    def stft(x: torch.Tensor) -> torch.Tensor:
        return torch.stft(x, n_fft, hop, window=window, return_complex=True)

    def istft(spec: torch.Tensor) -> torch.Tensor:
        return torch.istft(spec, n_fft, hop, window=window, length=reference.shape[-1])

    ref, dec = stft(reference), stft(decoded)
    random_phase = torch.rand(ref.shape, generator=generator) * 2 * torch.pi
    return {
        "decoded": decoded,
        "decoded magnitude + reference phase": istft(torch.polar(dec.abs(), ref.angle())),
        "reference magnitude + decoded phase": istft(torch.polar(ref.abs(), dec.angle())),
        "reference magnitude + random phase": istft(torch.polar(ref.abs(), random_phase)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="directory of reference audio (any rate; scored at 16 kHz)")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--num-codebooks", type=int, default=None, help="codebooks decoded (default: all)")
    p.add_argument("--n-fft", type=int, default=640)
    p.add_argument("--hop", type=int, default=160)
    p.add_argument("--max-files", type=int, default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    codec = Codec.from_pretrained(args.model).eval()
    if codec.sample_rate != SAMPLE_RATE:
        raise SystemExit(f"{args.model}: {codec.sample_rate} Hz; this script compares STFTs at {SAMPLE_RATE} Hz")
    files = list_audio_files(args.data)[: args.max_files]
    if not files:
        raise SystemExit(f"{args.data}: no audio files")
    scorers = {name: METRICS[name].load() for name in METRIC_NAMES}
    scores = {s: {m: [] for m in METRIC_NAMES} for s in SIGNALS}
    skipped = {m: 0 for m in METRIC_NAMES}
    generator = torch.Generator().manual_seed(args.seed)
    for path in files:
        reference = load_audio(path, SAMPLE_RATE)[0]
        with torch.no_grad():
            decoded = codec.decode(codec.encode(reference[None, None], args.num_codebooks))[0, 0]
        n = min(reference.shape[-1], decoded.shape[-1])
        reference, decoded = reference[:n], decoded[:n]
        for signal, audio in hybrids(reference, decoded, args.n_fft, args.hop, generator).items():
            for m in METRIC_NAMES:
                try:
                    scores[signal][m].append(scorers[m](reference.numpy(), audio.numpy().astype(np.float32), None))
                except MetricError:
                    if signal == "decoded":  # the same clips fail for every signal: count them once
                        skipped[m] += 1
    rows = codec.num_codebooks if args.num_codebooks is None else args.num_codebooks
    print(f"{args.model}, {rows} codebooks, {len(files)} files from {args.data}; STFT {args.n_fft}/{args.hop}")
    print(machine_line(args.threads))
    print(f"\n| signal | {' | '.join(METRICS[m].label for m in METRIC_NAMES)} |")
    print(f"|---|{'---|' * len(METRIC_NAMES)}")
    for signal in SIGNALS:
        cells = [f"{np.mean(scores[signal][m]):.3f}" if scores[signal][m] else "-" for m in METRIC_NAMES]
        print(f"| {signal} | {' | '.join(cells)} |")
    if any(skipped.values()):
        print("\nclips a metric could not score: " + ", ".join(f"{METRICS[m].label} {k}" for m, k in skipped.items()))


if __name__ == "__main__":
    main()
