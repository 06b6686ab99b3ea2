"""The losses a training run computes, by the names the recipe weighs them with and the logs show them under.

Reconstruction (``l1``, ``stft``, ``mel``, ``phase``), the quantizer's ``commitment``, the inverse-STFT decoder's
``consistency``, a harmonic decoder's ``f0`` and ``voicing`` against the pitch teacher, the distiller's losses and,
per discriminator (``msstft``, ``mpd``), ``adv_*`` and ``feat_*`` (the list: :mod:`codec12.train.loss_names`). The
codec, the distiller and the optimizers are the trainer's; this part owns the loss modules, the discriminators and
the balancer that weighs the losses.
"""

from __future__ import annotations

import torch
from torch import nn

from codec12.codec import CodecOutput
from codec12.config import CodecConfig
from codec12.decoder.istft import f0_grid
from codec12.distill.pitch import PitchTarget, PitchTeacher
from codec12.losses import (
    AdversarialLoss,
    Balancer,
    F0Loss,
    L1WaveLoss,
    MelLoss,
    MultiPeriodDiscriminator,
    MultiResolutionSTFTLoss,
    MultiScaleSTFTDiscriminator,
    PhaseDerivativeLoss,
    SpectralConsistencyLoss,
    VoicingLoss,
)
from codec12.losses.pitch import f0_error
from codec12.train.loss_names import RECONSTRUCTION
from codec12.train.recipe import Recipe


class TrainingLosses:
    """A run's generator and discriminator losses (see the module docstring).

    The discriminators (``adversaries``, by name) are built first, in a fixed order, from the global random state:
    a run's weights follow from its seed.
    """

    def __init__(self, recipe: Recipe, config: CodecConfig, device: torch.device) -> None:
        r = recipe
        weights = r.losses.weights
        d = r.discriminators
        ch = config.channels
        self.adversaries = nn.ModuleDict()
        if weights.get("adv_msstft", 0) or weights.get("feat_msstft", 0):
            self.adversaries["msstft"] = AdversarialLoss(
                MultiScaleSTFTDiscriminator(d.msstft_n_ffts, d.msstft_channels, ch), r.losses.gan,
                r.losses.feature_matching)
        if weights.get("adv_mpd", 0) or weights.get("feat_mpd", 0):
            self.adversaries["mpd"] = AdversarialLoss(
                MultiPeriodDiscriminator(d.mpd_periods, d.mpd_channels, ch), r.losses.gan,
                r.losses.feature_matching)
        self.adversaries.to(device).train()
        self.start_step = d.start_step  # the discriminators join the generator's losses from this step

        self.l1 = L1WaveLoss()
        self.stft = MultiResolutionSTFTLoss(r.losses.stft_fft_sizes).to(device)
        self.mel = MelLoss(config.sample_rate, r.losses.mel_n_mels, r.losses.mel_win_lengths).to(device)
        self.phase = PhaseDerivativeLoss(r.losses.phase_fft_sizes).to(device)
        # An inverse-STFT decoder's spectra (CodecOutput.synthesis) for the consistency loss (trained when
        # weighted, logged at validation either way); a harmonic decoder's F0 and voicing for the pitch losses.
        self.consistency: SpectralConsistencyLoss | None = None
        self.train_consistency = bool(weights.get("consistency", 0) or "consistency" in r.losses.schedules)
        self.pitch_teacher: PitchTeacher | None = None
        self.teacher_forced_f0 = recipe.train.teacher_forced_f0
        self.f0_loss: F0Loss | None = None
        self.voicing_loss = VoicingLoss()
        istft = config.istft
        if istft is not None and istft.harmonic:
            self.f0_loss = F0Loss(f0_grid(istft.f0_min, istft.f0_max, istft.f0_bins)).to(device)
            if not weights.get("f0", 0):
                raise ValueError("a harmonic decoder learns its F0 from the pitch teacher alone: give the loss a "
                                 "weight (--set losses.weights.f0=1.0 --set losses.weights.voicing=0.2)")
            self.pitch_teacher = PitchTeacher(config.sample_rate, istft.hop_length, istft.n_fft, istft.f0_min,
                                              istft.f0_max)
        if istft is not None:
            self.consistency = SpectralConsistencyLoss(istft.n_fft, istft.hop_length)
            crop = r.data.crop_frames * config.frame_size
            if self.train_consistency and crop < self.consistency.min_samples:
                raise ValueError(f"losses.weights.consistency: crops of {crop} samples (data.crop_frames) are "
                                 f"shorter than the {self.consistency.min_samples} the consistency loss scores")
        elif self.train_consistency:
            raise ValueError("losses.weights.consistency: the spectral consistency loss needs the inverse-STFT "
                             "decoder (istft in the model config); this model has the SEANet decoder")
        self.balancer = Balancer(weights, r.losses.schedules)

    def reconstruction(self, pred: torch.Tensor, target: torch.Tensor, names) -> dict[str, torch.Tensor]:
        fns = {"l1": self.l1, "stft": self.stft, "mel": self.mel, "phase": self.phase}
        return {n: fns[n](pred, target) for n in names}

    def consistency_of(self, out: CodecOutput) -> torch.Tensor:
        """The consistency loss of the spectra the decoder fed its inverse STFT."""
        spectrum, audio = out.synthesis.spectrum, out.synthesis.audio.float()
        bins2 = 2 * self.consistency.bins
        return self.consistency(spectrum.reshape(-1, bins2, spectrum.shape[-1]), audio.reshape(-1, audio.shape[-1]))

    def forced_f0(self, target: PitchTarget | None) -> torch.Tensor | None:
        """The F0 a harmonic decoder synthesises its training output with when ``train.teacher_forced_f0``: the
        teacher's on its voiced frames, 0 (the decoder's own) elsewhere; None otherwise."""
        if target is None or not self.teacher_forced_f0:
            return None
        return torch.where(target.voiced & target.known, target.f0, torch.zeros_like(target.f0))

    def pitch(self, out: CodecOutput, target: PitchTarget, metrics: bool = False) -> dict[str, torch.Tensor]:
        """A harmonic decoder's F0 classification and voicing cross-entropies against the pitch teacher's
        ``target`` (``self.pitch_teacher(wav)``); with ``metrics`` also its F0 error in octaves over the voiced
        frames (``f0_octaves``)."""
        synthesis = out.synthesis
        voiced = target.voiced & target.known
        losses = {"f0": self.f0_loss(synthesis.f0_logits, target.f0, voiced),
                  "voicing": self.voicing_loss(synthesis.voicing.float(), target.voiced, target.known)}
        if metrics:
            losses["f0_octaves"] = f0_error(synthesis.f0, target.f0, voiced)
        return losses

    def generator(self, out: CodecOutput, wav: torch.Tensor, step: int, extra: dict[str, torch.Tensor],
                  pitch: PitchTarget | None = None) -> dict[str, torch.Tensor]:
        """The generator's losses at ``step`` by name (unweighted), for the codec's output ``out`` of ``wav``;
        ``extra``: losses computed elsewhere (the distiller's); ``pitch``: the pitch teacher's target for ``wav``
        (harmonic decoders). The names are :mod:`codec12.train.loss_names`' (the recipe checked its weights
        against them when it loaded)."""
        audio = out.audio.float()
        active = [n for n in RECONSTRUCTION if self.balancer.weights.get(n, 0.0) or n in self.balancer.schedules]
        losses = self.reconstruction(audio, wav, active)
        losses["commitment"] = out.losses["commitment"].float()
        if self.train_consistency:
            losses["consistency"] = self.consistency_of(out)
        if self.pitch_teacher is not None:
            losses.update(self.pitch(out, pitch if pitch is not None else self.pitch_teacher(wav)))
        losses.update(extra)
        if step >= self.start_step:
            for name, adv in self.adversaries.items():
                g = adv.generator_loss(audio, wav)
                losses[f"adv_{name}"] = g.adversarial
                losses[f"feat_{name}"] = g.feature_matching
        return losses

    def total(self, losses: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        """The weighted sum the generator descends."""
        return self.balancer(losses, step)

    def discriminator(self, fake: torch.Tensor, real: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each discriminator's loss on generated (detached) and real audio, as ``disc_<name>``."""
        return {f"disc_{n}": adv.discriminator_loss(fake, real) for n, adv in self.adversaries.items()}
