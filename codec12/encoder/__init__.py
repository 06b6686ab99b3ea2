"""Encoder blocks: the causal SEANet conv stack (the transformer lives in ``codec12.nn.transformer``)."""

from codec12.encoder.seanet import SEANetEncoder

__all__ = ["SEANetEncoder"]
