"""Building a distiller from the recipe's ``distill`` section."""

from __future__ import annotations

import dataclasses

from torch import nn

from codec12.distill.asr import ASRDistillConfig, ASRTeacher, load_asr_teacher
from codec12.distill.phonetic import PhoneticDistillConfig, PhoneticDistiller
from codec12.distill.ssl import SSLDistillConfig, SSLDistiller, SSLTeacher, load_teacher

_CONFIGS = {"ssl": SSLDistillConfig, "asr": ASRDistillConfig, "phonetic": PhoneticDistillConfig}


def distill_config_from_dict(cfg: dict, where: str = "distill"
                             ) -> SSLDistillConfig | ASRDistillConfig | PhoneticDistillConfig:
    """Validate the recipe's ``distill`` section; unknown keys and teachers are errors naming them."""
    if not isinstance(cfg, dict):
        raise ValueError(f"{where}: expected an object, got {type(cfg).__name__}")
    teacher = cfg.get("teacher")
    if teacher not in _CONFIGS:
        raise ValueError(f"{where}.teacher must be one of {sorted(_CONFIGS)}, got {teacher!r}")
    cls = _CONFIGS[teacher]
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown} for teacher {teacher!r} (known: {sorted(known)})")
    if teacher in ("ssl", "asr") and "model" not in cfg:
        raise ValueError(f"{where}.model is required for the {teacher} teacher (a local directory or a hub id)")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}
    try:
        return cls(**values)
    except TypeError as e:
        raise ValueError(f"{where}: {e}") from e


def semantic_dim(codec) -> int:
    """Channels of ``CodecOutput.semantic`` for this codec."""
    return codec.quantizer.semantic.dim


def build_distiller(cfg: dict, codec) -> nn.Module:
    """Recipe ``distill`` section + the codec being trained -> distiller module (trainable parts only in its
    ``state_dict``). The SSL or ASR teacher is loaded here, frozen, in eval mode."""
    config = distill_config_from_dict(cfg)
    if isinstance(config, SSLDistillConfig):
        model, extractor = load_teacher(config.model)
        teacher = SSLTeacher(model, extractor, config.layers, config.sample_rate)
        return SSLDistiller(config, teacher, semantic_dim(codec), sample_rate=codec.sample_rate,
                            frame_size=codec.frame_size)
    if isinstance(config, ASRDistillConfig):
        encoder, extractor = load_asr_teacher(config.model)
        return SSLDistiller(config, ASRTeacher(encoder, extractor, config.layers), semantic_dim(codec),
                            sample_rate=codec.sample_rate, frame_size=codec.frame_size)
    return PhoneticDistiller(config, semantic_dim(codec))
