"""Building a distiller from the recipe's ``distill`` section."""

from __future__ import annotations

import dataclasses
import typing

from torch import nn

from codec12._dataclass_io import convert
from codec12.distill.asr import ASRDistillConfig, ASRTeacher, load_asr_teacher
from codec12.distill.phonetic import PhoneticDistillConfig, PhoneticDistiller
from codec12.distill.ssl import SSLDistillConfig, SSLDistiller, SSLTeacher, load_teacher

# The recipe's ``distill`` section: one of the teachers' configs, told apart by its ``teacher`` field.
DistillConfig = SSLDistillConfig | ASRDistillConfig | PhoneticDistillConfig
# The losses the teachers compute by default (a section's ``weight_name`` may name its loss otherwise).
TEACHER_LOSSES = tuple(sorted(f.default for c in typing.get_args(DistillConfig) for f in dataclasses.fields(c)
                              if f.name == "weight_name"))


def distill_config_from_dict(cfg: dict, where: str = "distill") -> DistillConfig:
    """Validate a ``distill`` section given as a dict (as JSON has it); unknown keys and teachers are errors naming
    them."""
    return convert(cfg, DistillConfig, where)


def semantic_dim(codec) -> int:
    """Channels of ``CodecOutput.semantic`` for this codec."""
    return codec.quantizer.semantic.dim


def build_distiller(cfg: DistillConfig | dict, codec) -> nn.Module:
    """Recipe ``distill`` section (a teacher's config, or the dict of one) + the codec being trained -> distiller
    module (trainable parts only in its ``state_dict``). The SSL or ASR teacher is loaded here, frozen, in eval
    mode."""
    config = distill_config_from_dict(cfg) if isinstance(cfg, dict) else cfg
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
