"""Build the offline training corpus of the bundled ``c12-tiny-16k`` model, reproducibly.

Sources, all installable offline on Debian/PyPI:
- real speech: the Dutch and Czech voice acting of Fish Fillets NG (Debian ``fillets-ng-data-nl``,
  ``fillets-ng-data-cs``; transcripts in ``fillets-ng-data``'s ``script/*/dialogs_{nl,cs}.lua``);
- synthetic speech: ``hibari-tts`` (neural English voice, 24 kHz) and ``espeak-ng`` voices in the languages the
  game's dialogue is translated to, speaking those translations with varied speed and pitch;
- augmentation: copies of a share of the real speech with a speed change (which also shifts pitch), a gain
  change and background noise at a random SNR.

Every level of the game is assigned to train or dev by a hash of its name, and synthetic utterances follow
the level their text comes from, so the dev split shares no level, text or recording with training.

    python recipes/prepare_tiny_data.py --out data/tiny16k
    # -> data/tiny16k/{train,dev}/... .flac and data/tiny16k/{train,dev}.jsonl
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

FILLETS = Path("/usr/share/games/fillets-ng")
REAL_LANGUAGES = ("nl", "cs")
# game translation file -> espeak-ng voice (also the manifests' "language": the phonetic teacher's voice)
ESPEAK_VOICES = {"en": "en-us", "de": "de", "fr": "fr", "es": "es", "it": "it", "pl": "pl", "sv": "sv", "ru": "ru",
                 "nl": "nl", "cs": "cs"}
ESPEAK_VARIANTS = ("", "+m1", "+m3", "+f2", "+f4", "+m7", "+f1")
DEV_BUCKETS = 20  # one level in 20 goes to dev


def split_of(level: str) -> str:
    return "dev" if int(hashlib.sha1(level.encode()).hexdigest(), 16) % DEV_BUCKETS == 0 else "train"


def read_dialogs(level: str, lang: str) -> dict[str, str]:
    """dialog id -> text, from ``dialogs_<lang>.lua`` (English lives in the ``dialogId`` lines themselves)."""
    path = FILLETS / "script" / level / f"dialogs_{lang if lang != 'en' else 'en'}.lua"
    if not path.is_file():
        return {}
    text = path.read_text(encoding="utf-8", errors="replace")
    out = {}
    if lang == "en":
        for m in re.finditer(r'dialogId\("([^"]+)",\s*"[^"]*",\s*"((?:[^"\\]|\\.)*)"\)', text):
            out[m.group(1)] = m.group(2)
    else:
        for m in re.finditer(r'dialogId\("([^"]+)"[^\n]*\)\s*\n\s*dialogStr\("((?:[^"\\]|\\.)*)"\)', text):
            out[m.group(1)] = m.group(2)
    return {k: v.replace('\\"', '"').strip() for k, v in out.items() if v.strip()}


def save(path: Path, wav: torch.Tensor, sample_rate: int) -> float:
    path.parent.mkdir(parents=True, exist_ok=True)
    peak = wav.abs().max().clamp(min=1e-6)
    if peak > 0.99:
        wav = wav * (0.99 / peak)
    sf.write(str(path), wav[0].numpy(), sample_rate, subtype="PCM_16")
    return wav.shape[-1] / sample_rate


def load_mono(path: Path, sample_rate: int) -> torch.Tensor | None:
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # corrupt files are reported and skipped
        print(f"skip {path}: {e}")
        return None
    if data.shape[0] < rate // 10 or not np.isfinite(data).all():
        print(f"skip {path}: too short or non-finite")
        return None
    wav = torch.from_numpy(data.mean(axis=1))[None]
    return AF.resample(wav, rate, sample_rate) if rate != sample_rate else wav


def augment(wav: torch.Tensor, sample_rate: int, rng: random.Random) -> torch.Tensor:
    """Speed change (resampling, which shifts pitch too), gain, and white/brown noise at 15-35 dB SNR."""
    speed = rng.choice([0.88, 0.93, 1.07, 1.12])
    wav = AF.resample(wav, int(sample_rate * speed), sample_rate)
    wav = wav * 10 ** (rng.uniform(-12, 3) / 20)
    g = torch.Generator().manual_seed(rng.randrange(2**31))
    noise = torch.randn(wav.shape, generator=g)
    if rng.random() < 0.5:  # brown noise
        noise = torch.cumsum(noise, dim=-1)
        noise = noise - torch.linspace(0, 1, noise.shape[-1]) * noise[..., -1:]
    snr = rng.uniform(15, 35)
    power = wav.pow(2).mean().clamp(min=1e-8)
    noise = noise * (power / noise.pow(2).mean().clamp(min=1e-8) / 10 ** (snr / 10)).sqrt()
    return wav + noise


def espeak(text: str, voice: str, speed: int, pitch: int, sample_rate: int) -> torch.Tensor | None:
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        r = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", f.name, text],
                           capture_output=True)
        if r.returncode != 0:
            return None
        return load_mono(Path(f.name), sample_rate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--sample-rate", type=int, default=16000)
    parser.add_argument("--augment-share", type=float, default=0.3, help="share of real clips also augmented")
    parser.add_argument("--espeak-per-language", type=int, default=250, help="utterances per espeak language")
    parser.add_argument("--hibari", type=int, default=600, help="English hibari-tts utterances")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not (FILLETS / "sound").is_dir():
        raise SystemExit("Fish Fillets data not found: apt-get install fillets-ng-data fillets-ng-data-nl "
                         "fillets-ng-data-cs")
    rng = random.Random(args.seed)
    sr = args.sample_rate
    rows: dict[str, list[dict]] = {"train": [], "dev": []}
    levels = sorted(p.name for p in (FILLETS / "sound").iterdir() if p.is_dir())

    def add(split: str, rel: str, wav: torch.Tensor, **meta) -> None:
        duration = save(args.out / rel, wav, sr)
        rows[split].append({"path": rel, "duration_s": round(duration, 3), **meta})

    # 1. real speech (+ augmented copies of a share of the training clips)
    for level in levels:
        split = split_of(level)
        for lang in REAL_LANGUAGES:
            texts = read_dialogs(level, lang)
            for ogg in sorted((FILLETS / "sound" / level / lang).glob("*.ogg")):
                wav = load_mono(ogg, sr)
                if wav is None:
                    continue
                speaker = f"fillets-{lang}-{ogg.stem.split('-')[1] if '-' in ogg.stem else 'x'}"
                meta = dict(text=texts.get(ogg.stem, ""), language=ESPEAK_VOICES[lang], speaker=speaker,
                            source="fillets", level=level)
                add(split, f"{split}/fillets/{lang}/{level}/{ogg.stem}.flac", wav, **meta)
                if split == "train" and rng.random() < args.augment_share:
                    add(split, f"{split}/fillets-aug/{lang}/{level}/{ogg.stem}.flac", augment(wav, sr, rng),
                        **{**meta, "source": "fillets-aug"})
        print(f"{level}: {sum(len(r) for r in rows.values())} clips so far")

    # 2. synthetic speech of the game's translations, by level, so dev text stays out of training
    texts_by_lang = {lang: [(lvl, k, t) for lvl in levels for k, t in sorted(read_dialogs(lvl, lang).items())]
                     for lang in ESPEAK_VOICES}
    if shutil.which("espeak-ng"):
        for lang, voice in ESPEAK_VOICES.items():
            items = texts_by_lang[lang]
            for level, key, text in rng.sample(items, min(args.espeak_per_language, len(items))):
                variant = rng.choice(ESPEAK_VARIANTS)
                wav = espeak(text, voice + variant, rng.randint(130, 200), rng.randint(25, 75), sr)
                if wav is None:
                    continue
                split = split_of(level)
                add(split, f"{split}/espeak/{lang}/{level}-{key}{variant.replace('+', '_')}.flac", wav, text=text,
                    language=voice, speaker=f"espeak-{voice}{variant}", source="espeak", level=level)
            print(f"espeak {lang}: done")
    else:
        print("espeak-ng not found: skipping espeak voices (apt-get install espeak-ng)")
    try:
        import hibari  # optional: pip install hibari-tts
    except ImportError:
        hibari = None
        print("hibari-tts not installed: skipping the neural English voice (pip install hibari-tts)")
    if hibari is not None:
        tts = hibari.Hibari()
        items = texts_by_lang["en"]
        for level, key, text in rng.sample(items, min(args.hibari, len(items))):
            speed = rng.choice([0.85, 0.95, 1.0, 1.1, 1.2])
            audio = np.asarray(tts(text, speed=speed, seed=rng.randrange(2**31)), dtype=np.float32)
            if audio.size < 2400:
                continue
            wav = AF.resample(torch.from_numpy(audio)[None], 24000, sr)
            split = split_of(level)
            add(split, f"{split}/hibari/{level}-{key}-{speed}.flac", wav, text=text, language=ESPEAK_VOICES["en"],
                speaker="hibari-af_heart", source="hibari", level=level)
        print("hibari: done")

    for split, items in rows.items():
        manifest = args.out / f"{split}.jsonl"
        tmp = manifest.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in items), encoding="utf-8")
        os.replace(tmp, manifest)
        hours = sum(r["duration_s"] for r in items) / 3600
        by_source: dict[str, float] = {}
        for r in items:
            by_source[r["source"]] = by_source.get(r["source"], 0) + r["duration_s"] / 3600
        print(f"{split}: {len(items)} clips, {hours:.2f} h "
              + ", ".join(f"{k} {v:.2f} h" for k, v in sorted(by_source.items())))


if __name__ == "__main__":
    main()
