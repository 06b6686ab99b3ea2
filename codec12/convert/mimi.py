"""Mimi (Kyutai) checkpoints <-> codec12, exactly.

codec12's ``c12-mimi-24k`` preset has Mimi's topology, so a Mimi checkpoint converts tensor for tensor. Three
key layouts are read:

- ``transformers``: what ``transformers.MimiModel.save_pretrained`` writes and the ``kyutai/mimi`` hub repo
  holds (``encoder.layers.N.conv.weight``, ``encoder_transformer.layers...``, ``downsample.conv.weight``,
  ``quantizer.semantic_residual_vector_quantizer...``). The in-memory ``MimiModel.state_dict()`` of
  transformers 5.x nests the halves (``encoder.encoder_seanet.layers...``, ``decoder.decoder_transformer...``);
  those names are accepted as aliases.
- ``moshi``: the original ``tokenizer-*.safetensors`` of the ``moshi`` package (``encoder.model.0.conv.conv
  .weight``, fused ``self_attn.in_proj_weight``, ``quantizer.rvq_first.vq.layers.0._codebook.embedding_sum``).
  moshi rotates interleaved (real, imaginary) pairs with RoPE where codec12 and transformers rotate the two
  halves of a head, so query and key projection rows are permuted within each head.

Codebooks: Mimi stores EMA statistics ``embed_sum`` [N, D] and ``cluster_usage`` [N] and looks up
``embed_sum / cluster_usage.clamp(min=1e-5)``. codec12's vector-quantize-pytorch codebooks keep the same two
statistics plus the normalized entries used at inference (:class:`codec12.quantizers.vq_layout.Codebook`, saved
under the library's names), which are computed here with Mimi's formula, so codes are identical and EMA
fine-tuning continues from Mimi's statistics.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from codec12._fs import atomic_write
from codec12.codec import Codec, check_weights_fit, meta_codec
from codec12.config import CodecConfig, QuantizerConfig, SEANetConfig, TransformerConfig
from codec12.nn.conv import StreamingConvTranspose1d
from codec12.nn.transformer import Attention
from codec12.quantizers import vq_layout
from codec12.weights import few, load_state_dict_strict

EPSILON = 1e-5  # Mimi's codebook epsilon: embed = embed_sum / cluster_usage.clamp(min=EPSILON)
LAYOUTS = ("transformers", "moshi")

# transformers.MimiConfig defaults: a config.json lists only what differs from them (older versions), and
# moshi checkpoints have no config at all (moshi's loaders use exactly these values).
MIMI_DEFAULTS: dict[str, Any] = {
    "sampling_rate": 24000, "audio_channels": 1, "hidden_size": 512, "num_filters": 64,
    "num_residual_layers": 1, "upsampling_ratios": [8, 6, 5, 4], "kernel_size": 7, "last_kernel_size": 3,
    "residual_kernel_size": 3, "dilation_growth_rate": 2, "use_causal_conv": True, "pad_mode": "constant",
    "compress": 2, "trim_right_ratio": 1.0, "codebook_size": 2048, "codebook_dim": 256, "num_quantizers": 32,
    "use_conv_shortcut": False, "vector_quantization_hidden_dimension": 256, "num_semantic_quantizers": 1,
    "upsample_groups": 512, "num_hidden_layers": 8, "intermediate_size": 2048, "num_attention_heads": 8,
    "num_key_value_heads": 8, "head_dim": None, "hidden_act": "gelu", "max_position_embeddings": 8000,
    "initializer_range": 0.02, "norm_eps": 1e-5, "use_cache": False, "use_streaming": False,
    "rope_parameters": None, "rope_theta": 10000.0, "rope_scaling": None, "sliding_window": 250,
    "attention_dropout": 0.0, "layer_scale_initial_scale": 0.01, "attention_bias": False,
    "tie_word_embeddings": True, "frame_rate": None, "_frame_rate": None,
    "encoder_config": {}, "decoder_config": {},
}
# Generic transformers config entries that say nothing about the architecture.
_GENERIC_KEYS = {
    "model_type", "architectures", "transformers_version", "dtype", "torch_dtype", "_name_or_path",
    "_commit_hash", "_attn_implementation_autoset", "return_dict", "output_hidden_states", "output_attentions",
    "torchscript", "use_bfloat16", "tf_legacy_loss", "pruned_heads", "chunk_size_feed_forward",
    "is_encoder_decoder", "is_decoder", "add_cross_attention", "tie_encoder_decoder", "finetuning_task",
    "id2label", "label2id", "tokenizer_class", "prefix", "bos_token_id", "pad_token_id", "eos_token_id",
    "sep_token_id", "decoder_start_token_id", "_attn_implementation", "task_specific_params", "problem_type",
    "cross_attention_hidden_size", "chunk_in_sec", "chunk_length_s", "overlap", "use_return_dict",
}


# ---------------------------------------------------------------------------------------------------- config
def mimi_codec_config(mimi: dict[str, Any], where: str = "config.json", name: str = "mimi") -> CodecConfig:
    """A transformers ``MimiConfig`` dict (config.json) -> the equivalent :class:`CodecConfig`.

    Raises ValueError naming every setting codec12 cannot reproduce exactly (unknown keys included).
    """
    if not isinstance(mimi, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(mimi).__name__}")
    unknown = sorted(set(mimi) - set(MIMI_DEFAULTS) - _GENERIC_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown Mimi config keys {unknown}")
    c = {**MIMI_DEFAULTS, **mimi}
    problems = []

    def need(cond: bool, msg: str) -> None:
        if not cond:
            problems.append(msg)

    hidden, heads = c["hidden_size"], c["num_attention_heads"]
    need(c["use_causal_conv"] is True, f"use_causal_conv={c['use_causal_conv']!r} (codec12 is causal only)")
    need(c["use_conv_shortcut"] is False, f"use_conv_shortcut={c['use_conv_shortcut']!r} (codec12 resnet blocks "
                                          "use an identity skip)")
    need(float(c["trim_right_ratio"]) == 1.0, f"trim_right_ratio={c['trim_right_ratio']!r} (must be 1.0)")
    need(c["num_semantic_quantizers"] == 1, f"num_semantic_quantizers={c['num_semantic_quantizers']!r} (must be 1)")
    need(c["num_key_value_heads"] == heads, f"num_key_value_heads={c['num_key_value_heads']!r} != "
                                            f"num_attention_heads={heads} (grouped-query attention)")
    need(c["head_dim"] in (None, hidden // max(heads, 1)),
         f"head_dim={c['head_dim']!r} (must be hidden_size / num_attention_heads = {hidden // max(heads, 1)})")
    need(c["hidden_act"] == "gelu", f"hidden_act={c['hidden_act']!r} (codec12 uses exact 'gelu')")
    need(c["attention_bias"] is False, f"attention_bias={c['attention_bias']!r} (must be false)")
    codebook_dim = hidden if c["codebook_dim"] is None else c["codebook_dim"]
    need(codebook_dim == c["vector_quantization_hidden_dimension"],
         f"codebook_dim={codebook_dim!r} != vector_quantization_hidden_dimension="
         f"{c['vector_quantization_hidden_dimension']!r}")
    need(c["upsample_groups"] in (hidden, 1), f"upsample_groups={c['upsample_groups']!r} (must be hidden_size "
                                              f"{hidden} for a depthwise upsample, or 1)")
    need(c["pad_mode"] in ("constant", "replicate"), f"pad_mode={c['pad_mode']!r}")
    need(c["encoder_config"] is not None and c["decoder_config"] is not None,
         "encoder_config/decoder_config is null (codec12 needs both halves)")
    rope = c["rope_parameters"] or {"rope_type": "default", "rope_theta": c["rope_theta"]}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    need(rope_type == "default" and not c["rope_scaling"], f"RoPE type {rope_type!r} / rope_scaling "
                                                           f"{c['rope_scaling']!r} (only plain RoPE)")
    if problems:
        raise ValueError(f"{where}: unsupported Mimi settings: " + "; ".join(problems))

    channels = c["audio_channels"]
    hop = 1
    for r in c["upsampling_ratios"]:
        hop *= r
    frame_rate = c["frame_rate"] if c["frame_rate"] is not None else c["_frame_rate"]
    # transformers >= 4.53 derives the frame rate with a x2 downsample; older configs state it.
    stride = 2 if frame_rate is None else (c["sampling_rate"] / hop) / frame_rate
    if stride != 2:
        raise ValueError(f"{where}: unsupported Mimi settings: frame_rate={frame_rate!r} needs a downsample by "
                         f"{stride:g} from {c['sampling_rate'] / hop:g} Hz (codec12 runs Mimi's x2 to 12.5 Hz)")
    vq_dim = c["vector_quantization_hidden_dimension"]
    try:
        return CodecConfig(
            name=name,
            sample_rate=c["sampling_rate"],
            seanet=SEANetConfig(
                channels=channels, dimension=hidden, n_filters=c["num_filters"],
                ratios=tuple(c["upsampling_ratios"]), kernel_size=c["kernel_size"],
                last_kernel_size=c["last_kernel_size"], residual_kernel_size=c["residual_kernel_size"],
                dilation_base=c["dilation_growth_rate"], n_residual_layers=c["num_residual_layers"],
                compress=c["compress"], pad_mode=c["pad_mode"], norm="none",
            ),
            transformer=TransformerConfig(
                d_model=hidden, num_heads=heads, num_layers=c["num_hidden_layers"],
                dim_feedforward=c["intermediate_size"], context=c["sliding_window"],
                max_period=float(rope.get("rope_theta", c["rope_theta"])),
                layer_scale=c["layer_scale_initial_scale"], norm_eps=c["norm_eps"],
            ),
            downsample_stride=2,
            latent_dim=hidden,
            depthwise_upsample=c["upsample_groups"] == hidden,
            quantizer=QuantizerConfig(
                layout="shared", semantic_codebook_size=c["codebook_size"], semantic_dim=vq_dim,
                acoustic="rvq", num_acoustic=c["num_quantizers"] - 1, acoustic_codebook_size=c["codebook_size"],
                acoustic_dim=vq_dim, unquantized_rate=0.5,
            ),
        )
    except (ValueError, TypeError) as e:
        raise ValueError(f"{where}: this Mimi config has no codec12 equivalent: {e}") from e


def mimi_config_dict(config: CodecConfig) -> dict[str, Any]:
    """The transformers ``MimiConfig`` fields of a codec12 config (the inverse of :func:`mimi_codec_config`)."""
    s, t, q = config.seanet, config.transformer, config.quantizer
    if not (q.layout == "shared" and q.acoustic == "rvq" and q.semantic_dim == q.acoustic_dim
            and q.semantic_codebook_size == q.acoustic_codebook_size and config.downsample_stride == 2
            and config.latent_dim == s.dimension and t.num_layers > 0):
        raise ValueError(f"config {config.name!r} does not have Mimi's topology (shared split RVQ with equal "
                         "codebooks, x2 downsample, latent_dim == seanet.dimension, a transformer)")
    return {
        "model_type": "mimi", "architectures": ["MimiModel"],
        "sampling_rate": config.sample_rate, "audio_channels": s.channels, "hidden_size": s.dimension,
        "num_filters": s.n_filters, "num_residual_layers": s.n_residual_layers,
        "upsampling_ratios": list(s.ratios), "kernel_size": s.kernel_size, "last_kernel_size": s.last_kernel_size,
        "residual_kernel_size": s.residual_kernel_size, "dilation_growth_rate": s.dilation_base,
        "use_causal_conv": True, "pad_mode": s.pad_mode, "compress": s.compress, "trim_right_ratio": 1.0,
        "codebook_size": q.semantic_codebook_size, "codebook_dim": q.semantic_dim,
        "num_quantizers": 1 + q.num_acoustic, "use_conv_shortcut": False,
        "vector_quantization_hidden_dimension": q.semantic_dim, "num_semantic_quantizers": 1,
        "upsample_groups": s.dimension if config.depthwise_upsample else 1,
        "num_hidden_layers": t.num_layers, "intermediate_size": t.dim_feedforward,
        "num_attention_heads": t.num_heads, "num_key_value_heads": t.num_heads,
        "head_dim": t.d_model // t.num_heads, "hidden_act": "gelu", "norm_eps": t.norm_eps,
        "rope_parameters": {"rope_type": "default", "rope_theta": t.max_period}, "sliding_window": t.context,
        "layer_scale_initial_scale": t.layer_scale, "attention_bias": False,
    }


# ---------------------------------------------------------------------------------------------------- keys
# (codec12 prefix, transformers prefix) for everything outside the quantizer; the same names below them.
_TRANSFORMERS_PREFIXES = (("quantizer.semantic.", "quantizer.semantic_residual_vector_quantizer."),
                          ("quantizer.acoustic.", "quantizer.acoustic_residual_vector_quantizer."))
# transformers 5.x in-memory names (MimiModel.state_dict()) -> the saved, flat names.
_NESTED_ALIASES = (("encoder.encoder_seanet.", "encoder."), ("encoder.encoder_transformer.", "encoder_transformer."),
                   ("encoder.downsample.", "downsample."), ("decoder.upsample.", "upsample."),
                   ("decoder.decoder_transformer.", "decoder_transformer."), ("decoder.decoder_seanet.", "decoder."))
_MOSHI_TRANSFORMER = (("input_layernorm", "norm1"), ("post_attention_layernorm", "norm2"),
                      ("mlp.fc1", "linear1"), ("mlp.fc2", "linear2"), ("self_attn.o_proj", "self_attn.out_proj"),
                      ("self_attn_layer_scale", "layer_scale_1"), ("mlp_layer_scale", "layer_scale_2"))
# Names the moshi package itself accepts for the same tensors (its load-state-dict hooks; moshi's own
# ``_codebook`` modules, not vector-quantize-pytorch's).
_MOSHI_ALIASES = ((".self_attn.in_projs.0.weight", ".self_attn.in_proj_weight"),
                  (".self_attn.in_proj.weight", ".self_attn.in_proj_weight"),
                  (".self_attn.out_projs.0.weight", ".self_attn.out_proj.weight"),
                  ("._codebook.inited", "._codebook._initialized"),
                  ("._codebook.cluster_size", "._codebook.cluster_usage"),
                  ("._codebook.embed_avg", "._codebook.embedding_sum"),
                  ("._codebook.embed_sum", "._codebook.embedding_sum"))
_CODEBOOK_PARTS = {"transformers": (".codebook.embed_sum", ".codebook.cluster_usage", ".codebook.initialized"),
                   "moshi": ("._codebook.embedding_sum", "._codebook.cluster_usage", "._codebook._initialized")}
_QKV = ("q_proj", "k_proj", "v_proj")


def _replace_prefix(key: str, pairs, reverse: bool = False) -> str:
    for a, b in pairs:
        if reverse:
            a, b = b, a
        if key.startswith(a):
            return b + key[len(a):]
    return key


def _transformers_key(key: str) -> str:
    """codec12 key -> transformers (saved) key, for tensors that are copied unchanged."""
    return _replace_prefix(key, _TRANSFORMERS_PREFIXES)


def _moshi_key(key: str, transposed: frozenset[str]) -> str:
    """codec12 key -> moshi key, for tensors that are copied unchanged."""
    module, _, leaf = key.rpartition(".")
    if module.startswith(("encoder_transformer.", "decoder_transformer.")):
        side, rest = module.split(".", 1)
        for ours, theirs in _MOSHI_TRANSFORMER:
            rest = re.sub(rf"(^|\.){re.escape(ours)}$", rf"\g<1>{theirs}", rest)
        return f"{side}.transformer.{rest}.{leaf}"
    if module.startswith("quantizer."):
        module = re.sub(r"^quantizer\.(semantic|acoustic)\.layers\.", r"quantizer.\1.vq.layers.", module)
        module = module.replace("quantizer.semantic.", "quantizer.rvq_first.", 1)
        module = module.replace("quantizer.acoustic.", "quantizer.rvq_rest.", 1)
        return f"{module}.{leaf}"
    if module.endswith(".conv"):  # a StreamingConv1d / StreamingConvTranspose1d's inner conv
        owner = module[: -len(".conv")]
        owner = re.sub(r"^(encoder|decoder)\.layers\.", r"\1.model.", owner)
        if owner in ("downsample", "upsample"):
            # moshi wraps them once more (ConvDownsample1d / ConvTrUpsample1d -> Streaming* -> NormConv*).
            inner = "convtr.convtr.convtr" if module[: -len(".conv")] in transposed else "conv.conv.conv"
        else:
            inner = "convtr.convtr" if module[: -len(".conv")] in transposed else "conv.conv"
        return f"{owner}.{inner}.{leaf}"
    raise KeyError(key)


def _source_key(layout: str, key: str, transposed: frozenset[str]) -> str:
    return _transformers_key(key) if layout == "transformers" else _moshi_key(key, transposed)


def _canonical(layout: str, key: str) -> str:
    if layout == "transformers":
        return _replace_prefix(key, _NESTED_ALIASES)
    for alias, name in _MOSHI_ALIASES:
        if key.endswith(alias):
            return key[: -len(alias)] + name
    return key


def detect_layout(keys, where: str = "checkpoint") -> str:
    """``"transformers"`` or ``"moshi"`` from the tensor names of a Mimi checkpoint."""
    keys = list(keys)
    if any(k.startswith(("encoder.model.", "quantizer.rvq_first.")) or ".transformer.layers." in k for k in keys):
        return "moshi"
    if any(k.startswith(("encoder.layers.", "encoder.encoder_seanet.", "quantizer.semantic_residual_vector"))
           for k in keys):
        return "transformers"
    raise ValueError(f"{where}: not a Mimi checkpoint (neither the transformers nor the moshi key layout; first "
                     f"tensors: {sorted(keys)[:5]})")


def _structure(codec) -> tuple[frozenset[str], list[str], list[str]]:
    """(transposed conv owners, attention module prefixes, codebook-layer prefixes) of a codec12 model."""
    transposed = frozenset(n for n, m in codec.named_modules() if isinstance(m, StreamingConvTranspose1d))
    attention = [n for n, m in codec.named_modules() if isinstance(m, Attention)]
    return transposed, attention, vq_layout.vq_layer_names(codec)


def _rope_permutation(heads: int, rows: int) -> torch.Tensor:
    """Row order taking interleaved RoPE pairs (moshi) to half-split RoPE (codec12, transformers), per head."""
    head_dim = rows // heads
    return torch.arange(rows).view(heads, head_dim // 2, 2).transpose(1, 2).reshape(rows)


def _expected(layout: str, codec) -> dict[str, str]:
    """Source-layout tensor name -> what it becomes in codec12 (a key, or a description for fused tensors)."""
    transposed, attention, codebooks = _structure(codec)
    special = {f"{a}.{p}.weight" for a in attention for p in _QKV} if layout == "moshi" else set()
    special |= {k for c in codebooks for k in vq_layout.codebook_keys(c)}
    out = {_source_key(layout, k, transposed): k for k in codec.state_dict() if k not in special}
    if layout == "moshi":
        for a in attention:
            out[_moshi_key(f"{a}.o_proj.weight", transposed).replace("out_proj.weight", "in_proj_weight")] = \
                f"{a}.{{q,k,v}}_proj.weight"
    for c in codebooks:
        base = _source_key(layout, f"{c}.x", transposed)[: -len(".x")]
        for part in _CODEBOOK_PARTS[layout]:
            out[base + part] = f"{c} (codebook)"
    return out


# ---------------------------------------------------------------------------------------------------- weights
def mimi_state_to_codec12(state: dict[str, torch.Tensor], codec, where: str = "checkpoint",
                          layout: str | None = None) -> dict[str, torch.Tensor]:
    """Mimi tensors (either layout) -> a state dict for ``codec`` (a :class:`~codec12.Codec` of the converted
    config). Missing or unexpected tensors raise ValueError naming them in the checkpoint's own layout."""
    layout = layout or detect_layout(state, where)
    if layout not in LAYOUTS:
        raise ValueError(f"unknown Mimi layout {layout!r}; known: {LAYOUTS}")
    state = {_canonical(layout, k): v for k, v in state.items()}
    expected = _expected(layout, codec)
    missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or extra:
        parts = ([f"missing tensors {few(missing)}"] if missing else []) + \
                ([f"unexpected tensors {few(extra)}"] if extra else [])
        raise ValueError(f"{where}: not a Mimi checkpoint matching its config ({layout} layout): " + "; ".join(parts))

    transposed, attention, codebooks = _structure(codec)
    heads = codec.config.transformer.num_heads
    out: dict[str, torch.Tensor] = {}
    for source, target in expected.items():
        if target in codec.state_dict():
            out[target] = state[source].float()
    if layout == "moshi":
        for a in attention:
            fused = state[_moshi_key(f"{a}.o_proj.weight", transposed).replace("out_proj.weight", "in_proj_weight")]
            q, k, v = fused.float().chunk(3, dim=0)
            perm = _rope_permutation(heads, q.shape[0])
            out[f"{a}.q_proj.weight"], out[f"{a}.k_proj.weight"], out[f"{a}.v_proj.weight"] = q[perm], k[perm], v
    for c in codebooks:
        base = _source_key(layout, f"{c}.x", transposed)[: -len(".x")]
        embed_sum, usage = (state[base + p].float() for p in _CODEBOOK_PARTS[layout][:2])
        if embed_sum.dim() != 2 or usage.shape != embed_sum.shape[:1]:
            raise ValueError(f"{where}: codebook {base} has embed_sum {tuple(embed_sum.shape)} and cluster_usage "
                             f"{tuple(usage.shape)}; expected [N, D] and [N]")
        entries = embed_sum / usage.clamp(min=EPSILON)[:, None]
        out.update(vq_layout.codebook_state(c, vq_layout.Codebook(entries=entries, ema_sum=embed_sum, ema_count=usage)))
    return out


def codec12_to_mimi_state(codec, layout: str = "transformers") -> dict[str, torch.Tensor]:
    """A codec12 model of Mimi's topology -> Mimi tensors in ``layout`` (``transformers`` or ``moshi``), such
    that loading them back (or into transformers / moshi) gives the same codes and audio."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown Mimi layout {layout!r}; known: {LAYOUTS}")
    mimi_config_dict(codec.config)  # raises if the topology is not Mimi's
    if codec.config.seanet.norm != "none":
        raise ValueError("fold weight norm first (codec.fold_weight_norm()): Mimi checkpoints hold plain convs")
    transposed, attention, codebooks = _structure(codec)
    own = {k: v.detach().float().cpu() for k, v in codec.state_dict().items()}
    heads = codec.config.transformer.num_heads
    out = {}
    for source, target in _expected(layout, codec).items():
        if target in own:
            out[source] = own[target].contiguous()
    if layout == "moshi":
        for a in attention:
            q, k, v = (own[f"{a}.{p}.weight"] for p in _QKV)
            inverse = torch.argsort(_rope_permutation(heads, q.shape[0]))
            name = _moshi_key(f"{a}.o_proj.weight", transposed).replace("out_proj.weight", "in_proj_weight")
            out[name] = torch.cat([q[inverse], k[inverse], v]).contiguous()
    for c in codebooks:
        base = _source_key(layout, f"{c}.x", transposed)[: -len(".x")]
        codebook = vq_layout.read_codebook(own, c)
        embed, embed_avg, usage = codebook.entries, codebook.ema_sum, codebook.ema_count
        # Keep the EMA sums when they reproduce the lookup table exactly (a converted Mimi model); after
        # codec12 training the table is smoothed differently, so the sums are rebuilt from it.
        if not torch.equal(embed_avg / usage.clamp(min=EPSILON)[:, None], embed):
            usage = usage.clamp(min=EPSILON)
            embed_avg = embed * usage[:, None]
        sum_name, usage_name, init_name = _CODEBOOK_PARTS[layout]
        out[base + sum_name] = embed_avg.contiguous()
        out[base + usage_name] = usage.contiguous()
        out[base + init_name] = torch.ones(1)
    return out


# ---------------------------------------------------------------------------------------------------- files
def _read_safetensors(files: list[Path]) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for f in files:
        try:
            with safe_open(str(f), framework="pt") as handle:
                for key in handle.keys():
                    state[key] = handle.get_tensor(key)
        except Exception as e:  # safetensors raises its own error types for truncated / foreign files
            raise ValueError(f"{f}: cannot read safetensors ({type(e).__name__}: {e})") from e
    return state


def _weight_files(directory: Path) -> list[Path]:
    index = directory / "model.safetensors.index.json"
    if (directory / "model.safetensors").is_file():
        return [directory / "model.safetensors"]
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, json.JSONDecodeError, KeyError, AttributeError) as e:
            raise ValueError(f"{index}: cannot read the shard index: {e}") from e
        return [directory / s for s in shards]
    moshi = sorted(directory.glob("tokenizer-*.safetensors"))
    if len(moshi) == 1:
        return moshi
    if len(moshi) > 1:
        raise ValueError(f"{directory}: several moshi tokenizer files {[p.name for p in moshi]}; pass one file")
    raise ValueError(f"{directory}: no model.safetensors, model.safetensors.index.json or tokenizer-*.safetensors")


def _read_mimi_config(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read config: {e}") from e
    return raw if isinstance(raw, dict) and raw.get("model_type") == "mimi" else None


def accepts(path: Path) -> bool:
    """Whether :meth:`Codec.from_pretrained` should read ``path`` as Mimi: a ``.safetensors`` file (moshi's
    ``tokenizer-*.safetensors``, or either layout), or a directory whose ``config.json`` says ``model_type: mimi``."""
    if path.is_file():
        return path.suffix == ".safetensors"
    try:
        return path.is_dir() and _read_mimi_config(path / "config.json") is not None
    except ValueError:  # an unreadable config.json: Codec.from_pretrained reports it
        return False


def mimi_from_pretrained(path: str | Path, *, name: str = "mimi") -> Codec:
    """Load a Mimi checkpoint as a codec12 :class:`~codec12.Codec` (eval mode, float32, CPU).

    ``path``: a directory with a transformers ``config.json`` (``model_type: "mimi"``) and ``model.safetensors``
    (as ``MimiModel.save_pretrained`` writes it and the ``kyutai/mimi`` hub repo holds), a directory or file with
    a moshi ``tokenizer-*.safetensors`` (default Mimi config unless a Mimi ``config.json`` sits next to it), or
    any ``.safetensors`` file in either layout.
    """
    path = Path(path)
    if path.is_dir():
        directory, files = path, _weight_files(path)
    elif path.is_file():
        directory, files = path.parent, [path]
    else:
        raise ValueError(f"{path}: no such file or directory")
    config_path = directory / "config.json"
    raw = _read_mimi_config(config_path)
    if raw is None and path.is_dir() and config_path.is_file() and files[0].name == "model.safetensors":
        raise ValueError(f"{config_path}: not a Mimi config (model_type is not 'mimi')")
    config = mimi_codec_config(raw if raw is not None else {}, str(config_path if raw is not None else "defaults"),
                               name=name)
    state = _read_safetensors(files)
    where = str(files[0]) if len(files) == 1 else str(directory)
    # Converted and checked against the config's layout first: the model is built only for weights that fit it.
    state = mimi_state_to_codec12(state, meta_codec(config), where)
    check_weights_fit(config, {k: tuple(v.shape) for k, v in state.items()}, where)
    codec = Codec.from_config(config)
    load_state_dict_strict(codec, state, where)
    return codec.eval()



def save_mimi(codec, directory: str | Path, layout: str = "transformers") -> None:
    """Write a codec12 model of Mimi's topology as a Mimi checkpoint: ``config.json`` + ``model.safetensors``
    (transformers layout, loadable with ``transformers.MimiModel.from_pretrained``) or a moshi
    ``tokenizer-codec12.safetensors`` (moshi layout)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = codec12_to_mimi_state(codec, layout)
    if layout == "moshi":
        atomic_write(directory / "tokenizer-codec12.safetensors",
                      lambda p: save_file(tensors, str(p), metadata={"format": "pt"}))
        return
    config = json.dumps(mimi_config_dict(codec.config), indent=2, sort_keys=True) + "\n"
    atomic_write(directory / "model.safetensors", lambda p: save_file(tensors, str(p), metadata={"format": "pt"}))
    atomic_write(directory / "config.json", lambda p: p.write_text(config))

