"""Phonetic teacher: CTC on the transcript's phonemes through a small head on the semantic branch.

For training without an SSL checkpoint: the transcript is phonemized with espeak-ng (``espeak-ng -q --ipa
-v LANGUAGE``; Debian package ``espeak-ng``), mapped onto :data:`PHONE_INVENTORY`, and a head on the
semantic-branch output is trained with CTC against it. Speech runs at 10-15 phones per second, faster than
the 12.5 Hz frame rate, and CTC needs at least one output step per target (two between repeats), so the
head emits ``upsample`` steps per codec frame (4 -> 50 Hz by default).

Phone inventory (index 0 is the CTC blank, the last index ``spn`` stands for any symbol outside the
inventory). IPA from espeak-ng is read by greedy longest match after dropping stress marks, ties, syllabic
and other diacritics; a long vowel that is not in the inventory folds onto its short vowel. It covers the
project's training languages (English, Dutch, Czech) and most European ones:

- vowels: i y ɪ ʏ e ø ɛ œ æ a ɑ ɒ ɔ o ʊ u ʌ ə ɚ ɜ ɐ ɨ ɯ ɤ
- long vowels: iː yː eː øː ɛː aː ɑː ɔː oː uː ɜː
- diphthongs: aɪ aʊ eɪ oʊ ɔɪ ɛɪ œy ʌu əʊ ɪə eə ʊə
- consonants: p b t d k ɡ q ʔ c ɟ m n ŋ ɲ ɱ f v θ ð s z ʃ ʒ ʂ ʐ ɕ ʑ x ɣ χ ʁ h ɦ ç ʝ β ɸ r ɾ ɹ ʀ r̝ l ɫ ʎ
  ɬ j w ʋ ɥ
- affricates: ts dz tʃ dʒ tɕ dʑ
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

_VOWELS = "i y ɪ ʏ e ø ɛ œ æ a ɑ ɒ ɔ o ʊ u ʌ ə ɚ ɜ ɐ ɨ ɯ ɤ".split()
_LONG = "iː yː eː øː ɛː aː ɑː ɔː oː uː ɜː".split()
_DIPHTHONGS = "aɪ aʊ eɪ oʊ ɔɪ ɛɪ œy ʌu əʊ ɪə eə ʊə".split()
_CONSONANTS = ("p b t d k ɡ q ʔ c ɟ m n ŋ ɲ ɱ f v θ ð s z ʃ ʒ ʂ ʐ ɕ ʑ x ɣ χ ʁ h ɦ ç ʝ β ɸ r ɾ ɹ ʀ r̝ l ɫ ʎ ɬ j "
               "w ʋ ɥ").split()
_AFFRICATES = "ts dz tʃ dʒ tɕ dʑ".split()

BLANK = "<blank>"
UNKNOWN = "spn"
PHONE_INVENTORY: tuple[str, ...] = (BLANK, *_VOWELS, *_LONG, *_DIPHTHONGS, *_CONSONANTS, *_AFFRICATES, UNKNOWN)
PHONE_INDEX = {p: i for i, p in enumerate(PHONE_INVENTORY)}

# Spellings espeak-ng (or users) write for inventory phones.
_ALIASES = {"g": "ɡ", "ᵻ": "ɪ", "ɝ": "ɜ", "ɘ": "ə", "ɵ": "ø", "ɞ": "œ", "ɑ̃": "ɑ", "ɛ̃": "ɛ", "ɔ̃": "ɔ", "œ̃": "œ",
            "ʧ": "tʃ", "ʤ": "dʒ", "ʦ": "ts", "ʣ": "dz", "ɻ": "ɹ", "ʍ": "w", "ɭ": "l", "ɳ": "n", "ʈ": "t", "ɖ": "d",
            "ɴ": "ŋ", "ʀ̥": "ʀ", "r̝̊": "r̝"}
# Marks that carry no phone of their own: stress, ties, joiners, length on a vowel already matched.
_DROP = set("ˈˌ\u200d\u0361\u035c‿ˑ|‖.-'")
_MAX_LEN = max(len(p) for p in (*PHONE_INVENTORY, *_ALIASES))


def ipa_to_phones(ipa: str) -> list[str]:
    """IPA string -> inventory phones (word boundaries and punctuation dropped)."""
    text = "".join(ch for ch in unicodedata.normalize("NFD", ipa) if ch not in _DROP)
    phones: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace() or unicodedata.category(ch)[0] in "PSN":
            i += 1
            continue
        for n in range(min(_MAX_LEN, len(text) - i), 0, -1):
            piece = text[i:i + n]
            piece = _ALIASES.get(piece, piece)
            if piece in PHONE_INDEX and piece != BLANK:
                phones.append(piece)
                i += n
                break
        else:
            # A combining mark, modifier letter or length sign left over: it qualifies the previous phone.
            if unicodedata.category(ch) not in ("Mn", "Lm", "Sk"):
                phones.append(UNKNOWN)
            i += 1
    return phones


def phones_to_ids(phones: list[str]) -> list[int]:
    """Inventory phones -> indices into :data:`PHONE_INVENTORY` (never 0, the blank)."""
    return [PHONE_INDEX.get(p, PHONE_INDEX[UNKNOWN]) for p in phones]


class Phonemizer:
    """Text -> inventory phones through the espeak-ng command, with an in-memory LRU cache.

    ``language`` is an espeak-ng voice (``espeak-ng --voices`` lists them: en-us, nl, cs, ...).
    """

    def __init__(self, language: str = "en-us", *, executable: str = "espeak-ng", cache_size: int = 200_000) -> None:
        path = shutil.which(executable)
        if path is None:
            raise ValueError(f"the phonetic teacher needs {executable!r} on PATH (Debian/Ubuntu: apt-get install "
                             f"espeak-ng)")
        self.executable = path
        self.language = language
        self.cache_size = cache_size
        self._cache: OrderedDict[str, tuple[str, ...]] = OrderedDict()
        self._lock = threading.Lock()
        self.ipa("")  # fail now, naming the voice, rather than in the first training step

    def ipa(self, text: str) -> str:
        """espeak-ng's IPA for ``text``; clauses are joined by spaces."""
        try:
            done = subprocess.run([self.executable, "-q", "--ipa", "-v", self.language, "--stdin"],
                                  input=text.encode(), capture_output=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise ValueError(f"espeak-ng failed on {text[:60]!r}: {e}") from e
        err = done.stderr.decode(errors="replace").strip()
        if done.returncode != 0 or "voice" in err.lower() and "not" in err.lower():
            raise ValueError(f"espeak-ng -v {self.language}: {err or f'exit status {done.returncode}'}")
        return " ".join(done.stdout.decode().split())

    def __call__(self, text: str) -> tuple[str, ...]:
        """Text -> inventory phones, cached by text."""
        with self._lock:
            hit = self._cache.get(text)
            if hit is not None:
                self._cache.move_to_end(text)
                return hit
        phones = tuple(ipa_to_phones(self.ipa(text)))
        with self._lock:
            self._cache[text] = phones
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return phones


@dataclass(frozen=True, kw_only=True)
class PhoneticDistillConfig:
    """The recipe's ``distill`` section for the phonetic teacher.

    language: espeak-ng voice of the transcripts (``batch["language"]``, when present, overrides it per item).
    hidden: width of the CTC head; kernel_size: its (non-causal) context in codec frames.
    upsample: CTC steps per codec frame.
    """

    teacher: Literal["phonetic"] = "phonetic"
    language: str = "en-us"
    weight_name: str = "distill_ctc"
    hidden: int = 256
    kernel_size: int = 3
    upsample: int = 4

    def __post_init__(self):
        if self.teacher != "phonetic":
            raise ValueError(f"distill.teacher must be 'phonetic' for PhoneticDistillConfig, got {self.teacher!r}")
        if not isinstance(self.language, str) or not self.language:
            raise ValueError("distill.language must be an espeak-ng voice name such as 'en-us'")
        if not isinstance(self.weight_name, str) or not self.weight_name:
            raise ValueError("distill.weight_name must be a non-empty string")
        for name in ("hidden", "kernel_size", "upsample"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"distill.{name} must be a positive int, got {value!r}")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"distill.kernel_size must be odd (centred context), got {self.kernel_size}")


class CTCHead(nn.Module):
    """Semantic output [B, D_s, T'] -> phone log-probabilities [B, T' * upsample, len(PHONE_INVENTORY)]."""

    def __init__(self, dim: int, hidden: int, kernel_size: int, upsample: int) -> None:
        super().__init__()
        self.upsample = upsample
        self.num_classes = len(PHONE_INVENTORY)
        self.conv = nn.Conv1d(dim, hidden, kernel_size, padding=kernel_size // 2)
        self.out = nn.Conv1d(hidden, upsample * self.num_classes, 1)

    def forward(self, semantic: torch.Tensor) -> torch.Tensor:
        b, _, t = semantic.shape
        logits = self.out(F.gelu(self.conv(semantic)))  # [B, U * V, T']
        logits = logits.view(b, self.upsample, self.num_classes, t).permute(0, 3, 1, 2)
        return logits.reshape(b, t * self.upsample, self.num_classes).float().log_softmax(dim=-1)


class PhoneticDistiller(nn.Module):
    """CTC loss of the transcript's phonemes (``batch["text"]``: list of str, ``None`` for unknown) on a head
    over the semantic branch. The head is training-only and never part of a released model."""

    def __init__(self, config: PhoneticDistillConfig, semantic_dim: int, phonemizer: Phonemizer | None = None) -> None:
        super().__init__()
        self.config = config
        self.head = CTCHead(semantic_dim, config.hidden, config.kernel_size, config.upsample)
        self.phonemizers = {config.language: phonemizer or Phonemizer(config.language)}

    def _phonemizer(self, language: str) -> Phonemizer:
        if language not in self.phonemizers:
            self.phonemizers[language] = Phonemizer(language)
        return self.phonemizers[language]

    def targets(self, batch: dict) -> list[list[int] | None]:
        """Phone indices per item of ``batch["text"]`` (``None`` where the transcript is missing or has no phones)."""
        texts = batch.get("text") if isinstance(batch, dict) else None
        if texts is None:
            raise ValueError("the phonetic teacher needs transcripts: batch['text'] (list of str) is missing")
        languages = batch.get("language") or [self.config.language] * len(texts)
        out = []
        for text, language in zip(texts, languages):
            if text is None:
                out.append(None)
                continue
            if not isinstance(text, str):
                raise ValueError(f"batch['text'] items must be str or None, got {type(text).__name__}")
            ids = phones_to_ids(list(self._phonemizer(language or self.config.language)(text)))
            out.append(ids or None)  # no phones (blank or punctuation only): nothing to align, left out
        return out

    def forward(self, wav: torch.Tensor, output, batch: dict) -> dict[str, torch.Tensor]:
        """``output.semantic`` [B, D_s, T'] and ``batch["text"]`` -> ``{weight_name: scalar}`` (mean CTC loss per
        target phone; items without a transcript are left out)."""
        log_probs = self.head(output.semantic.to(self.head.conv.weight.dtype))  # [B, S, V]
        targets = self.targets(batch)
        if len(targets) != log_probs.shape[0]:
            raise ValueError(f"batch['text'] has {len(targets)} items for a batch of {log_probs.shape[0]}")
        keep = [i for i, t in enumerate(targets) if t is not None]
        if not keep:
            # Nothing to learn from, but keep the head in the graph (DDP expects every parameter used).
            return {self.config.weight_name: log_probs.sum() * 0.0}
        lp = log_probs[keep].transpose(0, 1)  # [S, B', V]
        flat = torch.tensor([p for i in keep for p in targets[i]], dtype=torch.long, device=lp.device)
        target_lengths = torch.tensor([len(targets[i]) for i in keep], dtype=torch.long, device=lp.device)
        input_lengths = torch.full((len(keep),), lp.shape[0], dtype=torch.long, device=lp.device)
        # zero_infinity: a transcript too long for its audio contributes nothing instead of inf.
        loss = F.ctc_loss(lp, flat, input_lengths, target_lengths, blank=0, reduction="mean", zero_infinity=True)
        return {self.config.weight_name: loss}
