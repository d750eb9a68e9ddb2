"""Drift benchmark: mlops' detect_drift vs a scipy per-column loop vs Evidently, in one run.

Run with ``make bench-drift`` (``.venv-bench/bin/python bench/drift.py``; ``--quick`` for the
100k-row sizes only, ``--sizes 1Mx20,100kx200`` to pick). Evidently 0.7 does not import with
pandas 3, so the whole comparison runs in ``.venv-bench`` (``make bench-env``:
bench/requirements.txt with ``pandas<3``, plus mlops itself, installed editable).

Data (seeded numpy, regenerated identically in every worker and checked by a fingerprint):
a reference and a current frame with the same number of rows; 80 % of the columns numeric,
cycling through normal, lognormal, a two-normal mixture, Poisson counts and rounded ages (the
last two int64 with many ties); 20 % categorical strings (object dtype, 5-30 categories with
Zipf-like shares, as read from a CSV with pandas 2). Shifts applied to the current frame:

- truly shifted, about 10 % of the columns (at least 2 numeric and 2 categorical): mean
  shifts of 0.15-0.5 SD, scale changes x1.3 and x0.75 (counts: a negative binomial or a
  binomial of the same mean), the top category losing 15 points to the rarest one, a new
  category taking 5 %. The smallest true shift is 0.15 SD: the effect floor of mlops (and
  Evidently's threshold) is 0.1 SD, where a shift is a coin flip;
- tiny, about 20 % of the columns (at least 2 numeric and 1 categorical): a mean shift of
  0.01 SD, or one point moving from the top category to the second. Real, but too small to
  matter: a flag there counts as a false flag (at 1M rows their p-values are tiny);
- untouched: the rest.

Methods, each in a fresh worker process (this script with ``--worker``), one after another:

- ``mlops``: ``build_profile(reference)`` (done once, when a model is registered; timed
  apart) and ``detect_drift(profile, current)`` with its defaults (BH at FDR 0.05 and the
  effect floors: 0.1 reference SD of Wasserstein for numeric, JS distance 0.1 for
  categorical). The detect time is the comparable one; build + detect is shown too;
- ``scipy``: the loop most people write: ``scipy.stats.ks_2samp(ref, cur)`` (default method)
  per numeric column, ``scipy.stats.chi2_contingency`` of the 2 x k table of
  ``value_counts`` per categorical column, flag ``p < 0.05``;
- ``evidently``: ``Report([DataDriftPreset()], include_tests=True).run(current_data=...,
  reference_data=...)`` on ``Dataset.from_pandas`` with a ``DataDefinition`` declaring the
  numeric and categorical columns (building the two Datasets is timed with the run).
  A column is flagged when its "Value Drift" test fails (checked against the
  ``DriftedColumnsCount`` metric). Above 1,000 rows Evidently picks the normed Wasserstein
  distance (numeric) and the Jensen-Shannon distance (categorical), threshold 0.1 each;
- ``mlops-blas1``, a note row outside the verdicts: the mlops worker again with
  ``OPENBLAS_NUM_THREADS=1``. ``detect_drift`` sums the Wasserstein integral with ``np.dot``,
  which numpy hands to multi-threaded OpenBLAS; on a 2-core machine each call then costs
  milliseconds instead of microseconds and slows the rest of the detection down with it.

Measured: wall time (``time.perf_counter``) of each phase; peak memory = the worker's peak
resident set size during the phase less its resident set size just before it (before each
phase: ``gc.collect()``, glibc's ``malloc_trim(0)`` so that memory freed while generating the
data is not silently reused, then the Linux high-water mark ``VmHWM`` is reset through
``/proc/self/clear_refs``), so it counts numpy, pandas and Python memory alike and not the
frames themselves; mlops' build phase counts the profile it returns. Also: CPU seconds of
the worker, and the CPU that other processes used meanwhile (the machine is shared: a busy
one is flagged). A method that runs past ``--timeout`` seconds is killed and reported as
"> timeout", with its peak memory so far. ``--skip evidently@1Mx200`` leaves one out.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import gc
import hashlib
import json
import math
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
ALPHA = 0.05  # the scipy loop's naive rule
METHODS = ("mlops", "scipy", "evidently")
# Also run by default, shown as a note row: mlops with OpenBLAS limited to one thread (see
# the module docstring); not part of the verdicts.
NOTE_METHODS = ("mlops-blas1",)
ALL_METHODS = METHODS + NOTE_METHODS
DEFAULT_SIZES = "100kx20,1Mx20,100kx200,1Mx200"
QUICK_SIZES = "100kx20,100kx200"
FOREIGN_LIMIT = 0.15  # cores used by other processes during a measurement before we flag it
GOAL_SPEEDUP = 20.0
GOAL_SIZE = (1_000_000, 20)
SEED = 20261125
MARK = "@@drift-bench "  # prefix of the worker's protocol lines on stdout

NUM_KINDS = ("normal", "lognormal", "mixture", "poisson", "age")
# uniform ranges of each kind's parameters: normal (mean, sd), lognormal (mu, sigma),
# mixture (weight of the 2nd component, its mean, sd of the 1st at 0, sd of the 2nd),
# poisson (lambda), age (mean, sd of the latent normal, rounded and clipped to 18-90)
NUM_PARAMS = {"normal": ((-10, 10), (0.5, 5)), "lognormal": ((0, 2), (0.25, 1.0)),
              "mixture": ((0.2, 0.5), (2, 5), (0.5, 1.5), (0.5, 1.5)),
              "poisson": ((2, 40),), "age": ((30, 50), (8, 15))}
# (shift, amount) cycled over the truly shifted columns; amounts in SD units / scale factors
TRUE_NUM = (("mean", 0.3), ("scale", 1.3), ("mean", 0.15), ("mean", 0.5), ("scale", 0.75),
            ("mean", 0.2))
TRUE_CAT = (("freq", 0.15), ("new", 0.05))
TINY_NUM = ("mean", 0.01)
TINY_CAT = ("freq", 0.01)

FloatArray = npt.NDArray[np.float64]


# ----------------------------------------------------------------------------- data
@dataclass(frozen=True)
class ColumnSpec:
    index: int
    name: str
    kind: str  # one of NUM_KINDS or "categorical"
    params: tuple[float, ...]
    shift: str  # "none", "mean", "scale", "freq" or "new"
    amount: float
    truth: str  # "shifted", "tiny" or "none"

    @property
    def numeric(self) -> bool:
        return self.kind != "categorical"

    def describe(self) -> str:
        if self.shift == "none":
            what = "untouched"
        elif self.shift == "mean":
            what = f"mean {self.amount:+.2f} SD"
        elif self.shift == "scale":
            what = f"scale x{self.amount:g}"
        elif self.shift == "freq":
            to = "the rarest" if self.truth == "shifted" else "the 2nd"
            what = f"top category -{self.amount * 100:g} pts to {to}"
        else:
            what = f"new category {self.amount:.0%}"
        kind = f"categorical k={int(self.params[0])}" if self.kind == "categorical" else self.kind
        return f"{kind}, {what}"


def make_spec(n_cols: int, seed: int) -> list[ColumnSpec]:
    """Columns, their distributions and which are shifted (deterministic in the seed)."""
    if n_cols < 15:
        raise ValueError("--sizes: at least 15 columns (3 categorical) are needed")
    cat_idx = [i for i in range(n_cols) if i % 5 == 4]  # 20 % categorical
    num_idx = [i for i in range(n_cols) if i % 5 != 4]
    rng = np.random.default_rng([seed, n_cols])
    num_order = [int(i) for i in rng.permutation(num_idx)]
    cat_order = [int(i) for i in rng.permutation(cat_idx)]
    n_true_num, n_tiny_num = max(2, round(0.1 * len(num_idx))), max(2, round(0.2 * len(num_idx)))
    n_true_cat, n_tiny_cat = max(2, round(0.1 * len(cat_idx))), max(1, round(0.2 * len(cat_idx)))
    shifts: dict[int, tuple[str, float, str]] = {}
    for j, i in enumerate(num_order[:n_true_num]):
        shifts[i] = (*TRUE_NUM[j % len(TRUE_NUM)], "shifted")
    for i in num_order[n_true_num:n_true_num + n_tiny_num]:
        shifts[i] = (*TINY_NUM, "tiny")
    for j, i in enumerate(cat_order[:n_true_cat]):
        shifts[i] = (*TRUE_CAT[j % len(TRUE_CAT)], "shifted")
    for i in cat_order[n_true_cat:n_true_cat + n_tiny_cat]:
        shifts[i] = (*TINY_CAT, "tiny")
    spec = []
    for i in range(n_cols):
        p = np.random.default_rng([seed, i, 0])
        params: tuple[float, ...]
        if i in cat_idx:
            kind, params = "categorical", (float(p.integers(5, 31)), p.uniform(0.8, 1.4))
            name = f"c{i:03d}"
        else:
            kind = NUM_KINDS[num_idx.index(i) % len(NUM_KINDS)]
            params = tuple(p.uniform(lo, hi) for lo, hi in NUM_PARAMS[kind])
            name = f"x{i:03d}"
        shift, amount, truth = shifts.get(i, ("none", 0.0, "none"))
        spec.append(ColumnSpec(i, name, kind, tuple(float(v) for v in params), shift, amount,
                               truth))
    return spec


def _continuous(col: ColumnSpec, n: int, rng: np.random.Generator) -> FloatArray:
    a = col.params
    if col.kind == "normal":
        return rng.normal(a[0], a[1], n)
    if col.kind == "lognormal":
        return rng.lognormal(a[0], a[1], n)
    second = rng.random(n) < a[0]  # mixture: weight a[0] on N(a[1], a[3])
    return np.where(second, rng.normal(a[1], a[3], n), rng.normal(0.0, a[2], n))


def _categories(col: ColumnSpec) -> tuple[npt.NDArray[np.object_], FloatArray]:
    k, a = int(col.params[0]), col.params[1]
    shares = 1.0 / np.arange(1, k + 1) ** a
    shares = shares / shares.sum()
    order = np.random.default_rng([col.index, k]).permutation(k)  # top category is not v00
    labels = np.array([f"v{j:02d}" for j in order], dtype=object)
    return labels, shares


def draw(col: ColumnSpec, n: int, seed: int, current: bool) -> npt.NDArray[Any]:
    """One column of the reference (``current=False``) or of the current frame."""
    rng = np.random.default_rng([seed, col.index, 2 if current else 1])
    shift = col.shift if current else "none"
    d = col.amount
    if col.kind == "categorical":
        labels, p = _categories(col)
        if shift == "freq":
            top = int(np.argmax(p))
            to = int(np.argmin(p)) if col.truth == "shifted" else int(np.argsort(p)[-2])
            p = p.copy()
            p[top] -= d
            p[to] += d
        elif shift == "new":
            labels = np.append(labels, np.array(["new"], dtype=object))
            p = np.append(p * (1.0 - d), d)
        idx = np.searchsorted(np.cumsum(p), rng.random(n), side="right")
        return labels[np.minimum(idx, len(labels) - 1)]
    if col.kind == "poisson":
        lam = col.params[0]
        if shift == "mean":
            return rng.poisson(lam + d * math.sqrt(lam), n).astype(np.int64)
        if shift == "scale":  # same mean, SD x d: negative binomial (d > 1) or binomial
            if d > 1:
                q = 1.0 / (d * d)  # variance lam / q
                return rng.negative_binomial(lam * q / (1.0 - q), q, n).astype(np.int64)
            trials = max(round(lam / (1.0 - d * d)), 1)  # variance lam (1 - lam / trials)
            return rng.binomial(trials, lam / trials, n).astype(np.int64)
        return rng.poisson(lam, n).astype(np.int64)
    if col.kind == "age":
        mu, sd = col.params
        latent = rng.normal(mu, sd, n)
        if shift == "mean":
            latent += d * sd
        elif shift == "scale":
            latent = mu + d * (latent - mu)
        return np.clip(np.rint(latent), 18, 90).astype(np.int64)
    x = _continuous(col, n, rng)
    if shift == "mean":
        x += d * float(np.std(x))
    elif shift == "scale":
        m = float(np.mean(x))
        x = m + d * (x - m)
    return x


def make_frames(spec: list[ColumnSpec], n_rows: int, seed: int
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    frames = []
    for current in (False, True):
        frames.append(pd.DataFrame({c.name: draw(c, n_rows, seed, current) for c in spec}))
    return frames[0], frames[1]


def fingerprint(spec: list[ColumnSpec], ref: pd.DataFrame, cur: pd.DataFrame) -> str:
    """A short digest of the data, so every worker is seen to use the same frames."""
    total = 0.0
    for c in spec:
        for frame in (ref, cur):
            if c.numeric:
                total += float(frame[c.name].sum())
            else:
                total += float((frame[c.name] == frame[c.name].iloc[0]).sum())
    return f"{total:.6e}"


# ----------------------------------------------------------------------------- measuring
def _status_kb(key: str) -> int:
    m = re.search(rf"^{key}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    return int(m.group(1)) if m else 0


def _cpu_jiffies() -> int:
    """Busy clock ticks of all CPUs since boot, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields[:8]) - fields[3] - fields[4]  # minus idle and iowait


def release_free_memory() -> bool:
    """Hand memory that is freed but still held by the C allocator back to the system.

    Without this the arrays freed after generating the data stay resident, a later phase
    reuses them without raising the RSS, and its peak looks too small (a KS loop over 1M rows
    showed 1 MB). glibc only; elsewhere nothing is done and ``False`` is returned.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.malloc_trim(0))
    except (OSError, AttributeError):
        return False


class Phase:
    """Wall time, peak RSS above the start, own CPU and foreign CPU of one timed phase."""

    def __init__(self) -> None:
        gc.collect()
        release_free_memory()
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
            self.hwm_reset = True
        except OSError:
            self.hwm_reset = False
        self.rss0 = _status_kb("VmRSS")
        self.tick = os.sysconf("SC_CLK_TCK")
        t = os.times()
        self.cpu0 = t.user + t.system
        self.busy0 = _cpu_jiffies()
        self.t0 = time.perf_counter()

    def stop(self, name: str) -> dict[str, Any]:
        wall = time.perf_counter() - self.t0
        busy = _cpu_jiffies() - self.busy0
        t = os.times()
        cpu = t.user + t.system - self.cpu0
        foreign = max(busy / self.tick - cpu, 0.0) / wall if wall > 0 else 0.0
        return {"phase": name, "seconds": wall, "cpu_s": cpu, "foreign_cores": foreign,
                "peak_mb": (_status_kb("VmHWM") - self.rss0) / 1024,
                "rss_after_mb": _status_kb("VmRSS") / 1024, "rss_before_mb": self.rss0 / 1024,
                "hwm_reset": self.hwm_reset}


def emit(tag: str, payload: dict[str, Any]) -> None:
    print(f"{MARK}{tag} {json.dumps(payload)}", flush=True)


# ----------------------------------------------------------------------------- methods
Scores = dict[str, list[Any]]


def run_mlops(ref: pd.DataFrame, cur: pd.DataFrame, spec: list[ColumnSpec]
              ) -> tuple[list[dict[str, Any]], list[str], Scores, str]:
    from mlops.stats.drift import detect_drift
    from mlops.stats.profile import build_profile

    phase = Phase()
    profile = build_profile(ref)
    build = phase.stop("build_profile")
    phase = Phase()
    report = detect_drift(profile, cur)
    detect = phase.stop("detect_drift")
    scores = {f.feature: [f.effect_metric, f.effect_size, f.p_adjusted]
              for f in report.features}
    kinds = {c.name: ("numeric" if c.numeric else "categorical") for c in spec}
    wrong = [f.feature for f in report.features if f.kind != kinds[f.feature]]
    note = f"columns profiled with the wrong kind: {wrong}" if wrong else ""
    return [build, detect], list(report.drifted_features), scores, note


def run_scipy(ref: pd.DataFrame, cur: pd.DataFrame, spec: list[ColumnSpec]
              ) -> tuple[list[dict[str, Any]], list[str], Scores, str]:
    from scipy import stats

    phase = Phase()
    p_values: dict[str, float] = {}
    for c in spec:
        if c.numeric:
            p_values[c.name] = float(stats.ks_2samp(ref[c.name].to_numpy(),
                                                    cur[c.name].to_numpy()).pvalue)
        else:
            table = pd.concat([ref[c.name].value_counts(), cur[c.name].value_counts()],
                              axis=1).fillna(0).to_numpy().T
            p_values[c.name] = float(stats.chi2_contingency(table).pvalue)
    flagged = [name for name, p in p_values.items() if p < ALPHA]
    loop = phase.stop("loop")
    return [loop], flagged, {k: ["p", v] for k, v in p_values.items()}, ""


def run_evidently(ref: pd.DataFrame, cur: pd.DataFrame, spec: list[ColumnSpec]
                  ) -> tuple[list[dict[str, Any]], list[str], Scores, str]:
    # Imported here: evidently lives in .venv-bench only (see the Makefile's bench-env).
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=[c.name for c in spec if c.numeric],
                                categorical_columns=[c.name for c in spec if not c.numeric])
    phase = Phase()
    ref_ds = Dataset.from_pandas(ref, data_definition=definition)
    cur_ds = Dataset.from_pandas(cur, data_definition=definition)
    snapshot = Report([DataDriftPreset()], include_tests=True).run(
        current_data=cur_ds, reference_data=ref_ds)
    run = phase.stop("run")
    phase = Phase()
    result = snapshot.dict()
    extract = phase.stop("snapshot.dict")
    scores: Scores = {}
    flagged: list[str] = []
    count = None
    for metric in result["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith(":ValueDrift"):
            scores[config["column"]] = [config.get("method"), metric["value"],
                                        config.get("threshold")]
        elif config.get("type", "").endswith(":DriftedColumnsCount"):
            count = int(metric["value"]["count"])
    for test in result.get("tests", []):
        params = test.get("metric_config", {}).get("params", {})
        if params.get("type", "").endswith(":ValueDrift") and test.get("status") == "FAIL":
            flagged.append(params["column"])
    note = ""
    if count is None or count != len(flagged):
        note = (f"DriftedColumnsCount says {count}, the failed Value Drift tests "
                f"{len(flagged)}")
    return [run, extract], flagged, scores, note


RUNNERS: dict[str, Callable[..., tuple[list[dict[str, Any]], list[str], Scores, str]]] = {
    "mlops": run_mlops, "mlops-blas1": run_mlops, "scipy": run_scipy,
    "evidently": run_evidently}


def worker(method: str, rows: int, cols: int, seed: int) -> int:
    spec = make_spec(cols, seed)
    if method == "evidently":  # import before the data and the baseline, not timed
        import evidently
        from evidently import Report  # noqa: F401
    elif method.startswith("mlops"):
        import mlops.stats.drift  # noqa: F401
    t0 = time.perf_counter()
    ref, cur = make_frames(spec, rows, seed)
    generated = time.perf_counter() - t0
    digest = fingerprint(spec, ref, cur)
    gc.collect()
    emit("START", {"rss_mb": _status_kb("VmRSS") / 1024, "generate_s": generated,
                   "fingerprint": digest})
    phases, flagged, scores, note = RUNNERS[method](ref, cur, spec)
    versions = {}
    if method == "evidently":
        versions["evidently"] = evidently.__version__
    emit("RESULT", {"phases": phases, "flagged": flagged, "scores": scores, "note": note,
                    "fingerprint": digest, "versions": versions})
    return 0


# ----------------------------------------------------------------------------- parent
@dataclass
class Outcome:
    method: str
    rows: int
    cols: int
    phases: list[dict[str, Any]] = field(default_factory=list)
    flagged: list[str] = field(default_factory=list)
    scores: Scores = field(default_factory=dict)
    note: str = ""
    fingerprint: str = ""
    timed_out: float | None = None  # seconds waited before the kill
    peak_so_far_mb: float | None = None
    failed: str = ""
    skipped: str = ""
    generate_s: float | None = None

    def phase(self, name: str) -> dict[str, Any] | None:
        return next((p for p in self.phases if p["phase"] == name), None)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.skipped and self.timed_out is None


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _reader(stream: Any, out: queue.Queue[str | None]) -> None:
    for line in stream:
        out.put(line)
    out.put(None)


def _hwm_mb(pid: int) -> float | None:
    try:
        m = re.search(r"^VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    except OSError:
        return None
    return int(m.group(1)) / 1024 if m else None


def run_worker(method: str, rows: int, cols: int, seed: int, timeout: float,
               log_dir: Path) -> Outcome:
    out = Outcome(method, rows, cols)
    argv = [sys.executable, str(Path(__file__).resolve()), "--worker", method,
            "--rows", str(rows), "--cols", str(cols), "--seed", str(seed)]
    # DO_NOT_TRACK: Evidently's telemetry (used by its UI only) stays off all the same.
    env = {**os.environ, "DO_NOT_TRACK": "1", "PYTHONUNBUFFERED": "1"}
    if method == "mlops-blas1":
        env["OPENBLAS_NUM_THREADS"] = "1"
    err_path = log_dir / f"drift-{method}-{rows}x{cols}.log"
    with err_path.open("w") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True, env=env,
                                cwd=ROOT, start_new_session=True)
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True).start()
    deadline = time.monotonic() + max(timeout, 600.0)  # generating the data
    started_at = None
    rss0 = 0.0
    try:
        while True:
            try:
                line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                if started_at is None:
                    out.failed = "no data after 600 s: generating them took too long"
                    break
                hwm = _hwm_mb(proc.pid)  # the worker reset its high-water mark at START
                out.timed_out = time.monotonic() - started_at
                out.peak_so_far_mb = hwm - rss0 if hwm is not None else None
                break
            if line is None:
                break
            if not line.startswith(MARK):
                continue
            tag, _, payload = line[len(MARK):].partition(" ")
            data = json.loads(payload)
            if tag == "START":
                started_at = time.monotonic()
                deadline = started_at + timeout
                rss0 = data["rss_mb"]
                out.generate_s = data["generate_s"]
                out.fingerprint = data["fingerprint"]
            elif tag == "RESULT":
                out.phases, out.flagged = data["phases"], data["flagged"]
                out.scores, out.note = data["scores"], data["note"]
                out.fingerprint = data["fingerprint"]
                if data["versions"]:
                    VERSIONS.update(data["versions"])
    finally:
        if proc.poll() is None and (out.timed_out is not None or out.failed):
            os.killpg(proc.pid, signal.SIGKILL)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            code = proc.wait()
    if out.timed_out is None and not out.phases and not out.failed:
        tail = err_path.read_text(errors="replace").strip().splitlines()[-8:]
        out.failed = f"worker exited with code {code}: " + " | ".join(tail)[-600:]
    return out


VERSIONS: dict[str, str] = {}


def versions() -> dict[str, str]:
    found = {"python": sys.version.split()[0]}
    for dist in ("numpy", "scipy", "pandas", "evidently", "mlops"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = "not installed"
    # outside a git checkout the commit is simply not printed
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, check=True).stdout.strip()
        found["mlops commit"] = head
    for name in ("drift.py", "profile.py"):  # the code measured, committed or not
        path = ROOT / "mlops" / "stats" / name
        if path.exists():
            found[name] = "sha256 " + hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return found


# ----------------------------------------------------------------------------- report
@dataclass
class Row:
    label: str
    outcome: Outcome
    seconds: float | None
    peak_mb: float | None
    decides: bool  # whether this row's flags are the method's verdicts
    comparable: bool  # whether this row gets the speed-up columns


def size_label(rows: int, cols: int) -> str:
    r = f"{rows // 1_000_000}M" if rows % 1_000_000 == 0 else (
        f"{rows // 1000}k" if rows % 1000 == 0 else str(rows))
    return f"{r} x {cols}"


def parse_size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)([kKmM]?)\s*[xX]\s*(\d+)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"size {text!r}: use ROWSxCOLS, e.g. 100kx20 or 1Mx200")
    rows = int(m.group(1)) * {"": 1, "k": 1000, "m": 1_000_000}[m.group(2).lower()]
    return rows, int(m.group(3))


def rows_for(outcomes: dict[str, Outcome]) -> list[Row]:
    rows: list[Row] = []
    m = outcomes.get("mlops")
    if m is not None:
        build, detect = m.phase("build_profile"), m.phase("detect_drift")
        if m.ok and build and detect:
            total_peak = max(build["peak_mb"],
                             detect["rss_before_mb"] - build["rss_before_mb"] + detect["peak_mb"])
            rows.append(Row("mlops detect_drift", m, detect["seconds"], detect["peak_mb"],
                            True, True))
            rows.append(Row("mlops build_profile (once)", m, build["seconds"],
                            build["peak_mb"], False, False))
            rows.append(Row("mlops build + detect", m, build["seconds"] + detect["seconds"],
                            total_peak, False, True))
        else:
            rows.append(Row("mlops detect_drift", m, None, None, True, True))
    m1 = outcomes.get("mlops-blas1")
    if m1 is not None:
        detect = m1.phase("detect_drift")
        rows.append(Row("(note) mlops, 1 BLAS thread", m1,
                        detect["seconds"] if detect else None,
                        detect["peak_mb"] if detect else None, True, True))
    s = outcomes.get("scipy")
    if s is not None:
        loop = s.phase("loop")
        rows.append(Row("scipy per-column loop", s, loop["seconds"] if loop else None,
                        loop["peak_mb"] if loop else None, True, True))
    e = outcomes.get("evidently")
    if e is not None:
        run = e.phase("run")
        rows.append(Row("Evidently DataDriftPreset", e, run["seconds"] if run else None,
                        run["peak_mb"] if run else e.peak_so_far_mb, True, True))
    return rows


def ref_time(outcome: Outcome | None, phase: str) -> tuple[float | None, bool]:
    """(seconds, is_lower_bound) of a reference method, for the speed-up columns."""
    if outcome is None:
        return None, False
    if outcome.timed_out is not None:
        return outcome.timed_out, True
    p = outcome.phase(phase)
    return (p["seconds"], False) if p else (None, False)


def speedup(base: tuple[float | None, bool], t: float | None) -> str:
    value, lower = base
    if value is None or t is None or t <= 0:
        return "-"
    x = value / t
    shown = f"{x:,.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}"
    return f"{'>' if lower else ''}{shown}x"


def confusion(flagged: list[str], spec: list[ColumnSpec]) -> dict[str, list[str]]:
    truth = {c.name: c.truth for c in spec}
    f = set(flagged)
    return {"tp": [n for n in truth if n in f and truth[n] == "shifted"],
            "fp": [n for n in truth if n in f and truth[n] != "shifted"],
            "fp_tiny": [n for n in truth if n in f and truth[n] == "tiny"],
            "fn": [n for n in truth if n not in f and truth[n] == "shifted"]}


def print_size(rows: int, cols: int, spec: list[ColumnSpec], outcomes: dict[str, Outcome],
               timeout: float) -> list[Row]:
    n_true = sum(c.truth == "shifted" for c in spec)
    n_tiny = sum(c.truth == "tiny" for c in spec)
    n_cat = sum(not c.numeric for c in spec)
    print(f"\n{size_label(rows, cols)}: {rows:,} rows per frame, {cols - n_cat} numeric + "
          f"{n_cat} categorical columns; {n_true} truly shifted, {n_tiny} tiny shifts, "
          f"{cols - n_true - n_tiny} untouched")
    header = (f"{'method':<28} {'time s':>9} {'peak MB':>8} {'flagged':>7} {'TP':>4} {'FP':>4} "
              f"{'(tiny)':>6} {'FN':>4} {'vs Evidently':>12} {'vs scipy':>9}")
    print(header)
    print("-" * len(header))
    evid = ref_time(outcomes.get("evidently"), "run")
    scip = ref_time(outcomes.get("scipy"), "loop")
    table = rows_for(outcomes)
    for row in table:
        o = row.outcome
        if o.skipped:
            print(f"{row.label:<28} not run: {o.skipped}")
            continue
        if o.failed:
            print(f"{row.label:<28} failed: {o.failed[:200]}")
            continue
        if o.timed_out is not None:
            peak = "-" if row.peak_mb is None else f">{row.peak_mb:,.0f}"
            print(f"{row.label:<28} {'>' + format(timeout, '.0f'):>9} {peak:>8}  "
                  f"timeout: killed after {o.timed_out:.0f} s")
            continue
        t = "-" if row.seconds is None else f"{row.seconds:.2f}"
        peak = "-" if row.peak_mb is None else f"{row.peak_mb:,.0f}"
        if row.decides:
            c = confusion(o.flagged, spec)
            counts = (f"{len(o.flagged):>7} {len(c['tp']):>4} {len(c['fp']):>4} "
                      f"{len(c['fp_tiny']):>6} {len(c['fn']):>4}")
        else:
            counts = f"{'':>7} {'':>4} {'':>4} {'':>6} {'':>4}"
        vs_e = speedup(evid, row.seconds) if row.comparable and o.method != "evidently" else ""
        vs_s = speedup(scip, row.seconds) if row.comparable and o.method != "scipy" else ""
        print(f"{row.label:<28} {t:>9} {peak:>8} {counts} {vs_e:>12} {vs_s:>9}")
    return table


def describe_scores(o: Outcome, name: str) -> str:
    s = o.scores.get(name)
    if not s:
        return ""
    if o.method.startswith("mlops"):
        metric = "W/SD" if s[0] == "wasserstein_norm" else s[0]
        return f"{metric} {s[1]:.3f}, BH p {s[2]:.1e}"
    if o.method == "scipy":
        return f"p {s[1]:.1e}"
    short = "W/SD" if "Wasserstein" in str(s[0]) else "JS" if "Jensen" in str(s[0]) else s[0]
    return f"{short} {s[1]:.3f} (threshold {s[2]})"


def mistakes(spec: list[ColumnSpec], outcomes: dict[str, Outcome], limit: int = 6) -> list[str]:
    by_name = {c.name: c for c in spec}
    lines = []
    plain = outcomes.get("mlops")
    for o in outcomes.values():
        if not o.ok or (o.method == "mlops-blas1" and plain is not None
                        and set(o.flagged) == set(plain.flagged)):
            continue
        c = confusion(o.flagged, spec)
        for key, what in (("fn", "missed"), ("fp", "false flags")):
            names = c[key]
            if not names:
                continue
            shown = [f"{n} ({by_name[n].describe()}; {describe_scores(o, n)})"
                     for n in names[:limit]]
            more = f" and {len(names) - limit} more" if len(names) > limit else ""
            lines.append(f"{o.method} {what}: " + "; ".join(shown) + more)
    return lines


def goals(results: dict[tuple[int, int], dict[str, Outcome]], seed: int
          ) -> list[tuple[str, str, str, str]]:
    rows: list[tuple[str, str, str, str]] = []

    def verdict(met: bool | None) -> str:
        return {True: "met", False: "NOT MET", None: "n/a"}[met]

    for (n, c), outcomes in results.items():
        label = size_label(n, c)
        m, s, e = (outcomes.get(k) for k in METHODS)
        detect = m.phase("detect_drift") if m and m.ok else None
        build = m.phase("build_profile") if m and m.ok else None
        if (n, c) == GOAL_SIZE and detect:
            base = ref_time(e, "run")
            if base[0] is not None:
                x = base[0] / detect["seconds"]
                total = base[0] / (detect["seconds"] + build["seconds"]) if build else None
                shown = f"{'>' if base[1] else ''}{x:,.0f}x"
                if total is not None:
                    shown += f" ({'>' if base[1] else ''}{total:,.0f}x with build)"
                rows.append((f"{label}: detect speed-up vs Evidently", shown,
                             f">= {GOAL_SPEEDUP:.0f}x", verdict(x >= GOAL_SPEEDUP)))
        if detect and s and s.ok:
            loop = s.phase("loop")
            if loop:
                rows.append((f"{label}: detect time vs scipy loop",
                             f"{detect['seconds']:.2f} vs {loop['seconds']:.2f} s",
                             "at or below", verdict(detect["seconds"] <= loop["seconds"])))
        table = {r.label: r for r in rows_for(outcomes)}
        mine, theirs = table.get("mlops build + detect"), table.get("Evidently DataDriftPreset")
        if mine and theirs and mine.peak_mb is not None and theirs.peak_mb is not None:
            lower = theirs.outcome.timed_out is not None
            rows.append((f"{label}: peak MB, build + detect vs Evidently",
                         f"{mine.peak_mb:,.0f} vs {'>' if lower else ''}{theirs.peak_mb:,.0f}",
                         "below", verdict(mine.peak_mb < theirs.peak_mb)))
        if n >= 1_000_000 and detect:
            spec = make_spec(c, seed)
            fp = {k: len(confusion(o.flagged, spec)["fp"]) for k, o in outcomes.items()
                  if o.ok}
            others = [k for k in ("scipy", "evidently") if k in fp]
            if others:
                met = all(fp["mlops"] < fp[k] for k in others)
                shown = f"{fp['mlops']} vs " + ", ".join(f"{k} {fp[k]}" for k in others)
                why = [f"{k}: no result" for k in ("scipy", "evidently") if k not in fp]
                why += [f"as many as {k}" for k in others if fp["mlops"] == fp[k]]
                rows.append((f"{label}: false flags vs "
                             + " and ".join(others), shown, "fewer than each",
                             verdict(met) + (f" ({'; '.join(why)})" if why else "")))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=DEFAULT_SIZES,
                        help=f"comma-separated ROWSxCOLS (default {DEFAULT_SIZES})")
    parser.add_argument("--quick", action="store_true", help=f"only {QUICK_SIZES}")
    parser.add_argument("--methods", default=",".join(ALL_METHODS),
                        help=f"comma-separated subset of {','.join(ALL_METHODS)}")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds per method and size before it is killed (default 600)")
    parser.add_argument("--skip", action="append", default=[], metavar="METHOD@SIZE",
                        help="leave one method out at one size, e.g. evidently@1Mx200 "
                             "(repeatable); it is reported as not run")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--worker", choices=ALL_METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cols", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.rows, args.cols, args.seed)
    seed = args.seed
    try:
        sizes = [parse_size(s) for s in (QUICK_SIZES if args.quick else args.sizes).split(",")]
        for _, cols in sizes:
            make_spec(cols, seed)  # fails early on too few columns
    except (argparse.ArgumentTypeError, ValueError) as exc:
        parser.error(str(exc))
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods or set(methods) - set(ALL_METHODS):
        parser.error(f"--methods: choose from {','.join(ALL_METHODS)}")
    skips = set()
    for item in args.skip:
        method, _, size = item.partition("@")
        if method not in ALL_METHODS or not size:
            parser.error(f"--skip {item!r}: use METHOD@ROWSxCOLS, e.g. evidently@1Mx200")
        try:
            skips.add((method, parse_size(size)))
        except argparse.ArgumentTypeError as exc:
            parser.error(str(exc))
    found = versions()
    if "evidently" in methods and found["evidently"] == "not installed":
        log("evidently is not installed here: run in .venv-bench (make bench-env, then "
            "make bench-drift)")
    log_dir = Path(tempfile.mkdtemp(prefix="mlops-bench-drift-"))  # the workers' stderr
    started = time.perf_counter()
    results: dict[tuple[int, int], dict[str, Outcome]] = {}
    for rows, cols in sizes:
        outcomes: dict[str, Outcome] = {}
        for method in [m for m in ALL_METHODS if m in methods]:
            if (method, (rows, cols)) in skips:
                outcomes[method] = Outcome(method, rows, cols, skipped="--skip")
                continue
            log(f"{size_label(rows, cols)}: {method} ...")
            o = run_worker(method, rows, cols, seed, args.timeout, log_dir)
            outcomes[method] = o
            spent = sum(p["seconds"] for p in o.phases)
            log(f"  {'failed: ' + o.failed if o.failed else 'timeout' if o.timed_out else ''}"
                f"{'' if o.failed or o.timed_out else f'{spent:.2f} s'} "
                f"(data generated in {o.generate_s or 0:.1f} s)")
        results[(rows, cols)] = outcomes

    print(f"\nDrift benchmark: reference vs current frames of the same size, 80% numeric / 20% "
          f"categorical columns, seed {seed}, one worker process per method and size, run one "
          f"after another, timeout {args.timeout:.0f} s, {os.cpu_count()} CPUs")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in {**found, **VERSIONS}.items()))
    notes: list[str] = []
    for (rows, cols), outcomes in results.items():
        spec = make_spec(cols, seed)
        print_size(rows, cols, spec, outcomes, args.timeout)
        prints = {o.fingerprint for o in outcomes.values() if o.fingerprint}
        if len(prints) > 1:
            notes.append(f"{size_label(rows, cols)}: the workers saw different data "
                         f"(fingerprints {sorted(prints)})")
        for o in outcomes.values():
            for p in o.phases:
                if p["foreign_cores"] > FOREIGN_LIMIT and p["seconds"] > 1.0:
                    notes.append(f"{size_label(rows, cols)} {o.method} {p['phase']}: other "
                                 f"processes used {p['foreign_cores']:.2f} cores meanwhile")
                if not p["hwm_reset"]:
                    notes.append(f"{o.method}: /proc/self/clear_refs not writable, its peak "
                                 "memory includes the data generation")
            if o.note:
                notes.append(f"{size_label(rows, cols)} {o.method}: {o.note}")
        for line in mistakes(spec, outcomes):
            print("  " + textwrap.fill(line, 96, subsequent_indent="    "))
        cpu = []
        for o in outcomes.values():
            for p in o.phases:
                if p["seconds"] > 0.05 and p["phase"] != "snapshot.dict":
                    cpu.append(f"{o.method} {p['phase']} {p['cpu_s'] / p['seconds']:.2f}")
        if cpu:
            print("  CPU cores used (CPU s / wall s): " + ", ".join(cpu))
        e = outcomes.get("evidently")
        extract = e.phase("snapshot.dict") if e else None
        if extract:
            print(f"  Evidently snapshot.dict() to read the flags: {extract['seconds']:.2f} s "
                  "more (not in its time)")

    rows_ = goals(results, seed)
    if rows_:
        print()
        print(f"{'goal':<52} {'value':>30} {'target':>16}  verdict")
        print("-" * 110)
        for name, shown, target, verdict in rows_:
            print(f"{name:<52} {shown:>30} {target:>16}  {verdict}")
    notes += [
        "time: wall seconds of the call(s) alone (data generated before; imports done "
        "before). mlops: detect_drift on a stored profile is the comparable time; build_profile "
        "runs once per model version. Evidently: Dataset.from_pandas x2 + Report.run",
        "peak MB: peak resident memory of the worker during the call above its resident "
        "memory just before (after gc + malloc_trim; Linux VmHWM reset via "
        "/proc/self/clear_refs); the frames themselves are not counted, the profile that "
        "build_profile returns is. 'build + detect' = the peak over both phases",
        "TP/FP/FN against the columns shifted on purpose; (tiny) = false flags on a "
        "0.01-SD or 1-point shift",
    ]
    print("\nnotes:")
    for note in notes:
        print("  - " + textwrap.fill(note, 96, subsequent_indent="    "))
    print(f"run time {time.perf_counter() - started:.0f} s")
    if any(o.failed for outs in results.values() for o in outs.values()):
        log(f"kept the workers' logs in {log_dir}")
    else:
        shutil.rmtree(log_dir, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps({
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "versions": {**found, **VERSIONS},
            "results": [asdict(o) for outs in results.values() for o in outs.values()],
            "spec": {f"{r}x{c}": [asdict(s) for s in make_spec(c, seed)] for r, c in results}},
            indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
