"""The ``codec12 export`` command group: ``export onnx`` (and later verbs such as ``export release``).

A verb joins the group by defining ``add_parsers(export_subparsers)`` in its module and being listed in
``EXPORT_MODULES``. Nothing heavy is imported until a command runs.
"""

from __future__ import annotations

import importlib

EXPORT_MODULES = (
    "codec12.export.onnx",  # export onnx
)


def add_parsers(sub) -> None:
    p = sub.add_parser("export", help="export a model (onnx)")
    export_sub = p.add_subparsers(dest="export_command", metavar="FORMAT", required=True)
    for name in EXPORT_MODULES:
        importlib.import_module(name).add_parsers(export_sub)
