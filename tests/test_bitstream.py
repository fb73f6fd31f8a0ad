"""The .lic container: older and newer format versions are refused in one line."""

from __future__ import annotations

import struct
import zlib

import pytest

from liclab import LiclabError
from liclab.bitstream import FORMAT_VERSION, Bitstream, pack, unpack

STREAM = Bitstream("MeanScaleHyperprior", bytes(range(8)), (512, 768), (8, 12), [b"y" * 300, b"z"])


def with_version(data: bytes, version: int) -> bytes:
    body = data[:4] + bytes([version]) + data[5:-4]
    return body + struct.pack(">I", zlib.crc32(body))


def test_the_retired_version_is_refused_with_a_reason():
    with pytest.raises(LiclabError, match=r"^a.lic: format version 1 \(scale-table .*re-encode"):
        unpack(with_version(pack(STREAM), 1), "a.lic")


def test_a_newer_version_is_refused():
    newer = with_version(pack(STREAM), FORMAT_VERSION + 1)
    with pytest.raises(LiclabError, match=f"^a.lic: format version {FORMAT_VERSION + 1}, "):
        unpack(newer, "a.lic")


def test_bitstream_roundtrip_and_corruption():
    bs = Bitstream(
        "ScaleHyperprior", b"12345678", (512, 768), (8, 12), [b"abc", b"", b"\x00" * 300]
    )
    data = pack(bs)
    assert unpack(data) == bs
    with pytest.raises(LiclabError, match="truncated|CRC"):
        unpack(data[:-5], "f.lic")
    flipped = bytearray(data)
    flipped[20] ^= 1
    with pytest.raises(LiclabError, match="f.lic"):
        unpack(bytes(flipped), "f.lic")
    with pytest.raises(LiclabError, match="not a liclab bitstream"):
        unpack(b"\x89PNG....", "f.lic")
