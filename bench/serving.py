"""Serving benchmark: single-row inference over HTTP, our gateway vs MLflow, MLServer and a floor.

Run with ``make bench-serving`` (or ``.venv/bin/python bench/serving.py --duration 20``).
One scikit-learn LogisticRegression on 20 numeric features (fitted on a DataFrame with columns
f0..f19) is served by each target in turn, each its own server process with one worker on a
free loopback port, and loaded by ``wrk`` (16 connections, single-row POST bodies from a Lua
script cycling through distinct rows):

  (a) ``mlflow models serve --env-manager local --workers 1``: MLflow's scoring server,
      ``POST /invocations`` with ``dataframe_split``;
  (b) ``mlops serve --workers 1``: our gateway, prediction logging on, ``POST /v2/.../infer``;
  (c) the same with ``--no-log-predictions``;
  (d) a raw ASGI floor (``bench/floor_app.py``): uvicorn + uvloop + httptools + orjson and the
      model's ``predict`` on a one-row DataFrame, no framework; (d') the same fed a numpy
      array, reported as a note;
  (e) MLServer + mlserver-sklearn, one process (``parallel_workers: 0``), from ``.venv-bench``
      (``make bench-env``) since MLServer pins its own FastAPI and pydantic.

Every target gets the same rows. Before measuring, each distinct request body is sent once and
its answer checked against the local model's prediction, so a fast error never counts as
throughput; req/s counts 2xx answers only. Each target is warmed up, measured, and stopped
(its whole process group) before the next starts. A target that cannot run is skipped with
the reason. Servers keep their default settings, except that request logging is off where
the server has a switch for it (MLServer ``debug: false``, uvicorn's access log for MLflow),
and that MLServer, fed a bare tensor by the V2 protocol, is spared scikit-learn's per-request
"X does not have valid feature names" warning, as is the numpy floor.

The machine has 2 cores shared by wrk and the server: run it on an otherwise idle machine.
The CPU time of other processes is sampled before each target and during its measurement
(/proc/stat less the server's process group, wrk and this script); a busy machine is flagged.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
NAME = "bench"
FEATURES = [f"f{i}" for i in range(20)]
V2_PATH = f"/v2/models/{NAME}/infer"
_NO_NAMES = "X does not have valid feature names"
FOREIGN_LIMIT = 0.15  # cores used by other processes during a measurement before we flag it

# Child processes inherit none of these: they would point a server at another store/config.
_SCRUB_PREFIXES = ("MLOPS_", "MLSERVER_", "MLFLOW_", "PROMETHEUS_MULTIPROC_DIR", "UVICORN_")


@dataclass
class Result:
    key: str
    label: str
    rps: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    requests: int = 0
    errors: int = 0
    error_detail: str = ""
    skipped: str = ""
    startup_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Target:
    key: str
    label: str
    path: str                   # request path
    bodies: list[bytes]         # request bodies, one per distinct row
    ready_path: str
    extract: Callable[[Any], list[Any]]   # response JSON -> predictions
    prepare: Callable[[], tuple[list[str], dict[str, str], Path]]  # -> argv, env, cwd
    port: int = 0


# ----------------------------------------------------------------------------- processes
class Servers:
    """Every server runs in its own session (process group); all of them die in ``stop_all``."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], env: dict[str, str], cwd: Path, log: Path
              ) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.procs.append(proc)
        return proc

    @staticmethod
    def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)

    def stop(self, proc: subprocess.Popen[bytes], grace: float = 15.0) -> None:
        """SIGTERM the group (graceful shutdown flushes logs), then SIGKILL what is left."""
        if proc.poll() is None:
            self._signal_group(proc, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=grace)
        self._signal_group(proc, signal.SIGKILL)  # stragglers in the group, if any
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self.procs):
            self.stop(proc, grace=5.0)


def _raise_interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(bin_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB_PREFIXES)}
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def _cpu_jiffies() -> tuple[int, int]:
    """All CPUs since boot, in clock ticks: (busy, total), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(fields[:8])  # guest time is already inside user/nice
    return total - fields[3] - fields[4], total  # minus idle and iowait


def cpu_busy(seconds: float = 1.0) -> float | None:
    """Share of all CPUs busy over ``seconds``, to flag a machine that is not idle before a
    target starts: other load on 2 cores skews every number."""
    try:
        busy0, total0 = _cpu_jiffies()
        time.sleep(seconds)
        busy1, total1 = _cpu_jiffies()
    except (OSError, ValueError, IndexError):
        return None
    return (busy1 - busy0) / (total1 - total0) if total1 > total0 else None


def _group_jiffies(pgid: int) -> int:
    """CPU ticks used so far by the live processes of one process group."""
    used = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            rest = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(rest[2]) == pgid:  # fields after "(comm)": state ppid pgrp ... utime stime
            used += int(rest[11]) + int(rest[12])
    return used


class ForeignLoad:
    """CPU that processes other than the server's group, wrk and this script used during a
    measurement, in cores: anything well above 0 means someone else shared the machine."""

    def __init__(self, server_pgid: int) -> None:
        self.pgid = server_pgid
        self.tick = os.sysconf("SC_CLK_TCK")
        self.start = self._sample()

    def _sample(self) -> tuple[float, float, float, float]:
        busy, _ = _cpu_jiffies()
        t = os.times()  # children: wrk runs reaped before the end sample count here
        mine = (t.user + t.system + t.children_user + t.children_system) * self.tick
        return time.monotonic(), busy, _group_jiffies(self.pgid), mine

    def cores(self) -> float | None:
        try:
            t1, busy1, group1, mine1 = self._sample()
        except (OSError, ValueError, IndexError):
            return None
        t0, busy0, group0, mine0 = self.start
        foreign = (busy1 - busy0) - (group1 - group0) - (mine1 - mine0)
        return max(foreign, 0.0) / self.tick / (t1 - t0) if t1 > t0 else None


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("      | " + line for line in text[-lines:])


# ----------------------------------------------------------------------------- HTTP checks
def http_request(port: int, method: str, path: str, body: bytes | None = None,
                 timeout: float = 10.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def wait_ready(proc: subprocess.Popen[bytes], port: int, path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before it was ready")
        try:
            status, _ = http_request(port, "GET", path, timeout=2.0)
            if status == 200:
                return
            last = f"HTTP {status}"
        except OSError as exc:
            last = type(exc).__name__
        time.sleep(0.2)
    raise RuntimeError(f"not ready after {timeout:g}s (GET {path}: {last})")


def verify(target: Target, expected: list[Any]) -> None:
    """Each distinct body once: a 200 whose prediction equals the local model's."""
    for i, (body, want) in enumerate(zip(target.bodies, expected, strict=True)):
        status, raw = http_request(target.port, "POST", target.path, body)
        if status != 200:
            raise RuntimeError(f"row {i}: HTTP {status}: {raw[:300]!r}")
        try:
            got = target.extract(json.loads(raw))
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise RuntimeError(f"row {i}: unexpected answer {raw[:300]!r} ({exc})") from exc
        if len(got) != 1 or got[0] != want:
            raise RuntimeError(f"row {i}: predicted {got!r}, the local model says [{want!r}]")


def predictions_v2(answer: Any) -> list[Any]:
    for out in answer["outputs"]:
        if out["name"] == "predict":
            return list(out["data"])
    raise KeyError("no 'predict' output")


def predictions_mlflow(answer: Any) -> list[Any]:
    return list(answer["predictions"])


# ----------------------------------------------------------------------------- wrk
LUA = """\
-- Generated by bench/serving.py: POST one of N pre-built single-row bodies per request.
local body_file = %(bodies)s
local path = %(path)s
local reqs, n, i = {}, 0, 0
function init(args)
  for line in io.lines(body_file) do
    n = n + 1
    reqs[n] = wrk.format("POST", path, {["Content-Type"] = "application/json"}, line)
  end
  i = math.random(n) - 1
end
function request()
  i = i %% n + 1
  return reqs[i]
end
"""

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise ValueError(f"cannot read latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str) -> dict[str, Any]:
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h)", out)
    if not done:
        raise ValueError("wrk printed no request count:\n" + out)
    requests = int(done.group(1))
    seconds = _ms(done.group(2) + done.group(3)) / 1e3
    pct = {m.group(1): _ms(m.group(2))
           for m in re.finditer(r"^\s*(50|75|90|99)(?:\.0+)?%\s+(\S+)", out, re.M)}
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    connect, read, write, timeout = (int(g) for g in sock.groups()) if sock else (0, 0, 0, 0)
    non2xx_m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    non2xx = int(non2xx_m.group(1)) if non2xx_m else 0
    ok = max(requests - non2xx, 0)
    detail = [f"{k} {v}" for k, v in (("non-2xx", non2xx), ("connect", connect),
                                       ("read", read), ("write", write),
                                       ("timeout", timeout)) if v]
    return {"requests": requests, "seconds": seconds, "rps": ok / seconds if seconds else 0.0,
            "p50_ms": pct.get("50"), "p99_ms": pct.get("99"),
            "errors": non2xx + connect + read + write + timeout, "error_detail": ", ".join(detail)}


def run_wrk(wrk: str, port: int, lua: Path, seconds: float, args: argparse.Namespace
            ) -> dict[str, Any]:
    argv = [wrk, "-t", str(args.threads), "-c", str(args.connections), "-d", f"{seconds:g}s",
            "--timeout", "10s", "--latency", "-s", str(lua), f"http://127.0.0.1:{port}"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr or proc.stdout}")
    return parse_wrk(proc.stdout)


# ----------------------------------------------------------------------------- model + data
def make_model(rows: int) -> tuple[Any, pd.DataFrame, pd.DataFrame]:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(2000 + rows, 20)), columns=FEATURES)
    y = (x["f0"] + 0.5 * x["f1"] - 0.25 * x["f2"] + rng.normal(scale=0.5, size=len(x)) > 0)
    train, test = x.iloc[:2000], x.iloc[2000:].reset_index(drop=True)
    model = LogisticRegression(max_iter=500).fit(train, y.iloc[:2000].astype(int))
    return model, train, test


MLSERVER_MODEL_HELPER = """\
# Written by bench/serving.py, run by .venv-bench's Python: rebuild the benchmark's fitted
# LogisticRegression from its parameters and save it with this venv's joblib/scikit-learn.
import json, sys
import joblib, numpy as np
from sklearn.linear_model import LogisticRegression

spec = json.load(open(sys.argv[1]))
model = LogisticRegression(**spec["params"])
model.coef_ = np.asarray(spec["coef"], dtype=np.float64)
model.intercept_ = np.asarray(spec["intercept"], dtype=np.float64)
model.classes_ = np.asarray(spec["classes"])
model.n_iter_ = np.asarray(spec["n_iter"], dtype=np.int32)
model.n_features_in_ = len(spec["features"])
model.feature_names_in_ = np.asarray(spec["features"], dtype=object)
x = np.asarray(spec["check_x"], dtype=np.float64)
import warnings
warnings.filterwarnings("ignore", message="X does not have valid feature names")
got = model.predict(x).tolist()
if got != spec["check_y"]:
    sys.exit(f"rebuilt model disagrees: {got} != {spec['check_y']}")
joblib.dump(model, sys.argv[2])
import mlserver, sklearn
print(json.dumps({"mlserver": mlserver.__version__, "scikit-learn": sklearn.__version__}))
"""


# ----------------------------------------------------------------------------- report
def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(results: list[Result]) -> None:
    print()
    print(f"{'target':<50} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    print("-" * 86)
    for r in results:
        if r.skipped:
            print(f"{r.label:<50} skipped: {r.skipped}")
            continue
        print(f"{r.label:<50} {fmt(r.rps, ',.0f'):>9} {fmt(r.p50_ms, '.2f'):>8} "
              f"{fmt(r.p99_ms, '.2f'):>8} {r.errors:>7}")


def ratios(by_key: dict[str, Result]) -> list[dict[str, Any]]:
    def rps(key: str) -> float | None:
        r = by_key.get(key)
        return r.rps if r is not None and not r.skipped and r.rps else None

    def p99(key: str) -> float | None:
        r = by_key.get(key)
        return r.p99_ms if r is not None and not r.skipped else None

    b = rps("b")
    rows: list[dict[str, Any]] = []

    def ratio(name: str, other: str, goal: float, goal_text: str) -> None:
        o = rps(other)
        value = b / o if b and o else None
        rows.append({"name": name, "value": value, "shown": "-" if value is None else f"{value:.2f}x",
                     "goal": goal_text, "met": None if value is None else value >= goal})

    ratio("(b)/(e) req/s, gateway vs MLServer", "e", 2.0, ">= 2x")
    ratio("(b)/(a) req/s, gateway vs MLflow", "a", 20.0, ">= 20x")
    for other, name in (("e", "MLServer"), ("a", "MLflow")):
        pb, po = p99("b"), p99(other)
        met = None if pb is None or po is None else pb < po
        rows.append({"name": f"p99 (b) vs ({other}) {name}", "value": pb,
                     "shown": "-" if met is None else f"{pb:.2f} vs {po:.2f} ms",
                     "goal": "(b) below", "met": met})
    d = rps("d")
    value = b / d if b and d else None
    rows.append({"name": "(b)/(d) req/s, gateway vs raw floor", "value": value,
                 "shown": "-" if value is None else f"{value:.0%}",
                 "goal": ">= 25%", "met": None if value is None else value >= 0.25})
    c = rps("c")
    cost = 1 - b / c if b and c else None
    rows.append({"name": "logging cost 1 - (b)/(c)", "value": cost,
                 "shown": "-" if cost is None else f"{cost:.1%}",
                 "goal": "<= 10%", "met": None if cost is None else cost <= 0.10})
    return rows


def print_ratios(rows: list[dict[str, Any]]) -> None:
    print()
    print(f"{'ratio':<50} {'value':>20} {'goal':>10}  verdict")
    print("-" * 92)
    for row in rows:
        verdict = {True: "met", False: "NOT MET", None: "n/a"}[row["met"]]
        print(f"{row['name']:<50} {row['shown']:>20} {row['goal']:>10}  {verdict}")


# ----------------------------------------------------------------------------- main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=20.0,
                        help="measured seconds per target (default 20)")
    parser.add_argument("--warmup", type=float, default=5.0,
                        help="warm-up seconds per target before measuring (default 5)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1,
                        help="wrk threads (default 1: leave the second core to the server)")
    parser.add_argument("--rows", type=int, default=100,
                        help="distinct single-row bodies the Lua script cycles through")
    parser.add_argument("--targets", default="a,b,c,d,d2,e",
                        help="comma-separated subset of a,b,c,d,d2,e (d2: floor on numpy)")
    parser.add_argument("--startup-timeout", type=float, default=120.0)
    parser.add_argument("--bench-venv", type=Path, default=ROOT / ".venv-bench",
                        help="venv with mlserver + mlserver-sklearn (make bench-env)")
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    parser.add_argument("--keep-tmp", action="store_true",
                        help="keep the temporary folder (server logs, models) for inspection")
    args = parser.parse_args()
    wanted = {t.strip() for t in args.targets.split(",") if t.strip()}
    unknown = wanted - {"a", "b", "c", "d", "d2", "e"}
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    if args.threads > args.connections:
        parser.error("--threads must not exceed --connections")

    wrk = shutil.which("wrk")
    if wrk is None:
        print("error: `wrk` is not installed; this benchmark needs it to generate load.\n"
              "  Debian/Ubuntu: sudo apt-get install -y wrk    macOS: brew install wrk",
              file=sys.stderr)
        return 2

    warnings.filterwarnings("ignore")
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGHUP, _raise_interrupt)
    servers = Servers()
    tmp = Path(tempfile.mkdtemp(prefix="mlops-bench-serving-"))
    try:
        return run(args, wanted, wrk, servers, tmp)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping servers", file=sys.stderr)
        return 130
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # let cleanup finish
            signal.signal(sig, signal.SIG_IGN)
        servers.stop_all()
        if args.keep_tmp:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(args: argparse.Namespace, wanted: set[str], wrk: str, servers: Servers, tmp: Path
        ) -> int:
    bin_dir = Path(sys.executable).parent  # not resolved: the venv's bin, where mlflow lives
    versions: dict[str, str] = {"python": sys.version.split()[0]}
    log(f"temporary folder {tmp}")

    # --- one model, one set of rows -------------------------------------------------------
    import sklearn

    versions["scikit-learn"] = sklearn.__version__
    model, train, test = make_model(args.rows)
    expected = [v.item() for v in model.predict(test)]
    v2_bodies = [json.dumps({"inputs": [{"name": "input-0", "shape": [1, 20], "datatype": "FP64",
                                         "data": row}]}).encode()
                 for row in test.to_numpy().tolist()]
    mlflow_bodies = [json.dumps({"dataframe_split": {"columns": FEATURES, "data": [row]}}).encode()
                     for row in test.to_numpy().tolist()]

    def mlops_home_env() -> dict[str, str]:
        return {"MLOPS_HOME": str(tmp / "mlops-home"),
                "MLOPS_CONFIG": str(tmp / "no-mlops.toml")}

    # --- (a) MLflow ----------------------------------------------------------------------
    def prepare_mlflow() -> tuple[list[str], dict[str, str], Path]:
        import mlflow
        import mlflow.sklearn

        versions["mlflow"] = mlflow.__version__
        folder = tmp / "mlflow-model"
        if not folder.exists():
            mlflow.sklearn.save_model(model, str(folder), input_example=train.head(10))
        argv = [str(bin_dir / "mlflow"), "models", "serve", "-m", str(folder), "--no-conda",
                "--env-manager", "local", "-h", "127.0.0.1", "-p", str(targets["a"].port),
                "--workers", "1"]
        # `mlflow models serve` execs `uvicorn` from PATH; its access log is on by default and
        # has no CLI switch there, uvicorn's own environment variable turns it off.
        env = child_env(bin_dir, MLFLOW_TRACKING_URI=(tmp / "mlruns").as_uri(),
                        UVICORN_ACCESS_LOG="false")
        return argv, env, tmp

    # --- (b), (c) our gateway ------------------------------------------------------------
    registered: list[str] = []

    def prepare_gateway(log_predictions: bool) -> tuple[list[str], dict[str, str], Path]:
        if not registered:
            import skops.io as sio

            os.environ.update(mlops_home_env())
            for key in [k for k in os.environ if k.startswith("MLOPS_")]:
                if key not in ("MLOPS_HOME", "MLOPS_CONFIG"):
                    del os.environ[key]
            from mlops.config import Settings
            from mlops.registry.service import ModelRegistry

            model_file = tmp / "model.skops"
            sio.dump(model, model_file)
            reg = ModelRegistry(Settings(home=tmp / "mlops-home"))
            mv = reg.register(NAME, str(model_file), input_example=train.head(10))
            reg.promote(NAME, mv.version, "production")
            registered.append(mv.version)
        port = targets["b" if log_predictions else "c"].port
        argv = [sys.executable, "-m", "mlops", "serve", "--host", "127.0.0.1", "--port",
                str(port), "--env", "production", "--workers", "1"]
        if not log_predictions:
            argv.append("--no-log-predictions")
        return argv, child_env(bin_dir, **mlops_home_env()), tmp

    # --- (d), (d') raw floor -------------------------------------------------------------
    def prepare_floor(mode: str) -> tuple[list[str], dict[str, str], Path]:
        import joblib

        pkl = tmp / "floor-model.joblib"
        if not pkl.exists():
            joblib.dump(model, pkl)
        port = targets["d" if mode == "frame" else "d2"].port
        argv = [sys.executable, "-m", "uvicorn", "floor_app:app", "--app-dir",
                str(ROOT / "bench"), "--host", "127.0.0.1", "--port", str(port),
                "--loop", "uvloop", "--http", "httptools", "--no-access-log",
                "--log-level", "warning"]
        env = child_env(bin_dir, BENCH_FLOOR_MODEL=str(pkl), BENCH_FLOOR_NAME=NAME,
                        BENCH_FLOOR_INPUT=mode)
        return argv, env, tmp

    # --- (e) MLServer --------------------------------------------------------------------
    def prepare_mlserver() -> tuple[list[str], dict[str, str], Path]:
        venv = args.bench_venv
        py, mlserver = venv / "bin" / "python", venv / "bin" / "mlserver"
        if not (py.exists() and mlserver.exists()):
            raise SkipTarget(f"{venv} has no mlserver; create it with `make bench-env`")
        repo = tmp / "mlserver"
        (repo / NAME).mkdir(parents=True, exist_ok=True)
        spec = {"params": {k: v for k, v in model.get_params().items()
                           if isinstance(v, (int, float, str, bool, type(None)))},
                "coef": model.coef_.tolist(), "intercept": model.intercept_.tolist(),
                "classes": model.classes_.tolist(), "n_iter": model.n_iter_.tolist(),
                "features": FEATURES, "check_x": test.to_numpy().tolist(),
                "check_y": expected}
        (tmp / "mlserver-spec.json").write_text(json.dumps(spec))
        helper = tmp / "mlserver_model.py"
        helper.write_text(MLSERVER_MODEL_HELPER)
        done = subprocess.run([str(py), str(helper), str(tmp / "mlserver-spec.json"),
                               str(repo / NAME / "model.joblib")],
                              capture_output=True, text=True, timeout=300,
                              env=child_env(venv / "bin"))
        if done.returncode != 0:
            raise SkipTarget("could not save the model with .venv-bench's Python: "
                             + (done.stderr.strip() or done.stdout.strip())[-400:])
        info = json.loads(done.stdout.strip().splitlines()[-1])
        versions["mlserver"] = info["mlserver"]
        versions["scikit-learn (.venv-bench)"] = info["scikit-learn"]
        port = targets["e"].port
        (repo / "settings.json").write_text(json.dumps({
            "debug": False, "parallel_workers": 0, "host": "127.0.0.1", "http_port": port,
            "grpc_port": free_port(), "metrics_port": free_port(),
            "metrics_dir": str(tmp / "mlserver-metrics")}))
        (repo / NAME / "model-settings.json").write_text(json.dumps({
            "name": NAME, "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": "./model.joblib", "version": "1"}}))
        # The model was fitted on named columns and V2 tensors carry none, so scikit-learn
        # warns on every predict (its check_array resets the warnings registry): silence that
        # one warning, as the numpy floor (d') does, so MLServer is not timed writing it.
        env = child_env(venv / "bin", PYTHONWARNINGS=f"ignore:{_NO_NAMES}:UserWarning")
        return [str(mlserver), "start", str(repo)], env, repo

    targets = {
        "a": Target("a", "(a) MLflow scoring server, 1 worker", "/invocations", mlflow_bodies,
                    "/ping", predictions_mlflow, prepare_mlflow),
        "b": Target("b", "(b) mlops gateway, 1 worker, logging on", V2_PATH, v2_bodies,
                    "/v2/health/ready", predictions_v2, lambda: prepare_gateway(True)),
        "c": Target("c", "(c) mlops gateway, 1 worker, --no-log-predictions", V2_PATH,
                    v2_bodies, "/v2/health/ready", predictions_v2,
                    lambda: prepare_gateway(False)),
        "d": Target("d", "(d) raw ASGI floor, DataFrame input", V2_PATH, v2_bodies,
                    "/v2/health/ready", predictions_v2, lambda: prepare_floor("frame")),
        "d2": Target("d2", "(d') raw ASGI floor, numpy input (note)", V2_PATH, v2_bodies,
                     "/v2/health/ready", predictions_v2, lambda: prepare_floor("numpy")),
        "e": Target("e", "(e) MLServer + mlserver-sklearn, 1 process", V2_PATH, v2_bodies,
                    f"/v2/models/{NAME}/ready", predictions_v2, prepare_mlserver),
    }
    order = ["a", "b", "c", "d", "d2", "e"]
    log(f"wrk: {args.threads} thread(s), {args.connections} connections, "
        f"{args.warmup:g}s warm-up + {args.duration:g}s measured per target, "
        f"{len(test)} distinct rows")

    results: list[Result] = []
    for key in order:
        target = targets[key]
        result = Result(key, target.label)
        results.append(result)
        if key not in wanted:
            result.skipped = "not selected (--targets)"
            continue
        log(f"\n{target.label}")
        busy = cpu_busy()
        if busy is not None and busy > 0.15:
            result.extra["busy_before"] = busy
            log(f"  warning: the machine was {busy:.0%} busy before this target started")
        logfile = tmp / f"server-{key}.log"
        proc = None
        try:
            target.port = free_port()
            argv, env, cwd = target.prepare()
            t0 = time.perf_counter()
            proc = servers.start(argv, env, cwd, logfile)
            wait_ready(proc, target.port, target.ready_path, args.startup_timeout)
            result.startup_s = time.perf_counter() - t0
            log(f"  ready in {result.startup_s:.1f}s on port {target.port}")
            verify(target, expected)
            log(f"  {len(target.bodies)} distinct bodies answered with the local model's "
                "predictions")
            lua = tmp / f"load-{key}.lua"
            bodies_file = tmp / f"bodies-{key}.jsonl"
            bodies_file.write_bytes(b"\n".join(target.bodies) + b"\n")
            lua.write_text(LUA % {"bodies": json.dumps(str(bodies_file)),
                                  "path": json.dumps(target.path)})
            if args.warmup > 0:
                warm = run_wrk(wrk, target.port, lua, args.warmup, args)
                log(f"  warm-up: {warm['rps']:,.0f} req/s")
            try:
                monitor: ForeignLoad | None = ForeignLoad(proc.pid)
            except (OSError, ValueError, IndexError):
                monitor = None
            stats = run_wrk(wrk, target.port, lua, args.duration, args)
            foreign = monitor.cores() if monitor is not None else None
            if foreign is not None:
                result.extra["foreign_cores"] = round(foreign, 3)
                if foreign > FOREIGN_LIMIT:
                    log(f"  warning: other processes used {foreign:.2f} cores meanwhile")
            result.rps, result.p50_ms, result.p99_ms = (stats["rps"], stats["p50_ms"],
                                                        stats["p99_ms"])
            result.requests, result.errors = stats["requests"], stats["errors"]
            result.error_detail = stats["error_detail"]
            log(f"  measured: {result.rps:,.0f} req/s, p50 {fmt(result.p50_ms, '.2f')} ms, "
                f"p99 {fmt(result.p99_ms, '.2f')} ms, errors {result.errors}"
                + (f" ({result.error_detail})" if result.error_detail else ""))
            if proc.poll() is not None:
                raise RuntimeError(f"server died during the run (code {proc.returncode})")
        except SkipTarget as exc:
            result.skipped = str(exc)
            log(f"  skipped: {exc}")
        except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as exc:
            result.skipped = f"failed: {exc}"
            result.rps = result.p50_ms = result.p99_ms = None
            log(f"  FAILED: {exc}\n    last lines of its log:\n{tail(logfile)}")
        finally:
            if proc is not None:
                servers.stop(proc)

    by_key = {r.key: r for r in results}
    print(f"\nServing benchmark: LogisticRegression, 20 features, single-row requests, "
          f"wrk -t{args.threads} -c{args.connections}, {args.duration:g}s measured after "
          f"{args.warmup:g}s warm-up per target, {os.cpu_count()} CPUs")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items())
          + f", {wrk_version(wrk)}")
    print_table([r for r in results if r.key != "d2"])
    rows = ratios(by_key)
    print_ratios(rows)

    notes = []
    d, d2 = by_key["d"], by_key["d2"]
    if "d2" in wanted and not d2.skipped:
        vs = (f" ({d2.rps / d.rps:.2f}x the DataFrame floor)"
              if d.rps and not d.skipped and d2.rps else "")
        notes.append(f"floor fed a plain numpy array instead of a DataFrame: {d2.rps:,.0f} req/s, "
                     f"p50 {fmt(d2.p50_ms, '.2f')} ms, p99 {fmt(d2.p99_ms, '.2f')} ms{vs}; "
                     "(d) gives the model a DataFrame with feature names, as it was fitted")
    for r in results:
        foreign = r.extra.get("foreign_cores")
        if foreign is not None and foreign > FOREIGN_LIMIT:
            notes.append(f"{r.label}: other processes used {foreign:.2f} of "
                         f"{os.cpu_count()} cores during its measurement; its numbers are "
                         "suspect, run again on an idle machine")
        elif r.extra.get("busy_before"):
            notes.append(f"{r.label}: the machine was {r.extra['busy_before']:.0%} busy just "
                         "before it started, though not during its measurement")
        if r.errors and not r.skipped:
            notes.append(f"{r.label}: {r.errors} errors during the run ({r.error_detail}); "
                         "req/s counts 2xx answers only")
    notes.append("req/s = 2xx answers per second; p50/p99 from wrk --latency (closed loop, "
                 f"{args.connections} connections); errors = non-2xx + socket errors")
    print("\nnotes:")
    for note in notes:
        print("  - " + textwrap.fill(note, 96, subsequent_indent="    "))

    if args.json:
        args.json.write_text(json.dumps({
            "settings": {k: (str(v) if isinstance(v, Path) else v)
                         for k, v in vars(args).items()},
            "versions": versions, "results": [asdict(r) for r in results], "ratios": rows},
            indent=2))
        print(f"\nwrote {args.json}")
    return 0


class SkipTarget(Exception):
    """A target that cannot run here, with the reason."""


def wrk_version(wrk: str) -> str:
    done = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
    m = re.search(r"wrk (\S+)", done.stdout + done.stderr)
    return f"wrk {m.group(1)}" if m else "wrk"


if __name__ == "__main__":
    sys.exit(main())
