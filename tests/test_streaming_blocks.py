"""Each causal block on its own: appending input never changes earlier outputs, and chunked == offline."""

import pytest
import torch

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
}


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_block_is_causal_and_streams_exactly(name):
    make, step = BLOCKS[name]
    torch.manual_seed(0)
    block = make().eval()
    channels = 8 if name == "transformer" else block.conv.in_channels
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
