"""Each causal block on its own: appending input never changes earlier outputs, and chunked == offline."""

import pytest
import torch

from codec12.config import ISTFTDecoderConfig
from codec12.decoder.istft import ISTFTDecoder, StreamingISTFT
from codec12.nn.conv import StreamingConv1d, StreamingConvTranspose1d
from codec12.nn.streaming import streaming
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
    "istft": (lambda: StreamingISTFT(32, 8), 1),
}
IN_CHANNELS = {"transformer": 8, "istft-decoder": 6, "istft": 34}


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
