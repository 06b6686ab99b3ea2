"""Training losses, kept outside the model: reconstruction, adversarial (discriminators + GAN objectives),
feature matching, and a balancer that weighs them by the names they are logged under.
"""

from codec12._lazy import lazy_exports

_EXPORTS = {
    "AdversarialLoss": "codec12.losses.adversarial",
    "Balancer": "codec12.losses.balancer",
    "DiscriminatorOutput": "codec12.losses.adversarial",
    "F0Loss": "codec12.losses.pitch",
    "FeatureMatchingLoss": "codec12.losses.adversarial",
    "GAN_LOSSES": "codec12.losses.adversarial",
    "GeneratorLoss": "codec12.losses.adversarial",
    "L1WaveLoss": "codec12.losses.spectral",
    "MelLoss": "codec12.losses.spectral",
    "MultiPeriodDiscriminator": "codec12.losses.adversarial",
    "MultiResolutionSTFTLoss": "codec12.losses.spectral",
    "MultiScaleSTFTDiscriminator": "codec12.losses.adversarial",
    "PeriodDiscriminator": "codec12.losses.adversarial",
    "PhaseDerivativeLoss": "codec12.losses.spectral",
    "STFTDiscriminator": "codec12.losses.adversarial",
    "SpectralConsistencyLoss": "codec12.losses.spectral",
    "VoicingLoss": "codec12.losses.pitch",
    "WeightSchedule": "codec12.losses.balancer",
    "discriminator_loss": "codec12.losses.adversarial",
    "f0_error": "codec12.losses.pitch",
    "frame_spectra": "codec12.losses.spectral",
    "generator_loss": "codec12.losses.adversarial",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
