"""How semantic is a code row? Phone-normalized mutual information and phone purity against phone labels.

For a code row (0 = semantic, 1 = first acoustic) and frame-level phone labels on the same 12.5 Hz grid:

- PNMI = I(phone; code) / H(phone): the share of the phone labels' entropy that the codes explain (1 when
  the codes determine the phone, 0 when they are independent of it; HuBERT paper, section IV-B).
- purity = frames whose phone is the most frequent phone of their code / all frames: the accuracy of the
  best code -> phone lookup table. Compare it with ``purity_baseline``, the share of the most frequent phone
  (what codes that carry no phone information score).

Alignment file: a JSONL manifest (docs/manifests.md: one utterance per line, ``audio`` relative to the file's
directory, optional ``id``) whose lines also carry the labels::

    {"id": "u1", "audio": "wavs/u1.wav", "phones": ["sil", "h", "h", "ə", "l", ...]}   # one label per frame
    {"id": "u2", "audio": "wavs/u2.wav", "intervals": [[0.0, 0.21, "sil"], [0.21, 0.27, "h"], ...]}

``phones`` gives one label per codec frame (frame ``i`` covers ``[i * 0.08, (i + 1) * 0.08)`` seconds);
``intervals`` are ``[start_s, end_s, label]`` and each frame takes the label that overlaps it most. Frames
with no label (``null``/``""``, or not covered by any interval) are left out of the measure.

Command line: ``codec12 semantic-measure ALIGNMENTS.jsonl [--model M] [--rows 0 1] [--out report.json]``
(or ``python -m codec12.distill.measure ...``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from codec12._fs import atomic_write
from codec12.command import ArgumentParser, CLIError, add_model_argument
from codec12.data.manifest import read_manifest

if TYPE_CHECKING:
    import torch


@dataclass
class CodeMeasure:
    """PNMI and purity of one code row against phone labels over ``num_frames`` labelled frames."""

    pnmi: float
    purity: float
    purity_baseline: float
    phone_entropy_bits: float
    num_frames: int
    codes_used: int
    phones_seen: int


def code_measure(codes: Sequence[int] | np.ndarray | torch.Tensor, labels: Sequence) -> CodeMeasure:
    """codes: [N] ints; labels: [N] hashable phone labels (same frames) -> :class:`CodeMeasure`."""
    codes = np.asarray(codes.cpu() if hasattr(codes, "cpu") else codes).reshape(-1)
    if len(codes) != len(labels):
        raise ValueError(f"codes ({len(codes)} frames) and labels ({len(labels)} frames) differ in length")
    if len(codes) == 0:
        raise ValueError("no labelled frames to measure")
    _, code_idx = np.unique(codes, return_inverse=True)
    _, phone_idx = np.unique(np.asarray([str(x) for x in labels]), return_inverse=True)
    joint = np.zeros((phone_idx.max() + 1, code_idx.max() + 1), dtype=np.float64)
    np.add.at(joint, (phone_idx, code_idx), 1.0)
    n = joint.sum()
    p = joint / n
    p_phone, p_code = p.sum(axis=1), p.sum(axis=0)
    nz = p > 0
    mutual = float((p[nz] * np.log2(p[nz] / np.outer(p_phone, p_code)[nz])).sum())
    entropy = float(-(p_phone * np.log2(p_phone)).sum())
    # A single phone has no entropy to explain: the codes trivially determine it.
    pnmi = mutual / entropy if entropy > 0 else 1.0
    return CodeMeasure(pnmi=max(0.0, min(1.0, pnmi)), purity=float(joint.max(axis=0).sum() / n),
                       purity_baseline=float(p_phone.max()), phone_entropy_bits=entropy, num_frames=int(n),
                       codes_used=int(joint.shape[1]), phones_seen=int(joint.shape[0]))


# ---- alignments
@dataclass
class Alignment:
    """One utterance: its audio file and one phone label per codec frame (``None`` = unlabelled)."""

    id: str
    audio: Path
    labels: list[str | None]


def intervals_to_frames(intervals: Sequence[Sequence], num_frames: int | None = None,
                        frame_duration: float = 0.08) -> list[str | None]:
    """``[[start_s, end_s, label], ...]`` -> one label per frame: the label overlapping the frame most."""
    spans = []
    for item in intervals:
        if not isinstance(item, (list, tuple)) or len(item) != 3:
            raise ValueError(f"interval {item!r} is not [start_s, end_s, label]")
        start, end, label = float(item[0]), float(item[1]), item[2]
        if not (math.isfinite(start) and math.isfinite(end)) or end < start or start < 0:
            raise ValueError(f"interval {item!r} has bad times")
        spans.append((start, end, label))
    if num_frames is None:
        num_frames = math.ceil(max((e for _, e, _ in spans), default=0.0) / frame_duration - 1e-9)
    best = [(0.0, None)] * num_frames
    for start, end, label in spans:
        if not label:
            continue
        first, last = int(start // frame_duration), min(num_frames - 1, int(math.ceil(end / frame_duration)) - 1)
        for i in range(max(first, 0), last + 1):
            overlap = min(end, (i + 1) * frame_duration) - max(start, i * frame_duration)
            if overlap > best[i][0]:
                best[i] = (overlap, str(label))
    return [label for _, label in best]


def read_alignments(path: str | os.PathLike) -> list[Alignment]:
    """Read an alignment file: a manifest (docs/manifests.md) whose rows also carry ``phones`` or ``intervals``
    (format in the module docstring); errors name the file and line."""
    out = []
    for row in read_manifest(path):
        extra = row.extra
        if ("phones" in extra) == ("intervals" in extra):
            raise ValueError(f"{row.where}: give exactly one of 'phones' (per frame) or 'intervals'")
        if "phones" in extra:
            if not isinstance(extra["phones"], list):
                raise ValueError(f"{row.where}: 'phones' must be a list of per-frame labels")
            labels = [str(x) if x not in (None, "") else None for x in extra["phones"]]
        else:
            try:
                labels = intervals_to_frames(extra["intervals"])
            except (ValueError, TypeError) as e:
                raise ValueError(f"{row.where}: {e}") from e
        out.append(Alignment(id=row.id, audio=Path(row.path), labels=labels))
    return out


def ctc_frame_labels(log_probs: torch.Tensor, targets: Sequence[int], upsample: int,
                     inventory: Sequence[str] | None = None) -> list[str | None]:
    """Frame labels by CTC forced alignment of ``targets`` (phone ids, blank 0) to ``log_probs``
    [T' * upsample, V] (e.g. the phonetic head's output): each step takes the last phone emitted at or
    before it, then each codec frame takes its most common step label. Steps before the first phone are
    unlabelled."""
    import torch
    import torchaudio.functional as AF

    if not targets:
        return [None] * (log_probs.shape[0] // upsample)
    tokens, _ = AF.forced_align(log_probs[None].float().cpu(), torch.tensor([list(targets)], dtype=torch.int32),
                                blank=0)
    steps, current = [], None
    for token in tokens[0].tolist():
        if token != 0:
            current = token
        steps.append(current)
    frames = []
    for i in range(0, len(steps) - upsample + 1, upsample):
        chunk = [s for s in steps[i:i + upsample] if s is not None]
        best = max(set(chunk), key=chunk.count) if chunk else None
        frames.append(None if best is None else (inventory[best] if inventory else str(best)))
    return frames


# ---- measuring a model
@dataclass
class SemanticReport:
    """PNMI / purity per code row (row 0 semantic, row 1 first acoustic, ...) over all labelled frames."""

    model: str
    rows: dict[int, CodeMeasure]
    num_files: int
    errors: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"model": self.model, "num_files": self.num_files,
                "rows": {str(k): asdict(v) for k, v in self.rows.items()}, "errors": self.errors}


def measure_codes(codes: Sequence[torch.Tensor], labels: Sequence[Sequence[str | None]],
                  rows: Sequence[int] = (0, 1)) -> dict[int, CodeMeasure]:
    """Per-utterance codes [K, T'] and frame labels -> measures per row. Labels and codes are cut to the
    shorter of the two (an alignment may end a frame early or late); unlabelled frames are left out."""
    gathered = {r: [] for r in rows}
    flat_labels: list[str] = []
    for c, lab in zip(codes, labels):
        n = min(c.shape[-1], len(lab))
        keep = [i for i in range(n) if lab[i] is not None]
        flat_labels += [lab[i] for i in keep]
        for r in rows:
            if r >= c.shape[0]:
                raise ValueError(f"row {r} requested but the codes have {c.shape[0]} rows")
            gathered[r].append(c[r, keep].cpu().numpy())
    return {r: code_measure(np.concatenate(gathered[r]) if gathered[r] else np.zeros(0, np.int64), flat_labels)
            for r in rows}


def measure_model(codec, alignments: Sequence[Alignment], rows: Sequence[int] = (0, 1), model_name: str = "",
                  progress: bool = False) -> SemanticReport:
    """Encode each alignment's audio with ``codec`` and measure ``rows`` of its codes against the labels.
    Files that fail are recorded in ``errors`` and skipped."""
    from codec12.audio import load_audio

    bad_rows = [r for r in rows if not 0 <= r < codec.num_codebooks]
    if bad_rows:
        raise ValueError(f"rows {bad_rows} out of range: the model has {codec.num_codebooks} code rows")
    codes, labels, errors = [], [], []
    items = alignments
    if progress:
        from tqdm import tqdm

        items = tqdm(alignments, desc="semantic-measure", unit="file")
    for item in items:
        try:
            wav = load_audio(item.audio, codec.sample_rate, codec.channels)
            codes.append(codec.encode(wav[None].to(next(codec.parameters()).device), max(rows) + 1)[0])
            labels.append(item.labels)
        except (ValueError, OSError, RuntimeError) as e:
            errors.append({"id": item.id, "audio": str(item.audio), "error": f"{type(e).__name__}: {e}"})
    if not codes:
        raise ValueError(f"no file could be encoded ({len(errors)} errors; first: {errors[0]['error']})")
    return SemanticReport(model=model_name, rows=measure_codes(codes, labels, rows), num_files=len(codes),
                          errors=errors)


def format_report(report: SemanticReport) -> str:
    frames = next(iter(report.rows.values())).num_frames
    errors = f", {len(report.errors)} failed" if report.errors else ""
    lines = [f"model {report.model}: {report.num_files} files, {frames} labelled frames{errors}"]
    lines.append(f"{'row':>4} {'kind':<9} {'PNMI':>6} {'purity':>7} {'baseline':>9} {'codes':>6}")
    for r, m in report.rows.items():
        kind = "semantic" if r == 0 else "acoustic"
        lines.append(f"{r:>4} {kind:<9} {m.pnmi:>6.3f} {m.purity:>7.3f} {m.purity_baseline:>9.3f} {m.codes_used:>6}")
    return "\n".join(lines)


# ---- command line
def _run(args: argparse.Namespace) -> int:
    from codec12 import Codec

    if args.out is not None and Path(args.out).exists() and not args.force:
        raise CLIError(f"{args.out} exists (use -f to overwrite)")
    alignments = read_alignments(args.alignments)
    codec = Codec.from_pretrained(args.model, device=args.device)
    report = measure_model(codec, alignments, tuple(args.rows), model_name=str(args.model), progress=True)
    print(format_report(report))
    for e in report.errors:
        print(f"error: {e['audio']}: {e['error']}", file=sys.stderr)
    if args.out is not None:
        text = json.dumps(report.to_dict(), indent=2) + "\n"
        atomic_write(Path(args.out), lambda p: p.write_text(text))
    return 0


def _configure(parser: argparse.ArgumentParser) -> None:

    parser.add_argument("alignments", help="JSONL alignment file (per-frame 'phones' or 'intervals' per utterance)")
    add_model_argument(parser)
    parser.add_argument("--rows", type=int, nargs="+", default=[0, 1],
                        help="code rows to measure (default: 0 semantic, 1 first acoustic)")
    parser.add_argument("--out", help="write the report as JSON here")
    parser.add_argument("-f", "--force", action="store_true", help="overwrite --out")
    parser.add_argument("--device", default="cpu",
                        help="torch device to run the model on: cpu, cuda, cuda:N (default: cpu)")
    parser.set_defaults(func=_run)


def add_parsers(subparsers) -> None:
    parser = subparsers.add_parser("semantic-measure", help="PNMI / phone purity of code rows against phone labels",
                                   description=__doc__.split("\n\n")[0])
    _configure(parser)


def main(argv: list[str] | None = None) -> int:

    parser = ArgumentParser(prog="python -m codec12.distill.measure", description=__doc__.split("\n\n")[0])
    _configure(parser)
    args = parser.parse_args(argv)
    args.command = "semantic-measure"
    try:
        return _run(args)
    except (CLIError, ValueError, FileNotFoundError) as e:
        print(f"codec12 semantic-measure: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
