"""The training loop: ``run(recipe, out_dir)``.

One process or many under ``torchrun`` (gloo on CPU, nccl on GPU, any number of nodes). Every rank builds
the same model from the same seed *after* the process group exists (vector-quantize-pytorch decides at
construction whether EMA codebook statistics are all-reduced across ranks), draws its own slice of the data,
and averages gradients with the others before each optimizer step, so all ranks hold identical weights.
Quantizer randomness (level dropout, unquantized sequences, FSQ dither) draws from a generator seeded by
(seed, step): identical on every rank and replayed exactly after a resume. Only rank 0 writes logs,
checkpoints and the release.

Gradients are averaged with one flattened all-reduce per optimizer rather than by wrapping modules in
``DistributedDataParallel``: acoustic level dropout leaves different parameters unused from step to step,
the discriminators run several forwards per backward, and distillation heads live outside the codec;
a plain all-reduce handles all of these with one code path (DDP would need ``find_unused_parameters`` and
a wrapper per module).
"""

from __future__ import annotations

import dataclasses
import json
import logging
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
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from codec12.codec import Codec, CodecOutput, copy_weights
from codec12.config import CodecConfig
from codec12.decoder.istft import f0_grid
from codec12.distill.pitch import PitchTeacher
from codec12.export.release import export_release
from codec12.losses import (
    AdversarialLoss,
    Balancer,
    F0Loss,
    L1WaveLoss,
    MelLoss,
    MultiPeriodDiscriminator,
    MultiResolutionSTFTLoss,
    MultiScaleSTFTDiscriminator,
    PhaseDerivativeLoss,
    SpectralConsistencyLoss,
    VoicingLoss,
)
from codec12.losses.pitch import f0_error
from codec12.train import checkpoint as ckpt
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
from codec12.train.recipe import CODEC_PARTS, Recipe, load_recipe

log = logging.getLogger("codec12.train")

RECONSTRUCTION = ("l1", "stft", "mel", "phase")
DISCRIMINATORS = ("msstft", "mpd")


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
        build_distiller: Callable[[dict, Codec], nn.Module] | None = None,
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


class _Trainer:
    def __init__(self, recipe: Recipe, out_dir: Path, *, resume: bool,
                 build_distiller: Callable[[dict, Codec], nn.Module] | None, progress: bool) -> None:
        self.recipe = recipe
        self.out_dir = out_dir
        self.progress = progress
        self.owns_group = False
        self.threads_before = torch.get_num_threads()
        self._setup_distributed()
        self.is_main = self.rank == 0
        try:
            self._build(resume, build_distiller)
        except BaseException:
            self.close()
            raise

    def _build(self, resume: bool, build_distiller) -> None:
        r, out_dir = self.recipe, self.out_dir
        if r.train.threads:
            torch.set_num_threads(r.train.threads)
        self.ckpt_root = out_dir / "checkpoints"
        held = ckpt.checkpoint_dirs(self.ckpt_root) if self.ckpt_root.is_dir() else []
        if held and not resume:
            raise ValueError(f"{out_dir} already holds checkpoints (latest {held[0].name}): pass --resume to "
                             f"continue, or choose another --out")
        self.resume_from = ckpt.resume_checkpoint(self.ckpt_root, log.warning) if resume and held else None
        if resume and not held:
            self._info(f"no checkpoint in {self.ckpt_root}; starting from step 0")

        # Model: same seed on every rank; built after init_process_group so EMA codebooks sync across ranks.
        torch.manual_seed(r.seed)
        self.config = r.model.codec_config()
        self.codec = Codec.from_config(self.config).to(self.device).train()
        self.distiller = None
        if r.distill is not None:
            if build_distiller is None:
                from codec12.distill import build_distiller
            self.distiller = build_distiller(dict(r.distill), self.codec).to(self.device).train()
        self.adversaries = nn.ModuleDict()
        weights = r.losses.weights
        d = r.discriminators
        ch = self.config.channels
        if weights.get("adv_msstft", 0) or weights.get("feat_msstft", 0):
            self.adversaries["msstft"] = AdversarialLoss(
                MultiScaleSTFTDiscriminator(d.msstft_n_ffts, d.msstft_channels, ch), r.losses.gan,
                r.losses.feature_matching)
        if weights.get("adv_mpd", 0) or weights.get("feat_mpd", 0):
            self.adversaries["mpd"] = AdversarialLoss(
                MultiPeriodDiscriminator(d.mpd_periods, d.mpd_channels, ch), r.losses.gan,
                r.losses.feature_matching)
        self.adversaries.to(self.device).train()
        if r.model.init is not None and self.resume_from is None:
            self._load_init(r.model.init)
        from codec12.quantizers.vq import ResidualVQ

        self._frozen_vq = []  # RVQ modules of frozen parts: held in eval mode (no codebook EMA updates)
        for part in r.model.freeze:
            for p in getattr(self.codec, part).parameters():
                p.requires_grad_(False)
            self._frozen_vq += [m for m in getattr(self.codec, part).modules() if isinstance(m, ResidualVQ)]
        self._train_mode()
        if r.model.freeze:
            self._info(f"frozen: {', '.join(r.model.freeze)}")

        self.l1 = L1WaveLoss()
        self.stft = MultiResolutionSTFTLoss(r.losses.stft_fft_sizes).to(self.device)
        self.mel = MelLoss(self.config.sample_rate, r.losses.mel_n_mels, r.losses.mel_win_lengths).to(self.device)
        self.phase = PhaseDerivativeLoss(r.losses.phase_fft_sizes).to(self.device)
        # An inverse-STFT decoder's spectra (CodecOutput.synthesis) for the consistency loss (trained when
        # weighted, logged at validation either way); a harmonic decoder's F0 and voicing for the pitch losses.
        self.consistency = None
        self._train_consistency = bool(weights.get("consistency", 0) or "consistency" in r.losses.schedules)
        self.pitch_teacher = None
        self.f0_loss, self.voicing_loss = None, VoicingLoss()
        istft = self.config.istft
        if istft is not None and istft.harmonic:
            self.f0_loss = F0Loss(f0_grid(istft.f0_min, istft.f0_max, istft.f0_bins)).to(self.device)
            if not weights.get("f0", 0):
                raise ValueError("a harmonic decoder learns its F0 from the pitch teacher alone: give the loss a "
                                 "weight (--set losses.weights.f0=1.0 --set losses.weights.voicing=0.2)")
            self.pitch_teacher = PitchTeacher(self.config.sample_rate, istft.hop_length, istft.n_fft, istft.f0_min,
                                              istft.f0_max)
        if istft is not None:
            self.consistency = SpectralConsistencyLoss(istft.n_fft, istft.hop_length)
            crop = r.data.crop_frames * self.codec.frame_size
            if self._train_consistency and crop < self.consistency.min_samples:
                raise ValueError(f"losses.weights.consistency: crops of {crop} samples (data.crop_frames) are "
                                 f"shorter than the {self.consistency.min_samples} the consistency loss scores")
        elif self._train_consistency:
            raise ValueError("losses.weights.consistency: the spectral consistency loss needs the inverse-STFT "
                             "decoder (istft in the model config); this model has the SEANet decoder")
        self.balancer = Balancer(weights, r.losses.weight_schedules())

        o = r.optim
        own = [p for p in self.codec.parameters() if p.requires_grad]
        head = [p for p in self.distiller.parameters() if p.requires_grad] if self.distiller is not None else []
        self.gen_params = own + head
        self.disc_params = [p for p in self.adversaries.parameters() if p.requires_grad]
        # One group (all at lr) unless the head has its own rate: then [codec, head] at [lr, head_lr].
        groups, self.gen_base_lrs = [self.gen_params], [o.lr]
        if head and o.head_lr is not None:
            groups, self.gen_base_lrs = [own, head], [o.lr, o.head_lr]
        self.gen_opt = torch.optim.AdamW([{"params": g, "lr": lr} for g, lr in zip(groups, self.gen_base_lrs)],
                                         betas=tuple(o.betas), weight_decay=o.weight_decay)
        self.disc_opt = None
        if self.disc_params:
            self.disc_opt = torch.optim.AdamW(self.disc_params, lr=o.disc_lr, betas=tuple(o.betas),
                                              weight_decay=o.weight_decay)
        # The learning rate is a function of the step alone (set before each step), so it resumes exactly.
        self.lr_factor = _lr_lambda(o, r.train.steps)
        self.disc_lr_factor = self.lr_factor
        if o.disc_schedule is not None:
            self.disc_lr_factor = _lr_lambda(dataclasses.replace(o, schedule=o.disc_schedule), r.train.steps)
        self.ema: dict[str, torch.Tensor] | None = None
        if r.train.ema_decay > 0:
            self.ema = {n: p.detach().clone() for n, p in self.codec.named_parameters()}

        self.step = 0
        self.bad_in_a_row = 0
        self.skipped: list[int] = []
        if self.resume_from is not None:
            self._load(self.resume_from)
        self._setup_data()
        self.writer = None
        if self.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / "recipe.json").write_text(json.dumps(r.to_dict(), indent=2) + "\n")
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out_dir / "tb"))
            self.jsonl = open(out_dir / "log.jsonl", "a")
        self._weights_checked = False

    # ---- setup -------------------------------------------------------------------------------------------
    def _setup_distributed(self) -> None:
        want = self.recipe.train.device
        use_cuda = want == "cuda" or (want == "auto" and torch.cuda.is_available())
        if want == "cuda" and not torch.cuda.is_available():
            raise ValueError("train.device is 'cuda' but no CUDA device is available")
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world > 1 and not dist.is_initialized():
            if use_cuda:
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group("nccl" if use_cuda else "gloo")
            self.owns_group = True
        self.distributed = dist.is_initialized() and dist.get_world_size() > 1
        self.rank = dist.get_rank() if self.distributed else 0
        self.world_size = dist.get_world_size() if self.distributed else 1
        if use_cuda:
            self.device = torch.device("cuda", torch.cuda.current_device())
        else:
            self.device = torch.device("cpu")
        self.autocast = use_cuda and self.recipe.train.bf16

    def _setup_data(self) -> None:
        r, c = self.recipe, self.config
        items, bad = probe(read_items(r.data.train))
        if r.data.valid is not None:
            train_items = items
            valid_items = sorted(read_items(r.data.valid), key=lambda it: hash_fraction(it.path))
            valid_items = valid_items[: r.data.valid_max_files]
        else:
            train_items, valid_items = split_items(items, r.data.valid_fraction, r.data.valid_max_files)
        for path, reason in bad.items():
            self._event("bad_file", path=path, reason=reason)
        if not train_items:
            raise ValueError(f"{r.data.train}: no readable training files ({len(bad)} unreadable)")
        self.crop_samples = r.data.crop_frames * c.frame_size
        self.dataset = AudioCrops(train_items, c.sample_rate, c.channels, self.crop_samples, r.seed,
                                  r.data.loudness_db, r.data.max_gain_db, r.data.cache)
        self.loader = DataLoader(
            self.dataset, batch_size=r.data.batch_size, collate_fn=collate, num_workers=r.data.num_workers,
            sampler=DrawSampler(r.data.batch_size, self.rank, self.world_size, start_step=self.step),
            pin_memory=self.device.type == "cuda", persistent_workers=False, worker_init_fn=worker_init,
            generator=torch.Generator(),  # keeps DataLoader from drawing on the global RNG (exact resume)
        )
        self.valid = []
        if self.is_main and valid_items:
            self.valid = load_validation(valid_items, c.sample_rate, c.channels, c.frame_size, r.data.valid_seconds,
                                         r.data.loudness_db, r.data.max_gain_db)
        self._info(f"{len(train_items)} training files, {len(valid_items)} validation files, "
                   f"{len(bad)} unreadable; world size {self.world_size}; device {self.device}")

    # ---- helpers -----------------------------------------------------------------------------------------
    def _info(self, msg: str) -> None:
        if getattr(self, "rank", 0) == 0:
            log.info(msg)

    def _event(self, kind: str, **fields) -> None:
        """An event (skipped step, bad file) to the log, the JSONL log and TensorBoard text (rank 0)."""
        if not self.is_main:
            return
        log.warning("%s: %s", kind, fields)
        record = {"event": kind, "step": self.step, **fields}
        if hasattr(self, "jsonl"):
            self.jsonl.write(json.dumps(record) + "\n")
            self.jsonl.flush()
        else:
            self._pending = getattr(self, "_pending", []) + [record]

    def _all_true(self, flag: bool) -> bool:
        if not self.distributed:
            return flag
        t = torch.tensor([0.0 if flag else 1.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() == 0.0)

    def _average_gradients(self, params: list[nn.Parameter]) -> None:
        """Average gradients over ranks with one flat all-reduce; a parameter unused on every rank keeps no
        gradient (ranks agree on which: dropout draws are shared)."""
        if not self.distributed:
            return
        used = [p for p in params if p.grad is not None]
        if not used:
            return
        flat = torch.cat([p.grad.reshape(-1) for p in used])
        dist.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for p in used:
            n = p.grad.numel()
            p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
            offset += n

    def _reconstruction(self, pred: torch.Tensor, target: torch.Tensor, names) -> dict[str, torch.Tensor]:
        fns = {"l1": self.l1, "stft": self.stft, "mel": self.mel, "phase": self.phase}
        return {n: fns[n](pred, target) for n in names}

    def _consistency(self, out: CodecOutput) -> torch.Tensor:
        """The consistency loss of the spectra the decoder fed its inverse STFT."""
        spectrum, audio = out.synthesis.spectrum, out.synthesis.audio.float()
        bins2 = 2 * self.consistency.bins
        return self.consistency(spectrum.reshape(-1, bins2, spectrum.shape[-1]),
                                audio.reshape(-1, audio.shape[-1]))

    def _pitch(self, out: CodecOutput, wav: torch.Tensor, metrics: bool = False) -> dict[str, torch.Tensor]:
        """A harmonic decoder's F0 classification and voicing cross-entropies against the pitch teacher; with
        ``metrics`` also its F0 error in octaves over the voiced frames (``f0_octaves``)."""
        target = self.pitch_teacher(wav)
        synthesis = out.synthesis
        voiced = target.voiced & target.known
        losses = {"f0": self.f0_loss(synthesis.f0_logits, target.f0, voiced),
                  "voicing": self.voicing_loss(synthesis.voicing.float(), target.voiced, target.known)}
        if metrics:
            losses["f0_octaves"] = f0_error(synthesis.f0, target.f0, voiced)
        return losses

    # ---- one step ----------------------------------------------------------------------------------------
    def _generator_losses(self, wav: torch.Tensor, batch: dict, step: int) -> tuple[CodecOutput, dict]:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            out = self.codec(wav, generator=_step_generator(self.recipe.seed, step))
        audio = out.audio.float()
        active = [n for n in RECONSTRUCTION if self.balancer.weights.get(n, 0.0) or n in self.balancer.schedules]
        losses = self._reconstruction(audio, wav, active)
        losses["commitment"] = out.losses["commitment"].float()
        if self._train_consistency:
            losses["consistency"] = self._consistency(out)
        if self.pitch_teacher is not None:
            losses.update(self._pitch(out, wav))
        if self.distiller is not None:
            losses.update({k: v.float() for k, v in self.distiller(wav, out, batch).items()})
        if step >= self.recipe.discriminators.start_step:
            for name, adv in self.adversaries.items():
                g = adv.generator_loss(audio, wav)
                losses[f"adv_{name}"] = g.adversarial
                losses[f"feat_{name}"] = g.feature_matching
        if not self._weights_checked:
            self._check_weight_names(losses)
        return out, losses

    def _check_weight_names(self, losses: dict) -> None:
        possible = set(RECONSTRUCTION) | {"commitment", "consistency", "f0", "voicing"} | set(losses)
        possible |= {f"{kind}_{d}" for d in DISCRIMINATORS for kind in ("adv", "feat")}
        unknown = sorted(set(self.balancer.weights) - possible)
        if unknown:
            raise ValueError(f"losses.weights names {unknown}, but this run computes no such loss (it computes "
                             f"{sorted(possible)})")
        missing = sorted(set(losses) - set(self.balancer.weights))
        if missing:
            raise ValueError(f"losses {missing} are computed but have no weight in losses.weights")
        self._weights_checked = True

    def _train_step(self, batch: dict, step: int) -> dict[str, float] | None:
        """One generator + discriminator update; None when the step was skipped as non-finite."""
        wav = batch["audio"].to(self.device, non_blocking=True)
        self._set_lr(step)
        if not self._all_true(bool(torch.isfinite(wav).all())):
            return self._skip(step, "non-finite input audio", batch)
        # Codebook EMA statistics update inside the forward; keep a copy to undo them if the step is skipped.
        buffers = {n: b.clone() for n, b in self.codec.named_buffers()}
        out, losses = self._generator_losses(wav, batch, step)
        total = self.balancer(losses, step)
        if not self._all_true(bool(torch.isfinite(total))):
            self._restore_buffers(buffers)
            bad = sorted(k for k, v in losses.items() if not torch.isfinite(v))
            return self._skip(step, f"non-finite loss ({', '.join(bad) or 'total'})", batch)
        self.gen_opt.zero_grad(set_to_none=True)
        total.backward()
        self._average_gradients(self.gen_params)
        gnorm = torch.nn.utils.clip_grad_norm_(self.gen_params, self.recipe.optim.grad_clip)
        if not self._all_true(bool(torch.isfinite(gnorm))):
            self.gen_opt.zero_grad(set_to_none=True)
            self._restore_buffers(buffers)
            return self._skip(step, "non-finite generator gradients", batch)
        self.gen_opt.step()
        metrics = {k: float(v.detach()) for k, v in losses.items()}
        metrics["total"] = float(total.detach())
        metrics["grad_norm"] = float(gnorm)

        if self.disc_opt is not None:
            if step >= self.recipe.discriminators.start_step:
                fake = out.audio.detach().float()
                dlosses = {f"disc_{n}": adv.discriminator_loss(fake, wav) for n, adv in self.adversaries.items()}
                dtotal = sum(dlosses.values())
                self.disc_opt.zero_grad(set_to_none=True)
                dtotal.backward()
                self._average_gradients(self.disc_params)
                dnorm = torch.nn.utils.clip_grad_norm_(self.disc_params, self.recipe.optim.disc_grad_clip)
                if self._all_true(bool(torch.isfinite(dnorm))):
                    self.disc_opt.step()
                    metrics.update({k: float(v.detach()) for k, v in dlosses.items()})
                    metrics["disc_grad_norm"] = float(dnorm)
                else:
                    self.disc_opt.zero_grad(set_to_none=True)
                    self._event("skipped_discriminator_step", reason="non-finite discriminator gradients")
        if self.ema is not None:
            decay = self.recipe.train.ema_decay
            with torch.no_grad():
                for n, p in self.codec.named_parameters():
                    self.ema[n].lerp_(p.detach(), 1.0 - decay)
        self.bad_in_a_row = 0
        self._codes = out.codes.detach()
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
        self._event("skipped_step", reason=reason, files=batch["path"], in_a_row=self.bad_in_a_row)
        limit = self.recipe.train.max_bad_steps
        if self.bad_in_a_row >= limit:
            raise NonFiniteError(f"step {step}: {self.bad_in_a_row} consecutive steps skipped ({reason}); stopping "
                                 f"(train.max_bad_steps={limit}). Lower optim.lr, check the data, or resume from "
                                 f"the last checkpoint in {self.ckpt_root}")
        return None

    # ---- loop --------------------------------------------------------------------------------------------
    def fit(self, until_step: int | None) -> TrainResult:
        r = self.recipe
        end = r.train.steps if until_step is None else min(until_step, r.train.steps)
        if self.is_main:
            for record in getattr(self, "_pending", []):
                self.jsonl.write(json.dumps(record) + "\n")
            self._pending = []
        bar = None
        if self.is_main and self.progress:
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
                    codes = self._codes.cpu()
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
                if self.is_main and self.valid and (self.step % r.train.valid_every == 0 or self.step == r.train.steps):
                    last_metrics.update(self._validate())
                if self.step % r.train.checkpoint_every == 0 and self.step < end:
                    last_ckpt, saved_step = self._save(), self.step
                if self._stop_agreed():
                    self._info(f"stop requested: stopping at step {self.step} with a checkpoint (continue with "
                               f"--resume)")
                    break
        except KeyboardInterrupt:
            # A second signal lands anywhere in a step (after an optimizer update, before the step count moves),
            # so the state is no step's: no checkpoint, the last one written stays the latest.
            self._info(f"interrupted during step {self.step + 1}: no checkpoint written (the latest is "
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
        if self.is_main and self.step >= r.train.steps and r.train.export:
            release = export_release(self.codec, self.out_dir / "release", weights=self.ema)
            self._info(f"release written to {release}")
        if self.distributed:
            dist.barrier()
        return TrainResult(self.step, self.out_dir, last_ckpt, release, list(self.skipped), last_metrics,
                           self._stop_signal)

    def _catch_stop_signals(self) -> dict:
        """SIGTERM (a scheduler's notice, ``kill``) and SIGINT (Ctrl-C, also delivered to jobs started in the
        background, which otherwise ignore it) ask for a stop at the end of the current step, so the checkpoint
        is consistent; a second signal interrupts at once, without a checkpoint."""
        self._stop_requested = False
        self._stop_signal = None
        if threading.current_thread() is not threading.main_thread():
            return {}

        def request_stop(signum, frame):
            if self._stop_requested:
                raise KeyboardInterrupt
            self._stop_requested, self._stop_signal = True, signum
            if self.is_main:
                print(f"\n{signal.Signals(signum).name}: finishing this step and writing a checkpoint (send it again "
                      f"to stop at once, without one)", file=sys.stderr, flush=True)

        return {signum: signal.signal(signum, request_stop) for signum in (signal.SIGTERM, signal.SIGINT)}

    def _stop_agreed(self) -> bool:
        """Whether any rank was asked to stop (all ranks stop at the same step)."""
        if not self.distributed:
            return self._stop_requested
        flag = torch.tensor([float(self._stop_requested)], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    # ---- logging -----------------------------------------------------------------------------------------
    def _log_train(self, sums, counts, usage, steps_per_s: float, batch: dict) -> dict[str, float]:
        # Losses with weight 0 are not trained on; log the reconstruction ones anyway (they are the metric
        # people watch), computed on the last batch.
        if not self.is_main:
            return {}
        metrics = {k: sums[k] / counts[k] for k in sums}
        missing = [n for n in RECONSTRUCTION if n not in metrics]
        if missing:
            with torch.no_grad():
                self.codec.eval()
                wav = batch["audio"].to(self.device)
                if torch.isfinite(wav).all():
                    out = self.codec(wav)
                    metrics.update({k: float(v) for k, v in self._reconstruction(out.audio.float(), wav,
                                                                                  missing).items()})
                self._train_mode()
        audio_s = steps_per_s * self.recipe.data.batch_size * self.world_size * self.crop_samples \
            / self.config.sample_rate
        metrics.update({"steps_per_s": steps_per_s, "audio_s_per_s": audio_s,
                        "lr/generator": self.gen_opt.param_groups[0]["lr"]})
        if self.disc_opt is not None:
            metrics["lr/discriminator"] = self.disc_opt.param_groups[0]["lr"]
        for k, counts_k in enumerate(usage):
            total = int(counts_k.sum())
            if total == 0:
                continue
            p = counts_k.double() / total
            entropy = float(-(p[p > 0] * p[p > 0].log()).sum())
            metrics[f"codebooks/perplexity_{k}"] = math.exp(entropy)
            metrics[f"codebooks/usage_{k}"] = float((counts_k > 0).sum()) / counts_k.numel()
        for k, v in metrics.items():
            tag = k if "/" in k else (f"train/{k}" if not k.startswith("disc_") else f"disc/{k}")
            self.writer.add_scalar(tag, v, self.step)
        self.writer.flush()
        self.jsonl.write(json.dumps({"step": self.step, **metrics}) + "\n")
        self.jsonl.flush()
        return metrics

    def _train_mode(self) -> None:
        self.codec.train()
        for m in self._frozen_vq:
            m.eval()

    @torch.no_grad()
    def _validate(self) -> dict[str, float]:
        self.codec.eval()
        sums: dict[str, float] = defaultdict(float)
        scored = 0  # clips long enough for the consistency loss
        for i, item in enumerate(self.valid):
            wav = item["audio"][None].to(self.device)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                out = self.codec(wav)
            audio = out.audio.float()
            for k, v in self._reconstruction(audio, wav, RECONSTRUCTION).items():
                sums[k] += float(v)
            if self.consistency is not None and audio.shape[-1] >= self.consistency.min_samples:
                sums["consistency"] += float(self._consistency(out))
                scored += 1
            if self.pitch_teacher is not None:
                for k, v in self._pitch(out, wav, metrics=True).items():
                    sums[k] += float(v)
            if i < self.recipe.train.audio_samples:
                sr = self.config.sample_rate
                if self.step == self.recipe.train.valid_every or not getattr(self, "_logged_refs", False):
                    self.writer.add_audio(f"audio/{i}_original", wav[0].mean(0).cpu(), self.step, sr)
                    self.writer.add_image(f"spectrogram/{i}_original", self._spectrogram(wav[0]), self.step,
                                          dataformats="HW")
                self.writer.add_audio(f"audio/{i}_decoded", audio[0].mean(0).clamp(-1, 1).cpu(), self.step, sr)
                self.writer.add_image(f"spectrogram/{i}_decoded", self._spectrogram(audio[0]), self.step,
                                      dataformats="HW")
        self._logged_refs = True
        self._train_mode()
        metrics = {f"valid/{k}": v / (scored if k == "consistency" else len(self.valid)) for k, v in sums.items()}
        for k, v in metrics.items():
            self.writer.add_scalar(k, v, self.step)
        self.writer.flush()
        self.jsonl.write(json.dumps({"step": self.step, **metrics}) + "\n")
        self.jsonl.flush()
        return metrics

    def _spectrogram(self, wav: torch.Tensor) -> torch.Tensor:
        """[C, T] -> [mels, frames] in [0, 1], low frequencies at the bottom."""
        spec = self.mel.log_mel(wav.mean(0, keepdim=True))[0].cpu()
        spec = (spec - spec.max() + 8).clamp(min=0) / 8  # 80 dB of range
        return spec.flip(0)

    # ---- checkpoints -------------------------------------------------------------------------------------
    def _sync_check(self) -> bool:
        """All ranks hold the same codec state (weights and EMA codebooks): compare per-tensor checksums."""
        if not self.distributed:
            return True
        sums = torch.stack([v.detach().double().sum() for v in self.codec.state_dict().values()]).to(self.device)
        lo, hi = sums.clone(), sums.clone()
        dist.all_reduce(lo, op=dist.ReduceOp.MIN)
        dist.all_reduce(hi, op=dist.ReduceOp.MAX)
        differ = [k for k, a, b in zip(self.codec.state_dict(), lo.tolist(), hi.tolist()) if a != b]
        if differ:
            raise RuntimeError(f"step {self.step}: ranks diverged; tensors differ across ranks: {differ[:8]}")
        return True

    def _save(self) -> Path | None:
        in_sync = self._sync_check()
        path = None
        if self.is_main:
            files = {"model": ckpt.module_tensors(self.codec), "rng": ckpt.rng_tensors()}
            if len(self.adversaries):
                files["discriminators"] = ckpt.module_tensors(self.adversaries)
            if self.distiller is not None and self.distiller.state_dict():
                files["distiller"] = ckpt.module_tensors(self.distiller)
            if self.ema is not None:
                files["ema"] = {k: v.detach().contiguous().cpu() for k, v in self.ema.items()}
            opt_tensors, gen_meta = ckpt.optimizer_tensors(self.gen_opt, "generator")
            state: dict[str, Any] = {
                "step": self.step, "bad_in_a_row": self.bad_in_a_row, "skipped_steps": self.skipped,
                "world_size": self.world_size, "ranks_in_sync": in_sync,
                "data": {"seed": self.recipe.seed, "next_step": self.step, "batch_size": self.recipe.data.batch_size,
                         "world_size": self.world_size},
                "optimizers": {"generator": gen_meta},
                "lr": {"generator": self.gen_opt.param_groups[0]["lr"]},
                "recipe": self.recipe.to_dict(), "codec_config": self.config.to_dict(),
            }
            if self.disc_opt is not None:
                t, meta = ckpt.optimizer_tensors(self.disc_opt, "discriminator")
                opt_tensors.update(t)
                state["optimizers"]["discriminator"] = meta
                state["lr"]["discriminator"] = self.disc_opt.param_groups[0]["lr"]
            files["optimizers"] = opt_tensors
            path = ckpt.write_checkpoint(self.ckpt_root, self.step, files, state, self.recipe.train.keep_checkpoints)
        if self.distributed:
            dist.barrier()
        return path

    def _load_init(self, spec: str) -> None:
        """``model.init``: the starting weights of a new run (see :class:`~codec12.train.recipe.ModelRecipe`);
        the parts in ``model.init_fresh`` keep their random weights."""
        from codec12.codec import load_state_dict_strict

        fresh = self.recipe.model.init_fresh
        kept = [part for part in CODEC_PARTS if part not in fresh]
        sub_fresh = {part: tuple(f[len(part) + 1:] for f in fresh if f.startswith(f"{part}.")) for part in kept}
        for part, subs in sub_fresh.items():
            for sub in subs:
                try:
                    getattr(self.codec, part).get_submodule(sub)
                except AttributeError:
                    raise ValueError(f"model.init_fresh: the codec has no submodule {part}.{sub}") from None

        def own(part: str) -> dict[str, torch.Tensor]:  # the fresh submodules' tensors of a kept part
            return {k: v for k, v in getattr(self.codec, part).state_dict().items()
                    if any(k.startswith(f"{sub}.") for sub in sub_fresh[part])}

        path = Path(spec)
        if (path / "checkpoints").is_dir():
            latest = ckpt.latest_checkpoint(path / "checkpoints")
            if latest is None:
                raise ValueError(f"model.init: {path} is a run directory without a checkpoint")
            path = latest
        if (path / "state.json").is_file():
            files, state = ckpt.read_checkpoint(path)
            config = CodecConfig.from_dict(state["codec_config"], where=f"{path}/state.json")
            self._check_init_config(config, path)
            where = f"{path}/model.safetensors"
            if config.norm == self.config.norm:  # same parametrization: the exact tensors
                for part in kept:
                    prefix = f"{part}."
                    load_state_dict_strict(getattr(self.codec, part), {
                        **{k[len(prefix):]: v for k, v in files["model"].items() if k.startswith(prefix)},
                        **own(part)}, where)
            else:
                source = Codec.from_config(config)
                load_state_dict_strict(source, files["model"], where)
                for part in kept:
                    copy_weights(getattr(source, part), getattr(self.codec, part), where=where,
                                 keep=sub_fresh[part])
            if len(self.adversaries) and "discriminators" in files:
                try:
                    load_state_dict_strict(self.adversaries, files["discriminators"],
                                           f"{path}/discriminators.safetensors")
                    self._info(f"discriminators initialised from {path}")
                except ValueError as e:
                    self._info(f"discriminators start fresh ({e})")
            if self.distiller is not None and self.distiller.state_dict() and "distiller" in files:
                try:
                    load_state_dict_strict(self.distiller, files["distiller"], f"{path}/distiller.safetensors")
                    self._info(f"distillation head initialised from {path}")
                except ValueError as e:
                    self._info(f"distillation head starts fresh ({e})")
        else:
            source = Codec.from_pretrained(spec)
            self._check_init_config(source.config, spec)
            for part in kept:
                copy_weights(getattr(source, part), getattr(self.codec, part), where=str(spec), keep=sub_fresh[part])
        self._info(f"model initialised from {path}" + (f" (fresh: {', '.join(fresh)})" if fresh else ""))

    def _check_init_config(self, config: CodecConfig, where) -> None:
        # A release folds weight norm (norm "none"); the weights are the same model either way. With fresh
        # parts the architectures may differ there: the kept parts' tensors are checked one by one instead.
        if self.recipe.model.init_fresh:
            return
        if config.with_norm(self.config.norm).config_hash() != self.config.config_hash():
            raise ValueError(f"model.init: {where} holds a different architecture ({config.name or 'unnamed'}, "
                             f"config {config.config_hash()}) than the recipe's model ({self.config.name}); set "
                             f"model.preset / model.overrides to match it, or name the parts that differ in "
                             f"model.init_fresh")

    def _load(self, path: Path) -> None:
        from codec12.codec import load_state_dict_strict

        files, state = ckpt.read_checkpoint(path)
        if state["codec_config"] != self.config.to_dict():
            raise ValueError(f"{path}: the checkpoint's model differs from the recipe's (model.preset / overrides "
                             f"changed?)")
        load_state_dict_strict(self.codec, files["model"], f"{path}/model.safetensors")
        if len(self.adversaries):
            if "discriminators" not in files:
                raise ValueError(f"{path}: no discriminators.safetensors, but the recipe trains discriminators")
            load_state_dict_strict(self.adversaries, files["discriminators"], f"{path}/discriminators.safetensors")
        if self.distiller is not None and self.distiller.state_dict():
            if "distiller" not in files:
                raise ValueError(f"{path}: no distiller.safetensors, but the recipe has a distill section")
            load_state_dict_strict(self.distiller, files["distiller"], f"{path}/distiller.safetensors")
        if self.ema is not None:
            if "ema" in files:
                self.ema = {k: v.to(self.device) for k, v in files["ema"].items()}
            else:
                self._info("checkpoint has no EMA weights; starting EMA from the current weights")
                self.ema = {n: p.detach().clone() for n, p in self.codec.named_parameters()}
        opt = files.get("optimizers", {})
        ckpt.load_optimizer(self.gen_opt, opt, state["optimizers"]["generator"], "generator")
        if self.disc_opt is not None:
            if "discriminator" not in state["optimizers"]:
                raise ValueError(f"{path}: no discriminator optimizer state, but the recipe trains discriminators")
            ckpt.load_optimizer(self.disc_opt, opt, state["optimizers"]["discriminator"], "discriminator")
        ckpt.set_rng(files["rng"])
        self.step = int(state["step"])
        self.bad_in_a_row = int(state["bad_in_a_row"])
        self.skipped = list(state.get("skipped_steps", []))
        if state["world_size"] != self.world_size:
            self._info(f"resuming with world size {self.world_size} (checkpoint: {state['world_size']}): the data "
                       f"order from here differs from an uninterrupted run")
        self._info(f"resumed from {path} at step {self.step}")

    def close(self) -> None:
        if getattr(self, "writer", None) is not None:
            self.writer.close()
            self.writer = None
        if getattr(self, "jsonl", None) is not None:
            self.jsonl.close()
            self.jsonl = None
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
        torch.set_num_threads(self.threads_before)
