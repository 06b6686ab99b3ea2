"""How precisely a model's codes carry F0: a probe trained on its inverse-STFT decoder's features.

Encodes clips with the model, runs its decoder up to the features its heads read (after the ConvNeXt blocks and
the final norm), and fits a linear F0 classifier on them (128 log-spaced classes from 50 to 550 Hz, the
harmonic decoder's own cross-entropy against WORLD's DIO F0 of the input) on 80 % of the frames; prints the
F0 error on the other 20 % (voiced frames): the median in cents and the share of gross errors (> 0.2 octave).
A harmonic decoder can place harmonic h only if its F0 error is well under 1 / h: 68 cents (4 %) puts the
comb off by half a spacing from about the 12th harmonic on.

    .venv/bin/python benchmarks/f0_probe.py --model c12-tiny-16k --data data/tiny16k/train.jsonl [--files 300]
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import machine_line  # noqa: E402

from codec12 import Codec  # noqa: E402
from codec12.audio import load_audio  # noqa: E402
from codec12.data.manifest import read_manifest  # noqa: E402
from codec12.decoder import ISTFTDecoder  # noqa: E402
from codec12.decoder.istft import decode_f0, f0_grid  # noqa: E402
from codec12.distill.pitch import PitchTeacher  # noqa: E402
from codec12.eval.harness import list_audio_files  # noqa: E402
from codec12.losses.pitch import F0Loss  # noqa: E402


def clips(source: str, files: int, seed: int) -> list[Path]:
    path = Path(source)
    found = list_audio_files(path) if path.is_dir() else [Path(row.path) for row in read_manifest(path)]
    random.Random(seed).shuffle(found)
    return found[:files]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True, help="a directory of audio or a manifest (docs/manifests.md)")
    p.add_argument("--files", type=int, default=300)
    p.add_argument("--seconds", type=float, default=3.0, help="at most this much of each clip")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    codec = Codec.from_pretrained(args.model).eval()
    dec = codec.decoder
    if not isinstance(dec, ISTFTDecoder):
        raise SystemExit(f"{args.model}: the probe reads an inverse-STFT decoder's features; this is SEANet")
    istft = codec.config.istft
    teacher = PitchTeacher(codec.sample_rate, istft.hop_length, istft.n_fft, 50.0, 550.0)
    features, f0s, voiced = [], [], []
    for path in clips(args.data, args.files, args.seed):
        x = load_audio(path, codec.sample_rate)[0]
        n = min(x.shape[0], int(args.seconds * codec.sample_rate)) // codec.frame_size * codec.frame_size
        if n < 4 * codec.frame_size:
            continue
        x = x[:n] * (0.3 / x[:n].abs().max().clamp_min(1e-4))
        with torch.no_grad():
            q = codec.quantizer.decode(codec.encode(x[None, None]))
            h = dec.upsample(codec.decoder_transformer(codec.upsample(q)))
            for block in dec.blocks:
                h = block(h)
            features.append(dec.norm(h.transpose(1, 2))[0])
        target = teacher(x[None, None])
        f0s.append(target.f0[0, 0])
        voiced.append((target.voiced & target.known)[0, 0])
    h, f0, v = torch.cat(features), torch.cat(f0s), torch.cat(voiced)
    split = int(0.8 * len(f0))
    grid = f0_grid(50.0, 550.0, 128)
    loss = F0Loss(grid)
    probe = torch.nn.Linear(h.shape[1], grid.numel())
    opt = torch.optim.Adam(probe.parameters(), lr=1e-3)
    for _ in range(args.steps):
        idx = torch.randint(0, split, (512,))
        value = loss(probe(h[idx]).T[None, None], f0[idx][None, None], v[idx][None, None])
        opt.zero_grad()
        value.backward()
        opt.step()
    with torch.no_grad():
        pred = decode_f0(probe(h[split:]).T[None, None], grid)[0, 0]
    err = torch.log2(pred / f0[split:].clamp_min(1.0)).abs()[v[split:]]
    print(f"{args.model}: {len(features)} clips from {args.data}, {len(f0)} frames ({int(v.sum())} voiced); "
          f"probe {args.steps} steps")
    print(machine_line(args.threads))
    print(f"held-out voiced frames: median F0 error {1200 * err.median():.0f} cents, gross (> 0.2 octave) "
          f"{(err > 0.2).float().mean():.3f}")


if __name__ == "__main__":
    main()
