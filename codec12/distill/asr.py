"""A frozen ASR encoder as the semantic teacher: Whisper (transformers), as Voxtral's codec distills its semantic
tokens from an ASR model so that they carry speech content.

The teacher is the encoder of a Whisper checkpoint (a local directory or a hub id; the decoder is dropped on
load). Whisper reads log-mel features of fixed-length windows (30 s for the released models: the encoder's
positions are fixed), so audio is cut into such windows, each padded as Whisper pads it, and the encoder
frames that cover real audio (one per two mel hops, 20 ms) are kept. Its features — the last encoder layer by
default, or the mean of chosen hidden states — are pooled onto the codec's 12.5 Hz frames and matched by the
cosine loss of :class:`~codec12.distill.ssl.SSLDistiller`, through a trainable projection of the semantic branch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torchaudio
from torch import nn

from codec12._optional import require
from codec12.distill.ssl import SSLTeacher


@dataclass(frozen=True, kw_only=True)
class ASRDistillConfig:
    """The recipe's ``distill`` section for an ASR teacher.

    model: local directory (``config.json`` + safetensors weights, optionally ``preprocessor_config.json``) or
        hub id of a Whisper checkpoint, e.g. ``openai/whisper-small``.
    layer: encoder hidden-state index (0 = input embeddings, ``encoder_layers`` = last), a tuple of indices
        whose features are averaged, or None for the last.
    weight_name: name of the returned loss, the key the recipe weights it by.
    """

    teacher: Literal["asr"] = "asr"
    model: str
    layer: int | tuple[int, ...] | None = None
    weight_name: str = "distill_asr"

    def __post_init__(self):
        if self.teacher != "asr":
            raise ValueError(f"distill.teacher must be 'asr' for ASRDistillConfig, got {self.teacher!r}")
        if not isinstance(self.model, str) or not self.model:
            raise ValueError("distill.model must name a local directory or a hub id")
        layers = (self.layer,) if isinstance(self.layer, int) else self.layer
        if layers is not None and (not layers or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0
                                                          for x in layers)):
            raise ValueError(f"distill.layer must be null, a non-negative int or a non-empty list of them, got "
                             f"{self.layer!r}")
        if not isinstance(self.weight_name, str) or not self.weight_name:
            raise ValueError("distill.weight_name must be a non-empty string")

    @property
    def layers(self) -> tuple[int, ...] | None:
        return (self.layer,) if isinstance(self.layer, int) else self.layer


def load_asr_teacher(name_or_dir: str) -> tuple[nn.Module, object]:
    """``(Whisper encoder, feature extractor)`` from a local directory or a hub id, frozen and in eval mode. A
    directory without ``preprocessor_config.json`` gets Whisper's extractor sized to the encoder's positions."""
    transformers = require("transformers", "train", "an ASR teacher")
    AutoFeatureExtractor, AutoModel = transformers.AutoFeatureExtractor, transformers.AutoModel
    WhisperFeatureExtractor = transformers.WhisperFeatureExtractor

    path = Path(name_or_dir)
    local = path.is_dir()
    if not local and (path.exists() or name_or_dir.startswith((".", "/", "~")) or name_or_dir.count("/") != 1):
        raise ValueError(f"teacher {name_or_dir!r}: not a model directory and not a hub id (owner/name)")
    if local and not (path / "config.json").is_file():
        raise ValueError(f"teacher {path}: no config.json in this directory")
    try:
        # safetensors only: a pytorch_model.bin would be unpickled
        model = AutoModel.from_pretrained(name_or_dir, local_files_only=local, use_safetensors=True)
    except Exception as e:
        hint = "" if local else "; without network, download it elsewhere and pass its local directory"
        raise ValueError(f"teacher {name_or_dir}: cannot load ({type(e).__name__}: {e}){hint}") from e
    if getattr(model.config, "model_type", None) != "whisper":
        raise ValueError(f"teacher {name_or_dir}: a {type(model).__name__}, not a Whisper model (the asr teacher "
                         f"reads Whisper's encoder; speech SSL models are the ssl teacher)")
    encoder = model.get_encoder()
    config = model.config
    frames = config.max_source_positions * encoder.conv1.stride[0] * encoder.conv2.stride[0]
    if not local or (path / "preprocessor_config.json").is_file():
        extractor = AutoFeatureExtractor.from_pretrained(name_or_dir, local_files_only=local)
    else:
        seconds = frames * 160 / 16000
        if seconds != int(seconds):
            raise ValueError(f"teacher {path}: no preprocessor_config.json, and {frames} mel frames of 10 ms are no "
                             f"whole number of seconds; save the checkpoint's WhisperFeatureExtractor with it")
        extractor = WhisperFeatureExtractor(feature_size=config.num_mel_bins, chunk_length=int(seconds))
    if extractor.nb_max_frames != frames or extractor.feature_size != config.num_mel_bins:
        raise ValueError(f"teacher {name_or_dir}: the feature extractor gives {extractor.feature_size} x "
                         f"{extractor.nb_max_frames} mel frames; the encoder takes {config.num_mel_bins} x {frames}")
    encoder.eval().requires_grad_(False)
    return encoder, extractor


class ASRTeacher(SSLTeacher):
    """A frozen Whisper encoder producing features on the codec's frame grid (see :class:`SSLTeacher`)."""

    def __init__(self, encoder: nn.Module, extractor, layers: tuple[int, ...] | None = None) -> None:
        num_layers = encoder.config.encoder_layers
        layers = (num_layers,) if layers is None else layers
        bad = [x for x in layers if not 0 <= x <= num_layers]
        if bad:
            raise ValueError(f"teacher layer(s) {bad} out of range: the Whisper encoder has hidden states "
                             f"0..{num_layers}")
        self.model = encoder.eval().requires_grad_(False)
        self.extractor = extractor
        self.layers = tuple(layers)
        self.sample_rate = int(extractor.sampling_rate)
        self.dim = encoder.config.d_model
        self.normalize = False
        self.window = int(extractor.n_samples)  # samples per Whisper window
        self.hop = int(extractor.hop_length) * encoder.conv1.stride[0] * encoder.conv2.stride[0]

    @torch.no_grad()
    def hidden(self, wav: torch.Tensor, sample_rate: int) -> tuple[torch.Tensor, int]:
        """Audio [B, C, T] at ``sample_rate`` -> (features [B, J, D], one per ``hop`` samples, samples seen)."""
        x = wav.float().mean(dim=1)
        if sample_rate != self.sample_rate:
            x = torchaudio.functional.resample(x, sample_rate, self.sample_rate)
        device = self.device
        out = []
        for start in range(0, x.shape[-1], self.window):
            piece = x[:, start:start + self.window]
            feats = self.extractor([a.cpu().numpy() for a in piece], sampling_rate=self.sample_rate,
                                   return_tensors="pt", device=device.type)
            features = feats["input_features"].to(device, next(self.model.parameters()).dtype)
            states = self.model(features, output_hidden_states=True).hidden_states
            hidden = torch.stack([states[i] for i in self.layers]).mean(dim=0)
            out.append(hidden[:, : math.ceil(piece.shape[-1] / self.hop)])
        return torch.cat(out, dim=1).float(), x.shape[-1]
