"""The names of the losses the trainer computes: the keys of a recipe's ``losses.weights`` and of the logs.

:mod:`codec12.train.losses` computes the losses under these names and :mod:`codec12.train.recipe` checks a
recipe's weights against them when it loads. A ``distill`` section adds its teacher's loss (its
``weight_name``; :data:`codec12.distill.TEACHER_LOSSES` by default).
"""

RECONSTRUCTION = ("l1", "stft", "mel", "phase")
DISCRIMINATORS = ("msstft", "mpd")
# Each discriminator's generator-side losses: adversarial and feature matching.
ADVERSARIAL = tuple(f"{kind}_{d}" for d in DISCRIMINATORS for kind in ("adv", "feat"))
# ``consistency``: inverse-STFT decoders; ``f0``, ``voicing``: harmonic ones.
GENERATOR_LOSSES = RECONSTRUCTION + ("commitment", "consistency", "f0", "voicing") + ADVERSARIAL
