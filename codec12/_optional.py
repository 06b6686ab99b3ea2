"""Optional dependencies: what each extra of the package installs, and an import that names the extra.

``pip install codec12`` gives encoding, decoding, streaming and tokenizing; ``[train]``, ``[eval]`` and ``[onnx]``
add what those commands need. A command that reaches a missing package stops with one line naming it and the
extra that installs it, not with a traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtra(ImportError):
    """An optional package is not installed; the message says which extra installs it."""


def install_hint(extra: str) -> str:
    return f"pip install 'codec12[{extra}]'"


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` for ``purpose`` (e.g. ``"codec12 export onnx"``), or raise :class:`MissingExtra`."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        package = module.split(".")[0]
        raise MissingExtra(f"{purpose} needs {package}, which is not installed ({e}); install it with "
                           f"{install_hint(extra)}") from e
