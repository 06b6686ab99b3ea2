"""The harmonic (source-filter) branch of the inverse-STFT decoder, its pitch teacher and its losses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import speechlike, tiny_codec

from codec12.config import ISTFTDecoderConfig
from codec12.decoder.istft import (
    ISTFTDecoder,
    RunningPhase,
    StreamingISTFT,
    decode_f0,
    f0_grid,
    hann_kernel,
    harmonic_excitation,
)
from codec12.losses.pitch import F0Loss, VoicingLoss, f0_error
from codec12.nn.streaming import streaming

pyworld = pytest.importorskip("pyworld", reason="the pitch teacher needs pyworld (pip install -e '.[train]')")
from codec12.distill.pitch import PitchTeacher  # noqa: E402


def test_hann_kernel_is_the_centred_windows_dft():
    n = 640
    samples = torch.arange(n, dtype=torch.float64)
    window = torch.hann_window(n, periodic=True, dtype=torch.float64)
    delta = torch.tensor([0.0, 1e-6, 1e-3, 0.3, 1.0, 1 - 1e-6, 1.7, 2.0, 3.5, 7.2, -0.6, -2.5], dtype=torch.float64)
    brute = (window * torch.cos(2 * math.pi * delta[:, None] * (samples - n / 2) / n)).sum(-1) / (n / 2)
    assert (hann_kernel(delta, n) - brute).abs().max() < 2e-12  # measured 8.1e-13 (float32: 1.2e-7)
    assert hann_kernel(torch.tensor([0.0]), n).item() == pytest.approx(1.0)


@pytest.mark.parametrize("f0, bound", [(50.0, 1e-7), (55.3, 2.5e-3), (80.0, 1.5e-4), (123.4, 6e-5), (311.0, 1e-5),
                                       (549.0, 1.2e-5)])
def test_excitation_synthesises_every_harmonic_below_nyquist_at_amplitude_one(f0, bound):
    n_fft, hop, sr, frames = 640, 160, 16000, 200
    f0s = torch.full((1, 1, frames), f0, dtype=torch.float64)
    phase = torch.remainder(torch.cumsum(f0s * 2 * math.pi * hop / sr, -1), 2 * math.pi)
    real, imag = harmonic_excitation(f0s, phase, n_fft, sr)
    audio = StreamingISTFT(n_fft, hop).double()(torch.cat([real, imag], 1))[0, 0]
    # Frame t's phase is the fundamental's at its window centre, sample t * hop + n_fft / 2.
    t = torch.arange(audio.shape[0], dtype=torch.float64)
    fundamental = phase[0, 0, 0] + 2 * math.pi * f0 * (t - n_fft / 2) / sr
    expected = sum(torch.cos(h * fundamental) for h in range(1, math.ceil(sr / 2 / f0)))  # below Nyquist
    steady = slice(n_fft, audio.shape[0] - n_fft)  # where every sample has all its overlapping windows
    err = (audio[steady] - expected[steady]).norm() / expected[steady].norm()
    # Measured 1.6e-8 at 50 Hz (harmonics on bins), 1.7e-3 at 55.3, 1.0e-4 at 80, 3.8e-5 at 123.4, < 1e-5 above:
    # what is left out is the window's side lobes beyond the 4 harmonics nearest each bin.
    assert err < bound


def test_excitation_follows_a_gliding_f0_without_phase_jumps():
    # A glide from 100 to 200 Hz: the synthesised fundamental matches the integrated phase's sinusoid (the
    # harmonics resolved one by one with a narrowband STFT would need more; the fundamental is the hardest case
    # for phase continuity, as its window holds the fewest periods).
    n_fft, hop, sr, frames = 640, 160, 16000, 300
    f0s = torch.linspace(100, 200, frames, dtype=torch.float64)[None, None]
    phase = torch.remainder(torch.cumsum(f0s * 2 * math.pi * hop / sr, -1), 2 * math.pi)
    real, imag = harmonic_excitation(f0s, phase, n_fft, sr)
    bins = n_fft // 2 + 1
    k = torch.arange(bins, dtype=torch.float64)[:, None]
    keep = (k * sr / n_fft < 1.5 * f0s[0]).double()  # the fundamental's bins only (below 1.5 f0)
    audio = StreamingISTFT(n_fft, hop).double()(torch.cat([real * keep, imag * keep], 1))[0, 0]
    centres = torch.arange(frames) * hop + n_fft // 2
    inside = centres < audio.shape[0]
    expected = torch.cos(phase[0, 0, inside])  # the fundamental's value at each window centre
    got = audio[centres[inside]]
    assert (got[8:] - expected[8:]).abs().max() < 0.03  # measured 0.0099: a 1 Hz-per-frame glide, not a steady tone


def test_running_phase_streams_exactly_in_float64():
    phase = RunningPhase(3)
    increment = torch.rand(2, 3, 5000, dtype=torch.float64) * 20
    offline = phase.running(increment)
    with streaming(phase, batch_size=2):
        parts = torch.cat([phase.running(increment[..., i:i + 333]) for i in range(0, 5000, 333)], -1)
    assert offline.dtype == parts.dtype == torch.float64
    assert (offline - parts).abs().max() < 1e-9
    assert 0 <= offline.min() and offline.max() < 2 * math.pi


def _harmonic_decoder(seed: int = 0, envelope: str = "own") -> ISTFTDecoder:
    torch.manual_seed(seed)
    config = ISTFTDecoderConfig(dim=8, intermediate_dim=16, num_layers=2, n_fft=32, hop_length=8, harmonic=True,
                                f0_min=500.0, f0_max=3000.0, harmonic_envelope=envelope)
    decoder = ISTFTDecoder(config, 6, 2, upsample=4, sample_rate=16000).eval()
    with torch.no_grad():
        decoder.harmonic_head.weight.normal_(0.0, 0.5)
        decoder.harmonic_head.bias.normal_(0.0, 0.5)
        decoder.harmonic_head.bias.view(2, 2, 17)[:, 0] -= 2.0
        decoder.pitch_head[-1].weight.mul_(20.0)  # decisive F0 classes, as training makes them
    return decoder


@pytest.mark.parametrize("envelope", ["own", "shared"])
def test_harmonic_decoder_is_causal_and_streams_exactly_in_float64(envelope):
    decoder = _harmonic_decoder(envelope=envelope).double()
    x = torch.randn(2, 6, 24, dtype=torch.float64)
    with torch.no_grad():
        full = decoder(x)
        half = decoder(x[..., :12])
        assert torch.equal(full[..., : half.shape[-1]], half)
        for chunk in (1, 3, 7):
            with streaming(decoder, batch_size=2):
                parts = [decoder(x[..., i:i + chunk]) for i in range(0, 24, chunk)]
            assert (torch.cat(parts, dim=-1) - full).abs().max() < 1e-10, f"chunk={chunk}"


def test_harmonic_decoder_streaming_drift_in_float32_stays_small():
    # float32: the chunked and whole-file F0 differ in their last bits, and the running phase sums those
    # differences (harmonic h turns them by h times as much); a near tie between two F0 classes can tip
    # the other way too. Bounded here relative to the output's peak.
    decoder = _harmonic_decoder()
    x = torch.randn(2, 6, 200)
    with torch.no_grad():
        full = decoder(x)
        with streaming(decoder, batch_size=2):
            parts = torch.cat([decoder(x[..., i:i + 1]) for i in range(200)], dim=-1)
    assert (parts - full).abs().max() < 7e-4 * full.abs().max()  # measured 4.5e-4 over these 200 frames


def test_harmonic_decoder_outputs_f0_in_range_and_voicing():
    decoder = _harmonic_decoder()
    with torch.no_grad():
        out = decoder.synthesize(torch.randn(2, 6, 10))
    assert out.f0.shape == out.voicing.shape == (2, 2, 40)  # [B, channels, frames at 4 per feature step]
    assert out.audio.shape == (2, 2, 40 * 8) and out.spectrum.shape == (2, 2 * 2 * 17, 40)
    assert 500.0 <= out.f0.min() and out.f0.max() <= 3000.0
    # The branch is what makes the difference: with the envelope silenced the decoder is the free-phase one.
    with torch.no_grad():
        decoder.harmonic_head.bias.view(2, 2, 17)[:, 0].fill_(-80.0)  # per channel: log-amplitudes, turns
        decoder.harmonic_head.weight.zero_()
        silent = decoder.synthesize(torch.randn(2, 6, 10, generator=torch.Generator().manual_seed(1)))
        decoder.f0_phase = None  # the same weights with the branch off
        plain = decoder.synthesize(torch.randn(2, 6, 10, generator=torch.Generator().manual_seed(1)))
    assert (silent.audio - plain.audio).abs().max() < 1e-6


def test_a_given_f0_replaces_the_predicted_one_where_it_is_nonzero():
    decoder = _harmonic_decoder()
    x = torch.randn(1, 6, 10)
    with torch.no_grad():
        own = decoder.synthesize(x)
        same = decoder.synthesize(x, torch.zeros_like(own.f0))  # 0: the prediction everywhere
        forced = decoder.synthesize(x, torch.full_like(own.f0, 1234.5))
        half = torch.zeros_like(own.f0)
        half[..., 20:] = 1234.5
        mixed = decoder.synthesize(x, half)
    assert torch.equal(same.audio, own.audio)
    assert (forced.audio - own.audio).abs().max() > 0.1 * own.audio.abs().max()
    assert torch.equal(forced.f0, own.f0) and torch.equal(forced.f0_logits, own.f0_logits)  # what the losses see
    hop = 8  # causal frames: the first 20 frames' samples hold only frames < 20 until the window of frame 20
    assert torch.equal(mixed.audio[..., : 20 * hop], own.audio[..., : 20 * hop])
    late = slice(24 * hop, None)  # the given F0 from there on (its running phase starts from the predicted one's)
    assert (mixed.audio[..., late] - own.audio[..., late]).abs().max() > 0.1 * own.audio.abs().max()
    with pytest.raises(ValueError, match="expected \\[B, channels, frames\\]"):
        decoder.synthesize(x, own.f0[..., :5])


def test_shared_envelope_divides_the_free_magnitude_between_comb_and_free_phase():
    decoder = _harmonic_decoder(envelope="shared")
    x = torch.randn(1, 6, 10)
    bins = 17

    def spectra(share_logit: float) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            decoder.harmonic_head.weight.zero_()
            decoder.harmonic_head.bias.zero_()  # no phase correction
            decoder.harmonic_head.bias.view(2, 2, bins)[:, 0].fill_(share_logit)
            decoder.pitch_head[-1].bias.view(2, -1)[:, -1].fill_(30.0)  # voiced everywhere
            out = decoder.synthesize(x)
            phase_off = decoder.f0_phase
            decoder.f0_phase = None  # the same weights, the free-phase branch alone
            free = decoder.synthesize(x).spectrum
            decoder.f0_phase = phase_off
        return out.spectrum, free

    # share 0: the free-phase decoder, untouched
    mixed, free = spectra(-40.0)
    assert (mixed - free).abs().max() < 1e-6 * free.abs().max()
    # share 1: the free branch's magnitude times the excitation over its peak gain, and nothing of its phase
    comb, free = spectra(40.0)
    b, _, t = free.shape
    free = free.reshape(b * 2, 2, bins, t)
    magnitude = torch.sqrt(free[:, 0] ** 2 + free[:, 1] ** 2)
    with torch.no_grad():
        out = decoder.synthesize(x)
    running = RunningPhase(2)
    phase = running.running(out.f0.double().reshape(b, 2, t) * (2 * math.pi * 8 / 16000)).reshape(b * 2, 1, t)
    ex_re, ex_im = harmonic_excitation(out.f0.reshape(b * 2, 1, t), phase, 32, 16000)
    expected = torch.cat([magnitude * ex_re, magnitude * ex_im], dim=1) / (32 / 3)
    assert (comb.reshape(b * 2, 2 * bins, t) - expected).abs().max() < 1e-4 * expected.abs().max()
    assert (out.harmonic - out.spectrum).abs().max() < 1e-6 * out.spectrum.abs().max()  # all the harmonics
    # a harmonic on a bin's centre peaks at the envelope there: the gain is the excitation's peak
    f0 = torch.full((1, 1, 1), 16000 / 32 * 3)
    re, im = harmonic_excitation(f0, torch.zeros(1, 1, 1, dtype=torch.float64), 32, 16000)
    assert abs(float(torch.sqrt(re**2 + im**2)[0, 3, 0]) - decoder.harmonic_gain) < 1e-4 * decoder.harmonic_gain


def test_harmonic_config_round_trips_and_checks_its_f0_range():
    from tests.conftest import tiny_config

    plain, harmonic = tiny_config(istft=True), tiny_config(istft=True, istft_harmonic=True)
    assert plain.to_dict()["istft"]["harmonic"] is False and harmonic.to_dict()["istft"]["harmonic"] is True
    assert harmonic.config_hash() != plain.config_hash()
    assert type(plain).from_dict(harmonic.to_dict()) == harmonic
    import dataclasses

    with pytest.raises(ValueError, match="f0_min .* one STFT bin"):  # n_fft 320 at 16 kHz: 50 Hz bins
        dataclasses.replace(harmonic, istft=dataclasses.replace(harmonic.istft, f0_min=40.0))
    with pytest.raises(ValueError, match="f0_max .* Nyquist"):
        dataclasses.replace(harmonic, istft=dataclasses.replace(harmonic.istft, f0_max=9000.0))
    with pytest.raises(ValueError, match="0 < f0_min < f0_max"):
        ISTFTDecoderConfig(harmonic=True, f0_min=300.0, f0_max=200.0)
    assert harmonic.to_dict()["istft"]["harmonic_envelope"] == "own"
    shared = dataclasses.replace(harmonic, istft=dataclasses.replace(harmonic.istft, harmonic_envelope="shared"))
    assert shared.to_dict()["istft"]["harmonic_envelope"] == "shared"
    assert shared.config_hash() != harmonic.config_hash() and type(plain).from_dict(shared.to_dict()) == shared
    with pytest.raises(ValueError, match="harmonic_envelope must be one of"):
        ISTFTDecoderConfig(harmonic=True, harmonic_envelope="both")
    with pytest.raises(ValueError, match="harmonic_envelope applies to a harmonic decoder"):
        ISTFTDecoderConfig(harmonic_envelope="shared")


# ---- the pitch teacher and the losses -----------------------------------------------------------------------
def test_pitch_teacher_tracks_a_known_f0_at_each_frames_window_centre():
    sr, hop, n_fft = 16000, 160, 640
    teacher = PitchTeacher(sr, hop, n_fft, 50.0, 550.0)
    # 120 Hz, then 180 Hz from sample 8000 on (frame boundary of the F0 track: sample 8000 = frame 50's centre
    # minus... frame t's centre is t * hop + 320, so the step falls between frames 47 and 48).
    t = np.arange(sr) / sr
    f0 = np.where(np.arange(sr) < 8000, 120.0, 180.0)
    x = 0.3 * sum(np.sin(h * 2 * np.pi * np.cumsum(f0) / sr) / h for h in range(1, 6))
    x[12000:] = 0.0  # then silence: unvoiced
    target = teacher(torch.from_numpy(x.astype(np.float32))[None, None])
    frames = sr // hop
    assert target.f0.shape == target.voiced.shape == target.known.shape == (1, 1, frames)
    got = target.f0[0, 0].numpy()
    assert np.all(np.abs(got[5:44] / 120.0 - 1) < 0.01)
    assert np.all(np.abs(got[52:70] / 180.0 - 1) < 0.01)
    assert not target.voiced[0, 0, 120:].any()  # the silence
    assert target.known[0, 0, : frames - 2].all() and not target.known[0, 0, frames - 2:].any()
    assert t.shape[0] == sr


def test_f0_classes_decode_finer_than_their_spacing_and_train_by_cross_entropy():
    grid = f0_grid(50.0, 550.0, 128)  # 32.7 cents apart
    target = torch.tensor([[[100.0, 203.7, 0.0, 151.2]]])
    voiced = target > 0
    loss = F0Loss(grid)
    # Logits shaped like the loss's own target distribution decode to the target F0, within a cent or so.
    log_f0 = torch.log2(target)[:, :, None]
    logits = -0.5 * ((grid[:, None] - log_f0) / (25 / 1200)) ** 2
    decoded = decode_f0(logits, grid)
    assert ((torch.log2(decoded) - torch.log2(target)).abs() * 1200)[voiced].max() < 2.0  # measured 0.9 cents
    # That is the minimum of the cross-entropy: one octave off costs far more.
    best = loss(logits, target, voiced)
    octave = loss(-0.5 * ((grid[:, None] - log_f0 - 1) / (25 / 1200)) ** 2, target, voiced)
    assert octave > best + 100
    assert loss(logits, target, torch.zeros_like(voiced)).item() == 0.0  # nothing voiced: nothing to learn
    # A two-peaked distribution decodes to its stronger peak, not to the midpoint of the two.
    two = torch.logaddexp(logits, -0.5 * ((grid[:, None] - log_f0 - 1) / (25 / 1200)) ** 2 - 1.0)
    assert ((torch.log2(decode_f0(two, grid)) - torch.log2(target)).abs() * 1200)[voiced].max() < 2.0
    assert f0_error(2 * target, target, voiced).item() == pytest.approx(1.0)
    known = torch.tensor([[[True, True, True, False]]])
    voicing = torch.tensor([[[10.0, 10.0, -10.0, -10.0]]])  # right where known; wrong on the unknown frame
    assert VoicingLoss()(voicing, voiced, known).item() < 1e-4
    assert VoicingLoss()(-voicing, voiced, known).item() > 9.0
    with pytest.raises(ValueError, match="logits must be"):
        loss(logits[..., :3], target, voiced)


def test_pitch_teacher_on_speechlike_audio_finds_its_glide():
    sr = 16000
    x = speechlike(1.0, sr, seed=0)[:, 0]
    target = PitchTeacher(sr, 80, 320, 50.0, 550.0)(torch.from_numpy(x)[None, None])
    centres = np.arange(target.f0.shape[-1]) * 80 + 160
    truth = 120 + 40 * np.sin(2 * np.pi * 0.7 * centres / sr)  # conftest.speechlike's F0
    voiced = target.voiced[0, 0].numpy()
    assert voiced.mean() > 0.5
    assert np.median(np.abs(target.f0[0, 0].numpy()[voiced] / truth[voiced] - 1)) < 0.02


def test_tiny_harmonic_codec_round_trip():
    codec = tiny_codec(istft=True, istft_harmonic=True)
    wav = torch.from_numpy(speechlike(0.64, 16000)).T[None]
    audio = codec.decode(codec.encode(wav))
    assert audio.shape == (1, 1, 8 * 1280) and torch.isfinite(audio).all()
