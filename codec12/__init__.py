"""codec12: a 12.5 Hz neural speech codec with a semantic + acoustic token split.

Names are imported lazily, so that ``import codec12.export.runtime`` (numpy + onnxruntime only) does not
pull in torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "Codec": "codec12.codec",
    "CodecOutput": "codec12.codec",
    "CodecConfig": "codec12.config",
    "QuantizerConfig": "codec12.config",
    "SEANetConfig": "codec12.config",
    "TransformerConfig": "codec12.config",
    "load_audio": "codec12.audio",
    "save_audio": "codec12.audio",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'codec12' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
