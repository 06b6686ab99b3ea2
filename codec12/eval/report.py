"""The human-readable part of an eval: results table, spectrogram PNGs, report.md and report.html."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from codec12._fs import atomic_write
from codec12._optional import require
from codec12.eval.metrics import METRICS, SAMPLE_RATE


def spectrogram_png(path: Path, signals: dict[str, np.ndarray], title: str = "") -> None:
    """One panel per signal (first: the original), log-magnitude STFT on a shared colour scale."""
    matplotlib = require("matplotlib", "eval", "codec12 eval's spectrogram figures")
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    window = torch.hann_window(512)
    specs = {}
    for name, wav in signals.items():
        mag = torch.stft(torch.from_numpy(np.ascontiguousarray(wav, np.float32)), 512, 128, window=window,
                         return_complex=True).abs()
        specs[name] = 20 * torch.log10(mag.clamp_min(1e-5)).numpy()
    top = max(float(s.max()) for s in specs.values())
    duration = len(next(iter(signals.values()))) / SAMPLE_RATE
    fig, axes = plt.subplots(len(specs), 1, figsize=(9, 1.6 * len(specs) + 0.4), sharex=True, squeeze=False)
    for ax, (name, spec) in zip(axes[:, 0], specs.items(), strict=True):
        ax.imshow(spec, origin="lower", aspect="auto", cmap="magma", vmin=top - 80, vmax=top,
                  extent=(0, duration, 0, SAMPLE_RATE / 2000))
        ax.set_ylabel("kHz")
        ax.set_title(name, fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("seconds")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write(path, lambda p: fig.savefig(p, dpi=80, format="png"))
    finally:
        plt.close(fig)


def _cell(entry: dict, metric: str) -> str:
    m = entry["metrics"][metric]
    if m["mean"] is None:
        return "–"
    text = f"{m['mean']:.3f}" if abs(m["mean"]) < 10 else f"{m['mean']:.1f}"
    return text if m["not_covered"] == 0 else f"{text} ({m['count']}/{m['count'] + m['not_covered']})"


def table(result) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the results table: one row per system, means over files."""
    header = ["system", "kbps", "files"] + [
        f"{METRICS[m].label} {'↑' if METRICS[m].higher_is_better else '↓'}" for m in result.metrics]
    rows = []
    for name in result.systems:
        e = result.summary["systems"][name]
        kbps = "–" if e["bitrate_kbps"] is None else f"{e['bitrate_kbps']:.2f}"
        files = str(e["files"]) + (f" ({e['failed']} failed)" if e["failed"] else "")
        rows.append([name, kbps, files] + [_cell(e, m) for m in result.metrics])
    return header, rows


def markdown_table(result) -> str:
    header, rows = table(result)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _notes(result) -> list[str]:
    s = result.summary
    notes = [f"{s['files_scored']} of {s['files']} files scored at {SAMPLE_RATE} Hz mono. A value shown as "
             "`x (n/N)` is the mean over the n of N files the metric could score (PESQ and STOI cannot score very "
             "short or silent clips); per-file values and reasons are in metrics.csv."]
    notes.append("Classical baselines are delay-compensated (cross-correlation) before scoring; the bitrate is "
                 "the bits actually written (Opus: its packets, without the Ogg container's ~1 kB per file). "
                 "`original` is the reference against itself (the ceiling of each metric).")
    for name, reason in result.skipped_systems.items():
        notes.append(f"System **{name}** skipped: {reason}")
    for name, reason in result.skipped_metrics.items():
        notes.append(f"Metric **{name}** skipped: {reason}")
    for bad in result.bad_files:
        notes.append(f"Bad file skipped: `{bad['file']}`: {bad['reason']}")
    for name in result.systems:
        for err in result.summary["systems"][name]["errors"]:
            notes.append(f"{name} failed on {err}")
    return notes


def inline_html(text: str) -> str:
    """The inline Markdown the notes use (```code``` and ``**bold**``) as escaped HTML."""
    out = []
    for i, part in enumerate(re.split(r"`([^`]*)`", text)):  # odd parts were between backticks
        if i % 2:
            out.append(f"<code>{html.escape(part)}</code>")
        else:
            out.append(re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(part)))
    return "".join(out)


def _header_lines(result) -> list[str]:
    s = result.summary
    lines = [f"Data: `{s['data']}`", f"Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}"]
    if "model" in s:
        lines.insert(0, f"Model: `{s['model']}` ({s.get('model_name') or 'unnamed'}, config {s.get('config_hash')}, "
                        f"{s.get('model_sample_rate')} Hz)")
    return lines


def write_report(result) -> None:
    """report.md and report.html in ``result.out_dir`` (PNGs and WAVs were written during the run)."""
    out = result.out_dir
    md = ["# codec12 evaluation", ""] + [f"- {line}" for line in _header_lines(result)] + ["", markdown_table(result),
                                                                                           ""]
    md += [f"- {n}" for n in _notes(result)]
    for ex in result.examples:
        md += ["", f"## {ex['file']}", "", f"![spectrograms of {ex['file']}]({ex['spectrogram']})", ""]
        md += [f"- {name}: [{rel}]({rel})" for name, rel in ex["audio"].items()]
    _write(out / "report.md", "\n".join(md) + "\n")

    header, rows = table(result)
    best = _best_rows(result, rows)
    h = ["<!doctype html><html><head><meta charset='utf-8'><title>codec12 evaluation</title><style>",
         "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}",
         "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:left}",
         ".best{font-weight:bold;background:#e8f4e8}audio{height:32px;vertical-align:middle}</style></head><body>",
         "<h1>codec12 evaluation</h1><ul>"]
    h += [f"<li>{inline_html(line)}</li>" for line in _header_lines(result)] + ["</ul><table><tr>"]
    h += [f"<th>{html.escape(c)}</th>" for c in header] + ["</tr>"]
    for i, row in enumerate(rows):
        cells = [f"<td class='best'>{html.escape(c)}</td>" if (i, j) in best else f"<td>{html.escape(c)}</td>"
                 for j, c in enumerate(row)]
        h.append("<tr>" + "".join(cells) + "</tr>")
    h += ["</table><ul>"] + [f"<li>{inline_html(n)}</li>" for n in _notes(result)] + ["</ul>"]
    for ex in result.examples:
        h.append(f"<h2>{html.escape(ex['file'])}</h2><img src='{html.escape(ex['spectrogram'])}' "
                 f"alt='spectrograms'><table>")
        for name, rel in ex["audio"].items():
            h.append(f"<tr><td>{html.escape(name)}</td><td><audio controls preload='none' "
                     f"src='{html.escape(rel)}'></audio></td></tr>")
        h.append("</table>")
    h.append("</body></html>")
    _write(out / "report.html", "\n".join(h) + "\n")


def _best_rows(result, rows: list[list[str]]) -> set[tuple[int, int]]:
    """(row, column) of the best system per metric, the reference row left out."""
    best = set()
    for j, metric in enumerate(result.metrics, start=3):
        sign = 1 if METRICS[metric].higher_is_better else -1
        scored = [(sign * result.summary["systems"][n]["metrics"][metric]["mean"], i)
                  for i, n in enumerate(result.systems)
                  if n != "original" and result.summary["systems"][n]["metrics"][metric]["mean"] is not None]
        if scored:
            best.add((max(scored)[1], j))
    return best


def _write(path: Path, text: str) -> None:
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))
