"""Converters from other codecs' checkpoints (Mimi, Voxtral TTS) into codec12 models, and back."""

from codec12._lazy import lazy_exports

_EXPORTS = {
    "codec12_to_mimi_state": "codec12.convert.mimi",
    "detect_layout": "codec12.convert.mimi",
    "mimi_codec_config": "codec12.convert.mimi",
    "mimi_config_dict": "codec12.convert.mimi",
    "mimi_from_pretrained": "codec12.convert.mimi",
    "mimi_state_to_codec12": "codec12.convert.mimi",
    "save_mimi": "codec12.convert.mimi",
    "codec12_to_voxtral_state": "codec12.convert.voxtral",
    "read_voxtral": "codec12.convert.voxtral",
    "save_voxtral": "codec12.convert.voxtral",
    "voxtral_args": "codec12.convert.voxtral",
    "voxtral_codec_config": "codec12.convert.voxtral",
    "voxtral_from_pretrained": "codec12.convert.voxtral",
    "voxtral_state_to_codec12": "codec12.convert.voxtral",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
