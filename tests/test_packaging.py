"""What an installed wheel holds and can do without the source tree: the recipes it ships, and a two-step
``codec12 train tiny-16k-cpu`` run by the console script of a wheel installed into a fresh virtualenv."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
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


def test_wheel_installed_into_a_fresh_venv_trains_tiny_16k_cpu_for_two_steps(wheel, tmp_path):
    import numpy as np
    import soundfile as sf

    fresh = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(fresh)], check=True, capture_output=True)
    python, script = fresh / "bin" / "python", fresh / "bin" / "codec12"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    # The dependencies (torch & co.) come from the running interpreter's site-packages, named by a .pth file and
    # not copied or downloaded: this test checks the package's own install (its files, package data and console
    # script), not dependency resolution, which constraints.txt and CI's `make install` cover. A plain path line
    # does not run that directory's own .pth files, so an editable install of codec12 there stays out of reach.
    deps = list(dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib")))
    assert ROOT not in {Path(d).resolve() for d in deps}  # (a venv inside the checkout, as `make` makes, is fine)
    (site / "codec12-test-deps.pth").write_text("".join(f"{d}\n" for d in deps))
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                    "--no-index", str(wheel)], check=True, capture_output=True, cwd=tmp_path)
    assert script.is_file()

    audio = tmp_path / "audio"  # 3 s of a tone in noise per file, 16 kHz
    rng = np.random.default_rng(0)
    t = np.arange(3 * 16000) / 16000
    for split, freqs in (("train", (220, 330)), ("valid", (440,))):
        (audio / split).mkdir(parents=True)
        for f in freqs:
            wav = 0.3 * np.sin(2 * np.pi * f * t) + 0.05 * rng.standard_normal(t.size)
            sf.write(audio / split / f"{f}.wav", wav.astype(np.float32), 16000)

    work = tmp_path / "work"  # cwd outside the source tree, no PYTHONPATH: only the fresh venv's codec12
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k != "VIRTUAL_ENV"}
    env.update(OMP_NUM_THREADS="1", HOME=str(tmp_path))
    code = "import json, sys, codec12; print(codec12.__file__); print(json.dumps(sys.path))"
    where = subprocess.run([str(python), "-c", code], cwd=work, env=env, capture_output=True, text=True,
                           check=True).stdout.split("\n")
    assert Path(where[0]).is_relative_to(site), where
    # the checkout itself is not importable (its .venv, which CI keeps inside the checkout, may be on the path)
    assert ROOT not in {Path(p).resolve() for p in json.loads(where[1]) if p}, where

    out = tmp_path / "run"
    sets = {"train.steps": 2, "data.train": audio / "train", "data.valid": audio / "valid",
            "data.batch_size": 2, "data.valid_seconds": 1, "train.log_every": 1, "train.threads": 1}
    done = subprocess.run([str(script), "train", "tiny-16k-cpu", "--out", str(out),
                           *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")]],
                          cwd=work, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    ckpt = out / "checkpoints" / "step-00000002"
    assert (out / "checkpoints" / "latest").read_text().strip() == ckpt.name
    assert json.loads((ckpt / "state.json").read_text())["step"] == 2
    assert (ckpt / "model.safetensors").stat().st_size > 0
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "total" in r] == [1, 2]  # the training metrics of each step
    assert any("valid/mel" in r for r in rows)
    assert (out / "release" / "model.safetensors").is_file()
    assert json.loads((out / "recipe.json").read_text())["data"]["train"] == str(audio / "train")


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
