"""The training loop: ``run(recipe, out_dir)``.

One process or many under ``torchrun`` (:mod:`codec12.train.distributed`). Every rank builds the same model from
the same seed *after* the process group exists (vector-quantize-pytorch decides at construction whether EMA
codebook statistics are all-reduced across ranks), draws its own slice of the data, and averages gradients with the
others before each optimizer step, so all ranks hold identical weights. Quantizer randomness (level dropout,
unquantized sequences, FSQ dither) draws from a generator seeded by (seed, step): identical on every rank and
replayed exactly after a resume. Only rank 0 writes logs, checkpoints and the release.

The trainer owns the optimizers, the EMA weights and the loop; its parts have one job each: the losses and
discriminators (:mod:`codec12.train.losses`), what checkpoints hold and how a run starts from one
(:mod:`codec12.train.checkpointing`), what the run records (:mod:`codec12.train.runlog`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from codec12 import distill
from codec12.codec import Codec, CodecOutput
from codec12.config import CodecConfig
from codec12.distill.build import DistillConfig
from codec12.export.release import export_release
from codec12.quantizers.vq import ResidualVQ
from codec12.train.checkpointing import Checkpointing, Progress, TrainedParts
from codec12.train.data import (
    AudioCrops,
    DrawSampler,
    collate,
    hash_fraction,
    load_validation,
    probe,
    read_items,
    split_items,
    worker_init,
)
from codec12.train.distributed import Ranks
from codec12.train.loss_names import RECONSTRUCTION
from codec12.train.losses import TrainingLosses
from codec12.train.recipe import Recipe, load_recipe
from codec12.train.runlog import RunLog, codebook_metrics


@dataclass
class TrainResult:
    """What a run did: the last step reached, where things were written, and the steps it skipped."""

    step: int
    out_dir: Path
    checkpoint: Path | None
    release: Path | None
    skipped_steps: list[int] = field(default_factory=list)
    last_metrics: dict[str, float] = field(default_factory=dict)
    stop_signal: int | None = None  # the signal (SIGTERM, SIGINT) that stopped the run early, if any


class NonFiniteError(RuntimeError):
    """Too many consecutive steps with non-finite inputs, losses or gradients."""


def run(recipe: Recipe | str | os.PathLike, out_dir: str | os.PathLike, *, resume: bool = False,
        overrides: list[str] | tuple[str, ...] = (), until_step: int | None = None,
        build_distiller: Callable[[DistillConfig, Codec], nn.Module] | None = None,
        progress: bool = True) -> TrainResult:
    """Train a codec as ``recipe`` says, writing logs, checkpoints and a release under ``out_dir``.

    recipe: a :class:`Recipe` or a recipe file (``overrides`` are ``key=value`` strings applied to it).
    resume: continue from ``out_dir``'s latest checkpoint (from scratch when there is none yet); without it an
        ``out_dir`` holding checkpoints is refused.
    until_step: stop (with a checkpoint) at this step instead of ``train.steps``, as a job with a time limit
        would; a later ``resume`` continues exactly where it stopped.
    build_distiller: ``(distill_section, codec) -> nn.Module``; defaults to ``codec12.distill.build_distiller``.
    """
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, overrides)
    elif overrides:
        raise ValueError("overrides apply to recipe files; use recipe.replace(...) for a Recipe object")
    trainer = _Trainer(recipe, Path(out_dir), resume=resume, build_distiller=build_distiller, progress=progress)
    try:
        return trainer.fit(until_step)
    finally:
        trainer.close()


# ---------------------------------------------------------------------------------------------------------------
def _lr_lambda(optim, total_steps: int) -> Callable[[int], float]:
    warmup, floor = optim.warmup_steps, optim.min_lr_ratio

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if optim.schedule == "constant":
            return 1.0
        progress = min((step - warmup) / max(1, total_steps - warmup), 1.0)
        shape = 0.5 * (1 + math.cos(math.pi * progress)) if optim.schedule == "cosine" else 1.0 - progress
        return floor + (1.0 - floor) * shape

    return factor


def _step_generator(seed: int, step: int) -> torch.Generator:
    """The quantizer's random source at ``step``: the same on every rank and after a resume."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) % (2 ** 63))



def _data(recipe: Recipe, config: CodecConfig, ranks: Ranks, start_step: int, log: RunLog
          ) -> tuple[DataLoader, list[dict], int]:
    """The training loader (random crops, each rank its own draws from ``start_step`` on), the validation clips
    (rank 0) and the crop length in samples. Unreadable files are logged as events."""
    r, c = recipe, config
    items, bad = probe(read_items(r.data.train))
    if r.data.valid is not None:
        train_items = items
        valid_items = sorted(read_items(r.data.valid), key=lambda it: hash_fraction(it.path))
        valid_items = valid_items[: r.data.valid_max_files]
    else:
        train_items, valid_items = split_items(items, r.data.valid_fraction, r.data.valid_max_files)
    for path, reason in bad.items():
        log.event("bad_file", start_step, path=path, reason=reason)
    if not train_items:
        raise ValueError(f"{r.data.train}: no readable training files ({len(bad)} unreadable)")
    crop_samples = r.data.crop_frames * c.frame_size
    dataset = AudioCrops(train_items, c.sample_rate, c.channels, crop_samples, r.seed, r.data.loudness_db,
                         r.data.max_gain_db, r.data.cache)
    loader = DataLoader(
        dataset, batch_size=r.data.batch_size, collate_fn=collate, num_workers=r.data.num_workers,
        sampler=DrawSampler(r.data.batch_size, ranks.rank, ranks.world_size, start_step=start_step),
        pin_memory=ranks.device.type == "cuda", persistent_workers=False, worker_init_fn=worker_init,
        generator=torch.Generator(),  # keeps DataLoader from drawing on the global RNG (exact resume)
    )
    valid = []
    if ranks.is_main and valid_items:
        valid = load_validation(valid_items, c.sample_rate, c.channels, c.frame_size, r.data.valid_seconds,
                                r.data.loudness_db, r.data.max_gain_db)
    log.info(f"{len(train_items)} training files, {len(valid_items)} validation files, {len(bad)} unreadable; "
             f"world size {ranks.world_size}; device {ranks.device}")
    return loader, valid, crop_samples


class _Trainer:
    """One run: builds the codec, the distiller, the losses, the optimizers and the EMA weights, resumes or
    initialises them, and trains (:meth:`fit`)."""

    def __init__(self, recipe: Recipe, out_dir: Path, *, resume: bool,
                 build_distiller: Callable[[DistillConfig, Codec], nn.Module] | None, progress: bool) -> None:
        self.recipe = recipe
        self.out_dir = out_dir
        self.show_progress = progress
        self.threads_before = torch.get_num_threads()
        self.ranks = Ranks(recipe.train.device, recipe.train.bf16)
        self.log = RunLog(out_dir, enabled=self.ranks.is_main)
        # Asked for by a signal handler during fit (see _catch_stop_signals).
        self.stop_requested = False
        self.stop_signal: int | None = None
        if build_distiller is None:
            build_distiller = distill.build_distiller
        # Built in the order the global random state is drawn in: a run's weights follow from its seed. A failure
        # part-way closes what was opened.
        try:
            r, device = self.recipe, self.ranks.device
            if r.train.threads:
                torch.set_num_threads(r.train.threads)
            self.config = r.model.codec_config()
            self.checkpoints = Checkpointing(self.out_dir, r, self.config, self.ranks, resume=resume,
                                             info=self.log.info)

            # Model: same seed on every rank; built after the process group exists so EMA codebooks sync across ranks.
            torch.manual_seed(r.seed)
            self.codec = Codec.from_config(self.config).to(device).train()
            self.distiller: nn.Module | None = None
            if r.distill is not None:
                self.distiller = build_distiller(r.distill, self.codec).to(device).train()
            self.losses = TrainingLosses(r, self.config, device)
            if r.model.init is not None and self.checkpoints.resume_from is None:
                self.checkpoints.initialise(r.model.init, self.codec, self.losses.adversaries, self.distiller)
            # RVQ modules of frozen parts: held in eval mode (no codebook EMA updates).
            self.frozen_vq: list[ResidualVQ] = []
            for part in r.model.freeze:
                for p in getattr(self.codec, part).parameters():
                    p.requires_grad_(False)
                self.frozen_vq += [m for m in getattr(self.codec, part).modules() if isinstance(m, ResidualVQ)]
            self._train_mode()
            if r.model.freeze:
                self.log.info(f"frozen: {', '.join(r.model.freeze)}")

            o = r.optim
            own = [p for p in self.codec.parameters() if p.requires_grad]
            head = [p for p in self.distiller.parameters() if p.requires_grad] if self.distiller is not None else []
            self.gen_params = own + head
            self.disc_params = [p for p in self.losses.adversaries.parameters() if p.requires_grad]
            # One group (all at lr) unless the head has its own rate: then [codec, head] at [lr, head_lr].
            groups, self.gen_base_lrs = [self.gen_params], [o.lr]
            if head and o.head_lr is not None:
                groups, self.gen_base_lrs = [own, head], [o.lr, o.head_lr]
            self.gen_opt = torch.optim.AdamW([{"params": g, "lr": lr} for g, lr in zip(groups, self.gen_base_lrs)],
                                             betas=tuple(o.betas), weight_decay=o.weight_decay)
            self.disc_opt: torch.optim.Optimizer | None = None
            if self.disc_params:
                self.disc_opt = torch.optim.AdamW(self.disc_params, lr=o.disc_lr, betas=tuple(o.betas),
                                                  weight_decay=o.weight_decay)
            # The learning rate is a function of the step alone (set before each step), so it resumes exactly.
            self.lr_factor = _lr_lambda(o, r.train.steps)
            self.disc_lr_factor = self.lr_factor
            if o.disc_schedule is not None:
                self.disc_lr_factor = _lr_lambda(dataclasses.replace(o, schedule=o.disc_schedule), r.train.steps)
            ema = None
            if r.train.ema_decay > 0:
                ema = {n: p.detach().clone() for n, p in self.codec.named_parameters()}
            self.parts = TrainedParts(self.codec, self.losses.adversaries, self.distiller, ema, self.gen_opt,
                                      self.disc_opt)

            progress = Progress()
            if self.checkpoints.resume_from is not None:
                progress = self.checkpoints.restore(self.checkpoints.resume_from, self.parts)
            self.step, self.bad_in_a_row, self.skipped = progress.step, progress.bad_in_a_row, progress.skipped
            self.last_codes: torch.Tensor | None = None  # the codes of the last step that was not skipped
            self.loader, self.valid, self.crop_samples = _data(r, self.config, self.ranks, self.step, self.log)
            self.log.open(r.to_dict(), self.losses.mel.log_mel)
        except BaseException:
            self.close()
            raise

    # ---- helpers -----------------------------------------------------------------------------------------
    def _train_mode(self) -> None:
        self.codec.train()
        for m in self.frozen_vq:
            m.eval()

    def _progress(self) -> Progress:
        return Progress(self.step, self.bad_in_a_row, self.skipped)

    # ---- one step ----------------------------------------------------------------------------------------
    def _generator_losses(self, wav: torch.Tensor, batch: dict, step: int) -> tuple[CodecOutput, dict]:
        losses = self.losses
        pitch = losses.pitch_teacher(wav) if losses.pitch_teacher is not None else None
        with torch.autocast(self.ranks.device.type, dtype=torch.bfloat16, enabled=self.ranks.autocast):
            out = self.codec(wav, generator=_step_generator(self.recipe.seed, step), f0=losses.forced_f0(pitch))
        extra = {}
        if self.distiller is not None:
            extra = {k: v.float() for k, v in self.distiller(wav, out, batch).items()}
        return out, losses.generator(out, wav, step, extra, pitch)

    def _train_step(self, batch: dict, step: int) -> dict[str, float] | None:
        """One generator + discriminator update; None when the step was skipped as non-finite."""
        ranks = self.ranks
        wav = batch["audio"].to(ranks.device, non_blocking=True)
        self._set_lr(step)
        if not ranks.all_true(bool(torch.isfinite(wav).all())):
            return self._skip(step, "non-finite input audio", batch)
        # Codebook EMA statistics update inside the forward; keep a copy to undo them if the step is skipped.
        buffers = {n: b.clone() for n, b in self.codec.named_buffers()}
        out, losses = self._generator_losses(wav, batch, step)
        total = self.losses.total(losses, step)
        if not ranks.all_true(bool(torch.isfinite(total))):
            self._restore_buffers(buffers)
            bad = sorted(k for k, v in losses.items() if not torch.isfinite(v))
            return self._skip(step, f"non-finite loss ({', '.join(bad) or 'total'})", batch)
        self.gen_opt.zero_grad(set_to_none=True)
        total.backward()
        ranks.average_gradients(self.gen_params)
        gnorm = torch.nn.utils.clip_grad_norm_(self.gen_params, self.recipe.optim.grad_clip)
        if not ranks.all_true(bool(torch.isfinite(gnorm))):
            self.gen_opt.zero_grad(set_to_none=True)
            self._restore_buffers(buffers)
            return self._skip(step, "non-finite generator gradients", batch)
        self.gen_opt.step()
        metrics = {k: float(v.detach()) for k, v in losses.items()}
        metrics["total"] = float(total.detach())
        metrics["grad_norm"] = float(gnorm)

        if self.disc_opt is not None and step >= self.losses.start_step:
            dlosses = self.losses.discriminator(out.audio.detach().float(), wav)
            dtotal = sum(dlosses.values())
            self.disc_opt.zero_grad(set_to_none=True)
            dtotal.backward()
            ranks.average_gradients(self.disc_params)
            dnorm = torch.nn.utils.clip_grad_norm_(self.disc_params, self.recipe.optim.disc_grad_clip)
            if ranks.all_true(bool(torch.isfinite(dnorm))):
                self.disc_opt.step()
                metrics.update({k: float(v.detach()) for k, v in dlosses.items()})
                metrics["disc_grad_norm"] = float(dnorm)
            else:
                self.disc_opt.zero_grad(set_to_none=True)
                self.log.event("skipped_discriminator_step", self.step,
                               reason="non-finite discriminator gradients")
        if self.parts.ema is not None:
            decay = self.recipe.train.ema_decay
            with torch.no_grad():
                for n, p in self.codec.named_parameters():
                    self.parts.ema[n].lerp_(p.detach(), 1.0 - decay)
        self.bad_in_a_row = 0
        self.last_codes = out.codes.detach()
        return metrics

    def _set_lr(self, step: int) -> None:
        factor = self.lr_factor(step)
        if self.disc_opt is not None:
            for group in self.disc_opt.param_groups:
                group["lr"] = self.recipe.optim.disc_lr * self.disc_lr_factor(step)
        for group, base in zip(self.gen_opt.param_groups, self.gen_base_lrs):
            group["lr"] = base * factor

    def _restore_buffers(self, saved: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for n, b in self.codec.named_buffers():
                b.copy_(saved[n])

    def _skip(self, step: int, reason: str, batch: dict) -> None:
        self.bad_in_a_row += 1
        self.skipped.append(step)
        self.log.event("skipped_step", self.step, reason=reason, files=batch["path"], in_a_row=self.bad_in_a_row)
        limit = self.recipe.train.max_bad_steps
        if self.bad_in_a_row >= limit:
            raise NonFiniteError(f"step {step}: {self.bad_in_a_row} consecutive steps skipped ({reason}); stopping "
                                 f"(train.max_bad_steps={limit}). Lower optim.lr, check the data, or resume from "
                                 f"the last checkpoint in {self.checkpoints.root}")
        return None

    # ---- loop --------------------------------------------------------------------------------------------
    def fit(self, until_step: int | None) -> TrainResult:
        r = self.recipe
        is_main = self.ranks.is_main
        end = r.train.steps if until_step is None else min(until_step, r.train.steps)
        bar = None
        if is_main and self.show_progress:
            from tqdm import tqdm

            bar = tqdm(total=r.train.steps, initial=self.step, unit="step", dynamic_ncols=True, file=sys.stderr)
        sums: dict[str, float] = defaultdict(float)
        counts: dict[str, int] = defaultdict(int)
        usage = [torch.zeros(s, dtype=torch.long) for s in self.config.codebook_sizes]
        last_metrics: dict[str, float] = {}
        t0, steps_timed = time.perf_counter(), 0
        last_ckpt, saved_step = None, None
        it = iter(self.loader)
        previous_handlers = self._catch_stop_signals()
        try:
            while self.step < end:
                batch = next(it)
                step = self.step
                metrics = self._train_step(batch, step)
                self.step = step + 1
                steps_timed += 1
                if metrics is not None:
                    for k, v in metrics.items():
                        sums[k] += v
                        counts[k] += 1
                    codes = self.last_codes.cpu()
                    for k in range(codes.shape[1]):
                        usage[k] += torch.bincount(codes[:, k].reshape(-1), minlength=usage[k].numel())
                if bar is not None:
                    bar.update(1)
                    if metrics is not None:
                        bar.set_postfix(loss=f"{metrics['total']:.3f}", refresh=False)
                if self.step % r.train.log_every == 0 or self.step == end:
                    elapsed = time.perf_counter() - t0
                    last_metrics = self._log_train(sums, counts, usage, steps_timed / max(elapsed, 1e-9), batch)
                    sums.clear()
                    counts.clear()
                    usage = [torch.zeros_like(u) for u in usage]
                    t0, steps_timed = time.perf_counter(), 0
                if is_main and self.valid and (self.step % r.train.valid_every == 0 or self.step == r.train.steps):
                    last_metrics.update(self._validate())
                if self.step % r.train.checkpoint_every == 0 and self.step < end:
                    last_ckpt, saved_step = self._save(), self.step
                if self.ranks.any_true(self.stop_requested):
                    self.log.info(f"stop requested: stopping at step {self.step} with a checkpoint (continue with "
                                  f"--resume)")
                    break
        except KeyboardInterrupt:
            # A second signal lands anywhere in a step (after an optimizer update, before the step count moves),
            # so the state is no step's: no checkpoint, the last one written stays the latest.
            self.log.info(f"interrupted during step {self.step + 1}: no checkpoint written (the latest is "
                          f"{last_ckpt.name if last_ckpt else 'from before this run'})")
            raise
        finally:
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)
            if bar is not None:
                bar.close()
        if saved_step != self.step:
            last_ckpt = self._save()
        release = None
        if is_main and self.step >= r.train.steps and r.train.export:
            release = export_release(self.codec, self.out_dir / "release", weights=self.parts.ema)
            self.log.info(f"release written to {release}")
        self.ranks.barrier()
        return TrainResult(self.step, self.out_dir, last_ckpt, release, list(self.skipped), last_metrics,
                           self.stop_signal)

    def _save(self) -> Path | None:
        return self.checkpoints.save(self.parts, self._progress())

    def _catch_stop_signals(self) -> dict:
        """SIGTERM (a scheduler's notice, ``kill``) and SIGINT (Ctrl-C, also delivered to jobs started in the
        background, which otherwise ignore it) ask for a stop at the end of the current step, so the checkpoint
        is consistent; a second signal interrupts at once, without a checkpoint."""
        self.stop_requested = False
        self.stop_signal = None
        if threading.current_thread() is not threading.main_thread():
            return {}

        def request_stop(signum, frame):
            if self.stop_requested:
                raise KeyboardInterrupt
            self.stop_requested, self.stop_signal = True, signum
            if self.ranks.is_main:
                print(f"\n{signal.Signals(signum).name}: finishing this step and writing a checkpoint (send it again "
                      f"to stop at once, without one)", file=sys.stderr, flush=True)

        return {signum: signal.signal(signum, request_stop) for signum in (signal.SIGTERM, signal.SIGINT)}

    # ---- metrics -----------------------------------------------------------------------------------------
    def _log_train(self, sums, counts, usage, steps_per_s: float, batch: dict) -> dict[str, float]:
        # Losses with weight 0 are not trained on; log the reconstruction ones anyway (they are the metric
        # people watch), computed on the last batch.
        if not self.ranks.is_main:
            return {}
        metrics = {k: sums[k] / counts[k] for k in sums}
        missing = [n for n in RECONSTRUCTION if n not in metrics]
        if missing:
            with torch.no_grad():
                self.codec.eval()
                wav = batch["audio"].to(self.ranks.device)
                if torch.isfinite(wav).all():
                    out = self.codec(wav)
                    metrics.update({k: float(v) for k, v in self.losses.reconstruction(out.audio.float(), wav,
                                                                                        missing).items()})
                self._train_mode()
        audio_s = steps_per_s * self.recipe.data.batch_size * self.ranks.world_size * self.crop_samples \
            / self.config.sample_rate
        metrics.update({"steps_per_s": steps_per_s, "audio_s_per_s": audio_s,
                        "lr/generator": self.gen_opt.param_groups[0]["lr"]})
        if self.disc_opt is not None:
            metrics["lr/discriminator"] = self.disc_opt.param_groups[0]["lr"]
        metrics.update(codebook_metrics(usage))
        self.log.train(self.step, metrics)
        return metrics

    @torch.no_grad()
    def _validate(self) -> dict[str, float]:
        self.codec.eval()
        losses = self.losses
        sums: dict[str, float] = defaultdict(float)
        scored = 0  # clips long enough for the consistency loss
        originals = self.log.wants_originals(self.step, self.recipe.train.valid_every)
        for i, item in enumerate(self.valid):
            wav = item["audio"][None].to(self.ranks.device)
            with torch.autocast(self.ranks.device.type, dtype=torch.bfloat16, enabled=self.ranks.autocast):
                out = self.codec(wav)
            audio = out.audio.float()
            for k, v in losses.reconstruction(audio, wav, RECONSTRUCTION).items():
                sums[k] += float(v)
            if losses.consistency is not None and audio.shape[-1] >= losses.consistency.min_samples:
                sums["consistency"] += float(losses.consistency_of(out))
                scored += 1
            if losses.pitch_teacher is not None:
                for k, v in losses.pitch(out, losses.pitch_teacher(wav), metrics=True).items():
                    sums[k] += float(v)
            if i < self.recipe.train.audio_samples:
                self.log.sample(self.step, i, wav[0] if originals else None, audio[0], self.config.sample_rate)
        self.log.originals_logged()
        self._train_mode()
        metrics = {f"valid/{k}": v / (scored if k == "consistency" else len(self.valid)) for k, v in sums.items()}
        self.log.validation(self.step, metrics)
        return metrics

    def close(self) -> None:
        self.log.close()
        self.ranks.close()
        torch.set_num_threads(self.threads_before)
