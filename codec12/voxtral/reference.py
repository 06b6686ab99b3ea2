"""Voxtral's reference codec (vllm-omni's ``VoxtralTTSAudioTokenizer``), built outside vLLM for parity checks.

The module lives in the ``vllm-omni`` wheel (``pip install --no-deps vllm-omni==0.30.0``; Apache-2.0). Importing
it normally would import vLLM and mistral_common; at import time it only needs a few of their names (base
classes, a registry decorator, a logger, a weight loader), so this adapter gives it inert stand-ins for those
while it loads, registers ``vllm_omni``'s package directory without running its ``__init__``, and removes the
stand-ins again afterwards. It is the one place that knows the reference's private names; tests and
``benchmarks/voxtral_speed.py`` go through it.

The reference encodes under a bfloat16 autocast (``_tokenize_audio``); :func:`reference_encode` runs the same
steps in float32 for exact comparison. Its encoder attention also flattens the batch into one sequence, so
rows of a batch see each other: vllm-omni encodes one clip at a time, and so should a comparison.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import logging
import sys
import types
from typing import Any

import torch

MODULE = "vllm_omni.model_executor.models.voxtral_tts.voxtral_tts_audio_tokenizer"
VERSION = "0.30.0"
INSTALL = f"pip install --no-deps vllm-omni=={VERSION}"

_PACKAGES = ("vllm_omni", "vllm_omni.model_executor", "vllm_omni.model_executor.models",
             "vllm_omni.model_executor.models.voxtral_tts")


class _Inert:
    """Any vLLM class the reference subclasses, subscripts or annotates with at import time."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __class_getitem__(cls, item):
        return cls


class _Registry:
    def register_processor(self, *args, **kwargs):
        return lambda cls: cls


def _copy_weight(param: torch.nn.Parameter, value: torch.Tensor) -> None:
    param.data.copy_(value)


def _stand_ins() -> dict[str, dict[str, Any]]:
    return {
        "vllm": {}, "vllm.config": {"VllmConfig": _Inert}, "vllm.inputs": {"MultiModalDataDict": dict},
        "vllm.logger": {"init_logger": logging.getLogger}, "vllm.model_executor": {},
        "vllm.model_executor.model_loader": {},
        "vllm.model_executor.model_loader.weight_utils": {"default_weight_loader": _copy_weight},
        "vllm.model_executor.models": {},
        "vllm.model_executor.models.interfaces": {"SupportsMultiModal": _Inert},
        "vllm.model_executor.models.utils": {"flatten_bn": None, "init_vllm_registered_model": None,
                                             "maybe_prefix": None},
        "vllm.multimodal": {"MULTIMODAL_REGISTRY": _Registry()},
        "vllm.multimodal.inputs": {"MultiModalFieldConfig": _Inert, "MultiModalKwargsItems": _Inert,
                                   "NestedTensors": object},
        "vllm.multimodal.parse": {"AudioProcessorItems": _Inert, "MultiModalDataItems": _Inert,
                                  "MultiModalDataParser": _Inert},
        "vllm.multimodal.processing": {"BaseDummyInputsBuilder": _Inert, "BaseMultiModalProcessor": _Inert},
        "vllm.multimodal.processing.processor": {"BaseProcessingInfo": _Inert, "ProcessorInputs": _Inert,
                                                 "PromptReplacement": _Inert, "PromptUpdate": _Inert},
        "vllm.sequence": {"IntermediateTensors": _Inert}, "vllm.tokenizers": {"cached_tokenizer_from_config": None},
        "vllm.tokenizers.mistral": {"MistralTokenizer": _Inert},
        "mistral_common": {}, "mistral_common.protocol": {}, "mistral_common.protocol.instruct": {},
        "mistral_common.protocol.instruct.chunk": {"AudioChunk": _Inert, "RawAudio": _Inert},
        "mistral_common.tokens": {}, "mistral_common.tokens.tokenizers": {},
        "mistral_common.tokens.tokenizers.audio": {"Audio": _Inert, "AudioEncoder": _Inert},
        "vllm_omni.quantization": {},
        "vllm_omni.quantization.component_config": {"ComponentQuantizationConfig": _Inert},
        "vllm_omni.platforms": {"current_omni_platform": types.SimpleNamespace(device_type="cpu")},
    }


def load_reference_module() -> types.ModuleType:
    """vllm-omni's ``voxtral_tts_audio_tokenizer`` module; ImportError (with the install command) without it."""
    if MODULE in sys.modules:
        return sys.modules[MODULE]
    spec = importlib.util.find_spec("vllm_omni")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"the Voxtral reference needs the vllm-omni wheel: {INSTALL}")
    import transformers

    transformers.BatchFeature  # noqa: B018 -- resolved now, while mistral_common is still the real (absent) one
    root = list(spec.submodule_search_locations)[0]
    added = []
    try:
        for i, name in enumerate(_PACKAGES):
            if name not in sys.modules:
                package = types.ModuleType(name)
                package.__path__ = [root + "".join(f"/{p}" for p in _PACKAGES[i].split(".")[1:])]
                sys.modules[name] = package
        for name, attributes in _stand_ins().items():
            if name in sys.modules:
                continue
            module = types.ModuleType(name)
            module.__spec__ = importlib.machinery.ModuleSpec(name, None)
            module.__dict__.update(attributes)
            sys.modules[name] = module
            added.append(name)
        logging.getLogger(MODULE).setLevel(logging.ERROR)  # its "flash_attn is not installed" warning
        return importlib.import_module(MODULE)
    finally:
        for name in added:
            del sys.modules[name]


def build_reference(args: dict[str, Any], tensors: dict[str, torch.Tensor] | None = None) -> torch.nn.Module:
    """A ``VoxtralTTSAudioTokenizer`` with codec arguments ``args`` (``AudioTokenizerArgs`` fields), float32, eval
    mode; ``tensors`` (Voxtral names without ``audio_tokenizer.``) are loaded through its own ``load_weight``.
    Its audio-token embedding table (the TTS model's, not the codec's) is built small."""
    module = load_reference_module()
    audio_model_args = {"semantic_codebook_size": args["semantic_codebook_size"],
                        "acoustic_codebook_size": args["acoustic_codebook_size"],
                        "n_acoustic_codebook": args["acoustic_dim"], "acoustic_transformer_args": {"input_dim": 8}}
    hf_config = types.SimpleNamespace(audio_config={"codec_args": dict(args), "audio_model_args": audio_model_args},
                                      text_config=types.SimpleNamespace(hidden_size=8))
    vllm_config = types.SimpleNamespace(model_config=types.SimpleNamespace(hf_config=hf_config))
    model = module.VoxtralTTSAudioTokenizer(vllm_config=vllm_config)
    for name, value in (tensors or {}).items():
        model.load_weight((name, value))
    return model.float().eval()


@torch.no_grad()
def reference_encode(model: torch.nn.Module, wav: torch.Tensor) -> torch.Tensor:
    """Codes [B, K, T'] of audio [B, 1, T] (T a multiple of the patch size): ``_tokenize_audio`` in float32."""
    return model.quantizer.encode(model._forward_encoder(wav))


@torch.no_grad()
def reference_decode_latents(model: torch.nn.Module, latents: torch.Tensor) -> torch.Tensor:
    """Audio from decoder input [B, 292, T'] (the quantizer's output form), as ``decode`` runs it."""
    return model._forward_decoder(latents)
