"""Training data: audio files from a directory or a manifest, random whole-frame crops, loudness
normalization, a held-out validation split, and a deterministic, resumable order shared out over ranks.

The item drawn at (step, rank, slot) is a pure function of the seed: global draw ``g = (step * world + rank) *
batch + slot`` picks file ``perm_e[g % N]`` of epoch ``e = g // N`` (a seeded permutation per epoch) and a crop
offset from a generator seeded by ``(seed, g)``. Resuming at step ``s`` therefore replays exactly the batches a
straight run would have seen, with nothing but the step to save, and ranks never draw the same item.
"""

from __future__ import annotations

import hashlib
import logging
import math
import signal
from pathlib import Path

import soundfile as sf
import torch
from torch.utils.data import Dataset, Sampler

from codec12._fs import AUDIO_EXTENSIONS
from codec12.audio import load_audio
from codec12.data.inputs import directory_inputs
from codec12.data.manifest import ManifestRow, read_manifest

log = logging.getLogger("codec12.train")


def read_items(source: str | Path) -> list[ManifestRow]:
    """The training files of a directory (searched recursively) or a manifest (docs/manifests.md: ``text`` and
    its ``language`` feed the phonetic teacher), in the order found: the draws depend on it."""
    source = Path(source)
    if source.is_dir():
        items = directory_inputs(source)
    elif source.is_file():
        items = read_manifest(source)
    else:
        raise ValueError(f"{source}: no such directory or manifest")
    if not items:
        raise ValueError(f"{source}: no audio files found (looked for {', '.join(AUDIO_EXTENSIONS[:4])}, ...)")
    return items


def worker_init(_: int) -> None:
    """DataLoader workers ignore SIGTERM/SIGINT: a signal sent to the whole process group (a scheduler's
    pre-emption, Ctrl-C) is the main process's to handle at the end of its step; a worker killed by it would
    crash the step instead. The main process shuts the workers down when it exits."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)  # workers decode and crop; the model gets the cores' threads


def hash_fraction(name: str) -> float:
    """A stable pseudo-random number in [0, 1] for a file name (validation selection)."""
    return int(hashlib.sha1(name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def split_items(items: list[ManifestRow], fraction: float,
                max_files: int) -> tuple[list[ManifestRow], list[ManifestRow]]:
    """Hold out files by a hash of their path (stable when files are added), at least one when fraction > 0."""
    if fraction <= 0 or len(items) < 2:
        return items, []
    ranked = sorted(items, key=lambda it: hash_fraction(it.path))
    n = min(max(1, round(fraction * len(items))), max_files, len(items) - 1)
    valid = set(id(it) for it in ranked[:n])
    return [it for it in items if id(it) not in valid], [it for it in items if id(it) in valid]


def normalize_loudness(wav: torch.Tensor, target_db: float | None, max_gain_db: float) -> torch.Tensor:
    """Scale [C, T] to an RMS of ``target_db`` dBFS (gain capped at ``max_gain_db`` so near-silence is not
    blown up into noise), then keep the peak under 1."""
    if target_db is None:
        return wav
    rms = wav.pow(2).mean().sqrt().clamp(min=1e-8)
    gain = min(10 ** (target_db / 20) / float(rms), 10 ** (max_gain_db / 20))
    wav = wav * gain
    peak = float(wav.abs().max())
    return wav / peak * 0.99 if peak > 0.99 else wav


class AudioCrops(Dataset):
    """Random crops of ``crop_samples`` from a list of files (shorter files are zero-padded).

    Indexed by global draw number (see the module docstring). A file that fails to load is logged, recorded
    in :attr:`bad` and replaced by the next file of the epoch; only when every file fails is it an error.
    """

    def __init__(self, items: list[ManifestRow], sample_rate: int, channels: int, crop_samples: int, seed: int,
                 loudness_db: float | None = -23.0, max_gain_db: float = 30.0, cache: bool = False) -> None:
        if not items:
            raise ValueError("no training files")
        self.items = items
        self.sample_rate = sample_rate
        self.channels = channels
        self.crop_samples = crop_samples
        self.seed = seed
        self.loudness_db = loudness_db
        self.max_gain_db = max_gain_db
        self.cache = {} if cache else None
        self.bad: dict[str, str] = {}
        self._perms: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.items)

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perms = {epoch: torch.randperm(len(self.items), generator=g)}  # only the current epoch
        return self._perms[epoch]

    def load(self, index: int) -> torch.Tensor:
        item = self.items[index]
        if self.cache is not None and index in self.cache:
            return self.cache[index]
        wav = load_audio(item.path, self.sample_rate, self.channels)
        if self.cache is not None:
            self.cache[index] = wav
        return wav

    def __getitem__(self, draw: int) -> dict:
        n = len(self.items)
        epoch, pos = divmod(int(draw), n)
        perm = self._perm(epoch)
        for attempt in range(n):
            index = int(perm[(pos + attempt) % n])
            path = self.items[index].path
            if path in self.bad:
                continue
            try:
                wav = self.load(index)
            except ValueError as e:
                self.bad[path] = str(e)
                log.warning("skipping unreadable training file: %s", e)
                continue
            break
        else:
            raise ValueError(f"none of the {n} training files could be read; first error: "
                             f"{next(iter(self.bad.values()))}")
        g = torch.Generator().manual_seed(self.seed * 7_919 + int(draw) + 1)
        length = wav.shape[-1]
        text = self.items[index].text
        if length > self.crop_samples:
            start = int(torch.randint(0, length - self.crop_samples + 1, (1,), generator=g))
            wav = wav[:, start:start + self.crop_samples]
            text = None  # the transcript describes the whole file, not a crop of it
        else:
            wav = torch.nn.functional.pad(wav, (0, self.crop_samples - length))
        wav = normalize_loudness(wav, self.loudness_db, self.max_gain_db)
        return {"audio": wav, "text": text, "language": self.items[index].language, "path": path}


class DrawSampler(Sampler):
    """Infinite stream of global draw numbers for one rank, starting at ``start_step``."""

    def __init__(self, batch_size: int, rank: int = 0, world_size: int = 1, start_step: int = 0) -> None:
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.start_step = start_step

    def __iter__(self):
        step = self.start_step
        while True:
            base = (step * self.world_size + self.rank) * self.batch_size
            yield from range(base, base + self.batch_size)
            step += 1


def collate(items: list[dict]) -> dict:
    """-> {"audio": [B, C, T], "text": list[str | None], "language": list[str | None], "path": list[str]}."""
    return {"audio": torch.stack([it["audio"] for it in items]), "text": [it["text"] for it in items],
            "language": [it.get("language") for it in items], "path": [it["path"] for it in items]}


def load_validation(items: list[ManifestRow], sample_rate: int, channels: int, frame_size: int, seconds: float,
                    loudness_db: float | None, max_gain_db: float) -> list[dict]:
    """The first ``seconds`` (whole frames) of each validation file, loudness-normalized; unreadable files are
    logged and left out."""
    max_samples = max(1, int(seconds * sample_rate) // frame_size) * frame_size
    out = []
    for item in items:
        try:
            wav = load_audio(item.path, sample_rate, channels)
        except ValueError as e:
            log.warning("skipping unreadable validation file: %s", e)
            continue
        wav = wav[:, :max_samples]
        wav = torch.nn.functional.pad(wav, (0, math.ceil(wav.shape[-1] / frame_size) * frame_size - wav.shape[-1]))
        out.append({"audio": normalize_loudness(wav, loudness_db, max_gain_db), "text": item.text,
                    "language": item.language, "path": item.path})
    return out


def probe(items: list[ManifestRow]) -> tuple[list[ManifestRow], dict[str, str]]:
    """Drop files whose header cannot be read (cheap check before training); -> (good items, {path: reason})."""
    good, bad = [], {}
    for item in items:
        try:
            info = sf.info(item.path)
            if info.frames == 0:
                raise ValueError("empty audio (0 samples)")
        except Exception as e:  # soundfile raises several types for corrupt files
            reason = "file not found" if not Path(item.path).exists() else f"not a readable audio file ({e})"
            bad[item.path] = reason
            continue
        good.append(item)
    return good, bad
