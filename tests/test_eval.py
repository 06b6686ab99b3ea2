"""codec12.eval: metrics, delay compensation, baselines, the harness and ``codec12 eval``."""

from __future__ import annotations

import csv
import json
import re
import shutil
import sys
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF
from conftest import speechlike, tiny_codec

from codec12._optional import MissingExtra
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
from codec12.eval.harness import equal_bitrate, spread, summarize
from codec12.eval.metrics import MetricUnavailable
from codec12.eval.report import DB_RANGE, inline_html, markdown_table, rate_quality_figure, spectrogram_figure
from codec12.eval.systems import ModelSystem, opus_payload_bytes

SR = 16000


def degrade(wav: np.ndarray) -> np.ndarray:
    """A known-worse copy: low-passed at 2 kHz plus noise at about 10 dB SNR."""
    low = AF.lowpass_biquad(torch.from_numpy(wav), SR, 2000.0).numpy()
    noise = np.random.default_rng(0).standard_normal(len(wav)).astype(np.float32)
    return low + noise * (np.std(wav) / 3)


@pytest.fixture
def close_figures():
    yield
    plt.close("all")


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
    assert page.count("<audio") == 2 * 3 and page.count("<img") == 2 + 1  # the examples and the rate-quality plot
    assert "`" not in page and "**" not in page  # the notes' Markdown is rendered, not shown raw
    assert "<code>broken.wav</code>" in page and "<code>x (n/N)</code>" in page
    for ex in result.examples:
        assert (out / ex["spectrogram"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        for rel in ex["audio"].values():
            assert sf.info(str(out / rel)).samplerate == SR

    # Per-file scores in the HTML: one table per system with every scored file; the short clip's PESQ cell is empty
    # and its row gives the reason.
    sections = re.findall(r"<details><summary>([^<]*): (\d+) files</summary>(.*?)</details>", page, re.S)
    assert [(name, int(n)) for name, n, _ in sections] == [("original", 4), ("clean", 4), ("degraded", 4)]
    for _, _, body in sections:
        assert sorted(re.findall(r"<tr><td>([^<]+)</td>", body)) == ["a.wav", "c.wav", "short.wav", "sub/b.flac"]
    short_row = re.search(r"<tr><td>short\.wav</td>.*?</tr>", sections[2][2]).group(0)
    assert "<td></td>" in short_row and "PESQ" in short_row

    # The spread in summary.json is the one of the per-file values in metrics.csv.
    for name in result.systems:
        for metric in CORE_METRICS:
            values = [float(r[metric]) for r in rows if r["system"] == name and r[metric]]
            m = s[name]["metrics"][metric]
            assert m["mean"] == pytest.approx(np.mean(values), rel=1e-5, abs=1e-6), (name, metric)
            assert m["std"] == pytest.approx(np.std(values, ddof=1), rel=1e-4, abs=1e-6), (name, metric)


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
    assert summary["rate_tolerance"] == 0.1
    # Several codebook counts: the report has the rate-quality plot, in both formats.
    assert (out / "rate_quality.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "](rate_quality.png)" in (out / "report.md").read_text()
    assert "<img src='rate_quality.png'" in (out / "report.html").read_text()

    assert main(args) == 1  # refuses to overwrite a report
    assert "pass -f" in capsys.readouterr().err
    assert main(args[:-1] + ["--baselines", "codec2-9999", "-f"]) == 1
    assert "unknown baseline 'codec2-9999'" in capsys.readouterr().err
    assert main(args[:-1] + ["--rate-tolerance", "150", "-f"]) == 1
    assert "--rate-tolerance: expected a percentage in [0, 100), got 150" in capsys.readouterr().err
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


def test_spread_is_the_mean_and_the_t_interval_over_the_files():
    # By hand: the deviations from the mean 3 are -2, -1, 0, 3, so std = sqrt(14 / 3) = 2.1602; with t(0.975, 3)
    # = 3.1824 (from the tables) the 95% CI half-width is 3.1824 * 2.1602 / sqrt(4) = 3.4374.
    got = spread([1.0, 2.0, 3.0, 6.0])
    assert got["mean"] == 3.0
    assert got["std"] == pytest.approx(2.16025, abs=1e-5)
    assert got["ci95"] == pytest.approx(3.4374, abs=1e-4)
    assert spread([0.7]) == {"mean": 0.7, "std": None, "ci95": None}
    assert spread([]) == {"mean": None, "std": None, "ci95": None}

    # Over the files the metric scored (one of five was not), shown as mean ± CI (n/N) under a header saying so.
    base = {"system": "x", "duration_s": 1.0, "bitrate_kbps": 1.0, "delay_ms": 0.0}
    rows = [{**base, "file": f"f{i}", "mel_distance": v} for i, v in enumerate([1.0, 2.0, 3.0, 6.0])]
    rows.append({**base, "file": "f4"})
    summary = summarize(rows, ["x"], ["mel_distance"])
    m = summary["systems"]["x"]["metrics"]["mel_distance"]
    assert (m["mean"], m["count"], m["not_covered"]) == (3.0, 4, 1)
    assert m["ci95"] == pytest.approx(3.4374, abs=1e-4)
    md = markdown_table(SimpleNamespace(systems=["x"], metrics=["mel_distance"], summary={**summary,
                                                                                          "rate_tolerance": 0.1}))
    assert md.splitlines()[0] == "| system | kbps | same bitrate (±10%) | files | mel dist ↓ (mean ± 95% CI) |"
    assert md.splitlines()[2] == "| x | 1.00 | – | 5 | 3.000 ± 3.437 (4/5) |"


def test_equal_bitrate_pairs_baselines_with_model_settings_within_the_tolerance():
    def entry(kind, kbps):
        return {"kind": kind, "bitrate_kbps": kbps}

    systems = {"original": entry("reference", 1.0), "m-4cb": entry("model", 1.0), "m-8cb": entry("model", 2.0),
               "m-continuous": entry("model", 50.0),
               "edge": entry("baseline", 1.1),  # exactly 10% above m-4cb: in
               "above": entry("baseline", 1.12),  # 12% above m-4cb, 44% below m-8cb: neither
               "below": entry("baseline", 1.85),  # 7.5% below m-8cb
               "far": entry("baseline", 6.0), "failed": entry("baseline", None)}
    assert equal_bitrate(systems, 0.1) == {
        "original": [], "m-4cb": ["edge"], "m-8cb": ["below"], "m-continuous": [], "edge": ["m-4cb"], "above": [],
        "below": ["m-8cb"], "far": [], "failed": []}
    # Relative to the model's bitrate: at 50%, m-8cb (2.0) reaches down to 1.0 and m-4cb (1.0) up to 1.5.
    wide = equal_bitrate(systems, 0.5)
    assert wide["m-4cb"] == ["edge", "above"] and wide["m-8cb"] == ["edge", "above", "below"]
    assert wide["above"] == ["m-4cb", "m-8cb"] and wide["original"] == [] and wide["far"] == []
    assert equal_bitrate(systems, 0.0)["m-4cb"] == []


def test_report_marks_baselines_at_the_model_bitrate(data_dir, tmp_path, close_figures):
    codec = tiny_codec()
    rate = codec.bitrate_at(4)
    systems = [ModelSystem(codec, 1), ModelSystem(codec, 4), FunctionSystem("near", degrade, bitrate=1.05 * rate),
               FunctionSystem("double", degrade, bitrate=2 * rate)]
    result = evaluate(data_dir, systems, tmp_path / "out", metrics=("si_sdr", "mel_distance"), num_examples=0)
    s = result.summary["systems"]
    one, four = "tiny-16000-rvq-shared-1cb", "tiny-16000-rvq-shared-4cb"
    assert (s[four]["kind"], s[four]["num_codebooks"], s["near"]["kind"]) == ("model", 4, "baseline")
    assert s["original"]["kind"] == "reference"
    # 4 codebooks spend the nominal rate plus each file's padding to whole frames (2.6% here); "near" 5% more.
    assert abs(s["near"]["bitrate_kbps"] - s[four]["bitrate_kbps"]) < 0.1 * s[four]["bitrate_kbps"]
    assert s[four]["equal_bitrate"] == ["near"] and s["near"]["equal_bitrate"] == [four]
    assert s[one]["equal_bitrate"] == s["double"]["equal_bitrate"] == s["original"]["equal_bitrate"] == []
    md = (tmp_path / "out" / "report.md").read_text()
    assert f"| {four} | {s[four]['bitrate_kbps']:.2f} | near | 4 |" in md
    assert f"| near | {s['near']['bitrate_kbps']:.2f} | {four} | 4 |" in md
    assert f"| double | {s['double']['bitrate_kbps']:.2f} | – | 4 |" in md
    assert "at most 10% of the model's" in md and "no row compares at equal bitrate" not in md

    fig = rate_quality_figure(s, result.metrics)
    assert len(fig.axes) == 2
    for ax in fig.axes:
        curve = {c.get_label(): c for c in ax.containers}["tiny-16000-rvq-shared (codebooks)"]
        assert list(curve.lines[0].get_xdata()) == [s[one]["bitrate_kbps"], s[four]["bitrate_kbps"]]


def test_rate_quality_plot_joins_the_model_settings_and_labels_each_baseline(close_figures):
    def entry(kind, kbps, k, stoi, ci):
        return {"kind": kind, "num_codebooks": k, "bitrate_kbps": kbps,
                "metrics": {"stoi": {"mean": stoi, "ci95": ci}, "mel_distance": {"mean": 1 - stoi, "ci95": None}}}

    systems = {"original": entry("reference", 256.0, None, 1.0, 0.0), "m-8cb": entry("model", 1.0, 8, 0.80, 0.02),
               "m-4cb": entry("model", 0.5, 4, 0.70, 0.03), "m-12cb": entry("model", 1.5, 12, 0.85, 0.01),
               "codec2-3200": entry("baseline", 3.2, None, 0.77, 0.04),
               "opus-6k": entry("baseline", 5.7, None, 0.86, None)}
    fig = rate_quality_figure(systems, ["stoi", "mel_distance"])
    assert [ax.get_title() for ax in fig.axes] == ["STOI ↑", "mel dist ↓"]
    for ax, metric in zip(fig.axes, ["stoi", "mel_distance"], strict=True):
        series = {c.get_label(): c for c in ax.containers}
        assert set(series) == {"m (codebooks)", "codec2-3200", "opus-6k"}  # the reference is left out
        line = series["m (codebooks)"].lines[0]
        assert list(line.get_xdata()) == [0.5, 1.0, 1.5]  # one point per codebook count, in order
        assert list(line.get_ydata()) == [systems[n]["metrics"][metric]["mean"] for n in ("m-4cb", "m-8cb",
                                                                                           "m-12cb")]
        assert list(series["opus-6k"].lines[0].get_xdata()) == [5.7]
        assert {t.get_text() for t in ax.texts} == {"4", "8", "12", "codec2-3200", "opus-6k"}
        assert ax.get_xlabel() == "bitrate (kbps)" and ax.get_xscale() == "linear"
    # STOI's bars span the 95% CI around each mean.
    bars = {c.get_label(): c.lines[2][0].get_segments() for c in fig.axes[0].containers}
    np.testing.assert_allclose(bars["m (codebooks)"][0], [[0.5, 0.67], [0.5, 0.73]])
    np.testing.assert_allclose(bars["codec2-3200"][0], [[3.2, 0.73], [3.2, 0.81]])

    # The continuous mode is a point of its own; across more than a factor of 20 in bitrate the axis is logarithmic.
    systems["m-continuous"] = entry("model", 52.0, None, 0.9, 0.01)
    fig = rate_quality_figure(systems, ["stoi"])
    (ax,) = fig.axes
    assert {c.get_label() for c in ax.containers} == {"m (codebooks)", "codec2-3200", "opus-6k", "m-continuous"}
    assert "continuous" in {t.get_text() for t in ax.texts} and ax.get_xscale() == "log"


def test_spectrogram_panels_share_a_fixed_db_scale_with_a_colour_bar(close_figures):
    # A full-scale sine on an STFT bin (1 kHz = 32 x 31.25 Hz) peaks at exactly 0 dB; at 1% of full scale, -40 dB.
    sine = np.sin(2 * np.pi * 1000 * np.arange(SR) / SR).astype(np.float32)
    fig = spectrogram_figure({"original": sine, "quiet": 0.01 * sine, "silent": np.zeros_like(sine)}, title="t")
    panels = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title(loc="left") for ax in panels] == ["original", "quiet", "silent"]
    images = [ax.images[0] for ax in panels]
    assert all(im.get_clim() == DB_RANGE for im in images)  # one fixed scale for every panel
    peaks = [float(im.get_array().max()) for im in images]
    assert peaks[0] == pytest.approx(0.0, abs=1e-3) and peaks[1] == pytest.approx(-40.0, abs=1e-3)
    assert peaks[2] < DB_RANGE[0]  # silence is below the scale, not -inf
    colorbar = images[-1].colorbar
    assert colorbar is not None and fig.axes == panels + [colorbar.ax]  # one colour bar, beside the panels
    assert colorbar.ax.get_ylabel() == "level (dB re full scale)"
    assert (colorbar.vmin, colorbar.vmax) == DB_RANGE
    assert panels[-1].get_xlabel() == "time (s)" and all(ax.get_ylabel() == "freq. (kHz)" for ax in panels)
    assert list(images[0].get_extent()) == [0.0, 1.0, 0.0, 8.0]


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


def test_confidence_intervals_without_scipy_name_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy.stats", None)
    with pytest.raises(MissingExtra, match=r"needs scipy, .* pip install 'codec12\[eval\]'"):
        spread([1.0, 2.0])


@pytest.mark.parametrize(("metric", "module"), [("speaker_similarity", "resemblyzer"), ("dnsmos", "speechmos"),
                                                ("wer", "jiwer")])
def test_a_missing_optional_metric_names_the_extra(metric, module, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(MetricUnavailable, match=r"pip install 'codec12\[metrics\]'"):
        METRICS[metric].load()
