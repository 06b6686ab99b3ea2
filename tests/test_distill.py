"""Semantic distillation: tiny random SSL teachers, the phonetic CTC teacher, and the semantic measure."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import speechlike, tiny_codec
from transformers import (
    HubertConfig,
    HubertModel,
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2Model,
    WavLMConfig,
    WavLMModel,
)

from codec12 import cli
from codec12.distill import (
    PHONE_INVENTORY,
    PhoneticDistiller,
    SSLDistiller,
    build_distiller,
    distill_config_from_dict,
    ipa_to_phones,
)
from codec12.distill.measure import (
    code_measure,
    ctc_frame_labels,
    intervals_to_frames,
    measure_codes,
    read_alignments,
)
from codec12.distill.phonetic import PHONE_INDEX, PhoneticDistillConfig
from codec12.distill.ssl import pooling_matrix, teacher_frame_centers

TEACHERS = {"wavlm": (WavLMConfig, WavLMModel), "hubert": (HubertConfig, HubertModel),
            "wav2vec2": (Wav2Vec2Config, Wav2Vec2Model)}
HAVE_ESPEAK = shutil.which("espeak-ng") is not None
needs_espeak = pytest.mark.skipif(not HAVE_ESPEAK, reason="espeak-ng not installed (apt-get install espeak-ng)")


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: one thread is faster than two, by far when the cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tiny_teacher_kwargs(pos_kernel: int = 16) -> dict:
    return dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                conv_dim=(16,) * 7, num_conv_pos_embeddings=pos_kernel, num_conv_pos_embedding_groups=2)


@pytest.fixture(scope="module")
def teacher_dirs(tmp_path_factory):
    """One tiny random checkpoint directory per SSL family (no downloads)."""
    dirs = {}
    for name, (config_cls, model_cls) in TEACHERS.items():
        torch.manual_seed(0)
        d = tmp_path_factory.mktemp(name)
        model_cls(config_cls(**_tiny_teacher_kwargs())).save_pretrained(d)
        dirs[name] = str(d)
    # A wav2vec2 with a 2-frame positional conv: layer 0 is then local in time, so alignment is visible.
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("local")
    # (per-channel layer norm, not the group norm over time of wav2vec2-base, and no utterance normalization).
    Wav2Vec2Model(Wav2Vec2Config(**_tiny_teacher_kwargs(pos_kernel=2), feat_extract_norm="layer")).save_pretrained(d)
    Wav2Vec2FeatureExtractor(do_normalize=False, sampling_rate=16000).save_pretrained(d)
    dirs["local"] = str(d)
    return dirs


def _wav(codec, frames: int, batch: int = 2, seed: int = 0) -> torch.Tensor:
    x = [speechlike(frames * codec.frame_size / codec.sample_rate, codec.sample_rate, seed=seed + i)[:, 0]
         for i in range(batch)]
    return torch.from_numpy(np.stack(x))[:, None]


# ---- SSL teachers
@pytest.mark.parametrize("name", sorted(TEACHERS))
@pytest.mark.parametrize("sample_rate", [16000, 24000])
def test_teacher_features_on_codec_frames(teacher_dirs, name, sample_rate):
    codec = tiny_codec(sample_rate=sample_rate)
    distiller = build_distiller({"teacher": "ssl", "model": teacher_dirs[name], "layer": 2}, codec)
    wav = _wav(codec, 9)
    feats = distiller.teacher_features(wav, 9)
    assert feats.shape == (2, 32, 9)
    assert torch.isfinite(feats).all()
    # The teacher sees 16 kHz audio whatever the codec rate: 50 Hz frames, four per 80 ms codec frame.
    hidden, samples = distiller.teacher.hidden(wav, sample_rate)
    assert samples == 9 * 1280
    centers = teacher_frame_centers(distiller.teacher.model, hidden.shape[1], samples, 16000)
    weights = pooling_matrix(centers, 9, 0.08)
    assert torch.allclose(weights.sum(dim=1), torch.ones(9))
    for i in range(9):
        used = centers[weights[i] > 0]
        assert ((used >= i * 0.08) & (used < (i + 1) * 0.08)).all()
        assert len(used) == 4 or (i == 8 and 1 <= len(used) <= 4)
    out = codec.train()(wav)
    losses = distiller(wav, out, {})
    assert set(losses) == {"distill_cosine"} and 0.0 <= losses["distill_cosine"].item() <= 2.0


@pytest.mark.parametrize("sample_rate", [16000, 24000])
def test_teacher_frames_line_up_with_codec_frames(teacher_dirs, sample_rate):
    """A burst filling codec frame k changes the pooled teacher features most at frame k."""
    codec = tiny_codec(sample_rate=sample_rate)
    distiller = build_distiller({"teacher": "ssl", "model": teacher_dirs["local"], "layer": 0}, codec)
    frames, f = 12, codec.frame_size
    quiet = 0.001 * torch.randn(1, 1, frames * f, generator=torch.Generator().manual_seed(0))
    base = distiller.teacher_features(quiet, frames)
    for k in (2, 5, 9):
        loud = quiet.clone()
        loud[..., k * f:(k + 1) * f] += 0.5 * torch.randn(1, 1, f, generator=torch.Generator().manual_seed(k))
        change = (distiller.teacher_features(loud, frames) - base).norm(dim=1)[0]
        assert int(change.argmax()) == k
        assert change[k] > 2 * max(change[k - 2], change[k + 2])


def test_pooling_matrix_averages_by_center():
    centers = torch.tensor([0.01, 0.03, 0.07, 0.12, 0.30], dtype=torch.float64)
    w = pooling_matrix(centers, 4, 0.08)
    assert torch.allclose(w[0], torch.tensor([1 / 3, 1 / 3, 1 / 3, 0, 0]))
    assert torch.allclose(w[1], torch.tensor([0.0, 0, 0, 1, 0]))
    assert torch.allclose(w[2], torch.tensor([0.0, 0, 0, 1, 0]))  # empty frame -> nearest teacher frame (0.12)
    assert torch.allclose(w[3], torch.tensor([0.0, 0, 0, 0, 1]))


def test_layer_average(teacher_dirs):
    codec = tiny_codec()
    wav = _wav(codec, 5)
    feats = {}
    for layer in (1, 2, (1, 2)):
        d = build_distiller({"teacher": "ssl", "model": teacher_dirs["hubert"], "layer": layer}, codec)
        feats[layer] = d.teacher_features(wav, 5)
    assert torch.allclose(feats[(1, 2)], (feats[1] + feats[2]) / 2, atol=1e-5)
    assert not torch.allclose(feats[1], feats[2])


def test_teacher_is_frozen_and_never_saved(teacher_dirs):
    codec = tiny_codec()
    distiller = build_distiller({"teacher": "ssl", "model": teacher_dirs["wavlm"], "layer": [1, 2]}, codec)
    teacher = distiller.teacher.model
    assert all(not p.requires_grad for p in teacher.parameters())
    assert set(distiller.state_dict()) == {"projection.weight", "projection.bias"}
    assert {id(p) for p in distiller.parameters()} == {id(distiller.projection.weight), id(distiller.projection.bias)}
    teacher_ids = {id(p) for p in teacher.parameters()}
    assert not teacher_ids & {id(p) for p in codec.parameters()}
    assert not any(k.startswith(("teacher", "distill")) for k in codec.state_dict())
    distiller.train()
    assert not teacher.training
    wav = _wav(codec, 6)
    distiller(wav, codec.train()(wav), {})["distill_cosine"].backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert distiller.projection.weight.grad is not None
    assert any(p.grad is not None for p in codec.encoder.parameters())  # the student learns through semantic
    distiller.double()
    assert next(teacher.parameters()).dtype == torch.float64  # .to()/.double() reach the out-of-tree teacher


def _encoder_side(codec, wav):
    """What a distiller reads of ``codec(wav)``, without running the decoder (it is not in the loss graph)."""
    return SimpleNamespace(semantic=codec.quantizer(codec.encode_latents_side(wav)).semantic)


def test_distillation_loss_decreases(teacher_dirs):
    codec = tiny_codec(seed=1).train()
    distiller = build_distiller({"teacher": "ssl", "model": teacher_dirs["wav2vec2"], "layer": 2}, codec)
    wav = _wav(codec, 6, batch=2, seed=3)
    opt = torch.optim.Adam([*codec.parameters(), *distiller.parameters()], lr=1e-2)
    history = []
    for _ in range(8):
        loss = distiller(wav, _encoder_side(codec, wav), {})["distill_cosine"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    assert history[-1] < 0.7 * history[0], history


def test_distill_config_errors(teacher_dirs, tmp_path):
    codec = tiny_codec()
    with pytest.raises(ValueError, match="unknown keys.*'layers'"):
        distill_config_from_dict({"teacher": "ssl", "model": "x/y", "layers": 3})
    with pytest.raises(ValueError, match="teacher must be one of"):
        distill_config_from_dict({"teacher": "whisper"})
    with pytest.raises(ValueError, match="model is required"):
        distill_config_from_dict({"teacher": "ssl"})
    with pytest.raises(ValueError, match="layer"):
        distill_config_from_dict({"teacher": "ssl", "model": "x/y", "layer": -1})
    with pytest.raises(ValueError, match="unknown keys.*'model'"):
        distill_config_from_dict({"teacher": "phonetic", "model": "x/y"})
    with pytest.raises(ValueError, match=r"out of range.*0\.\.2"):
        build_distiller({"teacher": "ssl", "model": teacher_dirs["wavlm"], "layer": 3}, codec)
    with pytest.raises(ValueError, match="not a model directory"):
        build_distiller({"teacher": "ssl", "model": str(tmp_path / "missing")}, codec)
    with pytest.raises(ValueError, match="no config.json"):
        build_distiller({"teacher": "ssl", "model": str(tmp_path)}, codec)
    assert isinstance(build_distiller({"teacher": "ssl", "model": teacher_dirs["wavlm"], "layer": 1}, codec),
                      SSLDistiller)


# ---- phonetic teacher
def test_ipa_to_phones_inventory():
    assert len(set(PHONE_INVENTORY)) == len(PHONE_INVENTORY) and PHONE_INVENTORY[0] == "<blank>"
    assert ipa_to_phones("həlˈoʊ wˈɜːld") == ["h", "ə", "l", "oʊ", "w", "ɜː", "l", "d"]
    assert ipa_to_phones("tʃˈiːp dʒˈʌdʒ") == ["tʃ", "iː", "p", "dʒ", "ʌ", "dʒ"]
    assert ipa_to_phones("pr̝̊ˈiːliʃ") == ["p", "r̝", "iː", "l", "i", "ʃ"]  # Czech ř, devoicing mark dropped
    assert ipa_to_phones("bˈʌʔn̩ ɪː") == ["b", "ʌ", "ʔ", "n", "ɪ"]  # syllabic mark dropped, ɪː folds to ɪ
    assert ipa_to_phones("a ʘ, b!") == ["a", "spn", "b"]  # a click: outside the inventory


@needs_espeak
def test_phonemizer_espeak():
    distiller = build_distiller({"teacher": "phonetic", "language": "en-us"}, tiny_codec())
    (ids,) = distiller.targets({"text": ["Hello world"]})
    assert [PHONE_INVENTORY[i] for i in ids] == ["h", "ə", "l", "oʊ", "w", "ɜː", "l", "d"]
    nl = distiller.targets({"text": ["goedemorgen"], "language": ["nl"]})[0]
    assert PHONE_INDEX["ɣ"] in nl
    # punctuation only has no phones: no target (an empty CTC target would teach "speech is silence")
    assert distiller.targets({"text": ["...!"]}) == [None]
    phonemizer = distiller.phonemizers["en-us"]
    assert phonemizer("Hello world") is phonemizer("Hello world")  # cached
    with pytest.raises(ValueError, match="espeak-ng -v xx-nonexistent"):
        build_distiller({"teacher": "phonetic", "language": "xx-nonexistent"}, tiny_codec())


@needs_espeak
def test_phonetic_ctc_head_learns_a_transcript():
    codec = tiny_codec(seed=2).train()
    distiller = build_distiller({"teacher": "phonetic", "language": "en-us", "hidden": 32}, codec)
    assert isinstance(distiller, PhoneticDistiller)
    assert set(k.split(".")[0] for k in distiller.state_dict()) == {"head"}
    wav = _wav(codec, 6, batch=2)
    batch = {"text": ["the cat sat", "a dog"]}
    opt = torch.optim.Adam([*codec.parameters(), *distiller.parameters()], lr=1e-2)
    history = []
    for _ in range(10):
        loss = distiller(wav, _encoder_side(codec, wav), batch)["distill_ctc"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    assert all(np.isfinite(history)) and history[-1] < 0.6 * history[0], history
    # Forced alignment of the learned head gives frame labels drawn from the transcript.
    with torch.no_grad():
        log_probs = distiller.head(_encoder_side(codec.eval(), wav).semantic)[0]
    target = distiller.targets(batch)[0]
    labels = ctc_frame_labels(log_probs, target, 4, PHONE_INVENTORY)
    assert len(labels) == 6
    seen = [x for x in labels if x is not None]
    assert seen and set(seen) <= {PHONE_INVENTORY[i] for i in target}


def test_phonetic_batch_errors_and_missing_transcripts():
    distiller = PhoneticDistiller(PhoneticDistillConfig(hidden=8), 32, phonemizer=lambda text: ("a", "b"))
    codec = tiny_codec().train()
    wav = _wav(codec, 4)
    out = codec(wav)
    with pytest.raises(ValueError, match=r"batch\['text'\]"):
        distiller(wav, out, {})
    loss = distiller(wav, out, {"text": [None, None]})["distill_ctc"]
    assert loss.item() == 0.0 and loss.requires_grad
    assert distiller(wav, out, {"text": ["x", None]})["distill_ctc"].item() > 0
    with pytest.raises(ValueError, match="odd"):
        PhoneticDistillConfig(kernel_size=4)


# ---- semantic measure
def test_code_measure_known_answers():
    rng = np.random.default_rng(0)
    phones = rng.choice(["a", "b", "c", "d", "e"], size=20000, p=[0.4, 0.2, 0.2, 0.1, 0.1])
    ids = np.unique(phones, return_inverse=True)[1]
    exact = code_measure(ids * 7 + 3, phones)  # codes are a relabelling of the phones
    assert exact.pnmi == pytest.approx(1.0) and exact.purity == pytest.approx(1.0)
    split = code_measure(ids * 2 + rng.integers(0, 2, size=ids.shape), phones)  # two codes per phone
    assert split.pnmi == pytest.approx(1.0) and split.purity == pytest.approx(1.0)
    noise = code_measure(rng.integers(0, 16, size=ids.shape), phones)
    assert noise.pnmi < 0.01
    assert noise.purity == pytest.approx(noise.purity_baseline, abs=0.02)
    assert noise.purity_baseline == pytest.approx(0.4, abs=0.02)
    merged = code_measure(np.minimum(ids, 2), phones)  # d, e share a code with c: partial information
    assert 0.3 < merged.pnmi < 0.95 and merged.purity == pytest.approx(0.8, abs=0.02)
    with pytest.raises(ValueError, match="differ in length"):
        code_measure([1, 2], ["a"])


def test_intervals_and_alignment_file(tmp_path):
    labels = intervals_to_frames([[0.0, 0.1, "sil"], [0.1, 0.12, "h"], [0.12, 0.30, "a"]], num_frames=5)
    assert labels == ["sil", "a", "a", "a", None]  # frame 1 [0.08, 0.16): a overlaps 0.04, h and sil 0.02
    path = tmp_path / "align.jsonl"
    path.write_text(json.dumps({"id": "u", "audio": "u.wav", "phones": ["a", None, "b"]}) + "\n\n")
    (item,) = read_alignments(path)
    assert item.audio == tmp_path / "u.wav" and item.labels == ["a", None, "b"]
    path.write_text('{"audio": "u.wav", "phones": [], "intervals": []}\n')
    with pytest.raises(ValueError, match=r"align.jsonl:1: give exactly one"):
        read_alignments(path)
    path.write_text("{not json\n")
    with pytest.raises(ValueError, match=r"align.jsonl:1: not JSON"):
        read_alignments(path)
    codes = [torch.tensor([[0, 1, 2, 3], [5, 5, 5, 5]])]
    rows = measure_codes(codes, [["a", "b", None, "c", "d"]])  # labels longer than codes: cut
    assert rows[0].num_frames == 3 and rows[0].pnmi == pytest.approx(1.0) and rows[1].pnmi == pytest.approx(0.0)


def test_ctc_frame_labels_constructed():
    # Emissions that clearly say: blank, phone 5 twice, blank, phone 7 four times (upsample 2).
    path = [0, 5, 5, 0, 7, 7, 7, 7]
    log_probs = torch.full((8, 10), -10.0)
    log_probs[torch.arange(8), path] = 0.0
    assert ctc_frame_labels(log_probs.log_softmax(-1), [5, 7], 2) == ["5", "5", "7", "7"]


def test_semantic_measure_cli(tmp_path, capsys):
    codec = tiny_codec()
    codec.save_pretrained(tmp_path / "model")
    lines = []
    for i in range(3):
        sf.write(tmp_path / f"u{i}.wav", speechlike(1.0, 16000, seed=i), 16000)
        lines.append({"id": f"u{i}", "audio": f"u{i}.wav", "phones": ["a", "b", "c"] * 4 + ["a"]})
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    lines.append({"id": "bad", "audio": "bad.wav", "phones": ["a"]})
    align = tmp_path / "align.jsonl"
    align.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = tmp_path / "report.json"
    assert cli.main(["semantic-measure", str(align), "--model", str(tmp_path / "model"), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["num_files"] == 3 and len(report["errors"]) == 1 and "bad.wav" in report["errors"][0]["audio"]
    assert set(report["rows"]) == {"0", "1"} and report["rows"]["0"]["num_frames"] == 39
    assert 0.0 <= report["rows"]["0"]["pnmi"] <= 1.0
    assert "semantic" in capsys.readouterr().out
    assert cli.main(["semantic-measure", str(align), "--model", str(tmp_path / "model"), "--out", str(out)]) == 1
    assert cli.main(["semantic-measure", str(align), "--model", str(tmp_path / "model"), "--rows", "9"]) == 1
