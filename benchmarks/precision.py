"""Half precision and torch.compile against float32 eager, on the bundled model and the example clips: how many
codes change, how far the decoded audio moves (mel distance, as in the quality table), and the time of an encode
plus a decode.

    .venv/bin/python benchmarks/precision.py [--model c12-tiny-16k] [--dtypes float16 bfloat16] [--compile]
        [--repeats 5] [--threads 2] [--no-write]

Each variant loads the model with ``Codec.from_pretrained(model, dtype=...)``; ``--compile`` adds float32 with the
encoder, decoder and both transformers compiled (``module.compile()``), timing the first calls (compilation) apart.
The decoded audio of a variant is compared with float32 eager's decoding of the same (float32) codes, so that a
changed code does not count twice, and the round trip (the variant's own codes, decoded by it) with the original.
Prints a markdown table and writes it into docs/benchmarks.md (unless ``--no-write``).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import machine_line, update_docs  # noqa: E402

from codec12 import Codec, load_audio  # noqa: E402
from codec12.eval.metrics import METRICS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CLIPS = ["hibari_en", "fillets_nl", "fillets_cs"]


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def run_variant(name: str, codec: Codec, clips: dict[str, torch.Tensor], reference: dict, mel) -> dict:
    """Codes and mel distances of one variant against float32 eager, and the time of its first encode."""
    dtype = next(codec.parameters()).dtype
    first = None
    rows = {"codes": [], "semantic": [], "mel_same": [], "mel_trip": []}
    for clip, wav in clips.items():
        codes_ref, audio_ref = reference[clip]
        codes, t = _timed(lambda wav=wav: codec.encode(wav))
        if first is None:
            first = t
        audio_same = codec.decode(codes_ref).float()[..., : wav.shape[-1]]
        audio_trip = codec.decode(codes).float()[..., : wav.shape[-1]]
        rows["codes"].append((codes == codes_ref).float().mean().item())
        rows["semantic"].append((codes[:, 0] == codes_ref[:, 0]).float().mean().item())
        rows["mel_same"].append(mel(audio_ref[0, 0].numpy(), audio_same[0, 0].numpy(), None))
        rows["mel_trip"].append(mel(wav[0, 0].numpy(), audio_trip[0, 0].numpy(), None))
    return {"name": name, "codec": codec, "dtype": str(dtype).removeprefix("torch."), "first": first,
            **{k: sum(v) / len(v) for k, v in rows.items()}, "mel_same_max": max(rows["mel_same"])}


def time_round_robin(results: list[dict], wav: torch.Tensor, sample_rate: int, repeats: int) -> None:
    """Best encode + decode time of each variant, seconds per second of audio, the variants taking turns so that
    a change in the machine's load falls on all of them alike."""
    times: dict[int, list[float]] = {i: [] for i in range(len(results))}
    for _ in range(repeats):
        for i, r in enumerate(results):
            codec = r["codec"]
            times[i].append(_timed(lambda codec=codec: codec.decode(codec.encode(wav)))[1])
    for i, r in enumerate(results):
        r["rtf"] = min(times[i]) / (wav.shape[-1] / sample_rate)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="c12-tiny-16k")
    ap.add_argument("--dtypes", nargs="+", default=["float16", "bfloat16"])
    ap.add_argument("--compile", action="store_true", help="also float32 with the submodules compiled")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    machine = machine_line(args.threads)
    mel = METRICS["mel_distance"].load()

    base = Codec.from_pretrained(args.model)
    clips = {c: load_audio(ROOT / "examples" / f"{c}.flac", base.sample_rate)[None] for c in CLIPS}
    reference = {}
    for clip, wav in clips.items():
        codes = base.encode(wav)
        reference[clip] = (codes, base.decode(codes)[..., : wav.shape[-1]])
    results = [run_variant("eager", base, clips, reference, mel)]
    for dtype in args.dtypes:
        results.append(run_variant("eager", Codec.from_pretrained(args.model, dtype=dtype), clips, reference, mel))
    if args.compile:
        compiled = Codec.from_pretrained(args.model)
        for module in (compiled.encoder, compiled.encoder_transformer, compiled.decoder_transformer,
                       compiled.decoder):
            module.compile()
        first, second = clips[CLIPS[0]], clips[CLIPS[1]]
        _, t_compile = _timed(lambda: compiled.decode(compiled.encode(first)))
        _, t_recompile = _timed(lambda: compiled.decode(compiled.encode(second)))
        result = run_variant("torch.compile", compiled, clips, reference, mel)
        result["first"] = t_compile
        results.append(result)
    time_round_robin(results, clips[CLIPS[0]], base.sample_rate, args.repeats)

    seconds = sum(w.shape[-1] for w in clips.values()) / base.sample_rate
    lines = [
        machine + "  ",
        f"Command: `python benchmarks/precision.py {' '.join(sys.argv[1:])}`".rstrip() + "  ",
        f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; model `{args.model}`, loaded with "
        f"`Codec.from_pretrained(model, dtype=...)`; the {len(CLIPS)} clips of `examples/` ({seconds:.1f} s); "
        f"torch {torch.__version__}.",
        "",
        "| variant | dtype | codes = float32's | semantic codes = float32's | mel dist to float32 decode "
        "(mean / max) | mel dist round trip | encode + decode s/s | first encode s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| {r['name']} | {r['dtype']} | {r['codes']:.3f} | {r['semantic']:.3f} | "
                     f"{r['mel_same']:.3f} / {r['mel_same_max']:.3f} | {r['mel_trip']:.3f} | {r['rtf']:.3f} | "
                     f"{r['first']:.1f} |")
    lines += [
        "",
        "- codes: the share of the codes (all rows / row 0) equal to float32 eager's, averaged over the clips. "
        "mel dist (log-mel L1, as in the quality table): the variant decoding float32's codes against float32 "
        "decoding them, and the variant's own round trip against the original clip.",
        f"- encode + decode: best of {args.repeats} on `{CLIPS[0]}` "
        f"({clips[CLIPS[0]].shape[-1] / base.sample_rate:.1f} s), seconds per second of audio, the variants taking "
        "turns. first encode: the first call (torch.compile: the first encode + decode, which compiles).",
    ]
    if args.compile:
        lines.append(f"- torch.compile: the encoder, decoder and both transformers compiled with `module.compile()`; "
                     f"the first encode + decode of another length took {t_recompile:.1f} s (compiling again, "
                     f"with dynamic shapes).")
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        update_docs("precision", "Half precision and torch.compile (CPU)", text)


if __name__ == "__main__":
    main()
