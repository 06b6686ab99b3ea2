"""codec12 tokenize through the ONNX export gives PyTorch's codes; the memory budget decides the batches, the
streaming chunk and the files read block by block, by the model's size."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from codec12 import Codec, CodecConfig, load_audio
from codec12.cli import main
from codec12.data import plan as plan_module
from codec12.data.dataset_format import META_NAME, read_meta, read_tokenized
from codec12.data.detokenize import detokenize_dataset
from codec12.data.inputs import discover_inputs
from codec12.data.plan import encoder_footprint, load_cost, plan_work
from codec12.data.tokenize import TokenizeOptions, tokenize_dataset
from codec12.export import OnnxCodec, export_onnx
from codec12.export.runtime import SIDECAR_NAME
from tests.conftest import distinct_codes, speechlike, tiny_codec

MiB = 2**20
# (name, seconds, sample rate, channels): batched, read whole and streamed from memory, read block by block.
FILES = [("short.wav", 0.3, 16000, 1), ("mid.flac", 1.7, 44100, 1), ("stereo.wav", 1.3, 24000, 2),
         ("long.wav", 3.3, 16000, 1), ("long2.flac", 2.9, 22050, 1)]
# Batches of at most 1 s (so mid and stereo are streamed from memory), long files read block by block.
OPTIONS = dict(max_batch_seconds=1.0, long_file_seconds=2.5, chunk_seconds=0.4, latents=True, progress=False)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("model")
    tiny_codec(seed=0).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def codec(model_dir):
    return Codec.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    for i, (name, seconds, rate, channels) in enumerate(FILES):
        sf.write(str(root / name), speechlike(seconds, rate, seed=i, channels=channels), rate)
    return root


@pytest.fixture(scope="module")
def export_dir(codec, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "onnx"
    export_onnx(codec, out)
    return out


def _rows(out: Path) -> dict[str, dict]:
    return {r["id"]: r for r in read_tokenized(out).to_pylist()}


def test_onnx_runtime_gives_the_codes_of_pytorch(codec, data, export_dir, tmp_path):
    inputs = discover_inputs(data)
    ref = tokenize_dataset(inputs, tmp_path / "torch", codec, TokenizeOptions(**OPTIONS))
    got = tokenize_dataset(inputs, tmp_path / "onnx", OnnxCodec(export_dir, num_threads=1),
                           TokenizeOptions(**OPTIONS), model_source=str(export_dir))
    assert (ref.ok, got.ok) == (len(FILES), len(FILES))
    assert ref.streamed == got.streamed == 4  # all but "short": from memory (mid, stereo) and from the file (long*)
    torch_rows, onnx_rows = _rows(tmp_path / "torch"), _rows(tmp_path / "onnx")
    every = np.concatenate([np.array(r["codes"]) for r in onnx_rows.values()], axis=-1)[None]
    assert min(distinct_codes(every)) >= 8, distinct_codes(every)  # codes that vary, in every row
    for name, _, rate, _ in FILES:
        uid = Path(name).stem
        codes = np.array(onnx_rows[uid]["codes"])
        np.testing.assert_array_equal(codes, np.array(torch_rows[uid]["codes"]), err_msg=name)
        assert codes.shape[1] == math.ceil(onnx_rows[uid]["num_samples"] / codec.frame_size)
        np.testing.assert_allclose(np.array(onnx_rows[uid]["latents"], np.float32),
                                   np.array(torch_rows[uid]["latents"], np.float32), atol=2e-3, rtol=2e-3)
        if rate == codec.sample_rate:  # no resampling: equal to encoding the whole file offline, too
            wav = load_audio(data / name, codec.sample_rate, codec.channels)
            np.testing.assert_array_equal(codes, codec.encode(wav[None])[0].numpy(), err_msg=name)
    meta, torch_meta = read_meta(tmp_path / "onnx"), read_meta(tmp_path / "torch")
    assert (meta["runtime"], torch_meta["runtime"]) == ("onnx", "torch")
    for key in ("config_hash", "weights_hash", "model", "dtype", "codebook_sizes", "sample_rate"):
        assert meta[key] == torch_meta[key], key
    # The dataset decodes with the model the export was made from, and a run of the other runtime is refused.
    assert detokenize_dataset(tmp_path / "onnx", tmp_path / "wavs", codec, progress=False).written == len(FILES)
    with pytest.raises(ValueError, match="runtime: 'onnx' there, 'torch' now"):
        tokenize_dataset(inputs, tmp_path / "onnx", codec, TokenizeOptions(**OPTIONS))


def test_cli_runtime_onnx_from_a_model_or_an_export(model_dir, data, export_dir, codec, tmp_path, capsys):
    common = ["--quiet", "--workers", "0", "--device", "cpu", "--latents", "--max-batch-seconds", "1",
              "--long-file-seconds", "2.5", "--chunk-seconds", "0.4"]
    assert main(["tokenize", str(data), "--out", str(tmp_path / "t"), "--model", str(model_dir), *common]) == 0
    # A model is exported to a temporary directory first; an export directory is used as it is.
    assert main(["tokenize", str(data), "--out", str(tmp_path / "m"), "--model", str(model_dir), "--runtime", "onnx",
                 *common]) == 0
    assert main(["tokenize", str(data), "--out", str(tmp_path / "e"), "--model", str(export_dir), "--runtime",
                 "onnx", *common]) == 0
    ref = _rows(tmp_path / "t")
    for out in ("m", "e"):
        rows = _rows(tmp_path / out)
        assert sorted(rows) == sorted(ref)
        for uid in ref:
            np.testing.assert_array_equal(np.array(rows[uid]["codes"]), np.array(ref[uid]["codes"]), err_msg=uid)
        assert read_meta(tmp_path / out)["runtime"] == "onnx"
    capsys.readouterr()
    # Detokenize finds the model of a dataset made from a model directory; through an export it asks for it.
    assert main(["detokenize", str(tmp_path / "m"), "--out", str(tmp_path / "w1"), "--quiet", "--device", "cpu"]) == 0
    assert main(["detokenize", str(tmp_path / "e"), "--out", str(tmp_path / "w2"), "--quiet", "--device", "cpu"]) == 1
    assert "pass --model with the model it was exported from" in capsys.readouterr().err
    assert main(["detokenize", str(tmp_path / "e"), "--out", str(tmp_path / "w2"), "--quiet", "--device", "cpu",
                 "--model", str(model_dir)]) == 0
    assert len(list((tmp_path / "w2").glob("*.wav"))) == len(FILES)
    # An export named as a PyTorch model, and onnxruntime asked for a GPU it cannot use.
    assert main(["tokenize", str(data), "--out", str(tmp_path / "x"), "--model", str(export_dir), "--quiet"]) == 1
    assert "is an ONNX export: tokenize through it with --runtime onnx" in capsys.readouterr().err
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        assert main(["tokenize", str(data), "--out", str(tmp_path / "x"), "--model", str(export_dir), "--runtime",
                     "onnx", "--device", "cuda", "--quiet"]) == 1
        assert "runs on the CPU only" in capsys.readouterr().err


def test_an_export_that_does_not_name_its_weights_is_refused(export_dir, data, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(export_dir, old)
    sidecar = json.loads((old / SIDECAR_NAME).read_text())
    del sidecar["weights_hash"]  # as exports made before it was recorded
    (old / SIDECAR_NAME).write_text(json.dumps(sidecar))
    with pytest.raises(ValueError, match="does not record the hash of its weights"):
        tokenize_dataset(discover_inputs(data), tmp_path / "out", OnnxCodec(old), TokenizeOptions(progress=False))
    assert not (tmp_path / "out" / META_NAME).exists()


def test_the_plan_shrinks_with_the_budget_and_for_bigger_models():
    tiny, mimi = CodecConfig.from_preset("c12-tiny-16k"), CodecConfig.from_preset("c12-mimi-24k")
    budgets = [2048, 512, 128, 32]
    for config in (tiny, mimi):
        for device in ("cpu", "cuda"):
            plans = [plan_work(config, b * MiB, device_type=device) for b in budgets]
            for key in ("chunk_seconds", "batch_seconds", "load_bytes", "pool_bytes"):
                values = [getattr(p, key) for p in plans]
                assert values == sorted(values, reverse=True) and values[-1] < values[0], (key, values)
            for p, b in zip(plans, budgets):  # whole frames, and within the activations' share of the budget
                assert p.chunk_seconds * config.frame_rate == pytest.approx(round(p.chunk_seconds * 12.5))
                assert encoder_footprint(config).encode_bytes(p.chunk_seconds, "streaming") <= b * MiB / 2
    for b in (64, 512):  # at one budget, a bigger model works on less audio at once
        small, big = (plan_work(c, b * MiB, device_type="cuda") for c in (tiny, mimi))
        assert big.chunk_seconds < small.chunk_seconds and big.batch_seconds < small.batch_seconds
    # On a CPU, batches stop at what encodes fastest (there, the size of the widest activation), within any budget.
    assert plan_work(mimi, 8192 * MiB).batch_seconds < plan_work(tiny, 8192 * MiB).batch_seconds < 60
    assert plan_work(tiny, 8192 * MiB, device_type="cuda").batch_seconds == 160
    # The exported offline graph attends over its whole input: long batches cost it more than PyTorch's blocks.
    footprint = encoder_footprint(mimi)
    assert footprint.encode_bytes(600, "full") > 2 * footprint.encode_bytes(600, "blocked")
    assert plan_work(mimi, 8192 * MiB, runtime="onnx", device_type="cuda").batch_seconds < \
        plan_work(mimi, 8192 * MiB, device_type="cuda").batch_seconds
    # The user's caps only ever lower the plan.
    capped = plan_work(tiny, 512 * MiB, max_batch_seconds=3.0, chunk_seconds=0.5)
    assert (capped.batch_seconds, capped.chunk_seconds) == (3.0, 0.48)


def test_a_small_budget_streams_what_a_default_one_batches(codec, tmp_path, monkeypatch):
    """Under a 16 MiB budget a 6.5 s file is longer than a batch (streamed from memory) and a 10 s one too big to
    read whole (streamed from the file); by default both are batched. The codes are the same."""
    data = tmp_path / "data"
    data.mkdir()
    for i, seconds in enumerate((0.7, 6.5, 10.0)):
        sf.write(str(data / f"f{i}.wav"), speechlike(seconds, 16000, seed=i), 16000)
    inputs = discover_inputs(data)
    default = tokenize_dataset(inputs, tmp_path / "default", codec, TokenizeOptions(progress=False))
    assert (default.ok, default.streamed) == (3, 0)
    monkeypatch.setattr(plan_module, "resident_bytes", lambda: 300 * MiB)  # what the process holds, made steady
    small = tokenize_dataset(inputs, tmp_path / "small", codec, TokenizeOptions(progress=False, max_memory_mb=316))
    plan = small.plan
    assert plan.batch_seconds < 6.5 and load_cost(6.5, 16000, 1, 16000, 1) <= plan.load_bytes < \
        load_cost(10.0, 16000, 1, 16000, 1)
    assert (small.ok, small.streamed) == (3, 2)
    assert set(small.timings) == {"read", "encode", "write"} and small.timings["encode"] > 0
    rows, ref = _rows(tmp_path / "small"), _rows(tmp_path / "default")
    for uid, row in rows.items():
        codes = np.array(row["codes"])
        np.testing.assert_array_equal(codes, np.array(ref[uid]["codes"]), err_msg=uid)
        wav = load_audio(data / f"{uid}.wav", codec.sample_rate)
        np.testing.assert_array_equal(codes, codec.encode(wav[None])[0].numpy(), err_msg=uid)
    # A budget the process already fills is refused before anything is written.
    with pytest.raises(ValueError, match="already holds 300 MiB"):
        tokenize_dataset(inputs, tmp_path / "none", codec, TokenizeOptions(progress=False, max_memory_mb=310))
    assert not (tmp_path / "none").exists()


def test_an_export_not_shown_fit_to_tokenize_is_refused(codec, data, tmp_path):
    # An int8 export whose codes were never compared with float32's (no --check-audio) is unfit: refused before any
    # file is read or any metadata written.
    out = tmp_path / "int8"
    export_onnx(codec, out, dtype="int8")
    assert OnnxCodec(out).dtype == "int8" and not OnnxCodec(out).fit_for_tokenize
    with pytest.raises(ValueError, match="tokeniz"):
        tokenize_dataset(discover_inputs(data), tmp_path / "ds", OnnxCodec(out), TokenizeOptions(progress=False))
    assert not (tmp_path / "ds" / META_NAME).exists()
