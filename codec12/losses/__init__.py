"""Training losses, kept outside the model: reconstruction, adversarial (discriminators + GAN objectives),
feature matching, and a balancer that weighs them by the names they are logged under."""

from codec12.losses.adversarial import (
    GAN_LOSSES,
    AdversarialLoss,
    DiscriminatorOutput,
    FeatureMatchingLoss,
    GeneratorLoss,
    MultiPeriodDiscriminator,
    MultiScaleSTFTDiscriminator,
    PeriodDiscriminator,
    STFTDiscriminator,
    discriminator_loss,
    generator_loss,
)
from codec12.losses.balancer import Balancer, WeightSchedule
from codec12.losses.spectral import L1WaveLoss, MelLoss, MultiResolutionSTFTLoss

__all__ = [
    "GAN_LOSSES", "AdversarialLoss", "Balancer", "DiscriminatorOutput", "FeatureMatchingLoss", "GeneratorLoss",
    "L1WaveLoss", "MelLoss", "MultiPeriodDiscriminator", "MultiResolutionSTFTLoss", "MultiScaleSTFTDiscriminator",
    "PeriodDiscriminator", "STFTDiscriminator", "WeightSchedule", "discriminator_loss", "generator_loss",
]
