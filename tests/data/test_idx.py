"""IDX reader/writer: parity with hand-packed bytes, and every kind of damage is refused."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from archlab.data.idx import CorruptDataError, parse_idx, read_idx, write_idx


def _packed(code: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    # The header as the IDX spec describes it, built independently of archlab's writer.
    return struct.pack(f">HBB{len(dims)}I", 0, code, len(dims), *dims) + payload


def test_parse_matches_hand_packed_bytes():
    data = _packed(0x08, (2, 3), bytes(range(6)))
    np.testing.assert_array_equal(parse_idx(data), np.arange(6, dtype=np.uint8).reshape(2, 3))
    # int16 big-endian: 0x0102 = 258, 0xFFFE = -2
    x = parse_idx(_packed(0x0B, (2,), b"\x01\x02\xff\xfe"))
    assert x.dtype == np.int16 and x.dtype.isnative and x.tolist() == [258, -2]
    f = parse_idx(_packed(0x0D, (1,), struct.pack(">f", 1.5)))
    assert f.dtype == np.float32 and f.tolist() == [1.5]


def test_writer_produces_spec_bytes(tmp_path):
    a = np.arange(6, dtype=np.uint8).reshape(2, 3)
    assert write_idx(tmp_path / "a", a).read_bytes() == _packed(0x08, (2, 3), a.tobytes())
    b = np.array([258, -2], dtype=np.int16)
    assert write_idx(tmp_path / "b", b).read_bytes() == _packed(0x0B, (2,), b"\x01\x02\xff\xfe")
    gz = write_idx(tmp_path / "a.gz", a)
    assert gzip.decompress(gz.read_bytes()) == _packed(0x08, (2, 3), a.tobytes())


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("name", ["x-idx3-ubyte", "x-idx3-ubyte.gz"])
def test_roundtrip(tmp_path, dtype, name):
    a = (np.random.default_rng(0).standard_normal((3, 4, 5)) * 50).astype(dtype)
    out = read_idx(write_idx(tmp_path / name, a))
    assert out.dtype == a.dtype and out.flags.writeable
    np.testing.assert_array_equal(out, a)


def test_writer_rejects_unsupported_dtype(tmp_path):
    with pytest.raises(ValueError, match="int64"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))


def _damaged(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(CorruptDataError) as info:
        read_idx(path)
    assert str(path) in str(info.value)
    return str(info.value)


def test_truncated_payload(tmp_path):
    full = _packed(0x08, (4, 5), bytes(20))
    msg = _damaged(tmp_path, "trunc", full[:-3])
    assert "truncated" in msg and "expected 32 bytes, got 29" in msg


def test_trailing_bytes(tmp_path):
    msg = _damaged(tmp_path, "trail", _packed(0x08, (4, 5), bytes(20)) + b"\0")
    assert "trailing" in msg and "expected 32 bytes, got 33" in msg


def test_truncated_gz_payload(tmp_path):
    # A complete gzip stream whose IDX content is one byte short: caught by the size check.
    msg = _damaged(tmp_path, "t.gz", gzip.compress(_packed(0x08, (2, 2), bytes(3))))
    assert "expected 16 bytes, got 15" in msg  # 12-byte header + 4 values


def test_bad_magic_and_type_and_header(tmp_path):
    assert "magic" in _damaged(tmp_path, "m", b"\x01\x00\x08\x01" + struct.pack(">I", 0))
    assert "type code 0x07" in _damaged(tmp_path, "t", _packed(0x07, (1,), b"\0"))
    assert "0 dimensions" in _damaged(tmp_path, "z", b"\x00\x00\x08\x00")
    assert "header" in _damaged(tmp_path, "h", b"\x00\x00\x08\x03" + bytes(4))
    assert "too short" in _damaged(tmp_path, "s", b"\x00\x00")


def test_corrupt_and_truncated_gzip(tmp_path):
    good = gzip.compress(_packed(0x08, (50, 50), np.random.default_rng(0).bytes(2500)))
    _damaged(tmp_path, "cut.gz", good[: len(good) // 2])
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF
    msg = _damaged(tmp_path, "flip.gz", bytes(flipped))
    assert "gzip" in msg
