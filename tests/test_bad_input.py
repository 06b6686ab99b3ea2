"""Hostile and damaged input: each case ends in a one-line error naming the file and the reason (exit status 1,
no traceback) or in the documented recovery, in bounded memory; and one bad item never stops a batch job.

Cases that would allocate gigabytes if their check were missing run in a child process under an address-space
limit, so that a regression fails the test instead of exhausting the machine.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

from codec12 import Codec, load_audio
from codec12.cli import main
from codec12.data.blocks import iter_audio_blocks
from codec12.data.dataset_format import META_NAME, failed_ids, read_meta, read_tokenized, shard_paths
from codec12.data.detokenize import detokenize_dataset
from codec12.data.inputs import id_problem
from codec12.data.tokenize import TokenizeOptions, tokenize_dataset
from codec12.export.container import read_c12, write_c12
from codec12.train import checkpoint as ckpt
from tests.conftest import speechlike, tiny_codec

ROOT = Path(__file__).resolve().parents[1]
# Extra address space a child process may map beyond what it holds after its imports.
CHILD_HEADROOM = 1 << 30


def run_limited(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``code`` in a child Python (one thread) whose address space may grow by CHILD_HEADROOM after imports;
    ``code`` starts after ``limit()`` is called."""
    prelude = textwrap.dedent(f"""
        import resource
        import torch
        import codec12.audio, codec12.codec, codec12.data.blocks  # noqa: F401

        def limit():
            with open("/proc/self/status") as f:
                size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
            resource.setrlimit(resource.RLIMIT_AS, (size + {CHILD_HEADROOM}, resource.RLIM_INFINITY))
        """)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def write_audio(path: Path, seconds: float, rate: int, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), speechlike(seconds, rate), rate, **kwargs)
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model")
    tiny_codec(seed=0).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def codec(model_dir) -> Codec:
    return Codec.from_pretrained(model_dir)


def cli(capsys, *args) -> tuple[int, str]:
    """Run the CLI in this process: (exit status, stderr). An exception escaping main fails the test, as a
    traceback would."""
    rc = main([str(a) for a in args])
    return rc, capsys.readouterr().err


# ---------------------------------------------------------------- 1. odd sample rates
def test_odd_sample_rates_resample_in_bounded_memory(tmp_path):
    """torchaudio's kernel for 44101 -> 16000 Hz alone is ~10 GB, 999983 Hz ~64 GB: read in < 1 GB extra now."""
    rates = (44101, 96001, 999983)
    for rate in rates:
        sf.write(str(tmp_path / f"r{rate}.wav"), speechlike(22000 / rate, rate), rate)  # 22000 samples, 44 KB
    result = run_limited(f"""
        from codec12.audio import load_audio
        from codec12.data.blocks import iter_audio_blocks
        limit()
        for rate in {rates}:
            path = "{tmp_path}/r%d.wav" % rate
            whole = load_audio(path, 16000)
            blocks = torch.cat(list(iter_audio_blocks(path, 16000, 1, 0.5)), dim=-1)
            print(rate, whole.shape[-1], bool(torch.equal(whole, blocks)), float(whole.abs().max()))
        """)
    assert result.returncode == 0, result.stderr[-2000:]
    for line, rate in zip(result.stdout.splitlines(), rates):
        got_rate, length, same, peak = line.split()
        assert int(got_rate) == rate and int(length) == math.ceil(22000 * 16000 / rate)
        assert same == "True" and 0.05 < float(peak) < 1.0  # the signal survived, block-wise == whole


def test_per_sample_resampling_is_torchaudios_filter(monkeypatch):
    """The per-sample path evaluates torchaudio's windowed sinc exactly: within 1e-6 of torchaudio run in float64
    (torchaudio's float32 path rounds the filter phase itself, to ~1e-4 at large reduced rates)."""
    import codec12.audio as audio

    x = torch.from_numpy(speechlike(0.5, 997, channels=2).T.copy())
    common = torch.from_numpy(speechlike(0.2, 44100).T.copy())
    assert torch.equal(audio.resample(common, 44100, 16000), AF.resample(common, 44100, 16000))  # unchanged
    monkeypatch.setattr(audio, "_MAX_KERNEL_TAPS", 0)  # every pair through the per-sample path
    for orig, new in ((997, 1009), (1009, 997), (44100, 16000), (22050, 24000), (8000, 16000)):
        y = audio.resample(x, orig, new)
        reference = AF.resample(x.double(), orig, new)
        assert y.shape == reference.shape and y.dtype == torch.float32
        assert (y - reference).abs().max() < 1e-6, (orig, new)


def test_common_rates_resample_with_a_kernel_built_once_and_torchaudios_result():
    import codec12.audio as audio

    audio._resampler.cache_clear()
    for orig, new in ((44100, 16000), (48000, 24000), (22050, 16000), (8000, 16000)):
        for channels in (1, 2):
            x = torch.from_numpy(speechlike(0.3, orig, seed=channels, channels=channels).T.copy())
            assert torch.equal(audio.resample(x, orig, new), AF.resample(x, orig, new)), (orig, new, channels)
    info = audio._resampler.cache_info()
    assert (info.misses, info.hits) == (4, 4)  # one kernel per pair of rates, whatever the channels


def test_sample_rates_outside_what_is_read_are_refused(tmp_path):
    path = write_audio(tmp_path / "slow.wav", 2.0, 500)
    for read in (lambda: load_audio(path, 16000), lambda: list(iter_audio_blocks(path, 16000))):
        with pytest.raises(ValueError, match=r"slow.wav: sample rate 500 Hz is outside what codec12 reads"):
            read()


# ---------------------------------------------------------------- 9. audio cut short
def _cut(path: Path, keep: float) -> Path:
    data = path.read_bytes()
    out = path.with_name("cut-" + path.name)
    out.write_bytes(data[: int(len(data) * keep)])
    return out


def test_a_wav_cut_short_is_refused_everywhere(tmp_path, model_dir, capsys):
    """libsndfile reads the half that is there without a word: the header's declared length tells."""
    wav = _cut(write_audio(tmp_path / "a.wav", 1.0, 16000), 0.5)
    aiff = _cut(write_audio(tmp_path / "b.aiff", 1.0, 16000), 0.5)
    au = _cut(write_audio(tmp_path / "c.au", 1.0, 16000), 0.5)
    for path in (wav, aiff, au):
        with pytest.raises(ValueError, match=rf"{path.name}: truncated audio: the header declares 16000 samples"):
            load_audio(path, 16000)
        with pytest.raises(ValueError, match="truncated audio"):
            list(iter_audio_blocks(path, 16000))
    # Open lengths (streaming writers) are not truncation.
    streamed = bytearray(write_audio(tmp_path / "s.wav", 0.5, 16000).read_bytes())
    at = streamed.find(b"data")
    streamed[at + 4:at + 8] = struct.pack("<I", 0xFFFFFFFF)
    (tmp_path / "s.wav").write_bytes(bytes(streamed))
    assert load_audio(tmp_path / "s.wav", 16000).shape == (1, 8000)

    rc, err = cli(capsys, "encode", wav, tmp_path / "a.c12", "--model", model_dir)
    assert rc == 1 and "cut-a.wav: truncated audio" in err and not (tmp_path / "a.c12").exists()
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(wav, data / "cut.wav")
    write_audio(data / "good.wav", 0.5, 16000)
    out = tmp_path / "tok"
    rc, err = cli(capsys, "tokenize", data, "--out", out, "--model", model_dir, "--workers", "0", "--quiet")
    assert rc == 0 and "1 ok, 1 failed" in err
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert [(e["id"], "truncated audio" in e["reason"]) for e in errors] == [("cut", True)]


def test_a_header_claiming_billions_of_samples_costs_no_memory(tmp_path):
    """A FLAC whose STREAMINFO claims 2**35 samples: reading must not be sized by the claim."""
    path = write_audio(tmp_path / "x.flac", 0.5, 16000)
    data = bytearray(path.read_bytes())
    info = int.from_bytes(data[18:26], "big")  # STREAMINFO: ..., 36-bit total samples in the low bits
    data[18:26] = ((info & ~((1 << 36) - 1)) | (1 << 35)).to_bytes(8, "big")
    path.write_bytes(bytes(data))
    result = run_limited(f"""
        from codec12.audio import load_audio
        limit()
        try:
            load_audio("{path}", 16000)
        except ValueError as e:
            print("ValueError", e)
        """)
    assert result.returncode == 0 and result.stdout.startswith("ValueError"), result.stderr[-2000:]
    assert "x.flac" in result.stdout


# ---------------------------------------------------------------- 2. hostile config.json
def _model_copy(model_dir: Path, tmp_path: Path, name: str, change) -> Path:
    path = tmp_path / name
    shutil.copytree(model_dir, path)
    data = json.loads((path / "config.json").read_text())
    data = change(data) or data
    (path / "config.json").write_text(json.dumps(data))
    return path


def _set(*keys_value):
    *keys, value = keys_value

    def change(data):
        d = data
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value

    return change


def _update(**changes):
    def change(data):
        for key, value in changes.items():
            if isinstance(value, dict):
                data[key].update(value)
            else:
                data[key] = value

    return change


@pytest.mark.parametrize("change, match", [
    (_set("sample_rate", "16000"), r"sample_rate must be an integer, got string \"16000\""),
    (_set("quantizer", None), "quantizer must be an object .*got null"),
    (lambda d: [d], "a config must be a JSON object, got list"),
    (_set("transformer", "num_layers", 1e7), "transformer.num_layers must be an integer, got 10000000.0"),
    (_set("seanet", "ratios", [8, 5, "4", 4]), "seanet.ratios must be a list of integers"),
    (_set("quantizer", "fsq_dither", [0.5, 0.5]), "quantizer.fsq_dither must be a list of 3 finite numbers"),
    (_set("quantizer", "ema_decay", True), "quantizer.ema_decay must be a finite number, got true"),
    (_set("name", 5), "name must be a string"),
    (_set("transformer", "num_layers", 3), r"the weights do not fit the config: missing tensors"),
    (_set("quantizer", "semantic_codebook_size", 128), r"wrong shapes .*semantic"),
])
def test_a_config_json_of_the_wrong_types_or_shapes_is_named(model_dir, tmp_path, change, match):
    path = _model_copy(model_dir, tmp_path, "m", change)
    with pytest.raises(ValueError, match=rf"{path / 'config.json'}.*{match}|{match}.*{path / 'config.json'}"):
        Codec.from_pretrained(path)


def test_sizes_no_real_codec_has_are_refused_before_anything_is_built(model_dir, tmp_path):
    """Without the limits and the check against the weights' header these configs ask for 1 GB to 1 TB."""
    cases = {
        "layers": _set("transformer", "num_layers", 10_000_000),
        "width": _set("transformer", "dim_feedforward", 1 << 30),
        "codebooks": _update(quantizer={"semantic_codebook_size": 65536, "semantic_dim": 4096, "num_acoustic": 256,
                                        "acoustic_codebook_size": 65536, "acoustic_dim": 4096}),
        # Within every per-field limit, ~13 G parameters: only the weights' header can tell.
        "within_limits": _update(transformer={"d_model": 4096, "num_heads": 64, "num_layers": 64,
                                              "dim_feedforward": 16384},
                                 seanet={"dimension": 4096}, latent_dim=4096),
    }
    for name, change in cases.items():
        _model_copy(model_dir, tmp_path, name, change)
    result = run_limited(f"""
        from codec12 import Codec
        limit()
        for name in {list(cases)}:
            try:
                Codec.from_pretrained("{tmp_path}/" + name)
                print(name, "LOADED")
            except ValueError as e:
                print(name, "ValueError", str(e).replace("\\n", " "))
        """)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert lines.keys() == cases.keys()
    assert "transformer.num_layers is 10000000, over the limit of 64" in lines["layers"]
    assert "transformer.dim_feedforward is 1073741824, over the limit" in lines["width"]
    assert "quantizer: the codebooks hold" in lines["codebooks"]
    assert "within_limits/model.safetensors" in lines["within_limits"]
    assert "the weights do not fit the config" in lines["within_limits"]
    assert all(line.startswith("ValueError") and "config.json" in line for line in lines.values())


def test_valid_configs_and_presets_still_load_and_hash_the_same(model_dir, codec):
    from codec12 import CodecConfig
    from codec12.config import PRESETS

    for name, config in PRESETS.items():
        again = CodecConfig.from_dict(json.loads(config.to_json()))
        assert again == config and again.config_hash() == config.config_hash(), name
    assert Codec.from_pretrained("c12-tiny-16k").config.config_hash() == \
        CodecConfig.from_json_file(ROOT / "codec12/assets/c12-tiny-16k/config.json").config_hash()
    assert codec.weights_hash() == tiny_codec(seed=0).weights_hash()


# ---------------------------------------------------------------- 3. damaged weights and checkpoints
@pytest.mark.parametrize("keep", [0.0, 0.5, 0.999])
def test_truncated_or_empty_safetensors_are_named(model_dir, tmp_path, capsys, keep):
    path = tmp_path / "m"
    shutil.copytree(model_dir, path)
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: int(weights.stat().st_size * keep)])
    reason = "empty file" if keep == 0 else "truncated or not a safetensors file"
    with pytest.raises(ValueError, match=rf"{weights}: {reason}"):
        Codec.from_pretrained(path)
    write_audio(tmp_path / "a.wav", 0.3, 16000)
    rc, err = cli(capsys, "encode", tmp_path / "a.wav", tmp_path / "a.c12", "--model", path)
    assert rc == 1 and f"{weights}: {reason}" in err


def _checkpoints(root: Path, steps: int) -> list[Path]:
    return [ckpt.write_checkpoint(root, step, {"model": {"w": torch.full((64,), float(step))}, "rng": {}},
                                  {"step": step}, keep=10) for step in range(1, steps + 1)]


def test_checkpoint_files_are_synced_before_the_directory_is_renamed(tmp_path, monkeypatch):
    import codec12._fs as fs

    events = []
    fsync, replace = os.fsync, os.replace

    def logged_fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return fsync(fd)

    def logged_replace(src, dst):
        events.append(("replace", str(src), str(dst)))
        return replace(src, dst)

    monkeypatch.setattr(fs.os, "fsync", logged_fsync)
    monkeypatch.setattr(fs.os, "replace", logged_replace)
    final = _checkpoints(tmp_path, 1)[0]
    renamed = next(i for i, e in enumerate(events) if e[0] == "replace" and e[2] == str(final))
    tmp_dir = events[renamed][1]
    for name in ("model.safetensors", "rng.safetensors", "state.json"):
        synced = [i for i, e in enumerate(events) if e[0] == "fsync" and Path(e[1]).parent == Path(tmp_dir)
                  and (Path(e[1]).name == name or f".{name}.tmp" in Path(e[1]).name)]
        assert synced and synced[0] < renamed, name
    assert json.loads((final / "state.json").read_text())["files"] == ["model.safetensors", "rng.safetensors"]


def test_resume_falls_back_to_the_newest_checkpoint_that_reads(tmp_path):
    paths = _checkpoints(tmp_path, 4)
    messages = []
    assert ckpt.resume_checkpoint(tmp_path, messages.append) == paths[-1] and not messages
    model = paths[3] / "model.safetensors"
    model.write_bytes(model.read_bytes()[:100])  # cut short
    (paths[2] / "rng.safetensors").write_bytes(b"")  # never written
    (paths[1] / "model.safetensors").unlink()  # lost
    assert ckpt.resume_checkpoint(tmp_path, messages.append) == paths[0]
    assert [m.split(":")[0] for m in messages] == [f"cannot resume from {p.name}" for p in paths[:0:-1]] + \
        ["resuming from step-00000001, the newest checkpoint that reads whole (3 newer ones skipped)"]
    assert f"{model}: truncated" in messages[0] and "rng.safetensors: empty file" in messages[1]
    assert "model.safetensors: no such file" in messages[2]
    with pytest.raises(ValueError, match=rf"{paths[3].name}/model.safetensors: truncated"):
        ckpt.read_checkpoint(paths[3])
    (paths[0] / "state.json").write_text("[1, 2")
    with pytest.raises(ValueError, match="no checkpoint can be read: .*step-00000001/state.json: cannot read"):
        ckpt.resume_checkpoint(tmp_path, messages.append)


def test_training_resumes_from_the_checkpoint_before_a_damaged_one(tmp_path, caplog):
    from codec12.train import run
    from tests.test_train import tiny_recipe

    data = tmp_path / "audio"
    for i in range(3):
        write_audio(data / f"u{i}.wav", 1.0 + 0.2 * i, 16000)
    recipe = tiny_recipe("tiny-16k-cpu", data, train={"steps": 3, "checkpoint_every": 1, "valid_every": 100,
                                                      "export": False, "threads": 1})
    out = tmp_path / "run"
    first = run(recipe, out, until_step=2, progress=False)
    assert first.checkpoint.name == "step-00000002"
    model = first.checkpoint / "model.safetensors"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    with caplog.at_level("WARNING", logger="codec12.train"):
        resumed = run(recipe, out, resume=True, progress=False)
    assert resumed.step == 3
    assert "cannot resume from step-00000002" in caplog.text and f"{model}: truncated" in caplog.text
    assert "resuming from step-00000001" in caplog.text


# ---------------------------------------------------------------- datasets: a small tokenized one
@pytest.fixture(scope="module")
def tokenized(tmp_path_factory, model_dir) -> Path:
    data = tmp_path_factory.mktemp("data")
    for i in range(6):
        write_audio(data / f"u{i}.wav", 0.3 + 0.1 * i, 16000)
    out = tmp_path_factory.mktemp("tok")
    assert main(["tokenize", str(data), "--out", str(out), "--model", str(model_dir), "--workers", "0", "--quiet",
                 "--shard-size", "2"]) == 0
    assert len(shard_paths(out)) == 3
    return out


# ---------------------------------------------------------------- 4. damaged shards
def test_detokenize_skips_a_damaged_shard_and_reports_it(tokenized, model_dir, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(tokenized, data)
    cut, garbled = shard_paths(data)[1], shard_paths(data)[2]
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    raw = bytearray(garbled.read_bytes())
    pages_end = len(raw) - 8 - struct.unpack("<I", raw[-8:-4])[0]  # the footer (metadata) and its length stay
    raw[4:pages_end] = b"\x55" * (pages_end - 4)
    garbled.write_bytes(bytes(raw))
    rc, err = cli(capsys, "detokenize", data, "--out", tmp_path / "wavs", "--quiet", "--device", "cpu")
    assert rc == 0, err
    assert sorted(p.stem for p in (tmp_path / "wavs").glob("*.wav")) == ["u0", "u1"]
    assert f"damaged shard skipped: {cut}: unreadable" in err and f"damaged shard skipped: {garbled}" in err
    assert "2 written, 0 already there, 0 failed, 2 damaged shards skipped" in err


# ---------------------------------------------------------------- 5. ids that cannot be file names
BAD_IDS = ["x" * 300, "a\x00b", "", ".", "..", "a//b", "/abs", "a/../b", "tab\there", "\udcff"]


def test_ids_that_cannot_be_file_names_are_refused_when_tokenizing(model_dir, tmp_path, capsys):
    audio = write_audio(tmp_path / "a.wav", 0.3, 16000)
    manifest = tmp_path / "list.jsonl"
    ids = ["ok", "sub/fine name", *BAD_IDS]
    manifest.write_text("".join(json.dumps({"id": i, "path": str(audio)}) + "\n" for i in ids))
    out = tmp_path / "tok"
    rc, err = cli(capsys, "tokenize", manifest, "--out", out, "--model", model_dir, "--workers", "0", "--quiet")
    assert rc == 0 and f"2 ok, {len(BAD_IDS)} failed" in err
    assert sorted(read_tokenized(out, ["id"]).column("id").to_pylist()) == ["ok", "sub/fine name"]
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert sorted(e["id"] for e in errors) == sorted(BAD_IDS) and failed_ids(out) == set(BAD_IDS)
    assert all(e["reason"].startswith("the id") for e in errors)
    rc, err = cli(capsys, "tokenize", manifest, "--out", out, "--model", model_dir, "--workers", "0", "--quiet")
    assert rc == 0 and f"0 ok, 0 failed, {len(ids)} skipped" in err  # recorded once, skipped after


def test_detokenize_treats_each_bad_row_as_an_error_of_its_own(tokenized, codec, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tokenized, data)
    shard = shard_paths(data)[0]
    table = pq.read_table(shard)
    good = table.to_pylist()[0]
    rows = [{**good, "id": uid} for uid in BAD_IDS[:-1]]  # (a lone surrogate cannot be stored as a string)
    rows += [{**good, "id": "short", "num_samples": -5}, {**good, "id": "long", "num_samples": 10 ** 9},
             {**good, "id": "ragged", "codes": [r[:-1] if i else r for i, r in enumerate(good["codes"])]},
             {**good, "id": "range", "codes": [[70000 % 65536] * len(good["codes"][0])] + good["codes"][1:]},
             {**good, "id": None}, {**good, "id": "nocodes", "codes": None}, {**good, "id": "zz-fine"}]
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)
    out = tmp_path / "wavs"
    summary = detokenize_dataset(data, out, codec, progress=False)
    assert summary.written == 4 + 1 and not summary.damaged_shards  # the other shards' rows, and zz-fine
    assert len(summary.failed) == len(rows) - 1 and set(summary.reasons) == set(summary.failed)
    assert "cannot name a file" in summary.reasons[BAD_IDS[0]] and "num_samples -5" in summary.reasons["short"]
    assert "ragged" in summary.reasons["ragged"] and "out of range" in summary.reasons["range"]
    made = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert made == sorted(f"{r['id']}.wav" for r in read_tokenized(tokenized).to_pylist()[2:]) + ["zz-fine.wav"]
    assert id_problem("fine/name") is None and "control character" in id_problem("a\nb")


# ---------------------------------------------------------------- 6. one directory, one partitioning
def test_one_directory_holds_one_partitioning(tokenized, model_dir, tmp_path, capsys):
    data = tmp_path / "data"
    for i in range(6):
        write_audio(data / f"u{i}.wav", 0.3 + 0.1 * i, 16000)
    out = tmp_path / "tok"
    shutil.copytree(tokenized, out)
    assert read_meta(out)["num_shards"] == 1
    rc, err = cli(capsys, "tokenize", data, "--out", out, "--model", model_dir, "--num-shards", "3",
                  "--shard-index", "0", "--quiet", "--workers", "0")
    assert rc == 1 and "is tokenized in one partition, this run in 3 partitions" in err
    # A dataset from before the partitioning was recorded: its shard names tell, and the key is added.
    meta = json.loads((out / META_NAME).read_text())
    del meta["num_shards"]
    (out / META_NAME).write_text(json.dumps(meta))
    rc, err = cli(capsys, "tokenize", data, "--out", out, "--model", model_dir, "--num-shards", "3",
                  "--shard-index", "0", "--quiet", "--workers", "0")
    assert rc == 1 and "one directory holds one partitioning" in err
    assert cli(capsys, "tokenize", data, "--out", out, "--model", model_dir, "--quiet", "--workers", "0")[0] == 0
    assert read_meta(out)["num_shards"] == 1


def test_two_partitionings_started_together_never_duplicate_rows(model_dir, tmp_path):
    data = tmp_path / "data"
    for i in range(12):
        write_audio(data / f"u{i:02d}.wav", 0.3, 16000)
    out = tmp_path / "tok"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    base = [sys.executable, "-m", "codec12.cli", "tokenize", str(data), "--out", str(out), "--model", str(model_dir),
            "--quiet", "--workers", "0", "--device", "cpu", "--shard-size", "1"]
    procs = [subprocess.Popen(base + extra, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) for extra in ([], ["--num-shards", "3", "--shard-index", "0"])]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    ids = read_tokenized(out, ["id"]).column("id").to_pylist()
    assert len(ids) == len(set(ids))
    assert sorted(rc for rc, _ in results) == [0, 1]
    refused = next(err for rc, err in results if rc == 1)
    assert "one directory holds one partitioning" in refused and "Traceback" not in refused


# ---------------------------------------------------------------- 8. malformed codec12_meta.json
@pytest.mark.parametrize("meta, match", [
    ([1, 2], "not dataset metadata"),
    ({"format_version": 1}, "incomplete dataset metadata: missing"),
    ("drop:weights_hash", r"missing \['weights_hash'\]"),
    ("set:num_codebooks=x", "num_codebooks must be int"),
    ("set:codebook_sizes=[]", "codebook_sizes must list num_codebooks"),
    ("set:latents=1", "latents must be bool"),
    ("set:config_hash_format=7", "config_hash_format 7 is not supported"),
    ("set:config_hash_format=true", "config_hash_format must be int"),
])
def test_malformed_dataset_metadata_is_named(tokenized, model_dir, tmp_path, capsys, meta, match):
    data = tmp_path / "data"
    shutil.copytree(tokenized, data)
    if isinstance(meta, str):
        op, _, rest = meta.partition(":")
        good = json.loads((data / META_NAME).read_text())
        if op == "drop":
            del good[rest]
        else:
            key, value = rest.split("=")
            good[key] = json.loads(value) if value != "x" else value
        meta = good
    (data / META_NAME).write_text(json.dumps(meta))
    audio = write_audio(tmp_path / "a.wav", 0.3, 16000)
    for args in (["detokenize", data, "--out", tmp_path / "w", "--quiet"],
                 ["tokenize", audio, "--out", data, "--model", model_dir, "--quiet", "--workers", "0"]):
        rc, err = cli(capsys, *args)
        assert rc == 1 and f"{data / META_NAME}" in err and re.search(match, err), err


# ---------------------------------------------------------------- 10, 11. worker death, --num-shards 0
def test_a_killed_loader_worker_ends_in_a_message_and_keeps_the_rows(model_dir, tmp_path, capsys, monkeypatch):
    from codec12.data import tokenize as tok

    data = tmp_path / "data"
    for i in range(5):
        write_audio(data / f"u{i}.wav", 0.3, 16000)
    original = tok._LoadDataset.__getitem__

    def killer(self, index):
        if self.inputs[index].id == "u3":
            time.sleep(2)  # (usually) lets the main process take the files before it
            os.kill(os.getpid(), signal.SIGKILL)  # in the worker process: what the OOM killer or a segfault does
        return original(self, index)

    monkeypatch.setattr(tok._LoadDataset, "__getitem__", killer)
    out = tmp_path / "tok"
    rc, err = cli(capsys, "tokenize", data, "--out", out, "--model", model_dir, "--workers", "1", "--quiet",
                  "--device", "cpu")
    assert rc == 1 and "a worker process reading the inputs died" in err and "run the same command again" in err
    assert re.search(r"died \(DataLoader worker .*\) at \S*/u[0-3].wav or a file soon after it", err), err
    kept = read_tokenized(out, ["id"]).column("id").to_pylist() if shard_paths(out) else []
    assert set(kept) <= {"u0", "u1", "u2"}  # what was loaded before the worker died is kept
    monkeypatch.setattr(tok._LoadDataset, "__getitem__", original)
    rc, err = cli(capsys, "tokenize", data, "--out", out, "--model", model_dir, "--workers", "1", "--quiet",
                  "--device", "cpu")
    assert rc == 0 and f"{5 - len(kept)} ok, 0 failed, {len(kept)} skipped" in err
    assert sorted(read_tokenized(out, ["id"]).column("id").to_pylist()) == [f"u{i}" for i in range(5)]


@pytest.mark.parametrize("value", ["0", "-2"])
def test_num_shards_below_one_is_refused(model_dir, tmp_path, capsys, value):
    write_audio(tmp_path / "a.wav", 0.3, 16000)
    rc, err = cli(capsys, "tokenize", tmp_path / "a.wav", "--out", tmp_path / "tok", "--model", model_dir,
                  "--num-shards", value, "--shard-index", "0")
    assert rc == 1 and f"--num-shards must be at least 1, got {value}" in err
    assert not (tmp_path / "tok").exists()


def test_cli_errors_have_no_traceback_when_run_as_a_module(tmp_path):
    """``python -m codec12.cli`` runs cli.py as __main__: its errors must still be the package's CLIError."""
    result = subprocess.run([sys.executable, "-m", "codec12.cli", "tokenize", str(tmp_path), "--out",
                             str(tmp_path / "tok"), "--num-shards", "0", "--shard-index", "0"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == "codec12 tokenize: error: --num-shards must be at least 1, got 0"


# ---------------------------------------------------------------- 7. .c12 headers
def _c12(tmp_path: Path, codec, name: str, **changes) -> Path:
    from codec12.export.container import _HEAD, MAGIC, VERSION, bits_for, pack_codes

    codes = codec.encode(torch.from_numpy(speechlike(0.5, 16000).T.copy())[None])[0]
    bits = [bits_for(n) for n in codec.codebook_sizes]
    header = {"model": "c12-tiny-16k", "config_hash": codec.config.config_hash(), "config_hash_format": 2,
              "weights_hash": codec.weights_hash(),
              "sample_rate": 16000, "frame_rate": 12.5, "codebook_sizes": list(codec.codebook_sizes),
              "num_samples": 8000, "channels": 1, "num_codebooks": codes.shape[0], "num_frames": codes.shape[1],
              "code_bits": bits}
    header.update(changes)
    blob = json.dumps(header).encode()
    path = tmp_path / f"{name}.c12"
    path.write_bytes(_HEAD.pack(MAGIC, VERSION, len(blob)) + blob + pack_codes(codes.numpy(), bits))
    return path


@pytest.mark.parametrize("changes, match", [
    ({"num_samples": -100000}, "num_samples must be >= 1, got -100000"),
    ({"num_samples": 9000}, r"num_samples \(9000\) does not fit 7 frames of 1280 samples"),
    ({"model": 5}, "model must be a string, got 5"),
    ({"model": ""}, "model is an empty string"),
    ({"sample_rate": "16000"}, "sample_rate must be an integer"),
    ({"codebook_sizes": [4] * 4}, "codes out of range in row 0"),
    ({"codebook_sizes": [1024] * 3}, "codebook_sizes must be 4 integers"),
    ({"channels": 7}, "channels must be 1 or 2"),
    ({"frame_rate": float("nan")}, "frame_rate must be a number"),
    ({"config_hash_format": 7}, r"config_hash_format 7 is not supported \(this codec12 reads 1, 2\)"),
    ({"config_hash_format": "2"}, "config_hash_format must be an integer"),
    ({"num_frames": 5, "num_samples": 6000}, "truncated .c12 file"),
    ({"code_bits": [10] * 3}, "code_bits must be 4 integers in"),
    ({"code_bits": [17] * 4}, "code_bits must be 4 integers in"),
    ({"code_bits": [9] * 4}, "truncated .c12 file"),
])
def test_c12_header_fields_are_validated(codec, model_dir, tmp_path, capsys, changes, match):
    path = _c12(tmp_path, codec, "x", **changes)
    for model in (["--model", model_dir], []):  # the header is checked before any model is looked for
        rc, err = cli(capsys, "decode", path, tmp_path / "x.wav", *model)
        assert rc == 1 and str(path) in err and re.search(match, err), err
        assert not (tmp_path / "x.wav").exists()


def test_decode_uses_only_a_bundled_or_local_model_the_file_names(codec, model_dir, tmp_path, capsys, monkeypatch):
    import codec12.codec as codec_module

    def no_download(repo_id, **kwargs):
        raise AssertionError(f"tried to download {repo_id}")

    monkeypatch.setattr(codec_module, "_download", no_download)
    hub = _c12(tmp_path, codec, "hub", model="someone/evil-codec")
    rc, err = cli(capsys, "decode", hub, tmp_path / "a.wav")
    assert rc == 1 and "names model 'someone/evil-codec'" in err and "not downloaded" in err
    local = _c12(tmp_path, codec, "local", model=str(model_dir))
    assert cli(capsys, "decode", local, tmp_path / "b.wav")[0] == 0  # a local directory is fine
    assert cli(capsys, "decode", hub, tmp_path / "c.wav", "--model", model_dir)[0] == 0  # and so is --model
    # Hub ids stay usable when a person names them.
    with pytest.raises(AssertionError, match="tried to download someone/evil-codec"):
        Codec.from_pretrained("someone/evil-codec")


def test_c12_structure_damage_is_named(codec, tmp_path):
    from codec12.export.container import _HEAD, MAGIC, VERSION

    for name, blob in [("list", b"[1, 2]"), ("huge", None), ("bytes", b"\xff\xfe")]:
        path = tmp_path / f"{name}.c12"
        size = 1 << 31 if blob is None else len(blob)
        path.write_bytes(_HEAD.pack(MAGIC, VERSION, size) + (blob or b"{}"))
        with pytest.raises(ValueError, match=rf"{name}.c12: corrupt .c12 header"):
            read_c12(path)
    write_c12(tmp_path / "ok.c12", np.zeros((2, 3), np.int64), {"model": "m"})
    assert read_c12(tmp_path / "ok.c12")[1]["num_frames"] == 3  # a minimal header still reads


# ---------------------------------------------------------------- 12. codes do not depend on autocast
def test_codes_are_the_same_under_bf16_autocast(tmp_path):
    codec = Codec.from_pretrained("c12-tiny-16k")
    wav = load_audio(ROOT / "examples" / "hibari_en.flac", codec.sample_rate)[None, :, : 4 * codec.sample_rate]
    reference, latents = codec.encode(wav), codec.encode_latents(wav)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(codec.encode(wav), reference)
        assert torch.equal(codec.encode_latents(wav), latents)
        with codec.streaming(1):
            streamed = torch.cat([codec.encode(c) for c in wav[..., : 40 * codec.frame_size].split(
                8 * codec.frame_size, dim=-1)], dim=-1)
    assert torch.equal(streamed, reference[..., :40])
    write_audio(tmp_path / "in" / "a.wav", 0.5, 16000)
    from codec12.data.inputs import discover_inputs

    with torch.autocast("cpu", dtype=torch.bfloat16):
        tokenize_dataset(discover_inputs(tmp_path / "in"), tmp_path / "tok", codec, TokenizeOptions(progress=False))
    assert read_meta(tmp_path / "tok")["dtype"] == "float32"


def test_latents_that_decode_to_non_finite_audio_are_refused(codec):
    z = codec.encode_latents(torch.from_numpy(speechlike(0.5, 16000).T.copy())[None])
    with pytest.raises(ValueError, match="non-finite audio"):
        codec.decode_latents(z * 1e30)
    assert torch.isfinite(codec.decode_latents(z)).all()
