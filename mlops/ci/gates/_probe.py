"""Memory probe run in a fresh interpreter by the resources gate.

``python -m mlops.ci.gates._probe ARTIFACT DATA.parquet [--trust]`` reads the input rows,
then records ``ru_maxrss`` (the process's resident-set high-water mark, KiB) at three points:
after the imports and the data read (``baseline``), after reading and loading the model,
after predicting. ``ru_maxrss`` never goes down, so a spike before the baseline (reading
the data) can hide a small model; on Linux the probe therefore also resets the kernel's
high-water mark at the baseline (``/proc/self/clear_refs``) and reports ``VmRSS`` there and
``VmHWM`` after each step, which measure the model alone. It prints one JSON object on
stdout; on a load or predict error it prints the object with ``"error"`` and exits with 3.
"""

from __future__ import annotations

import gc
import json
import resource
import sys
from pathlib import Path
from typing import Any

__all__ = ["main", "maxrss_kib", "reset_peak", "vm_status_kib"]


def maxrss_kib() -> int:
    """This process's peak resident set size in KiB (macOS reports bytes)."""
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return value // 1024 if sys.platform == "darwin" else value


def vm_status_kib() -> dict[str, int] | None:
    """``VmRSS`` and ``VmHWM`` from ``/proc/self/status`` in KiB; None off Linux."""
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return None
    out = {}
    for line in lines:
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(rest.split()[0])
    return out if len(out) == 2 else None


def reset_peak() -> bool:
    """Reset the kernel's RSS high-water mark (Linux >= 4.0); False when not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


def _mark(out: dict[str, Any], step: str, use_hwm: bool) -> None:
    out[f"{step}_kib"] = maxrss_kib()
    status = vm_status_kib() if use_hwm else None
    if status is not None:
        out[f"{step}_hwm_kib"] = status["VmHWM"]


def main(argv: list[str]) -> int:
    import pandas as pd

    from mlops.errors import MlopsError
    from mlops.flavors.files import load_bytes

    if len(argv) not in (2, 3) or (len(argv) == 3 and argv[2] != "--trust"):
        print("usage: python -m mlops.ci.gates._probe ARTIFACT DATA.parquet [--trust]",
              file=sys.stderr)
        return 2
    artifact, data_path = Path(argv[0]), Path(argv[1])
    trust = len(argv) == 3
    X = pd.read_parquet(data_path)
    gc.collect()
    out: dict[str, Any] = {"baseline_kib": maxrss_kib(), "rows": len(X)}
    use_hwm = reset_peak() and vm_status_kib() is not None
    if use_hwm:
        status = vm_status_kib()
        assert status is not None
        out["baseline_rss_kib"] = status["VmRSS"]
    try:
        data = artifact.read_bytes()
        model, _ = load_bytes(data, artifact.name, trust=trust)
        del data
        _mark(out, "after_load", use_hwm)
        model.predict(X)
        _mark(out, "after_predict", use_hwm)
    except (MlopsError, OSError) as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
        print(json.dumps(out))
        return 3
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
