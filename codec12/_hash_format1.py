"""The config hashes of format 1, which ``.c12`` headers and tokenized datasets written before the canonical form
(``config_hash_format`` 2) hold; kept so that those files stay readable. Frozen: nothing here changes when configs
gain fields.

Format 1 hashed the config's JSON as it was written then: every field that existed when the first codec12 was
released, written whatever its value, and the blocks and options added since written only when set (``istft``,
``voxtral``, ``istft.phase``, ``istft.harmonic_envelope``; ``istft``'s F0 range with ``harmonic`` only); with a
``voxtral`` block, the blocks it replaces left out. Files hold one of two variants: the quantizer's training-only
settings left out (from 2026-11-22) or, earlier, counted.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

# What format 1 wrote for a field at its default, by block ("" the top level).
_WRITTEN = {
    "": {"sample_rate": 24000, "downsample_stride": 2, "latent_dim": 512, "depthwise_upsample": True},
    "seanet": {"channels": 1, "dimension": 512, "n_filters": 64, "ratios": [8, 6, 5, 4], "kernel_size": 7,
               "last_kernel_size": 3, "residual_kernel_size": 3, "dilation_base": 2, "n_residual_layers": 1,
               "compress": 2, "pad_mode": "constant", "norm": "weight_norm"},
    "transformer": {"d_model": 512, "num_heads": 8, "num_layers": 8, "dim_feedforward": 2048, "context": 250,
                    "max_period": 10000.0, "layer_scale": 0.01, "norm_eps": 1e-5},
    "quantizer": {"layout": "shared", "semantic_codebook_size": 2048, "semantic_dim": 256, "acoustic": "rvq",
                  "num_acoustic": 31, "acoustic_codebook_size": 2048, "acoustic_dim": 256, "ema_decay": 0.99,
                  "threshold_ema_dead_code": 2.0, "kmeans_init": False, "unquantized_rate": 0.0,
                  "level_dropout": True, "fsq_dither": [0.5, 0.25, 0.25]},
    "istft": {"dim": 256, "intermediate_dim": 768, "num_layers": 8, "kernel_size": 7, "n_fft": 640,
              "hop_length": 160},
    "voxtral": {"channels": 1, "patch_size": 240, "patch_kernel_size": 7, "dim": 1024, "hidden_dim": 4096,
                "num_heads": 8, "num_kv_heads": 8, "head_dim": 128, "window": 16, "halve_window": True,
                "qk_norm": True, "qk_norm_eps": 1e-6, "norm_eps": 1e-2, "bias": False, "layer_scale": 0.01,
                "encoder_layers": [2, 2, 2, 2], "encoder_kernels": [4, 4, 4, 3], "encoder_strides": [2, 2, 2, 1],
                "decoder_layers": [2, 2, 2, 2], "decoder_kernels": [3, 4, 4, 4], "decoder_strides": [1, 2, 2, 2],
                "encoder": True, "norm": "weight_norm"},
}
_HARMONIC = {"f0_min": 50.0, "f0_max": 550.0, "f0_bins": 128}  # written with istft.harmonic only
_REPLACED_BY_VOXTRAL = ("seanet", "transformer", "downsample_stride", "depthwise_upsample")
_TRAINING_ONLY = ("ema_decay", "threshold_ema_dead_code", "kmeans_init", "unquantized_rate", "level_dropout",
                  "fsq_dither")


def format1_hashes(changed: dict[str, Any]) -> tuple[str, str]:
    """The two format-1 hashes of the config whose fields that differ from their defaults are ``changed``
    (:func:`codec12._dataclass_io.non_default` of it): without and with the training-only settings. A field added
    after format 1 appears in them only when set, so such a config matches no format-1 file."""
    changed = {k: v for k, v in changed.items() if k != "name"}
    form: dict[str, Any] = {"format_version": 1, **_WRITTEN[""]}
    for block in ("seanet", "transformer", "quantizer"):
        form[block] = {**_WRITTEN[block], **changed.pop(block, {})}
    if "istft" in changed:
        istft = {**_WRITTEN["istft"], **changed.pop("istft")}
        if istft.get("harmonic"):
            istft = {**_HARMONIC, **istft}
        else:
            for key in _HARMONIC:
                istft.pop(key, None)
        form["istft"] = istft
    if "voxtral" in changed:
        form["voxtral"] = {**_WRITTEN["voxtral"], **changed.pop("voxtral")}
        for key in _REPLACED_BY_VOXTRAL:
            del form[key]
    form.update(changed)
    counted = _digest(form)
    form["quantizer"] = {k: v for k, v in form["quantizer"].items() if k not in _TRAINING_ONLY}
    return _digest(form), counted


def _digest(form: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(form, sort_keys=True).encode()).hexdigest()[:16]
