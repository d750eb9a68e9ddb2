"""The data opcodes of the pickle scanner's emulator: what only pushes, moves and stores values.

:class:`DataOpcodes` handles number, string and bytes literals, MARK/POP/DUP, the memo,
PROTO and FRAME, tuples, lists, dicts and sets, and the container opcodes (APPEND(S),
SETITEM(S), ADDITEMS), which may only fill the containers legitimate pickles fill
(:meth:`DataOpcodes.mutate`). It also tracks which emulated values may hold a joblib
``NumpyArrayWrapper`` (:meth:`DataOpcodes.tainted`). Byte reading and the stack/memo live
in :mod:`mlops.flavors.pickle_reader`; globals, calls, BUILD and joblib arrays in
:class:`~mlops.flavors.pickle_machine.OpcodeMachine`, which adds the dispatch table. The
``struct`` formats of opcode arguments (:data:`U1` ... :data:`F8`) are defined here.
"""

from __future__ import annotations

import codecs
import pickle
import struct
from collections.abc import Callable, Iterable
from typing import Any

from mlops.flavors.pickle_findings import Findings, StreamError, Truncated
from mlops.flavors.pickle_reader import OpcodeReader
from mlops.flavors.pickle_values import (
    LITERALS,
    Dtype,
    EDict,
    Global,
    Obj,
    Wrapper,
    kind_of,
)

__all__ = ["F8", "I4", "U1", "U2", "U4", "U8", "DataOpcodes"]

_BUNCH = "sklearn.utils._bunch.Bunch"
_DICTS = frozenset({"builtins.dict", "collections.OrderedDict", "collections.defaultdict",
                    "sklearn.utils._bunch.Bunch"})
#: Emulated objects each container opcode may fill (by the label of what built them).
_MUTABLE: dict[str, frozenset[str]] = {
    "SETITEM": _DICTS,
    "SETITEMS": _DICTS,
    "APPEND": frozenset({"builtins.list"}),
    "APPENDS": frozenset({"builtins.list"}),
    "ADDITEMS": frozenset({"set", "builtins.set"}),
}

U1 = struct.Struct("<B")
U2 = struct.Struct("<H")
I4 = struct.Struct("<i")
U4 = struct.Struct("<I")
U8 = struct.Struct("<Q")
F8 = struct.Struct(">d")


class DataOpcodes(OpcodeReader):
    """The literal, stack, memo, frame and container opcodes of one emulated load.

    ``findings`` and ``proto`` are set by :class:`~mlops.flavors.pickle_machine.OpcodeMachine`.
    """

    findings: Findings
    proto: int

    def tainted(self, value: Any) -> bool:
        """Whether value may be, or contain, a NumpyArrayWrapper (class or instance)."""
        findings = self.findings
        if not findings.wrapper_class_seen:
            return False
        todo = [value]
        seen: set[int] = set()
        while todo:
            v = todo.pop()
            if isinstance(v, LITERALS):
                continue
            if isinstance(v, Global):
                if v.is_wrapper_class:
                    return True
                continue
            if isinstance(v, Wrapper):
                return True
            if isinstance(v, Obj):
                if v.tainted:
                    return True
                continue
            if id(v) in seen:
                continue
            seen.add(id(v))
            before = len(todo)
            if isinstance(v, Dtype):
                todo.extend((v.args, v.state))
            elif isinstance(v, (tuple, list)):
                todo.extend(v)
            elif isinstance(v, EDict):
                for pair in v.pairs:
                    todo.extend(pair)
            findings.taint_budget -= 1 + len(todo) - before
            if findings.taint_budget <= 0:
                return True  # too costly to prove: assume the worst
        return False

    def mutate(self, target: Any, values: Iterable[Any], kind: str) -> None:
        """APPEND/SETITEM/ADDITEMS on something that is not an emulated list/dict.

        Only the containers legitimate pickles fill this way may be mutated: anything else
        (an ndarray, a class, a library object) would have its ``__setitem__``/``append``
        called with values from the file after it was built and checked.
        """
        if isinstance(target, Global):
            self.findings.problem(
                f"<{kind} mutates the global object {target.dotted} at byte {self.op_pos}>"
            )
        elif isinstance(target, Obj):
            if target.label not in _MUTABLE[kind]:
                self.findings.problem(
                    f"<{kind} on a {target.label} object at byte {self.op_pos}>")
            if target.label == _BUNCH and kind.startswith("SETITEM"):
                keys = list(values)[::2]
                if any(isinstance(k, str) and k.startswith("__") and k.endswith("__")
                       for k in keys):
                    self.findings.problem(f"<a Bunch with a dunder key (its attributes "
                                          f"are its items) at byte {self.op_pos}>")
            if not target.tainted and any(self.tainted(v) for v in values):
                target.tainted = True
        elif isinstance(target, (Wrapper, Dtype, EDict)):
            raise StreamError(f"{kind} on an unsupported object at byte {self.op_pos}")
        else:
            raise StreamError(f"{kind} on a {kind_of(target)} at byte {self.op_pos}")

    # ---- opcode handlers ---------------------------------------------------------------

    def op_mark(self) -> None:
        self.metastack.append(self.stack)
        self.stack = []

    def op_pop(self) -> None:
        if self.stack:
            self.stack.pop()
        else:
            self.pop_mark()

    def op_pop_mark(self) -> None:
        self.pop_mark()

    def op_dup(self) -> None:
        self.push(self.top())

    def _number(self, parse: Callable[[bytes], Any], data: bytes) -> Any:
        try:
            return parse(data)
        except (ValueError, OverflowError) as exc:
            raise StreamError(f"bad number literal at byte {self.op_pos}") from exc

    def op_float(self) -> None:
        self.push(self._number(float, self.line()))

    def op_int(self) -> None:
        data = self.line()
        if data == b"00":
            self.push(False)
        elif data == b"01":
            self.push(True)
        else:
            self.push(self._number(lambda d: int(d, 0), data))

    def op_long(self) -> None:
        data = self.line()
        if data.endswith(b"L"):
            data = data[:-1]
        self.push(self._number(lambda d: int(d, 0), data))

    def op_long4(self) -> None:
        n = self.unpack(I4)
        if n < 0:
            raise StreamError(f"negative LONG4 length at byte {self.op_pos}")
        self.push(self.long_bytes(n))

    def op_string(self) -> None:
        data = self.line()
        if len(data) >= 2 and data[0] == data[-1] and data[:1] in (b'"', b"'"):
            data = data[1:-1]
        else:
            raise StreamError(f"unquoted STRING at byte {self.op_pos}")
        try:
            value = codecs.escape_decode(data)[0]
        except ValueError as exc:
            raise StreamError(f"bad STRING escape at byte {self.op_pos}") from exc
        self.push(value.decode("latin-1"))

    def op_binstring(self) -> None:
        n = self.unpack(I4)
        if n < 0:
            raise StreamError(f"negative BINSTRING length at byte {self.op_pos}")
        self.push(self.raw(n).decode("latin-1"))

    def op_unicode(self) -> None:
        try:
            self.push(str(self.line(), "raw-unicode-escape"))
        except UnicodeDecodeError as exc:
            raise StreamError(f"bad UNICODE literal at byte {self.op_pos}") from exc

    def op_bytearray8(self) -> None:
        self.bytes_value(self.unpack(U8))
        self.push(Obj("bytearray"))

    def op_readonly_buffer(self) -> None:
        self.top()
        self.stack[-1] = Obj("buffer")

    def op_persid(self) -> None:
        self.line()
        self.findings.problem(f"<persistent id (PERSID) at byte {self.op_pos}>")
        self.push(Obj("persistent object", tainted=True))

    def op_binpersid(self) -> None:
        self.pop()
        self.findings.problem(f"<persistent id (BINPERSID) at byte {self.op_pos}>")
        self.push(Obj("persistent object", tainted=True))

    def op_proto(self) -> None:
        proto = self.unpack(U1)
        if proto > pickle.HIGHEST_PROTOCOL:
            raise StreamError(f"unsupported pickle protocol {proto} at byte {self.op_pos}")
        self.proto = proto

    def op_frame(self) -> None:
        n = self.unpack(U8)
        if self.frame_end is not None and self.pos < self.frame_end:
            raise StreamError(f"new frame before the end of the current one at byte {self.op_pos}")
        if self.pos + n > self.size:
            raise Truncated(f"frame at byte {self.op_pos} runs past the end of the data")
        self.frame_end = self.pos + n

    def op_memoize(self) -> None:
        self.memo[len(self.memo)] = self.top()

    def op_get(self) -> None:
        self.get(self._number(int, self.line()))

    def op_put(self) -> None:
        self.put(self._number(int, self.line()))

    def op_tuple_n(self, n: int) -> None:
        if len(self.stack) < n:
            raise StreamError(f"stack underflow at byte {self.op_pos}")
        items = tuple(self.stack[-n:])
        del self.stack[-n:]
        self.push(items)

    def op_dict(self) -> None:
        items = self.pop_mark()
        if len(items) % 2:
            raise StreamError(f"odd number of items for DICT at byte {self.op_pos}")
        self.push(EDict(list(zip(items[::2], items[1::2], strict=True))))

    def op_setitem(self) -> None:
        value = self.pop()
        key = self.pop()
        target = self.top()
        if isinstance(target, EDict):
            target.pairs.append((key, value))
        else:
            self.mutate(target, (key, value), "SETITEM")

    def op_setitems(self) -> None:
        items = self.pop_mark()
        if len(items) % 2:
            raise StreamError(f"odd number of items for SETITEMS at byte {self.op_pos}")
        target = self.top()
        if isinstance(target, EDict):
            target.pairs.extend(zip(items[::2], items[1::2], strict=True))
        else:
            self.mutate(target, items, "SETITEMS")

    def op_append(self) -> None:
        value = self.pop()
        target = self.top()
        if isinstance(target, list):
            target.append(value)
        else:
            self.mutate(target, (value,), "APPEND")

    def op_appends(self) -> None:
        items = self.pop_mark()
        target = self.top()
        if isinstance(target, list):
            target.extend(items)
        else:
            self.mutate(target, items, "APPENDS")

    def op_additems(self) -> None:
        items = self.pop_mark()
        target = self.top()
        if isinstance(target, (list, EDict)):
            raise StreamError(f"ADDITEMS on a list or dict at byte {self.op_pos}")
        self.mutate(target, items, "ADDITEMS")

    def op_frozenset(self) -> None:
        items = self.pop_mark()
        self.push(Obj("frozenset", tainted=self.tainted(items)))
