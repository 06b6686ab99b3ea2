"""How consistent the spectrum an inverse-STFT decoder predicts is with the audio it synthesises.

The decoder predicts one complex spectrum per STFT frame and overlap-adds them. Unless neighbouring frames
agree (a partial's phase advancing with its frequency from frame to frame), the overlap-add cancels part of
what was predicted, and the STFT of the output is not the predicted spectrum. For each clip this decodes the
codes, takes the spectrum the decoder fed to its inverse STFT, and the DFT of the output over the very samples
each frame synthesised (rectangular frames: the exact inverse of the decoder's synthesis, so a consistent
spectrum scores 0), and prints:

- consistency error: ||DFT(output frames) - predicted|| / ||predicted||;
- energy kept: ||DFT(output frames)|| / ||predicted|| (below 1: the overlap-add cancelled that much);
- the predicted energy by frame position within the 80 ms codec frame (a share per position; equal shares
  would be 1 / positions each).

    .venv/bin/python benchmarks/istft_consistency.py --data DEV_DIR [--model c12-tiny-16k] [--max-files N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import machine_line  # noqa: E402

from codec12 import Codec  # noqa: E402
from codec12.audio import load_audio  # noqa: E402
from codec12.cli import DEFAULT_MODEL  # noqa: E402
from codec12.decoder.istft import ISTFTDecoder  # noqa: E402
from codec12.eval.harness import list_audio_files  # noqa: E402
from codec12.losses.spectral import frame_spectra  # noqa: E402


def consistency(predicted: torch.Tensor, audio: torch.Tensor, n_fft: int,
                hop: int) -> tuple[float, float, float]:
    """predicted: complex [bins, T] fed to the inverse STFT; audio: its output [T * hop]. Over the frames whose
    whole window lies in the output: (squared error sum, predicted energy sum, output-DFT energy sum)."""
    analysed = frame_spectra(audio.double(), n_fft, hop)  # frame t: the samples t*hop ... it synthesised
    pred = predicted[:, : analysed.shape[-1]].to(torch.complex128)
    return (float((analysed - pred).abs().pow(2).sum()), float(pred.abs().pow(2).sum()),
            float(analysed.abs().pow(2).sum()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="directory of audio (resampled to the model's rate)")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--num-codebooks", type=int, default=None, help="codebooks decoded (default: all)")
    p.add_argument("--max-files", type=int, default=None)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    machine = machine_line(args.threads)
    codec = Codec.from_pretrained(args.model).eval()
    decoder = codec.decoder
    if not isinstance(decoder, ISTFTDecoder) or codec.channels != 1:
        raise SystemExit(f"{args.model}: needs a mono model with the inverse-STFT decoder (istft in its config)")
    n_fft, hop = codec.config.istft.n_fft, codec.config.istft.hop_length
    per_frame = codec.frame_size // hop
    captured = {}
    decoder.istft.register_forward_hook(lambda module, inputs, output: captured.update(spec=inputs[0].detach()))
    files = list_audio_files(Path(args.data))[: args.max_files]
    if not files:
        raise SystemExit(f"{args.data}: no audio files")
    err = energy = kept = 0.0
    position = torch.zeros(per_frame, dtype=torch.float64)
    for path in files:
        wav = load_audio(path, codec.sample_rate)[None]
        with torch.no_grad():
            out = codec.decode(codec.encode(wav, num_codebooks=args.num_codebooks))[0, 0]
        spec = captured["spec"][0]
        bins = spec.shape[0] // 2
        predicted = torch.complex(spec[:bins].double(), spec[bins:].double())
        e, p_energy, k = consistency(predicted, out, n_fft, hop)
        err, energy, kept = err + e, energy + p_energy, kept + k
        frame_energy = predicted.abs().pow(2).sum(0)
        t = frame_energy.shape[0] // per_frame * per_frame
        position += frame_energy[:t].view(-1, per_frame).sum(0)
    share = position / position.sum()
    print(machine)
    print(f"model `{args.model}`, {len(files)} files of `{args.data}`, n_fft {n_fft}, hop {hop}, "
          f"{args.num_codebooks or codec.num_codebooks} codebooks\n")
    print("| consistency error | energy kept | predicted energy by frame position (share) |")
    print("|---|---|---|")
    print(f"| {(err / energy) ** 0.5:.3f} | {(kept / energy) ** 0.5:.3f} | "
          f"{' / '.join(f'{s:.3f}' for s in share.tolist())} |")


if __name__ == "__main__":
    main()
