"""Frozen speech SSL teachers from transformers and the cosine distillation loss (Mimi style).

A teacher is any transformers speech encoder that returns hidden states: WavLM, HuBERT, wav2vec2 (raw
waveform in, ``input_values``) or w2v-BERT (filter-bank features in, ``input_features``, computed by the
checkpoint's feature extractor). It runs at its own sample rate (audio is resampled inside), non-causally,
and its features — one layer or the mean of several — are average-pooled onto the codec's 12.5 Hz grid:
codec frame ``i`` covers samples ``[i * frame_size, (i + 1) * frame_size)``, i.e. seconds
``[i * 0.08, (i + 1) * 0.08)``, and receives the teacher frames whose centre falls in that span.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from codec12._optional import require

DEFAULT_TEACHER_RATE = 16000  # every released WavLM / HuBERT / wav2vec2 / w2v-BERT checkpoint


@dataclass(frozen=True, kw_only=True)
class SSLDistillConfig:
    """The recipe's ``distill`` section for an SSL teacher.

    model: local directory (``config.json`` + weights, optionally ``preprocessor_config.json``) or hub id.
    layer: hidden-state index (0 = input embeddings, ``num_hidden_layers`` = last layer), or a tuple of
        indices whose features are averaged.
    weight_name: name of the returned loss, the key the recipe weights it by.
    sample_rate: the teacher's rate; ``None`` reads it from the feature extractor (16 kHz when absent).
    """

    teacher: Literal["ssl"] = "ssl"
    model: str
    layer: int | tuple[int, ...] = 6
    weight_name: str = "distill_cosine"
    sample_rate: int | None = None

    def __post_init__(self):
        if self.teacher != "ssl":
            raise ValueError(f"distill.teacher must be 'ssl' for SSLDistillConfig, got {self.teacher!r}")
        if not isinstance(self.model, str) or not self.model:
            raise ValueError("distill.model must name a local directory or a hub id")
        layers = self.layers
        if not layers or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in layers):
            raise ValueError(f"distill.layer must be a non-negative int or a non-empty list of them, got "
                             f"{self.layer!r}")
        if not isinstance(self.weight_name, str) or not self.weight_name:
            raise ValueError("distill.weight_name must be a non-empty string")
        if self.sample_rate is not None and (not isinstance(self.sample_rate, int) or self.sample_rate <= 0):
            raise ValueError(f"distill.sample_rate must be a positive int, got {self.sample_rate!r}")

    @property
    def layers(self) -> tuple[int, ...]:
        return (self.layer,) if isinstance(self.layer, int) else tuple(self.layer)


def load_teacher(name_or_dir: str) -> tuple[nn.Module, object | None]:
    """Load ``(model, feature_extractor or None)`` from a local directory or a hub id, frozen and in eval mode."""
    transformers = require("transformers", "train", "an SSL teacher")
    AutoFeatureExtractor, AutoModel = transformers.AutoFeatureExtractor, transformers.AutoModel

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
        if local and not any(path.glob("*.safetensors")):
            hint = "; only safetensors weights are loaded (convert pytorch_model.bin with safetensors first)"
        raise ValueError(f"teacher {name_or_dir}: cannot load ({type(e).__name__}: {e}){hint}") from e
    extractor = None
    if not local or (path / "preprocessor_config.json").is_file():
        try:
            extractor = AutoFeatureExtractor.from_pretrained(name_or_dir, local_files_only=local)
        except Exception:
            extractor = None
    if getattr(model, "main_input_name", "input_values") != "input_values" and extractor is None:
        raise ValueError(f"teacher {name_or_dir}: {type(model).__name__} takes {model.main_input_name}, which needs "
                         f"the checkpoint's preprocessor_config.json (feature extractor)")
    model.eval()
    model.requires_grad_(False)
    return model, extractor


def teacher_frame_centers(model: nn.Module, num_frames: int, num_samples: int, sample_rate: int) -> torch.Tensor:
    """Centre time in seconds of each of the ``num_frames`` teacher frames computed from ``num_samples``.

    Conv feature encoders (wav2vec2 family) give frame ``j`` the samples ``[j * hop, j * hop + receptive)``;
    other front ends are taken to tile the audio evenly.
    """
    config = model.config
    kernels, strides = getattr(config, "conv_kernel", None), getattr(config, "conv_stride", None)
    if kernels and strides and getattr(model, "main_input_name", "input_values") == "input_values":
        hop = math.prod(strides)
        receptive, jump = 1, 1
        for k, s in zip(kernels, strides):
            receptive += (k - 1) * jump
            jump *= s
        starts = torch.arange(num_frames, dtype=torch.float64) * hop
        return (starts + receptive / 2) / sample_rate
    step = num_samples / max(num_frames, 1)
    return (torch.arange(num_frames, dtype=torch.float64) + 0.5) * step / sample_rate


def pooling_matrix(centers: torch.Tensor, num_frames: int, frame_duration: float) -> torch.Tensor:
    """[num_frames, J] averaging matrix: codec frame ``i`` averages the teacher frames whose centre lies in
    ``[i * frame_duration, (i + 1) * frame_duration)``; a codec frame that receives none (the padded tail)
    copies the nearest teacher frame."""
    index = torch.floor(centers / frame_duration).long().clamp(0, num_frames - 1)
    weights = torch.zeros(num_frames, centers.numel(), dtype=torch.float64)
    weights[index, torch.arange(centers.numel())] = 1.0
    counts = weights.sum(dim=1, keepdim=True)
    empty = (counts[:, 0] == 0).nonzero().flatten()
    if empty.numel():
        mids = (empty.double() + 0.5) * frame_duration
        nearest = (centers[None, :] - mids[:, None]).abs().argmin(dim=1)
        weights[empty, nearest] = 1.0
        counts = weights.sum(dim=1, keepdim=True)
    return (weights / counts).float()


class SSLTeacher:
    """A frozen transformers speech model producing features on the codec's frame grid.

    Deliberately not an ``nn.Module``: whoever holds it never registers its weights, so they stay out of
    ``state_dict``, ``parameters()`` and the optimizer. ``to(device)`` moves it.
    """

    def __init__(self, model: nn.Module, extractor: object | None, layers: tuple[int, ...],
                 sample_rate: int | None = None) -> None:
        num_layers = model.config.num_hidden_layers
        bad = [x for x in layers if not 0 <= x <= num_layers]
        if bad:
            raise ValueError(f"teacher layer(s) {bad} out of range: {type(model).__name__} has hidden states "
                             f"0..{num_layers}")
        self.model = model.eval().requires_grad_(False)
        self.extractor = extractor
        self.layers = layers
        rate = sample_rate or getattr(extractor, "sampling_rate", None) or DEFAULT_TEACHER_RATE
        self.sample_rate = int(rate)
        self.dim = model.config.hidden_size
        # wav2vec2-large-lv60 style checkpoints expect each utterance normalized to zero mean, unit variance.
        self.normalize = bool(getattr(extractor, "do_normalize", False))

    def to(self, *args, **kwargs) -> "SSLTeacher":
        self.model.to(*args, **kwargs)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def hidden(self, wav: torch.Tensor, sample_rate: int) -> tuple[torch.Tensor, int]:
        """Audio [B, C, T] at ``sample_rate`` -> (features [B, J, D] at the teacher's frame rate, samples seen)."""
        x = wav.float().mean(dim=1)  # teachers are mono
        if sample_rate != self.sample_rate:
            x = torchaudio.functional.resample(x, sample_rate, self.sample_rate)
        x = x.to(self.device)
        if self.model.main_input_name == "input_values":
            if self.normalize:
                x = (x - x.mean(dim=-1, keepdim=True)) / torch.sqrt(x.var(dim=-1, keepdim=True) + 1e-7)
            inputs = {"input_values": x}
        else:
            feats = self.extractor([a.cpu().numpy() for a in x], sampling_rate=self.sample_rate,
                                   return_tensors="pt")
            inputs = {k: v.to(self.device) for k, v in feats.items()}
        self.model.eval()
        out = self.model(**inputs, output_hidden_states=True)
        hidden = torch.stack([out.hidden_states[i] for i in self.layers]).mean(dim=0)
        return hidden.float(), x.shape[-1]

    @torch.no_grad()
    def features(self, wav: torch.Tensor, sample_rate: int, num_frames: int, frame_size: int) -> torch.Tensor:
        """Audio [B, C, T] -> teacher features [B, num_frames, D] pooled onto codec frames of ``frame_size``
        samples at ``sample_rate``."""
        hidden, samples = self.hidden(wav, sample_rate)
        centers = teacher_frame_centers(self.model, hidden.shape[1], samples, self.sample_rate)
        weights = pooling_matrix(centers, num_frames, frame_size / sample_rate).to(hidden.device)
        return torch.einsum("ij,bjd->bid", weights, hidden)


class SSLDistiller(nn.Module):
    """Cosine distillation: ``1 - cos(proj(semantic), teacher)`` per codec frame, averaged.

    The trainable part is a 1x1 projection from the semantic branch (``D_s`` channels) to the teacher width;
    it is training-only and never part of a released model. The teacher is held outside the module tree.
    """

    def __init__(self, config: SSLDistillConfig, teacher: SSLTeacher, semantic_dim: int, *, sample_rate: int,
                 frame_size: int) -> None:
        super().__init__()
        self.config = config
        self.sample_rate = sample_rate
        self.frame_size = frame_size
        self.projection = nn.Conv1d(semantic_dim, teacher.dim, 1)
        self.teacher = teacher  # an SSLTeacher is no nn.Module: no state_dict keys, no parameters

    def _apply(self, fn, recurse=True):
        # .to(device) / .cuda() / .half() reach the teacher too, though it is outside the module tree.
        super()._apply(fn, recurse)
        self.teacher.model._apply(fn)
        return self

    def teacher_features(self, wav: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Audio [B, C, T] -> [B, D_teacher, num_frames] on the codec's frame grid."""
        return self.teacher.features(wav, self.sample_rate, num_frames, self.frame_size).transpose(1, 2)

    def forward(self, wav: torch.Tensor, output, batch: dict | None = None) -> dict[str, torch.Tensor]:
        """wav [B, C, T], ``output.semantic`` [B, D_s, T'] -> ``{weight_name: scalar}``."""
        semantic = output.semantic
        target = self.teacher_features(wav, semantic.shape[-1]).to(semantic.device)
        pred = self.projection(semantic.to(self.projection.weight.dtype))
        loss = 1.0 - F.cosine_similarity(pred.float(), target.float(), dim=1).mean()
        return {self.config.weight_name: loss}
