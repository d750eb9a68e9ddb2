"""The opcode emulator of the pickle scanner.

:class:`OpcodeMachine` walks one pickle (up to and including ``STOP``) the way
``pickle.Unpickler.load`` would, with a stack, memo, frames and literal values, but
imports, calls and hashes nothing: globals are only recorded in a :class:`Findings`
and judged by its :class:`~mlops.flavors.pickle_policy.ImportPolicy`. In joblib mode it
also consumes the raw array bytes (or nested pickles) that joblib's ``NumpyUnpickler``
reads after each ``NumpyArrayWrapper``.

Bad data raises :class:`~mlops.flavors.pickle_findings.StreamError` (or its subclasses
``Truncated`` and ``UnknownOpcode``) or ``JoblibError``; :mod:`mlops.flavors.pickle_scan`
turns these into offending findings, so its public API never raises for bad data. Byte
reading and the stack/memo live in :mod:`mlops.flavors.pickle_reader`; the literal, stack,
memo and container opcodes in :mod:`mlops.flavors.pickle_data_ops`.

Beyond recording globals, the emulator checks what the restricted unpickler checks again
at load time: the literal arguments of guarded functions
(:func:`mlops.flavors.pickle_guards.static_problem`), the flags and field offsets of
every numpy dtype it sees BUILT, that container opcodes only fill containers, the
object-graph rules on each literal BUILD state (:mod:`mlops.flavors.static_state`; dunder
keys of a ``Bunch`` filled by SETITEMS too), that REDUCE/OBJ only call imported globals
(never an object the file built, such as ``partial(numpy.ndarray, shape)``), that no numpy
array class is constructed directly (REDUCE/INST/OBJ/NEWOBJ/NEWOBJ_EX of
:data:`~mlops.flavors.allowlist.ARRAY_CLASSES`: uninitialised or aliased memory) and that
one bytes/bytearray from the file backs at most one array (``_frombuffer``'s buffer, the
raw data BUILT into a ``_reconstruct`` or ``_mareconstruct`` array).
"""

from __future__ import annotations

import copyreg
import pickle
from collections.abc import Callable
from typing import Any

from mlops.flavors.allowlist import GUARDED, array_class, canonical, no_call
from mlops.flavors.pickle_compression import Buffer
from mlops.flavors.pickle_data_ops import F8, I4, U1, U2, U4, U8, DataOpcodes
from mlops.flavors.pickle_findings import (
    Findings,
    JoblibError,
    StreamError,
    Truncated,
    UnknownOpcode,
)
from mlops.flavors.pickle_guards import FROMBUFFER, sized_problem, static_problem
from mlops.flavors.pickle_policy import effective_global
from mlops.flavors.pickle_values import (
    LITERALS,
    MISSING,
    Dtype,
    EDict,
    Global,
    Obj,
    Wrapper,
    kind_of,
)
from mlops.flavors.static_state import build_problems

__all__ = ["OpcodeMachine"]

_NDARRAY = Global("numpy", "ndarray")
#: What builds an array a BUILD may then give raw data (``ndarray.__setstate__``).
_ARRAY_ORIGINS = frozenset({("numpy._core.multiarray", "_reconstruct"),
                            ("numpy.ma.core", "_mareconstruct"), FROMBUFFER,
                            ("numpy", "ndarray")})
#: Labels of emulated values that may be an array's memory (large bytes, BYTEARRAY8, the
#: bytes ``_codecs.encode`` makes of protocol < 3 raw data).
_BUFFER_LABELS = frozenset({"bytes", "bytearray", "_codecs.encode"})

_WRAPPER_ATTRS = frozenset(
    ["subclass", "shape", "order", "dtype", "allow_mmap", "numpy_array_alignment_bytes"]
)


# --------------------------------------------------------------------------------------
# the opcode emulator


def _op(code: bytes) -> int:
    return code[0]


class OpcodeMachine(DataOpcodes):
    """Emulates one ``Unpickler.load()`` from ``pos`` up to and including STOP.

    ``joblib_mode`` adds joblib's ``NumpyUnpickler`` behaviour: after the BUILD of a
    NumpyArrayWrapper the raw array bytes (or a nested pickle) are consumed directly
    from the file.
    """

    def __init__(self, buf: Buffer, pos: int, findings: Findings, joblib_mode: bool) -> None:
        super().__init__(buf, pos)
        self.findings = findings
        self.joblib_mode = joblib_mode
        self.proto = 0
        self.ops: dict[int, Callable[[], None]] = {
            _op(pickle.MARK): self.op_mark,
            _op(pickle.POP): self.op_pop,
            _op(pickle.POP_MARK): self.op_pop_mark,
            _op(pickle.DUP): self.op_dup,
            _op(pickle.FLOAT): self.op_float,
            _op(pickle.INT): self.op_int,
            _op(pickle.BININT): lambda: self.push(self.unpack(I4)),
            _op(pickle.BININT1): lambda: self.push(self.unpack(U1)),
            _op(pickle.LONG): self.op_long,
            _op(pickle.BININT2): lambda: self.push(self.unpack(U2)),
            _op(pickle.NONE): lambda: self.push(None),
            _op(pickle.PERSID): self.op_persid,
            _op(pickle.BINPERSID): self.op_binpersid,
            _op(pickle.REDUCE): self.op_reduce,
            _op(pickle.STRING): self.op_string,
            _op(pickle.BINSTRING): self.op_binstring,
            _op(pickle.SHORT_BINSTRING): lambda: self.push(
                self.raw(self.unpack(U1)).decode("latin-1")
            ),
            _op(pickle.UNICODE): self.op_unicode,
            _op(pickle.BINUNICODE): lambda: self.push(self.text(self.unpack(U4))),
            _op(pickle.APPEND): self.op_append,
            _op(pickle.BUILD): self.op_build,
            _op(pickle.GLOBAL): self.op_global,
            _op(pickle.DICT): self.op_dict,
            _op(pickle.EMPTY_DICT): lambda: self.push(EDict()),
            _op(pickle.APPENDS): self.op_appends,
            _op(pickle.GET): self.op_get,
            _op(pickle.BINGET): lambda: self.get(self.unpack(U1)),
            _op(pickle.INST): self.op_inst,
            _op(pickle.LONG_BINGET): lambda: self.get(self.unpack(U4)),
            _op(pickle.LIST): lambda: self.push(self.pop_mark()),
            _op(pickle.EMPTY_LIST): lambda: self.push([]),
            _op(pickle.OBJ): self.op_obj,
            _op(pickle.PUT): self.op_put,
            _op(pickle.BINPUT): lambda: self.put(self.unpack(U1)),
            _op(pickle.LONG_BINPUT): lambda: self.put(self.unpack(U4)),
            _op(pickle.SETITEM): self.op_setitem,
            _op(pickle.TUPLE): lambda: self.push(tuple(self.pop_mark())),
            _op(pickle.EMPTY_TUPLE): lambda: self.push(()),
            _op(pickle.SETITEMS): self.op_setitems,
            _op(pickle.BINFLOAT): lambda: self.push(self.unpack(F8)),
            _op(pickle.PROTO): self.op_proto,
            _op(pickle.NEWOBJ): self.op_newobj,
            _op(pickle.EXT1): lambda: self.ext(self.unpack(U1)),
            _op(pickle.EXT2): lambda: self.ext(self.unpack(U2)),
            _op(pickle.EXT4): lambda: self.ext(self.unpack(I4)),
            _op(pickle.TUPLE1): lambda: self.op_tuple_n(1),
            _op(pickle.TUPLE2): lambda: self.op_tuple_n(2),
            _op(pickle.TUPLE3): lambda: self.op_tuple_n(3),
            _op(pickle.NEWTRUE): lambda: self.push(True),
            _op(pickle.NEWFALSE): lambda: self.push(False),
            _op(pickle.LONG1): lambda: self.push(self.long_bytes(self.unpack(U1))),
            _op(pickle.LONG4): self.op_long4,
            _op(pickle.BINBYTES): lambda: self.push(self.bytes_value(self.unpack(U4))),
            _op(pickle.SHORT_BINBYTES): lambda: self.push(self.bytes_value(self.unpack(U1))),
            _op(pickle.SHORT_BINUNICODE): lambda: self.push(self.text(self.unpack(U1))),
            _op(pickle.BINUNICODE8): lambda: self.push(self.text(self.unpack(U8))),
            _op(pickle.BINBYTES8): lambda: self.push(self.bytes_value(self.unpack(U8))),
            _op(pickle.EMPTY_SET): lambda: self.push(Obj("set")),
            _op(pickle.ADDITEMS): self.op_additems,
            _op(pickle.FROZENSET): self.op_frozenset,
            _op(pickle.NEWOBJ_EX): self.op_newobj_ex,
            _op(pickle.STACK_GLOBAL): self.op_stack_global,
            _op(pickle.MEMOIZE): self.op_memoize,
            _op(pickle.FRAME): self.op_frame,
            _op(pickle.BYTEARRAY8): self.op_bytearray8,
            _op(pickle.NEXT_BUFFER): lambda: self.push(Obj("out-of-band buffer")),
            _op(pickle.READONLY_BUFFER): self.op_readonly_buffer,
        }

    # ---- main loop -------------------------------------------------------------------

    def run(self) -> int:
        """Emulate until STOP; return the offset just after it."""
        ops = self.ops
        stop = _op(pickle.STOP)
        while True:
            self.op_pos = self.pos
            start = self.take(1)
            code = self.buf[start]
            if code == stop:
                if self.frame_end is not None and self.pos < self.frame_end:
                    raise StreamError(f"data after STOP inside a frame at byte {start}")
                return self.pos
            handler = ops.get(code)
            if handler is None:
                raise UnknownOpcode(f"unknown opcode 0x{code:02x} at byte {start}")
            handler()

    # ---- globals -----------------------------------------------------------------------

    def record(self, module: str, name: str) -> Global:
        module, name = effective_global(module, name, self.proto)
        return self.findings.add_global(module, name)

    def _name_line(self) -> str:
        try:
            return self.line().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise StreamError(f"bad UTF-8 in global name at byte {self.op_pos}") from exc

    def op_global(self) -> None:
        module = self._name_line()
        name = self._name_line()
        self.push(self.record(module, name))

    def op_stack_global(self) -> None:
        name = self.pop()
        module = self.pop()
        if isinstance(module, str) and isinstance(name, str):
            self.push(self.record(module, name))
        else:
            self.findings.problem(f"<unresolvable STACK_GLOBAL at byte {self.op_pos}>")
            self.push(Obj("unresolved global", tainted=True))

    def ext(self, code: int) -> None:
        registry: dict[int, tuple[str, str]] = getattr(copyreg, "_inverted_registry", {})
        key = registry.get(code)  # a dict lookup only; nothing is imported
        if key is None:
            self.findings.problem(
                f"<unregistered copyreg extension code {code} at byte {self.op_pos}>"
            )
            self.push(Obj("extension", tainted=True))
        else:
            self.push(self.record(key[0], key[1]))

    # ---- calls -------------------------------------------------------------------------

    def claim(self, value: Any) -> None:
        """``value`` becomes an array's memory: it may not back a second one."""
        buffer = (isinstance(value, bytes) and len(value) > 1) or (
            isinstance(value, Obj) and value.label in _BUFFER_LABELS)
        if buffer and not self.findings.claim_array_memory(value):
            self.findings.problem(f"<one buffer backs two numpy arrays (they share memory) "
                                  f"at byte {self.op_pos}>")

    def no_array(self, cls: Any, how: str) -> None:
        """numpy's array classes are never constructed by the file itself."""
        if isinstance(cls, Global) and array_class(cls.module, cls.name):
            self.findings.problem(
                f"<{cls.dotted} is constructed directly ({how}: uninitialised memory, or "
                f"another array's memory with buffer=) at byte {self.op_pos}>")

    def call(self, func: Any, args: Any) -> Any:
        """Emulated ``func(*args)``."""
        if isinstance(func, Global):
            if self.findings.policy.kind(func.module, func.name) == GUARDED:
                problem = static_problem(func.module, func.name, args)
                if problem:
                    self.findings.problem(
                        f"<{func.dotted} called with {problem} at byte {self.op_pos}>")
            sized = sized_problem(func.module, func.name, args)
            if sized:
                self.findings.problem(f"<{func.dotted} called with {sized} at byte "
                                      f"{self.op_pos}>")
            if no_call(func.module, func.name):
                self.findings.problem(
                    f"<{func.dotted} is called (its constructor reads files) at byte "
                    f"{self.op_pos}>")
            self.no_array(func, "called")
            if canonical(func.module, func.name) == FROMBUFFER and isinstance(args, tuple) \
                    and args:
                self.claim(args[0])
            if func.is_wrapper_class:
                return self._wrapper_init(args)
            if func.is_dtype:
                return Dtype(args)
            key = (func.module, func.name)
            if key == ("_codecs", "encode") and static_problem(*key, args) is None \
                    and isinstance(args[0], str):
                return self._latin1(args[0])
            if key == ("copyreg", "__newobj__") and isinstance(args, tuple) and args:
                return self.new(args[0], args[1:])
            if key == ("copyreg", "__newobj_ex__") and isinstance(args, tuple) and args:
                return self.new(args[0], args[1:])
            if key == ("copyreg", "_reconstructor") and isinstance(args, tuple) and len(args) == 3:
                return self.new(args[0], ())
            return Obj(func.dotted, tainted=self.tainted(args), origin=func)
        # Only imported globals are called: an object the file built may call what it holds
        # (partial(numpy.ndarray, shape)(), a scorer calling an estimator at load time).
        self.findings.problem(f"<a call of an object the file built, not of an imported "
                              f"global, at byte {self.op_pos}>")
        return Obj("call result", tainted=self.tainted(func) or self.tainted(args))

    def _latin1(self, text: str) -> Any:
        """``_codecs.encode(text, "latin1")`` (protocol < 3 bytes, e.g. array raw data): a
        literal, so that one raw data object used twice is recognised (CPython shares the
        one-byte bytes objects, as it does at load time)."""
        try:
            return text.encode("latin-1")
        except UnicodeEncodeError:
            return Obj("_codecs.encode")

    def new(self, cls: Any, args: Any) -> Any:
        """Emulated ``cls.__new__(cls, *args)`` (no ``__init__``)."""
        self.no_array(cls, "cls.__new__")
        if isinstance(cls, Global):
            sized = sized_problem(cls.module, cls.name, args)
            if sized:
                self.findings.problem(f"<{cls.dotted}.__new__ called with {sized} at byte "
                                      f"{self.op_pos}>")
        if isinstance(cls, Global) and cls.is_wrapper_class:
            return Wrapper()
        if isinstance(cls, Global) and cls.is_dtype:
            return Dtype(args)
        label = cls.dotted if isinstance(cls, Global) else "new object"
        return Obj(label, tainted=self.tainted(cls) or self.tainted(args),
                   origin=cls if isinstance(cls, Global) else None)

    def _wrapper_init(self, args: Any) -> Any:
        """NumpyArrayWrapper(subclass, shape, order, dtype, allow_mmap, alignment)."""
        if not isinstance(args, (tuple, list)) or not 4 <= len(args) <= 6:
            return Obj("NumpyArrayWrapper call", tainted=True)
        names = ["subclass", "shape", "order", "dtype", "allow_mmap"]
        attrs: dict[str, Any] = {"allow_mmap": False, "numpy_array_alignment_bytes": 16}
        attrs.update(zip([*names, "numpy_array_alignment_bytes"], args, strict=False))
        return Wrapper(attrs)

    def instantiate(self, klass: Any, args: list[Any]) -> Any:
        """What INST and OBJ do (``pickle._Unpickler._instantiate``)."""
        if args:
            return self.call(klass, tuple(args))
        if isinstance(klass, Global) and klass.is_wrapper_class:
            return Wrapper()
        return self.call(klass, ())

    def op_reduce(self) -> None:
        args = self.pop()
        func = self.top()
        self.stack[-1] = self.call(func, args)

    def op_newobj(self) -> None:
        args = self.pop()
        cls = self.pop()
        self.push(self.new(cls, args))

    def op_newobj_ex(self) -> None:
        kwargs = self.pop()
        args = self.pop()
        cls = self.pop()
        self.push(self.new(cls, (args, kwargs)))

    def op_inst(self) -> None:
        module = self._name_line()
        name = self._name_line()
        klass = self.record(module, name)
        self.push(self.instantiate(klass, self.pop_mark()))

    def op_obj(self) -> None:
        items = self.pop_mark()
        if not items:
            raise StreamError(f"OBJ without a class at byte {self.op_pos}")
        self.push(self.instantiate(items[0], items[1:]))

    # ---- BUILD and joblib arrays ---------------------------------------------------------

    def op_build(self) -> None:
        state = self.pop()
        inst = self.top()
        if isinstance(inst, Wrapper):
            self._build_wrapper(inst, state)
            if self.joblib_mode:
                self._read_joblib_array(inst)
                self.stack[-1] = Obj("numpy.ndarray", origin=_NDARRAY)
        elif isinstance(inst, Dtype):
            inst.state = state
            if inst.layout() is None:
                self.findings.problem(
                    f"<numpy dtype with inconsistent or unsupported state at byte {self.op_pos}>")
        elif isinstance(inst, Global):
            self.findings.problem(
                f"<BUILD sets attributes on the global object {inst.dotted} at byte {self.op_pos}>"
            )
        elif isinstance(inst, Obj):
            if self.joblib_mode and inst.tainted:
                raise JoblibError(self.op_pos, "BUILD on an object that may be a NumpyArrayWrapper")
            if not inst.tainted and self.tainted(state):
                inst.tainted = True
            if inst.origin is not None:
                for problem in build_problems(inst.origin, state):
                    self.findings.problem(f"<{problem} at byte {self.op_pos}>")
                self._claim_raw_data(inst.origin, state)
        else:
            raise StreamError(f"BUILD on a {kind_of(inst)} at byte {self.op_pos}")

    def _claim_raw_data(self, origin: Global, state: Any) -> None:
        """The raw data ``__setstate__`` builds an array over: the last item of an
        ndarray's ``(version, shape, dtype, fortran, raw)`` (version optional), raw data
        and mask of a masked array's 7-tuple (see ``restricted_unpickler._raw_data``)."""
        if not isinstance(state, tuple) or canonical(origin.module, origin.name) \
                not in _ARRAY_ORIGINS:
            return
        if len(state) in (4, 5):
            self.claim(state[-1])
        elif len(state) == 7:
            self.claim(state[4])
            self.claim(state[5])

    def _build_wrapper(self, wrapper: Wrapper, state: Any) -> None:
        """Emulate ``pickle._Unpickler.load_build`` on a NumpyArrayWrapper."""
        if "__setstate__" in wrapper.attrs:
            raise JoblibError(self.op_pos, "NumpyArrayWrapper with its own __setstate__")
        slotstate: Any = None
        if isinstance(state, tuple) and len(state) == 2:
            state, slotstate = state
        for part in (state, slotstate):
            if isinstance(part, EDict):
                for key, value in part.pairs:
                    if type(key) is not str or key not in _WRAPPER_ATTRS:
                        raise JoblibError(self.op_pos, "unexpected NumpyArrayWrapper attribute")
                    wrapper.attrs[key] = value
            elif isinstance(part, (*LITERALS, tuple, list)) and not part:
                continue  # falsy state: nothing to set
            else:
                raise JoblibError(self.op_pos, "NumpyArrayWrapper state is not a literal dict")

    def _read_joblib_array(self, wrapper: Wrapper) -> None:
        """Consume what ``NumpyArrayWrapper.read_array`` reads straight from the file."""
        at = self.op_pos
        if self.frame_end is not None:
            if self.pos != self.frame_end:
                raise JoblibError(at, "array data inside a pickle frame")
            self.frame_end = None
        attrs = wrapper.attrs
        shape = attrs.get("shape", MISSING)
        dtype = attrs.get("dtype", MISSING)
        align = attrs.get("numpy_array_alignment_bytes")
        if not isinstance(shape, (tuple, list)) or not all(
            isinstance(d, int) and 0 <= d < 2**63 for d in shape
        ):
            raise JoblibError(at, "shape is not a tuple of non-negative integers")
        if not isinstance(dtype, Dtype):
            raise JoblibError(at, "dtype is not a literal numpy.dtype")
        layout = dtype.layout()
        if layout is None:
            raise JoblibError(at, "dtype cannot be determined exactly")
        itemsize, hasobject = layout
        count = 1
        for dim in shape:
            count *= int(dim)
        self.findings.arrays_read += 1
        if hasobject:
            # joblib runs a plain Unpickler on the file for object arrays.
            nested = OpcodeMachine(self.buf, self.pos, self.findings, joblib_mode=False)
            self.pos = nested.run()
            return
        if align is not None:
            if not isinstance(align, int):
                raise JoblibError(at, "alignment is not a literal integer")
            if self.pos >= self.size:
                raise Truncated(f"joblib padding missing after byte {at}")
            self.pos += 1 + self.buf[self.pos]
        nbytes = count * itemsize
        if self.pos + nbytes > self.size:
            raise Truncated(f"joblib array data after byte {at} runs past the end of the data")
        self.pos += nbytes
