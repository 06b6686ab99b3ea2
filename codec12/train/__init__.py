"""Training: recipes, data, the loop (``run``), checkpoints. ``codec12 train RECIPE`` drives it."""

from codec12.train.recipe import Recipe, load_recipe
from codec12.train.trainer import NonFiniteError, TrainResult, run

__all__ = ["NonFiniteError", "Recipe", "TrainResult", "load_recipe", "run"]
