"""Optional dependencies: a missing one stops with one line naming the extra that installs it, and the
declared dependency set (ranges in pyproject.toml, the tested set in constraints.txt) is what make installs."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest

from codec12._optional import MissingExtra, require
from codec12.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_require_names_the_extra():
    assert require("json", "train", "x").dumps([1]) == "[1]"
    with pytest.raises(MissingExtra, match=r"^the thing needs no_such_pkg, which is not installed \(.*\); install "
                                           r"it with pip install 'codec12\[train\]'$"):
        require("no_such_pkg.sub", "train", "the thing")


def test_export_onnx_without_onnx_is_one_line_naming_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if not installed
    assert main(["export", "onnx", "c12-tiny-16k", str(tmp_path / "onnx")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("codec12 export: error: codec12 export onnx needs onnx")
    assert "pip install 'codec12[onnx]'" in err and not (tmp_path / "onnx").exists()


@pytest.mark.parametrize(("module", "extra", "make"), [
    ("onnxruntime", "onnx", lambda: __import__("codec12.export.runtime", fromlist=["x"]).OnnxCodec("nowhere")),
    ("auraloss", "train", lambda: __import__("codec12.losses.spectral", fromlist=["x"]).MultiResolutionSTFTLoss()),
    ("pyworld", "train", lambda: __import__("codec12.distill.pitch", fromlist=["x"]).PitchTeacher(16000, 160, 640,
                                                                                                   50.0, 500.0)),
    ("pesq", "eval", lambda: __import__("codec12.eval.metrics", fromlist=["x"]).METRICS["pesq_wb"].load()),
])
def test_missing_optional_packages_name_their_extra(module, extra, make, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(MissingExtra, match=rf"needs {module}, .* pip install 'codec12\[{extra}\]'"):
        make()


def test_python_range_and_the_tested_set():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11"
    assert {"train", "eval", "onnx"} <= set(project["optional-dependencies"])
    pins = [d for d in project["dependencies"] if "==" in d]
    assert pins == []  # ranges in pyproject; the exact versions live in constraints.txt
    constraints = (ROOT / "constraints.txt").read_text().split()
    assert "torch==2.14.1" in constraints and "torchaudio==2.11.0" in constraints
    makefile = (ROOT / "Makefile").read_text()
    assert "-c constraints.txt -e '.[train,eval,onnx,dev,readers]'" in makefile
