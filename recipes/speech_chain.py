"""Audio helpers of ``prepare_tiny_data.py``: silence trimming, joining short clips into utterances, and an
augmentation that imitates real recording chains (room, microphone, background, channel, level).

All randomness comes from the ``random.Random`` passed in (torch noise from a generator seeded by it), so a
fixed seed gives the same audio on every run. Filters are torchaudio's biquads and FFT convolution; the
biquads clamp their output to [-1, 1], so the chain runs 26 dB under full scale.
"""

from __future__ import annotations

import math
import random

import torch
import torchaudio.functional as AF

FRAME_S = 0.01


def frame_db(wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """RMS level in dBFS of consecutive 10 ms frames of a mono ``[1, T]`` signal."""
    hop = int(sample_rate * FRAME_S)
    n = wav.shape[-1] // hop
    if n == 0:
        return torch.full((1,), -120.0)
    frames = wav[0, : n * hop].reshape(n, hop)
    return 10 * torch.log10(frames.pow(2).mean(dim=1).clamp(min=1e-12))


def trim_silence(wav: torch.Tensor, sample_rate: int, below_peak_db: float = 35.0,
                 margin_s: float = 0.04) -> torch.Tensor | None:
    """Cut leading and trailing frames more than ``below_peak_db`` under the loudest frame (keeping a margin);
    None when nothing is left."""
    db = frame_db(wav, sample_rate)
    active = (db > db.max() - below_peak_db) & (db > -60)
    if not bool(active.any()):
        return None
    idx = torch.nonzero(active)[:, 0]
    hop = int(sample_rate * FRAME_S)
    margin = int(sample_rate * margin_s)
    start = max(0, int(idx[0]) * hop - margin)
    end = min(wav.shape[-1], (int(idx[-1]) + 1) * hop + margin)
    return wav[..., start:end]


def active_db(wav: torch.Tensor, sample_rate: int) -> float:
    """Level of the loudest tenth of the frames (a rough active-speech level), dBFS."""
    db = frame_db(wav, sample_rate)
    k = max(1, db.numel() // 10)
    return float(db.topk(k).values.mean())


def is_silent(wav: torch.Tensor, sample_rate: int, floor_db: float = -55.0) -> bool:
    return wav.numel() == 0 or active_db(wav, sample_rate) < floor_db


def fade(wav: torch.Tensor, sample_rate: int, fade_s: float = 0.01) -> torch.Tensor:
    n = min(int(sample_rate * fade_s), wav.shape[-1] // 2)
    if n < 2:
        return wav
    ramp = torch.linspace(0, 1, n)
    wav = wav.clone()
    wav[..., :n] *= ramp
    wav[..., -n:] *= ramp.flip(0)
    return wav


def join_short(pieces: list[tuple[str, torch.Tensor]], sample_rate: int, rng: random.Random,
               min_s: float = 3.0, max_s: float = 8.0, gap_s: tuple[float, float] = (0.08, 0.25),
               ) -> list[tuple[list[str], torch.Tensor]]:
    """Join short clips of one voice, in a shuffled order, into utterances of about ``min_s``..``max_s``
    seconds with pauses of ``gap_s``; each piece is brought to the group's median level first. A remainder
    shorter than ``min_s`` is appended to the last utterance. -> [(ids of the pieces, wav)]."""
    if not pieces:
        return []
    order = list(pieces)
    rng.shuffle(order)
    levels = sorted(active_db(w, sample_rate) for _, w in order)
    target_db = levels[len(levels) // 2]
    groups: list[list[tuple[str, torch.Tensor]]] = []
    current: list[tuple[str, torch.Tensor]] = []
    length = 0.0
    goal = rng.uniform(min_s, max_s)
    for key, wav in order:
        dur = wav.shape[-1] / sample_rate
        if current and length + dur > max_s:
            groups.append(current)
            current, length, goal = [], 0.0, rng.uniform(min_s, max_s)
        current.append((key, wav))
        length += dur + sum(gap_s) / 2
        if length >= goal:
            groups.append(current)
            current, length, goal = [], 0.0, rng.uniform(min_s, max_s)
    if current:
        if groups and length < min_s:
            groups[-1].extend(current)
        else:
            groups.append(current)
    out = []
    for group in groups:
        parts = []
        for i, (_, wav) in enumerate(group):
            if i:
                parts.append(torch.zeros(1, int(sample_rate * rng.uniform(*gap_s))))
            gain = 10 ** ((target_db - active_db(wav, sample_rate)) / 20)
            parts.append(fade(wav * min(gain, 10.0), sample_rate))
        out.append(([k for k, _ in group], torch.cat(parts, dim=-1)))
    return out


# --- recording-chain augmentation ---------------------------------------------------------------------------

def synthetic_rir(sample_rate: int, rng: random.Random, gen: torch.Generator) -> tuple[torch.Tensor, float]:
    """Room impulse response: a direct path, a few early reflections (2-25 ms) and a tail of exponentially
    decaying noise (60 dB down after RT60, 0.15-0.8 s), darkened by a low-pass. -> (rir [1, N], rt60)."""
    rt60 = rng.uniform(0.15, 0.8)
    n = int(sample_rate * min(1.2 * rt60, 1.0))
    t = torch.arange(n) / sample_rate
    tail = 0.05 * torch.randn(1, n, generator=gen) * torch.exp(-6.9078 * t / rt60)  # lfilter clamps at +-1
    tail = AF.lowpass_biquad(tail, sample_rate, rng.uniform(2500, 7000))
    onset = int(sample_rate * rng.uniform(0.002, 0.01))  # the tail starts after the direct sound
    tail[..., :onset] = 0
    rir = tail / tail.pow(2).sum().sqrt().clamp(min=1e-8)
    drr_db = rng.uniform(-4, 12)  # direct-to-reverberant ratio
    direct = 10 ** (drr_db / 20)
    rir[0, 0] += direct
    for _ in range(rng.randint(2, 6)):
        k = int(sample_rate * rng.uniform(0.002, 0.025))
        if k < n:
            rir[0, k] += direct * rng.uniform(0.15, 0.6) * rng.choice((-1, 1))
    return rir / rir.abs().max(), rt60


def reverb(wav: torch.Tensor, sample_rate: int, rng: random.Random, gen: torch.Generator) -> tuple[torch.Tensor, str]:
    rir, rt60 = synthetic_rir(sample_rate, rng, gen)
    out = AF.fftconvolve(wav, rir)[..., : wav.shape[-1]]
    out = out * (wav.pow(2).mean() / out.pow(2).mean().clamp(min=1e-10)).sqrt()
    return out, f"reverb{rt60:.2f}"


def band_limit(wav: torch.Tensor, sample_rate: int, rng: random.Random) -> tuple[torch.Tensor, str]:
    kind = rng.choice(("phone", "4k", "7k"))
    if kind == "phone":  # 300-3400 Hz, two biquads a side (24 dB/octave)
        for _ in range(2):
            wav = AF.highpass_biquad(wav, sample_rate, 300.0)
            wav = AF.lowpass_biquad(wav, sample_rate, 3400.0)
    else:
        cutoff = 4000.0 if kind == "4k" else 7000.0
        cutoff = min(cutoff, 0.45 * sample_rate)
        for _ in range(2):
            wav = AF.lowpass_biquad(wav, sample_rate, cutoff)
    return wav, f"band-{kind}"


def mic_colour(wav: torch.Tensor, sample_rate: int, rng: random.Random) -> tuple[torch.Tensor, str]:
    """One to three peaking filters of +-6 dB and a low and a high shelf of +-4 dB."""
    for _ in range(rng.randint(1, 3)):
        centre = math.exp(rng.uniform(math.log(150), math.log(min(6500, 0.4 * sample_rate))))
        wav = AF.equalizer_biquad(wav, sample_rate, centre, rng.uniform(-6, 6), rng.uniform(0.7, 2.5))
    wav = AF.bass_biquad(wav, sample_rate, rng.uniform(-4, 4), rng.uniform(100, 300))
    wav = AF.treble_biquad(wav, sample_rate, rng.uniform(-4, 4), min(rng.uniform(3000, 6000), 0.4 * sample_rate))
    return wav, "mic"


def coloured_noise(n: int, sample_rate: int, rng: random.Random, gen: torch.Generator) -> tuple[torch.Tensor, str]:
    """White, pink or brown-ish noise (power falling as f^-alpha, alpha 0..2) with a random low cut."""
    alpha = rng.choice((0.0, 1.0, 1.5, 2.0))
    spec = torch.fft.rfft(torch.randn(1, n, generator=gen))
    f = torch.fft.rfftfreq(n, 1 / sample_rate).clamp(min=rng.uniform(20, 200))
    noise = torch.fft.irfft(spec * f.pow(-alpha / 2), n=n)
    return noise, f"noise{alpha:g}"


def babble(n: int, pool: list[torch.Tensor], rng: random.Random) -> tuple[torch.Tensor, str]:
    """Three to six other clips, each at a random offset and level, looped to length n."""
    out = torch.zeros(1, n)
    talkers = rng.randint(3, 6)
    for clip in rng.sample(pool, min(talkers, len(pool))):
        reps = math.ceil((n + clip.shape[-1]) / clip.shape[-1])
        looped = clip.repeat(1, reps)
        start = rng.randrange(clip.shape[-1])
        part = looped[..., start:start + n]
        out += part / part.pow(2).mean().clamp(min=1e-8).sqrt() * 10 ** (rng.uniform(-6, 0) / 20)
    return out, f"babble{talkers}"


def add_noise(wav: torch.Tensor, sample_rate: int, rng: random.Random, gen: torch.Generator,
              pool: list[torch.Tensor]) -> tuple[torch.Tensor, str]:
    if pool and rng.random() < 0.4:
        noise, name = babble(wav.shape[-1], pool, rng)
    else:
        noise, name = coloured_noise(wav.shape[-1], sample_rate, rng, gen)
    snr = rng.uniform(5, 30)
    power = 10 ** (active_db(wav, sample_rate) / 10)  # against the speech, not the pauses
    noise = noise * (power / noise.pow(2).mean().clamp(min=1e-10) / 10 ** (snr / 10)).sqrt()
    return wav + noise, f"{name}@{snr:.0f}dB"


def level(wav: torch.Tensor, rng: random.Random) -> tuple[torch.Tensor, str]:
    """A gain of -20..+6 dB, half the time with a slow drift of up to +-4 dB across the clip."""
    gain_db = rng.uniform(-20, 6)
    drift = rng.uniform(-4, 4) if rng.random() < 0.5 else 0.0
    ramp = 10 ** ((gain_db + drift * torch.linspace(-0.5, 0.5, wav.shape[-1])) / 20)
    return wav * ramp, f"gain{gain_db:+.0f}dB"


CHAIN_KINDS = ("reverb", "mic", "noise", "band", "level")


def recording_chain(wav: torch.Tensor, sample_rate: int, rng: random.Random,
                    pool: list[torch.Tensor]) -> tuple[torch.Tensor, str]:
    """A random non-empty subset of room reverberation, background noise (coloured or babble, 5-30 dB SNR),
    microphone colour, band limit and level change, applied in that order (room, mic, channel, level).
    -> (audio, a description such as ``reverb0.42+mic+band-phone``)."""
    kinds = [k for k in CHAIN_KINDS if rng.random() < 0.5] or [rng.choice(CHAIN_KINDS)]
    gen = torch.Generator().manual_seed(rng.randrange(2**31))
    # torchaudio's biquads clamp their output to [-1, 1]: work 26 dB under full scale, scale back at the end
    headroom = 0.05 / float(wav.abs().max().clamp(min=1e-6))
    wav = wav * headroom
    done = []
    if "reverb" in kinds:
        wav, name = reverb(wav, sample_rate, rng, gen)
        done.append(name)
    if "noise" in kinds:
        wav, name = add_noise(wav, sample_rate, rng, gen, pool)
        done.append(name)
    if "mic" in kinds:
        wav, name = mic_colour(wav, sample_rate, rng)
        done.append(name)
    if "band" in kinds:
        wav, name = band_limit(wav, sample_rate, rng)
        done.append(name)
    if "level" in kinds:
        wav, name = level(wav, rng)
        done.append(name)
    return wav / headroom, "+".join(done)
