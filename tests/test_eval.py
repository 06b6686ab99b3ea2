"""codec12.eval: metrics, delay compensation, baselines, the harness and ``codec12 eval``."""

from __future__ import annotations

import csv
import json
import shutil
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF
from conftest import speechlike, tiny_codec

from codec12.cli import main
from codec12.eval import (
    BASELINES,
    CORE_METRICS,
    METRICS,
    FunctionSystem,
    align,
    build_systems,
    estimate_delay,
    evaluate,
    make_baseline,
    read_transcripts,
    si_sdr,
)
from codec12.eval.metrics import MetricUnavailable
from codec12.eval.report import inline_html
from codec12.eval.systems import ModelSystem, opus_payload_bytes

SR = 16000


def degrade(wav: np.ndarray) -> np.ndarray:
    """A known-worse copy: low-passed at 2 kHz plus noise at about 10 dB SNR."""
    low = AF.lowpass_biquad(torch.from_numpy(wav), SR, 2000.0).numpy()
    noise = np.random.default_rng(0).standard_normal(len(wav)).astype(np.float32)
    return low + noise * (np.std(wav) / 3)


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "data"
    (d / "sub").mkdir(parents=True)
    sf.write(str(d / "a.wav"), speechlike(2.0, SR, seed=1), SR)
    sf.write(str(d / "sub" / "b.flac"), speechlike(2.5, 22050, seed=2), 22050)  # other format and rate
    sf.write(str(d / "c.wav"), speechlike(1.5, 24000, seed=3, channels=2), 24000)  # stereo
    sf.write(str(d / "short.wav"), speechlike(0.15, SR, seed=4), SR)  # too short for PESQ and STOI
    (d / "broken.wav").write_bytes(b"RIFF\x00\x00not really a wav file")
    (d / "notes.txt").write_text("not audio, ignored")
    return d


@pytest.mark.parametrize("shift", [0, 37, -120, 801])
def test_delay_compensation_recovers_a_known_shift(shift):
    ref = speechlike(1.0, SR, seed=5)[:, 0]
    deg = np.concatenate([np.zeros(shift, np.float32), ref]) if shift >= 0 else ref[-shift:]
    deg = deg + 0.01 * np.random.default_rng(1).standard_normal(len(deg)).astype(np.float32)
    assert estimate_delay(ref, deg, max_shift=1000) == shift
    aligned, delay = align(ref, deg, max_shift=1000)
    assert delay == shift and aligned.shape == ref.shape
    valid = slice(max(0, -shift), None)  # a leading shift loses the samples that were cut off
    assert si_sdr(ref[valid], aligned[valid]) > 20


def test_si_sdr_is_scale_invariant_and_drops_with_noise():
    ref = speechlike(1.0, SR)[:, 0]
    assert si_sdr(ref, 0.5 * ref) == pytest.approx(100.0)
    assert si_sdr(ref, ref + 0.1 * np.random.default_rng(0).standard_normal(len(ref))) < 20


def test_eval_clean_copy_beats_degraded_copy(data_dir, tmp_path):
    out = tmp_path / "report"
    systems = [FunctionSystem("clean", lambda w: w.copy(), bitrate=256000),
               FunctionSystem("degraded", degrade, bitrate=64000)]
    result = evaluate(data_dir, systems, out, metrics=CORE_METRICS, num_examples=2)

    assert result.systems == ["original", "clean", "degraded"]
    s = result.summary["systems"]
    for name in CORE_METRICS:
        clean, bad = s["clean"]["metrics"][name]["mean"], s["degraded"]["metrics"][name]["mean"]
        better = clean > bad if METRICS[name].higher_is_better else clean < bad
        assert better, f"{name}: clean {clean} vs degraded {bad}"

    # The unreadable file is reported, the text file ignored, the short clip scored where possible and counted.
    assert [b["file"] for b in result.bad_files] == ["broken.wav"]
    assert "not a readable audio file" in result.bad_files[0]["reason"]
    assert result.summary["files"] == 5 and result.summary["files_scored"] == 4
    for name in ("pesq_wb", "stoi", "estoi"):
        m = s["degraded"]["metrics"][name]
        assert (m["count"], m["not_covered"]) == (3, 1), name
    assert s["degraded"]["metrics"]["mel_distance"]["count"] == 4


    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 * 3
    short = [r for r in rows if r["file"] == "short.wav" and r["system"] == "degraded"][0]
    assert short["pesq_wb"] == "" and "PESQ" in short["notes"] and "STOI" in short["notes"]
    assert json.loads((out / "summary.json").read_text())["bad_files"][0]["file"] == "broken.wav"
    md, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    assert "| degraded |" in md and "broken.wav" in md and "broken.wav" in page
    assert page.count("<audio") == 2 * 3 and page.count("<img") == 2
    assert "`" not in page and "**" not in page  # the notes' Markdown is rendered, not shown raw
    assert "<code>broken.wav</code>" in page and "<code>x (n/N)</code>" in page
    for ex in result.examples:
        assert (out / ex["spectrogram"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        for rel in ex["audio"].values():
            assert sf.info(str(out / rel)).samplerate == SR


def test_missing_tools_skip_baselines_with_a_clear_message(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    systems, skipped = build_systems(None, None, BASELINES, tool_path=str(empty))
    assert systems == [] and sorted(skipped) == sorted(BASELINES)
    assert "c2enc not found" in skipped["codec2-3200"] and "apt-get install codec2" in skipped["codec2-3200"]
    assert "opusenc not found" in skipped["opus-6k"] and "opus-tools" in skipped["opus-6k"]
    with pytest.raises(ValueError, match="unknown baseline"):
        make_baseline("mp3-8k")


def test_cli_eval_model_at_several_bitrates_with_baselines_missing(data_dir, tmp_path, monkeypatch, capsys):
    model = tmp_path / "model"
    codec = tiny_codec()
    codec.save_pretrained(model)
    out = tmp_path / "out"
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))  # no codec2 or opus tools
    args = ["eval", "--model", str(model), "--data", str(data_dir), "--out", str(out), "--num-codebooks", "1,4",
            "--metrics", "si_sdr,wer", "--examples", "1", "-q"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "skipping codec2-3200: c2enc not found" in err and "skipping opus-6k" in err
    assert "skipped bad file broken.wav" in err and "metric wer skipped" in err
    summary = json.loads((out / "summary.json").read_text())
    rates = [summary["systems"][f"tiny-16000-rvq-shared-{k}cb"]["bitrate_kbps"] for k in (1, 4)]
    # The bits of the codes written: K rows at 12.5 Hz, plus the padding of each file's last partial frame.
    assert codec.bitrate_at(1) / 1000 <= rates[0] < rates[1] < 1.2 * codec.bitrate_at(4) / 1000
    assert set(summary["skipped_systems"]) == set(BASELINES) and "wer" in summary["skipped_metrics"]
    assert "c2enc not found" in (out / "report.md").read_text()

    assert main(args) == 1  # refuses to overwrite a report
    assert "pass -f" in capsys.readouterr().err
    assert main(args[:-1] + ["--baselines", "codec2-9999", "-f"]) == 1
    assert "unknown baseline 'codec2-9999'" in capsys.readouterr().err
    assert main(["eval", "--no-model", "--data", str(data_dir), "--out", str(tmp_path / "o2"), "-q"]) == 1
    assert "nothing to evaluate" in capsys.readouterr().err


def test_continuous_mode_is_scored_from_float16_latents(data_dir, tmp_path):
    codec = tiny_codec().eval()
    wav = speechlike(1.0, SR, seed=5)[:, 0]
    system = ModelSystem(codec, continuous=True)
    trip = system.roundtrip(wav)

    x = torch.from_numpy(wav)[None, None]
    with torch.no_grad():
        z = codec.encode_latents(x)
        expected = codec.decode_latents(z.half().float())[0, 0, : len(wav)].numpy()
        exact = codec.decode_latents(z)[0, 0, : len(wav)].numpy()
        quantized = codec.decode(codec.encode(x))[0, 0, : len(wav)].numpy()
    np.testing.assert_allclose(trip.audio, expected, atol=1e-6)
    rounding = np.abs(trip.audio - exact).max()
    assert rounding > 0  # the float16 rounding is part of what is scored, and far less than a quantizer's error
    assert np.abs(quantized - exact).max() > 10 * rounding
    assert trip.bits == 16 * codec.latent_dim * z.shape[-1]

    out = tmp_path / "out"
    model = tmp_path / "model"
    codec.save_pretrained(model)
    assert main(["eval", "--model", str(model), "--data", str(data_dir), "--out", str(out), "--num-codebooks",
                 "2", "--continuous", "--baselines", "none", "--metrics", "si_sdr", "--examples", "0", "-q"]) == 0
    systems = json.loads((out / "summary.json").read_text())["systems"]
    assert list(systems) == ["original", "tiny-16000-rvq-shared-2cb", "tiny-16000-rvq-shared-continuous"]
    kbps = 16 * codec.latent_dim * codec.frame_rate / 1000
    assert kbps <= systems["tiny-16000-rvq-shared-continuous"]["bitrate_kbps"] < 1.2 * kbps


def test_read_transcripts(tmp_path):
    (tmp_path / "m.tsv").write_text("file\ttext\na.wav\thello world\nsub/b\tgood bye\n")
    assert read_transcripts(tmp_path / "m.tsv", tmp_path) == {"a.wav": "hello world", "sub/b": "good bye"}
    # paths are relative to the data directory, wherever the manifest is; ids stand in for a path column
    (tmp_path / "m.txt").write_text("id,transcript\nsub/b,good bye\n")
    assert read_transcripts(tmp_path / "m.txt", tmp_path / "data") == {"sub/b": "good bye"}
    (tmp_path / "m.csv").write_text("path,speaker\na.wav,x\n")
    with pytest.raises(ValueError, match="transcript"):
        read_transcripts(tmp_path / "m.csv", tmp_path)


def test_opus_payload_excludes_ogg_container():
    def page(packets: list[bytes]) -> bytes:
        lacing = b"".join(bytes([255] * (len(p) // 255) + [len(p) % 255]) for p in packets)
        return b"OggS" + bytes(22) + bytes([len(lacing)]) + lacing + b"".join(packets)

    ogg = page([b"OpusHead" + bytes(11)]) + page([b"OpusTags" + bytes(300)]) + page([bytes(40), bytes(600)])
    assert opus_payload_bytes(ogg) == 640


@pytest.mark.skipif(not (shutil.which("c2enc") and shutil.which("opusenc")), reason="codec2 / opus-tools missing")
def test_classical_baselines_round_trip(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    sf.write(str(d / "a.wav"), speechlike(2.0, SR, seed=7), SR)
    systems = [make_baseline(name) for name in ("codec2-3200", "opus-6k")]
    result = evaluate(d, systems, tmp_path / "out", metrics=("stoi", "mel_distance"), num_examples=0)
    s = result.summary["systems"]
    assert s["codec2-3200"]["bitrate_kbps"] == pytest.approx(3.2, abs=0.05)
    assert s["opus-6k"]["bitrate_kbps"] == pytest.approx(6.0, abs=1.0)
    for name in ("codec2-3200", "opus-6k"):
        assert s[name]["failed"] == 0
        assert s[name]["metrics"]["stoi"]["mean"] > 0.5, name


def test_inline_markdown_of_the_notes_becomes_html():
    assert inline_html("Metric **speaker_sim** skipped: `a<b>.wav` & more") == \
        "Metric <strong>speaker_sim</strong> skipped: <code>a&lt;b&gt;.wav</code> &amp; more"
    assert inline_html("no markup, 2 * 3") == "no markup, 2 * 3"


@pytest.mark.parametrize(("metric", "module"), [("speaker_similarity", "resemblyzer"), ("dnsmos", "speechmos"),
                                                ("wer", "jiwer")])
def test_a_missing_optional_metric_names_the_extra(metric, module, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(MetricUnavailable, match=r"pip install 'codec12\[metrics\]'"):
        METRICS[metric].load()
