"""The ``.c12`` container: codes packed in ceil(log2(codebook size)) bits, so a file is the model's bitrate plus a
small header; version 1 files (uint16 codes) still decode."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from codec12 import Codec, load_audio
from codec12.cli import main
from codec12.export.container import (
    _HEAD,
    MAGIC,
    VERSION,
    bits_for,
    pack_codes,
    read_c12,
    unpack_codes,
    write_c12,
)

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT / "examples" / "hibari_en.flac"


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec.from_pretrained("c12-tiny-16k")


def test_bits_for_codebook_sizes():
    assert [bits_for(n) for n in (2, 3, 4, 21, 1000, 1024, 1025, 2048, 8192, 65536)] == \
        [1, 2, 2, 5, 10, 10, 11, 11, 13, 16]


def test_pack_round_trip_with_mixed_widths(tmp_path):
    rng = np.random.default_rng(0)
    sizes = [8192, 21, 2, 1000, 65536, 3]
    for t in (1, 7, 101):
        codes = np.stack([rng.integers(0, n, t) for n in sizes])
        bits = [bits_for(n) for n in sizes]
        body = pack_codes(codes, bits)
        assert len(body) == math.ceil(sum(bits) * t / 8)
        assert np.array_equal(unpack_codes(body, bits, t), codes)
        write_c12(tmp_path / "x.c12", codes, {"codebook_sizes": sizes})
        back, header = read_c12(tmp_path / "x.c12")
        assert np.array_equal(back, codes) and header["code_bits"] == bits
    with pytest.raises(ValueError, match=r"x.c12: codes out of range in row 1 \(codebook size 21\)"):
        write_c12(tmp_path / "x.c12", np.array([[0], [21]]), {"codebook_sizes": [4, 21]})


def test_file_is_the_bitrate_plus_the_header(codec, tmp_path):
    out = tmp_path / "a.c12"
    for k in (codec.num_codebooks, 4):
        assert main(["encode", str(CLIP), str(out), "-f", "--num-codebooks", str(k)]) == 0
        codes, header = read_c12(out)
        _, _, header_size = _HEAD.unpack(out.read_bytes()[:_HEAD.size])
        seconds = codes.shape[1] / codec.frame_rate
        bitrate = codec.frame_rate * sum(math.log2(n) for n in codec.codebook_sizes[:k])
        body = out.stat().st_size - _HEAD.size - header_size
        assert body <= bitrate * seconds / 8 + 1  # powers of two: exactly the bitrate, up to the last byte
        assert body >= bitrate * seconds / 8
        assert header_size < 600
        wav = load_audio(CLIP, codec.sample_rate)[None]
        assert np.array_equal(codes, codec.encode(wav, k)[0].numpy())


def _write_v1(path, codes: np.ndarray, header: dict) -> None:
    """A version-1 file, as codec12 0.1.0 wrote it: codes as uint16 [K, T'] row-major."""
    header = {**header, "num_codebooks": codes.shape[0], "num_frames": codes.shape[1]}
    blob = json.dumps(header, sort_keys=True).encode()
    path.write_bytes(struct.pack("<4sBI", MAGIC, 1, len(blob)) + blob + codes.astype("<u2").tobytes())


def test_version_1_files_still_decode(codec, tmp_path, capsys):
    assert VERSION == 2
    new = tmp_path / "new.c12"
    assert main(["encode", str(CLIP), str(new)]) == 0
    codes, header = read_c12(new)
    old = tmp_path / "old.c12"
    _write_v1(old, codes, {k: v for k, v in header.items() if k != "code_bits"})
    assert old.stat().st_size > new.stat().st_size + 0.6 * codes.size  # 2 bytes, not 10 bits, per code
    back, old_header = read_c12(old)
    assert np.array_equal(back, codes) and "code_bits" not in old_header
    for name in ("new", "old"):
        assert main(["decode", str(tmp_path / f"{name}.c12"), str(tmp_path / f"{name}.wav")]) == 0
    a, _ = sf.read(tmp_path / "new.wav")
    b, _ = sf.read(tmp_path / "old.wav")
    assert np.array_equal(a, b) and len(a) == header["num_samples"]


def test_unknown_version_is_refused(tmp_path):
    path = tmp_path / "v9.c12"
    path.write_bytes(_HEAD.pack(MAGIC, 9, 2) + b"{}")
    with pytest.raises(ValueError, match=r"v9.c12: .c12 version 9 is not supported \(this codec12 reads versions 1, 2"):
        read_c12(path)


def test_a_header_without_config_hash_format_holds_a_format_1_hash(codec, tmp_path, capsys):
    new = tmp_path / "new.c12"
    assert main(["encode", str(CLIP), str(new)]) == 0
    codes, header = read_c12(new)
    assert header["config_hash_format"] == 2 and header["config_hash"] == codec.config.config_hash()
    header = {k: v for k, v in header.items() if k not in ("config_hash_format", "num_codebooks", "num_frames",
                                                           "code_bits")}
    # What codec12 wrote for the bundled model before the field (tests/test_config.py, FORMAT1).
    format1 = "74e4dc92d1f5a9ef"
    cases = {"old": {"config_hash": format1}, "mislabelled": {"config_hash": format1, "config_hash_format": 2},
             "future": {"config_hash_format": 3}}
    for name, changes in cases.items():
        write_c12(tmp_path / f"{name}.c12", codes, {**header, **changes})
    capsys.readouterr()
    for name in ("new", "old"):
        assert main(["decode", str(tmp_path / f"{name}.c12"), str(tmp_path / f"{name}.wav")]) == 0
    assert np.array_equal(sf.read(tmp_path / "new.wav")[0], sf.read(tmp_path / "old.wav")[0])
    assert main(["decode", str(tmp_path / "mislabelled.c12"), str(tmp_path / "x.wav")]) == 1
    assert "which is not the model" in capsys.readouterr().err
    assert main(["decode", str(tmp_path / "future.c12"), str(tmp_path / "x.wav")]) == 1
    assert "config_hash_format 3 is not supported (this codec12 reads 1, 2)" in capsys.readouterr().err
