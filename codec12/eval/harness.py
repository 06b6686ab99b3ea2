"""The evaluation harness and the ``codec12 eval`` command.

Every audio file of a directory is read at 16 kHz (mono), round-tripped through each system, aligned when the
system asks for it, and scored against the original. Outputs, in the report directory:

- ``metrics.csv``: one row per (file, system) with every metric (empty where a metric could not score the clip,
  the reason in ``notes``), the bits actually spent, and the delay that was compensated;
- ``summary.json``: per system its kind, bitrate, the systems it is at equal bitrate with, and per metric the mean,
  standard deviation and 95% confidence interval over the files it covered and how many those were; the systems
  and metrics that were skipped and why, and the files that could not be read;
- ``report.md`` / ``report.html``: the results table, a rate-quality plot (``rate_quality.png``), per-file scores
  (HTML), and spectrogram PNGs and (HTML) audio players for a few example files.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from codec12._fs import AUDIO_EXTENSIONS, atomic_write, find_audio_files
from codec12._optional import require
from codec12.data.manifest import read_manifest
from codec12.eval.align import align, fit_length
from codec12.eval.metrics import CORE_METRICS, METRICS, SAMPLE_RATE, MetricError, MetricUnavailable
from codec12.eval.systems import (
    FunctionSystem,
    ModelSystem,
    System,
    SystemUnavailable,
    make_baseline,
)

REFERENCE = "original"
# A baseline and a setting of the model are at equal bitrate when their measured bitrates differ by at most this
# fraction of the model's.
RATE_TOLERANCE = 0.10


@dataclass
class EvalResult:
    """What :func:`evaluate` found. ``rows``: one dict per (file, system), as in metrics.csv."""

    out_dir: Path
    systems: list[str]
    metrics: list[str]
    rows: list[dict]
    summary: dict
    bad_files: list[dict] = field(default_factory=list)
    skipped_systems: dict[str, str] = field(default_factory=dict)
    skipped_metrics: dict[str, str] = field(default_factory=dict)
    examples: list[dict] = field(default_factory=list)


def list_audio_files(data_dir: str | os.PathLike) -> list[Path]:
    """Audio files (by extension) under ``data_dir``, recursively, sorted."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise NotADirectoryError(f"{data_dir}: not a directory")
    return find_audio_files(data_dir)


def read_transcripts(manifest: str | os.PathLike, data_dir: str | os.PathLike) -> dict[str, str]:
    """Transcripts from a manifest (docs/manifests.md) whose paths are relative to ``data_dir`` -> {file path
    relative to ``data_dir``, as the manifest names it (with or without its suffix): transcript}."""
    out = {}
    for row in read_manifest(manifest, root=data_dir):
        if row.text is not None:
            out[Path(os.path.relpath(row.path, data_dir)).as_posix()] = row.text
    if not out:
        raise ValueError(f"{manifest}: no transcripts; the manifest needs a 'text' (or 'transcript') column")
    return out


def _transcript(transcripts: dict[str, str], file_id: str) -> str | None:
    return transcripts.get(file_id) or transcripts.get(str(Path(file_id).with_suffix("")))


def reference_system() -> System:
    """The original itself: the ceiling of every metric (PESQ-WB 4.64...), reported as the first row."""
    return FunctionSystem(REFERENCE, lambda wav: wav, bitrate=SAMPLE_RATE * 16, kind="reference")


def evaluate(data_dir: str | os.PathLike, systems: Sequence[System], out_dir: str | os.PathLike, *,
             metrics: Sequence[str] = CORE_METRICS, transcripts: dict[str, str] | None = None,
             skipped_systems: dict[str, str] | None = None, num_examples: int = 3, max_shift_s: float = 0.25,
             include_reference: bool = True, progress: bool = False, info: dict | None = None,
             rate_tolerance: float = RATE_TOLERANCE) -> EvalResult:
    """Score every audio file of ``data_dir`` through ``systems`` and write the report into ``out_dir``.

    ``rate_tolerance``: the relative bitrate difference up to which a baseline counts as at the same bitrate as a
    setting of the model (:func:`equal_bitrate`). Unreadable files are listed in ``bad_files`` and skipped; a
    system failing on one file is recorded on that row and the run goes on.
    """
    from tqdm import tqdm

    if not 0 <= rate_tolerance < 1:
        raise ValueError(f"rate_tolerance must be in [0, 1), got {rate_tolerance}")
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    files = list_audio_files(data_dir)
    if not files:
        raise ValueError(f"{data_dir}: no audio files (looked for {', '.join(AUDIO_EXTENSIONS[:4])}, ...)")
    systems = ([reference_system()] if include_reference else []) + list(systems)
    names = [s.name for s in systems]
    if len(set(names)) != len(names):
        raise ValueError(f"system names must be unique, got {names}")
    transcripts = transcripts or {}
    scorers, skipped_metrics = {}, {}
    for name in metrics:
        metric = METRICS[name]
        if metric.needs_transcript and not transcripts:
            skipped_metrics[name] = f"{metric.label} needs transcripts: pass a manifest with a transcript column"
            continue
        try:
            scorers[name] = metric.load()
        except MetricUnavailable as e:
            skipped_metrics[name] = str(e)
    out_dir.mkdir(parents=True, exist_ok=True)
    max_shift = int(max_shift_s * SAMPLE_RATE)

    rows, bad_files, examples = [], [], []
    for path in tqdm(files, desc="eval", unit="file", disable=not progress):
        file_id = path.relative_to(data_dir).as_posix()
        try:
            from codec12.audio import load_audio

            ref = load_audio(path, SAMPLE_RATE)[0].numpy()
        except ValueError as e:
            bad_files.append({"file": file_id, "reason": str(e)})
            continue
        duration = len(ref) / SAMPLE_RATE
        transcript = _transcript(transcripts, file_id)
        decoded = {}
        for system in systems:
            row = {"file": file_id, "system": system.name, "duration_s": round(duration, 4)}
            notes = []
            try:
                rt = system.roundtrip(ref)
                if system.align:
                    deg, delay = align(ref, rt.audio, max_shift)
                else:
                    deg, delay = fit_length(rt.audio, len(ref)), 0
            except Exception as e:  # a codec crashing on one file must not end the run
                row["error"] = f"{type(e).__name__}: {e}"
                rows.append(row)
                continue
            row["bitrate_kbps"] = rt.bits / duration / 1000
            row["delay_ms"] = 1000 * delay / SAMPLE_RATE
            for name, score in scorers.items():
                try:
                    row[name] = score(ref, deg, transcript)
                except MetricError as e:
                    notes.append(str(e))
            if notes:
                row["notes"] = "; ".join(notes)
            rows.append(row)
            if len(examples) < num_examples:
                decoded[system.name] = deg
        if len(examples) < num_examples and decoded:
            examples.append(_write_example(out_dir, file_id, decoded))

    if not rows:
        raise ValueError(f"{data_dir}: none of the {len(files)} audio files could be read: "
                         + "; ".join(b["reason"] for b in bad_files[:3]))
    scored = [n for n in metrics if n in scorers]
    summary = summarize(rows, names, scored)
    for system in systems:
        summary["systems"][system.name].update(kind=system.kind, num_codebooks=system.num_codebooks)
    for name, same in equal_bitrate(summary["systems"], rate_tolerance).items():
        summary["systems"][name]["equal_bitrate"] = same
    summary.update(data=str(data_dir), files=len(files), files_scored=len(files) - len(bad_files),
                   bad_files=bad_files, skipped_systems=dict(skipped_systems or {}), skipped_metrics=skipped_metrics,
                   sample_rate=SAMPLE_RATE, rate_tolerance=rate_tolerance, **(info or {}))
    result = EvalResult(out_dir=out_dir, systems=names, metrics=scored, rows=rows, summary=summary,
                        bad_files=bad_files, skipped_systems=dict(skipped_systems or {}),
                        skipped_metrics=skipped_metrics, examples=examples)
    _write_csv(out_dir / "metrics.csv", rows, scored)
    _atomic_text(out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    from codec12.eval.report import write_report

    write_report(result)
    return result


def summarize(rows: list[dict], systems: list[str], metrics: list[str]) -> dict:
    """Per system: files round-tripped, failures, mean bitrate, and per metric the spread over the files it
    covered (:func:`spread`) with ``count`` (covered) and ``not_covered`` (clips the metric could not score)."""
    out = {}
    for name in systems:
        mine = [r for r in rows if r["system"] == name]
        ok = [r for r in mine if "error" not in r]
        entry = {"files": len(ok), "failed": len(mine) - len(ok),
                 "errors": [f"{r['file']}: {r['error']}" for r in mine if "error" in r][:20],
                 "bitrate_kbps": _mean([r["bitrate_kbps"] for r in ok]),
                 "delay_ms": _mean([r["delay_ms"] for r in ok]), "metrics": {}}
        for metric in metrics:
            values = [r[metric] for r in ok if metric in r]
            entry["metrics"][metric] = {**spread(values), "count": len(values), "not_covered": len(ok) - len(values),
                                        "higher_is_better": METRICS[metric].higher_is_better}
        out[name] = entry
    return {"systems": out}


def spread(values: Sequence[float]) -> dict[str, float | None]:
    """``mean``, ``std`` (sample standard deviation, n - 1 in the denominator) and ``ci95``: the half-width of
    the 95% confidence interval of the mean, ``t(0.975, n - 1) * std / sqrt(n)`` (Student's t, the files taken
    as a random sample). None where there are too few values (no mean without values, no spread without two)."""
    n = len(values)
    if n < 2:
        return {"mean": _mean(list(values)), "std": None, "ci95": None}
    t = require("scipy.stats", "eval", "the confidence intervals of codec12 eval").t
    std = float(np.std(values, ddof=1))
    return {"mean": float(np.mean(values)), "std": std, "ci95": float(t.ppf(0.975, n - 1)) * std / np.sqrt(n)}


def equal_bitrate(systems: dict[str, dict], tolerance: float = RATE_TOLERANCE) -> dict[str, list[str]]:
    """Which systems compare at equal bitrate: a baseline and a setting of the model (``kind`` in the
    :func:`summarize` entries) whose mean bitrates ``b`` and ``m`` satisfy ``|b - m| <= tolerance * m``.
    Returns, for every system, the names it is at equal bitrate with (baselines for a model setting, model
    settings for a baseline; empty for the rest), in the order of ``systems``."""
    def rate(name: str, kind: str) -> float | None:
        entry = systems[name]
        return entry["bitrate_kbps"] if entry.get("kind") == kind else None

    same: dict[str, list[str]] = {name: [] for name in systems}
    for m in systems:
        for b in systems:
            rm, rb = rate(m, "model"), rate(b, "baseline")
            # (1 + 1e-9): a pair exactly on the boundary stays in despite float rounding
            if rm is not None and rb is not None and abs(rb - rm) <= tolerance * rm * (1 + 1e-9):
                same[m].append(b)
                same[b].append(m)
    for name in same:
        same[name].sort(key=list(systems).index)
    return same


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _write_csv(path: Path, rows: list[dict], metrics: list[str]) -> None:
    columns = ["file", "system", "duration_s", "bitrate_kbps", "delay_ms", *metrics, "notes", "error"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    _atomic_text(path, buf.getvalue())


def _atomic_text(path: Path, text: str) -> None:
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "file"


def _write_example(out_dir: Path, file_id: str, decoded: dict[str, np.ndarray]) -> dict:
    """Save each system's aligned output as 16 kHz WAV and a spectrogram comparison PNG."""
    from codec12.eval.report import spectrogram_png

    slug = _slug(file_id)
    audio_dir = out_dir / "audio" / slug
    audio_dir.mkdir(parents=True, exist_ok=True)
    audio = {}
    for name, wav in decoded.items():
        rel = f"audio/{slug}/{_slug(name)}.wav"
        atomic_write(out_dir / rel, lambda p, wav=wav: sf.write(str(p), np.clip(wav, -1, 1), SAMPLE_RATE,
                                                                 subtype="PCM_16", format="WAV"))
        audio[name] = rel
    png = f"spectrograms/{slug}.png"
    spectrogram_png(out_dir / png, decoded, title=file_id)
    return {"file": file_id, "audio": audio, "spectrogram": png}


# ---- command line
def parse_int_list(spec: str) -> list[int]:
    try:
        values = [int(s) for s in spec.split(",") if s.strip()]
    except ValueError as e:
        raise ValueError(f"--num-codebooks: expected integers like 4,8,12, got {spec!r}") from e
    if not values:
        raise ValueError("--num-codebooks: no value given")
    return values


def build_systems(codec, num_codebooks: Sequence[int] | None, baselines: Sequence[str],
                  tool_path: str | None = None, *, continuous: bool = False) -> tuple[list[System], dict[str, str]]:
    """Model systems (one per codebook count, all codebooks when None; then the continuous mode when asked)
    and baselines; baselines whose tools are missing come back in the second value with the reason instead."""
    systems: list[System] = []
    if codec is not None:
        for k in num_codebooks or [codec.num_codebooks]:
            systems.append(ModelSystem(codec, k))
        if continuous:
            systems.append(ModelSystem(codec, continuous=True))
    skipped = {}
    for name in baselines:
        try:
            systems.append(make_baseline(name, tool_path))
        except SystemUnavailable as e:
            skipped[name] = str(e)
    return systems, skipped


