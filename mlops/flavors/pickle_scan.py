"""Static safety scanner for pickle and joblib model files.

The scanner never unpickles anything: no ``pickle.load``, no ``joblib.load``, no
``find_class``, no import of a module named in the file. It walks the opcode stream
with a small emulator (stack, memo, frames, literal values) and reports every global
the file would import, judged against an allow list.

Formats handled:

* plain pickle streams, protocols 0-5, several pickles concatenated;
* joblib (>= 0.10) files: each ``joblib.numpy_pickle.NumpyArrayWrapper`` is followed by
  raw array bytes (after optional alignment padding) or, for object arrays, by a nested
  pickle. The emulator follows joblib's ``NumpyUnpickler`` exactly: it knows each
  wrapper's shape and dtype at its ``BUILD``, skips exactly the raw bytes and scans the
  nested pickles. If it cannot tell the size for sure, the file is offending;
* joblib files compressed with zlib, gzip, bz2, lzma, xz (stdlib) or lz4 (only when the
  ``lz4`` package is installed), and the legacy ``ZF`` zlib container;
  decompression is capped at :data:`MAX_DECOMPRESSED_BYTES`.

A result whose ``format`` starts with ``"joblib"`` is only judged for ``joblib.load``:
the raw array bytes in such a file are not pickle opcodes, so never open it with
``pickle.load``. A ``"pickle"`` result holds for both loaders.

Every global is judged against the exact allow list (:mod:`mlops.flavors.allowlist`,
applied by :mod:`mlops.flavors.pickle_policy`); calls of guarded functions must have literal
arguments their guard accepts (:mod:`mlops.flavors.pickle_guards`); only imported globals
are called (never an object the file built, such as a ``partial``); no numpy array class is
constructed directly (uninitialised or aliased memory) and no bytes/bytearray backs two
arrays; numpy dtypes must have flags and field offsets that agree with their layout;
container opcodes may only fill plain containers; the literal state BUILT into objects is
judged by the rules on what allowed objects may hold (:mod:`mlops.flavors.static_state`:
method names such as ``stack_method_``, vectorizer ``input``, estimator slots, shadowed
methods, classes and functions kept as values). Decompression lives in
:mod:`mlops.flavors.pickle_compression`, the emulated values in
:mod:`mlops.flavors.pickle_values` and the opcode emulator in
:mod:`mlops.flavors.pickle_machine`. The same rules are enforced again at load time by
:mod:`mlops.flavors.restricted_unpickler`, so a scanner bug cannot become code execution.

Bad data never raises: a corrupt, truncated, ambiguous or unparseable file is reported as
offending. Only I/O errors (e.g. a missing file) and a malformed ``extra_allowed``
argument raise.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterable
from dataclasses import dataclass

from mlops.flavors.pickle_compression import (
    MAX_DECOMPRESSED_BYTES,
    ZFILE,
    Buffer,
    DecompressError,
    decompress,
    detect_compression,
)
from mlops.flavors.pickle_findings import (
    Findings,
    JoblibError,
    StreamError,
    Truncated,
    UnknownOpcode,
)
from mlops.flavors.pickle_machine import OpcodeMachine
from mlops.flavors.pickle_policy import ImportPolicy

__all__ = [
    "MAX_DECOMPRESSED_BYTES",
    "ScanResult",
    "scan_pickle_bytes",
    "scan_pickle_file",
]


@dataclass(frozen=True)
class ScanResult:
    """What a pickle/joblib file would import, and which of it is not acceptable."""

    imports: tuple[str, ...]
    offending: tuple[str, ...]
    format: str
    denied: tuple[str, ...] = ()

    @property
    def safe(self) -> bool:
        """True when nothing in the file is offending."""
        return not self.offending

    def describe(self) -> str:
        """One-line human summary of why the file is refused ("" when safe)."""
        denied = [o for o in self.offending if o in self.denied]
        other = [o for o in self.offending if o not in self.denied and not o.startswith("<")]
        problems = [o for o in self.offending if o.startswith("<")]
        parts = []
        if denied:
            parts.append("denied: " + ", ".join(denied))
        if other:
            parts.append("not on the allow list: " + ", ".join(other))
        if problems:
            parts.append("problems: " + "; ".join(problems))
        return "; ".join(parts)


def _result(findings: Findings, fmt: str) -> ScanResult:
    """The :class:`ScanResult` of a finished scan."""
    problems = list(findings.problems)
    if findings.dropped_problems:
        problems.append(f"<... and {findings.dropped_problems} more problems>")
    return ScanResult(
        imports=tuple(sorted(findings.imports)),
        offending=tuple(sorted(findings.bad_globals)) + tuple(problems),
        format=fmt,
        denied=tuple(sorted(findings.denied)),
    )


# --------------------------------------------------------------------------------------
# drivers


def _scan_stream(buf: Buffer, findings: Findings, joblib_mode: bool) -> None:
    """Scan every pickle in buf; record problems instead of raising."""
    pos = 0
    size = len(buf)
    if size == 0:
        findings.problem("<not a valid pickle stream: empty>")
        return
    while pos < size:
        machine = OpcodeMachine(buf, pos, findings, joblib_mode)
        try:
            pos = machine.run()
        except StreamError as exc:
            findings.problem(f"<not a valid pickle stream: {exc}>")
            return
        except JoblibError as exc:
            findings.problem(f"<cannot parse joblib array at byte {exc.pos}: {exc}>")
            return


def _check_polyglot(buf: Buffer, findings: Findings) -> None:
    """Make sure compressed bytes do not also run as a pickle under ``pickle.load``."""
    machine = OpcodeMachine(buf, 0, findings, joblib_mode=False)
    try:
        machine.run()
    except (Truncated, UnknownOpcode):
        return  # pickle.load would fail right there too
    except (StreamError, JoblibError) as exc:
        findings.problem(f"<ambiguous file: compressed data also parses as pickle opcodes: {exc}>")
        return
    findings.problem("<ambiguous file: compressed data is also a complete pickle stream>")


def _scan(data: Buffer, extra_allowed: Iterable[str], limit: int) -> ScanResult:
    findings = Findings(ImportPolicy(extra_allowed))
    kind = detect_compression(data)
    if kind is None:
        _scan_stream(data, findings, joblib_mode=True)
        return _result(findings, "joblib" if findings.arrays_read else "pickle")
    fmt = f"joblib+{kind}"
    _check_polyglot(data, findings)
    try:
        inner = decompress(kind, data, limit)
    except DecompressError as exc:
        findings.problem(f"<{exc}>")
        return _result(findings, fmt)
    # Legacy ZF files are read by a plain Unpickler (NDArrayWrapper is denied).
    _scan_stream(inner, findings, joblib_mode=kind != ZFILE)
    return _result(findings, fmt)


def scan_pickle_bytes(
    data: bytes | bytearray | memoryview,
    extra_allowed: Iterable[str] = (),
    *,
    max_decompressed_bytes: int = MAX_DECOMPRESSED_BYTES,
) -> ScanResult:
    """Scan pickle/joblib bytes without loading them.

    ``extra_allowed`` holds exact ``"module.QualName"`` globals to accept on top of the
    allow list (deny-listed names stay refused; there are no package wildcards).
    """
    buf = data if isinstance(data, bytes) else bytes(data)
    return _scan(buf, extra_allowed, max_decompressed_bytes)


def scan_pickle_file(
    path: str | os.PathLike[str],
    extra_allowed: Iterable[str] = (),
    *,
    max_decompressed_bytes: int = MAX_DECOMPRESSED_BYTES,
) -> ScanResult:
    """Scan a pickle/joblib file without loading it (memory-mapped, not read whole)."""
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            return _scan(b"", extra_allowed, max_decompressed_bytes)
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            return _scan(mapped, extra_allowed, max_decompressed_bytes)
