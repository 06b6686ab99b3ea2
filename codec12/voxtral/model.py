"""Voxtral TTS's codec as codec12 parts: the seven blocks :class:`~codec12.Codec` wires together.

=====================  ========================================================================================
codec12 part           Voxtral's module (``VoxtralTTSAudioTokenizer``)
=====================  ========================================================================================
``encoder``            patches of ``patch_size`` samples + ``input_proj`` (causal conv, reflect-padded)
``encoder_transformer`` ``encoder_blocks`` but the last: transformer stages and strided convs, down to 12.5 Hz
``downsample``         the last of ``encoder_blocks``: the conv to the latent, then tanh on its FSQ channels
``quantizer``          ``quantizer``: semantic VQ codebook + FSQ (:mod:`codec12.voxtral.quantizer`)
``upsample``           the first of ``decoder_blocks``: the conv from the latent
``decoder_transformer`` ``decoder_blocks`` but the first: transformer stages and strided transposed convs
``decoder``            ``output_proj`` (causal conv, reflect-padded) + patches back to samples
=====================  ========================================================================================

The tanh that Voxtral applies inside its FSQ's ``encode`` runs at the end of ``downsample`` here, so that the
latents codec12 exposes (``encode_latents``) are what Voxtral's decoder reads: 256 semantic channels and 36
FSQ values in [-1, 1] before rounding. A decode-only model (``voxtral.encoder`` false) has
:class:`MissingEncoder` stand-ins for the three encoder parts.
"""

from __future__ import annotations

import torch
from torch import nn

from codec12.config import CodecConfig, VoxtralConfig
from codec12.nn.conv import StreamingConv1d, StreamingConvTranspose1d
from codec12.voxtral.quantizer import VoxtralQuantizer
from codec12.voxtral.transformer import AlibiTransformer

MISSING_ENCODER = (
    "this model has no encoder: the open Voxtral TTS checkpoint ships its codec's decoder and codebooks only "
    "(no audio_tokenizer.input_proj.* / audio_tokenizer.encoder_blocks.* tensors), so it decodes codes and latents "
    "(decode, decode_latents) but cannot turn audio into tokens. Train the missing encoder with the "
    "voxtral-encoder recipe (codec12 train voxtral-encoder --set model.init=THIS_MODEL_DIR; docs/voxtral.md)")


class MissingEncoder(nn.Module):
    """Stands in for an encoder part of a decode-only model: no weights; running it is an error saying why."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise ValueError(MISSING_ENCODER)


class PatchEmbed(nn.Module):
    """Audio [B, C, T] (T a multiple of ``patch_size``) -> [B, dim, T / patch_size]: each patch's samples become
    channels (channel-major), then a causal conv."""

    def __init__(self, channels: int, patch_size: int, dim: int, kernel_size: int, norm: str) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = StreamingConv1d(channels * patch_size, dim, kernel_size, bias=False, pad_mode="reflect",
                                    norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t = x.shape
        p = self.patch_size
        x = x.reshape(b, c, t // p, p).transpose(2, 3).reshape(b, c * p, t // p)
        return self.proj(x)


class PatchHead(nn.Module):
    """[B, dim, T'] -> audio [B, C, T' * patch_size]: a causal conv to ``C * patch_size`` channels, read back as
    each step's samples."""

    def __init__(self, channels: int, patch_size: int, dim: int, kernel_size: int, norm: str) -> None:
        super().__init__()
        self.channels, self.patch_size = channels, patch_size
        self.proj = StreamingConv1d(dim, channels * patch_size, kernel_size, bias=False, pad_mode="reflect",
                                    norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.proj(x)
        b, _, t = y.shape
        return y.reshape(b, self.channels, self.patch_size, t).transpose(2, 3).reshape(b, self.channels,
                                                                                   t * self.patch_size)


class LatentProjection(nn.Module):
    """The encoder's last conv, [B, dim, T'] -> latents [B, D_s + D_a, T'], with tanh bounding the ``bounded``
    last (FSQ) channels."""

    def __init__(self, dim: int, latent_dim: int, bounded: int, kernel_size: int, stride: int, norm: str) -> None:
        super().__init__()
        self.free = latent_dim - bounded
        self.proj = StreamingConv1d(dim, latent_dim, kernel_size, stride=stride, bias=False, pad_mode="replicate",
                                    norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.proj(x)
        return torch.cat([y[:, : self.free], torch.tanh(y[:, self.free:])], dim=1)


class BlockStack(nn.Module):
    """Transformer stages and (transposed) convs in Voxtral's order, on channel-first input [B, dim, T]."""

    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


def _transformer(v: VoxtralConfig, num_layers: int, window: int) -> AlibiTransformer:
    return AlibiTransformer(num_layers, v.dim, v.hidden_dim, v.num_heads, v.num_kv_heads, v.head_dim, window,
                            v.norm_eps, v.qk_norm_eps if v.qk_norm else None, v.bias, v.layer_scale)


def encoder_blocks(v: VoxtralConfig, latent_dim: int, bounded: int) -> list[nn.Module]:
    """Voxtral's ``encoder_blocks`` in order: per stage a transformer, then a conv when the stage has a kernel or
    stride other than 1 (the last stage always: it projects to the latent)."""
    blocks: list[nn.Module] = []
    last = len(v.encoder_layers) - 1
    for i, (n, k, s, w) in enumerate(zip(v.encoder_layers, v.encoder_kernels, v.encoder_strides, v.encoder_windows)):
        blocks.append(_transformer(v, n, w))
        if i == last:
            blocks.append(LatentProjection(v.dim, latent_dim, bounded, k, s, v.norm))
        elif k != 1 or s != 1:
            blocks.append(StreamingConv1d(v.dim, v.dim, k, stride=s, bias=False, pad_mode="replicate", norm=v.norm))
    return blocks


def decoder_blocks(v: VoxtralConfig, latent_dim: int) -> list[nn.Module]:
    """Voxtral's ``decoder_blocks`` in order: a conv from the latent, then per stage a transformer followed by a
    transposed conv when the next stage has a kernel or stride other than 1."""
    k0, s0 = v.decoder_kernels[0], v.decoder_strides[0]
    blocks: list[nn.Module] = [StreamingConv1d(latent_dim, v.dim, k0, stride=s0, bias=False, pad_mode="replicate",
                                               norm=v.norm)]
    n_stages = len(v.decoder_layers)
    for i, (n, w) in enumerate(zip(v.decoder_layers, v.decoder_windows)):
        blocks.append(_transformer(v, n, w))
        if i + 1 < n_stages and (v.decoder_kernels[i + 1] != 1 or v.decoder_strides[i + 1] != 1):
            blocks.append(StreamingConvTranspose1d(v.dim, v.dim, v.decoder_kernels[i + 1], v.decoder_strides[i + 1],
                                                   bias=False, norm=v.norm))
    return blocks


def voxtral_parts(config: CodecConfig) -> dict[str, nn.Module]:
    """The seven parts of a :class:`~codec12.Codec` of ``config`` (``config.voxtral`` set), by part name."""
    v, q = config.voxtral, config.quantizer
    dec = decoder_blocks(v, config.latent_dim)
    parts: dict[str, nn.Module] = {
        "quantizer": VoxtralQuantizer(q),
        "upsample": dec[0],
        "decoder_transformer": BlockStack(dec[1:]),
        "decoder": PatchHead(v.channels, v.patch_size, v.dim, v.patch_kernel_size, v.norm),
    }
    if v.encoder:
        enc = encoder_blocks(v, config.latent_dim, q.acoustic_dim)
        parts.update(encoder=PatchEmbed(v.channels, v.patch_size, v.dim, v.patch_kernel_size, v.norm),
                     encoder_transformer=BlockStack(enc[:-1]), downsample=enc[-1])
    else:
        parts.update(encoder=MissingEncoder(), encoder_transformer=MissingEncoder(), downsample=MissingEncoder())
    return parts
