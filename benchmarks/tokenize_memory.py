"""Peak memory of `codec12 tokenize` on one long file: flat in the file's length, under the budget.

    .venv/bin/python benchmarks/tokenize_memory.py                          # c12-mimi-24k: 1 and 60 minutes
    .venv/bin/python benchmarks/tokenize_memory.py --cases micro:0.5,c12-tiny-16k:1   # a quick check
    .venv/bin/python benchmarks/tokenize_memory.py --cases c12-mimi-24k:1 --runtime onnx --rate 44100

Each case is ``PRESET:MINUTES``: a model of the preset with random weights (memory does not depend on them;
``micro`` is the test suite's size) tokenizes one generated file of that length (written a minute at a time,
never whole in memory; at ``--rate``, the model's by default) with ``codec12 tokenize`` in a child process, one
thread, no worker processes. The child reports its own peak resident set (VmHWM in /proc/self/status:
``getrusage``'s ru_maxrss for children would also count this process's pages copied by the fork before exec;
without /proc, not Linux, that is printed instead). With ``--runtime onnx`` the model is exported beforehand
and tokenize runs the export directory (``--export-in-run``: tokenize exports it itself, and the export's own
peak counts). Printed per case: the peak, the target (``--target-mb``, 1536 by default: the default budget) and
whether the peak is under it, with the wall time and the plan tokenize logged.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tokenize_common import config_of, save_random_model, write_long  # noqa: E402

_CHILD = """
import sys
from codec12.cli import main
rc = main(sys.argv[1:])
try:
    hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    print("PEAK_KIB", int(hwm.split()[1]), file=sys.stderr)
except OSError:
    pass
sys.exit(rc)
"""


def peak_rss(args: list[str]) -> tuple[float, float, int, str]:
    """Run ``codec12 tokenize ARGS`` in a child process: (peak RSS in MiB, wall seconds, exit status, stderr)."""
    start = time.monotonic()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", _CHILD, "tokenize", *args], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, env=env)
    wall = time.monotonic() - start
    kib = [int(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("PEAK_KIB")]
    if kib:
        peak = kib[0] / 1024
    else:  # no /proc: the largest child's ru_maxrss (KiB on Linux, bytes on macOS)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / (2**20 if sys.platform == "darwin" else 1024)
    return peak, wall, proc.returncode, proc.stderr


def export_once(model_dir: Path, out: Path) -> Path:
    if not out.exists():
        from codec12 import Codec
        from codec12.export import export_onnx

        export_onnx(Codec.from_pretrained(model_dir), out)
    return out


def run_case(preset: str, minutes: float, args: argparse.Namespace, work: Path) -> bool:
    model_dir = save_random_model(preset, work / f"model-{preset}")
    if args.runtime == "onnx" and not args.export_in_run:
        model_dir = export_once(model_dir, work / f"onnx-{preset}")
    rate = args.rate or config_of(preset).sample_rate
    path = work / f"long-{minutes:g}min-{rate}.wav"
    write_long(path, minutes, rate)
    cli = [str(path), "--out", str(work / f"out-{preset}-{minutes:g}-{rate}"), "--model", str(model_dir), "--quiet",
           "--workers", "0", "--device", "cpu", "--runtime", args.runtime]
    if args.max_memory_mb is not None:
        cli += ["--max-memory-mb", str(args.max_memory_mb)]
    peak, wall, rc, err = peak_rss(cli)
    path.unlink()
    ok = rc == 0 and peak <= args.target_mb
    plan = next((line[line.index("memory budget"):] for line in err.splitlines() if "memory budget" in line), "")
    print(f"{preset:13s} {minutes:6g} min at {rate / 1000:g} kHz ({args.runtime}): peak RSS {peak:6.0f} MiB "
          f"(target {args.target_mb:g}: {'under' if ok else 'OVER'}), {wall:7.1f} s "
          f"({minutes * 60 / wall:5.1f}x real time with start-up), exit {rc}", flush=True)
    if plan:
        print(f"    {plan}", flush=True)
    if rc:
        print(err[-2000:], file=sys.stderr)
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="c12-mimi-24k:1,c12-mimi-24k:60", help="PRESET:MINUTES,...")
    parser.add_argument("--runtime", choices=("torch", "onnx"), default="torch")
    parser.add_argument("--export-in-run", action="store_true",
                        help="with --runtime onnx, give tokenize the model, to export in its run (default: an export "
                             "made beforehand, as for a dataset of many runs)")
    parser.add_argument("--rate", type=int, default=None, help="the files' sample rate (default: the model's)")
    parser.add_argument("--max-memory-mb", type=float, default=None, help="passed to codec12 tokenize")
    parser.add_argument("--target-mb", type=float, default=1536.0, help="the peak each case must stay under")
    args = parser.parse_args()
    print(f"load average: {os.getloadavg()[0]:.1f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="c12-tokmem-") as tmp:
        results = []
        for entry in filter(None, args.cases.split(",")):
            preset, minutes = entry.rsplit(":", 1)
            results.append(run_case(preset, float(minutes), args, Path(tmp)))
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
