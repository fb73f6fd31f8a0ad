"""The ``.lic`` file: a self-describing container for a learned codec's latent strings.

Layout (all integers unsigned LEB128 varints unless sized)::

    magic        4 bytes   b"\\x89LIC"
    version      1 byte    FORMAT_VERSION
    model id     varint length + ASCII (the model class name)
    model hash   8 bytes   SHA-256 prefix of the weights and the model config
    height, width          the original image size
    latent shape           count, then each dimension
    strings                count, then each length, then the bytes of each, in order
    crc32        4 bytes   big-endian CRC-32 of everything before it

Every byte of this file counts in the bpp that ``liclab-eval`` reports (the header's size:
``scripts/bench_overhead.py``).

The latent strings are the entropy models' own (:mod:`liclab.entropy`), so the version also
names their coding. Version 2: y with per-element CDFs and constriction's range coder
(:mod:`liclab.entropy.coder`), the universal-quantization dither of
:func:`liclab.quantizers.dither`. Version 1 (scale-table rANS, a dither seeded by CPython's
``hash``) is refused with a message: its files must be re-encoded.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from liclab import LiclabError

MAGIC = b"\x89LIC"
FORMAT_VERSION = 2
_RETIRED = {1: "scale-table coding of y and a dither seeded by CPython's hash"}


@dataclass(frozen=True)
class Bitstream:
    model_id: str
    model_hash: bytes
    size: tuple[int, int]
    shape: tuple[int, ...]
    strings: list[bytes]


def _varint(n: int) -> bytes:
    if n < 0:
        raise ValueError(f"varint of a negative number: {n}")
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


class _Reader:
    def __init__(self, data: bytes, name: str):
        self.data, self.pos, self.name = data, 0, name

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise LiclabError(f"{self.name}: truncated file")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def varint(self) -> int:
        n = shift = 0
        while True:
            byte = self.take(1)[0]
            n |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return n
            shift += 7
            if shift > 63:
                raise LiclabError(f"{self.name}: corrupt header (bad integer)")


def pack(bs: Bitstream) -> bytes:
    """Serialise a :class:`Bitstream` to bytes."""
    model_id = bs.model_id.encode("ascii")
    if len(bs.model_hash) != 8:
        raise ValueError("model_hash must be 8 bytes")
    parts = [MAGIC, bytes([FORMAT_VERSION]), _varint(len(model_id)), model_id, bs.model_hash]
    parts += [_varint(bs.size[0]), _varint(bs.size[1]), _varint(len(bs.shape))]
    parts += [_varint(d) for d in bs.shape]
    parts += [_varint(len(bs.strings))] + [_varint(len(s)) for s in bs.strings] + bs.strings
    body = b"".join(parts)
    return body + struct.pack(">I", zlib.crc32(body))


def unpack(data: bytes, name: str = "bitstream") -> Bitstream:
    """Parse bytes made by :func:`pack`; any corruption raises :class:`LiclabError`."""
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise LiclabError(f"{name}: not a liclab bitstream (bad magic number)")
    if len(data) < len(MAGIC) + 5:
        raise LiclabError(f"{name}: truncated file")
    body, (crc,) = data[:-4], struct.unpack(">I", data[-4:])
    if zlib.crc32(body) != crc:
        raise LiclabError(f"{name}: corrupt or truncated file (CRC mismatch)")
    r = _Reader(body, name)
    r.take(len(MAGIC))
    version = r.take(1)[0]
    if version in _RETIRED:
        raise LiclabError(
            f"{name}: format version {version} ({_RETIRED[version]}) is no longer read; "
            f"this liclab reads version {FORMAT_VERSION}: re-encode the image"
        )
    if version != FORMAT_VERSION:
        raise LiclabError(f"{name}: format version {version}, this liclab reads {FORMAT_VERSION}")
    model_id = r.take(r.varint()).decode("ascii", errors="replace")
    model_hash = r.take(8)
    size = (r.varint(), r.varint())
    shape = tuple(r.varint() for _ in range(r.varint()))
    lengths = [r.varint() for _ in range(r.varint())]
    strings = [r.take(n) for n in lengths]
    if r.pos != len(body):
        raise LiclabError(f"{name}: corrupt file ({len(body) - r.pos} unexpected trailing bytes)")
    return Bitstream(model_id, model_hash, size, shape, strings)
