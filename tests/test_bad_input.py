"""Hostile and damaged input: each case ends in a one-line error naming the file and the reason (exit status 1,
no traceback) or in the documented recovery, in bounded memory; and one bad item never stops a batch job.

Cases that would allocate gigabytes if their check were missing run in a child process under an address-space
limit, so that a regression fails the test instead of exhausting the machine.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

from codec12 import Codec, load_audio
from codec12.cli import main
from codec12.data.blocks import iter_audio_blocks
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
                  and f".{name}.tmp" in Path(e[1]).name]
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
