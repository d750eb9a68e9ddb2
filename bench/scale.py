"""Scale-out on one machine: PostgreSQL for the metadata, an S3 server (moto) for artifacts
and the prediction log, and real ``mlops serve`` processes.

1. Throughput: requests/s with 1, 2 and 4 gateway processes (``--role gateway``), each
   request form a client may use (V2 JSON, KServe V1 ``instances``), wrk spreading a fixed
   number of connections over the gateways. On a 2-core machine the gateways and wrk share
   the cores, so this shows what replicas cost and how the log keeps up, not a cluster.
2. Routing changes: the time for a route change to reach every gateway (p50/p99 over
   ``--changes`` changes), with LISTEN/NOTIFY against the counter poll (``MLOPS_CHANGE_FEED``).
3. Failover: two control processes run a canary; the leader is SIGKILLed; the time until the
   other holds the lease and until it writes its first analysis.

Usage: ``.venv/bin/python bench/scale.py`` (needs PostgreSQL on 127.0.0.1:5432 as postgres,
or ``--postgres URL``; ``wrk``; moto from the dev extra).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving_infra import (
    Load,
    child_env,
    free_port,
    parse_wrk,
    wait_ready,
    write_lua,
)

ROOT = Path(__file__).resolve().parent.parent
FEATURES = [f"x{i}" for i in range(8)]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- set-up
@contextlib.contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(admin_url)
    name = f"mlops_bench_{uuid.uuid4().hex[:10]}"
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(drivername="postgresql+psycopg", database=name).render_as_string(
            hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def s3_server() -> Iterator[dict[str, str]]:
    """moto in server mode on a free port, one bucket; yields the AWS variables."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "bench",
           "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{env['AWS_ENDPOINT_URL']}/moto-api/", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError("moto did not start") from None
                time.sleep(0.1)
        import boto3

        boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id="bench",
                     aws_secret_access_key="bench",
                     region_name="us-east-1").create_bucket(Bucket="bench")
        yield env
    finally:
        proc.terminate()
        proc.wait(10)


class Process:
    """One ``mlops serve`` process."""

    def __init__(self, home: Path, env: dict[str, str], *args: str) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = home / "server.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mlops", "serve", "--port", str(self.port), *args],
                env=child_env(Path(sys.executable).parent, MLOPS_HOME=str(home / ".mlops"),
                              MLOPS_ACTOR="bench", **env),
                cwd=home, stdout=out, stderr=subprocess.STDOUT)
        wait_ready(self.proc, self.port, "/v2/health/ready", 90)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def processes(n: int, tmp: Path, env: dict[str, str], *args: str) -> Iterator[list[Process]]:
    started: list[Process] = []
    try:
        for i in range(n):
            started.append(Process(tmp / f"p{i}-{uuid.uuid4().hex[:6]}", env, *args))
        yield started
    finally:
        for p in started:
            p.stop()


def registry_for(env: dict[str, str]) -> Any:
    from mlops.config import Settings
    from mlops.registry.service import ModelRegistry

    os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
    return ModelRegistry(Settings(home=Path(tempfile.mkdtemp()) / ".mlops", actor="bench",
                                  database_url=env["MLOPS_DATABASE_URL"],
                                  artifacts_uri=env["MLOPS_ARTIFACTS_URI"]))


def register(registry: Any) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(2000, len(FEATURES))), columns=FEATURES)
    y = (x["x0"] + 0.5 * x["x1"] > 0).astype(int)
    for c in (1.0, 0.3):
        registry.register("m", model=LogisticRegression(C=c).fit(x, y), reference=x,
                          input_example=x.head(3))
    registry.promote("m", "1.0.0", "Production")
    return x


# ----------------------------------------------------------------------------- 1. throughput
def forms(x: pd.DataFrame) -> dict[str, Load]:
    rows = x.head(64)
    v2 = [json.dumps({"inputs": [{"name": f, "shape": [1], "datatype": "FP64",
                                   "data": [float(r[f])]} for f in FEATURES]}).encode()
          for _, r in rows.iterrows()]
    v1 = [json.dumps({"instances": [{f: float(r[f]) for f in FEATURES}]}).encode()
          for _, r in rows.iterrows()]
    return {"V2 JSON /v2/models/m/infer": Load("/v2/models/m/infer", v2, None),
            "KServe V1 /v1/models/m:predict": Load("/v1/models/m:predict", v1, None)}


def throughput(wrk: str, gateways: list[Process], lua: Path, seconds: float,
               connections: int) -> dict[str, Any]:
    per = max(1, connections // len(gateways))
    runs = [subprocess.Popen([wrk, "-t", "1", "-c", str(per), "-d", f"{seconds:g}s",
                              "--timeout", "10s", "--latency", "-s", str(lua), g.url],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for g in gateways]
    outs = [parse_wrk(p.communicate(timeout=seconds + 60)[0]) for p in runs]
    return {"rps": sum(o["rps"] for o in outs),
            "p50_ms": statistics.median(o["p50_ms"] for o in outs),
            "p99_ms": max(o["p99_ms"] for o in outs),
            "errors": sum(o["errors"] for o in outs)}


# ----------------------------------------------------------------------------- 2. routing
def propagation(registry: Any, gateways: list[Process], changes: int,
                x: pd.DataFrame) -> list[float]:
    """Seconds from each route change's commit until every gateway answers with it."""
    from mlops.deployment.routes import RoutingService

    routing = RoutingService(registry)
    body = {"instances": [x.iloc[0].to_dict()]}
    clients = [httpx.Client(base_url=g.url, timeout=10) for g in gateways]
    out = []
    try:
        for i in range(changes):
            version = "1.0.1" if i % 2 == 0 else "1.0.0"
            routing.set_route("m", "production", stable=version, reason="bench",
                              override="bench")
            start = time.monotonic()
            pending = set(range(len(clients)))
            while pending:
                for k in list(pending):
                    r = clients[k].post("/v1/models/m:predict", json=body)
                    if r.headers.get("x-model-version") == version:
                        pending.discard(k)
                if time.monotonic() - start > 30:
                    raise RuntimeError("a route change did not reach every gateway in 30 s")
            out.append(time.monotonic() - start)
    finally:
        for c in clients:
            c.close()
    return out


# ----------------------------------------------------------------------------- 3. failover
def failover(registry: Any, tmp: Path, env: dict[str, str], rounds: int) -> list[dict[str, float]]:
    from mlops.deployment.controller import LEASE
    from mlops.deployment.rollouts import RolloutManager
    from mlops.store.leases import current_leader

    manager = RolloutManager(registry)
    out = []
    with processes(1, tmp, env, "--role", "gateway") as gateway:
        for _ in range(rounds):
            if (st := manager.status("m", "production")) and st.state == "progressing":
                manager.abort("m", "production", reason="bench round")
            manager.deploy("m", "1.0.1", "production", strategy="canary",
                           override="bench", config={
                               "steps": [{"weight": 50, "pause": 3600}, {"weight": 100}]})
            with processes(2, tmp, env, "--role", "control", "--controller-interval",
                           "0.5") as controls:
                by_pid = {c.proc.pid: c for c in controls}
                with httpx.Client(base_url=gateway[0].url, timeout=10) as c:
                    c.post("/v1/models/m:predict", json={"instances": [
                        dict.fromkeys(FEATURES, 0.1)]})
                deadline = time.monotonic() + 30
                while (holder := current_leader(registry.context.store, LEASE)) is None:
                    if time.monotonic() > deadline:
                        raise RuntimeError("no leader in 30 s")
                    time.sleep(0.05)
                while not (st := manager.status("m", "production")) or not st.analyses:
                    time.sleep(0.05)
                leader = int(holder.rsplit(":", 1)[1])
                killed_at = datetime.now(UTC)
                killed = time.monotonic()
                by_pid[leader].stop(signal.SIGKILL)
                while (h := current_leader(registry.context.store, LEASE)) in (None, holder):
                    time.sleep(0.01)
                took = time.monotonic() - killed
                while True:
                    st = manager.status("m", "production")
                    later = [a for a in st.analyses
                             if datetime.fromisoformat(a["at"]) > killed_at]
                    if later:
                        break
                    time.sleep(0.01)
                first = (datetime.fromisoformat(later[0]["at"]) - killed_at).total_seconds()
                out.append({"lease": took, "first_tick": first})
                log(f"  failover: lease after {took:.3f} s, first tick after {first:.3f} s "
                    f"(new leader {h})")
    manager.abort("m", "production", reason="bench done")
    return out


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--postgres", default=os.environ.get(
        "MLOPS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--seconds", type=float, default=10.0, help="wrk seconds per measurement")
    ap.add_argument("--connections", type=int, default=16, help="wrk connections in total")
    ap.add_argument("--gateways", default="1,2,4")
    ap.add_argument("--changes", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=5, help="failover rounds")
    a = ap.parse_args()
    wrk = shutil.which("wrk")
    if wrk is None:
        print("error: `wrk` is not installed (Debian: apt-get install -y wrk)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="mlops-bench-scale-"))
    with postgres_database(a.postgres) as database, s3_server() as aws:
        env = {"MLOPS_DATABASE_URL": database, "MLOPS_ARTIFACTS_URI": "s3://bench/store",
               **aws}
        registry = registry_for(env)
        x = register(registry)
        rows: list[tuple[str, int, dict[str, Any]]] = []
        for n in (int(v) for v in a.gateways.split(",")):
            with processes(n, tmp, env, "--role", "gateway") as gateways:
                for form, load in forms(x).items():
                    lua = write_lua(tmp, f"{n}-{form.split()[0]}-{form.split()[1]}", load)
                    throughput(wrk, gateways, lua, 2, a.connections)  # warm-up
                    result = throughput(wrk, gateways, lua, a.seconds, a.connections)
                    log(f"  {n} gateway(s), {form}: {result['rps']:.0f} req/s")
                    rows.append((form, n, result))
        feeds: dict[str, list[float]] = {}
        for feed in ("listen", "poll"):
            with processes(3, tmp, {**env, "MLOPS_CHANGE_FEED": feed}, "--role",
                           "gateway") as gateways:
                feeds[feed] = propagation(registry, gateways, a.changes, x)
                log(f"  {feed}: p50 {pct(feeds[feed], 50) * 1000:.1f} ms")
        failovers = failover(registry, tmp, env, a.rounds)

    print(f"\nScale-out on {os.cpu_count()} CPUs: PostgreSQL "
          f"({database.rsplit('@', 1)[-1].split('/')[0]}), S3 = moto server, "
          f"wrk -t1 with {a.connections} connections spread over the gateways, "
          f"{a.seconds:g} s per measurement\n")
    print(f"{'request form':34} {'gateways':>8} {'req/s':>9} {'x 1 gw':>7} {'p50 ms':>8} "
          f"{'p99 ms':>8} {'errors':>7}")
    base = {form: r["rps"] for form, n, r in rows if n == 1}
    for form, n, r in rows:
        print(f"{form:34} {n:>8} {r['rps']:>9.0f} {r['rps'] / base[form]:>7.2f} "
              f"{r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['errors']:>7}")
    print(f"\nroute change -> every one of 3 gateways answers with it ({a.changes} changes)")
    print(f"{'feed':34} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for feed, values in feeds.items():
        label = "LISTEN/NOTIFY" if feed == "listen" else "counter poll (every 0.25 s)"
        print(f"{label:34} {pct(values, 50) * 1e3:>8.1f} {pct(values, 99) * 1e3:>8.1f} "
              f"{max(values) * 1e3:>8.1f}")
    print(f"\nleader SIGKILL -> ({len(failovers)} rounds, controller interval 0.5 s)")
    for key, label in (("lease", "another control process holds the lease"),
                       ("first_tick", "its first analysis is written")):
        values = [f[key] for f in failovers]
        print(f"{label:44} median {statistics.median(values) * 1e3:7.0f} ms, "
              f"max {max(values) * 1e3:7.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
