"""``codec12 convert SRC DST``: a Mimi checkpoint (transformers dir, moshi file, hub id) or a Voxtral TTS model
directory -> a codec12 model dir (and back)."""

from __future__ import annotations

from pathlib import Path

from codec12.command import CLIError

FORMATS = ("codec12", "mimi", "moshi", "voxtral")


def add_parsers(sub) -> None:
    p = sub.add_parser("convert", help="convert a Mimi or Voxtral TTS checkpoint into a codec12 model directory "
                                       "(or back)",
                       description="Convert a Mimi checkpoint or a Voxtral TTS model into a codec12 model directory: "
                                   "SRC is a transformers Mimi directory (config.json + model.safetensors), a moshi "
                                   "tokenizer-*.safetensors file or its directory, a hub id such as kyutai/mimi (needs "
                                   "network), or a Voxtral TTS directory (params.json + consolidated.safetensors; its "
                                   "codec is read, the TTS model around it left out). With --format "
                                   "mimi/moshi/voxtral, SRC may be any codec12 model of that topology and DST gets a "
                                   "checkpoint in that layout (voxtral: params.json + consolidated.safetensors with "
                                   "the audio_tokenizer.* tensors).")
    p.add_argument("source", help="Mimi directory, moshi .safetensors file, Voxtral TTS directory, hub id, or codec12 "
                                  "model")
    p.add_argument("output", help="output directory")
    p.add_argument("--format", choices=FORMATS, default="codec12",
                   help="what to write: a codec12 model dir (default), a transformers Mimi dir, a moshi file, or "
                        "Voxtral's layout")
    p.add_argument("-f", "--force", action="store_true", help="replace the output directory if it exists")
    p.set_defaults(func=_cmd_convert)


def _load(source: str):
    from codec12.codec import Codec
    from codec12.convert.mimi import mimi_from_pretrained
    from codec12.convert.voxtral import read_voxtral, voxtral_codec

    path = Path(source)
    if path.is_dir() and (path / "params.json").is_file() and not (path / "config.json").is_file():
        checkpoint = read_voxtral(path)
        left_out = ", ".join(f"{k}: {n}" for k, n in sorted(checkpoint.left_out.items()))
        print(f"{path}: {len(checkpoint.tensors)} codec tensors (audio_tokenizer.*)"
              + (f"; left out the TTS model's {sum(checkpoint.left_out.values())} ({left_out})" if left_out else ""))
        return voxtral_codec(checkpoint)
    if path.is_file():
        if path.suffix != ".safetensors":
            raise ValueError(f"{path}: expected a .safetensors file or a model directory")
        return mimi_from_pretrained(path)
    if path.is_dir() and not (path / "config.json").is_file() and not (path / "params.json").is_file():
        return mimi_from_pretrained(path)  # a moshi checkpoint directory
    return Codec.from_pretrained(source)


def _cmd_convert(args) -> int:
    from codec12._fs import atomic_directory
    from codec12.convert.mimi import save_mimi
    from codec12.convert.voxtral import save_voxtral

    out = Path(args.output)
    if out.exists() and not args.force:
        raise CLIError(f"{out} exists (use -f to replace it)")
    if out.exists() and not out.is_dir():
        raise CLIError(f"{out} exists and is not a directory")
    codec = _load(args.source)
    if args.format in ("mimi", "moshi") and codec.config.norm != "none":
        codec.fold_weight_norm()
    # Write next to the destination, then swap it in: an interrupted run leaves the old output intact.
    with atomic_directory(out) as tmp:
        if args.format == "codec12":
            codec.save_pretrained(tmp)
        elif args.format == "voxtral":
            save_voxtral(codec, tmp)
        else:
            save_mimi(codec, tmp, layout="transformers" if args.format == "mimi" else "moshi")
    c = codec.config
    n_params = sum(p.numel() for p in codec.parameters())
    print(f"wrote {out} ({args.format}): {n_params / 1e6:.1f}M parameters, {c.sample_rate} Hz, "
          f"{c.num_codebooks} codebooks, {c.bitrate / 1000:.2f} kbps with all of them"
          + ("" if c.has_encoder else "; decoder side only (no encoder weights: docs/voxtral.md trains one)"))
    return 0
