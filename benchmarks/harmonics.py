"""Harmonic structure of decoded speech: cepstral peak prominence of voiced frames, and a narrowband spectrogram.

A voiced frame of speech has a comb of harmonics across the band; a decoder that fills the valleys between them
with noise (breathy, whispery output) keeps the spectral envelope and loses the comb. The cepstral peak
prominence (CPP, Hillenbrand) measures the comb: the height in dB of the cepstrum's peak at the pitch period
(quefrencies of 2.5-16.7 ms: F0 from 60 to 400 Hz) above the cepstrum's regression line there. It is computed on
the frames the reference calls voiced (WORLD's DIO, ``pyworld``), on the reference and on each model's decoding
of it, with the same 1024-point (64 ms) Hann frames at a 10 ms hop, and averaged over all voiced frames; the
same over the band above 1 kHz alone (the cepstrum of the log spectrum from 1 kHz up), where the comb was lost.

    .venv/bin/python benchmarks/harmonics.py --data DEV_DIR --model c12-tiny-16k [--model OTHER ...]
        [--num-codebooks 12] [--figure out.png --figure-clip NAME]

``--figure``: the narrowband spectrogram (1024-point FFT, 16 kHz) of one clip, the reference above each model's
decoding of it.
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
from codec12.eval.harness import list_audio_files  # noqa: E402

SAMPLE_RATE = 16000
N_FFT, HOP = 1024, 160
F0_RANGE = (60.0, 400.0)


def log_spectrum(x: np.ndarray) -> np.ndarray:
    """[T] -> [frames, N_FFT // 2 + 1] power in dB, Hann frames of N_FFT at HOP (frame m centred on sample m * HOP)."""
    pad = np.pad(x.astype(np.float64), (N_FFT // 2, N_FFT // 2))
    frames = np.lib.stride_tricks.sliding_window_view(pad, N_FFT)[::HOP]
    spec = np.abs(np.fft.rfft(frames * np.hanning(N_FFT + 2)[1:-1], axis=-1)) ** 2
    return 10 * np.log10(spec + 1e-10)


def cpp(spectrum_db: np.ndarray, low_bin: int = 0) -> np.ndarray:
    """[frames, bins] dB -> [frames] cepstral peak prominence in dB, from the bins at and above ``low_bin``."""
    band = spectrum_db[:, low_bin:]
    ceps = np.fft.irfft(band - band.mean(axis=-1, keepdims=True), axis=-1)
    n = ceps.shape[-1]
    # quefrency of cepstral index q: q / (n * bin_spacing), bin spacing SAMPLE_RATE / N_FFT Hz
    quefrency = np.arange(n) / (n * SAMPLE_RATE / N_FFT)
    seconds = (quefrency >= 1.0 / F0_RANGE[1]) & (quefrency <= 1.0 / F0_RANGE[0])
    fit = (quefrency >= 1e-3) & (quefrency <= 1.0 / F0_RANGE[0])
    db = 20 * np.log10(np.abs(ceps) + 1e-10)
    out = np.empty(len(db))
    for i, row in enumerate(db):
        slope, intercept = np.polyfit(quefrency[fit], row[fit], 1)
        peak = int(np.argmax(np.where(seconds, row, -np.inf)))
        out[i] = row[peak] - (slope * quefrency[peak] + intercept)
    return out


def voiced_frames(x: np.ndarray) -> np.ndarray:
    """[T] -> bool [frames] (frames of :func:`log_spectrum`), from WORLD's DIO + StoneMask."""
    import pyworld

    x64 = np.ascontiguousarray(x, dtype=np.float64)
    f0, t = pyworld.dio(x64, SAMPLE_RATE, f0_floor=F0_RANGE[0], f0_ceil=F0_RANGE[1],
                        frame_period=1000.0 * HOP / SAMPLE_RATE)
    f0 = pyworld.stonemask(x64, f0, t, SAMPLE_RATE)
    return f0 > 0


def figure(path: Path, clip: Path, signals: dict[str, np.ndarray]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(signals), 1, figsize=(10, 2.6 * len(signals)), sharex=True)
    for ax, (name, x) in zip(np.atleast_1d(axes), signals.items()):
        spec = log_spectrum(x)
        spec = np.maximum(spec, spec.max() - 80)
        ax.imshow(spec.T, origin="lower", aspect="auto", cmap="magma",
                  extent=(0, len(x) / SAMPLE_RATE, 0, SAMPLE_RATE / 2000))
        ax.set_title(name, fontsize=9)
        ax.set_ylabel("kHz")
    np.atleast_1d(axes)[-1].set_xlabel(f"seconds ({clip.name}; {N_FFT}-point FFT, {SAMPLE_RATE // 1000} kHz)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="directory of reference audio (any rate; analysed at 16 kHz)")
    p.add_argument("--model", action="append", required=True, help="a model (repeat to compare several)")
    p.add_argument("--label", action="append", default=None, help="a label per --model (default: the model)")
    p.add_argument("--num-codebooks", type=int, default=None)
    p.add_argument("--max-files", type=int, default=None)
    p.add_argument("--figure", type=Path, default=None, help="write the narrowband spectrogram figure here")
    p.add_argument("--figure-clip", default=None, help="the clip (file name) of the figure; default: the first")
    p.add_argument("--figure-seconds", type=float, default=4.0)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    labels = args.label or args.model
    if len(labels) != len(args.model):
        raise SystemExit("give one --label per --model")
    codecs = {label: Codec.from_pretrained(m).eval() for label, m in zip(labels, args.model)}
    files = list_audio_files(args.data)[: args.max_files]
    if not files:
        raise SystemExit(f"{args.data}: no audio files")
    names = ["reference", *codecs]
    full = {n: [] for n in names}
    high = {n: [] for n in names}
    shown = None
    low_bin = int(round(1000 * N_FFT / SAMPLE_RATE))
    for path in files:
        reference = load_audio(path, SAMPLE_RATE)[0]
        signals = {"reference": reference.numpy()}
        for label, codec in codecs.items():
            with torch.no_grad():
                decoded = codec.decode(codec.encode(reference[None, None], args.num_codebooks))[0, 0]
            signals[label] = decoded[: reference.shape[-1]].numpy()
        voiced = voiced_frames(signals["reference"])
        for name, x in signals.items():
            spec = log_spectrum(x)
            m = min(len(spec), len(voiced))
            keep = voiced[:m]
            if keep.any():
                full[name].append(cpp(spec[:m][keep]))
                high[name].append(cpp(spec[:m][keep], low_bin))
        if args.figure is not None and shown is None and (args.figure_clip in (None, path.name)):
            n = int(args.figure_seconds * SAMPLE_RATE)
            shown = (path, {k: v[:n] for k, v in signals.items()})
    frames = sum(len(v) for v in full["reference"])
    print(f"{len(files)} files from {args.data}, {frames} voiced frames; codebooks: "
          f"{args.num_codebooks or 'all'}")
    print(machine_line(args.threads))
    print("\n| signal | CPP dB, voiced frames | CPP dB above 1 kHz |")
    print("|---|---|---|")
    for name in names:
        print(f"| {name} | {np.mean(np.concatenate(full[name])):.2f} | {np.mean(np.concatenate(high[name])):.2f} |")
    if args.figure is not None:
        if shown is None:
            raise SystemExit(f"--figure-clip {args.figure_clip}: no such file in {args.data}")
        figure(args.figure, *shown)
        print(f"\nfigure: {args.figure} ({shown[0].name})")


if __name__ == "__main__":
    main()
