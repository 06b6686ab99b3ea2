"""Hugging Face Hub conventions for :class:`codec12.Codec`, built on ``huggingface_hub``: the model card that
``save_pretrained`` writes (``README.md``: metadata read by the hub, and a body stating what the model is and how to
load it), the upload behind ``push_to_hub``, and the dtype names ``from_pretrained`` and ``save_pretrained`` accept.

Plain functions rather than ``huggingface_hub.PyTorchModelHubMixin``: the mixin's ``from_pretrained`` rebuilds a
model from its ``__init__`` arguments, while :meth:`Codec.from_pretrained` validates ``config.json`` against the
weights' header before building anything and also reads other codecs' layouts (Mimi, Voxtral TTS), and the codec's
``__init__`` takes modules, not a serialisable config. ``huggingface_hub`` is imported when a card is made or a
model uploaded, so that ``import codec12`` stays light.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from huggingface_hub import CommitInfo, ModelCard

    from codec12.codec import Codec

CARD_NAME = "README.md"
LIBRARY_NAME = "codec12"
TAGS = ["codec12", "audio", "speech", "audio-codec", "neural-audio-codec"]

# The storage and compute types a codec may be cast to, by name (the torch.dtype objects are accepted too).
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}


def as_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """``torch.float16`` or ``"float16"`` -> ``torch.float16`` (None stays None); other types raise ValueError."""
    if dtype is None:
        return None
    value = DTYPES.get(dtype) if isinstance(dtype, str) else dtype
    if value not in DTYPES.values():
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)} (a name or the torch.dtype), got {dtype!r}")
    return value


def model_card(codec: Codec, *, repo_id: str | None = None, license: str | None = None,
               dtype: torch.dtype | None = None) -> ModelCard:
    """The model card of ``codec``: metadata (``library_name: codec12``, ``license``, tags) and a body giving its
    sample rate, frame rate, codebooks, bitrate, size and how to load it (from ``repo_id``, or from a local
    directory when None). ``license``: an identifier the hub knows (``apache-2.0``, ``cc-by-4.0``, ``other``, ...);
    None writes ``unknown``, since the licence of trained weights depends on their training data, which the codec
    does not record. ``dtype``: the storage type of the weights (default: the codec's)."""
    from huggingface_hub import ModelCard, ModelCardData

    from codec12.codec import _sizes_text

    config = codec.config
    name = config.name or "unnamed"
    params = sum(p.numel() for p in codec.parameters())
    stored = dtype or next(codec.parameters()).dtype
    q = config.quantizer
    acoustic = (f"{q.num_acoustic} FSQ dimensions x {q.acoustic_codebook_size} levels" if q.acoustic == "fsq" else
                f"{q.num_acoustic} residual VQ levels x {q.acoustic_codebook_size}")
    data = ModelCardData(library_name=LIBRARY_NAME, license=license or "unknown", tags=list(TAGS),
                         pipeline_tag="feature-extraction")
    source = repo_id or "path/to/this/directory"
    lines = [
        f"# {name}",
        "",
        f"A neural speech codec for the codec12 library: audio in, "
        f"{config.frame_rate:g} frames per second of discrete codes (one semantic token and {q.num_acoustic} "
        f"acoustic tokens per frame) or continuous latents out, and back to audio; it streams frame by frame.",
        "",
        "| | |",
        "|---|---|",
        f"| sample rate | {config.sample_rate} Hz, {config.channels} channel{'s' if config.channels > 1 else ''} |",
        f"| frame rate | {config.frame_rate:g} frames/s ({config.frame_size} samples, "
        f"{1000 * config.frame_size / config.sample_rate:g} ms per frame) |",
        f"| codebooks | {config.num_codebooks} ({_sizes_text(config.codebook_sizes)}): 1 semantic "
        f"({q.semantic_codebook_size} entries) + {acoustic} |",
        f"| bitrate | {config.bitrate / 1000:.2f} kbps with all codebooks, "
        f"{codec.bitrate_at(1) / 1000:.2f} kbps with the semantic one alone |",
        f"| continuous latents | {config.latent_dim} dimensions per frame |",
        f"| parameters | {params / 1e6:.2f} M (weights stored as {str(stored).removeprefix('torch.')}) |",
        f"| config hash | `{config.config_hash()}` |",
    ]
    if not config.has_encoder:
        lines.append("| encoder | none: this model decodes only |")
    lines += [
        "",
        "## Use",
        "",
        "```bash",
        "pip install codec12",
        "```",
        "",
        "```python",
        "from codec12 import Codec, load_audio",
        "",
        f'codec = Codec.from_pretrained("{source}")',
    ]
    if config.has_encoder:
        lines += [
            'wav = load_audio("speech.wav", codec.sample_rate)[None]   # [1, channels, samples]',
            "codes = codec.encode(wav)                  # int64 [1, codebooks, frames]; row 0 semantic",
            "audio = codec.decode(codes)                # or codes[:, :k]: fewer codebooks, lower bitrate",
        ]
    else:
        lines.append("audio = codec.decode(codes)                # codes: int64 [1, codebooks, frames]")
    lines += [
        "```",
        "",
        "`config.json` holds the architecture and `model.safetensors` the weights; `Codec.from_pretrained` checks "
        "one against the other before building the model.",
        "",
        "## Licence",
        "",
        f"`{license}` (see the metadata above)." if license else
        "Not stated. The terms of trained weights follow from the data they were trained on; ask the author.",
        "",
    ]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines))


def push_folder(folder: str | os.PathLike, repo_id: str, *, private: bool | None = None,
                token: str | bool | None = None, revision: str | None = None,
                commit_message: str = "Upload codec12 model") -> CommitInfo:
    """Upload every file of ``folder`` to the model repo ``repo_id`` in one commit: the repo is created if missing
    (``private`` applies then), and so is branch ``revision`` (a ``refs/pr/N`` revision must exist)."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, repo_type="model", exist_ok=True).repo_id
    if revision is not None and not revision.startswith("refs/pr/"):
        api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
    return api.upload_folder(repo_id=repo_id, folder_path=folder, repo_type="model", revision=revision,
                             commit_message=commit_message)


def push_to_hub(codec: Codec, repo_id: str, *, private: bool | None = None, token: str | bool | None = None,
                revision: str | None = None, commit_message: str = "Upload codec12 model",
                dtype: torch.dtype | str | None = None, license: str | None = None,
                model_card: bool = True) -> CommitInfo:
    """Save ``codec`` to a temporary directory (:meth:`Codec.save_pretrained`, its card loading from ``repo_id``)
    and upload it with :func:`push_folder`."""
    with tempfile.TemporaryDirectory(prefix="codec12-push-") as tmp:
        codec.save_pretrained(tmp, dtype=dtype, model_card=model_card, license=license, repo_id=repo_id)
        return push_folder(Path(tmp), repo_id, private=private, token=token, revision=revision,
                           commit_message=commit_message)


def download(repo_id: str, *, revision: str | None = None, cache_dir: str | os.PathLike | None = None,
             token: str | bool | None = None) -> Path:
    """A snapshot of hub repo ``repo_id`` (its JSON and safetensors files) in the local cache: downloaded when
    missing, from the cache alone when ``HF_HUB_OFFLINE=1``."""
    from huggingface_hub import snapshot_download

    from codec12 import __version__

    return Path(snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, token=token,
                                  allow_patterns=["*.json", "*.safetensors"], library_name=LIBRARY_NAME,
                                  library_version=__version__))
