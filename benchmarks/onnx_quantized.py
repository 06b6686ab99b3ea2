"""float16 and int8 ONNX exports against float32 ONNX, PyTorch eager and transformers.MimiModel: speed, memory and
the quality cost, in one table.

    python benchmarks/onnx_quantized.py [--model c12-tiny-16k] [--data DEV_DIR] [--clips 20] [--seconds 10]
        [--repeats 3] [--frames 50] [--threads 2] [--no-mimi] [--no-speed] [--quick] [--no-write]

- MODEL (default: the bundled c12-tiny-16k, trained weights): PyTorch eager float32 and its ONNX exports in
  float32, float16 and int8. With ``--data``, CLIPS files of it (evenly spaced in name order) are encoded and
  decoded by each: the share of frames whose codes equal PyTorch float32's (row 0, the semantic codes, and the mean
  over rows; the exports measure it on these clips, so "fit" is ``OnnxCodec.fit_for_tokenize``), and PESQ-WB and
  STOI of the decoded audio against the original. Three rows of quality only put those in context: float16
  arithmetic in the float16 export's layers (emulated with explicit casts: onnxruntime's x86 CPU provider computes
  the float16 export in float32), int8 with the convolutions quantized too (which the export does not offer) and
  PyTorch float32 on the audio with white noise added at 60 dB SNR.
- Mimi's size (default MimiConfig, 79.3M parameters, random weights: speed only): transformers.MimiModel, and
  codec12's conversion of the same weights in PyTorch eager and in ONNX float32, float16 and int8. Every system
  computes all 32 codebooks.

Speed: offline encode and decode of SECONDS of audio (best of REPEATS) as multiples of real time (higher is
faster), and streaming latency per 80 ms frame (p50/p99 over FRAMES calls, ms). Each system runs in a process of
its own with THREADS threads (the ONNX ones without importing torch), which reports its peak resident memory
(libraries included). ``--no-speed`` measures quality only (speed needs an idle machine); ``--quick`` is a check
that the script works (2 s of audio, one repeat, 8 frames, 3 clips, a tiny Mimi: minutes, mostly exporting), not a
measurement.
Prints a markdown table and writes it into docs/benchmarks.md (unless ``--no-write``).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import machine_line, update_docs  # noqa: E402
from _timing import best_of, speech_like  # noqa: E402

DTYPES = ("float32", "float16", "int8")
# A small Mimi for --quick (tests/test_mimi.py's): the script's Mimi path runs in seconds.
TINY_MIMI = dict(hidden_size=32, num_filters=4, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                 intermediate_size=64, codebook_size=16, codebook_dim=8, vector_quantization_hidden_dimension=8,
                 num_quantizers=5, sliding_window=5, upsample_groups=32, layer_scale_initial_scale=1.0)


# ---- timing, in a process of its own per system

def _percentiles(fn, chunks: list) -> tuple[float, float]:
    times = []
    for chunk in chunks:
        start = time.perf_counter()
        fn(chunk)
        times.append(time.perf_counter() - start)
    ms = np.asarray(times[2:] if len(times) > 4 else times) * 1e3  # the first calls allocate
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def time_system(spec: dict) -> dict:
    """Time one system (``spec``: kind onnx/eager/transformers, path, seconds, repeats, frames, threads)."""
    kind, threads = spec["kind"], spec["threads"]
    if kind == "onnx":  # torch is never imported here: the memory is the torch-free runtime's
        from codec12.export.runtime import OnnxCodec

        model = OnnxCodec(spec["path"], num_threads=threads)
        sample_rate, channels, frame_size = model.sample_rate, model.channels, model.frame_size
        convert = np.ascontiguousarray
    else:
        import torch

        torch.set_num_threads(threads)
        torch.set_grad_enabled(False)
        convert = torch.from_numpy
        if kind == "eager":
            from codec12 import Codec

            model = Codec.from_pretrained(spec["path"]).folded()
            sample_rate, channels, frame_size = model.sample_rate, model.channels, model.frame_size
        else:
            import transformers

            model = transformers.MimiModel.from_pretrained(spec["path"]).eval()
            sample_rate, channels = model.config.sampling_rate, model.config.audio_channels
            frame_size = int(sample_rate / 12.5)
    wav = convert(speech_like(spec["seconds"], sample_rate, channels))
    seconds = wav.shape[-1] / sample_rate
    if kind == "transformers":
        def encode():
            return model.encode(wav, num_quantizers=model.config.num_quantizers).audio_codes

        def decode():
            return model.decode(codes).audio_values
    else:
        def encode():
            return model.encode(wav)

        def decode():
            return model.decode(codes)
    codes = encode()
    decode()  # warm-up
    repeats = spec["repeats"]
    row = {"encode_xrt": seconds / best_of(encode, repeats), "decode_xrt": seconds / best_of(decode, repeats)}
    if kind != "transformers":  # (transformers' MimiModel has no frame-by-frame streaming call)
        stream = speech_like(spec["frames"] / 12.5 + 0.5, sample_rate, channels)
        chunks = [convert(np.ascontiguousarray(stream[..., i * frame_size:(i + 1) * frame_size]))
                  for i in range(spec["frames"])]
        steps = [codes[..., i % codes.shape[-1]:i % codes.shape[-1] + 1] for i in range(spec["frames"])]
        with model.streaming(1):
            row["enc_p50"], row["enc_p99"] = _percentiles(model.encode, chunks)
        with model.streaming(1):
            row["dec_p50"], row["dec_p99"] = _percentiles(model.decode, steps)
    row["peak_mb"] = _peak_rss_mb()
    return row


def _peak_rss_mb() -> float:
    """This process's peak resident memory. Linux's VmHWM belongs to the process image, so it starts afresh at
    exec; getrusage's maximum would still hold the parent's, which forked this process (elsewhere it is all there
    is)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 if sys.platform != "darwin" else 1024 ** 2)


def _timed(spec: dict) -> dict:
    done = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"timing {spec['kind']} {spec['path']} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---- quality, in this process

def _clips(data: str, n: int, sample_rate: int) -> list[tuple[str, np.ndarray]]:
    from codec12 import load_audio
    from codec12._fs import find_audio_files

    files = find_audio_files(data)
    if not files:
        raise SystemExit(f"--data {data}: no audio files")
    picked = [files[i] for i in sorted(set(np.linspace(0, len(files) - 1, n).round().astype(int)))]
    return [(f.name, load_audio(f, sample_rate).numpy()) for f in picked]


def _with_noise(clip: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(clip.shape).astype(np.float32)
    noise *= np.sqrt((clip ** 2).mean() / (noise ** 2).mean() / 10 ** (snr_db / 10))
    return clip + noise


def _stack_scopes(codec) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the scopes whose weighted layers an export changes, the scopes kept float32), as export_onnx finds them."""
    from codec12.export.onnx import FLOAT32_MODULES
    from codec12.export.precision import onnx_scope

    scopes = tuple(onnx_scope(part) for part in (*codec.encoder_parts, *codec.decoder_parts))
    keep = tuple(onnx_scope(p) for p, m in codec.named_modules() if isinstance(m, FLOAT32_MODULES))
    return scopes, keep


def _float16_arithmetic(codec, fp32_dir: Path, out: Path) -> Path:
    """The float32 export with float16 arithmetic in the layers a float16 export converts: weights, inputs and
    outputs rounded to float16 (explicit float32 -> float16 -> float32 casts, which onnxruntime keeps), products
    summed in float32, as a GPU's float16 matrix units do. (onnxruntime's CPU provider runs the float16 export
    itself in float32: it has no float16 kernels for these layers on x86 and drops the casts it would need.)"""
    import shutil

    import onnx
    from onnx import helper, numpy_helper

    from codec12.export.precision import FLOAT16_OPS, weighted_nodes

    shutil.copytree(fp32_dir, out)
    scopes, keep = _stack_scopes(codec)
    for name in ("encoder", "decoder"):
        model = onnx.load(str(fp32_dir / f"{name}.onnx"))
        graph = model.graph
        chosen = set(weighted_nodes(model, FLOAT16_OPS, scopes, keep))
        initializers = {t.name: t for t in graph.initializer}

        def rounded(x: str, tag: str) -> tuple[list, str]:
            return [helper.make_node("Cast", [x], [f"{x}.{tag}h"], to=onnx.TensorProto.FLOAT16),
                    helper.make_node("Cast", [f"{x}.{tag}h"], [f"{x}.{tag}r"], to=onnx.TensorProto.FLOAT)], \
                f"{x}.{tag}r"

        nodes, inputs = [], {}
        for node in graph.node:
            if node.name not in chosen:
                nodes.append(node)
                continue
            if node.input[0] not in inputs:  # (one rounding per tensor: q, k and v read the same)
                casts, inputs[node.input[0]] = rounded(node.input[0], "in")
                nodes += casts
            x = inputs[node.input[0]]
            for w in node.input[1:]:
                if w:
                    t = initializers[w]
                    t.CopyFrom(numpy_helper.from_array(
                        numpy_helper.to_array(t).astype(np.float16).astype(np.float32), w))
            y = node.output[0]
            node.input[0], node.output[0] = x, f"{y}.out"
            casts, r = rounded(f"{y}.out", "")
            nodes += [node, *casts, helper.make_node("Identity", [r], [y])]
        del graph.node[:]
        graph.node.extend(nodes)
        (out / f"{name}.onnx").unlink()
        onnx.save(model, str(out / f"{name}.onnx"))
    return out


def _int8_with_convolutions(codec, fp32_dir: Path, out: Path) -> Path:
    """The float32 export with its encoder and decoder graphs quantized, convolutions included (onnxruntime's
    quantize_dynamic on every weighted Conv and MatMul of the stacks): what the int8 export leaves out, and why."""
    import shutil

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from codec12.export.precision import weighted_nodes

    shutil.copytree(fp32_dir, out)
    scopes, keep = _stack_scopes(codec)
    for name in ("encoder", "decoder"):
        model = onnx.load(str(fp32_dir / f"{name}.onnx"))
        nodes = weighted_nodes(model, ("Conv", "MatMul"), scopes, keep)
        (out / f"{name}.onnx").unlink()
        quantize_dynamic(model, out / f"{name}.onnx", op_types_to_quantize=["Conv", "MatMul"], nodes_to_quantize=nodes,
                         per_channel=True, weight_type=QuantType.QInt8)
    return out


def quality(codec, exports: dict[str, Path], clips: list[tuple[str, np.ndarray]], work: Path) -> dict[str, dict]:
    """Per system: codes agreement with PyTorch float32 (row 0, mean of rows), PESQ-WB, STOI; means over clips."""
    import logging

    import torch

    from codec12.eval.metrics import METRICS, MetricError
    from codec12.export import OnnxCodec

    pesq, stoi = METRICS["pesq_wb"].load(), METRICS["stoi"].load()
    logging.disable(logging.WARNING)  # onnxruntime.quantization's advice to pre-process
    systems = {f"onnx {d}": OnnxCodec(exports[d]) for d in DTYPES}
    systems["onnx float16 arithmetic (as on a GPU)"] = OnnxCodec(
        _float16_arithmetic(codec, exports["float32"], work / "float16-arithmetic"))
    systems["onnx int8 with convolutions (not offered)"] = OnnxCodec(
        _int8_with_convolutions(codec, exports["float32"], work / "int8-conv"))
    logging.disable(logging.NOTSET)
    scores: dict[str, dict[str, list]] = {}

    def add(name: str, codes: np.ndarray, reference: np.ndarray, audio: np.ndarray, clip: np.ndarray) -> None:
        s = scores.setdefault(name, {"same": [], "frames": 0, "pesq": [], "stoi": []})
        s["same"].append((codes[0] == reference[0]).sum(axis=1))
        s["frames"] += reference.shape[-1]
        ref, deg = clip[0].astype(np.float64), audio[0, 0, : clip.shape[-1]].astype(np.float64)
        for metric, out in ((pesq, s["pesq"]), (stoi, s["stoi"])):
            try:
                out.append(metric(ref, deg, None))
            except MetricError:
                pass

    for i, (_, clip) in enumerate(clips):
        x = clip[None]
        reference = codec.encode(torch.from_numpy(x)).numpy()
        add("pytorch float32", reference, reference, codec.decode(torch.from_numpy(reference)).numpy(), clip)
        for name, oc in systems.items():
            codes = oc.encode(x)
            add(name, codes, reference, oc.decode(codes), clip)
        noisy = codec.encode(torch.from_numpy(_with_noise(x, 60, i))).numpy()
        add("pytorch float32, white noise at 60 dB SNR", noisy, reference,
            codec.decode(torch.from_numpy(noisy)).numpy(), clip)
    out = {}
    for name, s in scores.items():
        rows = np.sum(s["same"], axis=0) / s["frames"]
        out[name] = {"row0": float(rows[0]), "rows": float(rows.mean()), "pesq": float(np.mean(s["pesq"])),
                     "stoi": float(np.mean(s["stoi"])), "frames": s["frames"]}
    for d in DTYPES:
        oc = OnnxCodec(exports[d])
        out[f"onnx {d}"]["fit"] = oc.fit_for_tokenize
    return out


# ---- the table

def _mimi(work: Path, quick: bool) -> Path:
    """A random-weight transformers.MimiModel with non-degenerate codebooks, saved to ``work/mimi``."""
    import torch
    import transformers

    torch.manual_seed(0)
    reference = transformers.MimiModel(transformers.MimiConfig(**(TINY_MIMI if quick else {}))).eval()
    with torch.no_grad():  # (as benchmarks/mimi_speed.py: both systems do the same nearest-neighbour work)
        for name, buf in reference.named_buffers():
            if name.endswith("cluster_usage"):
                buf.uniform_(0.5, 2.0)
            elif name.endswith("embed_sum"):
                buf.normal_(0.0, 0.1)
    reference.save_pretrained(work / "mimi")
    return work / "mimi"


def _cell(row: dict, key: str, fmt: str) -> str:
    return format(row[key], fmt) if row.get(key) is not None else "—"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="c12-tiny-16k", help="model to export and score (default: the bundled one)")
    p.add_argument("--data", default=None, help="dev set directory for the quality columns")
    p.add_argument("--clips", type=int, default=20, help="files of --data scored")
    p.add_argument("--seconds", type=float, default=10.0, help="audio length for offline timing")
    p.add_argument("--repeats", type=int, default=3, help="offline runs; the best is reported")
    p.add_argument("--frames", type=int, default=50, help="frames streamed for the latency percentiles")
    p.add_argument("--threads", type=int, default=2, help="threads of every system")
    p.add_argument("--no-mimi", action="store_true", help="leave out the Mimi-size comparison")
    p.add_argument("--no-speed", action="store_true", help="quality only (speed needs an idle machine)")
    p.add_argument("--quick", action="store_true", help="a check that the script works, not a measurement")
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker is not None:
        print(json.dumps(time_system(json.loads(args.worker))))
        return
    if args.quick:
        args.seconds, args.repeats, args.frames, args.clips = 2.0, 1, 8, min(args.clips, 3)
    machine = machine_line(args.threads)

    import torch

    from codec12 import Codec
    from codec12.export import export_onnx
    from codec12.export.onnx import SIDECAR_NAME

    torch.set_num_threads(args.threads)
    timing = {"seconds": args.seconds, "repeats": args.repeats, "frames": args.frames, "threads": args.threads}
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        codec = Codec.from_pretrained(args.model).folded()
        clips = _clips(args.data, args.clips, codec.sample_rate) if args.data else []
        exports = {}
        for dtype in DTYPES:
            result = export_onnx(codec, work / dtype, dtype=dtype, check_audio=[c for _, c in clips] or None)
            exports[dtype] = result.directory
            print(f"  {args.model}: exported {dtype}", flush=True)
        scored = quality(codec, exports, clips, work) if clips else {}
        systems = [("pytorch float32", "eager", args.model, None)]
        systems += [(f"onnx {d}", "onnx", str(exports[d]), exports[d]) for d in DTYPES]
        for name, kind, path, directory in systems:
            row = {"model": codec.config.name, "system": name, **scored.get(name, {})}
            if directory is not None:
                row["weights_mb"] = json.loads((directory / SIDECAR_NAME).read_text())["weights"]["bytes"] / 1e6
            if not args.no_speed:
                row.update(_timed({"kind": kind, "path": path, **timing}))
                print(f"  {name}: timed", flush=True)
            rows.append(row)
        rows += [{"model": codec.config.name, "system": name, **s} for name, s in scored.items()
                 if name not in {r["system"] for r in rows}]
        if not args.no_mimi and not args.no_speed:
            mimi_dir = _mimi(work, args.quick)
            mimi = Codec.from_pretrained(mimi_dir)
            label = "Mimi (tiny)" if args.quick else "Mimi size"
            base = {"model": label, **_timed({"kind": "transformers", "path": str(mimi_dir), **timing})}
            rows.append({**base, "system": "transformers.MimiModel"})
            print("  transformers: timed", flush=True)
            mimi_rows = [("pytorch float32", "eager", str(mimi_dir))]
            for dtype in DTYPES:
                export_onnx(mimi, work / f"mimi-{dtype}", dtype=dtype)
                mimi_rows.append((f"onnx {dtype}", "onnx", str(work / f"mimi-{dtype}")))
            for name, kind, path in mimi_rows:
                row = {"model": label, "system": name, **_timed({"kind": kind, "path": path, **timing})}
                if kind == "onnx":
                    row["weights_mb"] = json.loads((Path(path) / SIDECAR_NAME).read_text())["weights"]["bytes"] / 1e6
                row["vs_enc"] = row["encode_xrt"] / base["encode_xrt"]
                row["vs_dec"] = row["decode_xrt"] / base["decode_xrt"]
                rows.append(row)
                print(f"  {label} {name}: timed", flush=True)

    lines = ["| model | system | weights MB | encode ×RT | decode ×RT | vs transformers enc / dec | stream enc p50 / "
             "p99 ms | stream dec p50 / p99 ms | peak RSS MB | codes = fp32: row 0 | mean of rows | PESQ-WB | STOI |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        vs = f"{r['vs_enc']:.2f} / {r['vs_dec']:.2f}" if "vs_enc" in r else "—"
        enc = f"{r['enc_p50']:.1f} / {r['enc_p99']:.1f}" if "enc_p50" in r else "—"
        dec = f"{r['dec_p50']:.1f} / {r['dec_p99']:.1f}" if "dec_p50" in r else "—"
        fit = {True: " (fit)", False: " (not fit)"}.get(r.get("fit"), "")
        lines.append(f"| {r['model']} | {r['system']} | {_cell(r, 'weights_mb', '.1f')} | "
                     f"{_cell(r, 'encode_xrt', '.0f')} | {_cell(r, 'decode_xrt', '.0f')} | {vs} | {enc} | {dec} | "
                     f"{_cell(r, 'peak_mb', '.0f')} | "
                     f"{_cell(r, 'row0', '.3f')}{fit} | {_cell(r, 'rows', '.3f')} | {_cell(r, 'pesq', '.3f')} | "
                     f"{_cell(r, 'stoi', '.3f')} |")
    frames = next((r["frames"] for r in rows if "frames" in r), 0)
    cmd = "python benchmarks/onnx_quantized.py " + " ".join(sys.argv[1:])
    speed = ("speed not measured (--no-speed)" if args.no_speed else
             f"offline: {args.seconds:g} s of audio, best of {args.repeats}, multiples of real time; streaming: one "
             f"80 ms frame per call over {args.frames} frames; {args.threads} threads, each system in a process of "
             f"its own (peak RSS: that process's, libraries included)")
    data = (f"quality: {len(clips)} files of `{args.data}` ({frames} frames), codes compared with PyTorch float32's "
            f"frame by frame, PESQ-WB and STOI of each system's own encode + decode against the original"
            if clips else "quality not measured (no --data)")
    text = (f"{machine}  \nCommand: `{cmd.strip()}`  \nDate: {datetime.now(UTC):%Y-%m-%d %H:%M UTC}; model "
            f"`{args.model}`; {speed}; {data}." + (" QUICK CHECK, NOT A MEASUREMENT." if args.quick else "")
            + "\n\n" + "\n".join(lines))
    if args.no_speed:
        text += ("\n\nSpeed, memory and the transformers.MimiModel comparison need an idle machine: run the command "
                 "without --no-speed there; it replaces this section with the whole table.")
    print(text)
    if not args.no_write and not args.quick:
        update_docs("onnx_quantized", "float16 and int8 ONNX: speed and quality cost", text)


if __name__ == "__main__":
    main()
