"""ONNX export: offline graphs, streaming step graphs with explicit state, their weights in one shared file, and a
JSON sidecar.

``export_onnx(codec, out_dir)`` writes:

- ``encoder.onnx``: audio float32 [B, C, T] -> codes int64 [B, K, T'], latents float32 [B, D, T']
  (T' = ceil(T / frame_size); a partial last frame is zero-padded inside the graph, as in ``Codec.encode``).
- ``decoder.onnx``: codes int64 [B, K, T'] -> audio [B, C, T' * frame_size]. The graph always takes all K
  rows; a row holding its ``pad_codes`` value (codebook_size for an RVQ level, the centre level for an FSQ
  dimension) contributes nothing, which is how fewer codebooks are decoded.
- ``decoder_latents.onnx``: latents [B, D, T'] -> audio (the unquantized path of ``Codec.decode_latents``).
- ``encoder_step.onnx`` / ``decoder_step.onnx`` / ``decoder_latents_step.onnx``: one or more whole frames plus
  every streaming state tensor (``state.<name>``) in, outputs plus the next state (``new_state.<name>``) out.
- ``weights-<sha256 prefix>.onnx_data``: the graphs' tensors of 1 KiB or more as ONNX external data, each distinct
  content once (the encoder's weights serve ``encoder`` and ``encoder_step``, the decoder's the four decoder
  graphs); a graph's tensor names the file, its offset and its length. onnxruntime and ``onnx.load`` read it
  from beside the graph. The name changes with the content, so graphs of an export being overwritten never
  read another export's weights.
- ``codec12_onnx.json``: inputs, outputs, state names/shapes/dtypes/initial values, sample rate, frame size,
  codebook sizes, opset, the weights file, the source config (its hash, with ``config_hash_format``) and weights
  hash (what names the model a dataset tokenized through the export was made with), the graphs' ``dtype`` and,
  when measured, their ``code_agreement`` with the float32 codec.
  :class:`codec12.export.runtime.OnnxCodec` reads it.

``dtype`` (``float32``, ``float16`` or ``int8``) is the precision of the convolutions and matrix products with
weights in the encoder and decoder stacks; the quantizer, the inverse STFT and everything else stay float32, and so
do every graph's inputs, outputs and states (:mod:`codec12.export.precision`). float32 graphs give PyTorch's codes;
reduced-precision ones may not, so ``check_audio`` clips are encoded by both and the share of frames with the same
code is recorded per code row (:func:`measure_code_agreement`): ``OnnxCodec.check_fit_for_tokenize`` reads it.

The graphs trace the codec's own public sides (``Codec.encode_side``, ``decode_side``, ``decode_latents_side``),
which ``Codec.encode``/``decode`` run after checking their input: the quantizers' nearest-entry search and FSQ
rounding are written to trace (``codec12.quantizers``), so there is one implementation of each.

Exporter choice: torch's TorchScript-based exporter (``dynamo=False``). Tracing records tensor sizes as graph
operations, so the frame padding, the causal-conv trims and the attention masks follow the dynamic batch
and time axes (the tests run every graph at lengths other than the traced one), it needs no package beyond
torch, and it exports ``scaled_dot_product_attention`` with a boolean mask directly. The dynamo exporter
would add ``onnxscript`` as a dependency for no gain here.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from codec12._checks import Arrays, InputChecks
from codec12._fs import fsync_dir, fsync_tree
from codec12._optional import require
from codec12.codec import Codec
from codec12.config import CONFIG_HASH_FORMAT
from codec12.decoder.istft import StreamingISTFT
from codec12.export.precision import DTYPES, onnx_scope, reduce_precision
from codec12.export.runtime import SIDECAR_FORMAT_VERSION, SIDECAR_NAME, OnnxCodec
from codec12.nn.streaming import get_state_tensors, set_state_tensors, state_spec, streaming

DEFAULT_OPSET = 17
GRAPH_NAMES = ("encoder", "decoder", "decoder_latents", "encoder_step", "decoder_step", "decoder_latents_step")
# Tensors this large or larger go to the shared weights file (onnx's own default threshold); smaller ones, shapes
# and scalars mostly, stay in their graph.
EXTERNAL_MIN_BYTES = 1024
# Offsets in the weights file are multiples of this (a cache line, and the alignment onnxruntime gives tensors).
WEIGHTS_ALIGNMENT = 64
_WEIGHTS_TMP_NAME = "weights.onnx_data"
# Modules whose weighted convolutions and products stay float32 in a float16 or int8 export: the inverse STFT (its
# fixed basis of windowed sinusoids, whose overlapping frames must add back up to the signal). The quantizer's nodes
# are outside the stacks that change (its methods are called, not its forward, so the exporter gives its nodes no
# scope).
FLOAT32_MODULES = (StreamingISTFT,)


@dataclass
class OnnxExport:
    """Result of :func:`export_onnx`: the output directory, the graph files by name, the shared weights file and
    the sidecar."""

    directory: Path
    files: dict[str, Path]
    weights: Path
    sidecar: dict[str, Any]

    def total_bytes(self) -> int:
        """Size of everything written: graphs, weights and sidecar."""
        paths = [*self.files.values(), self.weights, self.directory / SIDECAR_NAME]
        return sum(p.stat().st_size for p in paths)


def pad_codes(codec) -> list[int | None]:
    """Per code row, the value that makes a row contribute nothing in ``decoder.onnx`` (None: row 0 is always
    given). RVQ levels: ``codebook_size`` (no entry); FSQ dimensions: the centre level."""
    q = codec.config.quantizer
    fill = q.acoustic_codebook_size if q.acoustic == "rvq" else q.acoustic_codebook_size // 2
    return [None] + [fill] * q.num_acoustic


# ---- what is traced

class _Side(nn.Module):
    """``forward(x) = codec.<method>(x)``, a codec side as a module to trace (the codec's weights are its own)."""

    def __init__(self, codec: Codec, method: str) -> None:
        super().__init__()
        self.codec, self.method = codec, method

    def forward(self, x: torch.Tensor):
        return getattr(self.codec, self.method)(x)


class _Step(_Side):
    """``(x, *state) -> (*outputs, *new_state)``: a side inside ``streaming(parts)``, where ``parts`` holds the
    side's streaming modules under the codec's names (so state names read ``encoder_transformer.layers.0...``)."""

    def __init__(self, codec: Codec, method: str, parts: nn.ModuleDict) -> None:
        super().__init__(codec, method)
        self.parts = parts

    def forward(self, x: torch.Tensor, *state: torch.Tensor):
        set_state_tensors(self.parts, list(state))
        outputs = super().forward(x)
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        return (*outputs, *get_state_tensors(self.parts))


# ---- the shared weights file

class _SharedWeights:
    """One file of tensor data, each distinct content written once; :meth:`place` returns where a content is."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = open(path, "wb")
        self._places: dict[bytes, tuple[int, int]] = {}
        self._sha256 = hashlib.sha256()
        self.size = 0

    def place(self, data: bytes) -> tuple[int, int]:
        """(offset, length) of ``data`` in the file, written there on its first appearance."""
        key = hashlib.sha256(data).digest()
        if key not in self._places:
            self._write(b"\0" * (-self.size % WEIGHTS_ALIGNMENT))
            self._places[key] = (self.size, len(data))
            self._write(data)
        return self._places[key]

    def _write(self, data: bytes) -> None:
        self._file.write(data)
        self._sha256.update(data)
        self.size += len(data)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> str:
        """Close the file; its sha256 (hex)."""
        self._file.close()
        return self._sha256.hexdigest()


def _promote_constants(model) -> None:
    """Make the tensors of ``model``'s Constant nodes of EXTERNAL_MIN_BYTES or more initializers of the same name
    (the exporter leaves some folded constants, such as the inverse STFT's basis, as nodes): weights all read
    alike, for the shared file and for the precision passes. Tensors in subgraphs stay."""
    onnx = require("onnx", "onnx", "codec12 export onnx")
    graph = model.graph
    promoted = []
    for i, node in enumerate(graph.node):
        if node.op_type != "Constant" or node.domain not in ("", "ai.onnx"):
            continue
        value = next((a.t for a in node.attribute if a.name == "value" and a.type == onnx.AttributeProto.TENSOR),
                     None)
        if value is not None and len(value.raw_data) >= EXTERNAL_MIN_BYTES:
            tensor = graph.initializer.add()
            tensor.CopyFrom(value)
            tensor.name = node.output[0]
            promoted.append(i)
    for i in reversed(promoted):
        del graph.node[i]


def _externalize(model, weights: _SharedWeights, location: str) -> None:
    """Move ``model``'s initializers of EXTERNAL_MIN_BYTES or more (large Constant nodes' tensors made initializers
    first) into ``weights``."""
    onnx = require("onnx", "onnx", "codec12 export onnx")
    _promote_constants(model)
    for tensor in model.graph.initializer:
        if len(tensor.raw_data) < EXTERNAL_MIN_BYTES:
            continue
        offset, length = weights.place(tensor.raw_data)
        tensor.ClearField("raw_data")
        tensor.data_location = onnx.TensorProto.EXTERNAL
        del tensor.external_data[:]
        for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value


def _relocate(model, location: str) -> None:
    """Point every external tensor of ``model`` at ``location``."""
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location


# ---- export

def _io(name: str, dtype: str, shape: list) -> dict[str, Any]:
    return {"name": name, "dtype": dtype, "shape": shape}


def _dtype_name(t: torch.Tensor) -> str:
    return {torch.float32: "float32", torch.float64: "float64", torch.int64: "int64", torch.bool: "bool"}[t.dtype]


def _export_graph(module: nn.Module, args: tuple, inputs: list[dict], outputs: list[dict], opset: int, path: Path):
    """Trace ``module`` on ``args`` into ``path`` -> the ONNX ModelProto, its weights inside."""
    onnx = require("onnx", "onnx", "codec12 export onnx")
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
    return onnx.load(str(path))  # (with the external data torch writes beside a graph of over 2 GB)


def export_onnx(codec, out_dir: str | os.PathLike, *, opset: int = DEFAULT_OPSET, dtype: str = "float32",
                check_audio: Sequence[Any] | None = None, overwrite: bool = False, check: bool = True,
                progress: Callable[[str, float], None] | None = None) -> OnnxExport:
    """Export ``codec`` to ``out_dir`` (see the module docstring for the files).

    The codec is copied, cast to float32 on CPU and its weight norm folded; the original is not touched.
    ``dtype``: ``"float32"``, ``"float16"`` or ``"int8"`` (:mod:`codec12.export.precision`). ``check_audio``: clips
    [C, T] at the codec's sample rate (numpy arrays or tensors) to measure the encoder graph's code agreement with
    the float32 codec on; the sidecar records it (``code_agreement``; None when no clips are given). Files are
    written to a temporary directory next to ``out_dir`` and moved in at the end. A non-empty ``out_dir`` is
    refused unless ``overwrite``. ``check`` runs ``onnx.checker`` (with shape inference) on every graph.
    ``progress(name, seconds)`` is called as each graph is done (traced, written and checked).
    """
    if not isinstance(codec, Codec):
        raise ValueError(f"expected a codec12 Codec, got {type(codec).__name__}")
    if not isinstance(opset, int) or opset < 17:
        raise ValueError(f"opset must be an int >= 17 (LayerNormalization), got {opset!r}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    onnx = require("onnx", "onnx", "codec12 export onnx")  # before the export, not after minutes of it
    if dtype == "int8":
        require("onnxruntime.quantization", "onnx", "codec12 export onnx --dtype int8")
    clips = _check_clips(check_audio, codec)
    if clips and not codec.config.has_encoder:
        raise ValueError("check_audio: this model has no encoder, so there are no codes to compare")
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
    cfg = model.config
    c, d, k, fs = cfg.channels, cfg.latent_dim, cfg.num_codebooks, cfg.frame_size
    scopes = tuple(onnx_scope(part) for part in (*model.encoder_parts, *model.decoder_parts))
    float32_scopes = tuple(onnx_scope(path) for path, module in model.named_modules()
                           if isinstance(module, FLOAT32_MODULES))
    audio_in = _io("audio", "float32", ["batch", c, "samples"])
    codes_io = _io("codes", "int64", ["batch", k, "frames"])
    latents_io = _io("latents", "float32", ["batch", d, "frames"])
    audio_out = _io("audio", "float32", ["batch", c, "samples_out"])
    batch, frames = 2, 3  # traced sizes; batch > 1 so no size-1 broadcast gets baked in
    gen = torch.Generator().manual_seed(0)
    example_audio = torch.randn(batch, c, frames * fs - fs // 3, generator=gen) * 0.1
    example_latents = torch.randn(batch, d, frames, generator=gen)
    example_codes = torch.stack([torch.randint(0, n, (batch, frames), generator=gen) for n in cfg.codebook_sizes],
                                dim=1)
    # name: (method, example input, input spec, output specs)
    offline = {
        "encoder": ("encode_side", example_audio, audio_in, [codes_io, latents_io]),
        "decoder": ("decode_side", example_codes, codes_io, [audio_out]),
        "decoder_latents": ("decode_latents_side", example_latents, latents_io, [audio_out]),
    }
    steps = {
        "encoder_step": ("encode_side", example_audio[..., : 2 * fs], audio_in, [codes_io, latents_io]),
        "decoder_step": ("decode_side", example_codes[..., :2], codes_io, [audio_out]),
        "decoder_latents_step": ("decode_latents_side", example_latents[..., :2], latents_io, [audio_out]),
    }
    if not cfg.has_encoder:  # a decode-only model (Voxtral TTS's release): decoder graphs only
        del offline["encoder"], steps["encoder_step"]

    tmp = out_dir.with_name(f".{out_dir.name}.tmp{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    graphs: dict[str, dict[str, Any]] = {}
    protos = {}
    weights = _SharedWeights(tmp / _WEIGHTS_TMP_NAME)
    try:
        def write(name: str, module: nn.Module, args: tuple, ins: list[dict], outs: list[dict]) -> dict[str, int]:
            """Trace, set the precision, externalize, write and check graph ``name`` -> the nodes whose precision
            changed, by op type."""
            traced = tmp / "traced" / f"{name}.onnx"
            traced.parent.mkdir(exist_ok=True)
            proto = _export_graph(module, args, ins, outs, opset, traced)
            _promote_constants(proto)
            proto, changed = reduce_precision(proto, dtype, scopes, float32_scopes, traced.parent)
            shutil.rmtree(traced.parent)
            _externalize(proto, weights, _WEIGHTS_TMP_NAME)
            weights.flush()
            (tmp / f"{name}.onnx").write_bytes(proto.SerializeToString())
            if check:
                onnx.checker.check_model(str(tmp / f"{name}.onnx"), full_check=True)
            protos[name] = proto
            return dict(sorted(changed.items()))

        with torch.no_grad():
            for name, (method, example, x_in, outs) in offline.items():
                started = time.perf_counter()
                changed = write(name, _Side(model, method), (example,), [x_in], outs)
                graphs[name] = {"file": f"{name}.onnx", "inputs": [x_in], "outputs": outs, "reduced": changed}
                if progress is not None:
                    progress(name, time.perf_counter() - started)

            for name, (method, example, x_in, outs) in steps.items():
                started = time.perf_counter()
                side = name.split("_")[0]  # "encoder" or "decoder"
                parts = nn.ModuleDict({part: getattr(model, part) for part in getattr(model, f"{side}_parts")})
                with streaming(parts, batch):
                    spec = state_spec(parts)
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
                    changed = write(name, _Step(model, method, parts), (example, *state_in), ins, all_outs)
                graphs[name] = {"file": f"{name}.onnx", "inputs": ins, "outputs": all_outs, "states": states,
                                "reduced": changed}
                if progress is not None:
                    progress(name, time.perf_counter() - started)

        digest = weights.close()
        # Named by content: while an export is overwritten, its old graphs keep reading their own weights file.
        weights_name = f"weights-{digest[:16]}.onnx_data"
        os.replace(tmp / _WEIGHTS_TMP_NAME, tmp / weights_name)
        for name, proto in protos.items():
            _relocate(proto, weights_name)
            (tmp / f"{name}.onnx").write_bytes(proto.SerializeToString())

        sidecar = {
            "format": "codec12-onnx",
            "format_version": SIDECAR_FORMAT_VERSION,
            "model": cfg.name,
            "config_hash": source_hash,
            "config_hash_format": CONFIG_HASH_FORMAT,
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
            "dtype": dtype,
            "code_agreement": None,
            "exporter": f"torch {torch.__version__} (TorchScript exporter)",
            "weights": {"file": weights_name, "bytes": weights.size, "sha256": digest},
            "graphs": graphs,
            "notes": {
                "state_init": "zeros: all-zero tensor; ones: all-true (bool 'first' flags of replicate-padded convs)",
                "streaming": "step graphs take whole frames (samples a multiple of frame_size); feed new_state.* "
                             "back as state.* on the next call; the batch axis of every state equals the input's",
                "pad_codes": "decoder graphs take all K rows; fill rows you do not have with pad_codes[row]",
                "weights": "the graphs' tensors of 1 KiB or more, as ONNX external data in one file shared by all "
                           "graphs, each distinct tensor once",
                "dtype": "precision of the weighted convolutions and matrix products of the encoder and decoder "
                         "stacks ('reduced' per graph: how many, by op type); inputs, outputs, states, the "
                         "quantizer and the inverse STFT are float32",
                "code_agreement": "per code row, the share of frames where the encoder graph gives the float32 "
                                  "PyTorch codec's code, on the clips given at export (null: not measured)",
            },
        }
        (tmp / SIDECAR_NAME).write_text(json.dumps(sidecar, indent=2) + "\n")
        if clips:
            sidecar["code_agreement"] = measure_code_agreement(model, OnnxCodec(tmp), clips)
            (tmp / SIDECAR_NAME).write_text(json.dumps(sidecar, indent=2) + "\n")
        previous = _previous_weights(out_dir)
        # Every file is complete and on disk before the first one moves in; the weights go first, the sidecar,
        # which names the graphs, last. (The directory is not swapped whole: with overwrite, files of others in it
        # stay.)
        fsync_tree(tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / weights_name, out_dir / weights_name)
        files = {}
        for name in graphs:
            os.replace(tmp / f"{name}.onnx", out_dir / f"{name}.onnx")
            files[name] = out_dir / f"{name}.onnx"
        os.replace(tmp / SIDECAR_NAME, out_dir / SIDECAR_NAME)
        if previous is not None and previous != weights_name and (out_dir / previous).is_file():
            (out_dir / previous).unlink()  # the replaced export's weights, which no graph names now
        fsync_dir(out_dir)
    finally:
        weights.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return OnnxExport(directory=out_dir, files=files, weights=out_dir / weights_name, sidecar=sidecar)


def _check_clips(clips: Sequence[Any] | None, codec: Codec) -> list[np.ndarray]:
    """``check_audio`` as float32 arrays [C, T], each checked as a codec input."""
    if clips is None:
        return []
    if isinstance(clips, (np.ndarray, torch.Tensor)) or not len(clips):
        raise ValueError("check_audio must be a non-empty list of [C, T] clips")
    cfg = codec.config
    checks = InputChecks(Arrays(), channels=cfg.channels, frame_size=cfg.frame_size, latent_dim=cfg.latent_dim,
                         codebook_sizes=cfg.codebook_sizes, sample_rate=cfg.sample_rate)
    out = []
    for i, clip in enumerate(clips):
        array = clip.detach().cpu().numpy() if isinstance(clip, torch.Tensor) else clip
        if not isinstance(array, np.ndarray) or array.ndim != 2:
            shape = tuple(array.shape) if hasattr(array, "shape") else type(array).__name__
            raise ValueError(f"check_audio: clip {i} must be a [C, T] array, got {shape}")
        try:
            checks.check_audio(array[None])
        except ValueError as e:
            raise ValueError(f"check_audio: clip {i}: {e}") from e
        out.append(np.ascontiguousarray(array, dtype=np.float32))
    return out


def measure_code_agreement(codec: Codec, onnx_codec: OnnxCodec, clips: Sequence[np.ndarray]) -> dict[str, Any]:
    """How often an export's encoder gives ``codec``'s codes: each clip [C, T] (float32, at the codec's sample rate)
    is encoded alone by both. -> ``{"reference", "runtime", "clips", "seconds", "frames", "rows",
    "frames_all_rows"}``: ``rows[k]`` the share of frames where row k's code is the same, ``frames_all_rows`` the
    share where every row's is; ``runtime`` names onnxruntime and the provider that ran the export (a float16
    graph computes in float32 on the x86 CPU provider, in float16 on a GPU's)."""
    if not clips:
        raise ValueError("measure_code_agreement needs at least one clip")
    ort = require("onnxruntime", "onnx", "measuring an ONNX export's codes")
    same = np.zeros(onnx_codec.num_codebooks, dtype=np.int64)
    same_all = frames = samples = 0
    for clip in clips:
        reference = codec.encode(torch.from_numpy(np.ascontiguousarray(clip[None], dtype=np.float32))).numpy()
        codes = onnx_codec.encode(np.ascontiguousarray(clip[None], dtype=np.float32))
        equal = codes[0] == reference[0]  # [K, T']
        same += equal.sum(axis=1)
        same_all += int(equal.all(axis=0).sum())
        frames += equal.shape[1]
        samples += clip.shape[-1]
    runtime = f"onnxruntime {ort.__version__} {onnx_codec.session('encoder').get_providers()[0]}"
    return {"reference": "PyTorch float32", "runtime": runtime, "clips": len(clips),
            "seconds": round(samples / codec.sample_rate, 3), "frames": frames,
            "rows": [int(n) / frames for n in same], "frames_all_rows": same_all / frames}


def _previous_weights(out_dir: Path) -> str | None:
    """The weights file that the export already in ``out_dir`` names, if there is one (a plain file name)."""
    try:
        name = json.loads((out_dir / SIDECAR_NAME).read_text())["weights"]["file"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return name if isinstance(name, str) and name == Path(name).name else None


__all__ = ["DTYPES", "GRAPH_NAMES", "SIDECAR_NAME", "OnnxExport", "export_onnx", "measure_code_agreement",
           "pad_codes"]
