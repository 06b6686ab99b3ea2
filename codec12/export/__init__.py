"""Releases, ONNX export and the .c12 container.

Names are imported lazily: ``from codec12.export import OnnxCodec`` loads only numpy and onnxruntime, while
``export_onnx`` pulls in torch when first used.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "OnnxCodec": "codec12.export.runtime",
    "OnnxExport": "codec12.export.onnx",
    "export_onnx": "codec12.export.onnx",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'codec12.export' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
