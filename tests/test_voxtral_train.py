"""The voxtral-encoder recipe: an encoder trained behind Voxtral TTS's frozen decoder and codebooks, with a
Whisper distillation term. A tiny model of the same topology, generated audio, a tiny random Whisper; CPU."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import soundfile as sf
import torch
from conftest import speechlike
from safetensors.torch import load_file

from codec12 import Codec
from codec12.config import VoxtralConfig
from codec12.convert.voxtral import save_voxtral
from codec12.distill import build_distiller
from codec12.train import load_recipe, run

transformers = pytest.importorskip("transformers")

RECIPE = Path(__file__).resolve().parents[1] / "codec12" / "recipes" / "voxtral-encoder.json"
FROZEN = ("quantizer", "upsample", "decoder_transformer", "decoder")
ENCODER = ("encoder", "encoder_transformer", "downsample")
# The released topology at small width (4 stages of 2 layers, strides 2,2,2,1, 240-sample patches).
TINY_VOXTRAL = dict(dim=32, hidden_dim=64, num_heads=4, num_kv_heads=2, head_dim=8, layer_scale=0.1)
TINY_QUANTIZER = dict(semantic_codebook_size=64, semantic_dim=16, num_acoustic=8, acoustic_dim=8)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    """A decode-only Voxtral TTS directory (params.json + consolidated.safetensors: decoder and codebooks, no
    encoder, as the open release) at tiny width. Like the release, its decoder reconstructs speech: a tiny codec
    of the topology is first trained whole for 60 steps on speech-like clips, then saved without its encoder."""
    from codec12 import CodecConfig
    from codec12.losses import MelLoss, MultiResolutionSTFTLoss

    preset = CodecConfig.from_preset("c12-voxtral-24k")
    config = preset.replace(name="tiny-voxtral", latent_dim=24, voxtral=VoxtralConfig(**TINY_VOXTRAL),
                            quantizer=dataclasses.replace(preset.quantizer, **TINY_QUANTIZER))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module fixtures come before the one_thread fixture
    torch.manual_seed(0)
    codec = Codec.from_config(config).train()
    clips = torch.stack([torch.from_numpy(speechlike(0.32, 24000, seed=s).T) for s in range(6)])
    clips = clips / clips.pow(2).mean(dim=(1, 2), keepdim=True).sqrt() * 10 ** (-23 / 20)  # the recipe's -23 dBFS
    mel, stft = MelLoss(24000, (40, 40), (512, 256)), MultiResolutionSTFTLoss((512, 256, 128))
    optimizer = torch.optim.Adam(codec.parameters(), lr=3e-3)
    for step in range(60):
        audio = codec(clips, generator=torch.Generator().manual_seed(step)).audio
        loss = mel(audio, clips) + stft(audio, clips)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.set_num_threads(threads)
    decoder = Codec.from_config(config.replace(voxtral=dataclasses.replace(config.voxtral, encoder=False)))
    decoder.load_state_dict({k: v for k, v in codec.state_dict().items() if k in decoder.state_dict()})
    directory = tmp_path_factory.mktemp("release")
    save_voxtral(decoder.eval(), directory)
    return directory


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory) -> str:
    """A tiny random Whisper checkpoint (1 s windows) saved with safetensors."""
    torch.manual_seed(0)
    config = transformers.WhisperConfig(
        d_model=16, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=32, decoder_ffn_dim=32, num_mel_bins=16, max_source_positions=50, max_target_positions=8,
        vocab_size=64, pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=3)
    directory = tmp_path_factory.mktemp("whisper")
    transformers.WhisperModel(config).save_pretrained(directory)
    return str(directory)


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("audio")
    for i in range(3):
        sf.write(str(d / f"utt{i}.wav"), speechlike(1.2, 24000, seed=i), 24000)
    return d


def _recipe(release: Path, whisper: str, audio: Path, **train):
    recipe = load_recipe(RECIPE)
    data = recipe.to_dict()
    data["model"]["overrides"] = {"latent_dim": 24, "voxtral": TINY_VOXTRAL,
                                  "quantizer": {**recipe.model.overrides["quantizer"], **TINY_QUANTIZER}}
    data["model"]["init"] = str(release)
    data["distill"]["model"] = whisper
    data["data"].update(train=str(audio), valid=None, valid_fraction=0.0, crop_frames=4, batch_size=2,
                        num_workers=0)
    data["discriminators"].update(msstft_n_ffts=[256, 128], msstft_channels=2, start_step=16)
    data["losses"].update(stft_fft_sizes=[512, 256, 128], mel_n_mels=[40, 40], mel_win_lengths=[512, 256])
    data["optim"].update(lr=2e-3, warmup_steps=1, schedule="constant")
    data["train"].update({"steps": 20, "log_every": 1, "valid_every": 1000, "checkpoint_every": 1000, "threads": 1,
                          "ema_decay": 0.0, **train})
    return recipe.from_dict(data)


def test_recipe_is_the_release_behind_a_new_encoder():
    recipe = load_recipe(RECIPE)
    assert recipe.model.preset == "c12-voxtral-24k"
    assert set(recipe.model.freeze) == set(FROZEN) and set(recipe.model.init_fresh) == set(ENCODER)
    assert recipe.distill.teacher == "asr" and recipe.losses.weights["distill_asr"] > 0
    assert recipe.model.codec_config().has_encoder


def test_whisper_teacher_on_codec_frames(release, whisper_dir):
    codec = Codec.from_pretrained(release)
    distiller = build_distiller({"teacher": "asr", "model": whisper_dir}, codec)
    assert distiller.teacher.layers == (2,)
    wav = torch.from_numpy(speechlike(2.4, 24000).T[None])  # 2.4 s: three 1-s Whisper windows
    hidden, samples = distiller.teacher.hidden(wav, 24000)
    assert samples == 38400 and hidden.shape == (1, 120, 16)  # one frame per 20 ms
    feats = distiller.teacher_features(wav, 30)
    assert feats.shape == (1, 16, 30) and torch.isfinite(feats).all()
    assert not any(p.requires_grad for p in distiller.teacher.model.parameters())
    assert set(distiller.state_dict()) == {"projection.weight", "projection.bias"}  # the teacher is never saved
    wavlm = Path(whisper_dir).parent / "wavlm"
    ssl = transformers.WavLMConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                                   conv_dim=(8,) * 7)
    transformers.WavLMModel(ssl).save_pretrained(wavlm)
    with pytest.raises(ValueError, match="not a Whisper model"):
        build_distiller({"teacher": "asr", "model": str(wavlm)}, codec)
    with pytest.raises(ValueError, match="model is required for the asr teacher"):
        build_distiller({"teacher": "asr"}, codec)


def test_encoder_trains_behind_the_frozen_decoder(release, whisper_dir, audio_dir, tmp_path):
    start = Codec.from_pretrained(release)
    result = run(_recipe(release, whisper_dir, audio_dir), tmp_path / "run", progress=False)
    assert result.step == 20 and result.skipped_steps == []
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    steps = [e for e in log if "total" in e]
    assert {"distill_asr", "commitment", "mel", "stft", "l1"} <= set(steps[0])
    assert {"adv_msstft", "feat_msstft"} <= set(steps[-1])  # the discriminator joins at step 16
    first = sum(e["mel"] + e["stft"] for e in steps[:4]) / 4
    last = sum(e["mel"] + e["stft"] for e in steps[-4:]) / 4
    assert last < 0.75 * first, (first, last)  # the reconstruction through the frozen decoder improves
    # The decoder side and both codebooks are the release's, bit for bit; the encoder has moved.
    trained = load_file(str(result.checkpoint / "model.safetensors"))
    initial = start.state_dict()
    for key, value in initial.items():
        assert torch.equal(trained[key], value), key
    assert {k.split(".")[0] for k in set(trained) - set(initial)} == set(ENCODER)
    fresh = run(_recipe(release, whisper_dir, audio_dir), tmp_path / "fresh", until_step=0, progress=False)
    before = load_file(str(fresh.checkpoint / "model.safetensors"))
    assert all(not torch.equal(before[k], trained[k]) for k in trained if k.startswith("encoder_transformer.")
               and k.endswith(("wq.weight", "w1.weight")))
    # The release encodes, and decodes as the release it started from.
    codec = Codec.from_pretrained(result.release)
    assert codec.config.has_encoder and codec.config.norm == "none"
    wav = torch.from_numpy(speechlike(0.96, 24000).T[None])
    codes = codec.encode(wav)
    assert codes.shape == (1, 9, 12)
    assert torch.equal(codec.decode(codes), start.decode(codes))


def test_encoder_training_resumes_exactly(release, whisper_dir, audio_dir, tmp_path):
    recipe = _recipe(release, whisper_dir, audio_dir, steps=4, export=False)
    straight = run(recipe, tmp_path / "a", progress=False)
    run(recipe, tmp_path / "b", until_step=2, progress=False)
    resumed = run(recipe, tmp_path / "b", resume=True, progress=False)
    for name in ("model", "discriminators", "distiller", "optimizers"):
        a = load_file(str(straight.checkpoint / f"{name}.safetensors"))
        b = load_file(str(resumed.checkpoint / f"{name}.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
