"""Paired, interleaved measurements of two servers on one form: for ``bench/serving.py``.

One measurement of each server a minute apart cannot show a 10% effect on a machine whose
speed drifts by more than that between two runs (steal time moved single rows by up to 40
points here). So both servers (the same model; for the log's cost ``gw`` and ``gw-nolog``,
for gRPC the gateway and MLServer) run at once, each idle while the other is loaded, and
are measured alternately for ``--rounds`` rounds of ``--round-seconds`` each, in ABBA order
(A, B, B, A, ...) so that a steady drift weighs on both sides alike. The judged figure is
the median of the rounds' own ratios ``A / B`` (paired: the drift between rounds cancels);
the rounds' ratios are printed beside it, with the median p99 of each side and each
server's CPU time per request (less sensitive to the machine's drift than throughput,
though not to its clock speed).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from serving_infra import (
    ForeignLoad,
    free_port,
    run_grpc,
    run_wrk,
    verify_http,
    wait_ready,
    write_lua,
)

if TYPE_CHECKING:
    from serving import Bench, Target
    from serving_payloads import BenchModel

__all__ = ["Paired", "measure_paired"]


@dataclass
class Paired:
    """Requests/s of each round of servers ``a`` and ``b`` on ``form``, in the order
    measured."""

    model: str
    form: str
    a: str
    b: str
    seconds: float
    a_rps: list[float] = field(default_factory=list)
    b_rps: list[float] = field(default_factory=list)
    a_p99: list[float] = field(default_factory=list)  # ms
    b_p99: list[float] = field(default_factory=list)
    a_cpu: list[float] = field(default_factory=list)  # server CPU microseconds per request
    b_cpu: list[float] = field(default_factory=list)
    foreign: list[float] = field(default_factory=list)  # cores other processes used
    steal: list[float] = field(default_factory=list)  # cores the hypervisor took
    failed: str = ""

    @property
    def round_ratios(self) -> list[float]:
        """Each round's own ``a / b`` (a round measures both, back to back)."""
        return [x / y for x, y in zip(self.a_rps, self.b_rps, strict=False) if y]

    @property
    def ratio(self) -> float | None:
        """The median of the rounds' own ratios: a paired estimate of ``a / b``."""
        ratios = self.round_ratios
        return statistics.median(ratios) if ratios else None

    @property
    def cost(self) -> float | None:
        """``1 - a / b``: what ``a`` loses against ``b`` (the log's cost, ``a`` = log on)."""
        ratio = self.ratio
        return None if ratio is None else 1 - ratio

    @property
    def p99(self) -> tuple[float, float] | None:
        """The median p99 (ms) of ``a``'s rounds and of ``b``'s."""
        if not self.a_p99 or not self.b_p99:
            return None
        return statistics.median(self.a_p99), statistics.median(self.b_p99)

    def summary(self, what: str, a_name: str, b_name: str, *, as_cost: bool = False) -> str:
        if self.failed:
            return f"{self.model}: {what}, interleaved: not measured: {self.failed}"
        ratios = sorted(self.round_ratios)
        if as_cost:
            rounds = " ".join(f"{1 - r:.0%}" for r in reversed(ratios))
            figure = f"per-round cost {rounds} (median {self.cost:.1%})"
        else:
            rounds = " ".join(f"{r:.2f}x" for r in ratios)
            figure = f"per-round {a_name} / {b_name} {rounds} (median {self.ratio:.2f}x)"
        p99 = self.p99
        latency = "" if p99 is None else \
            f"; median p99 {p99[0]:.2f} ms {a_name}, {p99[1]:.2f} ms {b_name}"
        cpu = ""
        if self.a_cpu and self.b_cpu:
            a, b = statistics.median(self.a_cpu), statistics.median(self.b_cpu)
            cpu = (f"; server CPU per request (median) {a:.0f} us {a_name}, {b:.0f} us "
                   f"{b_name}")
        return (f"{self.model}: {what}, interleaved: {len(self.a_rps)} rounds of "
                f"{self.seconds:g}s each way in ABBA order, both servers up at once; req/s "
                f"{a_name} {_list(self.a_rps)} (median {statistics.median(self.a_rps):,.0f}), "
                f"{b_name} {_list(self.b_rps)} (median {statistics.median(self.b_rps):,.0f}); "
                f"{figure}{latency}{cpu}; other processes used at most "
                f"{max(self.foreign, default=0.0):.2f} cores, the hypervisor took at most "
                f"{max(self.steal, default=0.0):.2f} (steal)")


def _list(values: list[float]) -> str:
    return "/".join(f"{v:,.0f}" for v in values)


def measure_paired(bench: Bench, bm: BenchModel, a: str, b: str, form: str) -> Paired:
    """Start servers ``a`` and ``b`` for ``bm``, check both answer ``form`` right, warm both
    up, then measure them alternately (see the module docstring)."""
    args = bench.args
    result = Paired(bm.key, form, a, b, args.round_seconds)
    targets = {t.server: t for t in bench.targets(bm) if t.server in (a, b)}
    pair = (targets[a], targets[b])
    procs = []
    rows = bench.tmp / f"rows-{bm.key}.npy"
    expected = bench.tmp / f"expected-{bm.key}.json"
    try:
        for t in pair:
            t.port = free_port()
            argv, env, cwd = t.prepare(t)
            logfile = bench.tmp / f"server-{bm.key}-paired-{form}-{t.server}.log"
            procs.append(bench.servers.start(argv, env, cwd, logfile))
        loads: dict[str, Callable[[float], dict[str, Any]]] = {}
        for t, proc in zip(pair, procs, strict=True):
            wait_ready(proc, t.port, t.ready_path, args.startup_timeout)
            loads[t.server] = _load(bench, t, form, rows, expected)
            loads[t.server](max(args.warmup, 1.0))
        for i in range(args.rounds):
            order = (0, 1) if i % 2 == 0 else (1, 0)
            for k in order:
                t, proc, first = pair[k], procs[k], k == 0
                try:
                    monitor: ForeignLoad | None = ForeignLoad(proc.pid)
                except (OSError, ValueError, IndexError):
                    monitor = None
                stats = loads[t.server](args.round_seconds)
                if stats["errors"]:
                    raise RuntimeError(f"{t.server}: {stats['errors']} errors "
                                       f"({stats.get('error_detail', '')})")
                (result.a_rps if first else result.b_rps).append(stats["rps"])
                if stats.get("p99_ms") is not None:
                    (result.a_p99 if first else result.b_p99).append(stats["p99_ms"])
                cores = monitor.cores() if monitor is not None else None
                if monitor is not None:
                    result.steal.append(monitor.steal())
                if cores is not None:
                    result.foreign.append(cores[0])
                    if stats["rps"] and stats["seconds"]:
                        per_request = cores[1] / (stats["rps"] * stats["seconds"]) * 1e6
                        (result.a_cpu if first else result.b_cpu).append(per_request)
            time.sleep(0.2)
    except (RuntimeError, OSError, ValueError) as exc:
        result.failed = str(exc)
    finally:
        for proc in procs:
            bench.servers.stop(proc)
    return result


def _load(bench: Bench, t: Target, form: str, rows: Any, expected: Any
          ) -> Callable[[float], dict[str, Any]]:
    """Check ``t``'s answers on ``form``; return its load run (seconds -> stats)."""
    args = bench.args
    if form == "grpc":
        if t.grpc_port is None:
            raise RuntimeError(f"{t.server}: no gRPC port")
        port = t.grpc_port
        run_grpc(port, t.model.key, rows, args, expected=expected)
        return lambda seconds: run_grpc(port, t.model.key, rows, args, seconds=seconds)
    load = t.forms[form]
    if load is None:
        raise RuntimeError(f"{t.server} has no HTTP load for {form}")
    verify_http(t.port, load, t.model.expected)
    lua = write_lua(bench.tmp, f"{t.model.key}-paired-{form}-{t.server}", load)
    return lambda seconds: run_wrk(bench.wrk, t.port, lua, seconds, args)
