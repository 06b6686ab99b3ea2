"""codec12's c12-voxtral-24k (PyTorch eager and onnxruntime) vs Voxtral's reference codec, same weights, one run.

Builds vllm-omni's ``VoxtralTTSAudioTokenizer`` with the released codec arguments and random weights (speed does
not depend on them; the semantic codebook is randomized so that the nearest-entry search is real work), converts
its tensors into codec12 with the checkpoint converter, checks that both give the same codes and audio, exports
the codec12 model to ONNX, then times decode (codes -> audio; Voxtral TTS's hot path) and encode (audio ->
codes) of the same audio, interleaving the systems repeat by repeat so that load on the machine hits them alike.
The reference runs in float32 without its encoder's bfloat16 autocast (``reference_encode``), weight norm computed
per call as shipped; codec12 eager runs the converted model (the same weight norm), onnxruntime the export (folded).
Prints seconds of compute per second of audio (lower is faster), then codec12's streaming latency per 80 ms frame.

    python benchmarks/voxtral_speed.py [--seconds 10] [--repeats 3] [--frames 25] [--threads 2] [--no-write]

Needs the reference: ``pip install --no-deps vllm-omni==0.30.0``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import machine_line, update_docs  # noqa: E402


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--frames", type=int, default=25, help="frames streamed one per call for the latency table")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    machine = machine_line(args.threads)  # the load average before this script adds its own

    from codec12 import Codec
    from codec12.convert.voxtral import ARG_DEFAULTS, voxtral_codec_config, voxtral_state_to_codec12
    from codec12.export.onnx import export_onnx
    from codec12.export.runtime import OnnxCodec
    from codec12.voxtral.reference import VERSION, build_reference, reference_encode

    released = {**ARG_DEFAULTS, "layer_scale_init": 0.01}
    torch.manual_seed(0)
    reference = build_reference(released)
    with torch.no_grad():
        cb = reference.quantizer.semantic_codebook
        cb.cluster_usage.uniform_(0.5, 2.0)
        cb.embedding_sum.normal_(0.0, 0.1)
        cb._embedding = None  # the reference caches the normalized table
    codec = Codec.from_config(voxtral_codec_config(released, name="c12-voxtral-24k")).eval()
    tensors = {k: v for k, v in reference.state_dict().items() if not k.startswith("audio_token_embedding.")}
    codec.load_state_dict(voxtral_state_to_codec12(tensors, codec))
    frames = int(args.seconds * 12.5)
    wav = 0.1 * torch.randn(1, 1, frames * codec.frame_size, generator=torch.Generator().manual_seed(1))
    seconds = wav.shape[-1] / codec.sample_rate

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        export_onnx(codec, Path(tmp) / "onnx")
        export_s = time.perf_counter() - start
        runtime = OnnxCodec(Path(tmp) / "onnx", num_threads=args.threads)
        with torch.inference_mode():
            codes = codec.encode(wav)  # warm-up, and parity on this input
            ref_codes = reference_encode(reference, wav)
            same_codes = torch.equal(codes, ref_codes)
            ref_audio = reference.decode(codes)
            peak = ref_audio.abs().max().item()
            eager_diff = (codec.decode(codes) - ref_audio).abs().max().item()
            onnx_same = bool(np.array_equal(runtime.encode(wav.numpy()), codes.numpy()))
            onnx_diff = float(np.abs(runtime.decode(codes.numpy()) - ref_audio.numpy()).max())
            times = {key: [] for key in ("ref_dec", "c12_dec", "onnx_dec", "ref_enc", "c12_enc", "onnx_enc")}
            for _ in range(args.repeats):
                times["ref_dec"].append(timed(lambda: reference.decode(codes)))
                times["c12_dec"].append(timed(lambda: codec.decode(codes)))
                times["onnx_dec"].append(timed(lambda: runtime.decode(codes.numpy())))
                times["ref_enc"].append(timed(lambda: reference_encode(reference, wav)))
                times["c12_enc"].append(timed(lambda: codec.encode(wav)))
                times["onnx_enc"].append(timed(lambda: runtime.encode(wav.numpy())))
            stream = {"eager": [], "onnx": []}
            n = min(args.frames, codes.shape[-1])
            with codec.streaming(batch_size=1):
                for t in range(n):
                    stream["eager"].append(timed(lambda t=t: codec.decode(codes[..., t:t + 1])))
            with runtime.streaming(batch_size=1):
                for t in range(n):
                    stream["onnx"].append(timed(lambda t=t: runtime.decode(codes[..., t:t + 1].numpy())))
        onnx_mb = sum(f.stat().st_size for f in (Path(tmp) / "onnx").iterdir()) / 2 ** 20
    best = {key: min(v) / seconds for key, v in times.items()}
    params = sum(p.numel() for p in codec.parameters()) / 1e6

    def row(step: str, key: str) -> str:
        ref, c12, onnx = best[f"ref_{key}"], best[f"c12_{key}"], best[f"onnx_{key}"]
        return f"| {step} | {ref:.4f} | {c12:.4f} | {onnx:.4f} | {c12 / ref:.2f} | {onnx / ref:.2f} |"

    table = "\n".join([
        "| step | reference (s/s) | codec12 eager (s/s) | codec12 onnxruntime (s/s) | eager / reference | "
        "onnxruntime / reference |",
        "|---|---|---|---|---|---|",
        row("decode", "dec"),
        row("encode", "enc"),
    ])
    latency = "\n".join([
        "| codec12 decode, one frame per call | p50 ms | p99 ms |",
        "|---|---|---|",
        *(f"| {name} | {percentile(v, 50):.1f} | {percentile(v, 99):.1f} |" for name, v in
          (("pytorch eager", stream["eager"]), ("onnxruntime", stream["onnx"]))),
    ])
    cmd = "python benchmarks/voxtral_speed.py " + " ".join(sys.argv[1:])
    text = (f"{machine}  \nCommand: `{cmd.strip()}`  \n"
            f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M UTC}; the released codec arguments ({params:.1f}M "
            f"parameters with the encoder, random weights), {seconds:g} s of 24 kHz audio ({codes.shape[-1]} frames, "
            f"37 codebooks), float32, best of {args.repeats}; reference: vllm-omni {VERSION} "
            f"`VoxtralTTSAudioTokenizer` on PyTorch's attention (no flash-attn on CPU); torch {torch.__version__}; "
            f"ONNX export {export_s:.0f} s, {onnx_mb:.0f} MiB of graphs and weights.  \n"
            f"Same codes: eager {same_codes}, onnxruntime {onnx_same}; decoded audio max abs diff from the reference: "
            f"eager {eager_diff:.2e}, onnxruntime {onnx_diff:.2e} (peak {peak:.3g}). The reference cannot stream; "
            f"codec12 streams {n} frames one at a time (second table).\n\n{table}\n\n{latency}")
    print(text)
    if not args.no_write:
        update_docs("voxtral_speed", "codec12's Voxtral codec vs the reference (vllm-omni)", text)


if __name__ == "__main__":
    main()
