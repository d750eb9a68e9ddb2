"""Every known public scanner bypass, rebuilt as a hostile file, is refused twice.

For each entry of :data:`tests.flavors.bypass_corpus.BYPASSES`:

* the static check at registration refuses it (except what the static scan cannot decide:
  forged *array contents* and where an object ends up; the load-time checks refuse those,
  at registration too);
* the restricted loader refuses it even when handed a report that claims the file is safe
  (a scanner bug must not become code execution);
* the registry refuses to register it;
* a predict-time payload does not even load, so the request that aims it (a path to write
  or read) never reaches it;
* the canary file the payload would create does not exist afterwards.

``test_payloads_are_live`` shows, in a subprocess with the libraries' own loaders, that the
canary payloads really run, ``test_read_payloads_are_live`` that the file-reading ones
return a secret file's contents, the memory-corruption payloads really crash, the
uninitialised-memory payloads predict what the process left in freed memory and the
aliasing payloads load arrays that share memory.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops.errors import FlavorError, UnsafeModel
from mlops.flavors.files import SafetyReport, detect_format, load_bytes, safety_check
from mlops.registry.service import ModelRegistry
from tests.flavors.bypass_corpus import BYPASSES, Bypass, register_ext, unregister_ext

BY_NAME = {bp.name: bp for bp in BYPASSES}
NAMES = sorted(BY_NAME)


@pytest.fixture(scope="module")
def canary_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("canaries")


@pytest.fixture(scope="module")
def built(canary_dir: Path) -> dict[str, tuple[Path, str, bytes]]:
    """name -> (canary path, file name, file bytes), built once."""
    out = {}
    for bp in BYPASSES:
        canary = canary_dir / f"{bp.name}.canary"
        filename, data = bp.build(canary)
        out[bp.name] = (canary, filename, data)
    return out


@pytest.fixture
def ext_registered(request: pytest.FixtureRequest) -> Iterator[None]:
    """The EXT bypass needs its extension code registered, as a victim process might."""
    if request.node.callspec.params.get("name") == "ext_opcode_extension_registry":
        register_ext()
        try:
            yield
        finally:
            unregister_ext()
    else:
        yield


def _refused_report(report: SafetyReport) -> bool:
    return not report.safe


def _request(bp: Bypass, canary: Path) -> object:
    """The request that aims a predict-time payload (two rows of zeros by default)."""
    if bp.predict_input is None:
        return [[0.0, 0.0]]
    rows = bp.predict_input(canary)
    return pd.DataFrame(rows) if isinstance(rows, dict) else np.asarray(rows, dtype=float)


@pytest.mark.usefixtures("ext_registered")
@pytest.mark.parametrize("name", NAMES)
def test_static_check_refuses(name: str, built: dict[str, tuple[Path, str, bytes]]) -> None:
    canary, filename, data = built[name]
    fmt = detect_format(filename, data)
    try:
        report = safety_check(fmt, data)
    except FlavorError:
        return  # an archive skops cannot even parse is refused too
    if BY_NAME[name].static:
        assert _refused_report(report), f"{name} scans as safe"
    else:  # undecidable statically: the registry still refuses (see test_registry_refuses)
        assert report.safe
    assert not canary.exists()


@pytest.mark.usefixtures("ext_registered")
@pytest.mark.parametrize("name", NAMES)
def test_restricted_loader_refuses_even_when_the_scan_says_safe(
        name: str, built: dict[str, tuple[Path, str, bytes]]) -> None:
    canary, filename, data = built[name]
    fmt = detect_format(filename, data)
    lying_report = SafetyReport(fmt, (), ())
    with pytest.raises(UnsafeModel):
        model, _ = load_bytes(data, filename, fmt=fmt, report=lying_report)
        if BY_NAME[name].trigger == "predict":
            model.predict(_request(BY_NAME[name], canary))
    time.sleep(0.05 if name == "multiprocessing_spawnv_passfds" else 0)
    assert not canary.exists()


PREDICT_TIME = sorted(bp.name for bp in BYPASSES if bp.trigger == "predict")


@pytest.mark.parametrize("name", PREDICT_TIME)
def test_predict_time_payloads_do_not_load(
        name: str, built: dict[str, tuple[Path, str, bytes]]) -> None:
    """No model is handed out for a predict-time payload: neither by the plain load path
    (which scans first) nor when the scan is told the file is safe."""
    canary, filename, data = built[name]
    fmt = detect_format(filename, data)
    for report in (None, SafetyReport(fmt, (), ())):
        with pytest.raises(UnsafeModel):
            load_bytes(data, filename, fmt=fmt, report=report)
    assert not canary.exists()


@pytest.mark.usefixtures("ext_registered")
@pytest.mark.parametrize("name", NAMES)
def test_registry_refuses(name: str, built: dict[str, tuple[Path, str, bytes]],
                          registry: ModelRegistry, tmp_path: Path) -> None:
    canary, filename, data = built[name]
    path = tmp_path / filename
    path.write_bytes(data)
    with pytest.raises(FlavorError):
        registry.register("hostile", path)
    assert registry.list_models() == []
    assert not canary.exists()


_HARNESS = textwrap.dedent("""
    import copyreg, io, itertools, json, pickle, sys, time, warnings
    warnings.simplefilter("ignore")
    import joblib, numpy as np, pandas as pd
    import sklearn.linear_model, skops.io
    entries = json.loads(open(sys.argv[1]).read())
    for e in entries:
        if e["name"] == "ext_opcode_extension_registry":
            copyreg.add_extension("os", "system", e["ext_code"])
        data = open(e["path"], "rb").read()
        try:
            if e["kind"] == "skops":
                trusted = skops.io.get_untrusted_types(data=data)
            if e["effect"] == "leak":  # what the process leaves behind in freed memory
                n, value = e["leak"]
                secrets = [np.full(n, value) for _ in range(7)]
                del secrets
            if e["kind"] == "skops":
                obj = skops.io.loads(data, trusted=trusted)
            elif e["kind"] == "joblib":
                obj = joblib.load(io.BytesIO(data))
            else:
                obj = pickle.loads(data)
            if e["trigger"] == "predict":
                if e.get("frame") is not None:
                    x = pd.DataFrame(e["frame"])
                elif e.get("x") is not None:
                    x = np.asarray(e["x"], dtype=float)
                else:
                    x = np.zeros((2, e.get("width", 2)))
                out = obj.predict(x)
                if e["effect"] == "read":
                    print("READ", e["name"], float(np.asarray(out).sum()), flush=True)
                if e["effect"] == "leak":
                    found = int(np.sum(np.asarray(out) == e["leak"][1]))
                    print("LEAK", e["name"], found, flush=True)
            if e["effect"] == "alias":
                arrays = [v for v in vars(obj).values() if isinstance(v, np.ndarray)]
                shared = any(np.shares_memory(a, b)
                             for a, b in itertools.combinations(arrays, 2))
                print("ALIAS", e["name"], shared, flush=True)
            if e["effect"] == "crash":
                repr(obj)
                if hasattr(obj, "sum"):
                    obj.sum()
        except BaseException as exc:
            print(e["name"], type(exc).__name__, str(exc)[:100], flush=True)
    deadline = time.time() + 5
    while time.time() < deadline and not all(
            __import__("os").path.exists(e["canary"]) for e in entries
            if e["effect"] == "canary"):
        time.sleep(0.1)
""")


def _run_harness(entries: list[dict[str, object]], folder: Path,
                 timeout: int) -> subprocess.CompletedProcess[str]:
    """Run the unsafe loaders on ``entries`` in a subprocess (entries passed in a file)."""
    listing = folder / "entries.json"
    listing.write_text(json.dumps(entries))
    return subprocess.run([sys.executable, "-c", _HARNESS, str(listing)], cwd=folder,
                          capture_output=True, text=True, timeout=timeout)


def _entries(bps: list[Bypass], built: dict[str, tuple[Path, str, bytes]],
             folder: Path) -> list[dict[str, object]]:
    from tests.flavors.bypass_corpus import EXT_CODE, LEAK_N, LEAK_VALUE

    out = []
    for bp in bps:
        canary, filename, data = built[bp.name]
        path = folder / f"{bp.name}-{filename}"
        path.write_bytes(data)
        kind = detect_format(filename, data)
        rows = bp.predict_input(canary) if bp.predict_input is not None else None
        out.append({"name": bp.name, "path": str(path), "kind": kind, "trigger": bp.trigger,
                    "effect": bp.effect, "canary": str(canary), "ext_code": EXT_CODE,
                    "width": 3 if bp.name.startswith("sklearn_tree") else 2,
                    "leak": [LEAK_N, LEAK_VALUE],
                    "x": rows if isinstance(rows, list) else None,
                    "frame": rows if isinstance(rows, dict) else None})
    return out


def test_payloads_are_live(built: dict[str, tuple[Path, str, bytes]], tmp_path: Path) -> None:
    """With pickle/joblib/skops' own loaders every canary payload runs (in a subprocess)."""
    live = [bp for bp in BYPASSES if bp.effect == "canary"]
    entries = _entries(live, built, tmp_path)
    proc = _run_harness(entries, tmp_path, timeout=240)
    missing = [bp.name for bp in live if not built[bp.name][0].exists()]
    try:
        assert not missing, f"payloads that did not run: {missing}\n{proc.stdout}{proc.stderr}"
    finally:
        for bp in live:
            built[bp.name][0].unlink(missing_ok=True)


#: What the file-reading payloads read (every character is in their vocabulary).
SECRET = "s3cr3t-token"


def test_read_payloads_are_live(built: dict[str, tuple[Path, str, bytes]],
                                tmp_path: Path) -> None:
    """With the libraries' own loaders, a request naming a file gets its contents back."""
    readers = [bp for bp in BYPASSES if bp.effect == "read"]
    assert readers
    for bp in readers:
        built[bp.name][0].write_text(SECRET)
    try:
        entries = _entries(readers, built, tmp_path)
        proc = _run_harness(entries, tmp_path, timeout=240)
    finally:
        for bp in readers:
            built[bp.name][0].unlink(missing_ok=True)
    for bp in readers:
        assert f"READ {bp.name} {float(len(SECRET))}" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", sorted(bp.name for bp in BYPASSES if bp.effect == "crash"))
def test_memory_corruption_payloads_crash_the_unsafe_loader(
        name: str, built: dict[str, tuple[Path, str, bytes]], tmp_path: Path) -> None:
    """The allow-listed-names-only payloads corrupt memory without mlops' state checks."""
    entries = _entries([BY_NAME[name]], built, tmp_path)
    proc = _run_harness(entries, tmp_path, timeout=120)
    assert proc.returncode < 0, (proc.returncode, proc.stdout, proc.stderr)


def test_uninitialised_memory_payloads_leak_with_the_unsafe_loader(
        built: dict[str, tuple[Path, str, bytes]], tmp_path: Path) -> None:
    """With the libraries' own loaders, the direct array constructions predict the values
    the process left in freed memory (numpy reuses small freed buffers as they are)."""
    from tests.flavors.bypass_corpus import LEAK_N

    leaks = [bp for bp in BYPASSES if bp.effect == "leak"]
    assert len(leaks) >= 6
    entries = _entries(leaks, built, tmp_path)
    proc = _run_harness(entries, tmp_path, timeout=240)
    for bp in leaks:
        line = next((ln for ln in proc.stdout.splitlines()
                     if ln.startswith(f"LEAK {bp.name} ")), None)
        assert line is not None, proc.stdout + proc.stderr
        found = int(line.split()[-1])
        assert 0 < found <= LEAK_N, f"{bp.name} predicted no freed memory: {line}"


def test_aliasing_payloads_share_memory_with_the_unsafe_loader(
        built: dict[str, tuple[Path, str, bytes]], tmp_path: Path) -> None:
    """With the libraries' own loaders, the aliasing payloads load two attributes over the
    same memory (a write to one after loading changes the other)."""
    aliases = [bp for bp in BYPASSES if bp.effect == "alias"]
    assert len(aliases) >= 6
    entries = _entries(aliases, built, tmp_path)
    proc = _run_harness(entries, tmp_path, timeout=240)
    for bp in aliases:
        assert f"ALIAS {bp.name} True" in proc.stdout, proc.stdout + proc.stderr


def test_corpus_lists_its_sources() -> None:
    assert len(BYPASSES) >= 40
    for bp in BYPASSES:
        assert bp.source and bp.effect in {"canary", "crash", "none", "read", "leak", "alias"}
        assert bp.trigger in {"load", "predict"}
