"""ONNX export: offline graphs, streaming step graphs with explicit state, and a JSON sidecar.

``export_onnx(codec, out_dir)`` writes:

- ``encoder.onnx``: audio float32 [B, C, T] -> codes int64 [B, K, T'], latents float32 [B, D, T']
  (T' = ceil(T / frame_size); a partial last frame is zero-padded inside the graph, as in ``Codec.encode``).
- ``decoder.onnx``: codes int64 [B, K, T'] -> audio [B, C, T' * frame_size]. The graph always takes all K
  rows; a row holding its ``pad_codes`` value (codebook_size for an RVQ level, the centre level for an FSQ
  dimension) contributes nothing, which is how fewer codebooks are decoded.
- ``decoder_latents.onnx``: latents [B, D, T'] -> audio (the unquantized path of ``Codec.decode_latents``).
- ``encoder_step.onnx`` / ``decoder_step.onnx`` / ``decoder_latents_step.onnx``: one or more whole frames plus
  every streaming state tensor (``state.<name>``) in, outputs plus the next state (``new_state.<name>``) out.
- ``codec12_onnx.json``: inputs, outputs, state names/shapes/dtypes/initial values, sample rate, frame size,
  codebook sizes, opset and the source's config and weights hashes (what names the model a dataset tokenized
  through the export was made with). :class:`codec12.export.runtime.OnnxCodec` reads it.

Exporter choice: torch's TorchScript-based exporter (``dynamo=False``). Tracing records tensor sizes as graph
operations, so the frame padding, the causal-conv trims and the attention masks follow the dynamic batch
and time axes (the tests run every graph at lengths other than the traced one), it needs no package beyond
torch, and it exports ``scaled_dot_product_attention`` with a boolean mask directly. The dynamo exporter
would add ``onnxscript`` as a dependency for no gain here.

Quantizer lookups are rewritten for export: nearest-codeword search uses the same matrix-product form of the
Euclidean distance that ``torch.cdist`` uses for codebooks of more than 25 entries (a broadcast difference
would materialise [B*T', N, D] per level), and FSQ rounds ``tanh`` directly instead of going through
vector-quantize-pytorch's implicit-codebook code.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from codec12._fs import fsync_dir, fsync_tree
from codec12._optional import require
from codec12.codec import Codec
from codec12.export.runtime import SIDECAR_FORMAT_VERSION, SIDECAR_NAME
from codec12.nn.streaming import get_state_tensors, set_state_tensors, state_spec, streaming
from codec12.quantizers.fsq import ScalarQuantizer

DEFAULT_OPSET = 17
GRAPH_NAMES = ("encoder", "decoder", "decoder_latents", "encoder_step", "decoder_step", "decoder_latents_step")


@dataclass
class OnnxExport:
    """Result of :func:`export_onnx`: the output directory, the graph files by name and the sidecar."""

    directory: Path
    files: dict[str, Path]
    sidecar: dict[str, Any]


# ---- export-friendly quantizer pieces

def _nearest(x: torch.Tensor, table: torch.Tensor, table_norm: torch.Tensor) -> torch.Tensor:
    """x: [B, T, Dc], table: [N, Dc], table_norm: [N] -> nearest indices int64 [B, T].

    Same arithmetic as ``torch.cdist``'s matrix-product path (``[-2x, |x|^2, 1] @ [e, 1, |e|^2]^T``, clamped
    at 0, square root), so ties resolve to the first index as they do there.
    """
    x_norm = x.pow(2).sum(-1, keepdim=True)
    x_ = torch.cat([x * -2.0, x_norm, torch.ones_like(x_norm)], dim=-1)
    e_ = torch.cat([table, torch.ones_like(table_norm)[:, None], table_norm[:, None]], dim=-1)
    dist = torch.matmul(x_, e_.t()).clamp_min(0.0).sqrt()
    return dist.argmin(dim=-1)


class _RVQGraph(nn.Module):
    """Export form of :class:`codec12.quantizers.vq.ResidualVQ` (inference only).

    ``decode`` takes codes in [0, codebook_size]; the extra index ``codebook_size`` is a zero entry, so a
    level filled with it is skipped (fewer codebooks than the model has).
    """

    def __init__(self, rvq) -> None:
        super().__init__()
        self.input_proj = rvq.input_proj
        self.output_proj = rvq.output_proj
        self.num_levels = rvq.num_levels
        self.codebook_size = rvq.codebook_size
        if self.num_levels == 0:
            raise ValueError("ONNX export needs at least one level in every residual VQ")
        tables = torch.stack([rvq.codebook(i).detach().float() for i in range(self.num_levels)])  # [L, N, Dc]
        self.register_buffer("tables", tables, persistent=False)
        self.register_buffer("table_norms", tables.pow(2).sum(-1), persistent=False)
        padded = torch.cat([tables, tables.new_zeros(self.num_levels, 1, tables.shape[-1])], dim=1)
        self.register_buffer("lookup", padded.reshape(-1, tables.shape[-1]), persistent=False)
        self.register_buffer("offsets", torch.arange(self.num_levels) * (self.codebook_size + 1), persistent=False)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, dim, T] -> codes int64 [B, L, T]."""
        residual = self.input_proj(x).transpose(1, 2)  # [B, T, Dc]
        codes = []
        for level in range(self.num_levels):
            indices = _nearest(residual, self.tables[level], self.table_norms[level])
            residual = residual - F.embedding(indices, self.tables[level])
            codes.append(indices)
        return torch.stack(codes, dim=1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes: [B, L, T] in [0, codebook_size] -> [B, dim, T]."""
        emb = F.embedding(codes + self.offsets[None, :, None], self.lookup)  # [B, L, T, Dc]
        return self.output_proj(emb.sum(dim=1).transpose(1, 2))


class _FSQGraph(nn.Module):
    """Export form of :class:`codec12.quantizers.fsq.ScalarQuantizer`: one code row per dimension."""

    def __init__(self, fsq) -> None:
        super().__init__()
        self.input_proj = fsq.input_proj
        self.output_proj = fsq.output_proj
        self.num_levels = fsq.num_dims
        self.levels = fsq.levels
        # vector-quantize-pytorch's bound for odd levels: round(tanh(z) * (L - 1) * (1 + 1e-3) / 2).
        self.half_l = (fsq.levels - 1) * (1 + 1e-3) / 2
        self.half = fsq.levels // 2

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        z = self.input_proj(x)
        return (torch.round(torch.tanh(z) * self.half_l) + self.half).long()

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.output_proj((codes.float() - self.half) / self.half)


class _QuantizerGraph(nn.Module):
    """Export form of :class:`codec12.quantizers.SplitQuantizer` (and of Voxtral's quantizer, whose FSQ has no
    weights and traces as it is): all K rows in and out."""

    def __init__(self, quantizer) -> None:
        super().__init__()
        self.quantizer = quantizer  # for _split/_join/continuous
        self.semantic = _RVQGraph(quantizer.semantic)
        if quantizer.config.acoustic == "rvq":
            self.acoustic = _RVQGraph(quantizer.acoustic)
        elif isinstance(quantizer.acoustic, ScalarQuantizer):
            self.acoustic = _FSQGraph(quantizer.acoustic)
        else:
            self.acoustic = quantizer.acoustic

    def encode(self, latents: torch.Tensor) -> torch.Tensor:
        s, a = self.quantizer._split(latents)
        return torch.cat([self.semantic.encode(s), self.acoustic.encode(a)], dim=1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.quantizer._join(self.semantic.decode(codes[:, :1]), self.acoustic.decode(codes[:, 1:]))

    def continuous(self, latents: torch.Tensor) -> torch.Tensor:
        return self.quantizer.continuous(latents)


def pad_codes(codec) -> list[int | None]:
    """Per code row, the value that makes a row contribute nothing in ``decoder.onnx`` (None: row 0 is always
    given). RVQ levels: ``codebook_size`` (the zero entry); FSQ dimensions: the centre level."""
    q = codec.config.quantizer
    fill = q.acoustic_codebook_size if q.acoustic == "rvq" else q.acoustic_codebook_size // 2
    return [None] + [fill] * q.num_acoustic


# ---- graph wrappers

class _Encoder(nn.Module):
    def __init__(self, codec, quantizer: _QuantizerGraph) -> None:
        super().__init__()
        self.codec, self.q = codec, quantizer

    def forward(self, audio: torch.Tensor):
        latents = self.codec._latents(audio)
        return self.q.encode(latents), latents


class _Decoder(nn.Module):
    def __init__(self, codec, quantizer: _QuantizerGraph) -> None:
        super().__init__()
        self.codec, self.q = codec, quantizer

    def forward(self, codes: torch.Tensor):
        return self.codec._synthesize(self.q.decode(codes))


class _DecoderLatents(_Decoder):
    def forward(self, latents: torch.Tensor):
        return self.codec._synthesize(self.q.continuous(latents))


class _EncoderSide(nn.Module):
    """The encoder-side streaming blocks, so that state names read ``encoder.layers.0.previous``."""

    def __init__(self, codec) -> None:
        super().__init__()
        self.encoder, self.encoder_transformer, self.downsample = (codec.encoder, codec.encoder_transformer,
                                                                   codec.downsample)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.downsample(self.encoder_transformer(self.encoder(audio)))


class _DecoderSide(nn.Module):
    def __init__(self, codec) -> None:
        super().__init__()
        self.upsample, self.decoder_transformer, self.decoder = (codec.upsample, codec.decoder_transformer,
                                                                 codec.decoder)

    def forward(self, quantized: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.decoder_transformer(self.upsample(quantized)))


class _Step(nn.Module):
    """``(x, *state) -> (*outputs, *new_state)`` around a streaming block; used inside ``streaming()``."""

    def __init__(self, side: nn.Module, quantizer: _QuantizerGraph, mode: str) -> None:
        super().__init__()
        self.side, self.q, self.mode = side, quantizer, mode

    def forward(self, x: torch.Tensor, *state: torch.Tensor):
        set_state_tensors(self.side, list(state))
        if self.mode == "encoder":
            latents = self.side(x)
            outputs = (self.q.encode(latents), latents)
        elif self.mode == "decoder":
            outputs = (self.side(self.q.decode(x)),)
        else:
            outputs = (self.side(self.q.continuous(x)),)
        return (*outputs, *get_state_tensors(self.side))


# ---- export

def _io(name: str, dtype: str, shape: list) -> dict[str, Any]:
    return {"name": name, "dtype": dtype, "shape": shape}


def _dtype_name(t: torch.Tensor) -> str:
    return {torch.float32: "float32", torch.float64: "float64", torch.int64: "int64", torch.bool: "bool"}[t.dtype]


def _export_graph(module: nn.Module, args: tuple, path: Path, inputs: list[dict], outputs: list[dict],
                  opset: int) -> None:
    dynamic = {}
    for spec in inputs + outputs:
        axes = {i: d for i, d in enumerate(spec["shape"]) if isinstance(d, str)}
        if axes:
            dynamic[spec["name"]] = axes
    with warnings.catch_warnings():
        # The TorchScript exporter warns that it is deprecated and that traced sizes are dynamic; both are known.
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), dynamo=False, opset_version=opset,
                          input_names=[s["name"] for s in inputs], output_names=[s["name"] for s in outputs],
                          dynamic_axes=dynamic, do_constant_folding=True)


def _check_graph(path: Path) -> None:
    onnx = require("onnx", "onnx", "codec12 export onnx")
    onnx.checker.check_model(str(path), full_check=True)


def export_onnx(codec, out_dir: str | os.PathLike, *, opset: int = DEFAULT_OPSET, overwrite: bool = False,
                check: bool = True) -> OnnxExport:
    """Export ``codec`` to ``out_dir`` (see the module docstring for the files).

    The codec is copied, cast to float32 on CPU and its weight norm folded; the original is not touched.
    Files are written to a temporary directory next to ``out_dir`` and moved in at the end. A non-empty
    ``out_dir`` is refused unless ``overwrite``. ``check`` runs ``onnx.checker`` (with shape inference) on
    every graph.
    """
    if not isinstance(codec, Codec):
        raise ValueError(f"expected a codec12 Codec, got {type(codec).__name__}")
    if not isinstance(opset, int) or opset < 17:
        raise ValueError(f"opset must be an int >= 17 (LayerNormalization), got {opset!r}")
    if check:
        require("onnx", "onnx", "codec12 export onnx")  # before the export, not after minutes of it
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"{out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"{out_dir} is not empty; pass overwrite=True (CLI: -f) to replace its files")
    if codec.config.quantizer.num_acoustic == 0:
        raise ValueError("ONNX export needs at least one acoustic codebook")

    source_hash = codec.config.config_hash()
    model = codec.folded()
    for p in model.parameters():
        p.requires_grad_(False)
    quant = _QuantizerGraph(model.quantizer).eval()
    cfg = model.config
    c, d, k, fs = cfg.channels, cfg.latent_dim, cfg.num_codebooks, cfg.frame_size
    audio_in = _io("audio", "float32", ["batch", c, "samples"])
    codes_io = _io("codes", "int64", ["batch", k, "frames"])
    latents_io = _io("latents", "float32", ["batch", d, "frames"])
    audio_out = _io("audio", "float32", ["batch", c, "samples_out"])
    graphs: dict[str, dict[str, Any]] = {}
    batch, frames = 2, 3  # traced sizes; batch > 1 so no size-1 broadcast gets baked in
    gen = torch.Generator().manual_seed(0)
    example_audio = torch.randn(batch, c, frames * fs - fs // 3, generator=gen) * 0.1
    example_latents = torch.randn(batch, d, frames, generator=gen)
    example_codes = torch.stack([torch.randint(0, n, (batch, frames), generator=gen) for n in cfg.codebook_sizes],
                                dim=1)

    tmp = out_dir.with_name(f".{out_dir.name}.tmp{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        with torch.no_grad():
            offline = {
                "encoder": (_Encoder(model, quant), example_audio, [audio_in], [codes_io, latents_io]),
                "decoder": (_Decoder(model, quant), example_codes, [codes_io], [audio_out]),
                "decoder_latents": (_DecoderLatents(model, quant), example_latents, [latents_io], [audio_out]),
            }
            if not cfg.has_encoder:  # a decode-only model (Voxtral TTS's release): decoder graphs only
                del offline["encoder"]
            for name, (module, example, ins, outs) in offline.items():
                _export_graph(module, (example,), tmp / f"{name}.onnx", ins, outs, opset)
                graphs[name] = {"file": f"{name}.onnx", "inputs": ins, "outputs": outs}

            step_audio = _io("audio", "float32", ["batch", c, "samples"])
            steps = {
                "encoder_step": (_EncoderSide(model), "encoder", example_audio[..., : 2 * fs], step_audio,
                                 [codes_io, latents_io]),
                "decoder_step": (_DecoderSide(model), "decoder", example_codes[..., :2], codes_io, [audio_out]),
                "decoder_latents_step": (_DecoderSide(model), "decoder_latents", example_latents[..., :2],
                                         latents_io, [audio_out]),
            }
            if not cfg.has_encoder:
                del steps["encoder_step"]
            for name, (side, mode, example, x_in, outs) in steps.items():
                with streaming(side, batch):
                    spec = state_spec(side)
                    states = []
                    for state_name, tensor in spec:
                        shape = ["batch", *tensor.shape[1:]] if tensor.dim() else []
                        init = "ones" if tensor.dtype == torch.bool and bool(tensor.all()) else "zeros"
                        states.append({"name": state_name, "input": f"state.{state_name}",
                                       "output": f"new_state.{state_name}", "dtype": _dtype_name(tensor),
                                       "shape": shape, "init": init})
                    state_in = [t.clone() for _, t in spec]
                    ins = [x_in] + [_io(s["input"], s["dtype"], s["shape"]) for s in states]
                    all_outs = outs + [_io(s["output"], s["dtype"], s["shape"]) for s in states]
                    _export_graph(_Step(side, quant, mode), (example, *state_in), tmp / f"{name}.onnx", ins,
                                  all_outs, opset)
                graphs[name] = {"file": f"{name}.onnx", "inputs": ins, "outputs": all_outs, "states": states}

        if check:
            for name in graphs:
                _check_graph(tmp / f"{name}.onnx")

        sidecar = {
            "format": "codec12-onnx",
            "format_version": SIDECAR_FORMAT_VERSION,
            "model": cfg.name,
            "config_hash": source_hash,
            "weights_hash": codec.weights_hash(),
            "config": codec.config.to_dict(),
            "sample_rate": cfg.sample_rate,
            "channels": c,
            "frame_size": fs,
            "frame_rate": cfg.frame_rate,
            "latent_dim": d,
            "codebook_sizes": list(cfg.codebook_sizes),
            "pad_codes": pad_codes(model),
            "opset": opset,
            "exporter": f"torch {torch.__version__} (TorchScript exporter)",
            "graphs": graphs,
            "notes": {
                "state_init": "zeros: all-zero tensor; ones: all-true (bool 'first' flags of replicate-padded convs)",
                "streaming": "step graphs take whole frames (samples a multiple of frame_size); feed new_state.* "
                             "back as state.* on the next call; the batch axis of every state equals the input's",
                "pad_codes": "decoder graphs take all K rows; fill rows you do not have with pad_codes[row]",
            },
        }
        (tmp / SIDECAR_NAME).write_text(json.dumps(sidecar, indent=2) + "\n")
        # Every file is complete and on disk before the first one moves in; the sidecar, which names the graphs,
        # moves last. (The directory is not swapped whole: with overwrite, files of others in it stay.)
        fsync_tree(tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        files = {}
        for name in graphs:
            os.replace(tmp / f"{name}.onnx", out_dir / f"{name}.onnx")
            files[name] = out_dir / f"{name}.onnx"
        os.replace(tmp / SIDECAR_NAME, out_dir / SIDECAR_NAME)
        fsync_dir(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return OnnxExport(directory=out_dir, files=files, sidecar=sidecar)


# ---- command line

__all__ = ["GRAPH_NAMES", "SIDECAR_NAME", "OnnxExport", "export_onnx", "pad_codes"]
