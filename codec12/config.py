"""Configuration of a codec12 model: one frozen dataclass per block, presets, JSON I/O.

Derived values (``frame_size``, ``frame_rate``, ``codebook_sizes``, ``bitrate``) are properties and are
never stored. Every dataclass validates itself in ``__post_init__`` and rejects unknown keys when read
from a dictionary, naming them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codec12._dataclass_io import check_types, json_repr, load, non_default, to_plain, type_hints
from codec12._hash_format1 import format1_hashes

FORMAT_VERSION = 1
FRAME_RATE = 12.5
# What config_hash computes; files that record a hash record this beside it as ``config_hash_format`` (files
# without it hold format 1). CONFIG_HASH_FORMATS: the formats hash_matches reads.
CONFIG_HASH_FORMAT = 2
CONFIG_HASH_FORMATS = (1, 2)
# Field metadata of what does not decide the codes or the audio, left out of config_hash: the name and the
# quantizer's training-only settings (fine-tuning with other ones keeps the hash).
NOT_HASHED = {"hashed": False}

_NORMS = ("weight_norm", "none")
_PAD_MODES = ("constant", "replicate")


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


# Upper limits on sizes, several times what any real codec uses (Mimi, Voxtral, DAC, EnCodec): a config beyond them
# is a typo or hostile, and would allocate gigabytes to terabytes before anything else could object.
_LIMITS = {
    "sample_rate": 192_000, "latent_dim": 4096, "downsample_stride": 16,
    "seanet.dimension": 4096, "seanet.n_filters": 512, "seanet.ratios": 32, "seanet.kernel_size": 63,
    "seanet.last_kernel_size": 63, "seanet.residual_kernel_size": 63, "seanet.dilation_base": 8,
    "seanet.n_residual_layers": 8, "seanet.compress": 8,
    "transformer.d_model": 4096, "transformer.num_heads": 64, "transformer.num_layers": 64,
    "transformer.dim_feedforward": 16384, "transformer.context": 4096,
    "voxtral.patch_size": 4096, "voxtral.patch_kernel_size": 63, "voxtral.dim": 4096, "voxtral.hidden_dim": 16384,
    "voxtral.num_heads": 64, "voxtral.num_kv_heads": 64, "voxtral.head_dim": 512, "voxtral.window": 4096,
    "voxtral.encoder_layers": 64, "voxtral.encoder_kernels": 63, "voxtral.encoder_strides": 16,
    "voxtral.decoder_layers": 64, "voxtral.decoder_kernels": 63, "voxtral.decoder_strides": 16,
    "quantizer.semantic_dim": 4096, "quantizer.num_acoustic": 256, "quantizer.acoustic_dim": 4096,
    "istft.dim": 4096, "istft.intermediate_dim": 16384, "istft.num_layers": 64, "istft.kernel_size": 63,
    "istft.n_fft": 16384, "istft.hop_length": 4096, "istft.f0_bins": 4096,
}
_MAX_STAGES = 8  # entries of seanet.ratios and of voxtral's per-stage tuples
_MAX_SEANET_WIDTH = 8192  # channels of SEANet's widest block: n_filters * 2 ** len(ratios)
_MAX_CODEBOOK_FLOATS = 1 << 27  # codebook entries x dims over all levels (Mimi: 2**24)


def _check_fields(obj, block: str) -> None:
    """Check the type of every field of dataclass ``obj`` against its annotation, and the size limits; errors name
    the field as ``block.name``. Lists are accepted where tuples are declared (JSON has no tuples)."""
    check_types(obj, block)
    for name, hint in type_hints(type(obj)).items():
        value, label = getattr(obj, name), f"{block}.{name}" if block else name
        limit = _LIMITS.get(label)
        if limit is not None:
            for v in value if isinstance(value, (tuple, list)) else (value,):
                _check(v <= limit, f"{label} is {v}, over the limit of {limit} (no real codec comes near it)")
        if isinstance(value, (tuple, list)) and typing.get_args(hint)[-1:] == (Ellipsis,):
            _check(len(value) <= _MAX_STAGES, f"{label} has {len(value)} entries, over the limit of {_MAX_STAGES}")


def bitrate(codebook_sizes: tuple[int, ...], frame_rate: float = FRAME_RATE) -> float:
    """Bits per second of ``codebook_sizes`` rows at ``frame_rate``: rate x sum(log2(size))."""
    return frame_rate * sum(math.log2(s) for s in codebook_sizes)


@dataclass(frozen=True, kw_only=True)
class SEANetConfig:
    """Causal SEANet conv stack; the decoder mirrors the encoder."""

    channels: int = 1
    dimension: int = 512
    n_filters: int = 64
    ratios: tuple[int, ...] = (8, 6, 5, 4)
    kernel_size: int = 7
    last_kernel_size: int = 3
    residual_kernel_size: int = 3
    dilation_base: int = 2
    n_residual_layers: int = 1
    compress: int = 2
    pad_mode: str = "constant"
    norm: str = "weight_norm"

    def __post_init__(self):
        _check_fields(self, "seanet")
        _check(self.channels in (1, 2), f"seanet.channels must be 1 or 2, got {self.channels}")
        _check(len(self.ratios) >= 1 and all(int(r) == r and r >= 1 for r in self.ratios),
               f"seanet.ratios must be positive integers, got {self.ratios}")
        for name in ("dimension", "n_filters", "kernel_size", "last_kernel_size", "residual_kernel_size",
                     "dilation_base", "n_residual_layers", "compress"):
            _check(getattr(self, name) >= 1, f"seanet.{name} must be >= 1, got {getattr(self, name)}")
        _check(self.pad_mode in _PAD_MODES, f"seanet.pad_mode must be one of {_PAD_MODES}, got {self.pad_mode!r}")
        _check(self.norm in _NORMS, f"seanet.norm must be one of {_NORMS}, got {self.norm!r}")
        width = self.n_filters * 2 ** len(self.ratios)
        _check(width <= _MAX_SEANET_WIDTH,
               f"seanet.n_filters: {self.n_filters} x 2 ** {len(self.ratios)} stages = {width} channels in the widest "
               f"block, over the limit of {_MAX_SEANET_WIDTH}")

    @property
    def hop_length(self) -> int:
        return math.prod(self.ratios)


@dataclass(frozen=True, kw_only=True)
class TransformerConfig:
    """Causal transformer with RoPE, a bounded attention context (in steps) and LayerScale."""

    d_model: int = 512
    num_heads: int = 8
    num_layers: int = 8
    dim_feedforward: int = 2048
    context: int = 250
    max_period: float = 10000.0
    layer_scale: float = 0.01
    norm_eps: float = 1e-5

    def __post_init__(self):
        _check_fields(self, "transformer")
        _check(self.num_layers >= 0, f"transformer.num_layers must be >= 0, got {self.num_layers}")
        _check(self.num_heads >= 1 and self.d_model % self.num_heads == 0,
               f"transformer.d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})")
        _check((self.d_model // self.num_heads) % 2 == 0, "transformer head dim must be even for RoPE")
        _check(self.context >= 1, f"transformer.context must be >= 1, got {self.context}")
        _check(self.dim_feedforward >= 1, "transformer.dim_feedforward must be >= 1")


@dataclass(frozen=True, kw_only=True)
class VoxtralConfig:
    """Voxtral TTS's codec topology (Mistral's ``AudioTokenizerArgs``), in place of SEANet + transformer.

    Encoder: audio cut into ``patch_size``-sample patches, a causal conv (``patch_kernel_size``, reflect-padded)
    to ``dim``, then per stage ``encoder_layers[i]`` causal transformer layers and a causal conv
    (``encoder_kernels[i]``, ``encoder_strides[i]``, replicate-padded; the last one projects to the latent and
    tanh-bounds its FSQ channels). Decoder: the mirror (a conv from the latent, then transformer layers and
    causal transposed convs, then a conv to patches). Transformer layers: RMSNorm pre-norms, attention with ALiBi
    over the current step and ``window`` past steps (halved after each stride-2 encoder conv and doubled back
    after each stride-2 decoder conv when ``halve_window``), RMSNorm on the whole query and key projections
    (``qk_norm``), SwiGLU feed-forward of ``hidden_dim``, LayerScale initialised at ``layer_scale`` (None: none).

    encoder: False for a model that has the decoder side only (the open Voxtral TTS checkpoint ships no encoder
    weights): it decodes codes and latents, and encoding raises an error saying what is missing.
    norm: ``weight_norm`` on every convolution (as Voxtral trains and ships them) or ``none`` (folded)."""

    channels: int = 1
    patch_size: int = 240
    patch_kernel_size: int = 7
    dim: int = 1024
    hidden_dim: int = 4096
    num_heads: int = 8
    num_kv_heads: int = 8
    head_dim: int = 128
    window: int = 16
    halve_window: bool = True
    qk_norm: bool = True
    qk_norm_eps: float = 1e-6
    norm_eps: float = 1e-2
    bias: bool = False
    layer_scale: float | None = 0.01
    encoder_layers: tuple[int, ...] = (2, 2, 2, 2)
    encoder_kernels: tuple[int, ...] = (4, 4, 4, 3)
    encoder_strides: tuple[int, ...] = (2, 2, 2, 1)
    decoder_layers: tuple[int, ...] = (2, 2, 2, 2)
    decoder_kernels: tuple[int, ...] = (3, 4, 4, 4)
    decoder_strides: tuple[int, ...] = (1, 2, 2, 2)
    encoder: bool = True
    norm: str = "weight_norm"

    def __post_init__(self):
        _check_fields(self, "voxtral")
        _check(self.channels == 1, f"voxtral.channels must be 1 (Voxtral's codec is mono), got {self.channels}")
        for name in ("patch_size", "patch_kernel_size", "dim", "hidden_dim", "num_heads", "num_kv_heads",
                     "head_dim", "window"):
            _check(getattr(self, name) >= 1, f"voxtral.{name} must be >= 1, got {getattr(self, name)}")
        _check(self.num_heads % self.num_kv_heads == 0,
               f"voxtral.num_heads ({self.num_heads}) must be a multiple of num_kv_heads ({self.num_kv_heads})")
        _check(self.norm_eps > 0 and self.qk_norm_eps > 0, "voxtral.norm_eps and qk_norm_eps must be > 0")
        _check(self.norm in _NORMS, f"voxtral.norm must be one of {_NORMS}, got {self.norm!r}")
        for side in ("encoder", "decoder"):
            layers, kernels, strides = (getattr(self, f"{side}_{k}") for k in ("layers", "kernels", "strides"))
            _check(len(layers) >= 1 and len(layers) == len(kernels) == len(strides),
                   f"voxtral.{side}_layers, _kernels and _strides must have the same length >= 1, got "
                   f"{len(layers)}, {len(kernels)}, {len(strides)}")
            _check(all(n >= 0 for n in layers), f"voxtral.{side}_layers must be >= 0, got {layers}")
            _check(all(k >= s >= 1 for k, s in zip(kernels, strides)),
                   f"voxtral.{side}: every kernel must be >= its stride >= 1, got kernels {kernels}, strides {strides}")
            if self.halve_window:
                _check(all(s in (1, 2) for s in strides),
                       f"voxtral.{side}_strides must be 1 or 2 when halve_window is set, got {strides}")
        _check(math.prod(self.encoder_strides) == math.prod(self.decoder_strides),
               f"voxtral: encoder strides {self.encoder_strides} and decoder strides {self.decoder_strides} must "
               f"have the same product")
        _check(self.decoder_strides[0] == 1,
               f"voxtral.decoder_strides[0] must be 1 (the first decoder conv is a plain conv at the frame rate), "
               f"got {self.decoder_strides[0]}")
        _check(min(self.encoder_windows) >= 2,
               f"voxtral.window ({self.window}) halves below 2 past steps through encoder strides "
               f"{self.encoder_strides}")
        # The first streamed chunk (one frame) must hold the steps the reflect padding of the patch convs mirrors.
        _check(self.patch_kernel_size - 1 < math.prod(self.encoder_strides),
               f"voxtral.patch_kernel_size ({self.patch_kernel_size}) must be at most the patches per frame "
               f"({math.prod(self.encoder_strides)})")

    @property
    def hop_length(self) -> int:
        """Samples per latent frame: patch size times the encoder's strides."""
        return self.patch_size * math.prod(self.encoder_strides)

    @property
    def encoder_windows(self) -> tuple[int, ...]:
        """Past steps each encoder stage's transformer attends to."""
        windows, w = [], self.window
        for stride in self.encoder_strides:
            windows.append(w)
            if self.halve_window and stride > 1:
                w //= 2
        return tuple(windows)

    @property
    def decoder_windows(self) -> tuple[int, ...]:
        """Past steps each decoder stage's transformer attends to: from the encoder's last window, doubled after
        each stride-2 decoder conv (the first conv, at the frame rate, included)."""
        windows, w = [], self.window
        for stride in self.encoder_strides:
            if self.halve_window and stride > 1:
                w //= 2
        for stride in self.decoder_strides:
            if self.halve_window and stride > 1:
                w *= 2
            windows.append(w)
        return tuple(windows)


@dataclass(frozen=True, kw_only=True)
class QuantizerConfig:
    """Split quantizer: one semantic VQ codebook (row 0) plus acoustic codes (RVQ levels or FSQ dims).

    layout ``shared``: both branches read the whole latent through their own projections and their
    outputs are summed (Mimi). Layout ``concat``: the latent is ``[semantic_dim | acoustic_dim]`` and each
    branch quantizes its own slice (Voxtral).
    """

    layout: str = "shared"
    semantic_codebook_size: int = 2048
    semantic_dim: int = 256
    acoustic: str = "rvq"
    num_acoustic: int = 31
    acoustic_codebook_size: int = 2048
    acoustic_dim: int = 256
    ema_decay: float = field(default=0.99, metadata=NOT_HASHED)
    threshold_ema_dead_code: float = field(default=2.0, metadata=NOT_HASHED)
    kmeans_init: bool = field(default=False, metadata=NOT_HASHED)
    # training-time behaviour
    unquantized_rate: float = field(default=0.0, metadata=NOT_HASHED)
    level_dropout: bool = field(default=True, metadata=NOT_HASHED)
    fsq_dither: tuple[float, float, float] = field(default=(0.5, 0.25, 0.25), metadata=NOT_HASHED)

    def __post_init__(self):
        _check_fields(self, "quantizer")
        _check(self.layout in ("shared", "concat"),
               f"quantizer.layout must be 'shared' or 'concat', got {self.layout!r}")
        _check(self.acoustic in ("rvq", "fsq"), f"quantizer.acoustic must be 'rvq' or 'fsq', got {self.acoustic!r}")
        _check(self.semantic_codebook_size >= 2, "quantizer.semantic_codebook_size must be >= 2")
        _check(self.semantic_dim >= 1 and self.acoustic_dim >= 1, "quantizer dims must be >= 1")
        _check(self.num_acoustic >= 0, "quantizer.num_acoustic must be >= 0")
        if self.acoustic == "fsq":
            _check(self.acoustic_codebook_size % 2 == 1 and self.acoustic_codebook_size >= 3,
                   f"FSQ levels (acoustic_codebook_size) must be odd and >= 3, got {self.acoustic_codebook_size}")
            _check(self.acoustic_dim == self.num_acoustic,
                   f"FSQ: acoustic_dim ({self.acoustic_dim}) must equal num_acoustic ({self.num_acoustic})")
        else:
            _check(self.acoustic_codebook_size >= 2, "quantizer.acoustic_codebook_size must be >= 2")
        all_sizes = (self.semantic_codebook_size, self.acoustic_codebook_size)
        _check(max(all_sizes) <= 65536, "codebook sizes must fit uint16 (<= 65536)")
        floats = self.semantic_codebook_size * self.semantic_dim
        if self.acoustic == "rvq":
            floats += self.num_acoustic * self.acoustic_codebook_size * self.acoustic_dim
        _check(floats <= _MAX_CODEBOOK_FLOATS,
               f"quantizer: the codebooks hold {floats} numbers (codebook sizes x dims x levels), over the limit of "
               f"{_MAX_CODEBOOK_FLOATS}")
        _check(0.0 <= self.unquantized_rate <= 1.0, "quantizer.unquantized_rate must be in [0, 1]")
        _check(0.0 < self.ema_decay < 1.0, "quantizer.ema_decay must be in (0, 1)")
        _check(len(self.fsq_dither) == 3 and all(p >= 0 for p in self.fsq_dither)
               and abs(sum(self.fsq_dither) - 1.0) < 1e-6,
               f"quantizer.fsq_dither must be 3 probabilities summing to 1, got {self.fsq_dither}")

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        return (self.semantic_codebook_size,) + (self.acoustic_codebook_size,) * self.num_acoustic


ISTFT_PHASES = ("direct", "integrated")
HARMONIC_ENVELOPES = ("own", "shared")


@dataclass(frozen=True, kw_only=True)
class ISTFTDecoderConfig:
    """Vocos-style decoder in place of the mirrored SEANet decoder: a causal transposed conv from the SEANet
    frame rate to the STFT frame rate (``sample_rate / hop_length``), ``num_layers`` causal ConvNeXt blocks of
    width ``dim``, then a per-frame complex spectrum (log-magnitude and phase) and a Hann inverse STFT.

    ``phase``: ``"direct"`` predicts each frame's phase on its own (Vocos); ``"integrated"`` adds to it a running
    phase per bin that advances every frame by the bin's centre frequency plus a predicted deviation (an
    instantaneous frequency, as a phase vocoder), so a steady partial keeps its phase from frame to frame.

    ``harmonic``: a source-filter branch beside that free-phase spectrum. Heads predict each frame's F0 (one of
    ``f0_bins`` log-spaced classes between ``f0_min`` and ``f0_max`` Hz, refined between them) and voicing, and
    a harmonic envelope with a small phase correction per bin; the excitation is the windowed spectrum of a
    band-limited pulse train whose phase runs with the predicted F0, so the harmonics stay harmonic across the
    band whatever the loss resolution sees. The free-phase spectrum stays as the noise and residual branch; one
    inverse STFT sums both.

    ``harmonic_envelope``: ``"own"`` gives the harmonics an envelope of their own (a log-amplitude per bin,
    starting near silence); ``"shared"`` divides the free-phase branch's magnitude between the two instead: a
    predicted share per bin (times the voicing) of it shapes the harmonics, the rest stays free-phase, as the
    periodic and aperiodic parts of a vocoder's spectrum. Then the harmonics start at the level of the speech
    and every voiced bin trades comb against noise under the reconstruction loss."""

    dim: int = 256
    intermediate_dim: int = 768
    num_layers: int = 8
    kernel_size: int = 7
    n_fft: int = 640
    hop_length: int = 160
    phase: str = "direct"
    harmonic: bool = False
    f0_min: float = 50.0
    f0_max: float = 550.0
    f0_bins: int = 128
    harmonic_envelope: str = "own"

    def __post_init__(self):
        _check_fields(self, "istft")
        _check(self.phase in ISTFT_PHASES, f"istft.phase must be one of {list(ISTFT_PHASES)}, got {self.phase!r}")
        for name in ("dim", "intermediate_dim", "num_layers", "kernel_size", "n_fft", "hop_length"):
            _check(getattr(self, name) >= 1, f"istft.{name} must be >= 1, got {getattr(self, name)}")
        _check(self.n_fft % 2 == 0, f"istft.n_fft must be even, got {self.n_fft}")
        _check(self.n_fft % self.hop_length == 0 and self.n_fft >= 2 * self.hop_length,
               f"istft.n_fft ({self.n_fft}) must be a multiple of hop_length ({self.hop_length}), at least twice "
               f"it (Hann windows then sum to a constant)")
        _check(isinstance(self.harmonic, bool), f"istft.harmonic must be true or false, got {self.harmonic!r}")
        _check(self.f0_bins >= 2, f"istft.f0_bins must be >= 2, got {self.f0_bins}")
        _check(self.harmonic_envelope in HARMONIC_ENVELOPES,
               f"istft.harmonic_envelope must be one of {list(HARMONIC_ENVELOPES)}, got {self.harmonic_envelope!r}")
        _check(self.harmonic or self.harmonic_envelope == "own",
               "istft.harmonic_envelope applies to a harmonic decoder: set istft.harmonic too")
        _check(0 < self.f0_min < self.f0_max,
               f"istft.f0_min ({self.f0_min}) and f0_max ({self.f0_max}) must satisfy 0 < f0_min < f0_max")


@dataclass(frozen=True, kw_only=True)
class CodecConfig:
    """A whole codec: SEANet + transformer encoder, ×``downsample_stride`` to 12.5 Hz, split quantizer,
    mirrored decoder (or, with ``istft`` set, a Vocos-style inverse-STFT decoder after the transformer).

    With ``voxtral`` set, Voxtral TTS's codec topology replaces the SEANet, transformer, downsample and
    upsample blocks (``seanet``, ``transformer``, ``downsample_stride``, ``depthwise_upsample`` and ``istft``
    then do not apply and stay at their defaults; they are left out of the JSON)."""

    name: str = field(default="", metadata=NOT_HASHED)
    sample_rate: int = 24000
    seanet: SEANetConfig = field(default_factory=SEANetConfig)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    downsample_stride: int = 2
    latent_dim: int = 512
    depthwise_upsample: bool = True
    voxtral: VoxtralConfig | None = None
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)
    istft: ISTFTDecoderConfig | None = None

    def __post_init__(self):
        _check_fields(self, "")
        if self.voxtral is not None:
            self._check_voxtral()
            return
        _check(self.sample_rate > 0, f"sample_rate must be positive, got {self.sample_rate}")
        _check(self.downsample_stride >= 1, "downsample_stride must be >= 1")
        _check(self.latent_dim >= 1, "latent_dim must be >= 1")
        hop = self.seanet.hop_length * self.downsample_stride
        _check(self.sample_rate == hop * FRAME_RATE,
               f"sample_rate / 12.5 = {self.sample_rate / FRAME_RATE:g} samples per frame, but seanet.ratios "
               f"{self.seanet.ratios} x downsample_stride {self.downsample_stride} = {hop}: pick strides whose "
               f"product is sample_rate / 12.5")
        if self.transformer.num_layers > 0:
            _check(self.transformer.d_model == self.seanet.dimension,
                   f"transformer.d_model ({self.transformer.d_model}) must equal seanet.dimension "
                   f"({self.seanet.dimension})")
        if self.depthwise_upsample:
            _check(self.latent_dim == self.seanet.dimension,
                   "depthwise_upsample needs latent_dim == seanet.dimension")
        if self.istft is not None:
            _check(self.seanet.hop_length % self.istft.hop_length == 0,
                   f"istft.hop_length ({self.istft.hop_length}) must divide the SEANet hop "
                   f"({self.seanet.hop_length} samples)")
            if self.istft.harmonic:
                bin_hz = self.sample_rate / self.istft.n_fft
                # Each bin sums the 4 harmonics nearest to it: enough while harmonics lie >= 1 bin apart.
                _check(self.istft.f0_min >= bin_hz,
                       f"istft.f0_min ({self.istft.f0_min} Hz) must be at least one STFT bin (sample_rate / n_fft "
                       f"= {bin_hz:g} Hz)")
                _check(self.istft.f0_max < self.sample_rate / 2,
                       f"istft.f0_max ({self.istft.f0_max} Hz) must be below the Nyquist frequency "
                       f"({self.sample_rate / 2:g} Hz)")
        q = self.quantizer
        if q.layout == "concat":
            _check(self.latent_dim == q.semantic_dim + q.acoustic_dim,
                   f"concat layout: latent_dim ({self.latent_dim}) must equal semantic_dim + acoustic_dim "
                   f"({q.semantic_dim} + {q.acoustic_dim})")

    def _check_voxtral(self) -> None:
        v, q = self.voxtral, self.quantizer
        _check(self.sample_rate > 0, f"sample_rate must be positive, got {self.sample_rate}")
        _check(self.sample_rate == v.hop_length * FRAME_RATE,
               f"sample_rate / 12.5 = {self.sample_rate / FRAME_RATE:g} samples per frame, but voxtral.patch_size "
               f"{v.patch_size} x encoder_strides {v.encoder_strides} = {v.hop_length}")
        unused = [name for name in _NOT_VOXTRAL if getattr(self, name) != _DEFAULTS[name]]
        _check(not unused, f"{unused} do not apply to the Voxtral topology (voxtral is set): leave them out")
        _check(q.layout == "concat" and q.acoustic == "fsq",
               f"voxtral: the quantizer must be the concat layout with an FSQ acoustic branch, got layout "
               f"{q.layout!r}, acoustic {q.acoustic!r}")
        _check(self.latent_dim == q.semantic_dim + q.acoustic_dim,
               f"concat layout: latent_dim ({self.latent_dim}) must equal semantic_dim + acoustic_dim "
               f"({q.semantic_dim} + {q.acoustic_dim})")

    # ---- derived values
    @property
    def channels(self) -> int:
        return self.seanet.channels if self.voxtral is None else self.voxtral.channels

    @property
    def frame_size(self) -> int:
        return self.seanet.hop_length * self.downsample_stride if self.voxtral is None else self.voxtral.hop_length

    @property
    def has_encoder(self) -> bool:
        """False for a decode-only model (a Voxtral TTS checkpoint without encoder weights)."""
        return self.voxtral is None or self.voxtral.encoder

    @property
    def norm(self) -> str:
        """The convolutions' normalization (``weight_norm`` or ``none``), wherever the topology keeps it."""
        return self.seanet.norm if self.voxtral is None else self.voxtral.norm

    def with_norm(self, norm: str) -> "CodecConfig":
        """This config with the convolutions' normalization set to ``norm`` (what folding weight norm changes)."""
        if self.voxtral is not None:
            return self.replace(voxtral=dataclasses.replace(self.voxtral, norm=norm))
        return self.replace(seanet=dataclasses.replace(self.seanet, norm=norm))

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.frame_size

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        return self.quantizer.codebook_sizes

    @property
    def num_codebooks(self) -> int:
        return len(self.codebook_sizes)

    @property
    def bitrate(self) -> float:
        """Bits per second with all codebooks."""
        return bitrate(self.codebook_sizes, self.frame_rate)

    # ---- I/O
    def to_dict(self) -> dict[str, Any]:
        """The JSON form: every field (an unset optional block as null), but for the blocks the Voxtral topology
        replaces when it is set, which do not describe the model."""
        data = to_plain(self)
        if self.voxtral is not None:
            for name in _NOT_VOXTRAL:
                del data[name]
        return {"format_version": FORMAT_VERSION, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config") -> "CodecConfig":
        """Build a config from its JSON form; a field left out takes its default. Every field's type and range is
        checked, and errors name ``where`` and the field."""
        if not isinstance(data, dict):
            raise ValueError(f"{where}: a config must be a JSON object, got {json_repr(data)}")
        data = dict(data)
        version = data.pop("format_version", None)
        if version is None:
            raise ValueError(f"{where}: missing 'format_version'")
        if version != FORMAT_VERSION:
            raise ValueError(f"{where}: format_version {json_repr(version)} is not supported (this codec12 reads "
                             f"{FORMAT_VERSION})")
        return load(cls, data, where)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json_file(cls, path: str | Path) -> "CodecConfig":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: cannot read config: {e}") from e
        return cls.from_dict(data, where=str(path))

    def config_hash(self) -> str:
        """A short stable hash of the architecture: what decides the codes and the audio (format
        ``CONFIG_HASH_FORMAT``). It hashes the canonical form: the fields that differ from their defaults, as sorted
        JSON with every number a float, without the fields marked ``NOT_HASHED`` (the name, the quantizer's
        training-only settings). So a field added with a default that keeps the earlier behaviour leaves every
        earlier config's hash as it was; changing a default changes hashes, and needs a new format."""
        form = _numbers_as_floats(non_default(self, keep=lambda f: f.metadata.get("hashed", True)))
        return hashlib.sha256(json.dumps(form, sort_keys=True).encode()).hexdigest()[:16]

    def hash_matches(self, recorded: str | None, hash_format: int) -> bool:
        """Whether ``recorded``, a hash a file holds in ``hash_format`` (its ``config_hash_format``; 1 for files
        without one), names this architecture. Format 1 is what codec12 wrote before the canonical form."""
        if hash_format == CONFIG_HASH_FORMAT:
            return recorded == self.config_hash()
        if hash_format == 1:
            return recorded in format1_hashes(non_default(self))
        raise ValueError(f"config_hash_format {json_repr(hash_format)} is not supported (this codec12 reads "
                         f"{', '.join(map(str, CONFIG_HASH_FORMATS))})")

    def replace(self, **changes) -> "CodecConfig":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_preset(cls, name: str) -> "CodecConfig":
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; known presets: {sorted(PRESETS)}")
        return PRESETS[name]


def _numbers_as_floats(x: Any) -> Any:
    """Every number in ``x`` as a float (a float field may hold an integer: 60 and 60.0 are one config)."""
    if isinstance(x, dict):
        return {k: _numbers_as_floats(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_numbers_as_floats(v) for v in x]
    return float(x) if isinstance(x, int) and not isinstance(x, bool) else x


# CodecConfig fields that the Voxtral topology replaces, and their defaults.
_NOT_VOXTRAL = ("seanet", "transformer", "downsample_stride", "depthwise_upsample", "istft")
_DEFAULTS = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
             for f in dataclasses.fields(CodecConfig) if f.name in _NOT_VOXTRAL}


PRESETS: dict[str, CodecConfig] = {
    # Mimi's exact topology, so Mimi weights load into it.
    "c12-mimi-24k": CodecConfig(
        name="c12-mimi-24k",
        sample_rate=24000,
        seanet=SEANetConfig(),
        transformer=TransformerConfig(),
        latent_dim=512,
        quantizer=QuantizerConfig(unquantized_rate=0.5),
    ),
    # Voxtral-style: 256-d semantic VQ (8192) + 36 FSQ dims of 21 levels, concatenated latent of 292.
    "c12-fsq-24k": CodecConfig(
        name="c12-fsq-24k",
        sample_rate=24000,
        seanet=SEANetConfig(),
        transformer=TransformerConfig(),
        latent_dim=292,
        depthwise_upsample=False,
        quantizer=QuantizerConfig(
            layout="concat", semantic_codebook_size=8192, semantic_dim=256,
            acoustic="fsq", num_acoustic=36, acoustic_codebook_size=21, acoustic_dim=36,
            unquantized_rate=0.5,
        ),
    ),
    # Voxtral TTS's codec (Mistral), exactly: 240-sample patches, ALiBi transformers of width 1024 with strided
    # convs to 12.5 Hz, semantic VQ 8192 x 256 + 36 FSQ dims of 21 levels (292-d latent); ~300M parameters.
    "c12-voxtral-24k": CodecConfig(
        name="c12-voxtral-24k",
        sample_rate=24000,
        latent_dim=292,
        voxtral=VoxtralConfig(),
        quantizer=QuantizerConfig(
            layout="concat", semantic_codebook_size=8192, semantic_dim=256,
            acoustic="fsq", num_acoustic=36, acoustic_codebook_size=21, acoustic_dim=36,
            unquantized_rate=0.5,
        ),
    ),
    # Small enough to train on two CPU cores: 16 kHz, 1 semantic + 11 acoustic RVQ levels of 1024 (1.5 kbps).
    "c12-tiny-16k": CodecConfig(
        name="c12-tiny-16k",
        sample_rate=16000,
        seanet=SEANetConfig(dimension=256, n_filters=32, ratios=(8, 5, 4, 4)),
        transformer=TransformerConfig(d_model=256, num_heads=4, num_layers=2, dim_feedforward=1024, context=125),
        latent_dim=256,
        quantizer=QuantizerConfig(
            semantic_codebook_size=1024, semantic_dim=64, num_acoustic=11,
            acoustic_codebook_size=1024, acoustic_dim=64, unquantized_rate=0.25,
        ),
    ),
}
