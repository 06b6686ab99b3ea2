"""Does phonetic distillation make row 0 semantic? PNMI of row 0 vs row 1 with and without the CTC loss.

Trains the same small 16 kHz codec twice from the same seed on espeak-ng speech (random English sentences,
several voice variants): once with reconstruction (multi-resolution STFT) + commitment losses only, once with
the phonetic teacher's CTC loss added (``codec12.distill``, transcript -> espeak-ng phonemes). Then measures
PNMI and phone purity of the semantic row (0) and the first acoustic row (1) on held-out sentences, against
frame labels from espeak-ng's own phoneme timing (phoneme events of libespeak-ng, exact for synthetic speech).

    python benchmarks/semantic_split.py [--steps 300] [--train 160] [--test 40] [--layout concat]
    python benchmarks/semantic_split.py --model c12-tiny-16k --train 0   # measure an existing model
    python benchmarks/semantic_split.py --init c12-tiny-16k --lr 3e-4 --head-lr 3e-3  # fine-tune it both ways

The two-phase protocol of docs/distillation.md (a reconstruction-only start, then both arms from it):

    python benchmarks/semantic_split.py --layout concat --run plain --steps 3000 --batch-size 4 --train 300 \
        --test 400 --save runs/sem/concat-base
    python benchmarks/semantic_split.py --init runs/sem/concat-base-plain --lr 1e-3 --head-lr 1e-2 \
        --head-kernel 1 --steps 1500 --batch-size 4 --train 300 --test 400

Needs espeak-ng (Debian ``espeak-ng``, which ships libespeak-ng.so.1). CPU, about ten minutes at the
defaults on two cores.
"""

from __future__ import annotations

import argparse
import ctypes
import random
import time

import numpy as np
import torch
import torchaudio
from auraloss.freq import MultiResolutionSTFTLoss

from codec12 import Codec, CodecConfig, QuantizerConfig, SEANetConfig, TransformerConfig
from codec12.distill import build_distiller, ipa_to_phones
from codec12.distill.measure import intervals_to_frames, measure_codes

WORDS = ("the a one two three red green blue big small old new cat dog bird fish man woman child house car road "
         "tree water fire light night day sun moon star rain snow wind stone river hill city boat ship book "
         "letter song voice hand head eye mouth heart friend mother father sister brother king queen people "
         "runs walks sees hears finds keeps takes makes gives sings reads writes opens closes likes wants needs "
         "quickly slowly never always often today again here there under over near behind with without from "
         "into across bright dark warm cold happy sad strong quiet loud green yellow purple orange seven eight "
         "nine ten shop market garden kitchen window door table chair bread cheese apple music thunder jungle "
         "zebra giraffe village bridge castle mountain valley forest island ocean desert").split()
VOICES = ("en-us", "en-us+m3", "en-us+m7", "en-us+f2", "en-us+f4", "en", "en+m5", "en+f3", "en-us+croak")


class EspeakTimed:
    """Synthesis with phoneme timing through libespeak-ng's phoneme events (IPA names, ms positions)."""

    class _Id(ctypes.Union):
        _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]

    class _Event(ctypes.Structure):
        pass

    _Event._fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                       ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                       ("user_data", ctypes.c_void_p), ("id", _Id)]

    def __init__(self) -> None:
        try:
            self.lib = ctypes.cdll.LoadLibrary("libespeak-ng.so.1")
        except OSError as e:
            raise SystemExit(f"needs libespeak-ng (apt-get install espeak-ng): {e}") from e
        # AUDIO_OUTPUT_SYNCHRONOUS, phoneme events with IPA names
        self.sample_rate = self.lib.espeak_Initialize(2, 0, None, 0x0001 | 0x0002)
        callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                         ctypes.POINTER(self._Event))
        self._callback = callback_type(self._on_audio)  # kept alive: the library holds a raw pointer
        self.lib.espeak_SetSynthCallback(self._callback)
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[float, str]] = []

    def _on_audio(self, wav, n, events) -> int:
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != 0:
            if events[i].type == 7:  # espeakEVENT_PHONEME
                self._events.append((events[i].audio_position / 1000, events[i].id.string.decode("utf-8", "replace")))
            i += 1
        return 0

    def __call__(self, text: str, voice: str) -> tuple[np.ndarray, list[list]]:
        """-> (float32 audio at ``sample_rate``, phone intervals ``[[start_s, end_s, phone], ...]``)."""
        self._chunks, self._events = [], []
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak-ng voice {voice!r} not found")
        data = text.encode()
        self.lib.espeak_Synth(data, len(data) + 1, 0, 1, 0, 0, None, None)
        self.lib.espeak_Synchronize()
        wav = np.concatenate(self._chunks).astype(np.float32) / 32768
        end = len(wav) / self.sample_rate
        intervals, previous = [], 0.0
        marks = self._events + [(end, "")]
        for (start, name), (stop, _) in zip(marks[:-1], marks[1:]):
            if start > previous:
                intervals.append([previous, start, "sil"])
            phones = ipa_to_phones(name)
            intervals.append([start, max(start, stop), phones[0] if phones else "sil"])
            previous = max(start, stop)
        return wav, intervals


def make_corpus(n: int, rng: random.Random, tts: EspeakTimed, sample_rate: int) -> list[dict]:
    items = []
    for _ in range(n):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 6)))
        wav, intervals = tts(text, rng.choice(VOICES))
        wav = torchaudio.functional.resample(torch.from_numpy(wav), tts.sample_rate, sample_rate)
        items.append({"text": text, "wav": wav * 0.9 / wav.abs().max().clamp_min(1e-4), "intervals": intervals})
    return items


def codec_config(layout: str = "shared") -> CodecConfig:
    return CodecConfig(
        name="semantic-split-16k", sample_rate=16000,
        seanet=SEANetConfig(dimension=64, n_filters=8, ratios=(8, 5, 4, 4)),
        transformer=TransformerConfig(d_model=64, num_heads=4, num_layers=2, dim_feedforward=128, context=50),
        latent_dim=64,
        quantizer=QuantizerConfig(layout=layout, semantic_codebook_size=128, semantic_dim=32, num_acoustic=4,
                                  acoustic_codebook_size=128, acoustic_dim=32),
    )


def collate(items: list[dict], frame_size: int) -> tuple[torch.Tensor, dict]:
    length = max(len(x["wav"]) for x in items)
    length += -length % frame_size
    wav = torch.zeros(len(items), 1, length)
    for i, x in enumerate(items):
        wav[i, 0, : len(x["wav"])] = x["wav"]
    return wav, {"text": [x["text"] for x in items]}


def train(corpus: list[dict], steps: int, ctc_weight: float, batch_size: int, seed: int, *, init: str | None = None,
          lr: float = 2e-3, head_lr: float | None = None, layout: str = "shared",
          head_kernel: int = 3) -> tuple[Codec, list]:
    torch.manual_seed(seed)
    codec = (Codec.from_pretrained(init) if init else Codec.from_config(codec_config(layout))).train()
    distiller = build_distiller({"teacher": "phonetic", "language": "en-us", "hidden": 128,
                                 "kernel_size": head_kernel}, codec) \
        if ctc_weight > 0 else None
    own, head = list(codec.parameters()), list(distiller.parameters()) if distiller else []
    params = own + head
    groups = [{"params": own}] + ([{"params": head, "lr": head_lr or lr}] if head else [])
    opt = torch.optim.AdamW(groups, lr=lr, betas=(0.8, 0.99))
    stft = MultiResolutionSTFTLoss(fft_sizes=[256, 512, 1024], hop_sizes=[64, 128, 256], win_lengths=[256, 512, 1024])
    rng = random.Random(seed)
    log = []
    for step in range(steps):
        wav, batch = collate(rng.sample(corpus, batch_size), codec.frame_size)
        out = codec(wav)
        losses = {"stft": stft(out.audio, wav), "commitment": out.losses["commitment"]}
        if distiller is not None:
            losses.update(distiller(wav, out, batch))
        total = losses["stft"] + losses["commitment"] + ctc_weight * losses.get("distill_ctc", 0.0)
        opt.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        if step % 50 == 0 or step == steps - 1:
            log.append((step, {k: round(v.item(), 3) for k, v in losses.items()}))
            print(f"  ctc_weight={ctc_weight} step {step}: {log[-1][1]}", flush=True)
    return codec.eval(), log


@torch.no_grad()
def measure(codec: Codec, corpus: list[dict]) -> dict:
    codes, labels = [], []
    for x in corpus:
        c = codec.encode(x["wav"][None, None], 2)[0]
        codes.append(c)
        labels.append(intervals_to_frames(x["intervals"], c.shape[-1]))
    return measure_codes(codes, labels, (0, 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--train", type=int, default=160, help="training sentences")
    parser.add_argument("--test", type=int, default=40, help="held-out sentences")
    parser.add_argument("--batch-size", type=int, default=6)
    parser.add_argument("--ctc-weight", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default=None,
                        help="measure this model (bundled name or directory) on the held-out sentences instead of "
                             "training the two small codecs")
    parser.add_argument("--init", default=None,
                        help="fine-tune both runs from this model (bundled name or directory) instead of training "
                             "the small codec from scratch (its stored weights, weight norm folded); its own numbers "
                             "before fine-tuning are printed too")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--head-lr", type=float, default=None,
                        help="learning rate of the CTC head (default: --lr); a head faster than the codec leaves "
                             "CTC's blank plateau sooner")
    parser.add_argument("--head-kernel", type=int, default=3,
                        help="context of the CTC head in codec frames (1: each semantic code alone must carry its "
                             "frame's phones)")
    parser.add_argument("--layout", choices=("shared", "concat"), default="shared",
                        help="quantizer layout of the small codec trained from scratch: shared (Mimi: both branches "
                             "read the whole latent) or concat (Voxtral: each branch its own slice)")
    parser.add_argument("--save", default=None,
                        help="write each trained codec as a release to SAVE-plain / SAVE-ctc (for a later --init)")
    parser.add_argument("--run", choices=("both", "plain", "ctc"), default="both",
                        help="train both models (default) or one, e.g. two processes side by side")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tts = EspeakTimed()
    rng = random.Random(args.seed)
    sample_rate = Codec.from_pretrained(args.model or args.init).sample_rate if args.model or args.init else 16000
    train_set = make_corpus(args.train, rng, tts, sample_rate)
    test_set = make_corpus(args.test, rng, tts, sample_rate)
    hours = sum(len(x["wav"]) for x in train_set) / sample_rate / 3600
    print(f"corpus: {args.train} training sentences ({hours * 60:.1f} min), {args.test} held out")
    results = {}
    if args.model or args.init:
        results[str(args.model or args.init)] = measure(Codec.from_pretrained(args.model or args.init), test_set)
    runs = {"plain": ("reconstruction only", 0.0), "ctc": ("+ phonetic CTC", args.ctc_weight)}
    for name, weight in [runs[k] for k in runs if args.run in ("both", k) and not args.model]:
        start = time.time()
        codec, _ = train(train_set, args.steps, weight, args.batch_size, args.seed, init=args.init, lr=args.lr,
                         head_lr=args.head_lr, layout=args.layout, head_kernel=args.head_kernel)
        results[name] = measure(codec, test_set)
        if args.save:
            codec.save_pretrained(f"{args.save}-{'ctc' if weight else 'plain'}")
        print(f"  trained in {time.time() - start:.0f} s", flush=True)
    print(f"\n{'model':<22} {'row':>3} {'PNMI':>6} {'purity':>7} {'baseline':>8} {'codes':>6}")
    for name, rows in results.items():
        for r, m in rows.items():
            print(f"{name:<22} {r:>3} {m.pnmi:>6.3f} {m.purity:>7.3f} {m.purity_baseline:>8.3f} {m.codes_used:>6}")
    n = next(iter(next(iter(results.values())).values())).num_frames
    print(f"({n} labelled frames at 12.5 Hz" + (")" if args.model else f"; {args.steps} steps, batch "
                                                                      f"{args.batch_size})"))


if __name__ == "__main__":
    main()
