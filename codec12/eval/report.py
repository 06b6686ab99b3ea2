"""The human-readable part of an eval: results table, rate-quality plot, per-file scores, spectrogram PNGs,
report.md and report.html."""

from __future__ import annotations

import html
import math
import os
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from codec12._fs import atomic_write
from codec12._optional import require
from codec12.eval.metrics import METRICS, SAMPLE_RATE

# Spectrogram colour scale in dB re a full-scale sine: fixed, so that panels and figures compare at a glance
# (speech read at usual levels peaks at -25 to -5 dB; -100 dB is below the codecs' noise floors).
DB_RANGE = (-100.0, 0.0)
RATE_QUALITY_PNG = "rate_quality.png"
SPREAD = "mean ± 95% CI"


def _pyplot():
    matplotlib = require("matplotlib", "eval", "codec12 eval's figures")
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save_png(fig, path: Path) -> None:
    """Write ``fig`` to ``path`` atomically and free it."""
    plt = _pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write(path, lambda p: fig.savefig(p, dpi=80, format="png"))
    finally:
        plt.close(fig)


def spectrogram_figure(signals: dict[str, np.ndarray], title: str = "",
                       db_range: tuple[float, float] = DB_RANGE):
    """One panel per signal (mono [T] at 16 kHz; first: the original): the STFT magnitude (512-sample Hann
    window, hop 128) in dB re a full-scale sine, every panel on the colour scale ``db_range``, with one colour
    bar; time in seconds, frequency in kHz. Returns the matplotlib figure."""
    plt = _pyplot()
    window = torch.hann_window(512)
    full_scale = float(window.sum()) / 2  # |STFT| of a full-scale sine at its frequency bin
    floor = full_scale * 10 ** ((db_range[0] - 20) / 20)  # well below the scale: silence stays finite
    specs = {}
    for name, wav in signals.items():
        mag = torch.stft(torch.from_numpy(np.ascontiguousarray(wav, np.float32)), 512, 128, window=window,
                         return_complex=True).abs()
        specs[name] = 20 * torch.log10(mag.clamp_min(floor) / full_scale).numpy()
    duration = len(next(iter(signals.values()))) / SAMPLE_RATE
    fig, axes = plt.subplots(len(specs), 1, figsize=(9, 1.6 * len(specs) + 0.6), sharex=True, squeeze=False,
                             layout="constrained")
    for ax, (name, spec) in zip(axes[:, 0], specs.items(), strict=True):
        image = ax.imshow(spec, origin="lower", aspect="auto", cmap="magma", vmin=db_range[0], vmax=db_range[1],
                          extent=(0, duration, 0, SAMPLE_RATE / 2000))
        ax.set_ylabel("freq. (kHz)", fontsize=8)
        ax.set_title(name, fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("time (s)")
    fig.colorbar(image, ax=axes[:, 0].tolist(), label="level (dB re full scale)", aspect=30, pad=0.01)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def spectrogram_png(path: Path, signals: dict[str, np.ndarray], title: str = "") -> None:
    """:func:`spectrogram_figure` written to ``path``."""
    _save_png(spectrogram_figure(signals, title), path)


def _arrow(metric: str) -> str:
    return "↑" if METRICS[metric].higher_is_better else "↓"


def rate_points(systems: dict[str, dict]) -> list[str]:
    """The systems a rate-quality plot shows, in order: all with a bitrate but the reference."""
    return [n for n, e in systems.items() if e.get("kind") != "reference" and e["bitrate_kbps"] is not None]


def rate_quality_figure(systems: dict[str, dict], metrics: Sequence[str]):
    """One panel per metric: each system's mean over files against its bitrate in kbps, bars the 95% CI. The
    model's codebook counts are one curve (each point labelled with its count), its continuous mode and each
    baseline a labelled point; the reference is left out. ``systems``: ``summary["systems"]`` of an eval.
    The x axis is logarithmic when the bitrates span more than a factor of 20. Returns the matplotlib figure."""
    plt = _pyplot()
    from matplotlib import ticker

    if not metrics:
        raise ValueError("a rate-quality plot needs at least one metric")
    shown = rate_points(systems)
    curve = sorted((n for n in shown if systems[n].get("kind") == "model" and systems[n].get("num_codebooks")),
                   key=lambda n: systems[n]["num_codebooks"])
    points = [n for n in shown if n not in curve]
    # The curve's name: what its systems' names share ("c12-tiny-16k" of "c12-tiny-16k-4cb", "-8cb"...).
    common = os.path.commonprefix(curve) if len(curve) > 1 else re.sub(r"-\d+cb$", "", curve[0]) if curve else ""
    curve_label = common.rstrip("-_ ") or "model"
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colour = {name: colours[i % len(colours)] for i, name in enumerate(points, start=1)}  # the same in every panel
    rates = [systems[n]["bitrate_kbps"] for n in shown if systems[n]["bitrate_kbps"] > 0]
    log_x = bool(rates) and max(rates) > 20 * min(rates)
    ncols = 2 if len(metrics) == 4 else min(3, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.3 * nrows), squeeze=False, layout="constrained")

    def scored(names: list[str], metric: str) -> list[tuple[str, float, float, float]]:
        out = []
        for name in names:
            m = systems[name]["metrics"].get(metric)
            if m is not None and m["mean"] is not None:
                out.append((name, systems[name]["bitrate_kbps"], m["mean"], m.get("ci95") or 0.0))
        return out

    for ax, metric in zip(axes.flat, metrics, strict=False):
        line = scored(curve, metric)
        if line:
            names, x, y, err = zip(*line, strict=True)
            ax.errorbar(x, y, yerr=err, marker="o", color=colours[0], capsize=3, label=f"{curve_label} (codebooks)")
            for name, xi, yi in zip(names, x, y, strict=True):
                ax.annotate(str(systems[name]["num_codebooks"]), (xi, yi), textcoords="offset points",
                            xytext=(4, -10), fontsize=7, color=colours[0])
        for name, x, y, err in scored(points, metric):
            model = systems[name].get("kind") == "model"
            ax.errorbar([x], [y], yerr=[err], marker="D" if model else "s", linestyle="none", color=colour[name],
                        capsize=3, label=name)
            # the model's continuous mode is labelled "continuous" beside its curve
            short = name.removeprefix(curve_label).lstrip("-_") if model and curve else name
            ax.annotate(short or name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7,
                        color=colour[name])
        ax.set_title(f"{METRICS[metric].label} {_arrow(metric)}", fontsize=10)
        ax.set_xlabel("bitrate (kbps)", fontsize=8)
        ax.grid(alpha=0.3)
        if log_x:
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    for ax in axes.flat[len(metrics):]:
        ax.remove()
    legend = {}  # every system once, whichever panels it has a value in
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    if legend:
        fig.legend(legend.values(), legend.keys(), loc="outside lower center", ncols=min(4, len(legend)), fontsize=8)
    fig.suptitle(f"Rate–quality: {SPREAD} over files", fontsize=10)
    return fig


def _number(value: float, like: float) -> str:
    return f"{value:.3f}" if abs(like) < 10 else f"{value:.1f}"


def _cell(entry: dict, metric: str) -> str:
    m = entry["metrics"][metric]
    if m["mean"] is None:
        return "–"
    text = _number(m["mean"], m["mean"])
    if m.get("ci95") is not None:
        text += f" ± {_number(m['ci95'], m['mean'])}"
    return text if m["not_covered"] == 0 else f"{text} ({m['count']}/{m['count'] + m['not_covered']})"


def _tolerance(result) -> str:
    return f"±{100 * result.summary['rate_tolerance']:g}%"


FIXED_COLUMNS = 4  # system, kbps, same bitrate, files: the metrics' columns follow


def table(result) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the results table: one row per system, its bitrate, the systems it is at equal
    bitrate with, and per metric the mean over files ± the half-width of the 95% confidence interval."""
    header = ["system", "kbps", f"same bitrate ({_tolerance(result)})", "files"] + [
        f"{METRICS[m].label} {_arrow(m)} ({SPREAD})" for m in result.metrics]
    rows = []
    for name in result.systems:
        e = result.summary["systems"][name]
        kbps = "–" if e["bitrate_kbps"] is None else f"{e['bitrate_kbps']:.2f}"
        same = ", ".join(e.get("equal_bitrate", [])) or "–"
        files = str(e["files"]) + (f" ({e['failed']} failed)" if e["failed"] else "")
        rows.append([name, kbps, same, files] + [_cell(e, m) for m in result.metrics])
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
    notes.append(f"Spread: `{SPREAD}` is the mean over files ± the half-width of its 95% confidence interval "
                 "(Student's t with n − 1 degrees of freedom, the files taken as a random sample); the standard "
                 "deviation over files is in summary.json. The systems score the same files, so a difference "
                 "between two of them is tested more tightly on the paired per-file values of metrics.csv.")
    tol = _tolerance(result)
    rule = (f"Equal bitrate: a baseline and a codebook count of the model compare at equal bitrate when their "
            f"measured bitrates differ by at most {tol[1:]} of the model's (|b − m| ≤ "
            f"{s['rate_tolerance']:g}·m); the column “same bitrate” names, on each side, the systems it is at "
            "equal bitrate with.")
    if not any(s["systems"][n].get("equal_bitrate") for n in result.systems):
        rule += f" No baseline here is within {tol} of a setting of the model: no row compares at equal bitrate."
    notes.append(rule)
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
    """report.md and report.html in ``result.out_dir``, with the rate-quality plot (PNGs of the examples and WAVs
    were written during the run). The plot is drawn when at least two systems besides the reference have a
    bitrate; an earlier run's plot is removed when this one has none."""
    out = result.out_dir
    plot = None
    if len(rate_points(result.summary["systems"])) >= 2 and result.metrics:
        plot = RATE_QUALITY_PNG
        _save_png(rate_quality_figure(result.summary["systems"], result.metrics), out / plot)
    else:
        (out / RATE_QUALITY_PNG).unlink(missing_ok=True)
    md = ["# codec12 evaluation", ""] + [f"- {line}" for line in _header_lines(result)] + ["", markdown_table(result),
                                                                                           ""]
    md += [f"- {n}" for n in _notes(result)]
    if plot:
        md += ["", "## Rate–quality", "", f"![{SPREAD} of each metric against the bitrate]({plot})"]
    md += ["", "Per-file scores: metrics.csv (one row per file and system), and per system in report.html."]
    for ex in result.examples:
        md += ["", f"## {ex['file']}", "", f"![spectrograms of {ex['file']}]({ex['spectrogram']})", ""]
        md += [f"- {name}: [{rel}]({rel})" for name, rel in ex["audio"].items()]
    _write(out / "report.md", "\n".join(md) + "\n")

    header, rows = table(result)
    best = _best_rows(result, rows)
    h = ["<!doctype html><html><head><meta charset='utf-8'><title>codec12 evaluation</title><style>",
         "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}",
         "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:left}",
         "td.text{text-align:left}summary{cursor:pointer;margin:.4em 0}img{max-width:100%}",
         ".best{font-weight:bold;background:#e8f4e8}audio{height:32px;vertical-align:middle}</style></head><body>",
         "<h1>codec12 evaluation</h1><ul>"]
    h += [f"<li>{inline_html(line)}</li>" for line in _header_lines(result)] + ["</ul><table><tr>"]
    h += [f"<th>{html.escape(c)}</th>" for c in header] + ["</tr>"]
    for i, row in enumerate(rows):
        cells = [f"<td class='best'>{html.escape(c)}</td>" if (i, j) in best else f"<td>{html.escape(c)}</td>"
                 for j, c in enumerate(row)]
        h.append("<tr>" + "".join(cells) + "</tr>")
    h += ["</table><ul>"] + [f"<li>{inline_html(n)}</li>" for n in _notes(result)] + ["</ul>"]
    if plot:
        h.append(f"<h2>Rate–quality</h2><img src='{plot}' alt='{SPREAD} of each metric against the bitrate'>")
    h += _per_file_html(result)
    for ex in result.examples:
        h.append(f"<h2>{html.escape(ex['file'])}</h2><img src='{html.escape(ex['spectrogram'])}' "
                 f"alt='spectrograms'><table>")
        for name, rel in ex["audio"].items():
            h.append(f"<tr><td>{html.escape(name)}</td><td><audio controls preload='none' "
                     f"src='{html.escape(rel)}'></audio></td></tr>")
        h.append("</table>")
    h.append("</body></html>")
    _write(out / "report.html", "\n".join(h) + "\n")


def _per_file_html(result) -> list[str]:
    """A collapsed table per system: one row per file with its bitrate, delay, every metric and the notes."""
    h = ["<h2>Per-file scores</h2><p>One table per system (click to open); the same values are in "
         "<code>metrics.csv</code>. An empty cell: the metric could not score the file (the reason is in the notes)."
         "</p>"]
    header = ["file", "kbps", "delay ms"] + [f"{METRICS[m].label} {_arrow(m)}" for m in result.metrics] + ["notes"]
    for name in result.systems:
        mine = [r for r in result.rows if r["system"] == name]
        h.append(f"<details><summary>{html.escape(name)}: {len(mine)} files</summary><table><tr>"
                 + "".join(f"<th>{html.escape(c)}</th>" for c in header) + "</tr>")
        for r in mine:
            if "error" in r:
                h.append(f"<tr><td>{html.escape(r['file'])}</td><td class='text' colspan='{len(header) - 1}'>"
                         f"failed: {html.escape(r['error'])}</td></tr>")
                continue
            cells = [html.escape(r["file"]), f"{r['bitrate_kbps']:.2f}", f"{r['delay_ms']:.1f}"]
            cells += [_number(r[m], r[m]) if m in r else "" for m in result.metrics]
            h.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells)
                     + f"<td class='text'>{html.escape(r.get('notes', ''))}</td></tr>")
        h.append("</table></details>")
    return h


def _best_rows(result, rows: list[list[str]]) -> set[tuple[int, int]]:
    """(row, column) of the best system per metric, the reference row left out."""
    best = set()
    for j, metric in enumerate(result.metrics, start=FIXED_COLUMNS):
        sign = 1 if METRICS[metric].higher_is_better else -1
        scored = [(sign * result.summary["systems"][n]["metrics"][metric]["mean"], i)
                  for i, n in enumerate(result.systems)
                  if n != "original" and result.summary["systems"][n]["metrics"][metric]["mean"] is not None]
        if scored:
            best.add((max(scored)[1], j))
    return best


def _write(path: Path, text: str) -> None:
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))
