"""codec12 tokenize / detokenize: outputs equal the Python API, bad files are recorded, runs resume after
SIGKILL, partitions are disjoint and complete, torchrun splits the work, long files stream in chunks."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch

from codec12 import load_audio
from codec12.cli import main
from codec12.data.blocks import iter_audio_blocks
from codec12.data.dataset_format import META_NAME, completed_ids, failed_ids, read_meta, read_tokenized, shard_paths
from codec12.data.inputs import discover_inputs, partition
from codec12.data.manifest import ManifestRow, read_manifest
from codec12.data.tokenize import TokenizeOptions, progress_postfix, tokenize_dataset
from tests.conftest import distinct_codes, speechlike, tiny_codec

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
# Good files: (relative path, seconds, sample rate, channels). "long" goes through the streaming path
# (--long-file-seconds 2.5) and is resampled block by block from 22.05 kHz.
GOOD = [("a.wav", 0.5, 16000, 1), ("sub/b.wav", 1.3, 44100, 1), ("sub/deeper/c.flac", 2.0, 24000, 2),
        ("d.wav", 0.9, 8000, 1), ("e.wav", 0.08, 16000, 1), ("f.ogg", 1.7, 16000, 1), ("long.flac", 3.3, 22050, 1)]
BAD = {"empty": "not a readable audio file", "text": "not a readable audio file", "nan": "NaN",
       "short": "too short"}
LONG_ARGS = ["--long-file-seconds", "2.5", "--chunk-seconds", "0.4"]


def make_dataset(root: Path) -> Path:
    for i, (name, seconds, rate, channels) in enumerate(GOOD):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), speechlike(seconds, rate, seed=i, channels=channels), rate)
    (root / "empty.wav").write_bytes(b"")
    (root / "text.wav").write_text("this is a text file, not audio\n" * 50)
    x = speechlike(1.0, 16000, seed=5)
    x[4000] = np.nan
    sf.write(str(root / "nan.wav"), x, 16000, subtype="FLOAT")
    sf.write(str(root / "short.wav"), speechlike(0.005, 16000), 16000)
    (root / "notes.txt").write_text("not an audio suffix: not an input\n")
    return root


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("model")
    tiny_codec(seed=0).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def codec(model_dir):
    from codec12 import Codec

    return Codec.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("ds"))


@pytest.fixture(scope="module")
def tokenized(tmp_path_factory, dataset, model_dir):
    """One CLI run over the dataset (with latents, shards of 3 rows, 1 worker process)."""
    out = tmp_path_factory.mktemp("tok")
    rc = main(["tokenize", str(dataset), "--out", str(out), "--model", str(model_dir), "--latents", "--quiet",
               "--shard-size", "3", "--batch-size", "4", "--workers", "1", "--device", "cpu", *LONG_ARGS])
    assert rc == 0
    return out


def reference(codec, path, k=None):
    wav = load_audio(path, codec.sample_rate, codec.channels)
    return codec.encode(wav[None], k)[0], codec.encode_latents(wav[None])[0].detach(), wav.shape[-1]


def test_outputs_equal_python_api(tokenized, dataset, codec):
    table = read_tokenized(tokenized)
    assert len(shard_paths(tokenized)) == math.ceil(len(GOOD) / 3)
    rows = {r["id"]: r for r in table.to_pylist()}
    assert sorted(rows) == sorted(str(Path(name).with_suffix("")) for name, *_ in GOOD)
    every = np.concatenate([np.array(r["codes"]) for r in rows.values()], axis=-1)[None]
    assert min(distinct_codes(every)) >= 8, distinct_codes(every)  # the comparisons below compare codes that vary
    for name, *_ in GOOD:
        row = rows[str(Path(name).with_suffix(""))]
        codes, latents, n = reference(codec, dataset / name)
        got = np.array(row["codes"], dtype=np.int64)
        assert got.shape == (codec.num_codebooks, math.ceil(n / codec.frame_size)) == tuple(codes.shape)
        np.testing.assert_array_equal(got, codes.numpy(), err_msg=name)
        assert row["num_frames"] == codes.shape[-1] and row["num_samples"] == n
        assert row["duration_s"] == pytest.approx(n / codec.sample_rate)
        lat = np.array(row["latents"], dtype=np.float32)
        np.testing.assert_allclose(lat, latents.numpy(), rtol=2e-3, atol=2e-3, err_msg=name)
        assert Path(row["path"]) == dataset / name
    assert table.schema.field("codes").type.value_type.value_type == "uint16"
    assert table.schema.field("latents").type.value_type.value_type == "halffloat"


def test_meta_and_errors(tokenized, codec):
    meta = read_meta(tokenized)
    assert meta["config_hash"] == codec.config.config_hash()
    assert meta["sample_rate"] == 16000 and meta["frame_rate"] == 12.5 and meta["latents"] is True
    assert meta["codebook_sizes"] == list(codec.codebook_sizes) and meta["num_codebooks"] == codec.num_codebooks
    errors = [json.loads(line) for line in (tokenized / "errors.jsonl").read_text().splitlines()]
    assert sorted(e["id"] for e in errors) == sorted(BAD)
    for e in errors:
        assert BAD[e["id"]] in e["reason"], e
        assert Path(e["path"]).name.startswith(e["id"])


def test_readable_with_pandas_and_datasets(tokenized):
    pd = pytest.importorskip("pandas")
    frame = pd.read_parquet([str(p) for p in shard_paths(tokenized)])
    assert len(frame) == len(GOOD)
    row = frame[frame["id"] == "a"].iloc[0]
    assert len(row["codes"]) == 4 and len(row["codes"][0]) == row["num_frames"]
    datasets = pytest.importorskip("datasets")
    ds = datasets.load_dataset("parquet", data_files=str(tokenized / "shard-*.parquet"), split="train",
                               cache_dir=str(tokenized.parent / "hf-cache"))
    assert sorted(ds["id"]) == sorted(frame["id"])
    item = ds.filter(lambda r: r["id"] == "a")[0]
    np.testing.assert_array_equal(np.array(item["codes"]), np.stack(row["codes"]))


def test_rerun_skips_everything_and_other_model_is_refused(tokenized, dataset, model_dir, tmp_path, capsys):
    before = sorted(p.name for p in shard_paths(tokenized))
    rc = main(["tokenize", str(dataset), "--out", str(tokenized), "--model", str(model_dir), "--latents",
               "--quiet", "--workers", "0", "--device", "cpu", *LONG_ARGS])
    assert rc == 0
    assert "0 ok, 0 failed, 11 skipped" in capsys.readouterr().err
    assert sorted(p.name for p in shard_paths(tokenized)) == before
    # Other weights (same architecture), other codebook count, or no latents: refused, nothing written.
    other = tmp_path / "other"
    tiny_codec(seed=1).save_pretrained(other)
    for model, extra in [(other, ["--latents"]), (model_dir, ["--latents", "--num-codebooks", "2"]),
                         (model_dir, [])]:
        rc = main(["tokenize", str(dataset), "--out", str(tokenized), "--model", str(model), "--quiet", *extra])
        assert rc == 1
        assert "holds a dataset tokenized with model" in capsys.readouterr().err
    assert sorted(p.name for p in shard_paths(tokenized)) == before


def test_num_codebooks_and_exit_status(dataset, model_dir, codec, tmp_path, capsys):
    out = tmp_path / "k2"
    rc = main(["tokenize", str(dataset / "sub"), "--out", str(out), "--model", str(model_dir), "--quiet",
               "--num-codebooks", "2", "--workers", "0", "--strict"])
    assert rc == 0
    table = read_tokenized(out)
    for row in table.to_pylist():
        np.testing.assert_array_equal(np.array(row["codes"]), reference(codec, row["path"], 2)[0].numpy())
    assert read_meta(out)["codebook_sizes"] == list(codec.codebook_sizes[:2])
    # --strict: any failure is an error; without it, only a run where nothing could be done.
    bad_only = tmp_path / "bad"
    bad_only.mkdir()
    (bad_only / "x.wav").write_bytes(b"")
    (bad_only / "y.wav").write_text("no audio")
    assert main(["tokenize", str(bad_only), "--out", str(tmp_path / "o1"), "--model", str(model_dir),
                 "--quiet"]) == 1
    assert "0 ok, 2 failed" in capsys.readouterr().err
    sf.write(str(bad_only / "z.wav"), speechlike(0.3, 16000), 16000)
    assert main(["tokenize", str(bad_only), "--out", str(tmp_path / "o2"), "--model", str(model_dir),
                 "--quiet"]) == 0
    assert main(["tokenize", str(bad_only), "--out", str(tmp_path / "o3"), "--model", str(model_dir),
                 "--quiet", "--strict"]) == 1
    # The failures of a finished run are not retried unless asked.
    capsys.readouterr()
    assert main(["tokenize", str(bad_only), "--out", str(tmp_path / "o2"), "--model", str(model_dir),
                 "--quiet", "--retry-failed"]) == 0
    assert "0 ok, 2 failed, 1 skipped" in capsys.readouterr().err


def test_long_file_streaming_equals_offline(codec, tmp_path):
    """The chunked path gives the offline codes for a 16 kHz file (no resampling) with a chunk that does not
    divide it; the fixture run covers a resampled one (long.flac)."""
    sf.write(str(tmp_path / "long16k.wav"), speechlike(1.85, 16000, seed=3), 16000)
    inputs = [ManifestRow(id="long16k", path=str(tmp_path / "long16k.wav"))]
    out = tmp_path / "out"
    opts = TokenizeOptions(long_file_seconds=1.0, chunk_seconds=0.35, latents=True, progress=False)
    summary = tokenize_dataset(inputs, out, codec, opts)
    assert (summary.ok, summary.failed) == (1, 0)
    row = read_tokenized(out).to_pylist()[0]
    codes, latents, n = reference(codec, inputs[0].path)
    np.testing.assert_array_equal(np.array(row["codes"]), codes.numpy())
    np.testing.assert_allclose(np.array(row["latents"], np.float32), latents.numpy(), atol=2e-3, rtol=2e-3)
    assert row["num_samples"] == n


@pytest.mark.parametrize("rate,channels,block", [(44100, 2, 0.37), (16000, 1, 0.3), (22050, 1, 1.0), (8000, 1, 0.1)])
def test_blocks_equal_load_audio(tmp_path, rate, channels, block):
    path = tmp_path / "x.wav"
    sf.write(str(path), speechlike(2.3, rate, channels=channels), rate)
    ref = load_audio(path, 16000, 1)
    blocks = list(iter_audio_blocks(path, 16000, 1, block))
    assert len(blocks) > 1
    got = torch.cat(blocks, dim=-1)
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=0)
    if rate == 16000:
        assert torch.equal(got, ref)


def test_blocks_report_nan_and_empty(tmp_path):
    x = speechlike(3.0, 16000)
    x[40000] = np.inf
    sf.write(str(tmp_path / "inf.wav"), x, 16000, subtype="FLOAT")
    with pytest.raises(ValueError, match="inf.wav: audio contains NaN"):
        list(iter_audio_blocks(tmp_path / "inf.wav", 16000, 1, 0.5))
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.wav: not a readable audio file"):
        list(iter_audio_blocks(tmp_path / "empty.wav", 16000, 1))


def test_inputs_from_manifests_and_globs(dataset, tmp_path):
    names = ["a.wav", "sub/b.wav", "sub/deeper/c.flac"]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps({"audio_filepath": str(dataset / n), "id": f"u{i}"}) + "\n"
                                              for i, n in enumerate(names)))
    assert [(x.id, x.path) for x in read_manifest(tmp_path / "m.jsonl")] == \
           [(f"u{i}", str(dataset / n)) for i, n in enumerate(names)]
    (dataset.parent / "list.txt").write_text("# comment\n" + "\n".join(f"{dataset.name}/{n}" for n in names) + "\n")
    assert [x.id for x in discover_inputs(dataset.parent / "list.txt")] == \
           sorted(f"{dataset.name}/{Path(n).with_suffix('')}" for n in names)
    (tmp_path / "m.tsv").write_text("id\tpath\tspeaker\n" + "".join(f"k{i}\t{dataset / n}\ts\n"
                                                                  for i, n in enumerate(names)))
    assert [x.id for x in discover_inputs(tmp_path / "m.tsv")] == ["k0", "k1", "k2"]
    # fairseq-style: root directory, then relative path <TAB> num samples
    (tmp_path / "train.tsv").write_text(f"{dataset}\n" + "".join(f"{n}\t100\n" for n in names))
    assert [x.path for x in read_manifest(tmp_path / "train.tsv")] == [str(dataset / n) for n in names]
    globbed = discover_inputs(str(dataset / "sub" / "**" / "*.*"))
    assert [x.id for x in globbed] == ["b", "deeper/c"]
    listed = discover_inputs(dataset)
    assert {x.id for x in listed} == {str(Path(n).with_suffix("")) for n, *_ in GOOD} | set(BAD)
    (tmp_path / "dup.jsonl").write_text('{"path": "a.wav", "id": "x"}\n{"path": "b.wav", "id": "x"}\n')
    with pytest.raises(ValueError, match="id 'x' is used twice"):
        discover_inputs(tmp_path / "dup.jsonl")
    (tmp_path / "broken.jsonl").write_text('{"path": "a.wav"}\n{"wav_no": 1}\n')
    with pytest.raises(ValueError, match="broken.jsonl:2: no path column"):
        discover_inputs(tmp_path / "broken.jsonl")
    with pytest.raises(ValueError, match="no such file"):
        discover_inputs(tmp_path / "missing")


def test_missing_manifest_entries_are_recorded(dataset, model_dir, tmp_path):
    (tmp_path / "m.txt").write_text(f"{dataset / 'a.wav'}\n{tmp_path / 'gone.wav'}\n")
    out = tmp_path / "out"
    assert main(["tokenize", str(tmp_path / "m.txt"), "--out", str(out), "--model", str(model_dir), "--quiet"]) == 0
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert [(e["path"], e["reason"]) for e in errors] == [(str(tmp_path / "gone.wav"), "file not found")]


def test_partition_disjoint_and_complete():
    inputs = [ManifestRow(id=f"spk{i % 7}/utt{i}", path=f"/x/{i}.wav") for i in range(1000)]
    for n in (1, 2, 3, 8):
        parts = [partition(inputs, n, i) for i in range(n)]
        ids = [x.id for p in parts for x in p]
        assert sorted(ids) == sorted(x.id for x in inputs)  # complete and disjoint
        assert all(len(p) > 1000 / n / 2 for p in parts)  # roughly balanced
        assert parts == [partition(list(reversed(inputs)), n, i)[::-1] for i in range(n)]  # order-independent
    with pytest.raises(ValueError, match="shard_index"):
        partition(inputs, 2, 2)


def test_num_shards_runs_into_one_directory(dataset, codec, tmp_path):
    inputs = discover_inputs(dataset)
    out = tmp_path / "out"
    names = []
    for i in range(3):
        summary = tokenize_dataset(inputs, out, codec, TokenizeOptions(num_shards=3, shard_index=i, progress=False,
                                                                       long_file_seconds=100))
        assert summary.total == len(partition(inputs, 3, i))
        names += summary.shards
    assert len(names) == len(set(names)) and all(n.startswith("shard-0000") and "-of-00003-" in n for n in names)
    ids = read_tokenized(out, ["id"]).column("id").to_pylist()
    assert len(ids) == len(set(ids)) == len(GOOD)
    assert failed_ids(out) == set(BAD)


def _cli(*args: str) -> list[str]:
    return [PYTHON, "-m", "codec12.cli", "tokenize", *args]


def test_resume_after_sigkill(model_dir, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    n = 30
    for i in range(n):
        sf.write(str(data / f"utt{i:03d}.wav"), speechlike(0.6 + 0.01 * i, 16000, seed=i), 16000)
    (data / "bad.wav").write_text("not audio")
    out = tmp_path / "out"
    args = _cli(str(data), "--out", str(out), "--model", str(model_dir), "--shard-size", "2", "--batch-size", "1",
                "--workers", "0", "--quiet", "--device", "cpu")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(out.glob("shard-*.parquet")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_at_kill = completed_ids(out)
    assert 0 < len(done_at_kill) < n, "the run was not interrupted mid-way"
    # What a kill during a shard write leaves behind: a hidden temp file; readers and the re-run ignore it.
    (out / ".shard-00099.parquet.tmp12345").write_bytes(b"PAR1 half a shard")
    rerun = subprocess.run(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"skipped (done before) of {n + 1}" in rerun.stderr
    ids = read_tokenized(out, ["id"]).column("id").to_pylist()
    assert sorted(ids) == [f"utt{i:03d}" for i in range(n)]  # each input exactly once
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert [e["id"] for e in errors] == ["bad"]
    assert not list(out.glob(".*.tmp*"))


def test_torchrun_two_processes(dataset, model_dir, codec, tmp_path):
    torchrun = Path(PYTHON).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun not installed next to this Python")
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "codec12.cli", "tokenize", str(dataset),
         "--out", str(out), "--model", str(model_dir), "--quiet", "--workers", "0", "--shard-size", "2",
         *LONG_ARGS], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    names = [p.name for p in shard_paths(out)]
    assert {n[:len("shard-00000-of-00002")] for n in names} == {"shard-00000-of-00002", "shard-00001-of-00002"}
    table = read_tokenized(out)
    assert sorted(table.column("id").to_pylist()) == sorted(str(Path(n).with_suffix("")) for n, *_ in GOOD)
    assert failed_ids(out) == set(BAD)
    for row in table.to_pylist():
        np.testing.assert_array_equal(np.array(row["codes"]), reference(codec, row["path"])[0].numpy())


def test_detokenize_round_trip(tokenized, codec, tmp_path, capsys):
    wavs = tmp_path / "wavs"
    assert main(["detokenize", str(tokenized), "--out", str(wavs), "--quiet", "--device", "cpu"]) == 0
    table = read_tokenized(tokenized)
    for row in table.to_pylist():
        path = wavs / f"{row['id']}.wav"
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
        assert rate == codec.sample_rate and audio.shape == (row["num_samples"], codec.channels)
        expect = codec.decode(torch.tensor(row["codes"])[None])[0, :, :row["num_samples"]].clamp(-1, 1)
        np.testing.assert_allclose(audio.T, expect.numpy(), atol=2 / 32768)  # PCM_16 rounding
    # A re-run keeps existing files.
    assert main(["detokenize", str(tokenized), "--out", str(wavs), "--quiet"]) == 0
    assert f"0 written, {len(GOOD)} already there" in capsys.readouterr().err


def test_detokenize_latents_and_long_rows_stream(tokenized, codec, tmp_path):
    """Stored latents decode too; rows longer than long_file_seconds decode in streaming chunks written to
    the file as they come, equal to offline decoding."""
    from codec12.data.detokenize import detokenize_dataset

    out = tmp_path / "wavs"
    summary = detokenize_dataset(tokenized, out, codec, from_latents=True, long_file_seconds=1.5, chunk_seconds=0.3,
                                 progress=False)
    assert summary.written == len(GOOD) and len(list(out.rglob("*.wav"))) == len(GOOD)
    row = next(r for r in read_tokenized(tokenized).to_pylist() if r["id"] == "long")
    audio, _ = sf.read(str(out / "long.wav"), dtype="float32", always_2d=True)
    latents = torch.tensor(np.array(row["latents"], np.float32))[None]
    expect = codec.decode_latents(latents)[0, :, :row["num_samples"]].detach().clamp(-1, 1)
    np.testing.assert_allclose(audio.T, expect.numpy(), atol=2 / 32768 + 1e-5)


def test_detokenize_refuses_other_model(tokenized, tmp_path):
    other = tmp_path / "other"
    tiny_codec(seed=3).save_pretrained(other)
    assert main(["detokenize", str(tokenized), "--out", str(tmp_path / "w"), "--model", str(other), "--quiet"]) == 1


def test_pq_reads_single_shard_with_metadata(tokenized):
    meta = json.loads(pq.read_schema(shard_paths(tokenized)[0]).metadata[b"codec12"])
    assert meta == read_meta(tokenized)


def test_cli_shards_within_torchrun_share(dataset, model_dir, tmp_path, monkeypatch, capsys):
    """--num-shards N --shard-index I under a WORLD_SIZE=W launch: this process takes part I*W + RANK of N*W."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    out = tmp_path / "out"
    rc = main(["tokenize", str(dataset), "--out", str(out), "--model", str(model_dir), "--quiet", "--workers", "0",
               "--num-shards", "2", "--shard-index", "1", "--device", "cpu"])
    mine = partition(discover_inputs(dataset), 4, 3)
    good = [x.id for x in mine if x.id not in BAD]
    assert rc == (0 if good or len(mine) == 0 else 1)
    assert f"[3/4] {len(good)} ok, {len(mine) - len(good)} failed" in capsys.readouterr().err
    assert sorted(read_tokenized(out, ["id"]).column("id").to_pylist() if good else []) == sorted(good)
    assert all(p.name.startswith("shard-00003-of-00004-") for p in shard_paths(out))
    assert main(["tokenize", str(dataset), "--out", str(out), "--model", str(model_dir), "--shard-index", "1"]) == 1


def test_detokenize_records_a_bad_row_and_goes_on(tokenized, codec, tmp_path):
    import shutil

    import pyarrow as pa

    from codec12.data.detokenize import detokenize_dataset

    data = tmp_path / "data"
    shutil.copytree(tokenized, data)
    shard = shard_paths(data)[0]
    table = pq.read_table(shard)
    rows = table.to_pylist()
    rows[0]["codes"][0][0] = 65535  # out of range for every codebook of the tiny model
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)
    summary = detokenize_dataset(data, tmp_path / "wavs", codec, progress=False)
    assert summary.failed == [rows[0]["id"]] and summary.written == len(GOOD) - 1
    assert not (tmp_path / "wavs" / f"{rows[0]['id']}.wav").exists()


def test_a_partition_is_written_by_one_process_at_a_time(tmp_path):
    from codec12.data.locking import partition_lock

    stale = tmp_path / ".r0-00000.parquet.tmp123"
    stale.write_bytes(b"left by a killed run")
    other = tmp_path / ".r1-00000.parquet.tmp9"
    other.write_bytes(b"another partition's")
    with partition_lock(tmp_path, "r0-"):
        assert not stale.exists() and other.exists()  # only this partition's leftovers are removed
        with pytest.raises(ValueError, match=r"another process is tokenizing this partition \(r0-\*\)"):
            with partition_lock(tmp_path, "r0-"):
                pass
        with partition_lock(tmp_path, "r1-"):  # other partitions are free
            assert not other.exists()
    with partition_lock(tmp_path, "r0-"):  # released on exit
        pass


def test_a_dataset_recorded_with_the_earlier_config_hash_still_resumes_and_decodes(tokenized, dataset, model_dir,
                                                                                   codec, tmp_path, capsys):
    import shutil

    from codec12._dataclass_io import non_default
    from codec12._hash_format1 import format1_hashes
    from codec12.data.detokenize import detokenize_dataset

    old = tmp_path / "old"
    shutil.copytree(tokenized, old)
    meta = json.loads((old / META_NAME).read_text())
    assert meta["config_hash_format"] == 2
    # As datasets made before config_hash_format hold it: a format-1 hash (this one counts the training-only
    # quantizer settings, as the first versions did), no config_hash_format.
    legacy = format1_hashes(non_default(codec.config))[1]
    assert legacy != meta["config_hash"]
    del meta["config_hash_format"]
    (old / META_NAME).write_text(json.dumps({**meta, "config_hash": legacy}))
    (old / META_NAME).write_text(json.dumps({**meta, "config_hash": legacy, "config_hash_format": 2}))
    with pytest.raises(ValueError, match="tokenized with model"):  # read as a format-2 hash, it names no model
        detokenize_dataset(old, tmp_path / "refused", codec, progress=False)
    (old / META_NAME).write_text(json.dumps({**meta, "config_hash": legacy}))
    assert main(["tokenize", str(dataset), "--out", str(old), "--model", str(model_dir), "--latents", "--quiet",
                 "--workers", "0", "--device", "cpu", *LONG_ARGS]) == 0
    assert "0 ok, 0 failed, 11 skipped" in capsys.readouterr().err
    assert "config_hash_format" not in read_meta(old)  # the dataset keeps the hash it was made with
    assert main(["detokenize", str(old), "--out", str(tmp_path / "wavs"), "--quiet", "--device", "cpu"]) == 0
    assert len(list((tmp_path / "wavs").rglob("*.wav"))) == len(GOOD)


def test_progress_postfix_formats_the_rate():
    assert progress_postfix(36.0, 1.0, 2) == "0.01 audio-h/s (36x real time), 2 failed"
    assert progress_postfix(7200.0, 4.0, 0) == "0.5 audio-h/s (1.8e+03x real time), 0 failed"
    assert progress_postfix(0.0, 0.0, 0) == "0 audio-h/s (0x real time), 0 failed"


def test_progress_bar_shows_the_rate_while_running(dataset, codec, tmp_path, monkeypatch):
    """Files are encoded in pools, long after they are read: the rate must count what is finished, each time the
    bar moves, not stay at 0 until the end."""
    import tqdm

    shown = []

    class Bar(tqdm.tqdm):
        def set_postfix_str(self, s="", refresh=True):
            shown.append((self.n, s))
            super().set_postfix_str(s, refresh)

    monkeypatch.setattr(tqdm, "tqdm", Bar)
    inputs = discover_inputs(dataset)
    summary = tokenize_dataset(inputs, tmp_path / "tok", codec, TokenizeOptions(progress=True, batch_size=2))
    assert summary.ok == len(GOOD) and len(shown) == len(inputs)  # once per finished file, failed ones too
    rates = [float(s.split()[0]) for _, s in shown]
    assert sum(r > 0 for r in rates) >= len(GOOD) and rates[-1] > 0


def test_the_dataset_names_still_import_from_the_tokenize_module():
    from codec12.data import dataset_format, detokenize, tokenize

    for name in ("META_NAME", "ERRORS_NAME", "ErrorLog", "ShardWriter", "completed_ids", "dataset_meta",
                 "ensure_meta", "failed_ids", "read_meta", "read_tokenized", "shard_paths"):
        assert getattr(tokenize, name) is getattr(dataset_format, name)
    for name in ("DetokenizeSummary", "detokenize_dataset"):
        assert getattr(tokenize, name) is getattr(detokenize, name)
    assert set(tokenize.__all__) <= set(dir(tokenize))
