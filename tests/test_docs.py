"""Every ```python block of README.md and docs/*.md runs, so the examples cannot rot.

Each block runs on its own in a fresh temporary working directory that holds a link to ``examples/`` (the
bundled model and the example clips are all a block may use). A block that needs the hub, a GPU, a release of
several GB or a long training run is preceded by ``<!-- no-test: reason -->`` in its page, and is listed in
``NO_TEST`` here: a marker added or removed without updating this list fails the test.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = re.compile(r"^<!--\s*no-test:\s*(.+?)\s*-->\s*$")

# page -> number of its python blocks that do not run here (each has a no-test marker with its reason)
NO_TEST = {
    "docs/inference.md": 4,  # the hub (a download, an upload), a CUDA GPU, torch.compile's minutes of compiling
    "docs/mimi.md": 1,  # the hub
    "docs/training.md": 1,  # hours of training on the prepared corpus
    "docs/voxtral.md": 4,  # the 8 GB Voxtral TTS release
}


def python_blocks(path: Path) -> list[tuple[int, str, str | None]]:
    """(line of the fence, source, no-test reason or None) of each ```python block of a Markdown page."""
    lines = path.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        if lines[i].strip() == "```python":
            start = i + 1
            end = next((j for j in range(start, len(lines)) if lines[j].strip() == "```"), None)
            if end is None:
                raise ValueError(f"{path}:{i + 1}: unterminated python block")
            before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            m = MARKER.match(before.strip())
            blocks.append((i + 1, "\n".join(lines[start:end]) + "\n", m.group(1) if m else None))
            i = end
        i += 1
    return blocks


ALL = [(p, line, src, reason) for p in PAGES for line, src, reason in python_blocks(p)]
RUNNABLE = [pytest.param(p, line, src, id=f"{p.relative_to(ROOT)}:{line}") for p, line, src, reason in ALL
            if reason is None]


def test_blocks_are_found_and_skips_are_listed():
    assert len(RUNNABLE) >= 4  # README, distillation, models, tokenize
    skipped: dict[str, int] = {}
    for p, _, _, reason in ALL:
        if reason is not None:
            skipped[str(p.relative_to(ROOT))] = skipped.get(str(p.relative_to(ROOT)), 0) + 1
    assert skipped == NO_TEST


def test_marker_parsing(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("text\n\n<!-- no-test: needs the hub -->\n```python\nx = 1\n```\n\n```python\ny = 2\n```\n")
    assert python_blocks(page) == [(4, "x = 1\n", "needs the hub"), (8, "y = 2\n", None)]


@pytest.mark.parametrize(("page", "line", "source"), RUNNABLE)
def test_python_block_runs(page, line, source, tmp_path, monkeypatch):
    (tmp_path / "examples").symlink_to(ROOT / "examples", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    code = compile(source, f"{page.relative_to(ROOT)}:{line}", "exec")
    exec(code, {"__name__": "__docs__"})
