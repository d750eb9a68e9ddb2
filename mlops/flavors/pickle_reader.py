"""Byte-level reading and the stack/memo of the pickle scanner's opcode emulator.

:class:`OpcodeReader` holds the buffer, position, frame, stack, metastack and memo of one
emulated ``Unpickler.load()`` and reads opcode arguments from the buffer, frame-aware.
:class:`~mlops.flavors.pickle_data_ops.DataOpcodes` and
:class:`~mlops.flavors.pickle_machine.OpcodeMachine` add the opcode semantics.
"""

from __future__ import annotations

import struct
import sys
from typing import Any

from mlops.flavors.pickle_compression import Buffer
from mlops.flavors.pickle_findings import StreamError, Truncated
from mlops.flavors.pickle_values import Obj

__all__ = ["SMALL_BYTES", "OpcodeReader"]

#: Strings and bytes longer than this are skipped, not decoded (never a name or literal).
SMALL_BYTES = 4096


class OpcodeReader:
    """Position, frame, stack and memo of one emulated load, and the readers."""

    def __init__(self, buf: Buffer, pos: int) -> None:
        self.buf = buf
        self.size = len(buf)
        self.pos = pos
        self.op_pos = pos
        self.frame_end: int | None = None
        self.stack: list[Any] = []
        self.metastack: list[list[Any]] = []
        self.memo: dict[int, Any] = {}

    # ---- reading ---------------------------------------------------------------------

    def _limit(self) -> int:
        if self.frame_end is not None:
            if self.pos < self.frame_end:
                return self.frame_end
            self.frame_end = None  # frame exhausted: reads go to the file again
        return self.size

    def take(self, n: int) -> int:
        """Consume n bytes of opcode data, returning their start offset."""
        limit = self._limit()
        start = self.pos
        if start + n > limit:
            if limit < self.size:
                raise StreamError(f"opcode at byte {self.op_pos} crosses the end of a frame")
            raise Truncated(f"truncated at byte {self.op_pos}")
        self.pos = start + n
        return start

    def raw(self, n: int) -> bytes:
        start = self.take(n)
        return bytes(self.buf[start : start + n])

    def unpack(self, fmt: struct.Struct) -> Any:
        start = self.take(fmt.size)
        return fmt.unpack(self.buf[start : start + fmt.size])[0]

    def line(self) -> bytes:
        limit = self._limit()
        idx = self.buf.find(b"\n", self.pos, limit)
        if idx < 0:
            if limit < self.size:
                raise StreamError(f"opcode at byte {self.op_pos} crosses the end of a frame")
            raise Truncated(f"truncated at byte {self.op_pos}")
        data = bytes(self.buf[self.pos : idx])
        self.pos = idx + 1
        return data

    def text(self, n: int) -> Any:
        if n > sys.maxsize:
            raise StreamError(f"string length too large at byte {self.op_pos}")
        if n > SMALL_BYTES:
            # Too long to be a name or a joblib literal: skip the decode (e.g. the
            # latin-1 array payloads of protocol 0-2 numpy pickles).
            self.take(n)
            return Obj("str")
        try:
            return self.raw(n).decode("utf-8", "surrogatepass")
        except UnicodeDecodeError as exc:
            raise StreamError(f"bad UTF-8 at byte {self.op_pos}") from exc

    def bytes_value(self, n: int) -> Any:
        if n > sys.maxsize:
            raise StreamError(f"bytes length too large at byte {self.op_pos}")
        if n <= SMALL_BYTES:
            return self.raw(n)
        self.take(n)
        return Obj("bytes")

    def long_bytes(self, n: int) -> int:
        return int.from_bytes(self.raw(n), "little", signed=True)

    # ---- stack helpers ---------------------------------------------------------------

    def push(self, value: Any) -> None:
        self.stack.append(value)

    def pop(self) -> Any:
        if not self.stack:
            raise StreamError(f"stack underflow at byte {self.op_pos}")
        return self.stack.pop()

    def top(self) -> Any:
        if not self.stack:
            raise StreamError(f"stack underflow at byte {self.op_pos}")
        return self.stack[-1]

    def pop_mark(self) -> list[Any]:
        if not self.metastack:
            raise StreamError(f"MARK expected at byte {self.op_pos}")
        items = self.stack
        self.stack = self.metastack.pop()
        return items

    def get(self, index: int) -> None:
        if index not in self.memo:
            raise StreamError(f"memo index {index} not found at byte {self.op_pos}")
        self.push(self.memo[index])

    def put(self, index: int) -> None:
        if index < 0:
            raise StreamError(f"negative memo index at byte {self.op_pos}")
        self.memo[index] = self.top()

