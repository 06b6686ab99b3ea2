"""Training: recipes, data, the loop (``run``), checkpoints. ``codec12 train RECIPE`` drives it."""

from codec12._lazy import lazy_exports

_EXPORTS = {
    "NonFiniteError": "codec12.train.trainer",
    "Recipe": "codec12.train.recipe",
    "TrainResult": "codec12.train.trainer",
    "load_recipe": "codec12.train.recipe",
    "run": "codec12.train.trainer",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
