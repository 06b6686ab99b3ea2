"""codec12: a 12.5 Hz neural speech codec with a semantic + acoustic token split."""

from codec12.audio import load_audio, save_audio
from codec12.codec import Codec, CodecOutput
from codec12.config import CodecConfig, QuantizerConfig, SEANetConfig, TransformerConfig

__version__ = "0.1.0"

__all__ = [
    "Codec",
    "CodecConfig",
    "CodecOutput",
    "QuantizerConfig",
    "SEANetConfig",
    "TransformerConfig",
    "load_audio",
    "save_audio",
]
