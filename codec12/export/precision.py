"""Reduced-precision ONNX graphs for ``export_onnx(..., dtype=...)``: float16 weights, or int8 weights by dynamic
quantization.

Which nodes change: the convolutions and matrix products that carry a weight (every input after the first is an
initializer) inside the codec's encoder and decoder stacks (the modules ``Codec.encoder_parts`` and
``decoder_parts`` name), which hold nearly all the parameters and the arithmetic. Everything else stays float32:

- the quantizer: its projections, its nearest-entry distances (a product with the codebooks) and its codebook
  lookups, so that codes are picked in float32 from what the stack gives;
- the inverse STFT's fixed synthesis basis (a transposed convolution with 640-sample sinusoids);
- normalisation, softmax, attention scores (products of two activations), activations, the harmonic branch's phase
  arithmetic: none of it is a weighted convolution or matrix product.

float16: each such node's weights are stored as float16, its input is cast to float16 and its output back to
float32, so a graph's inputs, outputs and streaming states stay float32 and :class:`OnnxCodec` runs it unchanged.
A GPU provider runs these nodes in float16. onnxruntime's CPU provider has no float16 kernels for them on x86: it
computes them in float32 and its graph optimiser drops the cast pairs, so on CPU the graph gives the float32
graph's results on float16-rounded weights, at float32 speed, from a weights file half the size.

int8: ``onnxruntime.quantization.quantize_dynamic`` on the chosen MatMul nodes: weights int8 with one scale per
output column, activations uint8 with a scale taken from each call's tensor (DynamicQuantizeLinear ->
MatMulInteger). Convolutions stay float32: quantized too (ConvInteger), the bundled model's semantic codes agree
with float32's on 0.56 of frames instead of 0.995 (docs/benchmarks.md), and encoding was not faster in a trial.
Since each call quantizes its activations with the call's own range, int8 results depend a little on what else is
in the call: the other items of a batch and how a stream is cut into chunks. Static quantization (fixed ranges
from calibration audio, QDQ) did not remove that in a trial: the float32 parts of a stream and of the whole file
differ by float rounding, enough to move a value across a step of the 8-bit grid now and then, and then the codes
part; and its codes agreed less well with float32's (0.98 of frames on row 0 against 0.99). So: dynamic.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from codec12._optional import require
from codec12.export.runtime import DTYPES

FLOAT16_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
INT8_OPS = ("MatMul",)


def onnx_scope(module_path: str) -> str:
    """The prefix of the names torch's exporter gives the nodes of a module: ``decoder.blocks.0.dwconv`` ->
    ``/decoder/blocks.0/dwconv/`` (a list index stays with its list's name)."""
    parts: list[str] = []
    for part in module_path.split("."):
        if part.isdigit() and parts:
            parts[-1] += f".{part}"
        else:
            parts.append(part)
    return "/" + "/".join(parts) + "/"


def weighted_nodes(model, op_types: tuple[str, ...], scopes: tuple[str, ...],
                   float32_scopes: tuple[str, ...] = ()) -> list[str]:
    """Names of ``model``'s nodes of ``op_types`` whose inputs after the first are all float32 initializers (a
    weight and a bias), in one of ``scopes`` and not in any of ``float32_scopes`` (node name prefixes)."""
    onnx = require("onnx", "onnx", "codec12 export onnx")
    floats = {t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    return [n.name for n in model.graph.node
            if n.op_type in op_types and n.domain in ("", "ai.onnx") and len(n.input) > 1
            and all(name in floats for name in n.input[1:] if name)
            and n.name.startswith(scopes) and not n.name.startswith(float32_scopes)]


def to_float16(model, names: list[str]) -> Counter:
    """Run the nodes ``names`` of ``model`` on float16 weights (in place): their float32 initializers are replaced
    by float16 copies (``<name>.float16``; the float32 one goes when no other node reads it), their first input is
    cast to float16 and their output back to float32 under its old name. -> the number of nodes changed, by op
    type."""
    onnx = require("onnx", "onnx", "codec12 export onnx")
    from onnx import helper, numpy_helper

    graph = model.graph
    chosen = set(names)
    initializers = {t.name: t for t in graph.initializer}
    halves: dict[str, str] = {}
    casts: dict[str, str] = {}
    nodes, counts = [], Counter()
    for node in graph.node:
        if node.name not in chosen:
            nodes.append(node)
            continue
        x = node.input[0]
        if x not in casts:  # one cast per tensor, before its first chosen reader (nodes are in topological order)
            casts[x] = f"{x}.float16"
            nodes.append(helper.make_node("Cast", [x], [casts[x]], name=f"{node.name}.cast_in",
                                          to=onnx.TensorProto.FLOAT16))
        inputs = [casts[x]]
        for name in node.input[1:]:
            if name and name not in halves:
                half = numpy_helper.to_array(initializers[name]).astype(np.float16)
                halves[name] = f"{name}.float16"
                graph.initializer.append(numpy_helper.from_array(half, halves[name]))
            inputs.append(halves[name] if name else name)
        del node.input[:]
        node.input.extend(inputs)
        out = node.output[0]
        node.output[0] = f"{out}.float16"
        nodes.append(node)
        nodes.append(helper.make_node("Cast", [node.output[0]], [out], name=f"{node.name}.cast_out",
                                      to=onnx.TensorProto.FLOAT))
        counts[node.op_type] += 1
    del graph.node[:]
    graph.node.extend(nodes)
    read = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    kept = [t for t in graph.initializer if t.name in read]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return counts


@contextmanager
def _quiet_logging() -> Iterator[None]:
    """onnxruntime.quantization logs a warning per graph that suggests its pre-processing (shape inference and
    graph optimisation), which the quantizer runs itself where it matters; keep it off the console."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def to_int8(model, names: list[str], work: Path):
    """``model`` with the MatMul nodes ``names`` quantized dynamically (int8 weights per output column, uint8
    activations per call), through files in the directory ``work`` -> (the new ModelProto, the number of nodes
    quantized by op type)."""
    onnx = require("onnx", "onnx", "codec12 export onnx")
    quantization = require("onnxruntime.quantization", "onnx", "codec12 export onnx --dtype int8")
    path = work / "int8.onnx"
    with _quiet_logging():
        quantization.quantize_dynamic(model, path, op_types_to_quantize=list(INT8_OPS), nodes_to_quantize=names,
                                      per_channel=True, weight_type=quantization.QuantType.QInt8)
    quantized = onnx.load(str(path))
    path.unlink()
    counts = Counter({"MatMul": sum(n.op_type == "MatMulInteger" for n in quantized.graph.node)})
    if counts["MatMul"] != len(names):
        raise RuntimeError(f"int8 quantization changed {counts['MatMul']} of the {len(names)} MatMul nodes chosen")
    return quantized, counts


def reduce_precision(model, dtype: str, scopes: tuple[str, ...], float32_scopes: tuple[str, ...], work: Path):
    """``model`` (a float32 graph from torch's exporter) in ``dtype`` -> (ModelProto, nodes changed by op type)."""
    if dtype == "float32":
        return model, Counter()
    if dtype == "float16":
        counts = to_float16(model, weighted_nodes(model, FLOAT16_OPS, scopes, float32_scopes))
        return model, counts
    if dtype == "int8":
        return to_int8(model, weighted_nodes(model, INT8_OPS, scopes, float32_scopes), work)
    raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")


__all__ = ["DTYPES", "onnx_scope", "reduce_precision", "to_float16", "to_int8", "weighted_nodes"]
