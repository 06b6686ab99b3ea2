"""Voxtral TTS checkpoints (Mistral) <-> codec12, exactly.

The release (``mistralai/Voxtral-4B-TTS-2603``) is one model directory in Mistral's layout: ``params.json``,
whose ``multimodal.audio_tokenizer_args`` are the codec's arguments (vllm-omni's ``AudioTokenizerArgs``; fields
it leaves out take that class's defaults), and ``consolidated.safetensors``, which holds the whole TTS model.
Its codec tensors are the ones under ``audio_tokenizer.``, named as ``VoxtralTTSAudioTokenizer``'s parameters
(``decoder_blocks.N.layers.M.attention.wq.weight``, ``decoder_blocks.N.conv.parametrizations.weight.original0``,
``output_proj...``, ``quantizer.semantic_codebook.embedding_sum``); the rest is the TTS model around the codec
(backbone ``layers.*`` and ``norm.*``, ``mm_audio_embeddings.*``, ``acoustic_transformer.*``) and is left out,
counted by prefix. Any other tensor is an error.

The release ships no encoder (``input_proj.*``, ``encoder_blocks.*``): it converts to a decode-only model
(``voxtral.encoder = false``). A checkpoint that has them converts to a full model; one that has only some of
them is an error naming the missing ones.

Convolutions keep their weight norm (magnitude ``original0``, direction ``original1``) when every one has it,
as released, so codec12 computes the very weights Voxtral computes; a checkpoint with plain patch convolutions
(``conv_weight_norm`` false) converts with every weight folded (``voxtral.norm = "none"``). The semantic codebook
is looked up in ``embedding_sum / cluster_usage.clamp(min=1e-5)`` as in Voxtral, and both statistics are kept as
vector-quantize-pytorch's EMA state.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from codec12._fs import atomic_write
from codec12.codec import Codec, check_weights_fit, meta_codec
from codec12.config import CodecConfig, QuantizerConfig, VoxtralConfig
from codec12.quantizers import vq_layout
from codec12.weights import few, load_state_dict_strict

EPSILON = 1e-5  # Voxtral's codebook epsilon: embedding = embedding_sum / cluster_usage.clamp(min=EPSILON)
CODEC_PREFIX = "audio_tokenizer."
# The TTS model around the codec, in consolidated.safetensors: left out of the codec, counted by prefix.
TTS_PREFIXES = ("layers.", "norm.", "output.", "mm_audio_embeddings.", "acoustic_transformer.")
PARAMS_NAME = "params.json"
WEIGHTS_NAME = "consolidated.safetensors"
ENCODER_PREFIXES = ("input_proj.", "encoder_blocks.")

# vllm-omni 0.30.0 AudioTokenizerArgs defaults: params.json leaves some out (the released one has no encoder_*).
ARG_DEFAULTS: dict[str, Any] = {
    "channels": 1, "sampling_rate": 24000, "pretransform_patch_size": 240, "patch_proj_kernel_size": 7,
    "semantic_codebook_size": 8192, "semantic_dim": 256, "acoustic_codebook_size": 21, "acoustic_dim": 36,
    "conv_weight_norm": True, "causal": True, "attn_sliding_window_size": 16,
    "half_attn_window_upon_downsampling": True, "dim": 1024, "hidden_dim": 4096, "head_dim": 128, "n_heads": 8,
    "n_kv_heads": 8, "qk_norm_eps": 1e-6, "qk_norm": True, "use_biases": False, "norm_eps": 1e-2,
    "layer_scale": True, "layer_scale_init": None,
    "encoder_transformer_lengths_str": "2,2,2,2", "encoder_convs_kernels_str": "4,4,4,3",
    "encoder_convs_strides_str": "2,2,2,1",
    "decoder_transformer_lengths_str": "2,2,2,2", "decoder_convs_kernels_str": "3,4,4,4",
    "decoder_convs_strides_str": "1,2,2,2",
}
# params.json entries that belong to the TTS model, not the codec (preset voice name -> index).
_TTS_ARGS = {"voice"}
# Voxtral's LayerScale init when layer_scale_init is null, for layer ids below 18 (every stage has fewer layers).
_DEFAULT_LAYER_SCALE = 0.1
_WEIGHT_NORM = (".parametrizations.weight.original0", ".parametrizations.weight.original1")


# ---------------------------------------------------------------------------------------------------- config
def _ints(value: Any, key: str, where: str) -> tuple[int, ...]:
    if isinstance(value, str):
        try:
            return tuple(int(v) for v in value.split(","))
        except ValueError:
            raise ValueError(f"{where}: {key}={value!r} is not a comma-separated list of integers") from None
    if isinstance(value, (list, tuple)) and all(isinstance(v, int) for v in value):
        return tuple(value)
    raise ValueError(f"{where}: {key}={value!r} is not a comma-separated list of integers")


def voxtral_codec_config(args: dict[str, Any], where: str = "audio_tokenizer_args", name: str = "voxtral",
                         encoder: bool = True) -> CodecConfig:
    """Voxtral's codec arguments (``params.json``'s ``multimodal.audio_tokenizer_args``) -> the equivalent
    :class:`CodecConfig` (``encoder``: whether the checkpoint has encoder weights). Unknown arguments and
    settings Voxtral itself does not run (a non-causal codec) raise ValueError naming them."""
    if not isinstance(args, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(args).__name__}")
    unknown = sorted(set(args) - set(ARG_DEFAULTS) - _TTS_ARGS)
    if unknown:
        raise ValueError(f"{where}: unknown Voxtral codec arguments {unknown}")
    a = {**ARG_DEFAULTS, **{k: v for k, v in args.items() if k not in _TTS_ARGS}}
    if a["causal"] is not True:
        raise ValueError(f"{where}: causal={a['causal']!r} (Voxtral's codec runs causal only)")
    layer_scale = None
    if a["layer_scale"]:
        layer_scale = _DEFAULT_LAYER_SCALE if a["layer_scale_init"] is None else float(a["layer_scale_init"])
    try:
        voxtral = VoxtralConfig(
            channels=a["channels"], patch_size=a["pretransform_patch_size"],
            patch_kernel_size=a["patch_proj_kernel_size"],
            dim=a["dim"], hidden_dim=a["hidden_dim"], num_heads=a["n_heads"], num_kv_heads=a["n_kv_heads"],
            head_dim=a["head_dim"], window=a["attn_sliding_window_size"],
            halve_window=bool(a["half_attn_window_upon_downsampling"]), qk_norm=bool(a["qk_norm"]),
            qk_norm_eps=float(a["qk_norm_eps"]), norm_eps=float(a["norm_eps"]), bias=bool(a["use_biases"]),
            layer_scale=layer_scale,
            **{f"{side}_{ours}": _ints(a[f"{side}_{theirs}_str"], f"{side}_{theirs}_str", where)
               for side in ("encoder", "decoder")
               for ours, theirs in (("layers", "transformer_lengths"), ("kernels", "convs_kernels"),
                                    ("strides", "convs_strides"))},
            encoder=encoder, norm="weight_norm" if a["conv_weight_norm"] else "none",
        )
        return CodecConfig(
            name=name, sample_rate=a["sampling_rate"], latent_dim=a["semantic_dim"] + a["acoustic_dim"],
            voxtral=voxtral,
            quantizer=QuantizerConfig(
                layout="concat", semantic_codebook_size=a["semantic_codebook_size"], semantic_dim=a["semantic_dim"],
                acoustic="fsq", num_acoustic=a["acoustic_dim"], acoustic_codebook_size=a["acoustic_codebook_size"],
                acoustic_dim=a["acoustic_dim"], unquantized_rate=0.5,
            ),
        )
    except ValueError as e:
        raise ValueError(f"{where}: unsupported Voxtral codec arguments: {e}") from e


def voxtral_args(config: CodecConfig) -> dict[str, Any]:
    """A codec12 config of Voxtral's topology -> Voxtral's codec arguments (every ``AudioTokenizerArgs`` field),
    as ``params.json``'s ``multimodal.audio_tokenizer_args`` holds them."""
    v, q = config.voxtral, config.quantizer
    if v is None:
        raise ValueError(f"{config.name or 'this model'} does not have Voxtral's topology (no voxtral block)")
    joined = {f"{side}_{theirs}_str": ",".join(str(n) for n in getattr(v, f"{side}_{ours}"))
              for side in ("encoder", "decoder")
              for ours, theirs in (("layers", "transformer_lengths"), ("kernels", "convs_kernels"),
                                   ("strides", "convs_strides"))}
    return {
        "channels": v.channels, "sampling_rate": config.sample_rate, "pretransform_patch_size": v.patch_size,
        "patch_proj_kernel_size": v.patch_kernel_size, "semantic_codebook_size": q.semantic_codebook_size,
        "semantic_dim": q.semantic_dim, "acoustic_codebook_size": q.acoustic_codebook_size,
        "acoustic_dim": q.acoustic_dim, "conv_weight_norm": True, "causal": True,
        "attn_sliding_window_size": v.window, "half_attn_window_upon_downsampling": v.halve_window, "dim": v.dim,
        "hidden_dim": v.hidden_dim, "head_dim": v.head_dim, "n_heads": v.num_heads, "n_kv_heads": v.num_kv_heads,
        "qk_norm_eps": v.qk_norm_eps, "qk_norm": v.qk_norm, "use_biases": v.bias, "norm_eps": v.norm_eps,
        "layer_scale": v.layer_scale is not None, "layer_scale_init": v.layer_scale, **joined,
    }


# ---------------------------------------------------------------------------------------------------- names
def num_encoder_blocks(v: VoxtralConfig) -> int:
    """How many of Voxtral's ``encoder_blocks`` come before the last (the projection to the latent)."""
    last = len(v.encoder_layers) - 1
    return sum(1 + (i < last and (k != 1 or s != 1))
               for i, (k, s) in enumerate(zip(v.encoder_kernels, v.encoder_strides)))


def codec12_key(key: str, config: CodecConfig) -> str:
    """Voxtral's tensor name (without ``audio_tokenizer.``) -> codec12's, for every tensor but the codebook's."""
    last = num_encoder_blocks(config.voxtral)
    m = re.fullmatch(r"(input_proj|output_proj)\.(.+)", key)
    if m:
        return f"{'encoder' if m[1] == 'input_proj' else 'decoder'}.proj.{m[2]}"
    m = re.fullmatch(r"(encoder|decoder)_blocks\.(\d+)\.(.+)", key)
    if m is None:
        raise KeyError(key)
    i = int(m[2])
    if m[1] == "encoder":
        return f"downsample.proj.{m[3]}" if i == last else f"encoder_transformer.blocks.{i}.{m[3]}"
    return f"upsample.{m[3]}" if i == 0 else f"decoder_transformer.blocks.{i - 1}.{m[3]}"


def voxtral_key(key: str, config: CodecConfig) -> str:
    """codec12's tensor name -> Voxtral's (without ``audio_tokenizer.``), for every tensor but the codebook's."""
    last = num_encoder_blocks(config.voxtral)
    for ours, theirs in (("encoder.proj.", "input_proj."), ("decoder.proj.", "output_proj."),
                         ("downsample.proj.", f"encoder_blocks.{last}."), ("upsample.", "decoder_blocks.0.")):
        if key.startswith(ours):
            return theirs + key[len(ours):]
    m = re.fullmatch(r"(encoder|decoder)_transformer\.blocks\.(\d+)\.(.+)", key)
    if m is None:
        raise KeyError(key)
    return f"{m[1]}_blocks.{int(m[2]) + (m[1] == 'decoder')}.{m[3]}"


_CODEBOOK_LAYER = "quantizer.semantic.layers.0"  # the semantic VectorQuantize layer; its keys: vq_layout
_VOXTRAL_CODEBOOK = ("quantizer.semantic_codebook.embedding_sum", "quantizer.semantic_codebook.cluster_usage")


def _fold(g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The weight a weight-normed conv computes: Voxtral's own operation, so the values are its values."""
    return torch._weight_norm(v, g, 0)


# ---------------------------------------------------------------------------------------------------- weights
def voxtral_state_to_codec12(state: dict[str, torch.Tensor], codec, where: str = "checkpoint"
                             ) -> dict[str, torch.Tensor]:
    """Voxtral codec tensors (names without ``audio_tokenizer.``) -> a state dict for ``codec`` (a
    :class:`~codec12.Codec` of the converted config). Missing or unexpected tensors raise ValueError naming
    them as Voxtral names them."""
    config = codec.config
    own = codec.state_dict()
    wanted = set(own) - set(vq_layout.codebook_keys(_CODEBOOK_LAYER))
    out: dict[str, torch.Tensor] = {}
    names: dict[str, str] = {}  # codec12 key -> the Voxtral name it came from (for messages)
    unexpected = []
    for key, tensor in state.items():
        if key in _VOXTRAL_CODEBOOK:
            continue
        try:
            target = codec12_key(key, config)
        except KeyError:
            unexpected.append(key)
            continue
        if config.norm == "none" and target.endswith(_WEIGHT_NORM):
            target = target[: -len(_WEIGHT_NORM[0])] + ".weight"
            part = 0 if key.endswith(_WEIGHT_NORM[0]) else 1
            out.setdefault(target, [None, None])[part] = tensor.float()
        else:
            out[target] = tensor.float()
        names[target] = key
    for target, value in out.items():
        if isinstance(value, list):
            if None in value:
                half = _WEIGHT_NORM[value.index(None)]
                raise ValueError(f"{where}: missing tensor {names[target].rsplit('.parametrizations', 1)[0]}{half}")
            out[target] = _fold(*value)
    missing = sorted(voxtral_key(k, config) for k in wanted - set(out))
    unexpected += sorted(names[k] for k in set(out) - wanted)
    missing += [k for k in _VOXTRAL_CODEBOOK if k not in state]
    shapes = [f"{names[k]}: {tuple(out[k].shape)} != {tuple(own[k].shape)}" for k in sorted(wanted & set(out))
              if out[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = [f"{label} {few(items)}" for label, items in (("missing tensors", missing),
                                                                ("unexpected tensors", sorted(unexpected)),
                                                                ("wrong shapes", shapes)) if items]
        raise ValueError(f"{where}: not a Voxtral codec matching its arguments: " + "; ".join(parts))
    embedding_sum, usage = (state[k].float() for k in _VOXTRAL_CODEBOOK)
    n, d = config.quantizer.semantic_codebook_size, config.quantizer.semantic_dim
    if embedding_sum.shape != (n, d) or usage.shape != (n,):
        raise ValueError(f"{where}: semantic codebook embedding_sum {tuple(embedding_sum.shape)} / cluster_usage "
                         f"{tuple(usage.shape)}; the arguments say [{n}, {d}] / [{n}]")
    entries = embedding_sum / usage.clamp(min=EPSILON)[:, None]
    out.update(vq_layout.codebook_state(_CODEBOOK_LAYER, vq_layout.Codebook(entries=entries, ema_sum=embedding_sum,
                                                                            ema_count=usage)))
    return out


def codec12_to_voxtral_state(codec) -> dict[str, torch.Tensor]:
    """A codec12 model of Voxtral's topology -> Voxtral codec tensors (names without ``audio_tokenizer.``), every
    convolution weight-normed as Voxtral loads them (``conv_weight_norm`` true), so that they load into
    ``VoxtralTTSAudioTokenizer`` and, under ``audio_tokenizer.``, into a Voxtral TTS checkpoint."""
    config = codec.config
    if config.voxtral is None:
        raise ValueError(f"{config.name or 'this model'} does not have Voxtral's topology (no voxtral block)")
    own = {k: v.detach().float().cpu() for k, v in codec.state_dict().items()}
    convs = {f"{name}.weight" for name, m in codec.named_modules() if isinstance(m, (torch.nn.Conv1d,
                                                                                     torch.nn.ConvTranspose1d))}
    out = {}
    codebook_keys = set(vq_layout.codebook_keys(_CODEBOOK_LAYER))
    for key, value in own.items():
        if key in codebook_keys:
            continue
        if key in convs:  # folded: weight norm's inverse, as torch's parametrization computes it
            out[voxtral_key(key[: -len("weight")] + _WEIGHT_NORM[0][1:], config)] = \
                torch.norm_except_dim(value, 2, 0).contiguous()
            out[voxtral_key(key[: -len("weight")] + _WEIGHT_NORM[1][1:], config)] = value.contiguous()
        else:
            out[voxtral_key(key, config)] = value.contiguous()
    codebook = vq_layout.read_codebook(own, _CODEBOOK_LAYER)
    embed, embed_avg, usage = codebook.entries, codebook.ema_sum, codebook.ema_count
    # Keep the EMA sums when they give the lookup table exactly (a converted model); after codec12 training the
    # table is smoothed differently, so the sums are rebuilt from it.
    if not torch.equal(embed_avg / usage.clamp(min=EPSILON)[:, None], embed):
        usage = usage.clamp(min=EPSILON)
        embed_avg = embed * usage[:, None]
    out[_VOXTRAL_CODEBOOK[0]] = embed_avg.contiguous()
    out[_VOXTRAL_CODEBOOK[1]] = usage.contiguous()
    return out


# ---------------------------------------------------------------------------------------------------- files
@dataclass
class VoxtralCheckpoint:
    """What a Voxtral TTS model directory holds for the codec.

    args: the codec's arguments (``params.json``); tensors: the codec's tensors, ``audio_tokenizer.`` removed;
    left_out: tensors of the TTS model around the codec, counted by prefix; files: the weight files read."""

    args: dict[str, Any]
    tensors: dict[str, torch.Tensor]
    left_out: dict[str, int] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    @property
    def has_encoder(self) -> bool:
        return any(k.startswith(ENCODER_PREFIXES) for k in self.tensors)


def read_voxtral(directory: str | Path) -> VoxtralCheckpoint:
    """Read the codec's arguments and tensors from a Voxtral TTS model directory (``params.json`` +
    ``consolidated*.safetensors``); only the codec's tensors are loaded."""
    directory = Path(directory)
    params = directory / PARAMS_NAME
    try:
        raw = json.loads(params.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{params}: cannot read: {e}") from e
    args = raw.get("multimodal", {}).get("audio_tokenizer_args") if isinstance(raw, dict) else None
    if not isinstance(args, dict):
        raise ValueError(f"{params}: no multimodal.audio_tokenizer_args (not a Voxtral TTS params.json)")
    files = sorted(directory.glob("consolidated*.safetensors"))
    if not files:
        raise ValueError(f"{directory}: no {WEIGHTS_NAME} (Voxtral TTS weights) in this directory")
    tensors: dict[str, torch.Tensor] = {}
    left_out: dict[str, int] = {}
    unknown: list[str] = []
    for f in files:
        try:
            with safe_open(str(f), framework="pt") as handle:
                keys = list(handle.keys())
                tensors.update({k[len(CODEC_PREFIX):]: handle.get_tensor(k) for k in keys
                                if k.startswith(CODEC_PREFIX)})
        except Exception as e:  # safetensors raises its own error types for truncated / foreign files
            raise ValueError(f"{f}: cannot read safetensors ({type(e).__name__}: {e})") from e
        for key in keys:
            prefix = next((p for p in TTS_PREFIXES if key.startswith(p)), None)
            if prefix is not None:
                left_out[f"{prefix}*"] = left_out.get(f"{prefix}*", 0) + 1
            elif not key.startswith(CODEC_PREFIX):
                unknown.append(key)
    if unknown:
        raise ValueError(f"{directory}: tensors that are neither the codec's ({CODEC_PREFIX}*) nor the TTS model's "
                         f"({', '.join(p + '*' for p in TTS_PREFIXES)}): {few(sorted(unknown))}")
    if not tensors:
        raise ValueError(f"{directory}: no {CODEC_PREFIX}* tensors in {[f.name for f in files]}")
    return VoxtralCheckpoint(args=args, tensors=tensors, left_out=left_out, files=files)


def accepts(path: Path) -> bool:
    """Whether :meth:`Codec.from_pretrained` should read ``path`` as Voxtral TTS: a directory with Mistral's
    ``params.json`` and no ``config.json``."""
    return path.is_dir() and not (path / "config.json").is_file() and (path / PARAMS_NAME).is_file()


def voxtral_from_pretrained(path: str | Path, *, name: str = "voxtral") -> Codec:
    """Load the codec of a Voxtral TTS model directory as a codec12 :class:`~codec12.Codec` (eval mode, float32,
    CPU): decode-only when the checkpoint has no encoder weights (the open release)."""
    return voxtral_codec(read_voxtral(path), name=name)


def voxtral_codec(checkpoint: VoxtralCheckpoint, *, name: str = "voxtral") -> Codec:
    """The codec12 :class:`~codec12.Codec` of a checkpoint :func:`read_voxtral` read (eval mode, float32, CPU)."""
    directory = checkpoint.files[0].parent
    where = str(checkpoint.files[0]) if len(checkpoint.files) == 1 else str(directory)
    # Any encoder tensor makes it a full model: one that has only some of them then fails below, naming the rest.
    config = voxtral_codec_config(checkpoint.args, f"{directory / PARAMS_NAME}:multimodal.audio_tokenizer_args",
                                  name=name, encoder=checkpoint.has_encoder)
    # Converted and checked against the config's layout first: the model is built only for weights that fit it.
    state = voxtral_state_to_codec12(checkpoint.tensors, meta_codec(config), where)
    check_weights_fit(config, {k: tuple(v.shape) for k, v in state.items()}, where)
    codec = Codec.from_config(config)
    load_state_dict_strict(codec, state, where)
    return codec.eval()



def save_voxtral(codec, directory: str | Path) -> None:
    """Write a codec12 model of Voxtral's topology in Voxtral's layout: ``params.json`` (the codec's arguments
    under ``multimodal.audio_tokenizer_args``) and ``consolidated.safetensors`` with its ``audio_tokenizer.*``
    tensors. A trained encoder's tensors (``audio_tokenizer.input_proj.*``, ``audio_tokenizer.encoder_blocks.*``)
    can be added to a Voxtral TTS checkpoint from there."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {CODEC_PREFIX + k: v for k, v in codec12_to_voxtral_state(codec).items()}
    params = json.dumps({"multimodal": {"audio_tokenizer_args": voxtral_args(codec.config)}}, indent=2) + "\n"
    atomic_write(directory / WEIGHTS_NAME, lambda p: save_file(tensors, str(p), metadata={"format": "pt"}))
    atomic_write(directory / PARAMS_NAME, lambda p: p.write_text(params))


__all__ = ["ARG_DEFAULTS", "VoxtralCheckpoint", "codec12_key", "codec12_to_voxtral_state", "num_encoder_blocks",
           "read_voxtral", "save_voxtral", "voxtral_args", "voxtral_codec", "voxtral_codec_config",
           "voxtral_from_pretrained",
           "voxtral_key", "voxtral_state_to_codec12"]
