"""Reconstruction losses: waveform L1, multi-resolution STFT (auraloss), multi-scale log-mel and phase
derivatives; and the consistency of an inverse-STFT decoder's predicted spectra.

Every reconstruction loss is ``forward(pred, target) -> scalar`` on audio ``[B, C, T]`` (same shape). All run in
float32 whatever the autocast context: spectral magnitudes of bf16 audio are too coarse to train on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from codec12._optional import require


def _check_pair(pred: torch.Tensor, target: torch.Tensor, name: str) -> None:
    if pred.shape != target.shape or pred.dim() != 3:
        raise ValueError(f"{name}: pred and target must both be [B, C, T], got {tuple(pred.shape)} and "
                         f"{tuple(target.shape)}")


class L1WaveLoss(nn.Module):
    """Mean absolute difference of the waveforms."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_pair(pred, target, "l1")
        return F.l1_loss(pred.float(), target.float())


class MultiResolutionSTFTLoss(nn.Module):
    """Spectral convergence + log-magnitude L1 averaged over several STFT resolutions (auraloss).

    Channels are folded into the batch, so stereo models compare each channel with its own target.
    """

    def __init__(self, fft_sizes: tuple[int, ...] = (2048, 1024, 512, 256), hop_sizes: tuple[int, ...] | None = None,
                 win_lengths: tuple[int, ...] | None = None) -> None:
        super().__init__()
        hop_sizes = tuple(hop_sizes or (n // 4 for n in fft_sizes))
        win_lengths = tuple(win_lengths or fft_sizes)
        if not (len(fft_sizes) == len(hop_sizes) == len(win_lengths)) or not fft_sizes:
            raise ValueError(f"stft loss: fft_sizes {fft_sizes}, hop_sizes {hop_sizes} and win_lengths "
                             f"{win_lengths} must be non-empty and of equal length")
        auraloss = require("auraloss", "train", "the multi-resolution STFT loss")
        self.loss = auraloss.freq.MultiResolutionSTFTLoss(fft_sizes=list(fft_sizes), hop_sizes=list(hop_sizes),
                                                          win_lengths=list(win_lengths))

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_pair(pred, target, "stft")
        b, c, t = pred.shape
        with torch.autocast(pred.device.type, enabled=False):
            return self.loss(pred.float().reshape(b * c, 1, t), target.float().reshape(b * c, 1, t))


class MelLoss(nn.Module):
    """L1 distance of log-mel spectrograms at several window sizes (DAC / Vocos style).

    Built on torchaudio's mel filterbank (auraloss' mel scale needs librosa).
    """

    def __init__(self, sample_rate: int, n_mels: tuple[int, ...] = (80, 80, 80),
                 win_lengths: tuple[int, ...] = (2048, 1024, 512), clamp: float = 1e-5) -> None:
        super().__init__()
        if len(n_mels) != len(win_lengths) or not n_mels:
            raise ValueError(f"mel loss: n_mels {n_mels} and win_lengths {win_lengths} must be non-empty and of "
                             f"equal length")
        self.clamp = clamp
        self.mels = nn.ModuleList([
            torchaudio.transforms.MelSpectrogram(sample_rate=sample_rate, n_fft=win, win_length=win,
                                                 hop_length=win // 4, n_mels=n, power=1.0, center=True)
            for n, win in zip(n_mels, win_lengths)
        ])

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_pair(pred, target, "mel")
        with torch.autocast(pred.device.type, enabled=False):
            pred, target = pred.float(), target.float()
            total = pred.new_zeros(())
            for mel in self.mels:
                p = mel(pred).clamp(min=self.clamp).log10()
                t = mel(target).clamp(min=self.clamp).log10()
                total = total + F.l1_loss(p, t)
            return total / len(self.mels)

    def log_mel(self, wav: torch.Tensor) -> torch.Tensor:
        """[C, T] or [B, C, T] -> log10 mel of the finest-time resolution (for spectrogram images)."""
        with torch.autocast(wav.device.type, enabled=False):
            return self.mels[-1](wav.float()).clamp(min=self.clamp).log10()


class PhaseDerivativeLoss(nn.Module):
    """Mismatch of the phase's derivatives, instantaneous frequency (along time) and group delay (along
    frequency), at several STFT resolutions (hop ``n_fft // 4``), weighted by the target's magnitude.

    The magnitude losses leave phase free, and a decoder that predicts phase (inverse STFT) then overlaps
    frames whose harmonics do not continue one another. The absolute phase of the input is not something a
    low-bitrate code carries, but its derivatives follow pitch and timing, which it does: the loss is
    invariant to a global phase rotation. Per bin, with ``u = S / |S|``, the time derivative ``u_t conj(u_{t-1})``
    of prediction and target are compared as ``1 - cos`` of their angle difference (wrap-free, in [0, 2]);
    likewise along frequency. Weights are the geometric mean of the two target magnitudes involved, so silent
    and noise-floor bins, whose phase is arbitrary, count for little. The loss is the sum of the two
    derivatives' weighted means, averaged over resolutions: 0 for identical derivatives, about 1 for an
    unrelated phase (scrambled), at most 4.
    """

    def __init__(self, fft_sizes: tuple[int, ...] = (1024, 512), eps: float = 1e-4) -> None:
        super().__init__()
        if not fft_sizes or any(not isinstance(n, int) or n < 8 for n in fft_sizes):
            raise ValueError(f"phase loss: fft_sizes must be ints >= 8, got {fft_sizes}")
        self.fft_sizes = tuple(fft_sizes)
        self.eps = eps
        for n in self.fft_sizes:
            self.register_buffer(f"window_{n}", torch.hann_window(n), persistent=False)

    @staticmethod
    def _mismatch(up: torch.Tensor, ut: torch.Tensor, mag: torch.Tensor, dim: int) -> torch.Tensor:
        n = up.shape[dim]
        a, b = (lambda x: x.narrow(dim, 1, n - 1)), (lambda x: x.narrow(dim, 0, n - 1))
        dp, dt = a(up) * b(up).conj(), a(ut) * b(ut).conj()
        weight = (a(mag) * b(mag)).sqrt()
        return (weight * (1 - (dp * dt.conj()).real)).sum() / weight.sum().clamp_min(1e-8)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_pair(pred, target, "phase")
        b, c, t = pred.shape
        with torch.autocast(pred.device.type, enabled=False):
            pred, target = pred.float().reshape(b * c, t), target.float().reshape(b * c, t)
            total = pred.new_zeros(())
            for n in self.fft_sizes:
                window = getattr(self, f"window_{n}")
                sp = torch.stft(pred, n, n // 4, window=window, return_complex=True)
                st = torch.stft(target, n, n // 4, window=window, return_complex=True)
                mag = st.abs()
                up, ut = sp / (sp.abs() + self.eps), st / (mag + self.eps)
                total = total + self._mismatch(up, ut, mag, -1) + self._mismatch(up, ut, mag, -2)
            return total / len(self.fft_sizes)


def frame_spectra(audio: torch.Tensor, n_fft: int, hop_length: int) -> torch.Tensor:
    """Audio [..., T] -> complex [..., n_fft // 2 + 1, frames]: the DFT of each whole rectangular frame
    ``audio[..., t * hop : t * hop + n_fft]``. For the causal inverse STFT of
    :class:`~codec12.decoder.istft.StreamingISTFT` (frame t synthesises those very samples, Hann-windowed and
    scaled so the windows sum to one) this is the exact inverse: a consistent predicted spectrum comes back."""
    if audio.shape[-1] < n_fft:
        raise ValueError(f"frame_spectra: {audio.shape[-1]} samples are fewer than one {n_fft}-sample frame")
    frames = (audio.shape[-1] - n_fft) // hop_length + 1
    windows = audio.unfold(-1, n_fft, hop_length)[..., :frames, :]
    return torch.fft.rfft(windows, dim=-1).transpose(-1, -2)


class SpectralConsistencyLoss(nn.Module):
    """How far the spectrum an inverse-STFT decoder predicts is from the spectrum of what it synthesises.

    Neighbouring frames overlap, so an arbitrary predicted spectrum is not the STFT of any signal: where
    frames disagree (a partial's phase not advancing with its frequency), the overlap-add cancels part of
    them, and the reconstruction losses, which only see the output, cannot tell a decoder that its frames
    fight. This is ``||frame_spectra(output) - predicted||^2 / ||predicted||^2`` over the frames whose
    samples every overlapping window covers (the first ``n_fft / hop - 1`` frames, which the causal
    overlap-add starts with fewer windows, are left out): 0 for a consistent spectrum, and invariant to the
    level, which the reconstruction losses set. ``forward(predicted, audio)``: predicted [N, 2 * bins, frames]
    (real parts, then imaginary, as the decoder feeds its inverse STFT), audio [N, frames * hop]."""

    def __init__(self, n_fft: int, hop_length: int) -> None:
        super().__init__()
        if hop_length < 1 or n_fft < hop_length or n_fft % hop_length:
            raise ValueError(f"consistency loss: n_fft must be a multiple of hop_length, got {n_fft}, {hop_length}")
        self.n_fft, self.hop_length = n_fft, hop_length
        self.bins = n_fft // 2 + 1
        self.first = n_fft // hop_length - 1
        self.min_samples = n_fft + self.first * hop_length  # the shortest audio it can score

    def forward(self, predicted: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        if predicted.dim() != 3 or predicted.shape[1] != 2 * self.bins or audio.dim() != 2 \
                or audio.shape[0] != predicted.shape[0]:
            raise ValueError(f"consistency: predicted must be [N, {2 * self.bins}, frames] and audio [N, T], got "
                             f"{tuple(predicted.shape)} and {tuple(audio.shape)}")
        if audio.shape[-1] < self.min_samples:
            raise ValueError(f"consistency: {audio.shape[-1]} samples leave no frame past the first {self.first} "
                             f"(it needs {self.min_samples})")
        with torch.autocast(audio.device.type, enabled=False):
            analysed = frame_spectra(audio.float(), self.n_fft, self.hop_length)[..., self.first:]
            frames = analysed.shape[-1]
            p = predicted.float()[..., self.first: self.first + frames]
            pred = torch.complex(p[:, : self.bins], p[:, self.bins:])
            return (analysed - pred).abs().pow(2).sum() / pred.abs().pow(2).sum().clamp_min(1e-12)
