"""Causal Vocos-style decoder: ConvNeXt blocks at the STFT frame rate predict a complex spectrum per frame, and
a fixed inverse-STFT overlap-add turns it into the waveform.

Far cheaper to train than a SEANet decoder of the same quality on CPUs: every layer runs at the STFT frame rate
(100 Hz for 16 kHz with a 160-sample hop) instead of the sample rate. Everything is causal and streams: the
overlap-add is a transposed convolution with fixed weights, whose overlap tail is carried between chunks.

With ``harmonic`` set, a source-filter branch adds voiced speech by construction: the windowed spectrum of a
band-limited pulse train at a predicted F0 (its phase running from frame to frame), shaped by a predicted
harmonic envelope. A per-frame free-phase spectrum cannot keep a partial's phase advancing across frames, so
without it harmonics survive only where the losses resolve them; with it they are there across the band.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from codec12.config import ISTFTDecoderConfig
from codec12.nn.conv import OverlapAdd, StreamingConv1d, StreamingConvTranspose1d
from codec12.nn.streaming import StreamingModule

MAX_LOG_MAGNITUDE = math.log(100.0)
HARMONIC_LOG_AMPLITUDE_INIT = math.log(1e-3)  # the harmonic envelope's start (amplitude -60 dBFS)
HARMONIC_SHARE_INIT = 0.0  # harmonic_envelope="shared": the share's logit at the start (half, times the voicing)


class ConvNeXtBlock(nn.Module):
    """Causal depthwise conv -> LayerNorm -> pointwise MLP (GELU) -> layer scale, with an identity skip."""

    def __init__(self, dim: int, intermediate_dim: int, kernel_size: int, layer_scale: float) -> None:
        super().__init__()
        self.dwconv = StreamingConv1d(dim, dim, kernel_size, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).transpose(1, 2)
        y = self.pwconv2(F.gelu(self.pwconv1(self.norm(y))))
        return x + (self.gamma * y).transpose(1, 2)


def istft_basis(n_fft: int, hop_length: int) -> torch.Tensor:
    """Weights [2 * (n_fft // 2 + 1), 1, n_fft] of the transposed convolution that maps per-frame (real, imag)
    spectra to Hann-windowed inverse real DFTs, scaled so that overlapping windows sum to one."""
    bins = n_fft // 2 + 1
    n = torch.arange(n_fft, dtype=torch.float64)
    k = torch.arange(bins, dtype=torch.float64)
    angle = 2 * math.pi * k[:, None] * n[None, :] / n_fft
    weight = torch.full((bins, 1), 2.0, dtype=torch.float64)
    weight[0] = 1.0
    weight[-1] = 1.0  # n_fft is even: the Nyquist bin appears once
    window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
    overlap = n_fft / hop_length / 2  # sum of periodic Hann windows at this hop
    real = weight * torch.cos(angle) * window / (n_fft * overlap)
    imag = -weight * torch.sin(angle) * window / (n_fft * overlap)
    return torch.cat([real, imag], dim=0)[:, None, :].float()


class StreamingISTFT(OverlapAdd):
    """Causal inverse STFT: [B, channels * 2 * bins, T] (per channel: real parts, then imaginary parts) ->
    [B, channels, T * hop_length].

    Offline the overlap tail past the last frame is dropped; streaming keeps it and adds it to the next chunk
    (the contract of :class:`~codec12.nn.conv.OverlapAdd`)."""

    def __init__(self, n_fft: int, hop_length: int, channels: int = 1) -> None:
        super().__init__()
        self.out_channels = channels
        self.stride = hop_length
        self.padding_total = n_fft - hop_length
        self.register_buffer("basis", istft_basis(n_fft, hop_length), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.out_channels
        basis = self.basis.to(x.dtype)
        y = F.conv_transpose1d(x, basis.repeat(c, 1, 1) if c > 1 else basis, stride=self.stride, groups=c)
        return self._emit(y, x.shape[-1])


@dataclass
class PhaseState:
    phase: torch.Tensor  # [B, size] float64: the running phase after the last frame, in [0, 2 pi)


class RunningPhase(StreamingModule):
    """Running sum of per-frame phase increments, wrapped to [0, 2 pi): frame t's phase is the sum over frames
    s <= t of increment s (plus a fixed per-row advance, :meth:`advance`).

    The sum runs in float64 and is wrapped, so the offline sum over a whole file and the streamed one (carried
    between chunks in the state) agree to float64 rounding however long the stream."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def advance(self, device: torch.device) -> torch.Tensor | None:
        """[size] float64 added to every frame's increment, or None."""
        return None

    def init_state(self, batch_size, device, dtype):
        return PhaseState(torch.zeros(batch_size, self.size, device=device, dtype=torch.float64))

    def running(self, increment: torch.Tensor) -> torch.Tensor:
        """increment: [B, size, T] (radians per frame) -> running phase [B, size, T] float64 in [0, 2 pi)."""
        step = increment.double()
        advance = self.advance(increment.device)
        if advance is not None:
            step = step + advance[:, None]
        total = torch.cumsum(step, dim=-1)
        state = self._state
        if isinstance(state, PhaseState):
            total = total + state.phase[:, :, None]
            state.phase = torch.remainder(total[..., -1], 2 * math.pi)
        return torch.remainder(total, 2 * math.pi)

    def forward(self, increment: torch.Tensor) -> torch.Tensor:
        """Like :meth:`running`, in the increment's dtype."""
        return self.running(increment).to(increment.dtype)


class PhaseIntegrator(RunningPhase):
    """Running phase per bin: frame t's phase is the sum over frames s <= t of the bin's centre-frequency advance
    ``2 pi k hop / n_fft`` plus the deviation predicted for frame s."""

    def __init__(self, n_fft: int, hop_length: int, channels: int = 1) -> None:
        super().__init__(channels * (n_fft // 2 + 1))
        self.n_fft, self.hop_length, self.channels = n_fft, hop_length, channels

    def advance(self, device: torch.device) -> torch.Tensor:
        """[channels * bins] float64: each bin's centre-frequency phase advance per frame, wrapped to [0, 2 pi)
        exactly (from integers, so no cast of the module can round it)."""
        k = torch.arange(self.n_fft // 2 + 1, dtype=torch.int64, device=device)
        return ((k * self.hop_length) % self.n_fft).double().repeat(self.channels) * (2 * math.pi / self.n_fft)


def hann_kernel(delta: torch.Tensor, n_fft: int) -> torch.Tensor:
    """The DFT of a periodic Hann window of ``n_fft`` points centred on the frame, at ``delta`` bins from a
    sinusoid's frequency, over its value at 0 (``n_fft / 2``): real, 1 at 0, 0 at +-2 bins and beyond its main
    lobe only side lobes (-31 dB and falling).

    The window is symmetric about sample n_fft / 2 (its sample 0 is 0), so the transform is a sum of three
    Dirichlet kernels of n_fft - 1 points: 0.5 K(d) + 0.25 K(d - 1) + 0.25 K(d + 1)."""
    n = n_fft

    def dirichlet(d: torch.Tensor) -> torch.Tensor:
        s = torch.sin(math.pi * d / n)
        # Within ~1e-5 * n / pi bins of 0 its Taylor series to d^2 (error ~d^4), away from 0 / 0 and its gradient.
        near = s.abs() < 1e-5
        safe = torch.where(near, torch.ones_like(s), s)
        series = (n - 1.0) * (1 - (math.pi * d) ** 2 * ((n - 1.0) ** 2 - 1) / (6.0 * n * n))
        return torch.where(near, series, torch.sin(math.pi * (n - 1) * d / n) / safe)

    return (0.5 * dirichlet(delta) + 0.25 * dirichlet(delta - 1) + 0.25 * dirichlet(delta + 1)) / (n / 2)


HARMONIC_CANDIDATES = (-1, 0, 1, 2)  # offsets from floor(bin / harmonic spacing): every harmonic within 2 bins


def harmonic_excitation(f0: torch.Tensor, phase: torch.Tensor, n_fft: int, sample_rate: int
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """The STFT frames of a band-limited pulse train: real and imaginary parts [B, bins, T], scaled for
    :class:`StreamingISTFT` so that an envelope of 1 synthesises harmonics of amplitude 1.

    f0: [B, 1, T] Hz, each frame's fundamental, at least one bin apart (sample_rate / n_fft).
    phase: [B, 1, T] float64, the fundamental's running phase at each frame's centre (sample n_fft / 2).

    Frame t holds, per bin k, the harmonics h (h * f0 below Nyquist) within reach of its window's main lobe:
    ``(2/3) (-1)^k sum_h exp(i h phase) W(h f0 n_fft / sample_rate - k)`` with W the centred Hann window's
    transform. That is 4/3 the DFT of the Hann-windowed harmonics, which the inverse STFT's Hann synthesis
    window and overlap-add (squared Hann windows at a quarter-window hop sum to 3/2) return at amplitude 1.
    """
    bins = n_fft // 2 + 1
    k = torch.arange(bins, device=f0.device, dtype=f0.dtype)[None, :, None]  # [1, bins, 1]
    spacing = f0 * (n_fft / sample_rate)  # bins between harmonics, [B, 1, T]
    base = torch.floor(k / spacing)
    real = imag = None
    for offset in HARMONIC_CANDIDATES:
        h = base + offset  # [B, bins, T]
        valid = (h >= 1) & (h * f0 < sample_rate / 2)
        weight = torch.where(valid, hann_kernel(h * spacing - k, n_fft), torch.zeros_like(h))
        angle = torch.remainder(h.double() * phase, 2 * math.pi).to(f0.dtype)
        re, im = weight * torch.cos(angle), weight * torch.sin(angle)
        real, imag = (re, im) if real is None else (real + re, imag + im)
    scale = (2.0 / 3.0) * (n_fft / 2) * (1.0 - 2.0 * (k % 2))  # the centred frame's (-1)^k
    return real * scale, imag * scale


@dataclass
class SynthesisOutput:
    """What :meth:`ISTFTDecoder.synthesize` made, for losses that need more than the audio.

    audio: [B, channels, T * hop_length].
    spectrum: [B, channels * 2 * bins, T] the frames fed to the inverse STFT (per channel: real, then imaginary).
    f0: [B, channels, T] Hz, the F0 predicted for each frame's centre (harmonic decoders; else None).
    f0_logits: [B, channels, f0_bins, T] the F0 classifier's logits over :func:`f0_grid` (harmonic decoders).
    voicing: [B, channels, T] voicing logits (harmonic decoders; else None).
    harmonic: [B, channels * 2 * bins, T] the harmonic branch's part of ``spectrum`` (harmonic decoders; else
    None): ``spectrum - harmonic`` is the free-phase branch's.
    """

    audio: torch.Tensor
    spectrum: torch.Tensor
    f0: torch.Tensor | None = None
    f0_logits: torch.Tensor | None = None
    voicing: torch.Tensor | None = None
    harmonic: torch.Tensor | None = None


def f0_grid(f0_min: float, f0_max: float, bins: int) -> torch.Tensor:
    """[bins] float32: log2 of the F0 classes' centres, evenly spaced from f0_min to f0_max Hz."""
    return torch.linspace(math.log2(f0_min), math.log2(f0_max), bins)


F0_NEIGHBOURS = 2  # classes on each side of the most likely one that the F0 estimate averages over


def decode_f0(logits: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """F0 classifier logits [..., bins, T] -> F0 [..., T] in Hz: the probability-weighted mean log-F0 of the most
    likely class and its F0_NEIGHBOURS neighbours each side (as CREPE), finer than the classes and never an
    average of two octaves."""
    bins = logits.shape[-2]
    prob = torch.softmax(logits, dim=-2)
    best = torch.argmax(logits, dim=-2, keepdim=True)  # [..., 1, T]
    offsets = torch.arange(-F0_NEIGHBOURS, F0_NEIGHBOURS + 1, device=logits.device)
    shape = [1] * (logits.dim() - 2) + [-1, 1]
    index = (best + offsets.view(shape)).clamp(0, bins - 1)  # [..., 2 n + 1, T]
    weight = torch.gather(prob, -2, index)
    centres = grid.to(logits.dtype)[index]
    return torch.pow(2.0, (weight * centres).sum(-2) / weight.sum(-2).clamp_min(1e-12))


class ISTFTDecoder(nn.Module):
    """Features [B, dimension, T] at the SEANet frame rate -> waveform [B, channels, T * upsample * hop_length].

    A causal transposed conv brings the features to the STFT frame rate, ConvNeXt blocks refine them, a 1x1
    conv predicts log-magnitude and phase per bin (per channel), and :class:`StreamingISTFT` synthesises.
    With ``phase="integrated"`` a second head predicts each bin's phase deviation per frame (at most pi), and
    :class:`PhaseIntegrator` adds the running phase to the first head's; that head starts at zero, so the
    running phase starts as the bins' centre frequencies.

    With ``harmonic`` a pitch head (a small MLP) classifies each frame's F0 into ``f0_bins`` log-spaced classes
    between f0_min and f0_max (:func:`decode_f0` reads the F0 off them) and predicts its voicing, and a harmonic
    head a log-amplitude envelope and a phase correction (at most pi / 2) per bin; the voiced spectrum
    ``sigmoid(voicing) * envelope * exp(i correction) * excitation`` (:func:`harmonic_excitation`, its phase
    running with the F0) is added to the free-phase one. With ``harmonic_envelope="shared"`` the harmonic head
    predicts a share logit instead of a log-amplitude: ``s = sigmoid(share) * sigmoid(voicing)`` of the free
    branch's magnitude ``m`` goes to the harmonics (envelope ``s * m / gain``, ``gain`` the excitation's peak per
    unit amplitude, n_fft / 3) and ``1 - s`` stays free-phase. The F0 reaches the synthesis without a gradient: the
    classifier learns from a pitch teacher (``SynthesisOutput.f0_logits``), the envelope from the reconstruction.
    """

    def __init__(self, config: ISTFTDecoderConfig, dimension: int, channels: int, upsample: int,
                 sample_rate: int | None = None) -> None:
        super().__init__()
        c = config
        self.channels = channels
        self.bins = c.n_fft // 2 + 1
        self.n_fft = c.n_fft
        self.upsample = StreamingConvTranspose1d(dimension, c.dim, 2 * upsample, stride=upsample) \
            if upsample > 1 else StreamingConv1d(dimension, c.dim, 1)
        self.blocks = nn.ModuleList([ConvNeXtBlock(c.dim, c.intermediate_dim, c.kernel_size, 1.0 / c.num_layers)
                                     for _ in range(c.num_layers)])
        self.norm = nn.LayerNorm(c.dim, eps=1e-6)
        self.head = nn.Linear(c.dim, 2 * self.bins * channels)
        self.istft = StreamingISTFT(c.n_fft, c.hop_length, channels)
        self.integrator = None
        if c.phase == "integrated":
            self.deviation_head = nn.Linear(c.dim, self.bins * channels)
            nn.init.zeros_(self.deviation_head.weight)
            nn.init.zeros_(self.deviation_head.bias)
            self.integrator = PhaseIntegrator(c.n_fft, c.hop_length, channels)
        self.f0_phase = None
        if c.harmonic:
            if sample_rate is None:
                raise ValueError("a harmonic ISTFTDecoder needs the sample rate")
            self.sample_rate = sample_rate
            self.hop_length = c.hop_length
            self.f0_bins = c.f0_bins
            # per channel: F0 class logits, then a voicing logit
            self.pitch_head = nn.Sequential(nn.Linear(c.dim, c.dim), nn.GELU(),
                                            nn.Linear(c.dim, (c.f0_bins + 1) * channels))
            self.register_buffer("f0_grid", f0_grid(c.f0_min, c.f0_max, c.f0_bins), persistent=False)
            # per channel: log-amplitude (or the share logit), phase correction
            self.harmonic_head = nn.Linear(c.dim, 2 * self.bins * channels)
            self.shared_envelope = c.harmonic_envelope == "shared"
            # a harmonic of amplitude 1 on a bin's centre frequency peaks at n_fft / 3 there (harmonic_excitation)
            self.harmonic_gain = c.n_fft / 3.0
            with torch.no_grad():  # own envelope: start nearly silent, so a trained free-phase branch keeps its sound
                self.harmonic_head.weight.mul_(0.1)
                self.harmonic_head.bias.zero_()
                self.harmonic_head.bias.view(channels, 2, self.bins)[:, 0].fill_(
                    HARMONIC_SHARE_INIT if self.shared_envelope else HARMONIC_LOG_AMPLITUDE_INIT)
            self.f0_phase = RunningPhase(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.synthesize(x).audio

    def synthesize(self, x: torch.Tensor, f0: torch.Tensor | None = None) -> SynthesisOutput:
        """Features [B, dimension, T] -> :class:`SynthesisOutput` (the audio and what made it).

        f0: [B, channels, T * upsample] Hz, an F0 to synthesise the harmonics with instead of the predicted one
        (training with a teacher's F0); frames where it is 0 keep the prediction."""
        x = self.upsample(x)
        for block in self.blocks:
            x = block(x)
        h = self.norm(x.transpose(1, 2))
        y = self.head(h).transpose(1, 2)  # [B, channels * 2 * bins, T]
        b, _, t = y.shape
        c = self.channels
        y = y.reshape(b * c, 2 * self.bins, t)
        log_mag, phase = y[:, : self.bins], y[:, self.bins:]
        if self.integrator is not None:
            deviation = math.pi * torch.tanh(self.deviation_head(h).transpose(1, 2))  # [B, channels * bins, T]
            phase = phase + self.integrator(deviation).reshape(b * c, self.bins, t)
        mag = torch.exp(log_mag.clamp(max=MAX_LOG_MAGNITUDE))
        real, imag = mag * torch.cos(phase), mag * torch.sin(phase)  # [B * channels, bins, T]
        forced, f0 = f0, None
        f0_logits = voicing = harmonic = None
        if self.f0_phase is not None:
            pitch = self.pitch_head(h).transpose(1, 2).reshape(b, c, self.f0_bins + 1, t)
            f0_logits, voicing = pitch[:, :, : self.f0_bins], pitch[:, :, self.f0_bins]
            f0 = decode_f0(f0_logits, self.f0_grid)  # [B, channels, T]
            f0_synth = f0.detach()
            if forced is not None:
                if forced.shape != f0.shape:
                    raise ValueError(f"f0: expected [B, channels, frames] = {tuple(f0.shape)}, got "
                                     f"{tuple(forced.shape)}")
                low, high = float(torch.pow(2.0, self.f0_grid[0])), float(torch.pow(2.0, self.f0_grid[-1]))
                f0_synth = torch.where(forced > 0, forced.to(f0.dtype).clamp(low, high), f0_synth)
            running = self.f0_phase.running(f0_synth * (2 * math.pi * self.hop_length / self.sample_rate))
            ex_re, ex_im = harmonic_excitation(f0_synth.reshape(b * c, 1, t), running.reshape(b * c, 1, t),
                                               self.n_fft, self.sample_rate)
            env = self.harmonic_head(h).transpose(1, 2).reshape(b * c, 2 * self.bins, t)
            voiced = torch.sigmoid(voicing.reshape(b * c, 1, t))
            if self.shared_envelope:
                share = torch.sigmoid(env[:, : self.bins]) * voiced
                amplitude = mag * share / self.harmonic_gain
                real, imag = real * (1.0 - share), imag * (1.0 - share)
            else:
                amplitude = torch.exp(env[:, : self.bins].clamp(max=0.0)) * voiced
            turn = (math.pi / 2) * torch.tanh(env[:, self.bins:])
            cos_t, sin_t = torch.cos(turn), torch.sin(turn)
            h_re, h_im = amplitude * (ex_re * cos_t - ex_im * sin_t), amplitude * (ex_re * sin_t + ex_im * cos_t)
            real, imag = real + h_re, imag + h_im
            harmonic = torch.cat([h_re, h_im], dim=1).reshape(b, c * 2 * self.bins, t)
        spectrum = torch.cat([real, imag], dim=1).reshape(b, c * 2 * self.bins, t)
        return SynthesisOutput(self.istft(spectrum), spectrum, f0, f0_logits, voicing, harmonic)
