"""The prediction log's cost, measured interleaved: for ``bench/serving.py``.

One measurement of the gateway with the log on and one with it off, a minute apart, cannot
show a 10% effect on a machine whose speed drifts by more than that between two runs. So
both gateways (``gw`` and ``gw-nolog``, the same model and store) run at once, each idle
while the other is loaded, and are measured alternately on the V2 JSON form for
``--log-rounds`` rounds of ``--log-seconds`` each, in ABBA order (on, off, off, on, ...)
so that a steady drift weighs on both sides alike. The cost is the median of the rounds'
own ``1 - on / off`` (paired: the drift between rounds cancels); the rounds' costs are
printed beside it, with
the server's CPU time per request on each side (less sensitive to the machine's drift than
throughput, though not to its clock speed).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from serving_infra import ForeignLoad, free_port, run_wrk, verify_http, wait_ready, write_lua

if TYPE_CHECKING:
    from serving import Bench
    from serving_payloads import BenchModel

__all__ = ["LogCost", "measure_log_cost"]


@dataclass
class LogCost:
    """Requests/s of each round with the log on and off, in the order measured."""

    model: str
    seconds: float
    on: list[float] = field(default_factory=list)
    off: list[float] = field(default_factory=list)
    foreign: list[float] = field(default_factory=list)  # cores other processes used
    steal: list[float] = field(default_factory=list)  # cores the hypervisor took
    cpu_on: list[float] = field(default_factory=list)  # server CPU microseconds per request
    cpu_off: list[float] = field(default_factory=list)
    failed: str = ""

    @property
    def cost(self) -> float | None:
        """The share of throughput the log costs: the median of the rounds' own ``1 - on /
        off`` (a paired estimate: each round measures both sides back to back, so the
        machine's drift between rounds cancels)."""
        costs = self.round_costs
        return statistics.median(costs) if costs else None

    @property
    def round_costs(self) -> list[float]:
        """Each round's own ``1 - on / off`` (a round measures both, back to back)."""
        return [1 - a / b for a, b in zip(self.on, self.off, strict=False) if b]

    def summary(self) -> str:
        if self.failed:
            return f"{self.model}: interleaved log cost not measured: {self.failed}"
        costs = sorted(self.round_costs)
        cpu = ""
        if self.cpu_on and self.cpu_off:
            on, off = statistics.median(self.cpu_on), statistics.median(self.cpu_off)
            cpu = (f"; server CPU per request (median) {on:.0f} us log on, {off:.0f} us off "
                   f"(+{on - off:.0f} us, {1 - off / on:.1%} of the log-on request)")
        return (f"{self.model}: prediction log cost, interleaved: {len(self.on)} rounds of "
                f"{self.seconds:g}s each way in ABBA order, both gateways up at once; req/s "
                f"log on {_list(self.on)} (median {statistics.median(self.on):,.0f}), log off "
                f"{_list(self.off)} (median {statistics.median(self.off):,.0f}); per-round "
                f"cost {_list_pct(costs)} (median {statistics.median(costs):.1%}){cpu}; other "
                f"processes used at most {max(self.foreign, default=0.0):.2f} cores, the "
                f"hypervisor took at most {max(self.steal, default=0.0):.2f} (steal)")


def _list(values: list[float]) -> str:
    return "/".join(f"{v:,.0f}" for v in values)


def _list_pct(values: list[float]) -> str:
    return " ".join(f"{v:.0%}" for v in values)


def measure_log_cost(bench: Bench, bm: BenchModel) -> LogCost:
    """Start ``gw`` and ``gw-nolog`` for ``bm``, check both answer right, warm both up, then
    measure them alternately (see the module docstring)."""
    args = bench.args
    result = LogCost(bm.key, args.log_seconds)
    targets = {t.server: t for t in bench.targets(bm) if t.server in ("gw", "gw-nolog")}
    on, off = targets["gw"], targets["gw-nolog"]
    procs = []
    try:
        for t in (on, off):
            t.port = free_port()
            argv, env, cwd = t.prepare(t)
            logfile = bench.tmp / f"server-{bm.key}-logcost-{t.server}.log"
            procs.append(bench.servers.start(argv, env, cwd, logfile))
        luas: dict[str, Any] = {}
        for t, proc in zip((on, off), procs, strict=True):
            wait_ready(proc, t.port, t.ready_path, args.startup_timeout)
            load = t.forms["json"]
            assert load is not None
            verify_http(t.port, load, bm.expected)
            luas[t.server] = write_lua(bench.tmp, f"{bm.key}-logcost-{t.server}", load)
            run_wrk(bench.wrk, t.port, luas[t.server], max(args.warmup, 1.0), args)
        for i in range(args.log_rounds):
            pair = (on, off) if i % 2 == 0 else (off, on)
            for t in pair:
                proc = procs[0] if t is on else procs[1]
                try:
                    monitor: ForeignLoad | None = ForeignLoad(proc.pid)
                except (OSError, ValueError, IndexError):
                    monitor = None
                stats = run_wrk(bench.wrk, t.port, luas[t.server], args.log_seconds, args)
                if stats["errors"]:
                    raise RuntimeError(f"{t.server}: {stats['errors']} errors "
                                       f"({stats['error_detail']})")
                (result.on if t is on else result.off).append(stats["rps"])
                cores = monitor.cores() if monitor is not None else None
                if monitor is not None:
                    result.steal.append(monitor.steal())
                if cores is not None:
                    result.foreign.append(cores[0])
                    if stats["rps"] and stats["seconds"]:
                        per_request = cores[1] / (stats["rps"] * stats["seconds"]) * 1e6
                        (result.cpu_on if t is on else result.cpu_off).append(per_request)
            time.sleep(0.2)
    except (RuntimeError, OSError, ValueError) as exc:
        result.failed = str(exc)
    finally:
        for proc in procs:
            bench.servers.stop(proc)
    return result
