"""Tiny builders for hand-written pickle opcode streams (tests only)."""

from __future__ import annotations

import pickle
import struct

__all__ = [
    "b",
    "call",
    "g",
    "i",
    "lst",
    "proto",
    "sg",
    "tup",
    "u",
]


def u(text: str) -> bytes:
    """Push a str (SHORT_BINUNICODE or BINUNICODE)."""
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) < 256:
        return pickle.SHORT_BINUNICODE + bytes([len(raw)]) + raw
    return pickle.BINUNICODE + struct.pack("<I", len(raw)) + raw


def b(data: bytes) -> bytes:
    """Push bytes (BINBYTES)."""
    return pickle.BINBYTES + struct.pack("<I", len(data)) + data


def i(value: int) -> bytes:
    """Push an int (BININT or LONG1)."""
    if -(2**31) <= value < 2**31:
        return pickle.BININT + struct.pack("<i", value)
    raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return pickle.LONG1 + bytes([len(raw)]) + raw


def sg(module: str, name: str) -> bytes:
    """Push a global with STACK_GLOBAL (protocol >= 4)."""
    return u(module) + u(name) + pickle.STACK_GLOBAL


def g(module: str, name: str) -> bytes:
    """Push a global with the protocol 0 GLOBAL opcode."""
    return pickle.GLOBAL + module.encode() + b"\n" + name.encode() + b"\n"


def tup(*items: bytes) -> bytes:
    return pickle.MARK + b"".join(items) + pickle.TUPLE


def lst(*items: bytes) -> bytes:
    return pickle.MARK + b"".join(items) + pickle.LIST


def call(func: bytes, *args: bytes) -> bytes:
    """``func(*args)`` with REDUCE."""
    return func + tup(*args) + pickle.REDUCE


def proto(body: bytes, version: int = 4) -> bytes:
    return pickle.PROTO + bytes([version]) + body + pickle.STOP
