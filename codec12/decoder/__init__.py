"""Decoder blocks: the causal SEANet waveform decoder and the Vocos-style inverse-STFT decoder."""

from codec12.decoder.istft import ISTFTDecoder, SynthesisOutput
from codec12.decoder.seanet import SEANetDecoder

__all__ = ["ISTFTDecoder", "SEANetDecoder", "SynthesisOutput"]
