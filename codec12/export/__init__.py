"""Releases, ONNX export and the .c12 container.

Names are imported lazily: ``from codec12.export import OnnxCodec`` loads only numpy and onnxruntime, while
``export_onnx`` pulls in torch when first used.
"""

from codec12._lazy import lazy_exports

_EXPORTS = {
    "OnnxCodec": "codec12.export.runtime",
    "OnnxExport": "codec12.export.onnx",
    "UnfitForTokenize": "codec12.export.runtime",
    "export_onnx": "codec12.export.onnx",
    "measure_code_agreement": "codec12.export.onnx",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
