"""Reconstruction quality of a codec12 model against the classical baselines on a dev set.

    .venv/bin/python benchmarks/quality.py --data DEV_DIR [--model M] [--num-codebooks 4,8,12]
        [--baselines codec2-1200,codec2-3200,opus-6k] [--metrics all] [--manifest FILE] [--out REPORT_DIR]
        [--no-model] [--no-write]
    .venv/bin/python benchmarks/quality.py --make-espeak DEV_DIR ...   # first synthesise a small English dev set

Runs the same harness as ``codec12 eval`` (report with spectrograms and audio in --out), prints the results
table and writes it into docs/benchmarks.md. ``--make-espeak`` writes a few sentences spoken by espeak-ng voices
(Debian ``espeak-ng``) with a manifest.csv of transcripts, so WER can be scored.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import machine_line, update_docs  # noqa: E402

from codec12.cli import DEFAULT_MODEL  # noqa: E402

SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "A codec is judged by numbers on the same audio as its peers.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "Six spoons of fresh snow peas, five thick slabs of blue cheese, and maybe a snack for her brother.",
    "We also need a small plastic snake and a big toy frog for the kids.",
    "She can scoop these things into three red bags, and we will go meet her Wednesday at the train station.",
)
VOICES = ("en-us", "en-gb", "en-us+f3", "en-gb-scotland", "en-us+m3", "en-gb-x-rp+f2")


def make_espeak(out: Path) -> None:
    """Synthesise SENTENCES with espeak-ng voices into ``out`` (22.05 kHz WAV) plus manifest.csv."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SystemExit("espeak-ng not found: apt-get install espeak-ng")
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (text, voice) in enumerate(zip(SENTENCES, VOICES, strict=True)):
        name = f"espeak-{i:02d}.wav"
        subprocess.run([exe, "-v", voice, "-s", "160", "-w", str(out / name), text], check=True)
        rows.append({"path": name, "transcript": text})
    with open(out / "manifest.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "transcript"])
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {len(rows)} files and manifest.csv to {out}", file=sys.stderr)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="dev set directory")
    p.add_argument("--make-espeak", default=None, metavar="DIR", help="synthesise an espeak-ng dev set into DIR")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--no-model", action="store_true")
    p.add_argument("--continuous", action="store_true", help="also score the model's continuous mode")
    p.add_argument("--num-codebooks", default=None)
    p.add_argument("--baselines", default="codec2-1200,codec2-3200,opus-6k")
    p.add_argument("--metrics", default="all")
    p.add_argument("--manifest", default=None, help="default: DATA/manifest.csv when it exists")
    p.add_argument("--out", default=None, help="report directory (default: a temporary one)")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    if args.make_espeak:
        make_espeak(Path(args.make_espeak))
        args.data = args.data or args.make_espeak
    if not args.data:
        p.error("--data (or --make-espeak) is required")
    manifest = args.manifest or (str(Path(args.data) / "manifest.csv")
                                 if (Path(args.data) / "manifest.csv").is_file() else None)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="codec12-quality-"))

    from codec12.cli import main as cli

    argv = ["eval", "--data", args.data, "--out", str(out), "--baselines", args.baselines, "--metrics", args.metrics,
            "-f", "-q"]
    argv += ["--no-model"] if args.no_model else ["--model", args.model]
    argv += ["--num-codebooks", args.num_codebooks] if args.num_codebooks else []
    argv += ["--continuous"] if args.continuous and not args.no_model else []
    argv += ["--manifest", manifest] if manifest else []
    if cli(argv) != 0:
        raise SystemExit(1)

    import json
    from types import SimpleNamespace

    from codec12.eval.report import _notes, markdown_table

    summary = json.loads((out / "summary.json").read_text())
    result = SimpleNamespace(systems=list(summary["systems"]), summary=summary, skipped_systems=summary[
        "skipped_systems"], skipped_metrics=summary["skipped_metrics"], bad_files=summary["bad_files"],
        metrics=[m for m in next(iter(summary["systems"].values()))["metrics"]])
    cmd = "python benchmarks/quality.py " + " ".join(sys.argv[1:])
    model = "no model" if args.no_model else f"model `{args.model}`"
    text = (f"{machine_line(0).split(', 0 torch')[0]}  \nCommand: `{cmd.strip()}`  \n"
            f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M UTC}; {model}; data `{args.data}` "
            f"({summary['files_scored']} files).\n\n{markdown_table(result)}\n\n"
            + "\n".join(f"- {n}" for n in _notes(result)))
    print(text)
    print(f"\nreport: {out / 'report.html'}", file=sys.stderr)
    if not args.no_write:
        update_docs("quality", "Reconstruction quality", text)


if __name__ == "__main__":
    main()
