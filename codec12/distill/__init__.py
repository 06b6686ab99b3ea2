"""Semantic distillation: frozen teachers and their losses, built by the trainer, never part of a saved model.

``build_distiller(cfg, codec)`` turns the recipe's ``distill`` section (a :data:`DistillConfig`: one teacher's
config, chosen by its ``teacher`` field) into an ``nn.Module`` whose parameters (a projection or a CTC head)
train with the generator, and whose call ``distiller(wav, output, batch) -> {loss_name: scalar}`` gives the
named distillation loss:

- ``{"teacher": "ssl", "model": DIR_OR_HUB_ID, "layer": 6 | [4, 5, 6], ...}`` -> ``distill_cosine``
  (:mod:`codec12.distill.ssl`; the frozen teacher stays out of ``state_dict`` and ``parameters()``);
- ``{"teacher": "asr", "model": WHISPER_DIR_OR_HUB_ID, "layer": null, ...}`` -> ``distill_asr``
  (:mod:`codec12.distill.asr`: Whisper's encoder, the same cosine loss);
- ``{"teacher": "phonetic", "language": "en-us", ...}`` -> ``distill_ctc`` (:mod:`codec12.distill.phonetic`).

:mod:`codec12.distill.pitch` is the pitch teacher of harmonic decoders (F0 and voicing, per STFT frame).
:mod:`codec12.distill.measure` measures how phonetic the code rows are (PNMI, phone purity).
"""

from codec12._lazy import lazy_exports

_EXPORTS = {
    "ASRDistillConfig": "codec12.distill.asr",
    "ASRTeacher": "codec12.distill.asr",
    "load_asr_teacher": "codec12.distill.asr",
    "PHONE_INVENTORY": "codec12.distill.phonetic",
    "Phonemizer": "codec12.distill.phonetic",
    "PhoneticDistillConfig": "codec12.distill.phonetic",
    "PhoneticDistiller": "codec12.distill.phonetic",
    "PitchTarget": "codec12.distill.pitch",
    "PitchTeacher": "codec12.distill.pitch",
    "ipa_to_phones": "codec12.distill.phonetic",
    "SSLDistillConfig": "codec12.distill.ssl",
    "SSLDistiller": "codec12.distill.ssl",
    "SSLTeacher": "codec12.distill.ssl",
    "load_teacher": "codec12.distill.ssl",
    "DistillConfig": "codec12.distill.build",
    "TEACHER_LOSSES": "codec12.distill.build",
    "build_distiller": "codec12.distill.build",
    "distill_config_from_dict": "codec12.distill.build",
    "semantic_dim": "codec12.distill.build",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
