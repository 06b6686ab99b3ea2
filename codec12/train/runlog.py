"""What a training run records, on rank 0 only (other ranks record nothing).

``OUT/recipe.json`` (the recipe as run), ``OUT/log.jsonl`` (one JSON object per line: training metrics averaged
since the last line, validation metrics, and events such as skipped steps or unreadable files) and TensorBoard
scalars, audio and spectrograms under ``OUT/tb``. Nothing is written before :meth:`RunLog.open`, so a run refused
while it is set up leaves no directory behind; events from before are kept and written first.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from codec12._fs import atomic_write
from codec12._optional import require

log = logging.getLogger("codec12.train")


class RunLog:
    def __init__(self, out_dir: Path, enabled: bool) -> None:
        self.out_dir = out_dir
        self.enabled = enabled
        self._writer = None  # TensorBoard's SummaryWriter once open
        self._jsonl = None  # log.jsonl, opened for appending
        self._pending: list[dict[str, Any]] = []  # events from before open()
        self._log_mel: Callable[[torch.Tensor], torch.Tensor] | None = None
        self._references_logged = False  # the original audio of the validation samples, once per process

    def open(self, recipe: dict, log_mel: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Create the run directory, write ``recipe.json``, open the logs and write the events so far.
        ``log_mel``: [1, T] -> [1, mels, frames] log-mel spectrogram, for the spectrogram images."""
        self._log_mel = log_mel
        if not self.enabled:
            return
        # TensorBoard is slow to import; only rank 0 needs it
        SummaryWriter = require("torch.utils.tensorboard", "train", "codec12 train's TensorBoard logs").SummaryWriter

        self.out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(self.out_dir / "recipe.json", lambda p: p.write_text(json.dumps(recipe, indent=2) + "\n"))
        self._writer = SummaryWriter(str(self.out_dir / "tb"))
        self._jsonl = open(self.out_dir / "log.jsonl", "a")
        for record in self._pending:
            self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        self._pending = []

    def info(self, msg: str) -> None:
        if self.enabled:
            log.info(msg)

    def event(self, kind: str, step: int, **fields) -> None:
        """An event (skipped step, bad file) to the Python log and the JSONL log."""
        if not self.enabled:
            return
        log.warning("%s: %s", kind, fields)
        record = {"event": kind, "step": step, **fields}
        if self._jsonl is None:
            self._pending.append(record)
            return
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()

    def train(self, step: int, metrics: dict[str, float]) -> None:
        """Training metrics: TensorBoard tags ``train/NAME`` (``disc/NAME`` for discriminator losses, names with
        a ``/`` as they are) and one JSONL line."""
        if not self.enabled:
            return
        for k, v in metrics.items():
            tag = k if "/" in k else (f"train/{k}" if not k.startswith("disc_") else f"disc/{k}")
            self._writer.add_scalar(tag, v, step)
        self._write(step, metrics)

    def validation(self, step: int, metrics: dict[str, float]) -> None:
        """Validation metrics (names ``valid/NAME``)."""
        if not self.enabled:
            return
        for k, v in metrics.items():
            self._writer.add_scalar(k, v, step)
        self._write(step, metrics)

    def sample(self, step: int, index: int, original: torch.Tensor | None, decoded: torch.Tensor,
               sample_rate: int) -> None:
        """Validation sample ``index`` as audio and spectrogram: the decoded audio [C, T] (and the original, when
        given)."""
        if not self.enabled:
            return
        if original is not None:
            self._writer.add_audio(f"audio/{index}_original", original.mean(0).cpu(), step, sample_rate)
            self._writer.add_image(f"spectrogram/{index}_original", self._spectrogram(original), step,
                                   dataformats="HW")
        self._writer.add_audio(f"audio/{index}_decoded", decoded.mean(0).clamp(-1, 1).cpu(), step, sample_rate)
        self._writer.add_image(f"spectrogram/{index}_decoded", self._spectrogram(decoded), step, dataformats="HW")

    def wants_originals(self, step: int, first_validation_step: int) -> bool:
        """Whether validation at ``step`` logs the original audio too: at the run's first validation, and at the
        first one of each process (a resumed run writes a new TensorBoard file)."""
        return step == first_validation_step or not self._references_logged

    def originals_logged(self) -> None:
        self._references_logged = True

    def _spectrogram(self, wav: torch.Tensor) -> torch.Tensor:
        """[C, T] -> [mels, frames] in [0, 1], low frequencies at the bottom."""
        spec = self._log_mel(wav.mean(0, keepdim=True))[0].cpu()
        spec = (spec - spec.max() + 8).clamp(min=0) / 8  # 80 dB of range
        return spec.flip(0)

    def _write(self, step: int, metrics: dict[str, float]) -> None:
        self._writer.flush()
        self._jsonl.write(json.dumps({"step": step, **metrics}) + "\n")
        self._jsonl.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None


def codebook_metrics(usage: list[torch.Tensor]) -> dict[str, float]:
    """Per code row k, from its counts of each code: ``codebooks/perplexity_k`` (exp of the usage entropy) and
    ``codebooks/usage_k`` (the fraction of codes used). Rows without counts are left out."""
    metrics = {}
    for k, counts in enumerate(usage):
        total = int(counts.sum())
        if total == 0:
            continue
        p = counts.double() / total
        entropy = float(-(p[p > 0] * p[p > 0].log()).sum())
        metrics[f"codebooks/perplexity_{k}"] = math.exp(entropy)
        metrics[f"codebooks/usage_{k}"] = float((counts > 0).sum()) / counts.numel()
    return metrics
