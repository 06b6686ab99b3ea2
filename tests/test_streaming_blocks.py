"""Each causal block on its own: appending input never changes earlier outputs, and chunked == offline."""

import math

import pytest
import torch

from codec12.config import ISTFTDecoderConfig
from codec12.decoder.istft import ISTFTDecoder, PhaseIntegrator, StreamingISTFT
from codec12.nn.conv import StreamingConv1d, StreamingConvTranspose1d
from codec12.nn.streaming import state_spec, streaming
from codec12.nn.transformer import StreamingTransformer

BLOCKS = {
    "conv-dilated": (lambda: StreamingConv1d(3, 4, 3, dilation=3), 1),
    "conv-strided-replicate": (lambda: StreamingConv1d(3, 4, 8, stride=4, pad_mode="replicate"), 4),
    "conv-weight-norm": (lambda: StreamingConv1d(3, 4, 7, norm="weight_norm"), 1),
    "convtr": (lambda: StreamingConvTranspose1d(3, 4, 10, stride=5), 1),
    "convtr-depthwise": (lambda: StreamingConvTranspose1d(4, 4, 4, stride=2, groups=4, bias=False), 1),
    "transformer": (lambda: StreamingTransformer(8, 2, 2, 16, context=5, layer_scale=1.0), 1),
    "istft-decoder": (lambda: ISTFTDecoder(ISTFTDecoderConfig(dim=8, intermediate_dim=16, num_layers=2, n_fft=32,
                                                              hop_length=8), 6, 1, upsample=4), 1),
    "istft-decoder-integrated": (lambda: _with_deviations(ISTFTDecoder(ISTFTDecoderConfig(
        dim=8, intermediate_dim=16, num_layers=2, n_fft=32, hop_length=8, phase="integrated"), 6, 2, upsample=4)), 1),
    "istft": (lambda: StreamingISTFT(32, 8), 1),
}
IN_CHANNELS = {"transformer": 8, "istft-decoder": 6, "istft-decoder-integrated": 6, "istft": 34}


def _with_deviations(decoder: ISTFTDecoder) -> ISTFTDecoder:
    """The deviation head starts at zero; random weights make the running phase depend on the input."""
    with torch.no_grad():
        for p in decoder.deviation_head.parameters():
            p.normal_(0.0, 0.5)
    return decoder


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_block_is_causal_and_streams_exactly(name):
    make, step = BLOCKS[name]
    torch.manual_seed(0)
    block = make().eval()
    channels = IN_CHANNELS.get(name) or block.conv.in_channels
    x = torch.randn(2, channels, 24 * step)
    with torch.no_grad():
        full = block(x)
        half = block(x[..., : 12 * step])
        assert torch.allclose(full[..., : half.shape[-1]], half, atol=1e-6)
        for chunk in (1, 3, 7):  # 7 steps > the transformer's context of 5
            with streaming(block, batch_size=2):
                parts = [block(x[..., i * step:(i + chunk) * step]) for i in range(0, 24, chunk)]
            assert torch.allclose(torch.cat(parts, dim=-1), full, atol=1e-5), f"chunk={chunk}"


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_streaming_state_holds_only_its_own_samples(name):
    """A state tensor that were a view of the chunk's input or output would keep the whole chunk alive until the
    next one, in every layer: streaming a long chunk would then hold all the layers' activations at once."""
    make, step = BLOCKS[name]
    torch.manual_seed(0)
    block = make().eval()
    channels = IN_CHANNELS.get(name) or block.conv.in_channels
    with torch.no_grad(), streaming(block, batch_size=2):
        for _ in range(2):
            block(torch.randn(2, channels, 40 * step))
        states = state_spec(block)
        assert states
        for state_name, tensor in states:
            assert tensor.untyped_storage().nbytes() == tensor.numel() * tensor.element_size(), state_name


def test_conv_streaming_rejects_partial_strides():
    conv = StreamingConv1d(1, 1, 4, stride=2)
    with streaming(conv, batch_size=1), pytest.raises(ValueError, match="multiple of stride 2"):
        conv(torch.zeros(1, 1, 3))


@pytest.mark.parametrize("n_fft, hop", [(32, 8), (320, 160), (640, 160)])
def test_istft_inverts_the_short_time_fourier_transform(n_fft, hop):
    # Rectangular analysis frames: the Hann synthesis windows then sum back to the signal wherever every
    # overlapping frame is present (from n_fft - hop on; the causal output ends at frames * hop).
    x = torch.randn(2, 40 * hop + n_fft, dtype=torch.float64)
    spec = torch.stft(x, n_fft, hop, window=torch.ones(n_fft, dtype=torch.float64), center=False,
                      return_complex=True)
    y = StreamingISTFT(n_fft, hop).double()(torch.cat([spec.real, spec.imag], dim=1))
    frames = spec.shape[-1]
    assert y.shape == (2, 1, frames * hop)
    assert torch.allclose(y[:, 0, n_fft - hop:], x[:, n_fft - hop:frames * hop], atol=1e-6)


def test_integrated_phase_starts_at_the_bins_centre_frequencies():
    # With no deviation, bin k advances by 2 pi k hop / n_fft per frame: a steady partial at a bin centre.
    n_fft, hop, frames = 32, 8, 40
    integrator = PhaseIntegrator(n_fft, hop)
    phase = integrator(torch.zeros(1, n_fft // 2 + 1, frames, dtype=torch.float64))
    t = torch.arange(1, frames + 1, dtype=torch.float64)
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[:, None]
    expected = 2 * math.pi * k * hop * t / n_fft
    assert torch.allclose(torch.polar(torch.ones_like(phase), phase),
                          torch.polar(torch.ones_like(expected), expected), atol=1e-9)
    assert phase.min() >= 0 and phase.max() < 2 * math.pi
    # A deviation of d per frame adds d * t.
    shifted = integrator(torch.full((1, n_fft // 2 + 1, frames), 0.1, dtype=torch.float64))
    assert torch.allclose(torch.remainder(shifted - phase - 0.1 * t, 2 * math.pi).cos(),
                          torch.ones_like(phase), atol=1e-9)


@pytest.mark.parametrize("k", [3, 5, 10])
def test_integrated_phase_synthesises_a_steady_partial_where_a_fixed_phase_cancels(k):
    # The same magnitude every frame at bin k: with the running phase the overlap-add is a pure sinusoid at the
    # bin's frequency; with one fixed phase (what a per-frame phase head must learn to avoid) frames whose
    # phases should differ cancel, leaving a fraction of the amplitude.
    n_fft, hop, frames = 64, 16, 48
    bins = n_fft // 2 + 1
    mag = torch.zeros(1, bins, frames, dtype=torch.float64)
    mag[:, k] = n_fft / 2  # the rectangular-frame DFT of a unit cosine at the bin centre
    istft = StreamingISTFT(n_fft, hop).double()
    phase = PhaseIntegrator(n_fft, hop)(torch.zeros_like(mag))
    y = istft(torch.cat([mag * phase.cos(), mag * phase.sin()], dim=1))[0, 0]
    n = torch.arange(frames * hop, dtype=torch.float64)
    steady = slice(n_fft - hop, frames * hop)  # where every overlapping frame is present
    assert torch.allclose(y[steady], torch.cos(2 * math.pi * k * (n[steady] + hop) / n_fft), atol=1e-9)
    fixed = istft(torch.cat([mag, torch.zeros_like(mag)], dim=1))[0, 0]
    assert fixed[steady].pow(2).mean().sqrt() < 0.75 * y[steady].pow(2).mean().sqrt()


def test_integrated_phase_streams_exactly_over_a_long_stream():
    # 20000 frames (200 s at a 10 ms hop): the running phase is summed in float64 and wrapped, so streaming in
    # chunks and the offline sum over the whole stream agree to rounding.
    g = torch.Generator().manual_seed(0)
    deviation = (torch.rand(2, 33, 20000, generator=g) * 2 - 1) * math.pi
    integrator = PhaseIntegrator(64, 16, channels=1)
    offline = integrator(deviation)
    with streaming(integrator, batch_size=2):
        parts = [integrator(deviation[..., i:i + 777]) for i in range(0, 20000, 777)]
        assert integrator._state.phase.dtype == torch.float64
    streamed = torch.cat(parts, dim=-1)
    assert offline.dtype == torch.float32
    assert torch.allclose(torch.polar(torch.ones_like(offline), offline),
                          torch.polar(torch.ones_like(streamed), streamed), atol=1e-5)
