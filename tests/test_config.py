import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

from codec12 import CodecConfig, ISTFTDecoderConfig, QuantizerConfig, SEANetConfig, TransformerConfig
from codec12.config import PRESETS
from tests.conftest import tiny_config

ROOT = Path(__file__).resolve().parents[1]


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
    # The JSON form states every field; an unset optional block is null.
    assert cfg.to_dict()["istft"] is None and cfg.to_dict()["voxtral"] is None
    assert istft.to_dict()["istft"]["n_fft"] == 320 and istft.to_dict()["istft"]["phase"] == "direct"
    integrated = tiny_config(istft=True, istft_phase="integrated")
    assert integrated.to_dict()["istft"]["phase"] == "integrated"
    assert integrated.config_hash() != istft.config_hash()
    assert CodecConfig.from_dict(integrated.to_dict()) == integrated


def _sha(form) -> str:
    return hashlib.sha256(json.dumps(form, sort_keys=True).encode()).hexdigest()[:16]


def test_config_hash_is_the_hash_of_the_fields_that_differ_from_their_defaults():
    # The canonical form: what differs from the defaults, numbers as floats, sorted JSON; an optional block that is
    # set counts with its own differences ({} when it has none).
    assert CodecConfig().config_hash() == _sha({})
    assert CodecConfig(sample_rate=16000, seanet=SEANetConfig(ratios=(8, 5, 4, 4))).config_hash() == \
        _sha({"sample_rate": 16000.0, "seanet": {"ratios": [8.0, 5.0, 4.0, 4.0]}})
    assert CodecConfig(istft=ISTFTDecoderConfig()).config_hash() == _sha({"istft": {}})
    # So a file that states a default and one that leaves it out hold the same config, and one hash.
    data = {"format_version": 1, "sample_rate": 16000, "seanet": {"ratios": [8, 5, 4, 4]}}
    full = CodecConfig.from_dict(data).to_dict()
    assert "pad_mode" not in data and full["seanet"]["pad_mode"] == "constant"
    assert CodecConfig.from_dict(full).config_hash() == CodecConfig.from_dict(data).config_hash()
    # A float field given as an integer is the same config.
    harmonic = tiny_config(istft=True, istft_harmonic=True)
    as_int = harmonic.replace(istft=dataclasses.replace(harmonic.istft, f0_min=60))
    as_float = harmonic.replace(istft=dataclasses.replace(harmonic.istft, f0_min=60.0))
    assert as_int.config_hash() == as_float.config_hash() != harmonic.config_hash()


# config_hash (format 2) of the presets and of the bundled model. A new field whose default keeps the earlier
# behaviour leaves them as they are; if one of these changes, a default changed: that needs a new
# CONFIG_HASH_FORMAT (and hash_matches reading the old one), or files made with the earlier hashes stop matching.
FORMAT2 = {"c12-mimi-24k": "44136fa355b3678a", "c12-fsq-24k": "eeb00c622faf9f0f",
           "c12-voxtral-24k": "134ee801ca914f0c", "c12-tiny-16k": "8795b13fe7888875", "bundled": "bb8aaf6ad176ee1f"}


def _bundled_config() -> CodecConfig:
    return CodecConfig.from_json_file(ROOT / "codec12/assets/c12-tiny-16k/config.json")


def test_config_hashes_of_the_presets_and_the_bundled_model_stay():
    got = {name: CodecConfig.from_preset(name).config_hash() for name in PRESETS}
    got["bundled"] = _bundled_config().config_hash()
    assert got == FORMAT2


def _variants() -> dict[str, CodecConfig]:
    v = CodecConfig.from_preset("c12-voxtral-24k")
    h = tiny_config(istft=True, istft_harmonic=True)
    return {**{name: CodecConfig.from_preset(name) for name in PRESETS}, "bundled": _bundled_config(),
            "tiny-istft": tiny_config(istft=True), "tiny-istft-integrated": tiny_config(istft=True,
                                                                                        istft_phase="integrated"),
            "tiny-istft-f0-unused": tiny_config(istft=True).replace(istft=dataclasses.replace(
                tiny_config(istft=True).istft, f0_min=60.0)),
            "tiny-harmonic-shared": tiny_config(istft=True, istft_harmonic=True, istft_harmonic_envelope="shared"),
            "tiny-harmonic-int-f0": h.replace(istft=dataclasses.replace(h.istft, f0_min=60, f0_bins=64)),
            "tiny-fsq-concat": tiny_config(24000, "fsq", "concat"),
            "voxtral-decode-only": v.replace(voxtral=dataclasses.replace(v.voxtral, encoder=False, layer_scale=None))}


# What files of format 1 (written before config_hash_format) hold for these configs, as the code of that format
# computed them: without, then with the quantizer's training-only settings.
FORMAT1 = {
    "c12-mimi-24k": ("1902307bcd4f40bc", "a84e3ab01042fbe2"), "c12-fsq-24k": ("aceb49e759c32e6c", "6f0867237b0b5144"),
    "c12-voxtral-24k": ("c174ba544d1049fd", "cdf9a9c149aca7e5"),
    "c12-tiny-16k": ("fce187dd0fc153af", "34383b762bf38313"), "bundled": ("74e4dc92d1f5a9ef", "6a7653c5312eb7ef"),
    "tiny-istft": ("1787825d677f5141", "642684c02aa1c74c"),
    "tiny-istft-f0-unused": ("1787825d677f5141", "642684c02aa1c74c"),  # format 1 wrote the F0 range with harmonic
    "tiny-istft-integrated": ("7e27a8ffc8564291", "f922a2573bb9504b"),
    "tiny-harmonic-shared": ("b4881c11ead9834e", "89a270bb38608804"),
    "tiny-harmonic-int-f0": ("74dd0761d16d86c6", "b9c19958eaba19a1"),
    "tiny-fsq-concat": ("e88a0720459361da", "474e16caf1a6c9e8"),
    "voxtral-decode-only": ("b694a41a2caae613", "da94a3423a16eea1"),
}


def test_hashes_recorded_by_earlier_versions_still_match():
    configs = _variants()
    assert set(configs) == set(FORMAT1)
    for name, config in configs.items():
        for recorded in FORMAT1[name]:
            assert config.hash_matches(recorded, 1), name
            assert not config.hash_matches(recorded, 2), name  # a format-1 hash is no format-2 one
        assert config.hash_matches(config.config_hash(), 2) and config.config_hash() not in FORMAT1[name], name
        others = {h for hashes in FORMAT1.values() if hashes != FORMAT1[name] for h in hashes}
        assert not any(config.hash_matches(h, 1) for h in others), name
    tiny = configs["c12-tiny-16k"]
    assert not tiny.hash_matches(None, 1) and not tiny.hash_matches(None, 2)
    # A field added after format 1 away from its default: no format-1 file can hold that config.
    assert not tiny.replace(istft=ISTFTDecoderConfig()).hash_matches(FORMAT1["c12-tiny-16k"][0], 1)
    with pytest.raises(ValueError, match="config_hash_format 3 is not supported"):
        tiny.hash_matches(tiny.config_hash(), 3)


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
