"""The codec: encoder (SEANet + transformer + ×2 downsample) -> split quantizer -> mirrored decoder."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import save_file
from torch import nn

from codec12 import hub
from codec12._checks import Arrays, InputChecks
from codec12._fs import atomic_write
from codec12._tensors import load_tensors_into, tensor_shapes
from codec12.config import CodecConfig, bitrate
from codec12.decoder import ISTFTDecoder, SEANetDecoder, SynthesisOutput
from codec12.encoder import SEANetEncoder
from codec12.nn.conv import StreamingConv1d, StreamingConvTranspose1d, fold_norm
from codec12.nn.streaming import streaming
from codec12.nn.transformer import StreamingTransformer
from codec12.quantizers import SplitQuantizer
from codec12.voxtral.model import voxtral_parts
from codec12.weights import state_problems

if TYPE_CHECKING:
    from huggingface_hub import CommitInfo

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
ASSETS_DIR = Path(__file__).parent / "assets"


@dataclass
class CodecOutput:
    """Result of :meth:`Codec.forward` (training).

    audio: [B, C, T' * frame_size] reconstruction.
    codes: int64 [B, K', T'] codes used (K' < K when acoustic levels were dropped).
    latents: [B, D, T'] pre-quantization latents.
    quantized: [B, D, T'] what the decoder received.
    semantic: [B, D_s, T'] semantic-branch output, for distillation losses.
    losses: quantizer losses by name (``commitment``), unweighted scalars.
    synthesis: what the inverse-STFT decoder made the audio from (its spectra, and a harmonic decoder's F0 and
        voicing), for the losses on them; None for the SEANet decoder.
    """

    audio: torch.Tensor
    codes: torch.Tensor
    latents: torch.Tensor
    quantized: torch.Tensor
    semantic: torch.Tensor
    losses: dict[str, torch.Tensor]
    synthesis: SynthesisOutput | None = None


@dataclass
class EncodedBatch:
    """Result of :meth:`Codec.encode_batch`: clips of different lengths encoded in one call.

    codes: int64 [B, K, max(lengths)], zeros after each item's own frames.
    lengths: int64 [B], the frames of each item, ``ceil(T_i / frame_size)``; ``codes[i, :, :lengths[i]]`` equals
        ``codec.encode(clip_i[None])[0]``.
    """

    codes: torch.Tensor
    lengths: torch.Tensor

    def unbatched(self) -> list[torch.Tensor]:
        """Each item's codes, [K, lengths[i]]."""
        return [codes[:, :n] for codes, n in zip(self.codes, self.lengths.tolist())]


def _sizes_text(sizes: tuple[int, ...]) -> str:
    """``(8192, 21, 21, ...)`` -> ``"8192 + 36x21"``: runs of equal codebook sizes."""
    runs: list[list[int]] = []
    for n in sizes:
        if runs and runs[-1][0] == n:
            runs[-1][1] += 1
        else:
            runs.append([n, 1])
    return " + ".join(f"{count}x{n}" if count > 1 else str(n) for n, count in runs)


class _TorchArrays(Arrays):
    """How the input checks read torch tensors; inputs must be on the model's device."""

    name = "torch.Tensor"

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def is_array(self, x) -> bool:
        return isinstance(x, torch.Tensor)

    def kind(self, x: torch.Tensor) -> str:
        if x.is_floating_point():
            return "f"
        return "c" if x.is_complex() else "b" if x.dtype == torch.bool else "i"

    def dtype(self, x: torch.Tensor) -> str:
        return str(x.dtype)

    def check_place(self, x: torch.Tensor, what: str) -> None:
        device = next(self.model.parameters()).device
        if x.device != device:
            raise ValueError(f"{what} on {x.device}, but the model is on {device}: move the input "
                             f"(x.to(codec.device)) or the model (codec.to(...)) first")

    def all_finite(self, x: torch.Tensor) -> bool:
        return bool(torch.isfinite(x).all())

    def row_ranges(self, codes: torch.Tensor) -> list[tuple[int, int]]:
        return list(zip(codes.amin(dim=(0, 2)).tolist(), codes.amax(dim=(0, 2)).tolist()))


def _transformer(config: CodecConfig) -> StreamingTransformer:
    t = config.transformer
    return StreamingTransformer(t.d_model, t.num_heads, t.num_layers, t.dim_feedforward, t.context, t.max_period,
                                t.layer_scale, t.norm_eps)


class Codec(nn.Module):
    """A 12.5 Hz neural speech codec. Build it with :meth:`from_config` or :meth:`from_pretrained`."""

    # The parts of each side, in the order they run; each side's streaming state lives in its parts.
    encoder_parts = ("encoder", "encoder_transformer", "downsample")
    decoder_parts = ("upsample", "decoder_transformer", "decoder")

    def __init__(self, config: CodecConfig, *, encoder: nn.Module, encoder_transformer: nn.Module,
                 downsample: nn.Module, quantizer: SplitQuantizer, upsample: nn.Module,
                 decoder_transformer: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.encoder = encoder
        self.encoder_transformer = encoder_transformer
        self.downsample = downsample
        self.quantizer = quantizer
        self.upsample = upsample
        self.decoder_transformer = decoder_transformer
        self.decoder = decoder
        self._stream_batch: int | None = None
        self._inputs = InputChecks(_TorchArrays(self), channels=config.channels, frame_size=config.frame_size,
                                   latent_dim=config.latent_dim, codebook_sizes=config.codebook_sizes,
                                   sample_rate=config.sample_rate)

    @classmethod
    def from_config(cls, config: CodecConfig) -> "Codec":
        if not isinstance(config, CodecConfig):
            raise ValueError(f"expected a CodecConfig, got {type(config).__name__}")
        if config.voxtral is not None:
            return cls(config, **voxtral_parts(config))
        dim, stride = config.seanet.dimension, config.downsample_stride
        return cls(
            config,
            encoder=SEANetEncoder(config.seanet),
            encoder_transformer=_transformer(config),
            downsample=StreamingConv1d(dim, config.latent_dim, 2 * stride, stride=stride, bias=False,
                                       pad_mode="replicate"),
            quantizer=SplitQuantizer(config.quantizer, config.latent_dim),
            upsample=StreamingConvTranspose1d(config.latent_dim, dim, 2 * stride, stride=stride, bias=False,
                                              groups=dim if config.depthwise_upsample else 1),
            decoder_transformer=_transformer(config),
            decoder=SEANetDecoder(config.seanet) if config.istft is None else
            ISTFTDecoder(config.istft, dim, config.channels, config.seanet.hop_length // config.istft.hop_length,
                         config.sample_rate),
        )

    # ---- properties (derived from the config)
    def __repr__(self) -> str:
        params = sum(p.numel() for p in self.parameters())
        return (f"Codec({self.config.name or 'unnamed'}: {self.sample_rate} Hz, {self.frame_rate:g} frames/s, "
                f"{self.num_codebooks} codebooks ({_sizes_text(self.codebook_sizes)}), {self.bitrate / 1000:.2f} kbps, "
                f"{params / 1e6:.2f} M parameters)")

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def channels(self) -> int:
        return self.config.channels

    @property
    def frame_rate(self) -> float:
        return self.config.frame_rate

    @property
    def frame_size(self) -> int:
        return self.config.frame_size

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        return self.config.codebook_sizes

    @property
    def num_codebooks(self) -> int:
        return self.config.num_codebooks

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def device(self) -> torch.device:
        """Where the weights are (inputs must be there too)."""
        return next(self.parameters()).device

    @property
    def bitrate(self) -> float:
        """Bits per second with all codebooks; see :meth:`bitrate_at` for fewer."""
        return self.config.bitrate

    def bitrate_at(self, num_codebooks: int) -> float:
        self._inputs.check_num_codebooks(num_codebooks)
        return bitrate(self.codebook_sizes[:num_codebooks], self.frame_rate)

    # ---- input validation (codec12._checks, shared with the ONNX runtime)
    def _check_num_codebooks(self, k: int | None) -> int:
        """``num_codebooks`` argument -> K' (None: all)."""
        return self.num_codebooks if k is None else self._inputs.check_num_codebooks(k)

    def _check_audio(self, wav: torch.Tensor, sample_rate: int | None) -> torch.Tensor:
        self._inputs.check_audio(wav, sample_rate=sample_rate, stream_batch=self._stream_batch)
        return wav.to(self._dtype())

    def _check_codes(self, codes: torch.Tensor) -> torch.Tensor:
        self._inputs.check_codes(codes, stream_batch=self._stream_batch)
        return codes.long()

    def _check_latents(self, z: torch.Tensor) -> torch.Tensor:
        self._inputs.check_latents(z, stream_batch=self._stream_batch)
        return z.to(self._dtype())

    def _dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def _checked_audio(self, wav: torch.Tensor, cause: str) -> torch.Tensor:
        if not torch.isfinite(wav).all():
            raise ValueError(f"decoding gave non-finite audio (NaN or Inf): {cause}")
        return wav

    # ---- the two sides of the model, without input checks
    # encode, decode and their variants check their input, then run one of these; the ONNX export traces them
    # (offline, and inside ``streaming()`` for the step graphs), so eager inference and the exported graphs run
    # one code. They use no Python control flow on tensor values, which tracing would freeze.
    def encode_latents_side(self, wav: torch.Tensor) -> torch.Tensor:
        """Audio [B, C, T] -> latents [B, D, ceil(T / frame_size)]."""
        # A partial last frame is zero-padded to a whole frame first: the result then equals streaming the
        # same audio with its last chunk zero-padded, and a file padded further in a batch (causality).
        wav = torch.nn.functional.pad(wav, (0, -wav.shape[-1] % self.frame_size))
        return self.downsample(self.encoder_transformer(self.encoder(wav)))

    def encode_side(self, wav: torch.Tensor, num_codebooks: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Audio [B, C, T] -> (codes int64 [B, K', T'], latents [B, D, T']), T' = ceil(T / frame_size), K' =
        num_codebooks or all."""
        latents = self.encode_latents_side(wav)
        return self.quantizer.encode(latents, num_codebooks), latents

    def decode_side(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes int64 [B, K', T'] -> audio [B, C, T' * frame_size]. An RVQ row may also hold its codebook size,
        which adds nothing (how a graph that takes every row decodes fewer; see ``ResidualVQ.decode``)."""
        return self._synthesize(self.quantizer.decode(codes).to(self._dtype()))

    def decode_latents_side(self, latents: torch.Tensor) -> torch.Tensor:
        """Continuous latents [B, D, T'] -> audio [B, C, T' * frame_size] (the unquantized path)."""
        return self._synthesize(self.quantizer.continuous(latents))

    def _synthesize(self, quantized: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.decoder_transformer(self.upsample(quantized)))

    # ---- public API
    # Encoding runs with autocast off: the codes (nearest codebook entries, FSQ rounding) and everything before
    # them are computed in the weights' dtype, so an autocast context (bf16 on a GPU) cannot change a dataset's
    # codes. Decoding may run under autocast.
    @torch.no_grad()
    def encode(self, wav: torch.Tensor, num_codebooks: int | None = None, *,
               sample_rate: int | None = None) -> torch.Tensor:
        """Audio [B, C, T] -> codes int64 [B, K, ceil(T / frame_size)] (K = num_codebooks or all)."""
        k = self._check_num_codebooks(num_codebooks)
        wav = self._check_audio(wav, sample_rate)
        with torch.autocast(wav.device.type, enabled=False):
            return self.encode_side(wav, k)[0]

    @torch.no_grad()
    def encode_batch(self, clips: Sequence[torch.Tensor], num_codebooks: int | None = None) -> EncodedBatch:
        """Clips of different lengths, each [C, T_i], in one batch -> :class:`EncodedBatch` (codes [B, K, T'max]
        and each item's frame count). The model is causal, so the zeros that pad a clip to the longest one cannot
        change its own frames: each item's codes equal those of encoding it alone."""
        if self._stream_batch is not None:
            raise ValueError("encode_batch pads clips to one length; while streaming, call encode on whole frames")
        if isinstance(clips, torch.Tensor) or not len(clips):
            raise ValueError("encode_batch takes a non-empty list of [C, T] clips (for one [B, C, T] tensor, "
                             "call encode)")
        for i, clip in enumerate(clips):
            if not isinstance(clip, torch.Tensor) or clip.dim() != 2 or clip.shape[-1] == 0:
                shape = tuple(clip.shape) if isinstance(clip, torch.Tensor) else type(clip).__name__
                raise ValueError(f"encode_batch: clip {i} must be a non-empty [C, T] tensor, got {shape}")
        longest = max(clip.shape[-1] for clip in clips)
        wav = torch.stack([nn.functional.pad(clip, (0, longest - clip.shape[-1])) for clip in clips])
        codes = self.encode(wav, num_codebooks)
        lengths = torch.tensor([-(-clip.shape[-1] // self.frame_size) for clip in clips], device=codes.device)
        codes = codes.masked_fill(torch.arange(codes.shape[-1], device=codes.device) >= lengths[:, None, None], 0)
        return EncodedBatch(codes=codes, lengths=lengths)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [B, K', T'] (K' <= K: semantic + first K'-1 acoustic rows) -> audio [B, C, T' * frame_size]."""
        return self._checked_audio(self.decode_side(self._check_codes(codes)), "the model's weights may be damaged")

    @torch.no_grad()
    def encode_latents(self, wav: torch.Tensor, *, sample_rate: int | None = None) -> torch.Tensor:
        """Audio [B, C, T] -> continuous pre-quantization latents [B, D, ceil(T / frame_size)]."""
        wav = self._check_audio(wav, sample_rate)
        with torch.autocast(wav.device.type, enabled=False):
            return self.encode_latents_side(wav)

    @torch.no_grad()
    def encode_with_latents(self, wav: torch.Tensor, num_codebooks: int | None = None, *,
                            sample_rate: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Audio [B, C, T] -> (codes int64 [B, K, T'], latents [B, D, T']) from one pass of the encoder: the codes
        equal :meth:`encode`'s and the latents :meth:`encode_latents`'."""
        k = self._check_num_codebooks(num_codebooks)
        wav = self._check_audio(wav, sample_rate)
        with torch.autocast(wav.device.type, enabled=False):
            return self.encode_side(wav, k)

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Continuous latents [B, D, T'] -> audio [B, C, T' * frame_size] (the unquantized path). Latents that
        decode to NaN or Inf (far outside the training range) raise ValueError."""
        return self._checked_audio(self.decode_latents_side(self._check_latents(latents)),
                                   "the latents lie far outside what the model was trained on")

    def forward(self, wav: torch.Tensor, *, generator: torch.Generator | None = None,
                f0: torch.Tensor | None = None) -> CodecOutput:
        """Training forward: audio [B, C, T] with T a multiple of frame_size -> :class:`CodecOutput`.

        Quantizer randomness (level dropout, unquantized rate, FSQ dither) draws from ``generator`` when given,
        so it can be replayed and kept in sync across processes. ``f0``: a harmonic decoder's F0 per STFT frame
        [B, C, T / istft.hop_length] Hz to synthesise with instead of its own (0: its own), as in training with
        a pitch teacher's F0.
        """
        wav = self._check_audio(wav, None)
        latents = self.encode_latents_side(wav)
        q = self.quantizer(latents, generator=generator)
        features = self.decoder_transformer(self.upsample(q.quantized))
        if f0 is not None and not (isinstance(self.decoder, ISTFTDecoder) and self.config.istft.harmonic):
            raise ValueError("f0: only a harmonic inverse-STFT decoder synthesises with an F0")
        synthesis = self.decoder.synthesize(features, f0) if isinstance(self.decoder, ISTFTDecoder) else None
        audio = synthesis.audio if synthesis is not None else self.decoder(features)
        return CodecOutput(audio=audio, codes=q.codes, latents=latents, quantized=q.quantized,
                           semantic=q.semantic, losses=q.losses, synthesis=synthesis)

    @contextmanager
    def streaming(self, batch_size: int = 1) -> Iterator[None]:
        """Stream whole frames: inside the block, ``encode``/``decode`` (and the ``_latents`` variants) keep
        state between calls, and concatenated chunk results equal the offline result."""
        with streaming(self, batch_size):
            self._stream_batch = batch_size
            try:
                yield
            finally:
                self._stream_batch = None

    # ---- checkpoints
    def weights_hash(self) -> str:
        """A short hash of the weights. With ``config.config_hash()`` it identifies the model that made a set
        of codes: one architecture with other weights gives other codes."""
        h = hashlib.blake2b(digest_size=8)
        for name, tensor in sorted(self.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        return h.hexdigest()

    def folded(self) -> "Codec":
        """A new float32 CPU codec in eval mode with this one's weights and weight norm folded; ``self`` is
        untouched. (Not ``copy.deepcopy`` + fold: a deep copy shares torch's generated parametrization classes
        with the original, and folding the copy would remove the original's ``weight``.)"""
        model = Codec.from_config(self.config)
        model.load_state_dict({k: v.detach().cpu().float() for k, v in self.state_dict().items()})
        return model.eval().fold_weight_norm()

    def fold_weight_norm(self) -> "Codec":
        """Fold weight norm into plain weights in place; the config says ``norm='none'`` afterwards. Use
        :meth:`folded` for a folded copy."""
        for module in self.modules():
            if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
                fold_norm(module)
        if self.config.norm != "none":
            self.config = self.config.with_norm("none")
        return self

    def save_pretrained(self, directory: str | os.PathLike, *, dtype: torch.dtype | str | None = None,
                        model_card: bool = True, license: str | None = None, repo_id: str | None = None) -> None:
        """Write ``config.json`` + ``model.safetensors`` (temporary names, then renamed), and a model card
        ``README.md`` (:func:`codec12.hub.model_card`) unless ``model_card=False`` or the directory already has a
        ``README.md``, which is kept (it may be a card written by hand; delete it for a new one).

        ``dtype`` (``torch.float16`` or ``"float16"``, ...) stores floating-point tensors in that type; loading
        casts them back to float32 (or to ``from_pretrained``'s ``dtype``). ``license``: the card's licence
        identifier (``unknown`` when None). ``repo_id``: the hub id the card's example loads from."""
        dtype = hub.as_dtype(dtype)
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().contiguous().cpu()
                   for k, v in self.state_dict().items()}
        atomic_write(directory / WEIGHTS_NAME, lambda p: save_file(tensors, str(p), metadata={"format": "pt"}))
        atomic_write(directory / CONFIG_NAME, lambda p: p.write_text(self.config.to_json() + "\n"))
        if model_card and not (directory / hub.CARD_NAME).exists():
            card = hub.model_card(self, repo_id=repo_id, license=license, dtype=dtype)
            atomic_write(directory / hub.CARD_NAME, lambda p: card.save(p))

    def push_to_hub(self, repo_id: str, *, private: bool | None = None, token: str | bool | None = None,
                    revision: str | None = None, commit_message: str = "Upload codec12 model",
                    dtype: torch.dtype | str | None = None, license: str | None = None,
                    model_card: bool = True) -> CommitInfo:
        """Upload this codec to the hub model repo ``repo_id`` (``owner/name``) in one commit: what
        :meth:`save_pretrained` writes (``dtype``, ``license``, ``model_card`` as there; the card loads from
        ``repo_id``). The repo is created if missing (``private=True``: a private one) and so is the branch
        ``revision`` (default ``main``); ``token`` defaults to the one ``hf auth login`` stored. Files already in
        the repo and not written here stay; ``model_card=False`` leaves its ``README.md`` as it is. Returns
        ``huggingface_hub``'s ``CommitInfo`` (``.commit_url``, ``.oid``)."""
        return hub.push_to_hub(self, repo_id, private=private, token=token, revision=revision,
                               commit_message=commit_message, dtype=dtype, license=license, model_card=model_card)

    @classmethod
    def from_pretrained(cls, name_or_dir: str | os.PathLike, *, device: str | torch.device = "cpu",
                        dtype: torch.dtype | str | None = None, revision: str | None = None,
                        cache_dir: str | os.PathLike | None = None, token: str | bool | None = None,
                        local_only: bool = False) -> "Codec":
        """Load a bundled model by name, a local directory (codec12 format, or another codec's layout that a module
        in :data:`FOREIGN_LOADERS` reads: transformers or moshi Mimi, the Voxtral TTS release), a moshi
        ``tokenizer-*.safetensors`` file, or a hub id ``owner/name`` (not with ``local_only``: for a name read from
        a file, which must not start a download). Bundled names and local paths come first: they never reach the
        network.

        device: where the model goes (``"cuda"``, ``"mps"``, ...). dtype: floating-point type of the weights and
        of the computation (``torch.float16``, ``torch.bfloat16`` or ``torch.float32``, or their names; default
        float32, whatever the file stores). revision, cache_dir, token: for a hub id, passed to
        ``huggingface_hub.snapshot_download`` (a branch, tag or commit; the cache directory; the access token).
        ``revision`` with a bundled name or a local path raises ValueError (it would pin nothing); ``cache_dir``
        and ``token`` are not used there.

        A codec12 directory's ``config.json`` is validated (types, ranges, sizes) and checked against the shapes
        in ``model.safetensors``'s header before the model is built, so a hostile or mismatched config allocates
        nothing; a truncated or empty weights file is named in the error."""
        dtype = hub.as_dtype(dtype)
        path = Path(name_or_dir)
        load = _foreign_loader(path)
        if load is None and not path.is_dir():
            bundled = ASSETS_DIR / str(name_or_dir)
            if bundled.is_dir():
                path = bundled
            elif local_only:
                raise ValueError(f"{name_or_dir!r} is neither a bundled model ({_bundled()}) nor a local directory "
                                 f"(models are not downloaded from a name a file gives)")
            else:
                path = _download(str(name_or_dir), revision=revision, cache_dir=cache_dir, token=token)
                revision = None
            load = _foreign_loader(path)
        if revision is not None:
            what = "a bundled model" if path.parent == ASSETS_DIR else "a local path"
            raise ValueError(f"revision={revision!r}: {str(name_or_dir)!r} is {what}; revision selects a version of "
                             f"a hub repo (owner/name)")
        if load is not None:
            return load(path).to(device=device, dtype=dtype).eval()
        config_path = path / CONFIG_NAME
        if not config_path.is_file():
            raise ValueError(f"{path}: no {CONFIG_NAME} in this directory")
        try:
            raw = json.loads(config_path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{config_path}: cannot read config: {e}") from e
        config = CodecConfig.from_dict(raw, where=str(config_path))
        weights = path / WEIGHTS_NAME
        if not weights.is_file():
            raise ValueError(f"{path}: no {WEIGHTS_NAME} in this directory")
        check_weights_fit(config, tensor_shapes(weights), f"{weights} (for {config_path})")
        codec = cls.from_config(config)
        load_tensors_into(weights, codec.state_dict())  # names and shapes checked above
        return codec.to(device=device, dtype=dtype).eval()


# Other codecs' checkpoint layouts that Codec.from_pretrained reads: the module that reads each, and its loader
# (path -> Codec). Those modules build on this one (they make codecs), so they are named here, not imported, and
# loaded when a path is checked; each also defines ``accepts(path) -> bool``: whether a file or directory is in
# its layout.
FOREIGN_LOADERS = {"codec12.convert.mimi": "mimi_from_pretrained", "codec12.convert.voxtral": "voxtral_from_pretrained"}


def check_weights_fit(config: CodecConfig, shapes: dict[str, tuple[int, ...]], where: str) -> None:
    """Check that tensors of ``shapes`` (name -> shape, e.g. a weights file's header) are exactly the weights of
    a codec of ``config``, before building it: the codec is laid out on the meta device, which allocates nothing,
    so a config that does not match its weights (or asks for an enormous model) costs no memory. Raises
    ValueError naming ``where`` and the tensors that differ."""
    own = {k: tuple(v.shape) for k, v in meta_codec(config).state_dict().items()}
    problems = state_problems(own, shapes)
    if problems:
        raise ValueError(f"{where}: the weights do not fit the config: {problems}")


def meta_codec(config: CodecConfig) -> Codec:
    """The codec of ``config`` laid out on the meta device: its modules, tensor names and shapes, and no memory."""
    with torch.device("meta"):
        return Codec.from_config(config)


def _foreign_loader(path: Path) -> Callable[[Path], Codec] | None:
    for name, loader in FOREIGN_LOADERS.items():
        module = importlib.import_module(name)
        if module.accepts(path):
            return getattr(module, loader)
    return None


def _download(repo_id: str, *, revision: str | None = None, cache_dir: str | os.PathLike | None = None,
              token: str | bool | None = None) -> Path:
    """Fetch a hub repo snapshot (:func:`codec12.hub.download`; needs network unless cached); a clear error
    otherwise."""
    if repo_id.count("/") != 1 or repo_id.startswith((".", "/")):
        raise ValueError(f"{repo_id!r} is not a directory, a bundled model ({_bundled()}) or a hub id (owner/name)")
    try:
        return hub.download(repo_id, revision=revision, cache_dir=cache_dir, token=token)
    except Exception as e:
        at = f" at revision {revision!r}" if revision is not None else ""
        raise ValueError(f"{repo_id}: could not download from the hub{at} ({type(e).__name__}: {e}); download the "
                         f"model elsewhere and pass its local directory") from e


def _bundled() -> str:
    names = sorted(p.name for p in ASSETS_DIR.iterdir() if p.is_dir()) if ASSETS_DIR.is_dir() else []
    return ", ".join(names) or "none installed"
