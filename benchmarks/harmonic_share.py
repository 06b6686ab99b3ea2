"""How much of a harmonic decoder's voiced sound its harmonic branch makes, per band.

A harmonic inverse-STFT decoder (``istft.harmonic``) sums two spectra per frame: the free-phase branch and the
source-filter branch (a pulse train at the predicted F0 under a harmonic envelope). This decodes each clip's
codes and adds up, over the frames the decoder itself calls voiced (sigmoid(voicing) > 0.5), the energy of each
branch's spectrum in five bands. A branch far below the other there contributes nothing audible: the share is
the harmonic branch's energy over both.

    .venv/bin/python benchmarks/harmonic_share.py --data DEV_DIR --model MODEL [--model OTHER ...]
        [--num-codebooks 12] [--max-files 20]
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

BANDS = ((0, 500), (500, 1000), (1000, 2000), (2000, 4000), (4000, 8000))


@torch.no_grad()
def branch_energy(codec: Codec, wav: torch.Tensor, num_codebooks: int | None) -> np.ndarray:
    """[len(BANDS), 2] energy of the free-phase and the harmonic branch over the voiced frames of one clip."""
    decoder = codec.decoder
    codes = codec.encode(wav, num_codebooks)
    features = codec.decoder_transformer(codec.upsample(codec.quantizer.decode(codes)))
    out = decoder.synthesize(features)
    b, _, t = out.spectrum.shape
    spectrum = out.spectrum.reshape(b * codec.channels, 2, decoder.bins, t)
    harmonic = out.harmonic.reshape(b * codec.channels, 2, decoder.bins, t)
    free = spectrum - harmonic
    voiced = (torch.sigmoid(out.voicing.reshape(b * codec.channels, t)) > 0.5)[:, None, :]  # [B * C, 1, T]
    freqs = torch.arange(decoder.bins) * codec.sample_rate / decoder.n_fft
    energy = np.zeros((len(BANDS), 2))
    for i, (low, high) in enumerate(BANDS):
        band = ((freqs >= low) & (freqs < high))[None, :, None]
        for j, part in enumerate((free, harmonic)):
            power = (part ** 2).sum(dim=1)  # [B * C, bins, T]
            energy[i, j] = float((power * band * voiced).sum())
    return energy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="directory of reference audio")
    parser.add_argument("--model", action="append", required=True, help="a harmonic model (repeat to compare)")
    parser.add_argument("--num-codebooks", type=int, default=None, help="codebooks to decode (default: all)")
    parser.add_argument("--max-files", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    files = list_audio_files(args.data)[: args.max_files]
    print(machine_line(torch.get_num_threads()))
    print(f"{len(files)} files from {args.data}; codebooks: {args.num_codebooks or 'all'}\n")
    header = " | ".join(f"{low / 1000:g}-{high / 1000:g} kHz" for low, high in BANDS)
    print(f"| model | {header} |")
    print("|---" * (len(BANDS) + 1) + "|")
    for name in args.model:
        codec = Codec.from_pretrained(name).eval()
        if getattr(codec.decoder, "f0_phase", None) is None:
            print(f"{name}: not a harmonic decoder", file=sys.stderr)
            return 1
        total = np.zeros((len(BANDS), 2))
        for path in files:
            wav = load_audio(path, codec.sample_rate, codec.channels)
            wav = torch.nn.functional.pad(wav, (0, (-wav.shape[-1]) % codec.frame_size))[None]
            total += branch_energy(codec, wav, args.num_codebooks)
        cells = []
        for free, harmonic in total:
            share = harmonic / max(free + harmonic, 1e-30)
            cells.append(f"{share:.3f} ({10 * np.log10(max(harmonic, 1e-30) / max(free, 1e-30)):+.1f} dB)")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\nEach cell: the harmonic branch's share of the voiced frames' energy in the band (its level against "
          "the free-phase branch's).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
