"""codec12: a 12.5 Hz neural speech codec with a semantic + acoustic token split.

Names are imported lazily, so that ``import codec12.export.runtime`` (numpy + onnxruntime only) does not
pull in torch.
"""

from codec12._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "Codec": "codec12.codec",
    "CodecOutput": "codec12.codec",
    "EncodedBatch": "codec12.codec",
    "CodecConfig": "codec12.config",
    "ISTFTDecoderConfig": "codec12.config",
    "QuantizerConfig": "codec12.config",
    "SEANetConfig": "codec12.config",
    "TransformerConfig": "codec12.config",
    "load_audio": "codec12.audio",
    "save_audio": "codec12.audio",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
