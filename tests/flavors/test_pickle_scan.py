"""Tests for mlops.flavors.pickle_scan: the static pickle/joblib scanner never loads."""

from __future__ import annotations

import importlib.util
import io
import os
import pickle
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from mlops.flavors.pickle_scan import ScanResult, scan_pickle_bytes, scan_pickle_file

# ---------------------------------------------------------------------------------------
# helpers


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(0)
    x = rng.rand(60, 4)
    return x, (x[:, 0] > 0.5).astype(int)


@pytest.fixture(scope="module")
def models(data: tuple[np.ndarray, np.ndarray]) -> dict[str, Any]:
    x, y = data
    return {
        "logreg": LogisticRegression().fit(x, y),
        "forest": RandomForestClassifier(n_estimators=4, random_state=0).fit(x, y),
    }


class Evil:
    """Runs os.system when unpickled."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("echo pwned",))


class EvilEval:
    def __reduce__(self) -> tuple[Any, ...]:
        return (eval, ("1+1",))


class EvilPopen:
    def __reduce__(self) -> tuple[Any, ...]:
        return (subprocess.Popen, (["echo", "pwned"],))


class EvilWritesFile:
    """Would create a marker file if the scanner ever executed the pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        code = f"open({str(self.marker)!r}, 'w').write('executed')"
        return (exec, (code,))


def joblib_bytes(obj: Any, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    joblib.dump(obj, buf, **kwargs)
    return buf.getvalue()


def system_names(result: ScanResult) -> set[str]:
    return {"posix.system", "os.system", "nt.system"} & set(result.offending)


# Handcrafted opcode builders (protocol 4 style, no frames unless asked).


def u(text: str) -> bytes:
    raw = text.encode()
    return pickle.SHORT_BINUNICODE + bytes([len(raw)]) + raw


def sg(module: str, name: str) -> bytes:
    return u(module) + u(name) + pickle.STACK_GLOBAL


def proto4(body: bytes) -> bytes:
    return pickle.PROTO + b"\x04" + body + pickle.STOP


def np_dtype(spec: str, flags: int = 0) -> bytes:
    """numpy.dtype(spec, False, True) followed by BUILD with a version-3 state."""
    return (
        sg("numpy", "dtype")
        + u(spec)
        + pickle.NEWFALSE
        + pickle.NEWTRUE
        + pickle.TUPLE3
        + pickle.REDUCE
        + pickle.MARK
        + pickle.BININT1
        + b"\x03"
        + u("<")
        + pickle.NONE * 3
        + pickle.BININT
        + struct.pack("<i", -1)
        + pickle.BININT
        + struct.pack("<i", -1)
        + pickle.BININT1
        + bytes([flags])
        + pickle.TUPLE
        + pickle.BUILD
    )


def array_wrapper(n: int, dtype: bytes) -> bytes:
    """A joblib NumpyArrayWrapper of shape (n,) without alignment padding."""
    return (
        sg("joblib.numpy_pickle", "NumpyArrayWrapper")
        + pickle.EMPTY_TUPLE
        + pickle.NEWOBJ
        + pickle.EMPTY_DICT
        + pickle.MARK
        + u("subclass")
        + sg("numpy", "ndarray")
        + u("shape")
        + pickle.BININT1
        + bytes([n])
        + pickle.TUPLE1
        + u("order")
        + u("C")
        + u("dtype")
        + dtype
        + pickle.SETITEMS
        + pickle.BUILD
    )


def frame(body: bytes) -> bytes:
    return pickle.FRAME + struct.pack("<Q", len(body)) + body


# ---------------------------------------------------------------------------------------
# legitimate models


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
@pytest.mark.parametrize("name", ["logreg", "forest"])
def test_plain_pickled_sklearn_model_is_safe_and_lists_its_class(
    models: dict[str, Any], name: str, protocol: int
) -> None:
    result = scan_pickle_bytes(pickle.dumps(models[name], protocol=protocol))
    assert result.safe, result.offending
    assert result.format == "pickle"
    cls = type(models[name])
    assert f"{cls.__module__}.{cls.__qualname__}" in result.imports
    assert list(result.imports) == sorted(set(result.imports))


@pytest.mark.parametrize(
    ("compress", "fmt"),
    [
        (0, "joblib"),
        (3, "joblib+zlib"),
        (("gzip", 3), "joblib+gzip"),
        (("bz2", 3), "joblib+bz2"),
        (("xz", 3), "joblib+xz"),
        (("lzma", 3), "joblib+lzma"),
    ],
)
@pytest.mark.parametrize("name", ["logreg", "forest"])
def test_joblib_dump_of_fitted_model_is_safe_for_every_compressor(
    models: dict[str, Any], name: str, compress: Any, fmt: str, tmp_path: Path
) -> None:
    path = tmp_path / "model.joblib"
    joblib.dump(models[name], path, compress=compress)
    result = scan_pickle_file(path)
    assert result.safe, result.offending
    assert result.format == fmt
    assert "joblib.numpy_pickle.NumpyArrayWrapper" in result.imports
    cls = type(models[name])
    assert f"{cls.__module__}.{cls.__qualname__}" in result.imports
    # The in-memory variant (no alignment padding) scans the same.
    assert scan_pickle_bytes(path.read_bytes()) == result


@pytest.mark.parametrize("protocol", [0, 2, 3, 5])
def test_joblib_dump_with_old_pickle_protocols_is_safe(
    models: dict[str, Any], protocol: int, tmp_path: Path
) -> None:
    path = tmp_path / "model.joblib"
    joblib.dump(models["forest"], path, protocol=protocol)
    result = scan_pickle_file(path)
    assert result.safe, result.offending
    assert result.format == "joblib"


def test_joblib_object_dtype_array_is_scanned_as_nested_pickle_and_safe(tmp_path: Path) -> None:
    path = tmp_path / "obj.joblib"
    obj = {
        "objects": np.array([1, "a", None, {"k": 2.5}], dtype=object),
        "after": np.arange(10.0),
        "structured": np.zeros(3, dtype=[("i", "i8"), ("o", "O")]),
    }
    joblib.dump(obj, path)
    result = scan_pickle_file(path)
    assert result.safe, result.offending
    assert result.format == "joblib"


def test_joblib_object_array_hiding_malicious_object_is_offending(tmp_path: Path) -> None:
    path = tmp_path / "obj.joblib"
    joblib.dump({"objects": np.array([1, Evil()], dtype=object), "w": np.ones(5)}, path)
    result = scan_pickle_file(path)
    assert not result.safe
    assert system_names(result)


def test_joblib_large_float_arrays_are_skipped_quickly_and_safe(tmp_path: Path) -> None:
    path = tmp_path / "big.joblib"
    joblib.dump({f"w{i}": np.random.rand(5_000_000) for i in range(3)}, path)
    start = time.perf_counter()
    result = scan_pickle_file(path)
    elapsed = time.perf_counter() - start
    assert result.safe, result.offending
    assert result.format == "joblib"
    print(f"scanned {path.stat().st_size / 1e6:.0f} MB in {elapsed * 1000:.1f} ms")


def test_joblib_array_bytes_that_look_like_opcodes_are_skipped_not_reported(
    tmp_path: Path,
) -> None:
    payload = np.frombuffer(pickle.dumps(Evil(), protocol=0), dtype=np.uint8)
    path = tmp_path / "tricky.joblib"
    joblib.dump({"data": payload.copy()}, path)
    result = scan_pickle_file(path)
    assert result.safe, result.offending
    assert "posix.system" not in result.imports


# ---------------------------------------------------------------------------------------
# malicious files


@pytest.mark.parametrize("protocol", [0, 4])
def test_reduce_to_os_system_is_offending_and_denied(protocol: int) -> None:
    result = scan_pickle_bytes(pickle.dumps(Evil(), protocol=protocol))
    assert not result.safe
    assert system_names(result)
    assert system_names(result) <= set(result.denied)
    assert "denied" in result.describe()


def test_reduce_to_builtins_eval_is_offending() -> None:
    result = scan_pickle_bytes(pickle.dumps(EvilEval(), protocol=4))
    assert "builtins.eval" in result.offending
    assert "builtins.eval" in result.denied


def test_protocol_2_builtin_name_mapping_resolves_to_builtins_eval() -> None:
    data = b"c__builtin__\neval\n(S'1+1'\ntR."
    result = scan_pickle_bytes(data)
    assert "builtins.eval" in result.offending


def test_reduce_to_subprocess_popen_is_offending() -> None:
    result = scan_pickle_bytes(pickle.dumps(EvilPopen(), protocol=4))
    assert "subprocess.Popen" in result.offending


@pytest.mark.parametrize("compress", [0, 3, ("gzip", 3)])
def test_malicious_object_next_to_numpy_arrays_in_joblib_is_offending(
    compress: Any, tmp_path: Path
) -> None:
    path = tmp_path / "evil.joblib"
    joblib.dump({"w": np.zeros(1000), "x": Evil(), "v": np.ones((3, 3))}, path, compress=compress)
    result = scan_pickle_file(path)
    assert not result.safe
    assert system_names(result)


def test_stack_global_arguments_from_memo_get_are_resolved() -> None:
    benign = proto4(
        u("collections")
        + pickle.MEMOIZE
        + u("OrderedDict")
        + pickle.MEMOIZE
        + pickle.POP
        + pickle.POP
        + pickle.BINGET
        + b"\x00"
        + pickle.BINGET
        + b"\x01"
        + pickle.STACK_GLOBAL
    )
    result = scan_pickle_bytes(benign)
    assert result.safe, result.offending
    assert result.imports == ("collections.OrderedDict",)

    evil = proto4(
        u("os")
        + pickle.BINPUT
        + b"\x07"
        + pickle.POP
        + u("system")
        + pickle.LONG_BINPUT
        + struct.pack("<I", 9)
        + pickle.POP
        + pickle.BINGET
        + b"\x07"
        + pickle.LONG_BINGET
        + struct.pack("<I", 9)
        + pickle.STACK_GLOBAL
        + u("echo pwned")
        + pickle.TUPLE1
        + pickle.REDUCE
    )
    result = scan_pickle_bytes(evil)
    assert "os.system" in result.offending
    assert "os.system" in result.denied


def test_stack_global_with_non_string_argument_is_unresolvable_and_offending() -> None:
    # The module name is built by calling builtins.str instead of a string push.
    body = (
        sg("builtins", "str")
        + u("os")
        + pickle.TUPLE1
        + pickle.REDUCE
        + u("system")
        + pickle.STACK_GLOBAL
    )
    data = proto4(body)
    position = 2 + len(body) - 1
    result = scan_pickle_bytes(data)
    assert not result.safe
    assert f"<unresolvable STACK_GLOBAL at byte {position}>" in result.offending


def test_second_of_two_concatenated_pickles_is_scanned() -> None:
    data = pickle.dumps({"a": 1}, protocol=4) + pickle.dumps(Evil(), protocol=4)
    result = scan_pickle_bytes(data)
    assert not result.safe
    assert system_names(result)


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x01\x02 this is not a pickle",
        b"",
        pickle.dumps({"a": [1, 2, 3]}, protocol=4)[:-5],
        pickle.dumps(list(range(100)), protocol=0)[:-3],
        b"\x80\x04\x95\xff\xff\x00\x00\x00\x00\x00\x00",
    ],
    ids=["garbage", "empty", "truncated-proto4", "truncated-proto0", "frame-past-end"],
)
def test_garbage_or_truncated_bytes_are_offending_not_an_exception(data: bytes) -> None:
    result = scan_pickle_bytes(data)
    assert not result.safe
    assert any(o.startswith("<not a valid pickle stream") for o in result.offending)


def test_corrupt_compressed_file_is_offending(tmp_path: Path) -> None:
    good = joblib_bytes({"w": np.arange(100.0)}, compress=3)
    for bad in (good[:-20], good + b"trailing"):
        result = scan_pickle_bytes(bad)
        assert not result.safe
        assert result.format == "joblib+zlib"


def test_decompression_size_cap_refuses_zip_bombs() -> None:
    data = joblib_bytes({"w": np.zeros(1_000_000)}, compress=3)
    result = scan_pickle_bytes(data, max_decompressed_bytes=100_000)
    assert not result.safe
    assert any("exceeds" in o for o in result.offending)


@pytest.mark.skipif(importlib.util.find_spec("lz4") is not None, reason="lz4 is installed")
def test_lz4_file_without_lz4_module_is_offending_with_install_hint() -> None:
    result = scan_pickle_bytes(b"\x04\x22\x4d\x18" + b"\x00" * 32)
    assert not result.safe
    assert result.format == "joblib+lz4"
    assert any("install the 'lz4' package" in o for o in result.offending)


def test_joblib_array_data_inside_a_frame_is_offending() -> None:
    # joblib reads the array from *after* the frame and then runs the rest of the
    # frame; a linear walk would skip the os.system call hidden in the frame.
    body = (
        array_wrapper(1, np_dtype("u1"))
        + pickle.POP
        + sg("os", "system")
        + u("echo pwned")
        + pickle.TUPLE1
        + pickle.REDUCE
        + pickle.STOP
    )
    data = pickle.PROTO + b"\x04" + frame(body) + b"\x2a"
    result = scan_pickle_bytes(data)
    assert not result.safe
    assert any("inside a pickle frame" in o for o in result.offending)


def test_joblib_dtype_flags_claiming_objects_for_floats_are_offending() -> None:
    # numpy trusts pickled dtype flags, so this float array makes joblib run a nested
    # pickle where a naive scanner would skip 8 raw bytes.
    nested = pickle.dumps(Evil(), protocol=2)
    data = pickle.PROTO + b"\x04" + array_wrapper(1, np_dtype("f8", flags=63)) + nested
    result = scan_pickle_bytes(data + pickle.STOP)
    assert not result.safe
    assert any("cannot parse joblib array" in o for o in result.offending)


def test_handcrafted_joblib_stream_with_exact_sizes_is_safe() -> None:
    data = pickle.PROTO + b"\x04" + array_wrapper(3, np_dtype("u1")) + b"abc" + pickle.STOP
    result = scan_pickle_bytes(data)
    assert result.safe, result.offending
    assert result.format == "joblib"
    # One byte too few: the STOP is swallowed as array data.
    result = scan_pickle_bytes(data[:-2] + pickle.STOP)
    assert not result.safe


def test_build_on_a_global_object_is_offending_as_monkeypatching() -> None:
    data = proto4(
        sg("sklearn.base", "BaseEstimator")
        + pickle.NONE
        + pickle.EMPTY_DICT
        + u("fit")
        + sg("builtins", "print")
        + pickle.SETITEM
        + pickle.TUPLE2
        + pickle.BUILD
    )
    result = scan_pickle_bytes(data)
    assert any("BUILD sets attributes on the global object" in o for o in result.offending)


def test_unregistered_copyreg_extension_code_is_offending() -> None:
    result = scan_pickle_bytes(proto4(pickle.EXT2 + struct.pack("<H", 0xBEEF)))
    assert any("copyreg extension code 48879" in o for o in result.offending)


def test_persistent_id_is_offending() -> None:
    result = scan_pickle_bytes(b"Pfoo\n.")
    assert any("persistent id" in o for o in result.offending)


def test_dotted_attribute_path_under_allowed_package_is_denied() -> None:
    result = scan_pickle_bytes(proto4(sg("sklearn.base", "BaseEstimator.__init__.__globals__")))
    assert "sklearn.base.BaseEstimator.__init__.__globals__" in result.denied


@pytest.mark.parametrize(
    "name",
    ["numpy.load", "numpy.lib.npyio.load", "pandas.read_pickle", "numpy.testing.assert_equal",
     "numpy._core.fromnumeric._wrapfunc", "sklearn.utils.estimator_checks.check_estimator"],
)
def test_globals_of_allowed_packages_that_are_not_listed_are_offending(name: str) -> None:
    module, _, attr = name.rpartition(".")
    result = scan_pickle_bytes(proto4(sg(module, attr)))
    assert name in result.offending


# ---------------------------------------------------------------------------------------
# policy and the never-execute guarantee


def test_extra_allowed_accepts_an_exact_custom_class_but_no_wildcard() -> None:
    data = proto4(sg("mypkg", "MyModel") + pickle.EMPTY_TUPLE + pickle.NEWOBJ)
    assert scan_pickle_bytes(data).offending == ("mypkg.MyModel",)
    assert scan_pickle_bytes(data, extra_allowed=["mypkg.MyModel"]).safe
    assert not scan_pickle_bytes(data, extra_allowed=["mypkg.Other"]).safe
    with pytest.raises(ValueError, match="wildcards"):
        scan_pickle_bytes(data, extra_allowed=["mypkg.*"])


def test_extra_allowed_never_overrides_the_deny_list() -> None:
    data = pickle.dumps(Evil(), protocol=4)
    result = scan_pickle_bytes(data, extra_allowed=["posix.system", "os.system", "nt.system"])
    assert system_names(result)


def test_extra_allowed_rejects_malformed_patterns() -> None:
    with pytest.raises(ValueError):
        scan_pickle_bytes(b".", extra_allowed=["*"])


def test_nonexistent_module_is_offending_without_import_error() -> None:
    data = b"cnonexistent_mod_xyz\nf\n(tR."
    result = scan_pickle_bytes(data)
    assert "nonexistent_mod_xyz.f" in result.offending
    assert "nonexistent_mod_xyz" not in sys.modules


def test_scanner_never_executes_the_pickle(tmp_path: Path) -> None:
    marker = tmp_path / "executed.txt"
    data = pickle.dumps(EvilWritesFile(marker), protocol=4)
    path = tmp_path / "evil.pkl"
    path.write_bytes(data)
    assert "builtins.exec" in scan_pickle_file(path).offending
    assert "builtins.exec" in scan_pickle_bytes(data).offending
    joblib.dump({"w": np.zeros(10), "x": EvilWritesFile(marker)}, tmp_path / "evil.joblib")
    assert not scan_pickle_file(tmp_path / "evil.joblib").safe
    assert not marker.exists()


def test_scan_pickle_file_accepts_str_and_handles_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.pkl"
    path.write_bytes(b"")
    assert not scan_pickle_file(str(path)).safe
    path.write_bytes(pickle.dumps([1, 2.0, "x"]))
    assert scan_pickle_file(str(path)).safe


def test_describe_is_empty_for_safe_and_names_problems_for_unsafe() -> None:
    assert scan_pickle_bytes(pickle.dumps({"a": 1})).describe() == ""
    text = scan_pickle_bytes(proto4(sg("mypkg", "X"))).describe()
    assert "not on the allow list: mypkg.X" in text


def _sized(name: bytes, op: bytes, size: int = 3_500_000_000) -> bytes:
    """``builtins.<name>`` called (REDUCE), or its ``__new__`` (NEWOBJ), with a size."""
    head = b"\x80\x04\x8c\x08builtins\x8c" + bytes([len(name)]) + name + b"\x93"
    return head + b"\x8a\x05" + size.to_bytes(5, "little") + b"\x85" + op + b"."


@pytest.mark.parametrize("data", [
    _sized(b"bytearray", b"R"), _sized(b"bytes", b"R"), _sized(b"bytes", b"\x81"),
    b"cbuiltins\nbytearray\n(I3500000000\ntR.",  # protocol 0
    b"(cbuiltins\nbytes\nI3500000000\no.",  # OBJ
    b"cbuiltins\nbytearray\n(cbuiltins\nint\n(S'3500000000'\ntRtR.",  # a computed size
], ids=["bytearray REDUCE", "bytes REDUCE", "bytes NEWOBJ", "bytearray protocol 0",
        "bytes OBJ", "bytearray of int(text)"])
def test_bytes_built_from_a_size_are_refused_before_anything_is_allocated(
        data: bytes) -> None:
    """A 32-byte pickle committed 3.6 GB (the red team's): the scan and the loader both say
    so, and the loader refuses before the call."""
    from mlops.errors import UnsafeModel
    from mlops.flavors.restricted_unpickler import load_restricted

    result = scan_pickle_bytes(data)
    assert not result.safe and "a size, not data" in " ".join(result.offending)
    with pytest.raises(UnsafeModel, match="a size, not data"):
        load_restricted(data)


def test_bytes_from_the_files_own_data_still_load() -> None:
    from mlops.flavors.restricted_unpickler import load_restricted

    for value in (bytearray(b"abc"), b"xyz" * 10):
        data = pickle.dumps(value, protocol=4)
        assert scan_pickle_bytes(data).safe and load_restricted(data) == value
    assert scan_pickle_bytes(pickle.dumps(bytearray(b"abc"), protocol=2)).safe
