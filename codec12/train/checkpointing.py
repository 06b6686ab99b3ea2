"""Which parts of a training run its checkpoints hold, and how a run starts from one.

A checkpoint (the directory format is :mod:`codec12.train.checkpoint`'s) holds the codec, the discriminators, the
distillation head, the EMA weights, both optimizers, the random state and the step counters: enough to continue
exactly (``resume``). ``model.init`` starts a new run from the weights of a release or of another run's checkpoint
instead, keeping the parts named in ``model.init_fresh`` at their random weights.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from codec12.codec import Codec
from codec12.config import CodecConfig
from codec12.train import checkpoint as ckpt
from codec12.train.distributed import Ranks
from codec12.train.recipe import CODEC_PARTS, Recipe
from codec12.weights import copy_weights, load_state_dict_strict

log = logging.getLogger("codec12.train")


@dataclass
class Progress:
    """The counters a checkpoint keeps besides tensors."""

    step: int = 0
    bad_in_a_row: int = 0  # consecutive steps skipped as non-finite
    skipped: list[int] = field(default_factory=list)  # every step skipped as non-finite


@dataclass
class TrainedParts:
    """What the optimizers move, and what the checkpoints therefore hold. ``ema``: name -> averaged weight of the
    codec's parameters (None without EMA), updated in place."""

    codec: Codec
    adversaries: nn.ModuleDict
    distiller: nn.Module | None
    ema: dict[str, torch.Tensor] | None
    gen_opt: torch.optim.Optimizer
    disc_opt: torch.optim.Optimizer | None


class Checkpointing:
    """The checkpoints of the run in ``out_dir`` (``out_dir/checkpoints``).

    Without ``resume`` a directory that already holds checkpoints is refused; with it the newest one that reads
    whole (:func:`~codec12.train.checkpoint.resume_checkpoint`) is :attr:`resume_from` (None when there is none
    yet: the run starts from step 0).
    """

    def __init__(self, out_dir: Path, recipe: Recipe, config: CodecConfig, ranks: Ranks, *, resume: bool,
                 info: Callable[[str], None]) -> None:
        self.root = out_dir / "checkpoints"
        self.recipe = recipe
        self.config = config
        self.ranks = ranks
        self.info = info
        held = ckpt.checkpoint_dirs(self.root) if self.root.is_dir() else []
        if held and not resume:
            raise ValueError(f"{out_dir} already holds checkpoints (latest {held[0].name}): pass --resume to "
                             f"continue, or choose another --out")
        # The newest checkpoint that reads whole: newer ones that are damaged are skipped with a warning.
        self.resume_from: Path | None = ckpt.resume_checkpoint(self.root, log.warning) if resume and held else None
        if resume and not held:
            info(f"no checkpoint in {self.root}; starting from step 0")

    # ---- save and resume
    def save(self, parts: TrainedParts, progress: Progress) -> Path | None:
        """Write a checkpoint of ``parts`` at ``progress.step`` (rank 0; every rank first checks that all hold the
        same codec). Returns its directory on rank 0, None elsewhere."""
        in_sync = self.ranks.check_same_state(parts.codec, progress.step)
        path = None
        if self.ranks.is_main:
            files = {"model": ckpt.module_tensors(parts.codec), "rng": ckpt.rng_tensors()}
            if len(parts.adversaries):
                files["discriminators"] = ckpt.module_tensors(parts.adversaries)
            if parts.distiller is not None and parts.distiller.state_dict():
                files["distiller"] = ckpt.module_tensors(parts.distiller)
            if parts.ema is not None:
                files["ema"] = {k: v.detach().contiguous().cpu() for k, v in parts.ema.items()}
            opt_tensors, gen_meta = ckpt.optimizer_tensors(parts.gen_opt, "generator")
            r = self.recipe
            state: dict[str, Any] = {
                "step": progress.step, "bad_in_a_row": progress.bad_in_a_row, "skipped_steps": progress.skipped,
                "world_size": self.ranks.world_size, "ranks_in_sync": in_sync,
                "data": {"seed": r.seed, "next_step": progress.step, "batch_size": r.data.batch_size,
                         "world_size": self.ranks.world_size},
                "optimizers": {"generator": gen_meta},
                "lr": {"generator": parts.gen_opt.param_groups[0]["lr"]},
                "recipe": r.to_dict(), "codec_config": self.config.to_dict(),
            }
            if parts.disc_opt is not None:
                t, meta = ckpt.optimizer_tensors(parts.disc_opt, "discriminator")
                opt_tensors.update(t)
                state["optimizers"]["discriminator"] = meta
                state["lr"]["discriminator"] = parts.disc_opt.param_groups[0]["lr"]
            files["optimizers"] = opt_tensors
            path = ckpt.write_checkpoint(self.root, progress.step, files, state, r.train.keep_checkpoints)
        self.ranks.barrier()
        return path

    def restore(self, path: Path, parts: TrainedParts) -> Progress:
        """Load the checkpoint at ``path`` into ``parts`` (weights, EMA, optimizer moments) and the global random
        state; returns its counters."""
        files, state = ckpt.read_checkpoint(path)
        # Compared as configs, not as JSON: a checkpoint may leave out fields at their defaults.
        if CodecConfig.from_dict(state["codec_config"], where=f"{path}/state.json") != self.config:
            raise ValueError(f"{path}: the checkpoint's model differs from the recipe's (model.preset / overrides "
                             f"changed?)")
        load_state_dict_strict(parts.codec, files["model"], f"{path}/model.safetensors")
        if len(parts.adversaries):
            if "discriminators" not in files:
                raise ValueError(f"{path}: no discriminators.safetensors, but the recipe trains discriminators")
            load_state_dict_strict(parts.adversaries, files["discriminators"], f"{path}/discriminators.safetensors")
        if parts.distiller is not None and parts.distiller.state_dict():
            if "distiller" not in files:
                raise ValueError(f"{path}: no distiller.safetensors, but the recipe has a distill section")
            load_state_dict_strict(parts.distiller, files["distiller"], f"{path}/distiller.safetensors")
        if parts.ema is not None:
            device = self.ranks.device
            if "ema" in files:
                parts.ema.clear()
                parts.ema.update({k: v.to(device) for k, v in files["ema"].items()})
            else:
                self.info("checkpoint has no EMA weights; starting EMA from the current weights")
                parts.ema.clear()
                parts.ema.update({n: p.detach().clone() for n, p in parts.codec.named_parameters()})
        opt = files.get("optimizers", {})
        ckpt.load_optimizer(parts.gen_opt, opt, state["optimizers"]["generator"], "generator")
        if parts.disc_opt is not None:
            if "discriminator" not in state["optimizers"]:
                raise ValueError(f"{path}: no discriminator optimizer state, but the recipe trains discriminators")
            ckpt.load_optimizer(parts.disc_opt, opt, state["optimizers"]["discriminator"], "discriminator")
        ckpt.set_rng(files["rng"])
        progress = Progress(int(state["step"]), int(state["bad_in_a_row"]), list(state.get("skipped_steps", [])))
        if state["world_size"] != self.ranks.world_size:
            self.info(f"resuming with world size {self.ranks.world_size} (checkpoint: {state['world_size']}): the "
                      f"data order from here differs from an uninterrupted run")
        self.info(f"resumed from {path} at step {progress.step}")
        return progress

    # ---- model.init
    def initialise(self, spec: str, codec: Codec, adversaries: nn.ModuleDict, distiller: nn.Module | None) -> None:
        """``model.init``: the starting weights of a new run (see :class:`~codec12.train.recipe.ModelRecipe`);
        the parts in ``model.init_fresh`` keep their random weights."""
        fresh = self.recipe.model.init_fresh
        kept = [part for part in CODEC_PARTS if part not in fresh]
        sub_fresh = {part: tuple(f[len(part) + 1:] for f in fresh if f.startswith(f"{part}.")) for part in kept}
        for part, subs in sub_fresh.items():
            for sub in subs:
                try:
                    getattr(codec, part).get_submodule(sub)
                except AttributeError:
                    raise ValueError(f"model.init_fresh: the codec has no submodule {part}.{sub}") from None

        def own(part: str) -> dict[str, torch.Tensor]:  # the fresh submodules' tensors of a kept part
            return {k: v for k, v in getattr(codec, part).state_dict().items()
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
                    load_state_dict_strict(getattr(codec, part), {
                        **{k[len(prefix):]: v for k, v in files["model"].items() if k.startswith(prefix)},
                        **own(part)}, where)
            else:
                source = Codec.from_config(config)
                load_state_dict_strict(source, files["model"], where)
                for part in kept:
                    copy_weights(getattr(source, part), getattr(codec, part), where=where, keep=sub_fresh[part])
            if len(adversaries) and "discriminators" in files:
                try:
                    load_state_dict_strict(adversaries, files["discriminators"], f"{path}/discriminators.safetensors")
                    self.info(f"discriminators initialised from {path}")
                except ValueError as e:
                    self.info(f"discriminators start fresh ({e})")
            if distiller is not None and distiller.state_dict() and "distiller" in files:
                try:
                    load_state_dict_strict(distiller, files["distiller"], f"{path}/distiller.safetensors")
                    self.info(f"distillation head initialised from {path}")
                except ValueError as e:
                    self.info(f"distillation head starts fresh ({e})")
        else:
            source = Codec.from_pretrained(spec)
            self._check_init_config(source.config, spec)
            for part in kept:
                copy_weights(getattr(source, part), getattr(codec, part), where=str(spec), keep=sub_fresh[part])
        self.info(f"model initialised from {path}" + (f" (fresh: {', '.join(fresh)})" if fresh else ""))

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
