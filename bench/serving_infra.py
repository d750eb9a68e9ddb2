"""Processes, CPU accounting, HTTP checks and the two load generators of
``bench/serving.py``: wrk (HTTP, driven by a generated Lua script) and ``bench/grpc_load.py``
(gRPC, in its own process)."""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# Child processes inherit none of these: they would point a server at another store/config.
_SCRUB_PREFIXES = ("MLOPS_", "MLSERVER_", "MLFLOW_", "PROMETHEUS_MULTIPROC_DIR", "UVICORN_")


class SkipTarget(Exception):
    """A target that cannot run here, with the reason."""


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


def raise_interrupt(signum: int, _frame: Any) -> None:
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


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("      | " + line for line in text[-lines:])


# ----------------------------------------------------------------------------- CPU
def _cpu_fields() -> list[int]:
    """The first line of /proc/stat: user nice system idle iowait irq softirq steal ..."""
    return [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]


def _cpu_jiffies() -> tuple[int, int]:
    """All CPUs since boot, in clock ticks: (busy, total), from /proc/stat. Busy is what
    this machine's processes ran: not the time the hypervisor gave to other guests (steal)."""
    fields = _cpu_fields()
    total = sum(fields[:8])  # guest time is already inside user/nice
    return total - fields[3] - fields[4] - fields[7], total  # minus idle, iowait and steal


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
    """CPU that processes other than the server's group, the load generator and this script
    used during a measurement, in cores: anything well above 0 means someone else shared
    the machine. :meth:`steal` is the CPU the hypervisor gave other guests meanwhile (on a
    virtual machine, a neighbour that slows every number without showing in any process)."""

    def __init__(self, server_pgid: int) -> None:
        self.pgid = server_pgid
        self.tick = os.sysconf("SC_CLK_TCK")
        self.steal0 = self._steal()
        self.start = self._sample()

    @staticmethod
    def _steal() -> int:
        try:
            return _cpu_fields()[7]
        except (OSError, ValueError, IndexError):
            return 0

    def steal(self) -> float:
        """Cores taken by the hypervisor since the start."""
        seconds = time.monotonic() - self.start[0]
        return (self._steal() - self.steal0) / self.tick / seconds if seconds > 0 else 0.0

    def _sample(self) -> tuple[float, float, float, float]:
        busy, _ = _cpu_jiffies()
        t = os.times()  # children: load generator runs reaped before the end sample count here
        mine = (t.user + t.system + t.children_user + t.children_system) * self.tick
        return time.monotonic(), busy, _group_jiffies(self.pgid), mine

    def cores(self) -> tuple[float, float] | None:
        """Since the start: other processes, in cores, and the server group's CPU seconds
        (to divide by the load's own duration: a load generator's start-up is idle time)."""
        try:
            t1, busy1, group1, mine1 = self._sample()
        except (OSError, ValueError, IndexError):
            return None
        t0, busy0, group0, mine0 = self.start
        if t1 <= t0:
            return None
        foreign = (busy1 - busy0) - (group1 - group0) - (mine1 - mine0)
        return max(foreign, 0.0) / self.tick / (t1 - t0), (group1 - group0) / self.tick


def children_cpu() -> float:
    """CPU seconds of reaped child processes (the load generators)."""
    t = os.times()
    return t.children_user + t.children_system


# ----------------------------------------------------------------------------- HTTP checks
@dataclass
class Load:
    """One request form for one server: what wrk sends, and how to read the answers."""

    path: str                                # request path
    bodies: list[bytes]                      # one per distinct row
    extract: Any                             # response JSON -> predictions
    headers: dict[str, str] = field(
        default_factory=lambda: {"Content-Type": "application/json"})


def http_request(port: int, method: str, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None, timeout: float = 10.0
                 ) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        if headers is None:
            headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def wait_ready(proc: subprocess.Popen[bytes], port: int, path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before it was ready")
        try:
            status, _, _ = http_request(port, "GET", path, timeout=2.0)
            if status == 200:
                return
            last = f"HTTP {status}"
        except OSError as exc:
            last = type(exc).__name__
        time.sleep(0.2)
    raise RuntimeError(f"not ready after {timeout:g}s (GET {path}: {last})")


def batch_counts(port: int) -> tuple[float, float] | None:
    """The gateway's ``mlops_batch_size`` histogram, summed over models: (predict calls,
    rows), from its /metrics; None where there is none (other servers)."""
    try:
        status, _, raw = http_request(port, "GET", "/metrics", timeout=5.0)
    except OSError:
        return None
    if status != 200:
        return None
    calls = rows = 0.0
    found = False
    for line in raw.decode(errors="replace").splitlines():
        if line.startswith("mlops_batch_size_count"):
            calls += float(line.rsplit(" ", 1)[1])
            found = True
        elif line.startswith("mlops_batch_size_sum"):
            rows += float(line.rsplit(" ", 1)[1])
    return (calls, rows) if found else None


class Refused(RuntimeError):
    """The server answered a well-formed request with an error status."""

    def __init__(self, row: int, status: int, body: bytes) -> None:
        self.answer = f"HTTP {status}: {body[:200].decode(errors='replace')}"
        super().__init__(f"row {row}: {self.answer}")


def verify_http(port: int, load: Load, expected: list[Any], runtime: str | None = None,
                ) -> None:
    """Each distinct body once: a 200 whose prediction equals the local model's (and whose
    ``x-model-runtime`` is ``runtime``, when given). A 503 is retried for a while: with
    several workers, one may still be loading the model."""
    for i, (body, want) in enumerate(zip(load.bodies, expected, strict=True)):
        deadline = time.monotonic() + 30
        while True:
            status, headers, raw = http_request(port, "POST", load.path, body, load.headers)
            if status != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if status != 200:
            raise Refused(i, status, raw)
        try:
            got = load.extract(json.loads(raw))
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise RuntimeError(f"row {i}: unexpected answer {raw[:300]!r} ({exc})") from exc
        if len(got) != 1 or got[0] != want:
            raise RuntimeError(f"row {i}: predicted {got!r}, the local model says [{want!r}]")
        if runtime is not None and headers.get("x-model-runtime") != runtime:
            raise RuntimeError(f"row {i}: x-model-runtime is "
                               f"{headers.get('x-model-runtime')!r}, expected {runtime!r}")


# ----------------------------------------------------------------------------- wrk
LUA = """\
-- Generated by bench/serving.py: POST one of N pre-built single-row bodies per request.
-- The bodies are concatenated in one file (they may hold any bytes) and cut by length.
local f = assert(io.open(%(bodies)s, "rb"))
local data = f:read("*a")
f:close()
local sizes = {%(sizes)s}
local headers = {%(headers)s}
local path = %(path)s
local reqs, n, i = {}, 0, 0
function init(args)
  local pos = 1
  for k, size in ipairs(sizes) do
    reqs[k] = wrk.format("POST", path, headers, data:sub(pos, pos + size - 1))
    pos = pos + size
  end
  n = #sizes
  i = math.random(n) - 1
end
function request()
  i = i %% n + 1
  return reqs[i]
end
"""


def _lua_string(text: str) -> str:
    if not text.isascii() or any(c in text for c in "\n\r\0"):
        raise ValueError(f"cannot put {text!r} in the Lua script")
    return json.dumps(text)  # ASCII JSON strings are Lua strings


def write_lua(folder: Path, name: str, load: Load) -> Path:
    bodies_file = folder / f"bodies-{name}.bin"
    bodies_file.write_bytes(b"".join(load.bodies))
    headers = ", ".join(f"[{_lua_string(k)}] = {_lua_string(v)}"
                        for k, v in load.headers.items())
    lua = folder / f"load-{name}.lua"
    lua.write_text(LUA % {"bodies": _lua_string(str(bodies_file)),
                          "sizes": ", ".join(str(len(b)) for b in load.bodies),
                          "headers": headers, "path": _lua_string(load.path)})
    return lua


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


def wrk_version(wrk: str) -> str:
    done = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
    m = re.search(r"wrk (\S+)", done.stdout + done.stderr)
    return f"wrk {m.group(1)}" if m else "wrk"


# ----------------------------------------------------------------------------- gRPC
GRPC_LOAD = ROOT / "bench" / "grpc_load.py"


def run_grpc(port: int, model: str, rows: Path, args: argparse.Namespace, *,
             seconds: float = 0.0, expected: Path | None = None) -> dict[str, Any]:
    """``bench/grpc_load.py`` in its own process (this venv's Python): a load run of
    ``seconds``, or with ``expected`` a check of every row's answer."""
    argv = [sys.executable, str(GRPC_LOAD), "--port", str(port), "--model", model,
            "--rows", str(rows)]
    if expected is not None:
        argv += ["--verify", "--expected", str(expected)]
        timeout = 180.0
    else:
        argv += ["--duration", f"{seconds:g}", "--concurrency", str(args.connections)]
        timeout = seconds + 60
    env = child_env(Path(sys.executable).parent)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=ROOT)
    lines = proc.stdout.strip().splitlines()
    try:
        out = json.loads(lines[-1]) if lines else {}
    except ValueError:
        out = {}
    if proc.returncode != 0 or "error" in out or not out:
        detail = out.get("error") or (proc.stderr.strip() or proc.stdout.strip())[-600:]
        raise RuntimeError(f"grpc_load failed ({proc.returncode}): {detail}")
    return out
