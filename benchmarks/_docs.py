"""Shared by the benchmark scripts: describe the machine and replace a script's section of docs/benchmarks.md."""

from __future__ import annotations

import os
import platform
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
HEADER = """# Benchmarks

Each section is written by the script it names (`python benchmarks/NAME.py`), which replaces only its own
section; each table states the machine, the command and the date. The development machines have 2 CPU cores
that are shared with other work while measuring: the load average at the start of each run is given, and
absolute times are noisy; compare systems within one table (they ran side by side in one process).
"""


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line(threads: int) -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"Machine: {cpu_name()}, {os.cpu_count()} logical cores, {threads} torch threads, "
            f"{platform.system()} {platform.release()}, load average at start {load}")


def update_docs(key: str, title: str, text: str) -> None:
    """Put ``text`` under ``## title`` between this key's markers, keeping every other section."""
    begin, end = f"<!-- {key}:begin -->", f"<!-- {key}:end -->"
    doc = DOCS.read_text() if DOCS.exists() else HEADER
    block = f"{begin}\n## {title}\n\n{text.strip()}\n{end}"
    if begin in doc and end in doc:
        doc = doc[:doc.index(begin)] + block + doc[doc.index(end) + len(end):]
    else:
        doc = doc.rstrip() + "\n\n" + block + "\n"
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    tmp = DOCS.with_name(f".{DOCS.name}.tmp{os.getpid()}")
    tmp.write_text(doc)
    os.replace(tmp, DOCS)
    print(f"wrote {DOCS} [{key}]")
