"""Decoder blocks: the causal SEANet waveform decoder."""

from codec12.decoder.seanet import SEANetDecoder

__all__ = ["SEANetDecoder"]
