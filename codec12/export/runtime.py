"""Run an exported codec with onnxruntime on numpy arrays: no torch needed.

``OnnxCodec(out_dir)`` reads the directory written by ``codec12 export onnx`` and offers the same API as
:class:`codec12.Codec` (``encode``/``decode``/``encode_latents``/``decode_latents`` and a ``streaming``
context), on numpy arrays. This module imports only numpy, onnxruntime (the ``[onnx]`` extra, when an
:class:`OnnxCodec` is made) and the standard library.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from codec12._checks import Arrays, InputChecks, check_batch_size
from codec12._optional import require

if TYPE_CHECKING:
    import onnxruntime as ort

SIDECAR_NAME = "codec12_onnx.json"
# 3: the graphs' "dtype" (float32, float16, int8) and their "code_agreement" with the float32 codec; 2: the graphs'
# weights in one shared external-data file, named by the sidecar's "weights"; 1: each graph held its own weights.
# Earlier formats are read as float32 exports (onnxruntime loads every kind of graph file the same way).
SIDECAR_FORMAT_VERSION = 3
READABLE_FORMAT_VERSIONS = (1, 2, 3)
DTYPES = ("float32", "float16", "int8")
# A reduced-precision encoder is fit to tokenize with when its semantic codes (row 0) equal the float32 codec's on at
# least this share of frames, measured on at least TOKENIZE_MIN_FRAMES frames. On 20 dev clips of the bundled model
# (docs/benchmarks.md): float16 agrees on every frame on a CPU and on 0.986 with float16 arithmetic (a GPU's), int8 on
# 0.995; int8 with its convolutions quantized too, whose audio loses 0.05 PESQ-WB, on 0.56; the float32 codec hearing
# white noise at 60 dB SNR on 0.76. 0.95 passes the first two and refuses the others. Deeper rows are not held to
# it: residual levels drift further by nature (int8: 0.86 on average over all rows).
TOKENIZE_MIN_AGREEMENT = 0.95
TOKENIZE_MIN_FRAMES = 100  # 8 s of audio: one frame more or less moves the share by 1 %
_DTYPES = {"float32": np.float32, "float64": np.float64, "int64": np.int64, "bool": np.bool_}


class UnfitForTokenize(ValueError):
    """An export whose codes differ from the float32 codec's more than tokenization allows (or were never compared);
    see :attr:`OnnxCodec.unfit_reason`."""


class OnnxCodec:
    """An exported codec on onnxruntime.

    Shapes follow :class:`codec12.Codec`: audio float32 [B, C, T], codes int64 [B, K, T'] with
    T' = ceil(T / frame_size), latents float32 [B, D, T'], whatever the export's ``dtype`` (the precision of its
    weighted layers: ``float32``, ``float16`` or ``int8``; :mod:`codec12.export.precision`).

    ``providers`` are onnxruntime execution providers (default: CPU); ``num_threads`` sets intra-op threads
    (default: onnxruntime's choice). Graphs are loaded on first use.
    """

    def __init__(self, directory: str | os.PathLike, *, providers: list[str] | None = None,
                 num_threads: int | None = None) -> None:
        self._ort = require("onnxruntime", "onnx", "running an ONNX export")
        self.directory = Path(directory)
        path = self.directory / SIDECAR_NAME
        if not path.is_file():
            raise ValueError(f"{self.directory}: no {SIDECAR_NAME} here (not a codec12 ONNX export)")
        try:
            meta = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: cannot read: {e}") from e
        if not isinstance(meta, dict) or meta.get("format") != "codec12-onnx":
            raise ValueError(f"{path}: not a codec12 ONNX sidecar")
        if meta.get("format_version") not in READABLE_FORMAT_VERSIONS:
            raise ValueError(f"{path}: format_version {meta.get('format_version')} is not supported (this "
                             f"codec12 reads {', '.join(map(str, READABLE_FORMAT_VERSIONS))}); export the model "
                             f"again with this codec12 (codec12 export onnx)")
        if meta["format_version"] >= 2:
            self._check_weights(path, meta.get("weights"))
        self.dtype = str(meta.get("dtype", "float32"))
        if self.dtype not in DTYPES:
            raise ValueError(f"{path}: dtype {self.dtype!r} is not one of {', '.join(DTYPES)}")
        self.code_agreement: dict[str, Any] | None = meta.get("code_agreement")
        self.meta = meta
        self.sample_rate = int(meta["sample_rate"])
        self.channels = int(meta["channels"])
        self.frame_size = int(meta["frame_size"])
        self.frame_rate = float(meta["frame_rate"])
        self.latent_dim = int(meta["latent_dim"])
        self.codebook_sizes = tuple(int(n) for n in meta["codebook_sizes"])
        self.config_hash = str(meta["config_hash"])
        self._pad_codes = meta["pad_codes"]
        self._inputs = InputChecks(Arrays(), channels=self.channels, frame_size=self.frame_size,
                                   latent_dim=self.latent_dim, codebook_sizes=self.codebook_sizes,
                                   sample_rate=self.sample_rate)
        self._providers = providers or ["CPUExecutionProvider"]
        self._options = self._ort.SessionOptions()
        if num_threads is not None:
            self._options.intra_op_num_threads = int(num_threads)
        self._sessions: dict[str, ort.InferenceSession] = {}
        self._stream_batch: int | None = None
        self._states: dict[str, dict[str, np.ndarray]] = {}

    def _check_weights(self, sidecar: Path, weights: Any) -> None:
        """The shared weights file the sidecar names is here, whole (onnxruntime's own error would come later, and
        name neither file)."""
        if not isinstance(weights, dict) or not isinstance(weights.get("file"), str) \
                or Path(weights["file"]).name != weights["file"] or not isinstance(weights.get("bytes"), int):
            raise ValueError(f"{sidecar}: 'weights' must name a file in this directory and its size")
        file = self.directory / weights["file"]
        if not file.is_file():
            raise ValueError(f"{file}: missing (the graphs' weights, named in {SIDECAR_NAME})")
        if file.stat().st_size != weights["bytes"]:
            raise ValueError(f"{file}: {file.stat().st_size} bytes, but {SIDECAR_NAME} says {weights['bytes']}: "
                             f"the file is cut short or from another export")

    @property
    def num_codebooks(self) -> int:
        return len(self.codebook_sizes)

    # ---- fitness for tokenization
    @property
    def unfit_reason(self) -> str | None:
        """Why this export's codes should not go into a tokenized dataset, or None when they may.

        float32 exports give the PyTorch codec's codes (the tests hold them to it) and are fit unless a measured
        agreement says otherwise. A float16 or int8 export is fit when its ``code_agreement`` (measured at export
        on ``check_audio``) shows row 0 (the semantic codes) equal to the float32 codec's on at least
        TOKENIZE_MIN_AGREEMENT of at least TOKENIZE_MIN_FRAMES frames."""
        agreement = self.code_agreement
        if agreement is None:
            if self.dtype == "float32":
                return None
            return (f"its {self.dtype} encoder's codes were not compared with the float32 codec's at export "
                    f"(codec12 export onnx --check-audio)")
        try:
            frames, row0 = int(agreement["frames"]), float(agreement["rows"][0])
        except (KeyError, IndexError, TypeError, ValueError):
            return f"its code_agreement record is malformed: {agreement!r}"
        if frames < TOKENIZE_MIN_FRAMES:
            return (f"its {self.dtype} encoder's codes were compared with the float32 codec's on {frames} frames only "
                    f"(at least {TOKENIZE_MIN_FRAMES}, {TOKENIZE_MIN_FRAMES / self.frame_rate:g} s, are needed)")
        if row0 < TOKENIZE_MIN_AGREEMENT:
            return (f"its {self.dtype} encoder's semantic codes (row 0) equal the float32 codec's on {row0:.1%} of "
                    f"{frames} frames, below the {TOKENIZE_MIN_AGREEMENT:.0%} required")
        return None

    @property
    def fit_for_tokenize(self) -> bool:
        """Whether this export may tokenize a dataset (:attr:`unfit_reason` is None)."""
        return self.unfit_reason is None

    def check_fit_for_tokenize(self) -> None:
        """Raise :class:`UnfitForTokenize` (a ValueError naming the export and the reason) unless
        :attr:`fit_for_tokenize`. Tokenizers call this before the first file; a user who accepts the codes
        anyway skips the call."""
        reason = self.unfit_reason
        if reason is not None:
            raise UnfitForTokenize(f"{self.directory}: not fit to tokenize with: {reason}; use a float32 export, "
                                   f"or export again with --check-audio on speech")

    def session(self, name: str) -> ort.InferenceSession:
        """The onnxruntime session of graph ``name`` (``encoder``, ``decoder_step``, ...), loaded once."""
        if name not in self._sessions:
            graph = self.meta["graphs"].get(name)
            if graph is None:
                raise ValueError(f"{self.directory}: the export has no {name!r} graph")
            file = self.directory / graph["file"]
            if not file.is_file():
                raise ValueError(f"{file}: missing (listed in {SIDECAR_NAME})")
            self._sessions[name] = self._ort.InferenceSession(str(file), self._options, providers=self._providers)
        return self._sessions[name]

    # ---- input validation (codec12._checks, shared with Codec), then the graphs' dtypes
    def _check_audio(self, wav: Any) -> np.ndarray:
        self._inputs.check_audio(wav, stream_batch=self._stream_batch)
        return np.ascontiguousarray(wav, dtype=np.float32)

    def _check_codes(self, codes: Any) -> np.ndarray:
        self._inputs.check_codes(codes, stream_batch=self._stream_batch)
        b, k, t = codes.shape
        codes = codes.astype(np.int64)
        if k < self.num_codebooks:  # the graphs take all rows: missing ones get their no-op value
            fill = np.asarray(self._pad_codes[k:], dtype=np.int64)[None, :, None]
            codes = np.concatenate([codes, np.broadcast_to(fill, (b, self.num_codebooks - k, t))], axis=1)
        return np.ascontiguousarray(codes)

    def _check_latents(self, z: Any) -> np.ndarray:
        self._inputs.check_latents(z, stream_batch=self._stream_batch)
        return np.ascontiguousarray(z, dtype=np.float32)

    def _check_num_codebooks(self, k: Any) -> int:
        return self.num_codebooks if k is None else self._inputs.check_num_codebooks(k)

    # ---- running graphs
    def _run(self, name: str, x: np.ndarray) -> list[np.ndarray]:
        """Run an offline graph, or its step graph (carrying the state) while streaming."""
        if name not in self.meta["graphs"]:
            raise ValueError(f"{self.directory}: the export has no {name!r} graph (a decode-only model has no "
                             f"encoder)")
        if self._stream_batch is None:
            return self.session(name).run(None, {self.meta["graphs"][name]["inputs"][0]["name"]: x})
        step = f"{name}_step"
        graph = self.meta["graphs"][step]
        # The decoder graphs share one decoder-side state, as the PyTorch modules do.
        side = "encoder" if name == "encoder" else "decoder"
        states = self._states[side]
        feed = {graph["inputs"][0]["name"]: x}
        feed.update({s["input"]: states[s["name"]] for s in graph["states"]})
        result = self.session(step).run(None, feed)
        n_out = len(graph["outputs"]) - len(graph["states"])
        for s, value in zip(graph["states"], result[n_out:]):
            states[s["name"]] = value
        return result[:n_out]

    def _initial_state(self, step: str, batch_size: int) -> dict[str, np.ndarray]:
        out = {}
        for s in self.meta["graphs"][step]["states"]:
            shape = [batch_size if d == "batch" else int(d) for d in s["shape"]]
            dtype = _DTYPES[s["dtype"]]
            out[s["name"]] = np.ones(shape, dtype) if s["init"] == "ones" else np.zeros(shape, dtype)
        return out

    # ---- public API (mirrors codec12.Codec)
    def encode(self, wav: np.ndarray, num_codebooks: int | None = None) -> np.ndarray:
        """Audio [B, C, T] -> codes int64 [B, K, ceil(T / frame_size)] (K = num_codebooks or all)."""
        k = self._check_num_codebooks(num_codebooks)
        return self._run("encoder", self._check_audio(wav))[0][:, :k]

    def encode_latents(self, wav: np.ndarray) -> np.ndarray:
        """Audio [B, C, T] -> latents float32 [B, D, ceil(T / frame_size)]."""
        return self._run("encoder", self._check_audio(wav))[1]

    def encode_with_latents(self, wav: np.ndarray, num_codebooks: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Audio [B, C, T] -> (codes int64 [B, K, T'], latents float32 [B, D, T']) from one run of the encoder."""
        k = self._check_num_codebooks(num_codebooks)
        codes, latents = self._run("encoder", self._check_audio(wav))
        return codes[:, :k], latents

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Codes [B, K', T'] (K' <= K: semantic + first K'-1 acoustic rows) -> audio [B, C, T' * frame_size]."""
        return self._run("decoder", self._check_codes(codes))[0]

    def decode_latents(self, latents: np.ndarray) -> np.ndarray:
        """Latents [B, D, T'] -> audio [B, C, T' * frame_size] (the unquantized path)."""
        return self._run("decoder_latents", self._check_latents(latents))[0]

    @contextmanager
    def streaming(self, batch_size: int = 1) -> Iterator[None]:
        """Stream whole frames: inside the block every call carries state, and concatenated chunk results equal
        the offline result."""
        check_batch_size(batch_size)
        if self._stream_batch is not None:
            raise RuntimeError("already streaming: nested streaming() blocks are not supported")
        self._states = {side: self._initial_state(f"{side}_step", batch_size) for side in ("encoder", "decoder")
                        if f"{side}_step" in self.meta["graphs"]}  # a decode-only export has no encoder graphs
        self._stream_batch = batch_size
        try:
            yield
        finally:
            self._stream_batch = None
            self._states = {}

    def __repr__(self) -> str:
        return (f"OnnxCodec({str(self.directory)!r}, model={self.meta.get('model')!r}, dtype={self.dtype!r}, "
                f"sample_rate={self.sample_rate}, codebooks={self.num_codebooks})")
