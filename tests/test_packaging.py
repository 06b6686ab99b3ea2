"""What an installed wheel holds and can do without the source tree."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from codec12.train.recipe import bundled_recipes

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the package sources (nothing is written into the source tree)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).is_file():
            (src / name).write_bytes((ROOT / name).read_bytes())
    shutil.copytree(ROOT / "codec12", src / "codec12", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(src),
                    "-w", str(out)], check=True, capture_output=True, cwd=tmp)
    (whl,) = out.glob("codec12-*.whl")
    return whl


def test_wheel_ships_the_bundled_recipes(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"codec12/recipes/{n}.json" for n in bundled_recipes()} <= names
    assert {"base", "tiny-16k-cpu", "tiny-16k-cpu-phonetic", "mimi-24k", "fsq-24k"} <= set(bundled_recipes())


def test_installed_wheel_finds_recipes_by_name_without_the_source_tree(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    work = tmp_path / "work"  # no recipes/ here, and the source tree is not on the path
    work.mkdir()
    (work / "mine.json").write_text(json.dumps({"base": "tiny-16k-cpu", "train": {"steps": 7}}))
    code = ("import codec12.train.recipe as r; from codec12.train import load_recipe; "
            "print(r.RECIPES_DIR); a = load_recipe('tiny-16k-cpu'); b = load_recipe('mine.json'); "
            "c = load_recipe('tiny-16k-cpu-phonetic'); "
            "print(a.train.steps, b.train.steps, b.data.batch_size, c.distill.teacher)")
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    where, values = done.stdout.split("\n")[:2]
    assert Path(where).is_relative_to(site)
    assert values.split() == ["20000", "7", "4", "phonetic"]


def test_train_help_names_every_bundled_recipe():
    from codec12.cli import build_parser

    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    for name in bundled_recipes():
        assert name in train.description


def test_licence_is_stated_for_the_code_and_the_bundled_weights(wheel):
    text = (ROOT / "LICENSE").read_text()
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"] and "END OF TERMS AND CONDITIONS" in text
    whl = zipfile.ZipFile(wheel)
    (meta,) = [n for n in whl.namelist() if n.endswith(".dist-info/METADATA")]
    assert "License-Expression: Apache-2.0" in whl.read(meta).decode()
    assert any(n.endswith("licenses/LICENSE") for n in whl.namelist())
    for page in ("README.md", "docs/models.md"):
        licence = (ROOT / page).read_text().split("## Licence", 1)[1].split("\n## ", 1)[0]
        for name in ("Apache", "GPL-2+", "GPL-3", "CC-BY-SA-3.0", "GFDL-1.3", "synthetic speech"):
            assert name in licence, (page, name)
