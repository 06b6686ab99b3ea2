"""Quantizers: residual VQ, FSQ and the split (semantic + acoustic) quantizer wrapping them."""

from codec12.quantizers.base import QuantizerOutput
from codec12.quantizers.fsq import ScalarQuantizer
from codec12.quantizers.split import SplitQuantizer
from codec12.quantizers.vq import ResidualVQ

__all__ = ["QuantizerOutput", "ResidualVQ", "ScalarQuantizer", "SplitQuantizer"]
