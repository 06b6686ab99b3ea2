"""codec12's Mimi vs transformers.MimiModel: same weights, side by side in one process.

Builds a random-weight ``transformers.MimiModel`` (default config, 79.3M parameters; speed does not depend
on the weights), converts it into codec12 through ``save_pretrained`` + ``Codec.from_pretrained``, checks
that both give the same codes, then times encode (audio -> codes) and decode (codes -> audio) of the same
audio with the same number of codebooks, interleaving the two systems repeat by repeat so that load on the
machine hits both alike. Prints seconds of compute per second of audio (lower is faster) and the ratio
codec12 / transformers (< 1: codec12 is faster).

    python benchmarks/mimi_speed.py [--seconds 10] [--num-codebooks 8] [--repeats 3] [--threads 2] [--no-write]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import machine_line, update_docs  # noqa: E402


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--num-codebooks", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    machine = machine_line(args.threads)  # the load average before this script adds its own

    import transformers

    from codec12 import Codec

    torch.manual_seed(0)
    reference = transformers.MimiModel(transformers.MimiConfig()).eval()
    with torch.no_grad():  # non-degenerate codebooks, so both systems do the same nearest-neighbour work
        for name, buf in reference.named_buffers():
            if name.endswith("cluster_usage"):
                buf.uniform_(0.5, 2.0)
            elif name.endswith("embed_sum"):
                buf.normal_(0.0, 0.1)
        for module in reference.modules():
            if hasattr(module, "_embed"):
                module._embed = None  # transformers caches the normalized codebook
    with tempfile.TemporaryDirectory() as tmp:
        reference.save_pretrained(tmp)
        codec = Codec.from_pretrained(tmp)
    k = args.num_codebooks
    wav = 0.1 * torch.randn(1, 1, int(args.seconds * codec.sample_rate), generator=torch.Generator().manual_seed(1))
    wav = wav[..., : wav.shape[-1] // codec.frame_size * codec.frame_size]  # whole frames: same length in both
    seconds = wav.shape[-1] / codec.sample_rate

    def ref_encode():
        return reference.encode(wav, num_quantizers=k).audio_codes

    def ref_decode(codes):
        return reference.decode(codes).audio_values

    with torch.inference_mode():
        codes = codec.encode(wav, num_codebooks=k)  # warm-up, and a parity check on this input
        ref_codes = ref_encode()
        same_codes = torch.equal(codes, ref_codes)
        max_diff = (codec.decode(codes) - ref_decode(ref_codes)).abs().max().item()
        times = {key: [] for key in ("c12_enc", "ref_enc", "c12_dec", "ref_dec")}
        for _ in range(args.repeats):
            times["c12_enc"].append(timed(lambda: codec.encode(wav, num_codebooks=k)))
            times["ref_enc"].append(timed(ref_encode))
            times["c12_dec"].append(timed(lambda: codec.decode(codes)))
            times["ref_dec"].append(timed(lambda: ref_decode(ref_codes)))
    best = {key: min(v) / seconds for key, v in times.items()}
    params = sum(p.numel() for p in codec.parameters()) / 1e6
    table = "\n".join([
        "| step | codec12 (s/s) | transformers.MimiModel (s/s) | ratio codec12 / transformers |",
        "|---|---|---|---|",
        f"| encode | {best['c12_enc']:.4f} | {best['ref_enc']:.4f} | {best['c12_enc'] / best['ref_enc']:.2f} |",
        f"| decode | {best['c12_dec']:.4f} | {best['ref_dec']:.4f} | {best['c12_dec'] / best['ref_dec']:.2f} |",
    ])
    cmd = "python benchmarks/mimi_speed.py " + " ".join(sys.argv[1:])
    text = (f"{machine}  \nCommand: `{cmd.strip()}`  \n"
            f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M UTC}; default MimiConfig ({params:.1f}M parameters, "
            f"random weights), {seconds:g} s of 24 kHz audio, {k} codebooks, best of {args.repeats}, torch "
            f"{torch.__version__}, transformers {transformers.__version__}.  \n"
            f"Same codes: {same_codes}; decoded audio max abs diff {max_diff:.2e}.\n\n{table}")
    print(text)
    if not args.no_write:
        update_docs("mimi_speed", "codec12's Mimi vs transformers.MimiModel", text)


if __name__ == "__main__":
    main()
