"""Serving benchmark: single-row inference on every request form, gateway vs MLServer/MLflow.

Our gateway against MLServer, ``mlflow models serve`` and a raw floor, for two models.

Run with ``make bench-serving`` (or ``.venv/bin/python bench/serving.py``; ``--quick`` for a
smoke check). Two scikit-learn models, fitted on the same DataFrame (columns f0..f19): a
LogisticRegression and a 200-tree RandomForestClassifier (max_depth 10). For each model,
each server runs in turn, its own process group with one worker on free loopback ports, and
is measured on each request form it takes:

  forms: V2 JSON with one ``[1,20]`` FP64 tensor (``json``); V2 JSON with one tensor per
      column, as ``GET /v2/models/NAME`` advertises (``cols``); Triton's binary tensor
      extension, a JSON header plus the row's little-endian FP64 bytes (``binary``); gRPC
      ``ModelInfer`` with ``raw_input_contents`` (``grpc``); MLflow ``/invocations`` with
      ``dataframe_split`` (``invocations``).
  servers:
    gw        ``mlops serve --workers 1 --grpc-port P``, prediction log on: every form;
    gw-nolog  the same with ``--no-log-predictions``: json (the log's cost; it is judged on
              a separate interleaved measurement, ``bench/serving_paired.py``: both up at
              once, loaded alternately, ``--rounds`` rounds in ABBA order, medians);
    gw-w2     ``--workers 2``, log on: json (1 vs 2 workers);
    gw-onnx   forest only: the same forest version compiled to ONNX
              (``ModelRegistry.compile``, checked equal on the benchmark's rows) and served
              by the gateway as its compiled runtime (``x-model-runtime: onnx``): every form;
    floor, floor-np   LR only: a raw ASGI floor (``bench/floor_app.py``: uvicorn + uvloop
              + httptools + orjson, ``predict`` on a one-row DataFrame; floor-np on a numpy
              array): json;
    mlserver  MLServer + mlserver-sklearn, one process (``parallel_workers: 0``), from
              ``.venv-bench`` (``make bench-env``): json, cols (with the request parameter
              ``content_type: pd``, which MLServer needs to read several inputs as one
              DataFrame; the gateway's exact per-column body is sent once and MLServer's
              answer noted), grpc on its grpc_port (the 2x goal judged on an interleaved
              measurement beside the gateway, as the log's cost is), and binary probed
              (MLServer 1.7 does not implement the binary extension over HTTP: reported
              with its answer);
    mlflow    ``mlflow models serve --env-manager local --workers 1``: invocations.

Load: HTTP forms are driven by ``wrk`` (16 connections, a generated Lua script cycling
through the distinct rows' pre-built bodies, binary or not); gRPC by ``bench/grpc_load.py``
in its own process (``grpc.aio``, 16 calls in flight on one channel, the same rows and
durations). That client costs more CPU per call than wrk (Python), which it takes from the
server on 2 cores; both servers' gRPC forms are measured with it, and the output shows the
CPU each load generator used.

Every form of every target is checked first: each distinct body is sent once and its answer
compared with the local model's prediction (and ``x-model-runtime`` on the gateway), so a
fast error never counts as throughput; req/s counts 2xx (gRPC: OK) answers only. Each form
is warmed up, then measured; each server is stopped (its whole process group) before the
next starts. A target that cannot run is skipped with the reason. Servers keep their
default settings, except that request logging is off where the server has a switch for it
(MLServer ``debug: false``, uvicorn's access log for MLflow), and that MLServer and the
numpy floor, fed bare tensors, are spared scikit-learn's per-request "X does not have valid
feature names" warning.

The machine has 2 cores shared by the load generator and the server: run it on an otherwise
idle machine. The CPU time of other processes is sampled before each server starts and
during each measurement (/proc/stat less the server's process group, the load generator and
this script); a busy machine is flagged.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from serving_infra import (
    ROOT,
    ForeignLoad,
    Load,
    Refused,
    Servers,
    SkipTarget,
    batch_counts,
    child_env,
    children_cpu,
    cpu_busy,
    free_port,
    http_request,
    raise_interrupt,
    run_grpc,
    run_wrk,
    tail,
    verify_http,
    wait_ready,
    write_lua,
    wrk_version,
)
from serving_paired import Paired, measure_paired
from serving_payloads import (
    FORMS,
    MLSERVER_MODEL_HELPER,
    MODELS,
    BenchModel,
    load_for,
    make_models,
)
from serving_report import (
    GRPC_PAIR,
    LOG_COST,
    Result,
    fmt,
    goals,
    print_goals,
    print_notes,
    print_table,
)

_NO_NAMES = "X does not have valid feature names"
FOREIGN_LIMIT = 0.15  # cores used by other processes during a measurement before we flag it

#: servers, in table order, with their labels
SERVERS = {
    "gw": "mlops gateway (log on)",
    "gw-nolog": "mlops gateway --no-log-predictions",
    "gw-w2": "mlops gateway --workers 2 (log on)",
    "gw-onnx": "mlops gateway, compiled ONNX (log on)",
    "floor": "raw ASGI floor, DataFrame input",
    "floor-np": "raw ASGI floor, numpy input (note)",
    "floor-grpc": "raw grpc.aio floor, numpy input",
    "mlserver": "MLServer (mlserver-sklearn), 1 process",
    "mlflow": "mlflow models serve, 1 worker",
}
RUN_ORDER = ["mlflow", "gw", "gw-nolog", "gw-w2", "floor", "floor-np", "floor-grpc", "mlserver",
             "gw-onnx"]
QUICK = {"models": "lr,forest", "servers": "gw,gw-onnx,mlserver", "forms": "json,binary,grpc",
         "duration": 3.0, "warmup": 1.0, "rows": 20, "rounds": 2, "round_seconds": 3.0}
DEFAULTS = {"models": ",".join(MODELS), "servers": ",".join(SERVERS), "forms": ",".join(FORMS),
            "duration": 20.0, "warmup": 5.0, "rows": 100, "rounds": 10, "round_seconds": 10.0}


@dataclass
class Target:
    """One server process for one model, measured on each of its request forms."""

    key: str                    # MODEL/SERVER
    label: str
    model: BenchModel
    server: str
    forms: dict[str, Load | None]  # form -> its HTTP load (None: gRPC)
    ready_path: str
    prepare: Callable[[Target], tuple[list[str], dict[str, str], Path]]  # argv, env, cwd
    unsupported: dict[str, str] = field(default_factory=dict)  # form -> why not served
    optional: set[str] = field(default_factory=set)  # forms a refusal means "not supported"
    probes: dict[str, Load] = field(default_factory=dict)  # form -> body sent once, noted
    runtime: str | None = None  # the x-model-runtime the gateway must answer with
    port: int = 0
    grpc_port: int | None = None


class Bench:
    """The targets of each model, how each server is prepared, and the measuring loop."""

    def __init__(self, args: argparse.Namespace, wrk: str, servers: Servers, tmp: Path
                 ) -> None:
        self.args, self.wrk, self.servers, self.tmp = args, wrk, servers, tmp
        self.bin_dir = Path(sys.executable).parent  # not resolved: the venv's bin (mlflow)
        self.versions: dict[str, str] = {"python": sys.version.split()[0]}
        self.homes: dict[str, Path] = {}
        self.notes: list[str] = []
        self.log_costs: dict[str, Paired] = {}  # gw vs gw-nolog, JSON, interleaved
        self.grpc_pairs: dict[str, Paired] = {}  # gw vs mlserver, gRPC, interleaved

    # ------------------------------------------------------------------ targets
    def targets(self, bm: BenchModel) -> list[Target]:
        name = bm.key
        http = {form: load_for(form, name, bm.test) for form in FORMS if form != "grpc"}
        every: dict[str, Load | None] = {**http, "grpc": None}
        v2_ready = "/v2/health/ready"
        gw = functools.partial(self.prepare_gateway, bm)
        made = [
            Target(f"{name}/mlflow", SERVERS["mlflow"], bm, "mlflow",
                   {"invocations": http["invocations"]}, "/ping", self.prepare_mlflow),
            Target(f"{name}/gw", SERVERS["gw"], bm, "gw", every, v2_ready,
                   functools.partial(gw, grpc=True), runtime="sklearn"),
            Target(f"{name}/gw-nolog", SERVERS["gw-nolog"], bm, "gw-nolog",
                   {"json": http["json"]}, v2_ready, functools.partial(gw, log=False)),
            Target(f"{name}/gw-w2", SERVERS["gw-w2"], bm, "gw-w2", {"json": http["json"]},
                   v2_ready, functools.partial(gw, workers=2)),
            Target(f"{name}/mlserver", SERVERS["mlserver"], bm, "mlserver",
                   {"json": http["json"],
                    "cols": load_for("cols", name, bm.test, pandas_codec=True),
                    "binary": http["binary"], "grpc": None},
                   f"/v2/models/{name}/ready", self.prepare_mlserver,
                   unsupported={"invocations": "mlserver-sklearn serves V2 only (/invocations "
                                               "needs MLServer's MLflow runtime)"},
                   optional={"binary"}, probes={"cols": http["cols"]}),
        ]
        if name == "lr":
            made += [Target(f"{name}/{key}", SERVERS[key], bm, key, {"json": http["json"]},
                            v2_ready, functools.partial(self.prepare_floor, mode=mode))
                     for key, mode in (("floor", "frame"), ("floor-np", "numpy"))]
            made.append(Target(f"{name}/floor-grpc", SERVERS["floor-grpc"], bm, "floor-grpc",
                               {"grpc": None}, "", self.prepare_grpc_floor))
        if name == "forest":
            made.append(Target(f"{name}/gw-onnx", SERVERS["gw-onnx"], bm, "gw-onnx", every,
                               v2_ready, functools.partial(gw, grpc=True, compiled=True),
                               runtime="onnx"))
        order = {key: i for i, key in enumerate(RUN_ORDER)}
        return sorted(made, key=lambda t: order[t.server])

    # ------------------------------------------------------------------ preparing servers
    def prepare_mlflow(self, t: Target) -> tuple[list[str], dict[str, str], Path]:
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # no calls home from here
        import mlflow
        import mlflow.sklearn

        self.versions["mlflow"] = mlflow.__version__
        bm = t.model
        folder = self.tmp / f"mlflow-{bm.key}"
        if not folder.exists():
            import skops.io as sio

            # MLflow saves with skops and refuses types it does not trust (a forest's Tree):
            # trust exactly the types of the model we fitted ourselves
            trusted = sio.get_untrusted_types(data=sio.dumps(bm.model))
            mlflow.sklearn.save_model(bm.model, str(folder), input_example=bm.train.head(10),
                                      skops_trusted_types=trusted or None)
        argv = [str(self.bin_dir / "mlflow"), "models", "serve", "-m", str(folder),
                "--no-conda", "--env-manager", "local", "-h", "127.0.0.1", "-p", str(t.port),
                "--workers", "1"]
        # `mlflow models serve` execs `uvicorn` from PATH; its access log is on by default and
        # has no CLI switch there, uvicorn's own environment variable turns it off.
        env = child_env(self.bin_dir, MLFLOW_TRACKING_URI=(self.tmp / "mlruns").as_uri(),
                        UVICORN_ACCESS_LOG="false", MLFLOW_DISABLE_TELEMETRY="true")
        return argv, env, self.tmp

    def _mlops_env(self, home: Path) -> dict[str, str]:
        return {"MLOPS_HOME": str(home), "MLOPS_CONFIG": str(self.tmp / "no-mlops.toml")}

    def gateway_home(self, bm: BenchModel, compiled: bool) -> Path:
        """A store whose production serves only this model (compiled to ONNX, or not)."""
        key = f"{bm.key}-onnx" if compiled else bm.key
        if key in self.homes:
            return self.homes[key]
        import skops.io as sio

        home = self.tmp / f"home-{key}"
        for var in [k for k in os.environ if k.startswith("MLOPS_")]:
            del os.environ[var]
        os.environ.update(self._mlops_env(home))
        from mlops.config import Settings
        from mlops.registry.service import ModelRegistry

        if compiled and not hasattr(ModelRegistry, "compile"):
            raise SkipTarget("compiled runtime: ModelRegistry.compile is not in this checkout "
                             "(mlops models compile NAME VERSION --to onnx)")
        model_file = self.tmp / f"{bm.key}.skops"
        if not model_file.exists():
            sio.dump(bm.model, model_file)
        reg = ModelRegistry(Settings(home=home))
        mv = reg.register(bm.key, str(model_file), input_example=bm.train.head(10))
        reg.promote(bm.key, mv.version, "production")
        if compiled:
            t0 = time.perf_counter()
            try:  # checked equal on the input example and on the very rows we send
                done = reg.compile(bm.key, mv.version, to="onnx", data=bm.test)
            except Exception as exc:  # a refusal (or a missing converter) skips the target
                shutil.rmtree(home, ignore_errors=True)
                raise SkipTarget(f"compile to ONNX failed: {type(exc).__name__}: {exc}"
                                 ) from exc
            record = done.runtimes.get("onnx", {}) if hasattr(done, "runtimes") else {}
            self.notes.append(
                f"{bm.label}: compiled to ONNX in {time.perf_counter() - t0:.1f}s "
                f"(input {record.get('input_dtype', '?')}, labels identical: "
                f"{record.get('labels_identical', '?')}, largest probability difference "
                f"{record.get('max_abs_diff', float('nan')):.2g} on "
                f"{record.get('rows_checked', '?')} rows, tolerance "
                f"{record.get('tolerance', '?')})")
            converter = record.get("converter", {})
            for pkg in ("skl2onnx", "onnxruntime"):
                if pkg in converter:
                    self.versions[pkg] = converter[pkg]
        self.homes[key] = home
        return home

    def prepare_gateway(self, bm: BenchModel, t: Target, *, log: bool = True,
                        workers: int = 1, grpc: bool = False, compiled: bool = False
                        ) -> tuple[list[str], dict[str, str], Path]:
        home = self.gateway_home(bm, compiled)
        argv = [sys.executable, "-m", "mlops", "serve", "--host", "127.0.0.1", "--port",
                str(t.port), "--env", "production", "--workers", str(workers), "--model",
                bm.key]
        if grpc:
            t.grpc_port = free_port()
            argv += ["--grpc-port", str(t.grpc_port)]
        if not log:
            argv.append("--no-log-predictions")
        return argv, child_env(self.bin_dir, **self._mlops_env(home)), self.tmp

    def prepare_floor(self, t: Target, mode: str) -> tuple[list[str], dict[str, str], Path]:
        import joblib

        pkl = self.tmp / f"floor-{t.model.key}.joblib"
        if not pkl.exists():
            joblib.dump(t.model.model, pkl)
        argv = [sys.executable, "-m", "uvicorn", "floor_app:app", "--app-dir",
                str(ROOT / "bench"), "--host", "127.0.0.1", "--port", str(t.port),
                "--loop", "uvloop", "--http", "httptools", "--no-access-log",
                "--log-level", "warning"]
        env = child_env(self.bin_dir, BENCH_FLOOR_MODEL=str(pkl), BENCH_FLOOR_NAME=t.model.key,
                        BENCH_FLOOR_INPUT=mode)
        return argv, env, self.tmp

    def prepare_grpc_floor(self, t: Target) -> tuple[list[str], dict[str, str], Path]:
        import joblib

        pkl = self.tmp / f"floor-{t.model.key}.joblib"
        if not pkl.exists():
            joblib.dump(t.model.model, pkl)
        t.grpc_port = free_port()
        argv = [sys.executable, str(ROOT / "bench" / "grpc_floor.py"), "--port",
                str(t.grpc_port), "--model", str(pkl), "--name", t.model.key]
        return argv, child_env(self.bin_dir), ROOT

    def prepare_mlserver(self, t: Target) -> tuple[list[str], dict[str, str], Path]:
        import skops.io as sio

        venv, bm = self.args.bench_venv, t.model
        py, mlserver = venv / "bin" / "python", venv / "bin" / "mlserver"
        if not (py.exists() and mlserver.exists()):
            raise SkipTarget(f"{venv} has no mlserver; create it with `make bench-env`")
        repo = self.tmp / f"mlserver-{bm.key}"
        (repo / bm.key).mkdir(parents=True, exist_ok=True)
        src = self.tmp / f"{bm.key}.skops"
        if not src.exists():
            sio.dump(bm.model, src)
        check = self.tmp / f"mlserver-check-{bm.key}.json"
        check.write_text(json.dumps({"x": bm.test.to_numpy().tolist(), "y": bm.expected}))
        helper = self.tmp / "mlserver_model.py"
        helper.write_text(MLSERVER_MODEL_HELPER)
        done = subprocess.run([str(py), str(helper), str(src),
                               str(repo / bm.key / "model.joblib"), str(check)],
                              capture_output=True, text=True, timeout=300,
                              env=child_env(venv / "bin"))
        if done.returncode != 0:
            raise SkipTarget("could not save the model with .venv-bench's Python: "
                             + (done.stderr.strip() or done.stdout.strip())[-400:])
        info = json.loads(done.stdout.strip().splitlines()[-1])
        self.versions["mlserver"] = info["mlserver"]
        self.versions["scikit-learn (.venv-bench)"] = info["scikit-learn"]
        t.grpc_port = free_port()
        (repo / "settings.json").write_text(json.dumps({
            "debug": False, "parallel_workers": 0, "host": "127.0.0.1", "http_port": t.port,
            "grpc_port": t.grpc_port, "metrics_port": free_port(),
            "metrics_dir": str(self.tmp / f"mlserver-metrics-{bm.key}")}))
        (repo / bm.key / "model-settings.json").write_text(json.dumps({
            "name": bm.key, "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": "./model.joblib", "version": "1"}}))
        # The model was fitted on named columns and V2 tensors carry none, so scikit-learn
        # warns on every predict (its check_array resets the warnings registry): silence that
        # one warning, as the numpy floor does, so MLServer is not timed writing it.
        env = child_env(venv / "bin", PYTHONWARNINGS=f"ignore:{_NO_NAMES}:UserWarning")
        return [str(mlserver), "start", str(repo)], env, repo

    # ------------------------------------------------------------------ measuring
    def run_target(self, t: Target, forms: list[str]) -> list[Result]:
        results = {form: Result(f"{t.key}/{form}", t.label, t.model.key, t.server, form)
                   for form in FORMS if form in forms and (form in t.forms
                                                           or form in t.unsupported)}
        for form, why in t.unsupported.items():
            if form in results:
                results[form].unsupported = why
        todo = [form for form in FORMS if form in forms and form in t.forms]
        if not todo:
            return list(results.values())
        if t.server == "mlserver" and "cols" in results:
            results["cols"].label = "MLServer, + content_type: pd"
        log(f"\n{t.model.key}: {t.label}: {', '.join(todo)}")
        busy = cpu_busy()
        if busy is not None and busy > 0.15:
            for form in todo:
                results[form].extra["busy_before"] = busy
            log(f"  warning: the machine was {busy:.0%} busy before this target started")
        logfile = self.tmp / f"server-{t.key.replace('/', '-')}.log"
        proc = None
        try:
            t.port = free_port()
            try:
                argv, env, cwd = t.prepare(t)
            except (SkipTarget, RuntimeError, OSError, ValueError):
                raise
            except Exception as exc:  # a library refusing to save or register the model
                raise RuntimeError(f"preparing it failed: {type(exc).__name__}: "
                                   f"{str(exc)[:400]}") from exc
            t0 = time.perf_counter()
            proc = self.servers.start(argv, env, cwd, logfile)
            if t.ready_path:  # gRPC only: the answer check waits for ModelReady
                wait_ready(proc, t.port, t.ready_path, self.args.startup_timeout)
            startup = time.perf_counter() - t0
            log(f"  ready in {startup:.1f}s on port {t.port}"
                + (f" (gRPC {t.grpc_port})" if t.grpc_port else ""))
            for form in todo:
                results[form].startup_s = startup
                self.measure(t, form, results[form], proc, logfile)
            for form, load in t.probes.items():
                if form in results:
                    status, _, raw = http_request(t.port, "POST", load.path, load.bodies[0],
                                                  load.headers)
                    answer = raw[:160].decode(errors="replace")
                    results[form].extra["probe"] = f"HTTP {status}: {answer}"
        except SkipTarget as exc:
            for form in todo:
                results[form].skipped = results[form].skipped or str(exc)
            log(f"  skipped: {exc}")
        except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as exc:
            for form in todo:
                r = results[form]
                if r.rps is None and not r.skipped and not r.unsupported:
                    r.skipped = f"failed: {exc}"
            log(f"  FAILED: {exc}\n    last lines of its log:\n{tail(logfile)}")
        finally:
            if proc is not None:
                self.servers.stop(proc)
        return list(results.values())

    def measure(self, t: Target, form: str, result: Result, proc: subprocess.Popen[bytes],
                logfile: Path) -> None:
        """Check one form's answers, warm it up, measure it; a failure fails this form only
        (unless the server died)."""
        args, bm = self.args, t.model
        load = t.forms[form]
        rows = self.tmp / f"rows-{bm.key}.npy"
        expected = self.tmp / f"expected-{bm.key}.json"
        try:
            if load is None:
                if t.grpc_port is None:
                    raise RuntimeError("no gRPC port")
                run_grpc(t.grpc_port, bm.key, rows, args, expected=expected)

                def once(seconds: float) -> dict[str, Any]:
                    return run_grpc(t.grpc_port or 0, bm.key, rows, args, seconds=seconds)
            else:
                verify_http(t.port, load, bm.expected, t.runtime)
                lua = write_lua(self.tmp, f"{t.key.replace('/', '-')}-{form}", load)

                def once(seconds: float) -> dict[str, Any]:
                    return run_wrk(self.wrk, t.port, lua, seconds, args)
            log(f"  {form}: {len(bm.expected)} distinct rows answered with the local "
                "model's predictions" + (f" (x-model-runtime {t.runtime})"
                                         if t.runtime and load is not None else ""))
            if args.warmup > 0:
                warm = once(args.warmup)
                log(f"  {form}: warm-up {warm['rps']:,.0f} req/s")
            try:
                monitor: ForeignLoad | None = ForeignLoad(proc.pid)
            except (OSError, ValueError, IndexError):
                monitor = None
            batches0 = batch_counts(t.port) if t.server.startswith("gw") else None
            cpu0 = children_cpu()
            stats = once(args.duration)
            batches1 = batch_counts(t.port) if batches0 is not None else None
            # grpc_load measures its own loop (without its imports); wrk's start is negligible
            client = stats.get("client_cores") or (
                (children_cpu() - cpu0) / stats["seconds"] if stats["seconds"] else None)
            cores = monitor.cores() if monitor is not None else None
            steal = monitor.steal() if monitor is not None else None
        except Refused as exc:
            if form not in t.optional:
                result.skipped = f"failed: {exc}"
                log(f"  {form}: FAILED: {exc}\n    last lines of its log:\n{tail(logfile)}")
            else:
                result.unsupported = f"answered {exc.answer[:100]}"
                log(f"  {form}: not supported: {exc}")
            return
        except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as exc:
            result.skipped = f"failed: {exc}"
            log(f"  {form}: FAILED: {exc}\n    last lines of its log:\n{tail(logfile)}")
            if proc.poll() is not None:
                raise RuntimeError(f"server died (code {proc.returncode})") from exc
            return
        if client is not None:
            result.extra["client_cores"] = round(client, 3)
        batch = None
        if batches0 is not None and batches1 is not None and batches1[0] > batches0[0]:
            batch = (batches1[1] - batches0[1]) / (batches1[0] - batches0[0])
            result.extra["rows_per_batch"] = round(batch, 2)
        server = None
        if steal is not None:
            result.extra["steal_cores"] = round(steal, 3)
        if cores is not None:
            foreign, server_cpu = cores
            server = server_cpu / stats["seconds"] if stats["seconds"] else None
            result.extra["foreign_cores"] = round(foreign, 3)
            if server is not None:
                result.extra["server_cores"] = round(server, 3)
            if foreign > FOREIGN_LIMIT:
                log(f"  warning: other processes used {foreign:.2f} cores meanwhile")
        result.rps, result.p50_ms, result.p99_ms = stats["rps"], stats["p50_ms"], stats["p99_ms"]
        result.requests, result.errors = stats["requests"], stats["errors"]
        result.error_detail = stats["error_detail"]
        log(f"  {form}: {result.rps:,.0f} req/s, p50 {fmt(result.p50_ms, '.2f')} ms, "
            f"p99 {fmt(result.p99_ms, '.2f')} ms, errors {result.errors}"
            + (f" ({result.error_detail})" if result.error_detail else "")
            + (f", server {server:.2f} cores" if server is not None else "")
            + (f", {batch:.1f} rows per predict call" if batch is not None else "")
            + (f", load generator {client:.2f} cores" if client is not None else ""))
        if proc.poll() is not None:
            raise RuntimeError(f"server died during the run (code {proc.returncode})")


# ----------------------------------------------------------------------------- main
def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _csv(text: str, allowed: Any, what: str, parser: argparse.ArgumentParser) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in items if t not in allowed]
    if unknown:
        parser.error(f"unknown {what}: {', '.join(unknown)} (choose from {', '.join(allowed)})")
    return items


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke check: {QUICK['duration']:g}s per form after "
                             f"{QUICK['warmup']:g}s warm-up, {QUICK['rows']} rows, servers "
                             f"{QUICK['servers']}, forms {QUICK['forms']} (options given "
                             "explicitly still win)")
    parser.add_argument("--duration", type=float,
                        help="measured seconds per form (default 20)")
    parser.add_argument("--warmup", type=float,
                        help="warm-up seconds per form before measuring (default 5)")
    parser.add_argument("--connections", type=int, default=16,
                        help="wrk connections, and gRPC calls in flight (default 16)")
    parser.add_argument("--threads", type=int, default=1,
                        help="wrk threads (default 1: leave the second core to the server)")
    parser.add_argument("--rows", type=int,
                        help="distinct single-row requests each load cycles through (100)")
    parser.add_argument("--models", help=f"comma-separated subset of {', '.join(MODELS)}")
    parser.add_argument("--servers", help=f"comma-separated subset of {', '.join(SERVERS)}")
    parser.add_argument("--forms", help=f"comma-separated subset of {', '.join(FORMS)}")
    parser.add_argument("--rounds", type=int,
                        help="rounds of the interleaved measurements (the log's cost: gw and "
                             "gw-nolog on JSON; gRPC: gw and mlserver), both servers up at "
                             "once and loaded alternately (default 10; 0: skip them)")
    parser.add_argument("--round-seconds", type=float,
                        help="measured seconds of each side of a round (default 10)")
    parser.add_argument("--startup-timeout", type=float, default=120.0)
    parser.add_argument("--bench-venv", type=Path, default=ROOT / ".venv-bench",
                        help="venv with mlserver + mlserver-sklearn (make bench-env)")
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    parser.add_argument("--keep-tmp", action="store_true",
                        help="keep the temporary folder (server logs, models) for inspection")
    args = parser.parse_args()
    preset = QUICK if args.quick else DEFAULTS
    for name, value in preset.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.models = _csv(args.models, MODELS, "models", parser)
    args.servers = _csv(args.servers, SERVERS, "servers", parser)
    args.forms = _csv(args.forms, FORMS, "forms", parser)
    if args.threads > args.connections:
        parser.error("--threads must not exceed --connections")

    wrk = shutil.which("wrk")
    if wrk is None:
        print("error: `wrk` is not installed; this benchmark needs it to generate load.\n"
              "  Debian/Ubuntu: sudo apt-get install -y wrk    macOS: brew install wrk",
              file=sys.stderr)
        return 2

    warnings.filterwarnings("ignore")
    signal.signal(signal.SIGTERM, raise_interrupt)
    signal.signal(signal.SIGHUP, raise_interrupt)
    servers = Servers()
    tmp = Path(tempfile.mkdtemp(prefix="mlops-bench-serving-"))
    try:
        return run(Bench(args, wrk, servers, tmp))
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


def run(bench: Bench) -> int:
    import sklearn

    args, tmp = bench.args, bench.tmp
    bench.versions["scikit-learn"] = sklearn.__version__
    log(f"temporary folder {tmp}")
    log(f"load: {args.connections} connections (wrk -t{args.threads}) or calls in flight "
        f"(gRPC), {args.warmup:g}s warm-up + {args.duration:g}s measured per form, "
        f"{args.rows} distinct rows")
    models = make_models(args.rows, args.models)
    results: list[Result] = []
    for bm in models.values():
        np.save(tmp / f"rows-{bm.key}.npy", bm.test.to_numpy(dtype=np.float64))
        (tmp / f"expected-{bm.key}.json").write_text(json.dumps(bm.expected))
        for target in bench.targets(bm):
            if target.server in args.servers:
                results += bench.run_target(target, args.forms)
        if args.rounds > 0 and {"gw", "gw-nolog"} <= set(args.servers) \
                and "json" in args.forms:
            log(f"\n{bm.key}: prediction log cost, interleaved ({args.rounds} rounds of "
                f"{args.round_seconds:g}s each way)")
            bench.log_costs[bm.key] = measure_paired(bench, bm, "gw", "gw-nolog", "json")
            log("  " + bench.log_costs[bm.key].summary(LOG_COST, "log on", "log off",
                                                       as_cost=True))
        if args.rounds > 0 and {"gw", "mlserver"} <= set(args.servers) \
                and "grpc" in args.forms:
            log(f"\n{bm.key}: gRPC, gateway vs MLServer, interleaved ({args.rounds} rounds "
                f"of {args.round_seconds:g}s each way)")
            bench.grpc_pairs[bm.key] = measure_paired(bench, bm, "gw", "mlserver", "grpc")
            log("  " + bench.grpc_pairs[bm.key].summary(GRPC_PAIR, "gateway", "MLServer"))

    print(f"\nServing benchmark: single-row requests, {args.duration:g}s measured after "
          f"{args.warmup:g}s warm-up per form, {args.rows} distinct rows, "
          f"{os.cpu_count()} CPUs; HTTP load wrk -t{args.threads} -c{args.connections}, gRPC "
          f"load bench/grpc_load.py ({args.connections} calls in flight)")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in bench.versions.items())
          + f", {wrk_version(bench.wrk)}")
    order = {key: i for i, key in enumerate(SERVERS)}
    all_goals: dict[str, list[dict[str, Any]]] = {}
    by_key = {r.key: r for r in results}
    for bm in models.values():
        mine = sorted((r for r in results if r.model == bm.key), key=lambda r: order[r.server])
        print_table(f"== {bm.label} (model '{bm.key}') ==", mine)
        all_goals[bm.key] = goals(bm.key, by_key, bench.log_costs.get(bm.key),
                                  bench.grpc_pairs.get(bm.key))
        print_goals(all_goals[bm.key])
    print_notes(notes(bench, results, args))

    if args.json:
        args.json.write_text(json.dumps({
            "settings": {k: (str(v) if isinstance(v, Path) else v)
                         for k, v in vars(args).items()},
            "versions": bench.versions, "results": [asdict(r) for r in results],
            "log_cost": {k: asdict(v) for k, v in bench.log_costs.items()},
            "grpc_paired": {k: asdict(v) for k, v in bench.grpc_pairs.items()},
            "goals": all_goals}, indent=2))
        print(f"\nwrote {args.json}")
    return 0


def notes(bench: Bench, results: list[Result], args: argparse.Namespace) -> list[str]:
    out = list(bench.notes)
    out += [cost.summary(LOG_COST, "log on", "log off", as_cost=True)
            for cost in bench.log_costs.values()]
    out += [pair.summary(GRPC_PAIR, "gateway", "MLServer") for pair in bench.grpc_pairs.values()]
    cores = {kind: [r.extra["client_cores"] for r in results if "client_cores" in r.extra
                    and (r.form == "grpc") == (kind == "grpc")] for kind in ("grpc", "wrk")}
    if cores["grpc"]:
        wrk_part = (f" (wrk: {min(cores['wrk']):.2f}-{max(cores['wrk']):.2f})"
                    if cores["wrk"] else "")
        out.append(f"gRPC rows are loaded by bench/grpc_load.py (Python grpc.aio, one channel, "
                   f"{args.connections} calls in flight, pre-serialised requests): its client "
                   f"costs more CPU per call than wrk, {min(cores['grpc']):.2f}-"
                   f"{max(cores['grpc']):.2f} cores during the measurements{wrk_part}, taken "
                   "from the server on this machine; both servers' gRPC rows use this same "
                   "client, so compare gRPC with gRPC, not with HTTP")
    for model in dict.fromkeys(r.model for r in results):
        sizes = [f"{r.server} {r.form} {r.extra['rows_per_batch']:.1f}" for r in results
                 if r.model == model and "rows_per_batch" in r.extra]
        if sizes:
            out.append(f"{model}: rows per predict call in the gateway (its adaptive batching, "
                       f"from mlops_batch_size on /metrics during each measurement): "
                       f"{', '.join(sizes)}")
    for r in results:
        if "probe" in r.extra:
            out.append(f"{r.model}: MLServer sent the gateway's per-column body as advertised "
                       f"(no content_type) answers {r.extra['probe']}; its row above adds "
                       "the request parameter content_type: pd (its pandas codec)")
        if r.unsupported and r.server == "mlserver" and r.form == "binary":
            out.append(f"{r.model}: MLServer {bench.versions.get('mlserver', '')} does not "
                       "implement Triton's binary tensor extension over HTTP (its "
                       f"tritonclient support is gRPC only): sent one, it {r.unsupported}")
        if r.errors and not r.skipped:
            out.append(f"{r.key}: {r.errors} errors during the run ({r.error_detail}); req/s "
                       "counts 2xx answers only")
    measured = [r for r in results if r.rps is not None]
    busy = [f"{r.key} {r.extra['foreign_cores']:.2f}" for r in measured
            if r.extra.get("foreign_cores", 0.0) > FOREIGN_LIMIT]
    if busy:
        out.append(f"other processes used more than {FOREIGN_LIMIT} of {os.cpu_count()} cores "
                   f"during these measurements (cores): {', '.join(busy)}; their numbers are "
                   "suspect, run again on an idle machine")
    else:
        out.append(f"no measurement shared the machine: other processes used at most "
                   f"{max((r.extra.get('foreign_cores', 0.0) for r in measured), default=0):.2f}"
                   " cores during each")
    stolen = [r.extra["steal_cores"] for r in measured if "steal_cores" in r.extra]
    if stolen:
        worst = [f"{r.key} {r.extra['steal_cores']:.2f}" for r in measured
                 if r.extra.get("steal_cores", 0.0) > FOREIGN_LIMIT]
        out.append(f"the hypervisor gave other guests {min(stolen):.2f}-{max(stolen):.2f} "
                   "cores (steal time) during the measurements"
                   + (f"; above {FOREIGN_LIMIT}: {', '.join(worst)} (their numbers are "
                      "suspect)" if worst else ""))
    before = [f"{r.key} {r.extra['busy_before']:.0%}" for r in measured
              if r.extra.get("busy_before")
              and r.extra.get("foreign_cores", 0.0) <= FOREIGN_LIMIT]
    if before:
        out.append("the machine was busy just before these servers started, though not during "
                   f"their measurements: {', '.join(before)}")
    out.append("req/s = 2xx (gRPC: OK) answers per second; p50/p99 from wrk --latency or "
               "grpc_load (closed loop); errors = non-2xx + socket errors (gRPC: non-OK)")
    return out


if __name__ == "__main__":
    sys.exit(main())
