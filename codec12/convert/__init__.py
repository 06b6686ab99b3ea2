"""Converters from other codecs' checkpoints into codec12 models (and back where the topology allows)."""

from codec12.convert.mimi import (
    codec12_to_mimi_state,
    detect_layout,
    mimi_codec_config,
    mimi_config_dict,
    mimi_from_pretrained,
    mimi_state_to_codec12,
    save_mimi,
)

__all__ = [
    "codec12_to_mimi_state",
    "detect_layout",
    "mimi_codec_config",
    "mimi_config_dict",
    "mimi_from_pretrained",
    "mimi_state_to_codec12",
    "save_mimi",
]
