"""Training throughput of a recipe on this machine: steps/s and seconds of audio per second of wall time.

    python benchmarks/train_speed.py                          # tiny-16k-cpu on generated speech-like audio
    python benchmarks/train_speed.py --data data/tiny16k/train.jsonl --threads 1 --steps 30

Both phases of the recipe are timed: reconstruction only, and with the discriminator on (the recipe turns it
on at ``discriminators.start_step``). The first steps are warm-up and not counted. Numbers depend on what
else runs on the cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from codec12.train import load_recipe, run


def speechlike(seconds: float, sample_rate: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t + seed)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 8))
    env = 0.5 * (1 + np.sin(2 * np.pi * 3.0 * t)) ** 2
    return (0.15 * voice * env + 0.01 * rng.standard_normal(t.shape)).astype(np.float32)


def measure(recipe_path: str, data: str, steps: int, warmup: int, threads: int, adversarial: bool) -> dict:
    with tempfile.TemporaryDirectory() as out:
        recipe = load_recipe(recipe_path, [
            f"data.train={data}", "data.valid=null", "data.valid_fraction=0", f"train.steps={steps}",
            "train.log_every=1", f"train.valid_every={10 ** 9}", f"train.checkpoint_every={10 ** 9}",
            "train.export=false", f"train.threads={threads}",
            f"discriminators.start_step={0 if adversarial else 10 ** 9}"])
        run(recipe, out, progress=False)
        logs = [json.loads(x) for x in (Path(out) / "log.jsonl").read_text().splitlines()]
    timed = [e for e in logs if "steps_per_s" in e and e["step"] > warmup]
    seconds = sum(1.0 / e["steps_per_s"] for e in timed)
    steps_per_s = len(timed) / seconds
    audio = recipe.data.batch_size * recipe.data.crop_frames * 0.08
    return {"phase": "reconstruction + msstft discriminator" if adversarial else "reconstruction only",
            "batch_size": recipe.data.batch_size, "crop_s": recipe.data.crop_frames * 0.08, "threads": threads,
            "steps_timed": len(timed), "steps_per_s": round(steps_per_s, 3),
            "audio_s_per_s": round(steps_per_s * audio, 2)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default="tiny-16k-cpu", help="recipe file or bundled recipe name")
    p.add_argument("--data", help="directory or manifest (default: 16 generated 4 s files)")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            rate = load_recipe(args.recipe).model.codec_config().sample_rate
            for i in range(16):
                sf.write(f"{tmp}/{i}.wav", speechlike(4.0, rate, i), rate)
            data = tmp
        for adversarial in (False, True):
            print(json.dumps(measure(args.recipe, data, args.steps, args.warmup, args.threads, adversarial)))
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
