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

from codec12._optional import require

if TYPE_CHECKING:
    import onnxruntime as ort

SIDECAR_NAME = "codec12_onnx.json"
SIDECAR_FORMAT_VERSION = 1
_DTYPES = {"float32": np.float32, "float64": np.float64, "int64": np.int64, "bool": np.bool_}


class OnnxCodec:
    """An exported codec on onnxruntime.

    Shapes follow :class:`codec12.Codec`: audio float32 [B, C, T], codes int64 [B, K, T'] with
    T' = ceil(T / frame_size), latents float32 [B, D, T'].

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
        if meta.get("format_version") != SIDECAR_FORMAT_VERSION:
            raise ValueError(f"{path}: format_version {meta.get('format_version')} is not supported (this "
                             f"codec12 reads {SIDECAR_FORMAT_VERSION})")
        self.meta = meta
        self.sample_rate = int(meta["sample_rate"])
        self.channels = int(meta["channels"])
        self.frame_size = int(meta["frame_size"])
        self.frame_rate = float(meta["frame_rate"])
        self.latent_dim = int(meta["latent_dim"])
        self.codebook_sizes = tuple(int(n) for n in meta["codebook_sizes"])
        self.config_hash = str(meta["config_hash"])
        self._pad_codes = meta["pad_codes"]
        self._providers = providers or ["CPUExecutionProvider"]
        self._options = self._ort.SessionOptions()
        if num_threads is not None:
            self._options.intra_op_num_threads = int(num_threads)
        self._sessions: dict[str, ort.InferenceSession] = {}
        self._stream_batch: int | None = None
        self._states: dict[str, dict[str, np.ndarray]] = {}

    @property
    def num_codebooks(self) -> int:
        return len(self.codebook_sizes)

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

    # ---- input validation
    def _check_audio(self, wav: Any) -> np.ndarray:
        if not isinstance(wav, np.ndarray):
            raise ValueError(f"audio must be a numpy array [B, C, T], got {type(wav).__name__}")
        if wav.ndim != 3:
            raise ValueError(f"audio must have shape [B, C, T], got rank {wav.ndim} {wav.shape}"
                             + (" (add a batch dimension: wav[None])" if wav.ndim == 2 else ""))
        if not np.issubdtype(wav.dtype, np.floating):
            raise ValueError(f"audio must be floating point (float32), got {wav.dtype}")
        if wav.shape[1] != self.channels:
            raise ValueError(f"audio has {wav.shape[1]} channels but the model expects {self.channels}")
        if wav.shape[0] == 0 or wav.shape[-1] == 0:
            raise ValueError(f"empty audio: shape {wav.shape}")
        wav = np.ascontiguousarray(wav, dtype=np.float32)
        if not np.isfinite(wav).all():
            raise ValueError("audio contains NaN or Inf samples")
        self._check_stream(wav.shape[0], wav.shape[-1], self.frame_size, "audio samples")
        return wav

    def _check_codes(self, codes: Any) -> np.ndarray:
        if not isinstance(codes, np.ndarray):
            raise ValueError(f"codes must be a numpy array [B, K, T'], got {type(codes).__name__}")
        if codes.ndim != 3:
            raise ValueError(f"codes must have shape [B, K, T'], got {codes.shape}")
        if not np.issubdtype(codes.dtype, np.integer):
            raise ValueError(f"codes must be integers, got {codes.dtype}")
        b, k, t = codes.shape
        if not 1 <= k <= self.num_codebooks:
            raise ValueError(f"codes have {k} codebooks; this model takes 1 to {self.num_codebooks}")
        if b == 0 or t == 0:
            raise ValueError(f"empty codes: shape {codes.shape}")
        codes = codes.astype(np.int64)
        sizes = np.asarray(self.codebook_sizes[:k], dtype=np.int64)[None, :, None]
        bad = (codes < 0) | (codes >= sizes)
        if bad.any():
            row = int(np.nonzero(bad.any(axis=(0, 2)))[0][0])
            raise ValueError(f"codes out of range in row {row}: values must be in [0, {self.codebook_sizes[row]})")
        self._check_stream(b, t, 1, "frames")
        if k < self.num_codebooks:  # the graphs take all rows: missing ones get their no-op value
            fill = np.asarray(self._pad_codes[k:], dtype=np.int64)[None, :, None]
            codes = np.concatenate([codes, np.broadcast_to(fill, (b, self.num_codebooks - k, t))], axis=1)
        return np.ascontiguousarray(codes)

    def _check_latents(self, z: Any) -> np.ndarray:
        if not isinstance(z, np.ndarray) or z.ndim != 3 or z.shape[1] != self.latent_dim:
            shape = z.shape if isinstance(z, np.ndarray) else type(z).__name__
            raise ValueError(f"latents must be a numpy array of shape [B, {self.latent_dim}, T'], got {shape}")
        if not np.issubdtype(z.dtype, np.floating):
            raise ValueError(f"latents must be floating point (float32), got {z.dtype}")
        if z.shape[0] == 0 or z.shape[-1] == 0:
            raise ValueError(f"empty latents: shape {z.shape}")
        z = np.ascontiguousarray(z, dtype=np.float32)
        if not np.isfinite(z).all():
            raise ValueError("latents contain NaN or Inf")
        self._check_stream(z.shape[0], z.shape[-1], 1, "frames")
        return z

    def _check_num_codebooks(self, k: Any) -> int:
        if k is None:
            return self.num_codebooks
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= self.num_codebooks:
            raise ValueError(f"num_codebooks must be an int in [1, {self.num_codebooks}], got {k!r}")
        return int(k)

    def _check_stream(self, batch: int, length: int, multiple: int, unit: str) -> None:
        if self._stream_batch is None:
            return
        if batch != self._stream_batch:
            raise ValueError(f"streaming was opened with batch_size={self._stream_batch}, got a batch of {batch}")
        if length % multiple:
            raise ValueError(f"while streaming, chunks must be whole frames: got {length} {unit}, not a multiple "
                             f"of {multiple} (frame_size={self.frame_size}); buffer until a whole frame is ready")

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
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
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
        return (f"OnnxCodec({str(self.directory)!r}, model={self.meta.get('model')!r}, "
                f"sample_rate={self.sample_rate}, codebooks={self.num_codebooks})")
