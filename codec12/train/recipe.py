"""Training recipes: small JSON/TOML files that name a base recipe and state only what differs.

``load_recipe(path, overrides)`` resolves the ``base`` chain (paths relative to the file naming them; a bare
name with no such file is a recipe bundled in ``codec12/recipes/``), deep-merges each file over its base (objects
merge, everything else replaces), applies ``--set a.b=value`` overrides and validates the result into a frozen
:class:`Recipe` (:mod:`codec12._dataclass_io`, by the fields' types). Unknown keys are errors naming the key.
Sections whose keys the types leave open: ``model.overrides`` (checked by :class:`~codec12.config.CodecConfig`),
``losses.weights`` and ``losses.schedules`` (loss names, checked against the losses the trainer computes,
:mod:`codec12.train.loss_names`) and ``distill`` (a :data:`codec12.distill.DistillConfig`, whose keys depend on its
``teacher``).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from codec12._dataclass_io import check_types, field_hint, holds_objects, keys_fixed, load, to_plain
from codec12.config import CodecConfig
from codec12.distill.build import TEACHER_LOSSES, DistillConfig
from codec12.losses.adversarial import FEATURE_MATCHING, GAN_LOSSES
from codec12.losses.balancer import WeightSchedule
from codec12.train.loss_names import GENERATOR_LOSSES

# Bundled recipes ship inside the package, so ``codec12 train tiny-16k-cpu`` works from an installed wheel.
RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"
CODEC_PARTS = ("encoder", "encoder_transformer", "downsample", "quantizer", "upsample", "decoder_transformer",
               "decoder")


@dataclass(frozen=True, kw_only=True)
class ModelRecipe:
    """preset: a CodecConfig preset; overrides: nested CodecConfig fields replacing the preset's.
    init: start from these weights instead of random ones (a new run, fine-tuning): a training checkpoint or run
    directory (its latest checkpoint; discriminators and distillation head come too when the recipe has the
    same ones), or any model ``Codec.from_pretrained`` loads (a release, a bundled name, a Mimi checkpoint).
    Its architecture must be the recipe's; training-only quantizer settings may differ.
    init_fresh: top-level parts of the codec (``CODEC_PARTS``) that start from random weights instead, e.g.
    ``["decoder"]`` to put a new decoder (another ``istft`` block, or none) behind a trained encoder and
    quantizer; the other parts' tensors must then match the init's exactly (names and shapes). A dotted name
    (``"decoder.deviation_head"``) keeps only that submodule at its initial weights: a module the init does not
    have, added to a part that is otherwise loaded.
    freeze: top-level parts (``CODEC_PARTS``) whose parameters do not train, e.g. the encoder side
    (``["encoder", "encoder_transformer", "downsample", "quantizer"]``) to train a decoder behind fixed codes. A
    frozen quantizer's RVQ codebooks stop their EMA updates and dead-code restarts too; level dropout,
    unquantized passes and FSQ dither go on, since they are what the decoder learns from (an encoder trained
    behind a frozen RVQ quantizer then learns only from the unquantized passes and the distillation losses)."""

    preset: str = "c12-tiny-16k"
    overrides: dict = field(default_factory=dict)
    init: str | None = None
    init_fresh: tuple[str, ...] = ()
    freeze: tuple[str, ...] = ()

    def __post_init__(self):
        check_types(self, "model")
        if self.init == "":
            raise ValueError("model.init must be a path or model name, got ''")
        unknown = sorted(p for p in self.init_fresh if p.split(".")[0] not in CODEC_PARTS or "" in p.split("."))
        if unknown:
            raise ValueError(f"model.init_fresh: unknown parts {unknown} (parts: {list(CODEC_PARTS)})")
        bad = sorted(p for p in self.freeze if p not in CODEC_PARTS)
        if bad:
            raise ValueError(f"model.freeze: unknown parts {bad} (parts: {list(CODEC_PARTS)})")
        if set(self.freeze) >= set(CODEC_PARTS):
            raise ValueError("model.freeze: every part is frozen; nothing would train")
        if self.init_fresh and self.init is None:
            raise ValueError("model.init_fresh needs model.init (the weights of the other parts)")

    def codec_config(self) -> CodecConfig:
        base = CodecConfig.from_preset(self.preset).to_dict()
        merged = _merge(base, self.overrides, "model.overrides", CodecConfig)
        return CodecConfig.from_dict(merged, where="model.overrides")


@dataclass(frozen=True, kw_only=True)
class DataRecipe:
    """train: directory of audio files or manifest (.jsonl with ``path`` [+ ``text``], .tsv with a header);
    valid: the same for validation, or null to hold out ``valid_fraction`` of ``train`` (by file-name hash).
    At most ``valid_max_files`` are validated (their first ``valid_seconds``). Training crops are
    ``crop_frames`` whole 80 ms frames; ``loudness_db`` is the RMS level (dBFS) each crop is scaled to (null:
    no normalization)."""

    train: str = "data/train"
    valid: str | None = None
    valid_fraction: float = 0.02
    valid_max_files: int = 16
    valid_seconds: float = 4.0
    crop_frames: int = 25
    batch_size: int = 8
    loudness_db: float | None = -23.0
    max_gain_db: float = 30.0
    num_workers: int = 0
    cache: bool = False

    def __post_init__(self):
        check_types(self, "data")
        if not 0.0 <= self.valid_fraction < 1.0:
            raise ValueError(f"data.valid_fraction must be in [0, 1), got {self.valid_fraction}")
        for name in ("crop_frames", "batch_size", "valid_max_files"):
            if getattr(self, name) < 1:
                raise ValueError(f"data.{name} must be >= 1, got {getattr(self, name)}")
        if self.num_workers < 0 or self.valid_seconds <= 0:
            raise ValueError("data.num_workers must be >= 0 and data.valid_seconds > 0")


@dataclass(frozen=True, kw_only=True)
class LossRecipe:
    """weights: loss name (:mod:`codec12.train.loss_names`, or the distill section's) -> weight (0 = not in the
    objective, logged only; a harmonic decoder needs ``f0``, and ``voicing``, to train its pitch head against its
    pitch teacher); schedules: loss name -> :class:`~codec12.losses.balancer.WeightSchedule` of its weight;
    gan: ``hinge`` or ``lsgan``; feature_matching: ``l1`` or ``relative`` (each layer's L1 over the mean
    magnitude of its real features); stft_*/mel_*/phase_*: resolutions of the reconstruction losses."""

    weights: dict[str, float] = field(default_factory=lambda: {
        "l1": 0.0, "stft": 1.0, "mel": 1.0, "phase": 0.0, "consistency": 0.0, "f0": 0.0, "voicing": 0.0,
        "commitment": 1.0, "adv_msstft": 1.0, "feat_msstft": 1.0, "adv_mpd": 0.0, "feat_mpd": 0.0})
    schedules: dict[str, WeightSchedule] = field(default_factory=dict)
    gan: str = "hinge"
    feature_matching: str = "l1"
    stft_fft_sizes: tuple[int, ...] = (2048, 1024, 512, 256)
    mel_n_mels: tuple[int, ...] = (80, 80, 80)
    mel_win_lengths: tuple[int, ...] = (2048, 1024, 512)
    phase_fft_sizes: tuple[int, ...] = (1024, 512)

    def __post_init__(self):
        check_types(self, "losses")
        if self.gan not in GAN_LOSSES:
            raise ValueError(f"losses.gan must be 'hinge' or 'lsgan', got {self.gan!r}")
        if self.feature_matching not in FEATURE_MATCHING:
            raise ValueError(f"losses.feature_matching must be 'l1' or 'relative', got {self.feature_matching!r}")
        for name, w in self.weights.items():
            if w < 0:
                raise ValueError(f"losses.weights.{name} must be a number >= 0, got {w!r}")
        unweighted = sorted(set(self.schedules) - set(self.weights))
        if unweighted:
            raise ValueError(f"losses.schedules names {unweighted}, which have no entry in losses.weights")


@dataclass(frozen=True, kw_only=True)
class DiscriminatorRecipe:
    """msstft_*: multi-scale STFT discriminator; mpd_*: multi-period discriminator. A discriminator is built
    only when one of its losses (``adv_*`` / ``feat_*``) has a non-zero weight. ``start_step``: adversarial
    training starts there (reconstruction losses alone before)."""

    msstft_n_ffts: tuple[int, ...] = (2048, 1024, 512, 256, 128)
    msstft_channels: int = 32
    mpd_periods: tuple[int, ...] = (2, 3, 5, 7, 11)
    mpd_channels: int = 32
    start_step: int = 0

    def __post_init__(self):
        check_types(self, "discriminators")
        if self.msstft_channels < 1 or self.mpd_channels < 1 or self.start_step < 0:
            raise ValueError("discriminators: channels must be >= 1 and start_step >= 0")


@dataclass(frozen=True, kw_only=True)
class OptimRecipe:
    """AdamW for the generator (codec + distillation heads) and the discriminators; linear warmup then
    ``cosine``/``linear`` decay to ``min_lr_ratio`` x lr at the last step, or ``constant``. ``head_lr``: base
    learning rate of the distillation head (null: ``lr``); a head faster than the codec leaves CTC's blank
    plateau sooner. It follows the same schedule. ``disc_schedule``: the discriminators' own schedule
    (``cosine``, ``linear`` or ``constant``, same warmup); null: the generator's. A discriminator that joins a
    fine-tuning run late learns little at the tail of a decayed generator schedule; ``constant`` keeps it at
    ``disc_lr``."""

    lr: float = 3e-4
    disc_lr: float = 3e-4
    head_lr: float | None = None
    betas: tuple[float, float] = (0.8, 0.99)
    weight_decay: float = 0.01
    warmup_steps: int = 500
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    disc_schedule: Literal["cosine", "linear", "constant"] | None = None
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    disc_grad_clip: float = 1.0

    def __post_init__(self):
        check_types(self, "optim")
        if self.lr <= 0 or self.disc_lr <= 0 or len(self.betas) != 2:
            raise ValueError("optim: lr and disc_lr must be > 0 and betas a pair")
        if self.head_lr is not None and not self.head_lr > 0:
            raise ValueError(f"optim.head_lr must be > 0 or null, got {self.head_lr!r}")
        if self.warmup_steps < 0 or not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError("optim: warmup_steps must be >= 0 and min_lr_ratio in [0, 1]")


@dataclass(frozen=True, kw_only=True)
class TrainRecipe:
    """steps: optimizer steps; every ``*_every`` counts steps. ``ema_decay`` 0 disables EMA weights (the
    release uses EMA weights when on). ``max_bad_steps``: consecutive non-finite steps before aborting.
    ``device``: ``auto`` (CUDA when available), ``cpu`` or ``cuda``. ``threads``: CPU threads (null: torch's
    default). ``teacher_forced_f0``: a harmonic decoder synthesises its training output with the pitch teacher's
    F0 on the frames the teacher calls voiced (its own elsewhere, and always at validation and inference), so
    its envelope learns harmonics where they are, not where an early F0 estimate puts them."""

    steps: int = 100_000
    log_every: int = 50
    valid_every: int = 1000
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    ema_decay: float = 0.0
    bf16: bool = True
    max_bad_steps: int = 10
    export: bool = True
    audio_samples: int = 2
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = None
    teacher_forced_f0: bool = False

    def __post_init__(self):
        check_types(self, "train")
        for name in ("steps", "log_every", "valid_every", "checkpoint_every", "keep_checkpoints", "max_bad_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"train.ema_decay must be in [0, 1), got {self.ema_decay}")


@dataclass(frozen=True, kw_only=True)
class Recipe:
    """A whole training run. ``distill``: the teacher of semantic distillation (:mod:`codec12.distill`; null:
    none). The loss names of ``losses.weights`` are checked here: each must be a loss the trainer knows, and a
    non-zero weight (or a schedule) needs a loss this run computes; a weight of 0 means "not in the objective", so
    it may stay for a loss the run does not compute (a teacher switched off)."""

    description: str = ""
    seed: int = 0
    model: ModelRecipe = field(default_factory=ModelRecipe)
    data: DataRecipe = field(default_factory=DataRecipe)
    losses: LossRecipe = field(default_factory=LossRecipe)
    discriminators: DiscriminatorRecipe = field(default_factory=DiscriminatorRecipe)
    optim: OptimRecipe = field(default_factory=OptimRecipe)
    train: TrainRecipe = field(default_factory=TrainRecipe)
    distill: DistillConfig | None = None

    def __post_init__(self):
        check_types(self, "")
        _check_loss_names(self.losses, self.distill)

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "recipe") -> "Recipe":
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected an object, got {type(data).__name__}")
        return load(cls, {k: v for k, v in data.items() if k != "base"}, where)

    def replace(self, **sections) -> "Recipe":
        """Copy with values replaced: ``recipe.replace(train={"steps": 2})`` merges into the section."""
        return Recipe.from_dict(_merge(self.to_dict(), sections, "replace", Recipe))


def _check_loss_names(losses: LossRecipe, distill: DistillConfig | None) -> None:
    computed = set(GENERATOR_LOSSES) | ({distill.weight_name} if distill is not None else set())
    known = computed | set(TEACHER_LOSSES)
    unknown = sorted(set(losses.weights) - known)
    if unknown:
        raise ValueError(f"losses.weights names {unknown}, which no run computes (the losses: {sorted(known)}; a "
                         f"distill section's weight_name names its own)")
    idle = sorted(n for n, w in losses.weights.items() if n not in computed and (w != 0 or n in losses.schedules))
    if idle:
        raise ValueError(f"losses.weights names {idle}, but this run computes no such loss (it computes "
                         f"{sorted(computed)}); a weight of 0 with no schedule leaves a loss out")
    if distill is not None and distill.weight_name not in losses.weights:
        raise ValueError(f"losses.weights has no weight for {distill.weight_name!r}, the loss of the distill "
                         f"section (e.g. --set losses.weights.{distill.weight_name}=1)")


def _merge(base: dict, update: dict, where: str, cls, path: tuple[str, ...] = ()) -> dict:
    """Deep-merge ``update`` into a copy of ``base`` (objects merge, everything else replaces): the JSON forms of
    dataclass ``cls``. A key ``base`` lacks is an error where the types fix the keys (not below ``losses.weights``,
    ``model.overrides``...)."""
    if not isinstance(update, dict):
        raise ValueError(f"{where}: expected an object at {'.'.join(path) or 'top level'}, got {update!r}")
    out = copy.deepcopy(base)
    for key, value in update.items():
        sub = path + (key,)
        if key not in out and keys_fixed(cls, path):
            raise ValueError(f"{where}: unknown key {'.'.join(sub)!r}")
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value, where, cls, sub)
        else:
            out[key] = copy.deepcopy(value)
    return out


def bundled_recipes() -> list[str]:
    """Names of the recipes shipped with the package (``codec12 train NAME``)."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.json"))


def _bundled(path: Path) -> Path | None:
    """The bundled recipe a bare name (``tiny-16k-cpu`` or ``tiny-16k-cpu.json``) stands for, if any."""
    if len(path.parts) != 1:
        return None
    name = path.name if path.suffix == ".json" else f"{path.name}.json" if not path.suffix else None
    return RECIPES_DIR / name if name and (RECIPES_DIR / name).is_file() else None


def _locate(path: Path) -> Path:
    """A recipe file: the path itself, or the bundled recipe a bare name stands for when no such file exists."""
    return (path if path.is_file() else _bundled(path) or path).resolve()


def read_recipe_file(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a recipe file and its ``base`` chain into one merged (unvalidated) dict."""
    path = _locate(Path(path))
    if path in _seen:
        raise ValueError(f"{path}: recipe base chain loops ({' -> '.join(str(p) for p in _seen)})")
    try:
        text = path.read_text()
    except OSError as e:
        raise ValueError(f"{path}: cannot read recipe ({e.strerror or e})") from e
    try:
        if path.suffix == ".toml":
            import tomllib  # Python >= 3.11; JSON recipes work everywhere

            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except (json.JSONDecodeError, ValueError) as e:  # tomllib.TOMLDecodeError is a ValueError
        raise ValueError(f"{path}: not a valid {'TOML' if path.suffix == '.toml' else 'JSON'} recipe: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a recipe must be an object")
    base_name = data.pop("base", None)
    if base_name is None:
        return data
    base_path = path.parent / base_name
    if not base_path.is_file():  # a bundled recipe by name: {"base": "base.json"} in a recipe of your own
        base_path = _bundled(Path(base_name)) or base_path
    base = read_recipe_file(base_path, _seen + (path,))
    # The base is complete; a derived recipe may not invent keys (typos), except where the types leave them open.
    return _merge(base, data, str(path), Recipe)


def coerce(value: str, current: Any, key: str) -> Any:
    """Parse a ``--set`` value: JSON when it parses (numbers, true/false, null, lists, objects), a plain string
    otherwise; then matched to the type of the value it replaces (an int where a float was, etc.)."""
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    if current is None or parsed is None:
        return parsed
    if isinstance(current, bool):
        if not isinstance(parsed, bool):
            raise ValueError(f"--set {key}: expected true or false, got {value!r}")
        return parsed
    if isinstance(current, float) and isinstance(parsed, int) and not isinstance(parsed, bool):
        return float(parsed)
    if isinstance(current, (int, float)) and not isinstance(parsed, (int, float)):
        raise ValueError(f"--set {key}: expected a number, got {value!r}")
    if isinstance(current, str) and not isinstance(parsed, str):
        return value  # e.g. a data path that looks like a number
    if isinstance(current, list) and not isinstance(parsed, list):
        raise ValueError(f"--set {key}: expected a JSON list such as [1,2], got {value!r}")
    return parsed


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Apply ``key.path=value`` strings to a merged recipe dict (a copy is returned)."""
    data = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"--set {item!r}: expected key=value (e.g. train.steps=1000)")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ValueError(f"--set {item!r}: bad key {key!r}")
        node = data
        for i, part in enumerate(parts[:-1]):
            sub = tuple(parts[:i + 1])
            if part not in node or node[part] is None:
                # A new object: a key of an open section, or a field that holds one (``distill`` when null).
                if keys_fixed(Recipe, sub[:-1]):
                    hint = field_hint(Recipe, sub)
                    if hint is None:
                        raise ValueError(f"--set {key}: unknown key {'.'.join(sub)!r}")
                    if not holds_objects(hint):
                        raise ValueError(f"--set {key}: {'.'.join(sub)!r} is not an object")
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                raise ValueError(f"--set {key}: {'.'.join(sub)!r} is not an object")
        last = parts[-1]
        if last not in node and keys_fixed(Recipe, tuple(parts[:-1])):
            raise ValueError(f"--set {key}: unknown key {key!r}")
        node[last] = coerce(value, node.get(last), key)
    return data


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Recipe file (+ base chain) + ``--set`` overrides -> validated :class:`Recipe`."""
    data = read_recipe_file(path)
    data = _merge(Recipe().to_dict(), data, str(path), Recipe)
    data = apply_overrides(data, overrides)
    return Recipe.from_dict(data, where=str(path))
