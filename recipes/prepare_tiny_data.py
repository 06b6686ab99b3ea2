"""Build the offline training corpus of the bundled ``c12-tiny-16k`` model, reproducibly.

Sources, all installable offline from Debian (``apt-get install -y <package>``) or PyPI; licences as in each
package's ``/usr/share/doc/<package>/copyright``:

Real speech
- ``fillets``: the Dutch and Czech voice acting of Fish Fillets NG (``fillets-ng-data-nl``,
  ``fillets-ng-data-cs``, GPL-2+; transcripts in ``fillets-ng-data``'s ``script/*/dialogs_{nl,cs}.lua``).
- ``klettres``: letters and syllables read by native speakers of 20 languages (``klettres-data``, GPL-2+).
- ``asterisk``: telephone-system prompts read by professional voices, studio recordings at 16 kHz stored as
  G.722 (decoded with ffmpeg): Allison Smith (US English and Mexican Spanish), June Wallack (Canadian French),
  Carlo Flora (Italian), an ivrvoice.ru voice (Russian) (``asterisk-core-sounds-{en,es,fr,it,ru}-g722``,
  CC-BY-SA-3.0 / ru CC-BY-3.0); and Paola Dal Zot's Italian prompts at 8 kHz
  (``asterisk-prompt-it-menardi-wav``, CC-BY-SA-3.0).
- ``hedgewars``: the voice packs of Hedgewars, short acted lines in English accents, Spanish, Polish, Russian
  and Ukrainian (``hedgewars-data``, GFDL-1.3); the "Robot" pack (a processed voice) is left out.
- ``warzone``: the spoken lines of Warzone 2100 (announcer, tutorial, pilots, taunts, briefings; 11 kHz) from
  the zip archive ``base.wz`` (``warzone2100-data``, GPL-2+); the processed NEXUS voice and sound effects are
  left out.
- ``gcin``: Mandarin syllables in all tones read by two speakers (``gcin-voice``, GPL-3/LGPL-3 and CC-BY-3.0).
- ``megaglest``: the spoken acknowledgements of MegaGlest's human units (``megaglest-data``, CC-BY-SA-3.0);
  attack cries, deaths and animals are left out.

Silence is trimmed from both ends of these clips, and clips shorter than 3 s (all of klettres: each holds a
single letter or syllable) are joined per voice, in a shuffled order, into utterances of 3-8 s with pauses of
80-250 ms, each piece brought to the group's median level, so that a clip holds several seconds of one voice.
Their ``text`` is empty: only Fish Fillets has transcripts, and letter names and syllables are read in ways a
phonemizer cannot be trusted to match.

Synthetic speech, speaking the game's dialogue in the languages it is translated to:
- ``espeak``: espeak-ng in 12 languages with 40 voice variants, varied speed and pitch;
- ``flite``: the CMU voices of Debian's flite (kal16, awb, rms, slt), English, varied speed and pitch;
- ``festival``: Festival voices (``festvox-kallpc16k``, ``festvox-kdlpc16k``, ``festvox-us-slt-hts``,
  ``festvox-czech-{dita,krb,machac,ph}``, ``festvox-ita{lp,pc}16k``, ``festvox-ru``) in English, Czech, Italian
  and Russian;
- ``hibari``: ``hibari-tts`` (PyPI; a neural English voice, 24 kHz).

Augmentation, as extra copies of a share of the real training clips (never of dev clips):
- ``<source>-aug`` (``--augment-share``): a speed change (which also shifts pitch), a gain change and white or
  brown noise at 15-35 dB SNR;
- ``<source>-chain`` (``--chain-share``): a random non-empty subset of a recording chain
  (``speech_chain.recording_chain``): room reverberation (synthetic impulse responses, RT60 0.15-0.8 s, with a
  direct path and early reflections), background noise (coloured noise or babble of 3-6 other training clips,
  5-30 dB SNR), microphone colour (peaking and shelving EQ of a few dB), a band limit (telephone 300-3400 Hz,
  4 kHz or 7 kHz low-pass) and a level change (-20..+6 dB, sometimes drifting); the manifest row's ``aug``
  names what was applied.

Split: train and dev share no voice, level or text. Fish Fillets levels go to dev by a hash of their name
(one in 20, unchanged), and synthetic utterances follow the level their text comes from. The other real
sources go by voice: klettres by language (dev: de, fr, he, pt_BR, uk), asterisk by speaker (dev: June,
Canadian French), hedgewars by voice pack (dev: Default_es, Default_pl, Pirate), warzone by group of lines
(dev: the briefings, the third taunt voice and the VTOL pilots); gcin and megaglest are training only.

Evaluation set (``--evalset``, default ``<out>/evalset``): relative symlinks to about 60 dev clips of 2-10 s,
no augmented ones, chosen without randomness: within each (source, group) the clips are ordered by the SHA-1
of their path, and groups take turns (round robin over the group names in sorted order) until the source's
quota is met. Quotas, real read or acted speech first: fillets 6 Dutch + 8 Czech (grouped by level and by
small fish, big fish or other character; no templated lines such as "A%1."), klettres 12 (by language),
asterisk 6, hedgewars 6 (by pack), warzone 6 (by group); then a minority of synthetic speech: espeak 6 (by
language), flite 3 (by voice), festival 3 (by language), hibari 3. ``evalset.jsonl`` beside the links lists
them with their source, language, speaker and transcript.

    python recipes/prepare_tiny_data.py --out data/tiny16k
    # -> data/tiny16k/{train,dev}/... .flac, data/tiny16k/{train,dev}.jsonl, data/tiny16k/evalset/
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speech_chain import is_silent, join_short, recording_chain, trim_silence  # noqa: E402

FILLETS = Path("/usr/share/games/fillets-ng")
REAL_LANGUAGES = ("nl", "cs")
# game translation file -> espeak-ng voice (also the manifests' "language": the phonetic teacher's voice)
ESPEAK_VOICES = {"en": "en-us", "de": "de", "fr": "fr", "es": "es", "it": "it", "pl": "pl", "sv": "sv", "ru": "ru",
                 "nl": "nl", "cs": "cs", "bg": "bg", "sl": "sl"}
ESPEAK_VARIANTS = ("", "+m1", "+m2", "+m3", "+m4", "+m5", "+m6", "+m7", "+m8", "+f1", "+f2", "+f3", "+f4", "+f5",
                   "+klatt", "+klatt2", "+klatt3", "+klatt4", "+adam", "+Alex", "+Alicia", "+Andrea", "+Andy",
                   "+Annie", "+anika", "+aunty", "+benjamin", "+boris", "+caleb", "+david", "+edward", "+grandma",
                   "+grandpa", "+iven", "+john", "+linda", "+max", "+norbert", "+quincy", "+steph")
DEV_BUCKETS = 20  # one level in 20 goes to dev
JOIN_BELOW_S = 3.0  # real clips (other than Fish Fillets) shorter than this are joined into utterances

KLETTRES = Path("/usr/share/klettres")
KLETTRES_LANGUAGES = {"ar": "ar", "cs": "cs", "da": "da", "de": "de", "en": "en-us", "en_GB": "en-gb", "es": "es",
                      "fr": "fr", "he": "he", "hu": "hu", "it": "it", "lt": "lt", "ml": "ml", "nb": "nb", "nds": "nds",
                      "nl": "nl", "pt_BR": "pt-br", "ru": "ru", "tn": "tn", "uk": "uk"}
KLETTRES_DEV = {"de", "fr", "he", "pt_BR", "uk"}
ASTERISK = Path("/usr/share/asterisk/sounds")
ASTERISK_VOICES = {"en_US_f_Allison": "en-us", "es_MX_f_Allison": "es-419", "fr_CA_f_June": "fr",
                   "it_IT_m_Carlo": "it", "ru_RU_f_IvrvoiceRU": "ru", "it_IT_f_Menardi": "it"}
ASTERISK_DEV = {"fr_CA_f_June"}
ASTERISK_NOT_SPEECH = re.compile(r"(^|/)(silence/|beep|beeperr|ascending-2tone|descending-2tone)")
HEDGEWARS = Path("/usr/share/games/hedgewars/Data/Sounds/voices")
HEDGEWARS_LANGUAGES = {"Default_es": "es", "Default_pl": "pl", "Default_ru": "ru", "Default_uk": "uk",
                       "Russian_pl": "pl", "British": "en-gb"}  # the rest: en-us
HEDGEWARS_SKIP = {"Robot"}
HEDGEWARS_DEV = {"Default_es", "Default_pl", "Pirate"}
WARZONE = Path("/usr/share/games/warzone2100/base.wz")
# directory in base.wz -> group of lines (the unit of the split; one voice or a few that always go together)
WARZONE_GROUPS = {"audio/memressp": "announcer", "audio/extra": "announcer", "audio/tutorial": "announcer",
                  "audio/proxmessages": "announcer", "audio/countdown": "countdown", "audio/coltive": "collective",
                  "audio/taunts/taunt1": "taunt1", "audio/taunts/taunt2": "taunt2", "audio/taunts/taunt3": "taunt3",
                  "audio/trnsppil": "transport", "audio/vtoltalk": "vtol", "sequenceaudio": "briefing"}
WARZONE_DEV = {"briefing", "taunt3", "vtol"}
GCIN = Path("/usr/share/gcin-voice/ogg")
MEGAGLEST = Path("/usr/share/games/megaglest/techs/megapack")
MEGAGLEST_HUMANS = {"archer", "archmage", "axe_thrower", "guard", "horseman", "swordman", "technician", "worker",
                    "initiate", "battlemage", "summoner", "dragon_rider", "spearman", "battleaxe", "cudgel_lady",
                    "valkyrie", "flying_valkyrie", "princess", "magician", "fakir", "stickfighter", "fire_archer",
                    "axe_indian", "shaman", "anubis_warrior", "gladiator", "priest", "slave", "thrall", "crossbow",
                    "axe_man", "swordsman", "general", "tribune", "cavalry", "spearthrower"}
FLITE_VOICES = ("kal16", "awb", "rms", "slt")
# Festival voice -> (game translation, text encoding the voice reads)
FESTIVAL_VOICES = {"kal_diphone": ("en", "utf-8"), "ked_diphone": ("en", "utf-8"),
                   "cmu_us_slt_arctic_hts": ("en", "utf-8"), "czech_dita": ("cs", "iso-8859-2"),
                   "czech_krb": ("cs", "iso-8859-2"), "czech_machac": ("cs", "iso-8859-2"),
                   "czech_ph": ("cs", "iso-8859-2"), "lp_diphone": ("it", "latin-1"),
                   "pc_diphone": ("it", "latin-1"), "msu_ru_nsh_clunits": ("ru", "utf-8")}
REAL_SOURCES = ("fillets", "klettres", "asterisk", "hedgewars", "warzone", "gcin", "megaglest")
# evaluation set: (source, grouping key, how many), real speech first
EVALSET_QUOTAS = (("fillets-nl", "fish", 6), ("fillets-cs", "fish", 8), ("klettres", "language", 12),
                  ("asterisk", "speaker", 6), ("hedgewars", "speaker", 6), ("warzone", "speaker", 6),
                  ("espeak", "language", 6), ("flite", "speaker", 3), ("festival", "language", 3),
                  ("hibari", "speaker", 3))


def split_of(level: str) -> str:
    return "dev" if int(hashlib.sha1(level.encode()).hexdigest(), 16) % DEV_BUCKETS == 0 else "train"


def read_dialogs(level: str, lang: str) -> dict[str, str]:
    """dialog id -> text, from ``dialogs_<lang>.lua`` (English lives in the ``dialogId`` lines themselves)."""
    path = FILLETS / "script" / level / f"dialogs_{lang}.lua"
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


def to_mono(data: np.ndarray, rate: int, sample_rate: int) -> torch.Tensor:
    wav = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1) if data.ndim == 2 else data, dtype=np.float32))[None]
    return AF.resample(wav, rate, sample_rate) if rate != sample_rate else wav


def load_mono(path: Path | io.BytesIO, sample_rate: int, name: str | None = None) -> torch.Tensor | None:
    try:
        data, rate = sf.read(path, dtype="float32", always_2d=True)
    except Exception as e:  # corrupt files are reported and skipped
        print(f"skip {name or path}: {e}")
        return None
    if data.shape[0] < rate // 10 or not np.isfinite(data).all():
        print(f"skip {name or path}: too short or non-finite")
        return None
    return to_mono(data, rate, sample_rate)


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


def flite(text: str, voice: str, stretch: float, f0: int, sample_rate: int) -> torch.Tensor | None:
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        r = subprocess.run(["flite", "-voice", voice, "--setf", f"duration_stretch={stretch}", "--setf",
                            f"int_f0_target_mean={f0}", "-t", text, "-o", f.name], capture_output=True)
        if r.returncode != 0:
            return None
        return load_mono(Path(f.name), sample_rate)


def festival_batch(voice: str, encoding: str, jobs: list[tuple[str, float]], sample_rate: int,
                   ) -> list[torch.Tensor | None]:
    """Synthesize [(text, duration stretch)] with one Festival process per batch; a text the voice cannot
    read ends its batch, so the rest is run again without it."""
    out: list[torch.Tensor | None] = [None] * len(jobs)
    with tempfile.TemporaryDirectory() as tmp:
        start, failures = 0, 0
        while start < len(jobs) and failures < 10:
            lines = [f"(voice_{voice})"]
            for i in range(start, len(jobs)):
                text, stretch = jobs[i]
                lines.append(f"(Parameter.set 'Duration_Stretch {stretch:.2f})")
                lines.append(f'(utt.save.wave (utt.synth (Utterance Text "{text}")) "{tmp}/{i}.wav" \'riff)')
            script = Path(tmp) / "batch.scm"
            script.write_bytes(("\n".join(lines) + "\n").encode(encoding, errors="replace"))
            subprocess.run(["festival", "-b", str(script)], capture_output=True, cwd=tmp)
            i = start
            while i < len(jobs) and (Path(tmp) / f"{i}.wav").is_file():
                out[i] = load_mono(Path(tmp) / f"{i}.wav", sample_rate)
                i += 1
            failures += i < len(jobs)
            start = i + 1  # jobs[i] failed (or all are done)
    return out


def festival_text(text: str, encoding: str) -> str | None:
    """The text as the voice can read it: letters and plain punctuation of its encoding, no quotes."""
    text = re.sub(r"[\"\\()\[\]{}*_#<>|~`^@$%&=+/]", " ", text)
    text = "".join(c for c in text if c.isalpha() or c.isdigit() or c in " .,;:!?'-")
    text = re.sub(r"\s+", " ", text).strip()
    try:
        text.encode(encoding)
    except UnicodeEncodeError:
        return None
    return text if re.search(r"\w", text) else None


def decode_g722(paths: list[Path], sample_rate: int) -> list[torch.Tensor]:
    """G.722 files (64 kbit/s: two 16 kHz samples a byte) decoded in one ffmpeg call, then cut apart."""
    blobs = [p.read_bytes() for p in paths]
    r = subprocess.run(["ffmpeg", "-v", "error", "-f", "g722", "-i", "pipe:0", "-f", "f32le", "-ac", "1", "-ar",
                        "16000", "pipe:1"], input=b"".join(blobs), capture_output=True, check=True)
    audio = np.frombuffer(r.stdout, dtype=np.float32)
    out, pos = [], 0
    for blob in blobs:
        n = 2 * len(blob)
        out.append(to_mono(audio[pos:pos + n].copy(), 16000, sample_rate))
        pos += n
    return out


# --- real speech sources: each yields (group, language, [(clip id, wav)]) per voice ----------------------------

def klettres_voices(sr: int):
    for lang, voice in KLETTRES_LANGUAGES.items():
        files = sorted((KLETTRES / lang).rglob("*.ogg")) + sorted((KLETTRES / lang).rglob("*.wav"))
        clips = [(f"{f.parent.name}-{f.stem}", w) for f in files if (w := load_mono(f, sr)) is not None]
        yield lang, voice, clips


def asterisk_voices(sr: int):
    for speaker, voice in ASTERISK_VOICES.items():
        root = ASTERISK / speaker
        files = [f for f in sorted(root.rglob("*")) if f.suffix in (".g722", ".wav")
                 and not ASTERISK_NOT_SPEECH.search(f.relative_to(root).as_posix())]
        g722 = [f for f in files if f.suffix == ".g722"]
        wavs = dict(zip(g722, decode_g722(g722, sr))) if g722 else {}
        clips = []
        for f in files:
            wav = wavs.get(f) if f.suffix == ".g722" else load_mono(f, sr)
            if wav is not None:
                clips.append((f.relative_to(root).with_suffix("").as_posix().replace("/", "-"), wav))
        yield speaker, voice, clips


def hedgewars_voices(sr: int):
    for pack in sorted(p.name for p in HEDGEWARS.iterdir() if p.is_dir()):
        if pack in HEDGEWARS_SKIP:
            continue
        clips = [(f.stem, w) for f in sorted((HEDGEWARS / pack).glob("*.ogg")) if (w := load_mono(f, sr)) is not None]
        yield pack, HEDGEWARS_LANGUAGES.get(pack, "en-us"), clips


def warzone_voices(sr: int):
    groups: dict[str, list] = defaultdict(list)
    with zipfile.ZipFile(WARZONE) as z:
        for name in sorted(z.namelist()):
            if not name.endswith(".ogg"):
                continue
            group = next((g for d, g in WARZONE_GROUPS.items() if name.startswith(d + "/")), None)
            if group is None:
                continue
            wav = load_mono(io.BytesIO(z.read(name)), sr, name)
            if wav is not None:
                groups[group].append((Path(name).stem, wav))
    for group in sorted(groups):
        yield group, "en-us", groups[group]


def gcin_voices(sr: int):
    for speaker in ("3", "5"):
        files = sorted(GCIN.glob(f"*/{speaker}.ogg"))
        clips = [(f"{i:04d}", w) for i, f in enumerate(files) if (w := load_mono(f, sr)) is not None]
        yield f"speaker{speaker}", "cmn", clips


def megaglest_voices(sr: int):
    seen: set[str] = set()
    voices: dict[str, list] = defaultdict(list)
    files = sorted(MEGAGLEST.glob("commondata/sounds/*")) + sorted(MEGAGLEST.glob("factions/*/units/*/sounds/*"))
    for f in files:
        m = re.fullmatch(r"(.+?)_(ack|select)\d*", f.stem)
        if f.suffix not in (".wav", ".ogg") or not m or m.group(1) not in MEGAGLEST_HUMANS:
            continue
        digest = hashlib.sha1(f.read_bytes()).hexdigest()
        if digest in seen:  # the berserk units reuse their plain twins' files
            continue
        seen.add(digest)
        owner = "common" if f.parts[-3] == "commondata" else f.parts[-5]
        wav = load_mono(f, sr)
        if wav is not None:
            voices[f"{owner}-{m.group(1)}"].append((f.stem, wav))
    for voice in sorted(voices):
        yield voice, "en-us", voices[voice]


REAL_READERS = {  # source -> (reader, dev groups or None for training only, Debian package to install)
    "klettres": (klettres_voices, KLETTRES_DEV, KLETTRES, "klettres-data"),
    "asterisk": (asterisk_voices, ASTERISK_DEV, ASTERISK, "asterisk-core-sounds-{en,es,fr,it,ru}-g722 "
                 "asterisk-prompt-it-menardi-wav"),
    "hedgewars": (hedgewars_voices, HEDGEWARS_DEV, HEDGEWARS, "hedgewars-data"),
    "warzone": (warzone_voices, WARZONE_DEV, WARZONE, "warzone2100-data"),
    "gcin": (gcin_voices, set(), GCIN, "gcin-voice"),
    "megaglest": (megaglest_voices, set(), MEGAGLEST, "megaglest-data"),
}


def pick_evalset(rows: list[dict]) -> list[dict]:
    """The fixed evaluation selection described in the module docstring."""
    chosen = []
    for source, key, quota in EVALSET_QUOTAS:
        src, _, lang = source.partition("-")
        groups: dict[str, list[dict]] = defaultdict(list)
        for r in rows:
            if r["source"] != src or (lang and not r["speaker"].startswith(f"{src}-{lang}-")) \
                    or not 2.0 <= r["duration_s"] <= 10.0 or "%" in r["text"]:  # "%1": a template, not a line
                continue
            if key == "fish":  # Fish Fillets: the small fish, the big fish, anyone else; per level
                who = r["speaker"].rpartition("-")[2]
                groups[f"{r['level']}-{who if who in ('m', 'v') else 'other'}"].append(r)
            else:
                groups[r[key]].append(r)
        for g in groups.values():
            g.sort(key=lambda r: hashlib.sha1(r["path"].encode()).hexdigest())
        taken: list[dict] = []
        while len(taken) < quota and any(groups.values()):
            for name in sorted(groups):
                if groups[name] and len(taken) < quota:
                    taken.append(groups[name].pop(0))
        chosen.extend(taken)
    return chosen


def write_evalset(out: Path, evalset: Path, rows: list[dict]) -> None:
    chosen = pick_evalset(rows)
    tmp = evalset.with_name(evalset.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    listing = []
    for r in chosen:
        name = "-".join(Path(r["path"]).parts[1:])
        target = (out / r["path"]).resolve()
        (tmp / name).symlink_to(os.path.relpath(target, evalset.resolve()))
        listing.append({**r, "path": name, "source_path": r["path"]})
    (tmp / "evalset.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in listing),
                                       encoding="utf-8")
    old = evalset.with_name(evalset.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if evalset.exists():
        os.replace(evalset, old)
    os.replace(tmp, evalset)
    shutil.rmtree(old, ignore_errors=True)
    counts: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for r in chosen:
        c = counts[f"{r['source']}/{r['language']}"]
        c[0] += 1
        c[1] += r["duration_s"]
    print(f"evalset {evalset}: {len(chosen)} clips, {sum(r['duration_s'] for r in chosen):.1f} s: "
          + ", ".join(f"{k} {n} ({s:.0f} s)" for k, (n, s) in sorted(counts.items())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--sample-rate", type=int, default=16000)
    parser.add_argument("--augment-share", type=float, default=0.3,
                        help="share of real training clips also augmented with speed, gain and noise")
    parser.add_argument("--chain-share", type=float, default=0.4,
                        help="share of real training clips also passed through a random recording chain")
    parser.add_argument("--espeak-per-language", type=int, default=250, help="utterances per espeak language")
    parser.add_argument("--flite-per-voice", type=int, default=150, help="utterances per flite voice")
    parser.add_argument("--festival-per-voice", type=int, default=80, help="utterances per Festival voice")
    parser.add_argument("--hibari", type=int, default=600, help="English hibari-tts utterances")
    parser.add_argument("--evalset", type=Path, default=None, help="evaluation set directory (<out>/evalset)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not (FILLETS / "sound").is_dir():
        raise SystemExit("Fish Fillets data not found: apt-get install fillets-ng-data fillets-ng-data-nl "
                         "fillets-ng-data-cs")
    torch.set_num_threads(1)
    started = time.time()
    sr = args.sample_rate

    def rng_for(name: str) -> random.Random:  # one stream per source, so sources do not disturb each other
        return random.Random(f"{args.seed}:{name}")

    rows: dict[str, list[dict]] = {"train": [], "dev": []}
    levels = sorted(p.name for p in (FILLETS / "sound").iterdir() if p.is_dir())
    chain_jobs: list[dict] = []  # real training rows picked for a recording-chain copy

    def add(split: str, rel: str, wav: torch.Tensor, **meta) -> dict | None:
        if is_silent(wav, sr) or wav.shape[-1] < sr // 4:
            print(f"skip {rel}: silent or too short")
            return None
        duration = save(args.out / rel, wav, sr)
        row = {"path": rel, "duration_s": round(duration, 3), **meta}
        rows[split].append(row)
        return row

    def add_real(split: str, rel: str, wav: torch.Tensor, rng: random.Random, **meta) -> None:
        row = add(split, f"{split}/{rel}", wav, **meta)
        if row is None or split != "train":
            return
        if rng.random() < args.augment_share:
            add(split, f"{split}/{meta['source']}-aug/{rel.partition('/')[2]}", augment(wav, sr, rng),
                **{**meta, "source": f"{meta['source']}-aug", "aug": "speed+gain+noise"})
        if rng.random() < args.chain_share:
            chain_jobs.append(row)

    # 1. real speech: Fish Fillets by level
    rng = rng_for("fillets")
    for level in levels:
        split = split_of(level)
        for lang in REAL_LANGUAGES:
            texts = read_dialogs(level, lang)
            for ogg in sorted((FILLETS / "sound" / level / lang).glob("*.ogg")):
                wav = load_mono(ogg, sr)
                if wav is None:
                    continue
                speaker = f"fillets-{lang}-{ogg.stem.split('-')[1] if '-' in ogg.stem else 'x'}"
                add_real(split, f"fillets/{lang}/{level}/{ogg.stem}.flac", wav, rng, text=texts.get(ogg.stem, ""),
                         language=ESPEAK_VOICES[lang], speaker=speaker, source="fillets", level=level)
    print(f"fillets: {sum(len(r) for r in rows.values())} clips ({time.time() - started:.0f} s)")

    # 2. the other real speech, by voice; short clips joined into utterances
    for source, (reader, dev_groups, root, package) in REAL_READERS.items():
        if not root.exists():
            print(f"{source}: not found, skipped (apt-get install {package})")
            continue
        rng = rng_for(source)
        n = 0
        for group, language, clips in reader(sr):
            split = "dev" if group in dev_groups else "train"
            meta = dict(text="", language=language, speaker=f"{source}-{group}", source=source,
                        level=f"{source}-{group}")
            short, whole = [], []
            for key, wav in clips:
                wav = trim_silence(wav, sr)
                if wav is None or wav.shape[-1] < sr // 20:
                    continue
                (short if source == "klettres" or wav.shape[-1] < JOIN_BELOW_S * sr else whole).append((key, wav))
            for key, wav in whole:
                add_real(split, f"{source}/{group}/{key}.flac", wav, rng, **meta)
                n += 1
            for i, (_keys, wav) in enumerate(join_short(short, sr, rng)):
                add_real(split, f"{source}/{group}/joined{i:03d}.flac", wav, rng, **meta)
                n += 1
        print(f"{source}: {n} clips ({time.time() - started:.0f} s)")

    # 3. recording-chain copies of a share of the real training clips; babble from other training clips
    rng = rng_for("chain")
    real_train = [r for r in rows["train"] if r["source"] in REAL_SOURCES]
    pool = [load_mono(args.out / r["path"], sr) for r in rng.sample(real_train, min(300, len(real_train)))]
    pool = [w for w in pool if w is not None]
    for row in chain_jobs:
        wav = load_mono(args.out / row["path"], sr)
        if wav is None:
            continue
        wav, chain = recording_chain(wav, sr, rng, pool)
        rel = Path(row["path"]).relative_to(Path("train") / row["source"])
        add("train", f"train/{row['source']}-chain/{rel}", wav,
            **{**{k: v for k, v in row.items() if k not in ("path", "duration_s")},
               "source": f"{row['source']}-chain", "aug": chain})
    print(f"recording chain: {len(chain_jobs)} copies ({time.time() - started:.0f} s)")

    # 4. synthetic speech of the game's translations, by level, so dev text stays out of training
    texts_by_lang = {lang: [(lvl, k, t) for lvl in levels for k, t in sorted(read_dialogs(lvl, lang).items())]
                     for lang in ESPEAK_VOICES}
    if shutil.which("espeak-ng"):
        rng = rng_for("espeak")
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
        print(f"espeak: done ({time.time() - started:.0f} s)")
    else:
        print("espeak-ng not found: skipping espeak voices (apt-get install espeak-ng)")
    if shutil.which("flite"):
        rng = rng_for("flite")
        items = texts_by_lang["en"]
        for voice in FLITE_VOICES:
            for level, key, text in rng.sample(items, min(args.flite_per_voice, len(items))):
                wav = flite(text, voice, round(rng.uniform(0.85, 1.25), 2), rng.randint(85, 220), sr)
                if wav is None:
                    continue
                split = split_of(level)
                add(split, f"{split}/flite/{voice}/{level}-{key}.flac", wav, text=text, language="en-us",
                    speaker=f"flite-{voice}", source="flite", level=level)
        print(f"flite: done ({time.time() - started:.0f} s)")
    else:
        print("flite not found: skipping flite voices (apt-get install flite)")
    voices_dir = Path("/usr/share/festival/voices")
    if shutil.which("festival") and voices_dir.is_dir():
        rng = rng_for("festival")
        for voice, (lang, encoding) in FESTIVAL_VOICES.items():
            if not any(voices_dir.glob(f"*/{voice}")):
                print(f"festival voice {voice} not installed, skipped")
                continue
            items = [(lvl, k, t) for lvl, k, t0 in texts_by_lang[lang] if (t := festival_text(t0, encoding))]
            picked = rng.sample(items, min(args.festival_per_voice, len(items)))
            jobs = [(text, round(rng.uniform(0.85, 1.2), 2)) for _, _, text in picked]
            for (level, key, text), wav in zip(picked, festival_batch(voice, encoding, jobs, sr)):
                if wav is None:
                    continue
                split = split_of(level)
                add(split, f"{split}/festival/{voice}/{level}-{key}.flac", wav, text=text,
                    language=ESPEAK_VOICES[lang], speaker=f"festival-{voice}", source="festival", level=level)
        print(f"festival: done ({time.time() - started:.0f} s)")
    else:
        print("festival not found: skipping Festival voices (apt-get install festival festvox-kallpc16k ...)")
    try:
        import hibari  # optional: pip install hibari-tts
    except ImportError:
        hibari = None
        print("hibari-tts not installed: skipping the neural English voice (pip install hibari-tts)")
    if hibari is not None:
        rng = rng_for("hibari")
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
        print(f"hibari: done ({time.time() - started:.0f} s)")

    # 5. manifests, written atomically, and the evaluation set
    for split, items in rows.items():
        manifest = args.out / f"{split}.jsonl"
        tmp = manifest.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in items), encoding="utf-8")
        os.replace(tmp, manifest)
        hours = sum(r["duration_s"] for r in items) / 3600
        by_source: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
        for r in items:
            by_source[r["source"]][0] += 1
            by_source[r["source"]][1] += r["duration_s"] / 3600
        print(f"{split}: {len(items)} clips, {hours:.2f} h: "
              + ", ".join(f"{k} {n} ({h:.2f} h)" for k, (n, h) in sorted(by_source.items())))
    write_evalset(args.out, args.evalset or args.out / "evalset", rows["dev"])
    print(f"done in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
