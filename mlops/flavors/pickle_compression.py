"""Compressed joblib files for the pickle scanner: detection and capped decompression.

Handles zlib, gzip, bz2, lzma, xz (stdlib) and lz4 (only when the ``lz4`` package is
installed) streams, and the legacy joblib ``ZF`` zlib container. Nothing is unpickled
here; the decompressed bytes go back to the scanner.
"""

from __future__ import annotations

import bz2
import lzma
import mmap
import zlib
from typing import Any

__all__ = [
    "MAX_DECOMPRESSED_BYTES",
    "ZFILE",
    "Buffer",
    "DecompressError",
    "decompress",
    "detect_compression",
]

#: Largest decompressed stream the scanner accepts (zip-bomb guard); bigger is offending.
MAX_DECOMPRESSED_BYTES = 4 * 1024**3

#: What the scanner reads: bytes in memory or a read-only memory-mapped file.
Buffer = bytes | mmap.mmap

#: :func:`detect_compression`'s name for the legacy joblib ``ZF`` container.
ZFILE = "zfile"

_ZFILE_PREFIX = b"ZF"
_ZFILE_HEADER = len(_ZFILE_PREFIX) + len(hex(2**64))
_COMPRESSORS: tuple[tuple[str, bytes], ...] = (
    ("zlib", b"\x78"),
    ("gzip", b"\x1f\x8b"),
    ("bz2", b"BZ"),
    ("lzma", b"\x5d\x00"),
    ("xz", b"\xfd\x37\x7a\x58\x5a"),
    ("lz4", b"\x04\x22\x4d\x18"),
)


class DecompressError(Exception):
    """Compressed data that cannot be (fully and safely) decompressed."""


def _decompressor(kind: str) -> Any:
    """A fresh incremental decompressor for one stream of the given kind."""
    if kind == "zlib":
        return zlib.decompressobj(zlib.MAX_WBITS)
    if kind == "gzip":
        return zlib.decompressobj(zlib.MAX_WBITS | 16)
    if kind == "bz2":
        return bz2.BZ2Decompressor()
    if kind in ("lzma", "xz"):
        return lzma.LZMADecompressor(lzma.FORMAT_AUTO)
    try:
        import lz4.frame
    except ImportError as exc:
        raise DecompressError("lz4-compressed file: install the 'lz4' package to scan it") from exc
    return lz4.frame.LZ4FrameDecompressor()


def _decompress_stream(kind: str, data: Buffer, limit: int) -> bytes:
    """Decompress one complete stream, refusing more than ``limit`` bytes of output."""
    dec = _decompressor(kind)
    try:
        out = dec.decompress(data, limit + 1)
    except Exception as exc:  # zlib.error, OSError, EOFError, lz4 RuntimeError, ...
        raise DecompressError(f"cannot decompress {kind} data: {exc}") from exc
    if len(out) > limit:
        raise DecompressError(f"decompressed size exceeds {limit} bytes")
    if not dec.eof:
        raise DecompressError(f"{kind} data is truncated")
    if dec.unused_data:
        raise DecompressError(f"trailing data after the {kind} stream")
    return bytes(out)


def _decompress_zfile(data: Buffer, limit: int) -> bytes:
    """joblib < 0.9.3 container: b'ZF' + hex length + zlib data."""
    try:
        length = int(bytes(data[len(_ZFILE_PREFIX) : _ZFILE_HEADER]), 16)
    except ValueError as exc:
        raise DecompressError("bad legacy joblib ZF header") from exc
    if length > limit:
        raise DecompressError(f"decompressed size exceeds {limit} bytes")
    start = _ZFILE_HEADER + (1 if data[_ZFILE_HEADER : _ZFILE_HEADER + 1] == b" " else 0)
    dec = zlib.decompressobj(zlib.MAX_WBITS)
    try:
        out = dec.decompress(data[start:], length + 1)
    except zlib.error as exc:
        raise DecompressError(f"cannot decompress legacy joblib ZF data: {exc}") from exc
    if len(out) != length or not dec.eof:
        raise DecompressError("legacy joblib ZF data does not match its declared length")
    return out


def detect_compression(data: Buffer) -> str | None:
    """Name the compression of a joblib file from its first bytes (None: uncompressed).

    The name is :data:`ZFILE` for the legacy container, else "zlib", "gzip", "bz2",
    "lzma", "xz" or "lz4".
    """
    head = bytes(data[:8])
    if head.startswith(_ZFILE_PREFIX):
        return ZFILE
    for kind, prefix in _COMPRESSORS:
        if head.startswith(prefix):
            return kind
    return None


def decompress(kind: str, data: Buffer, limit: int) -> bytes:
    """Decompress data of a :func:`detect_compression` kind, at most ``limit`` bytes.

    Raises :class:`DecompressError` for anything that cannot be fully and safely
    decompressed.
    """
    if kind == ZFILE:
        return _decompress_zfile(data, limit)
    return _decompress_stream(kind, data, limit)
