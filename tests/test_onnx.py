"""ONNX export: every graph passes the checker, onnxruntime matches PyTorch offline and streaming, the runtime
imports without torch, and bad inputs raise clear errors."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import soundfile as sf
import torch
from conftest import distinct_codes, speechlike, spread_quantizer, tiny_codec, tiny_config

from codec12 import Codec, CodecConfig
from codec12.cli import main
from codec12.export import OnnxCodec, UnfitForTokenize, export_onnx, measure_code_agreement
from codec12.export.onnx import DTYPES, EXTERNAL_MIN_BYTES, GRAPH_NAMES, SIDECAR_NAME, WEIGHTS_ALIGNMENT, OnnxExport
from codec12.export.runtime import TOKENIZE_MIN_AGREEMENT, TOKENIZE_MIN_FRAMES

# The three preset topologies at tiny width, plus FSQ on a shared latent (slow tier: export is seconds each).
TOPOLOGIES = {
    "tiny-16k-rvq-shared": dict(sample_rate=16000, acoustic="rvq", layout="shared"),  # c12-tiny-16k
    "tiny-24k-rvq-shared": dict(sample_rate=24000, acoustic="rvq", layout="shared"),  # c12-mimi-24k
    "tiny-24k-fsq-concat": dict(sample_rate=24000, acoustic="fsq", layout="concat"),  # c12-fsq-24k
    "tiny-16k-fsq-shared": dict(sample_rate=16000, acoustic="fsq", layout="shared"),
    "tiny-16k-istft": dict(sample_rate=16000, acoustic="rvq", layout="shared", istft=True),  # inverse-STFT decoder
    # a running phase per bin, carried between steps as a float64 state
    "tiny-16k-istft-integrated": dict(sample_rate=16000, acoustic="rvq", layout="shared", istft=True,
                                      istft_phase="integrated"),
    # the source-filter branch: F0, voicing and a harmonic envelope; the F0's running phase is a float64 state
    "tiny-16k-istft-harmonic": dict(sample_rate=16000, acoustic="rvq", layout="shared", istft=True,
                                    istft_harmonic=True),
    # the same with the harmonics' envelope a share of the free-phase branch's magnitude
    "tiny-16k-istft-harmonic-shared": dict(sample_rate=16000, acoustic="rvq", layout="shared", istft=True,
                                           istft_harmonic=True, istft_harmonic_envelope="shared"),
}


@pytest.fixture(scope="module", params=[
    pytest.param(name, marks=[pytest.mark.slow] if name == "tiny-16k-fsq-shared" else []) for name in TOPOLOGIES
])
def exported(request, tmp_path_factory):
    codec = tiny_codec(seed=1, **TOPOLOGIES[request.param])
    root = tmp_path_factory.mktemp(request.param)
    out = root / "onnx"
    if request.param == "tiny-16k-rvq-shared":  # this one goes through the command line
        codec.save_pretrained(root / "model")
        out.mkdir()
        (out / "old.txt").write_text("x")
        assert main(["export", "onnx", str(root / "model"), str(out)]) == 1  # non-empty: refused without -f
        assert sorted(p.name for p in out.iterdir()) == ["old.txt"]
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            assert main(["export", "onnx", str(root / "model"), str(out), "-f", "-q"]) == 0
        assert printed.getvalue() == ""
        sidecar = json.loads((out / SIDECAR_NAME).read_text())
        result = OnnxExport(out, {name: out / f"{name}.onnx" for name in GRAPH_NAMES}, out / sidecar["weights"]["file"],
                            sidecar)
    else:
        result = export_onnx(codec, out)
    # One intra-op thread: the test machine's two cores are shared, and spinning worker threads only slow it.
    return codec, OnnxCodec(out, num_threads=1), result


def _tolerances(codec: Codec) -> tuple[float, float]:
    """Largest audio differences allowed: onnxruntime against PyTorch, and ONNX streamed against ONNX offline.

    A harmonic decoder's phase integrates its predicted F0, so float rounding differences in the F0 add up over
    the frames; with the test codecs' decisive F0 classifier (conftest.tiny_codec) they stay near 1e-6 (measured
    at most 1.2e-6 on these clips), within the bounds of every other decoder."""
    return 1e-4, 1e-5


def _audio(codec: Codec, seconds: float, batch: int = 2) -> np.ndarray:
    return np.stack([speechlike(seconds, codec.sample_rate, seed=s).T for s in range(batch)])


def _torch(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x))


def test_graphs_pass_checker_with_dynamic_axes(exported):
    codec, oc, result = exported
    assert sorted(result.files) == sorted(GRAPH_NAMES)
    for name, path in result.files.items():
        model = onnx.load(str(path))
        onnx.checker.check_model(model, full_check=True)
        assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
        first = model.graph.input[0].type.tensor_type.shape.dim
        assert first[0].dim_param == "batch" and first[2].dim_param, name  # batch and time are symbolic
    sidecar = json.loads((result.directory / SIDECAR_NAME).read_text())
    assert sidecar["config_hash"] == codec.config.config_hash()
    assert CodecConfig.from_dict(sidecar["config"]) == codec.config
    assert sidecar["codebook_sizes"] == list(codec.codebook_sizes)
    assert sidecar["frame_size"] == codec.frame_size and sidecar["sample_rate"] == codec.sample_rate
    states = sidecar["graphs"]["encoder_step"]["states"]
    names = {s["name"] for s in states}
    assert "encoder_transformer.layers.0.self_attn.keys" in names and "downsample.first" in names
    assert all(s["name"].startswith(("encoder", "downsample")) for s in states)
    dec_states = sidecar["graphs"]["decoder_step"]["states"]
    assert dec_states == sidecar["graphs"]["decoder_latents_step"]["states"]
    assert all(s["name"].startswith(("upsample", "decoder")) for s in dec_states)


def test_export_leaves_the_source_codec_untouched(exported):
    codec, _, _ = exported
    assert codec.config.seanet.norm == "weight_norm"
    assert torch.nn.utils.parametrize.is_parametrized(codec.encoder.layers[0].conv, "weight")
    codec.encode(torch.zeros(1, codec.channels, codec.frame_size))  # still runs


def test_offline_parity(exported):
    codec, oc, _ = exported
    parity, stream_tol = _tolerances(codec)
    wav = _audio(codec, 0.93, batch=3)  # not whole frames, batch and length unlike the traced example
    ref_codes = codec.encode(_torch(wav)).numpy()
    assert min(distinct_codes(ref_codes)) >= 3, distinct_codes(ref_codes)  # parity of codes that vary
    codes = oc.encode(wav)
    assert codes.dtype == np.int64 and codes.shape == ref_codes.shape
    np.testing.assert_array_equal(codes, ref_codes)
    np.testing.assert_array_equal(oc.encode(wav, num_codebooks=2), ref_codes[:, :2])
    z = oc.encode_latents(wav)
    z_ref = codec.encode_latents(_torch(wav)).detach().numpy()
    assert np.abs(z - z_ref).max() < 1e-4
    for k in (codec.num_codebooks, 2, 1):  # fewer codebooks go through the pad codes
        audio = oc.decode(ref_codes[:, :k])
        ref = codec.decode(_torch(ref_codes[:, :k])).numpy()
        assert audio.shape == ref.shape == (3, codec.channels, ref_codes.shape[-1] * codec.frame_size)
        assert np.abs(audio - ref).max() < parity, k
    audio = oc.decode_latents(z_ref)
    ref = codec.decode_latents(_torch(z_ref)).detach().numpy()
    assert np.abs(audio - ref).max() < parity
    # Random codes reach every row's whole range (random-weight encoders favour a few values).
    rng = np.random.default_rng(0)
    rand = np.stack([rng.integers(0, n, (2, 6)) for n in codec.codebook_sizes], axis=1)
    audio = oc.decode(rand)
    assert np.abs(audio - codec.decode(_torch(rand)).numpy()).max() < parity
    assert np.abs(oc.decode(rand[:, :1]) - audio).max() > 1e-6  # the acoustic rows do matter


def test_streaming_step_graphs_reproduce_offline(exported):
    codec, oc, _ = exported
    parity, stream_tol = _tolerances(codec)
    fs = codec.frame_size
    wav = _audio(codec, 1.0, batch=1)[..., : 12 * fs]  # 12 frames = 24 steps: crosses the 7-step attention context
    codes = oc.encode(wav)
    assert min(distinct_codes(codes)) >= 3, distinct_codes(codes)
    latents = oc.encode_latents(wav)
    sizes = [1, 2, 3, 1, 4, 1]  # frames per chunk
    bounds = np.cumsum([0] + sizes)
    with oc.streaming(batch_size=1):
        stream_codes = np.concatenate([oc.encode(wav[..., a * fs:b * fs]) for a, b in zip(bounds, bounds[1:])], -1)
    np.testing.assert_array_equal(stream_codes, codes)
    with oc.streaming(batch_size=1):
        stream_z = np.concatenate([oc.encode_latents(wav[..., i * fs:(i + 1) * fs]) for i in range(12)], -1)
    assert np.abs(stream_z - latents).max() < 1e-5
    offline = oc.decode(codes)
    with oc.streaming(batch_size=1):
        stream = np.concatenate([oc.decode(codes[..., a:b]) for a, b in zip(bounds, bounds[1:])], -1)
    assert np.abs(stream - offline).max() < stream_tol
    torch_audio = codec.decode(_torch(codes)).numpy()
    assert np.abs(stream - torch_audio).max() < parity
    offline = oc.decode_latents(latents)
    with oc.streaming(batch_size=1):
        stream = np.concatenate([oc.decode_latents(latents[..., i:i + 1]) for i in range(12)], -1)
    assert np.abs(stream - offline).max() < stream_tol


def test_streaming_matches_torch_streaming_with_batch(exported):
    codec, oc, _ = exported
    fs = codec.frame_size
    wav = _audio(codec, 0.8, batch=2)[..., : 9 * fs]
    with codec.streaming(batch_size=2):
        ref = torch.cat([codec.encode(_torch(wav[..., i * fs:(i + 3) * fs])) for i in range(0, 9, 3)], -1).numpy()
    assert min(distinct_codes(ref)) >= 3, distinct_codes(ref)
    with oc.streaming(batch_size=2):
        got = np.concatenate([oc.encode(wav[..., i * fs:(i + 3) * fs]) for i in range(0, 9, 3)], -1)
    np.testing.assert_array_equal(got, ref)
    with oc.streaming(batch_size=2):  # a new block starts from the initial state again
        again = np.concatenate([oc.encode(wav[..., i * fs:(i + 1) * fs]) for i in range(9)], -1)
    np.testing.assert_array_equal(again, ref)


def test_runtime_imports_without_torch():
    code = ("import sys\nimport codec12.export.runtime\nfrom codec12.export import OnnxCodec\n"
            "assert OnnxCodec.__module__ == 'codec12.export.runtime'\n"
            "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
            "assert not bad, bad\nprint('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_bad_inputs_raise(exported):
    codec, oc, _ = exported
    fs, k = codec.frame_size, codec.num_codebooks
    wav = _audio(codec, 0.2, batch=1)
    cases = [
        (lambda: oc.encode(wav.astype(np.int16)), "floating point"),
        (lambda: oc.encode(wav[0]), "rank 2"),
        (lambda: oc.encode(np.zeros((1, codec.channels + 1, fs), np.float32)), "channels"),
        (lambda: oc.encode(np.zeros((1, codec.channels, 0), np.float32)), "empty"),
        (lambda: oc.encode(np.full((1, codec.channels, fs), np.nan, np.float32)), "NaN"),
        (lambda: oc.encode(torch.zeros(1, codec.channels, fs)), "numpy array"),
        (lambda: oc.encode(wav, num_codebooks=k + 1), "num_codebooks"),
        (lambda: oc.decode(np.zeros((1, k + 1, 2), np.int64)), "codebooks"),
        (lambda: oc.decode(np.zeros((1, k, 2), np.float32)), "integers"),
        (lambda: oc.decode(np.zeros((k, 2), np.int64)), "shape"),
        (lambda: oc.decode(np.concatenate([np.zeros((1, k - 1, 2), np.int64),
                                           np.full((1, 1, 2), codec.codebook_sizes[-1])], 1)), f"row {k - 1}"),
        (lambda: oc.decode(np.full((1, 1, 2), -1, np.int64)), "row 0"),
        (lambda: oc.decode_latents(np.zeros((1, codec.latent_dim + 1, 2), np.float32)), "latents"),
    ]
    for fn, match in cases:
        with pytest.raises(ValueError, match=match):
            fn()
    with oc.streaming(batch_size=1):
        with pytest.raises(ValueError, match="whole frames"):
            oc.encode(np.zeros((1, codec.channels, fs + 1), np.float32))
        with pytest.raises(ValueError, match="batch_size=1"):
            oc.encode(np.zeros((2, codec.channels, fs), np.float32))
        with pytest.raises(RuntimeError, match="already streaming"):
            with oc.streaming(batch_size=1):
                pass
    with pytest.raises(ValueError, match="batch_size"):
        with oc.streaming(batch_size=0):
            pass


def test_not_an_export_directory(tmp_path):
    with pytest.raises(ValueError, match="codec12_onnx.json"):
        OnnxCodec(tmp_path)
    (tmp_path / SIDECAR_NAME).write_text("{broken")
    with pytest.raises(ValueError, match="cannot read"):
        OnnxCodec(tmp_path)


def test_export_refuses_non_empty_directory(tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        export_onnx(tiny_codec(), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_cli_errors(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("x")
    assert main(["export", "onnx", str(tmp_path / "missing"), str(out)]) == 1
    assert "-f" in capsys.readouterr().err  # the non-empty directory is refused before loading anything
    assert main(["export", "onnx", str(tmp_path / "missing"), str(tmp_path / "o2")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("codec12 export: error:") and "missing" in err
    assert not (tmp_path / "o2").exists()


def _external_tensors(directory: Path) -> list[tuple[str, str, int, int]]:
    """(graph, location, offset, length) of every tensor the graphs in ``directory`` keep in external data; also
    checks that no tensor of EXTERNAL_MIN_BYTES or more stayed inside a graph."""
    sidecar = json.loads((directory / SIDECAR_NAME).read_text())
    out = []
    for name, graph in sidecar["graphs"].items():
        model = onnx.load(str(directory / graph["file"]), load_external_data=False)
        inline = [t for t in model.graph.initializer if t.data_location != onnx.TensorProto.EXTERNAL]
        inline += [a.t for n in model.graph.node if n.op_type == "Constant" for a in n.attribute if a.t.raw_data]
        assert max(len(t.raw_data) for t in inline) < EXTERNAL_MIN_BYTES, name
        for tensor in model.graph.initializer:
            if tensor.data_location == onnx.TensorProto.EXTERNAL:
                info = {e.key: e.value for e in tensor.external_data}
                out.append((name, info["location"], int(info["offset"]), int(info["length"])))
    return out


def test_weights_file_holds_each_tensor_once(exported):
    _, _, result = exported
    tensors = _external_tensors(result.directory)
    assert {location for _, location, _, _ in tensors} == {result.weights.name}
    assert result.sidecar["weights"]["file"] == result.weights.name
    assert {graph for graph, _, _, _ in tensors} == set(result.files)  # every graph reads the shared file
    data = result.weights.read_bytes()
    assert len(data) == result.sidecar["weights"]["bytes"]
    places = sorted({(offset, length) for _, _, offset, length in tensors})
    contents = [hashlib.sha256(data[offset:offset + length]).hexdigest() for offset, length in places]
    assert len(set(contents)) == len(contents)  # no content written twice
    assert all(offset % WEIGHTS_ALIGNMENT == 0 for offset, _ in places)
    assert all(a + n <= b for (a, n), (b, _) in zip(places, places[1:]))  # no overlaps
    assert len(data) == places[-1][0] + places[-1][1] <= sum(n for _, n in places) + WEIGHTS_ALIGNMENT * len(places)
    # Shared: the encoder's weights by its two graphs, the decoder's by the four decoder graphs, the semantic
    # codebook by the graphs that encode or decode codes.
    users: dict[tuple[int, int], set[str]] = {}
    for graph, _, offset, length in tensors:
        users.setdefault((offset, length), set()).add(graph)
    shared = {frozenset(u) for u in users.values()}
    assert {frozenset({"encoder", "encoder_step"}), frozenset({"encoder", "encoder_step", "decoder", "decoder_step"}),
            frozenset({"decoder", "decoder_step", "decoder_latents", "decoder_latents_step"})} <= shared
    assert len(tensors) > 2 * len(places)


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """A small codec whose weights outweigh its graphs' structure (3.7 M parameters, 15 MB), exported through the
    command line over a previous export: (codec, export directory, what the command printed)."""
    cfg = tiny_config()
    cfg = cfg.replace(name="tiny-wide", latent_dim=256, seanet=dataclasses.replace(cfg.seanet, dimension=256),
                      transformer=dataclasses.replace(cfg.transformer, d_model=256, num_heads=4, dim_feedforward=1024))
    torch.manual_seed(0)
    codec = Codec.from_config(cfg).eval()
    spread_quantizer(codec)
    root = tmp_path_factory.mktemp("wide")
    codec.save_pretrained(root / "model")
    out = root / "onnx"
    out.mkdir()  # a previous export's weights and sidecar, and a file of someone else's
    (out / "weights-0123456789abcdef.onnx_data").write_bytes(b"old")
    (out / SIDECAR_NAME).write_text(json.dumps({"weights": {"file": "weights-0123456789abcdef.onnx_data"}}))
    (out / "notes.txt").write_text("keep")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["export", "onnx", str(root / "model"), str(out), "-f"]) == 0
    return codec, out, printed.getvalue()


def test_cli_prints_each_graph_and_the_total_size(wide):
    _, out, printed = wide
    lines = printed.splitlines()
    assert [line.split(":")[0] for line in lines[:-1]] == [f"{name}.onnx" for name in GRAPH_NAMES]
    assert all(float(line.split(": ")[1].removesuffix(" s")) > 0 for line in lines[:-1])
    total = sum(p.stat().st_size for p in out.iterdir() if p.name != "notes.txt")
    assert lines[-1].endswith(f"{total / 1e6:.1f} MB in all"), lines[-1]


def test_overwriting_an_export_replaces_its_weights_file(wide):
    _, out, _ = wide
    sidecar = json.loads((out / SIDECAR_NAME).read_text())
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{name}.onnx" for name in GRAPH_NAMES] + [sidecar["weights"]["file"], SIDECAR_NAME, "notes.txt"])


def test_export_size_is_the_weights_once(wide):
    """Every graph used to carry its own copy of its side's weights (3x the parameters here); now the directory is
    the parameters once plus the graphs' structure (measured: weights file 0.999x, everything 1.065x)."""
    codec, out, _ = wide
    params = sum(p.numel() * p.element_size() for p in codec.folded().parameters())
    assert params > 14e6
    sidecar = json.loads((out / SIDECAR_NAME).read_text())
    assert sidecar["weights"]["bytes"] < 1.02 * params
    assert sum(p.stat().st_size for p in out.iterdir() if p.name != "notes.txt") < 1.1 * params
    oc = OnnxCodec(out, num_threads=1)  # and the graphs run
    wav = _audio(codec, 0.5, batch=1)[..., : 6 * codec.frame_size]
    codes = oc.encode(wav)
    np.testing.assert_array_equal(codes, codec.encode(_torch(wav)).numpy())
    assert np.abs(oc.decode(codes) - codec.decode(_torch(codes)).numpy()).max() < 1e-4
    with oc.streaming(batch_size=1):
        np.testing.assert_array_equal(np.concatenate([oc.encode(c) for c in np.split(wav, 3, axis=-1)], -1), codes)


def test_reads_format_1_exports_and_refuses_unknown_formats(wide, tmp_path):
    codec, out, _ = wide
    old = tmp_path / "v1"
    old.mkdir()
    for path in out.glob("*.onnx"):  # format 1: each graph holds its own weights
        onnx.save_model(onnx.load(str(path)), str(old / path.name))
    sidecar = json.loads((out / SIDECAR_NAME).read_text())
    old_sidecar = {key: value for key, value in sidecar.items() if key not in ("weights", "dtype", "code_agreement")}
    (old / SIDECAR_NAME).write_text(json.dumps({**old_sidecar, "format_version": 1}))
    v1, oc = OnnxCodec(old, num_threads=1), OnnxCodec(out, num_threads=1)
    wav = _audio(codec, 0.5, batch=1)
    codes = oc.encode(wav)
    assert min(distinct_codes(codes)) >= 3
    np.testing.assert_array_equal(v1.encode(wav), codes)
    np.testing.assert_array_equal(v1.decode(codes), oc.decode(codes))
    assert v1.dtype == "float32" and v1.code_agreement is None and v1.fit_for_tokenize  # before dtypes existed
    (old / SIDECAR_NAME).write_text(json.dumps({**sidecar, "format_version": 4}))
    with pytest.raises(ValueError, match="format_version 4 is not supported.*export the model again"):
        OnnxCodec(old)


def test_a_missing_or_cut_weights_file_is_named(wide, tmp_path):
    _, out, _ = wide
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    name = json.loads((out / SIDECAR_NAME).read_text())["weights"]["file"]
    weights = copy / name
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(ValueError, match=rf"{name}: .* bytes, but codec12_onnx.json says"):
        OnnxCodec(copy)
    weights.unlink()
    with pytest.raises(ValueError, match=rf"{name}: missing"):
        OnnxCodec(copy)


# ---- float16 and int8 graphs

# The stacks whose weighted convolutions and matrix products change precision (onnx node name prefixes); the
# quantizer's nodes carry no scope, and the inverse STFT stays float32.
STACKS = ("/encoder/", "/encoder_transformer/", "/downsample/", "/upsample/", "/decoder_transformer/", "/decoder/")
PRECISION_TOPOLOGY = TOPOLOGIES["tiny-16k-istft-harmonic-shared"]  # the bundled model's
# dtype: (latents, audio) largest differences from the float32 PyTorch codec allowed, just above those measured on
# three batches of test audio: float16 4.2e-4 and 3.3e-5 (float16-rounded weights; the CPU computes in float32),
# int8 1.6e-3 and 1.5e-3 (also between a stream and the whole: each call quantizes with its own range).
PRECISION_TOLERANCES = {"float16": (6e-4, 5e-5), "int8": (2.5e-3, 2e-3)}
_ONNX_TYPES = {"float32": onnx.TensorProto.FLOAT, "float64": onnx.TensorProto.DOUBLE,
               "int64": onnx.TensorProto.INT64, "bool": onnx.TensorProto.BOOL}


def _check_clips(codec: Codec) -> list[np.ndarray]:
    """Two 5 s clips [C, T]: 126 frames, above TOKENIZE_MIN_FRAMES."""
    return [speechlike(5.0, codec.sample_rate, seed=10 + s).T for s in range(2)]


@pytest.fixture(scope="module", params=["float16", "int8"])
def reduced(request, tmp_path_factory):
    """(codec, OnnxCodec, OnnxExport) of a float16 or int8 export, its code agreement measured at export."""
    codec = tiny_codec(seed=1, **PRECISION_TOPOLOGY)
    out = tmp_path_factory.mktemp(request.param) / "onnx"
    result = export_onnx(codec, out, dtype=request.param, check_audio=_check_clips(codec))
    return codec, OnnxCodec(out, num_threads=1), result


def test_reduced_precision_changes_only_the_stacks_weighted_layers(reduced):
    _, oc, result = reduced
    dtype = result.sidecar["dtype"]
    assert oc.dtype == dtype and f"dtype={dtype!r}" in repr(oc)
    for name, graph in result.sidecar["graphs"].items():
        model = onnx.load(str(result.files[name]), load_external_data=False)
        onnx.checker.check_model(str(result.files[name]), full_check=True)
        for value, spec in zip([*model.graph.input, *model.graph.output], graph["inputs"] + graph["outputs"]):
            assert value.type.tensor_type.elem_type == _ONNX_TYPES[spec["dtype"]], (name, spec)  # as float32
        halves = {t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16}
        floats = {t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
        if dtype == "float16":
            changed = [n for n in model.graph.node if set(n.input[1:]) & halves]
        else:
            changed = [n for n in model.graph.node if n.op_type == "MatMulInteger"]
        changed_outputs = {x for n in changed for x in n.output} | {x for n in model.graph.node for x in n.output
                                                                     if n.op_type == "Cast" and x.endswith(".float16")}
        counts = {}
        for node in changed:
            counts[node.op_type.removesuffix("Integer")] = counts.get(node.op_type.removesuffix("Integer"), 0) + 1
        assert counts == graph["reduced"] and counts.get("MatMul", 0) >= 8, (name, counts)
        assert all(n.name.startswith(STACKS) and not n.name.startswith("/decoder/istft/") for n in changed), name
        # every weighted conv and product of the dtype's kinds left in float32 is outside the stacks, or the iSTFT
        all_ops = ("Conv", "ConvTranspose", "MatMul", "Gemm")
        weighted = [n for n in model.graph.node if n.op_type in all_ops and n.input[1:2] and n.input[1] in floats]
        ops = all_ops if dtype == "float16" else ("MatMul",)
        kept = [n.name for n in weighted if n.op_type in ops]
        assert all(not n.startswith(STACKS) or n.startswith("/decoder/istft/") for n in kept), (name, kept)
        if name.startswith("decoder"):
            assert "/decoder/istft/ConvTranspose" in [n.name for n in weighted]
        if name.startswith("encoder"):  # the nearest-entry distances: one float32 product per codebook
            nearest = [n for n in model.graph.node if n.name.startswith("/MatMul")]
            assert len(nearest) == len(oc.codebook_sizes)
            assert all(n.op_type == "MatMul" and not any(x in changed_outputs for x in n.input) for n in nearest)


def test_reduced_precision_is_close_to_float32(reduced):
    codec, oc, result = reduced
    latent_tol, audio_tol = PRECISION_TOLERANCES[result.sidecar["dtype"]]
    same, frames = 0, 0
    for seed in range(3):
        wav = np.stack([speechlike(0.93, codec.sample_rate, seed=10 * seed + s).T for s in range(3)])
        ref = codec.encode(_torch(wav)).numpy()
        codes = oc.encode(wav)
        same, frames = same + (codes == ref).sum(axis=(0, 2)), frames + ref.shape[0] * ref.shape[2]
        z, z_ref = oc.encode_latents(wav), codec.encode_latents(_torch(wav)).numpy()
        assert 1e-6 < np.abs(z - z_ref).max() < latent_tol  # changed, a little
        audio, audio_ref = oc.decode(ref), codec.decode(_torch(ref)).numpy()
        assert 1e-6 < np.abs(audio - audio_ref).max() < audio_tol
        assert np.abs(oc.decode_latents(z_ref) - codec.decode_latents(_torch(z_ref)).numpy()).max() < audio_tol
    assert min(same / frames) >= 0.95, same / frames  # measured: at most 1 of 36 frames differs in a row


def test_reduced_precision_streams(reduced):
    _, oc, result = reduced
    latent_tol, audio_tol = PRECISION_TOLERANCES[result.sidecar["dtype"]]
    fs = oc.frame_size
    wav = np.stack([speechlike(1.0, oc.sample_rate, seed=5).T])[..., : 12 * fs]
    codes, latents = oc.encode(wav), oc.encode_latents(wav)
    bounds = np.cumsum([0, 1, 2, 3, 1, 4, 1])
    with oc.streaming(batch_size=1):
        stream_codes = np.concatenate([oc.encode(wav[..., a * fs:b * fs]) for a, b in zip(bounds, bounds[1:])], -1)
    with oc.streaming(batch_size=1):
        stream_z = np.concatenate([oc.encode_latents(wav[..., i * fs:(i + 1) * fs]) for i in range(12)], -1)
    with oc.streaming(batch_size=1):
        stream = np.concatenate([oc.decode(codes[..., a:b]) for a, b in zip(bounds, bounds[1:])], -1)
    with oc.streaming(batch_size=1):
        stream_l = np.concatenate([oc.decode_latents(latents[..., i:i + 1]) for i in range(12)], -1)
    if result.sidecar["dtype"] == "float16":  # float32 arithmetic on CPU: streaming reproduces offline as float32
        np.testing.assert_array_equal(stream_codes, codes)
        latent_tol, audio_tol = 1e-5, 1e-5
    else:
        assert (stream_codes == codes).mean() >= 0.95
    assert np.abs(stream_z - latents).max() < latent_tol
    assert np.abs(stream - oc.decode(codes)).max() < audio_tol
    assert np.abs(stream_l - oc.decode_latents(latents)).max() < audio_tol


def test_reduced_weights_are_shared_once(reduced):
    _, _, result = reduced
    tensors = _external_tensors(result.directory)  # (also: nothing large left inside a graph)
    users: dict[tuple[int, int], set[str]] = {}
    for graph, location, offset, length in tensors:
        assert location == result.weights.name
        users.setdefault((offset, length), set()).add(graph)
    assert frozenset({"encoder", "encoder_step"}) in {frozenset(u) for u in users.values()}
    encoder = onnx.load(str(result.files["encoder"]), load_external_data=False)
    low = onnx.TensorProto.FLOAT16 if result.sidecar["dtype"] == "float16" else onnx.TensorProto.INT8
    places = {(int(e["offset"]), int(e["length"])) for t in encoder.graph.initializer if t.data_type == low
              for e in [{x.key: x.value for x in t.external_data}] if e}
    assert places and all(users[place] == {"encoder", "encoder_step"} for place in places)


def test_fitness_for_tokenize(reduced, tmp_path):
    codec, oc, result = reduced
    agreement = result.sidecar["code_agreement"]
    clips = _check_clips(codec)
    assert agreement["clips"] == 2 and agreement["frames"] == 126 >= TOKENIZE_MIN_FRAMES
    assert re.fullmatch(r"onnxruntime [0-9.]+ CPUExecutionProvider", agreement["runtime"])
    assert agreement == measure_code_agreement(codec, oc, clips) and oc.code_agreement == agreement
    assert min(agreement["rows"]) >= 0.95 and oc.fit_for_tokenize and oc.unfit_reason is None
    oc.check_fit_for_tokenize()

    copy = tmp_path / "copy"
    shutil.copytree(result.directory, copy)

    def with_agreement(record, dtype: str = result.sidecar["dtype"]) -> OnnxCodec:
        sidecar = json.loads((copy / SIDECAR_NAME).read_text())
        (copy / SIDECAR_NAME).write_text(json.dumps({**sidecar, "code_agreement": record, "dtype": dtype}))
        return OnnxCodec(copy, num_threads=1)

    cases = [
        ({**agreement, "rows": [0.9, *agreement["rows"][1:]]},
         r"semantic codes \(row 0\) equal the float32 codec's on 90.0% of 126 frames, below the 95% required"),
        ({**agreement, "frames": 50}, "compared with the float32 codec's on 50 frames only"),
        (None, "were not compared with the float32 codec's at export"),
        ({"rows": []}, "malformed"),
    ]
    for record, reason in cases:
        unfit = with_agreement(record)
        assert not unfit.fit_for_tokenize and re.search(reason, unfit.unfit_reason), unfit.unfit_reason
        with pytest.raises(UnfitForTokenize, match=rf"{re.escape(str(copy))}: not fit to tokenize with: .*{reason}"):
            unfit.check_fit_for_tokenize()
    assert with_agreement({**agreement, "rows": [TOKENIZE_MIN_AGREEMENT, *agreement["rows"][1:]]}).fit_for_tokenize
    # float32 graphs give PyTorch's codes (the parity tests): fit unmeasured, but a measured shortfall still counts
    assert with_agreement(None, "float32").fit_for_tokenize
    assert not with_agreement({**agreement, "rows": [0.9, *agreement["rows"][1:]]}, "float32").fit_for_tokenize

    # A damaged graph: the largest weight that only the encoder graphs read, zeroed.
    weights = copy / result.weights.name
    users: dict[tuple[int, int], set[str]] = {}
    for graph, _, offset, length in _external_tensors(copy):
        users.setdefault((offset, length), set()).add(graph)
    offset, length = max((p for p, u in users.items() if u == {"encoder", "encoder_step"}), key=lambda p: p[1])
    data = bytearray(weights.read_bytes())
    data[offset:offset + length] = bytes(length)
    weights.write_bytes(bytes(data))
    damaged = measure_code_agreement(codec, OnnxCodec(copy, num_threads=1), clips)
    assert damaged["frames"] == 126 and damaged["rows"][0] < 0.5, damaged
    with pytest.raises(UnfitForTokenize, match=r"semantic codes \(row 0\)"):
        with_agreement(damaged).check_fit_for_tokenize()
    with pytest.raises(ValueError, match="dtype 'bfloat16' is not one of float32, float16, int8"):
        with_agreement(agreement, "bfloat16")


def test_float32_exports_are_fit_and_measured_by_the_command(tmp_path, capsys):
    codec = tiny_codec(seed=1)
    codec.save_pretrained(tmp_path / "model")
    clips = tmp_path / "clips"
    clips.mkdir()
    for i, clip in enumerate(_check_clips(codec)):
        sf.write(str(clips / f"clip{i}.wav"), clip.T, codec.sample_rate)
    out = tmp_path / "onnx"
    assert main(["export", "onnx", str(tmp_path / "model"), str(out), "--check-audio", str(clips)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[-2] == ("codes equal to float32's on 2 clips (10.0 s, 126 frames), per row: "
                           "1.000 1.000 1.000 1.000; every row: 1.000")
    assert printed[-1] == "fit to tokenize with"
    oc = OnnxCodec(out)
    assert oc.dtype == "float32" and oc.code_agreement["rows"] == [1.0] * codec.num_codebooks and oc.fit_for_tokenize


def test_precision_bad_input(tmp_path, capsys):
    codec = tiny_codec()
    for kwargs, match in [
        (dict(dtype="bfloat16"), "dtype must be one of float32, float16, int8, got 'bfloat16'"),
        (dict(check_audio=np.zeros((1, 1600), np.float32)), "check_audio must be a non-empty list"),
        (dict(check_audio=[]), "check_audio must be a non-empty list"),
        (dict(check_audio=[np.zeros(1600, np.float32)]), r"check_audio: clip 0 must be a \[C, T\] array"),
        (dict(check_audio=[np.zeros((2, 1600), np.float32)]), "check_audio: clip 0: .*channels"),
        (dict(check_audio=[np.full((1, 1600), np.nan, np.float32)]), "check_audio: clip 0: .*NaN"),
    ]:
        with pytest.raises(ValueError, match=match):
            export_onnx(codec, tmp_path / "out", **kwargs)
        assert not (tmp_path / "out").exists()
    parser_dtypes = next(a.choices for a in _export_onnx_parser()._actions if a.dest == "dtype")
    assert tuple(parser_dtypes) == DTYPES
    assert main(["export", "onnx", "c12-tiny-16k", str(tmp_path / "out"), "--check-audio",
                 str(tmp_path / "missing")]) == 1
    assert "--check-audio" in capsys.readouterr().err and not (tmp_path / "out").exists()


def _export_onnx_parser():
    from codec12.cli import build_parser

    export = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices["export"]
    return next(a for a in export._actions if isinstance(a, argparse._SubParsersAction)).choices["onnx"]


# ---- full-size presets (random weights), real-length audio

@pytest.mark.slow
@pytest.mark.parametrize("preset", ["c12-tiny-16k", "c12-fsq-24k", "c12-mimi-24k"])
def test_preset_parity_10s(preset, tmp_path):
    torch.manual_seed(0)
    codec = Codec.from_config(CodecConfig.from_preset(preset)).eval()
    export_onnx(codec, tmp_path / "onnx")
    oc = OnnxCodec(tmp_path / "onnx")
    fs = codec.frame_size
    wav = _audio(codec, 10.5, batch=1)
    ref = codec.encode(_torch(wav)).numpy()
    codes = oc.encode(wav)
    frame_match = (codes == ref).all(axis=1).mean()
    print(f"{preset}: {frame_match:.4f} of frames have identical codes; rows: {(codes == ref).mean(axis=(0, 2))}")
    assert frame_match == 1.0
    audio = oc.decode(ref)
    z = codec.encode_latents(_torch(wav)).detach().numpy()
    diffs = {"decode": np.abs(audio - codec.decode(_torch(ref)).numpy()).max(),
             "decode_latents": np.abs(oc.decode_latents(z) - codec.decode_latents(_torch(z)).detach().numpy()).max(),
             "latents": np.abs(oc.encode_latents(wav) - z).max()}
    print(f"{preset}: max abs diff vs PyTorch {diffs}")
    assert max(diffs.values()) <= 1e-3
    n = ref.shape[-1] - 1  # whole frames only
    with oc.streaming(batch_size=1):
        stream_codes = np.concatenate([oc.encode(wav[..., i * fs:(i + 1) * fs]) for i in range(n)], -1)
    np.testing.assert_array_equal(stream_codes, codes[..., :n])
    with oc.streaming(batch_size=1):
        stream = np.concatenate([oc.decode(ref[..., i:i + 1]) for i in range(ref.shape[-1])], -1)
    print(f"{preset}: streaming vs offline audio max abs diff {np.abs(stream - audio).max():.2e}")
    assert np.abs(stream - audio).max() <= 1e-3
