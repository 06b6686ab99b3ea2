import dataclasses
import json

import pytest

from codec12 import CodecConfig, ISTFTDecoderConfig, QuantizerConfig, SEANetConfig, TransformerConfig
from codec12.config import PRESETS
from tests.conftest import tiny_config


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_frame_at_12_5_hz(name):
    cfg = CodecConfig.from_preset(name)
    assert cfg.frame_rate == 12.5
    assert cfg.frame_size == cfg.sample_rate / 12.5
    assert cfg.codebook_sizes[0] == cfg.quantizer.semantic_codebook_size


def test_preset_values():
    mimi = CodecConfig.from_preset("c12-mimi-24k")
    assert mimi.frame_size == 1920 and mimi.codebook_sizes == (2048,) * 32
    assert mimi.bitrate == pytest.approx(4400.0)
    fsq = CodecConfig.from_preset("c12-fsq-24k")
    assert fsq.codebook_sizes == (8192,) + (21,) * 36 and fsq.num_codebooks == 37
    assert fsq.bitrate == pytest.approx(12.5 * (13 + 36 * 4.392317422778761))  # ~2.14 kbps
    tiny = CodecConfig.from_preset("c12-tiny-16k")
    assert tiny.frame_size == 1280 and tiny.bitrate == pytest.approx(1500.0)


@pytest.mark.parametrize("cfg", [CodecConfig.from_preset("c12-fsq-24k"), tiny_config(24000, "fsq", "concat"),
                                 tiny_config(istft=True)])
def test_json_round_trip(cfg, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(cfg.to_json())
    back = CodecConfig.from_json_file(path)
    assert back == cfg and back.config_hash() == cfg.config_hash()
    assert json.loads(path.read_text())["format_version"] == 1


def test_config_hash_ignores_name_but_not_architecture():
    cfg = tiny_config()
    assert cfg.replace(name="other").config_hash() == cfg.config_hash()
    assert cfg.replace(latent_dim=16, depthwise_upsample=False).config_hash() != cfg.config_hash()
    istft = tiny_config(istft=True)
    assert istft.config_hash() != cfg.config_hash()
    assert istft.replace(istft=dataclasses.replace(istft.istft, n_fft=160)).config_hash() != istft.config_hash()
    # Without the optional decoder block, a config is written (and hashed) as before the block existed.
    assert "istft" not in cfg.to_dict() and istft.to_dict()["istft"]["n_fft"] == 320
    # Likewise the decoder's phase option: "direct" (the default) is left out, "integrated" is written and hashed.
    assert "phase" not in istft.to_dict()["istft"]
    integrated = tiny_config(istft=True, istft_phase="integrated")
    assert integrated.to_dict()["istft"]["phase"] == "integrated"
    assert integrated.config_hash() != istft.config_hash()
    assert CodecConfig.from_dict(integrated.to_dict()) == integrated


def test_hashes_recorded_by_earlier_versions_still_match():
    # Before training-only settings were left out of config_hash, files recorded these (computed with that
    # version's code for the presets).
    tiny, mimi = CodecConfig.from_preset("c12-tiny-16k"), CodecConfig.from_preset("c12-mimi-24k")
    assert tiny.hash_matches("34383b762bf38313") and mimi.hash_matches("a84e3ab01042fbe2")
    assert tiny.hash_matches(tiny.config_hash()) and tiny.config_hash() != "34383b762bf38313"
    assert not tiny.hash_matches("a84e3ab01042fbe2") and not tiny.hash_matches(None)


def test_config_hash_ignores_training_only_quantizer_settings():
    cfg = tiny_config()
    tuned = dataclasses.replace(cfg.quantizer, ema_decay=0.9, unquantized_rate=0.5, level_dropout=False,
                                threshold_ema_dead_code=0.0, kmeans_init=True)
    assert cfg.replace(quantizer=tuned).config_hash() == cfg.config_hash()
    resized = dataclasses.replace(cfg.quantizer, semantic_codebook_size=cfg.quantizer.semantic_codebook_size * 2)
    assert cfg.replace(quantizer=resized).config_hash() != cfg.config_hash()


def test_unknown_keys_are_named():
    data = tiny_config().to_dict()
    data["quantizer"]["codebook_sise"] = 3
    with pytest.raises(ValueError, match="codebook_sise"):
        CodecConfig.from_dict(data)
    data = tiny_config().to_dict()
    data["samplerate"] = 1
    with pytest.raises(ValueError, match="samplerate"):
        CodecConfig.from_dict(data)


def test_format_version_checked():
    data = tiny_config().to_dict()
    data["format_version"] = 99
    with pytest.raises(ValueError, match="format_version 99"):
        CodecConfig.from_dict(data)
    del data["format_version"]
    with pytest.raises(ValueError, match="format_version"):
        CodecConfig.from_dict(data)


@pytest.mark.parametrize("make, match", [
    (lambda: CodecConfig(sample_rate=16000), "sample_rate / 12.5"),
    (lambda: CodecConfig(sample_rate=16000, seanet=SEANetConfig(ratios=(8, 5, 4, 4), dimension=256), latent_dim=256,
                         depthwise_upsample=False), "d_model"),
    (lambda: SEANetConfig(norm="batch"), "norm"),
    (lambda: SEANetConfig(ratios=(0, 2)), "ratios"),
    (lambda: TransformerConfig(d_model=30, num_heads=4), "divisible"),
    (lambda: QuantizerConfig(acoustic="lfq"), "acoustic"),
    (lambda: QuantizerConfig(acoustic="fsq", acoustic_codebook_size=20, num_acoustic=4, acoustic_dim=4), "odd"),
    (lambda: QuantizerConfig(unquantized_rate=1.5), "unquantized_rate"),
    (lambda: QuantizerConfig(fsq_dither=(0.5, 0.5, 0.5)), "fsq_dither"),
    (lambda: QuantizerConfig(semantic_codebook_size=100000), "uint16"),
    (lambda: CodecConfig(latent_dim=292, quantizer=QuantizerConfig(layout="concat")), "depthwise"),
    (lambda: CodecConfig(latent_dim=300, depthwise_upsample=False, quantizer=QuantizerConfig(layout="concat")),
     "semantic_dim"),
    (lambda: ISTFTDecoderConfig(n_fft=641), "even"),
    (lambda: ISTFTDecoderConfig(phase="vocoder"), "istft.phase must be one of"),
    (lambda: ISTFTDecoderConfig(n_fft=480, hop_length=320), "multiple of hop_length"),
    (lambda: ISTFTDecoderConfig(n_fft=160, hop_length=160), "at least twice"),
    (lambda: CodecConfig(istft=ISTFTDecoderConfig(n_fft=600, hop_length=150)), "must divide the SEANet hop"),
])
def test_validation(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_frozen():
    cfg = tiny_config()
    with pytest.raises(AttributeError):
        cfg.sample_rate = 8000


def test_unknown_preset():
    with pytest.raises(ValueError, match="c12-tiny-16k"):
        CodecConfig.from_preset("nope")
