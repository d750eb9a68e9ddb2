"""Rollout controller tick: O(new rows) with cursors and running aggregates, against the
full re-read a tick used to do.

Run with ``.venv/bin/python bench/rollout_tick.py`` (0.1M, 1M and 10M rows in the log, a few
minutes; ``--sizes 100000,1000000`` for a quick run).

An A/B rollout (50/50, labels required, never decided) runs on a SQLite store. The log is
written with the prediction-log writer (:class:`mlops.store.predlog.PredictionLog`, files of
``--file-rows`` rows per version, as a busy gateway flushes them): single-row requests of a
binary classifier with class probabilities, 0.5% 5xx, latency ~ gamma, labels for 30% of
the successful rows, sent right after their prediction. The controller ticks while the log
grows (as it would in ``mlops serve``), so at each size it is warm. Then, per size:

- **tick (new rows)**: ``--new-rows`` new requests (and their labels) are written, then one
  controller pass (``RolloutManager.tick``: list new files, read them, add them to the
  aggregates, analyse, write the analysis row); the median of ``--repeat`` passes;
- **tick (nothing new)**: a pass when no file arrived;
- **first tick of a new leader**: a fresh controller's first pass (in a new process), which
  reads the rollout's log once from the start (the analysis columns, a few files at a
  time);
- **full re-read (before)**: what every pass did before the cursors: read every column of
  every row since the rollout began (``read_predictions`` / ``read_feedback``), then the
  analysis over those tables (the pre-cursor ``analyse`` of commit ``cd488cf`` when git
  has it, else today's analysis over an evidence rebuilt from the full read).

Times are wall-clock seconds on this machine; the two re-reads run in child processes and
report the peak memory they added. The counts the running aggregates hold are checked
against the new leader's recount at each size.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import skops.io as sio
from sklearn.linear_model import LogisticRegression

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mlops.config import Settings  # noqa: E402
from mlops.deployment.analysis import analyse  # noqa: E402
from mlops.deployment.evidence import FEEDBACK_COLUMNS, Evidence  # noqa: E402
from mlops.deployment.rollouts import RolloutManager  # noqa: E402
from mlops.deployment.views import utc  # noqa: E402
from mlops.registry.service import ModelRegistry  # noqa: E402
from mlops.store.predlog import (  # noqa: E402
    FeedbackRecord,
    PredictionLog,
    PredictionRecord,
    read_feedback,
    read_predictions,
)
from mlops.store.schema import RolloutRow  # noqa: E402

MODEL = "bench"
VERSIONS = ("1.0.0", "1.1.0")
BASELINE_COMMIT = "cd488cf"
INPUTS = '{"x0": 0.123456, "x1": -1.234567, "x2": 0.5, "x3": 2.0}'


class Traffic:
    """Writes what a gateway would log for requests split 50/50 (and their labels)."""

    def __init__(self, log: PredictionLog, seed: int = 0) -> None:
        self.log = log
        self.rng = np.random.default_rng(seed)
        self.sent = 0

    def write(self, n: int, labelled: float = 0.3) -> None:
        rng, now = self.rng, time.time()
        arm = rng.integers(0, 2, n)
        truth = rng.integers(0, 2, n)
        right = rng.random(n) < 0.9
        pred = np.where(right, truth, 1 - truth)
        p1 = np.clip(np.where(pred == 1, 0.7, 0.3) + rng.normal(0, 0.1, n), 0.0, 1.0)
        status = np.where(rng.random(n) < 0.005, 500, 200)
        latency = rng.gamma(4.0, 1.0, n)
        label = (rng.random(n) < labelled) & (status == 200)
        records, feedback = [], []
        for i in range(n):
            rid = f"r{self.sent + i}"
            ok = status[i] == 200
            records.append(PredictionRecord(
                rid, now, MODEL, VERSIONS[arm[i]], "production",
                "candidate" if arm[i] else "stable", None, 0, INPUTS,
                str(pred[i]) if ok else "null", float(pred[i]) if ok else None,
                [1.0 - p1[i], p1[i]] if ok else None, float(latency[i]), int(status[i]), 0.5))
            if label[i]:
                feedback.append(FeedbackRecord(rid, 0, MODEL, str(truth[i]), float(truth[i]),
                                               now))
        self.sent += n
        self.log.log(records)
        self.log.log_feedback(feedback)
        self.log.flush()


def old_analyse() -> Callable[..., Any] | None:
    """The pre-cursor analysis (tables in), loaded from git, or None."""
    try:
        source = subprocess.run(["git", "show", f"{BASELINE_COMMIT}:mlops/deployment/analysis.py"],
                                cwd=REPO, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    module = types.ModuleType("old_analysis")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, "old_analysis.py", "exec"), module.__dict__)
    found: Callable[..., Any] = module.__dict__["analyse"]
    return found


def full_reread(manager: RolloutManager, rollout_id: int, old: Callable[..., Any] | None
                ) -> None:
    """One pass the way it was done before: every column of every row, analysed."""
    with manager.store.read() as s:
        row = s.get(RolloutRow, rollout_id)
        assert row is not None
        started = utc(row.started_at).timestamp()
        config: dict[str, Any] = dict(row.config)
        monitors: dict[str, Any] = {}
    uri = manager.registry.settings.artifacts_uri
    now = time.time()
    log = read_predictions(uri, MODEL, since=started)
    log = log.filter(pc.equal(log["environment"], "production"))
    feedback = read_feedback(uri, MODEL, since=started)
    if old is not None:
        old(log, feedback, stable=VERSIONS[0], candidate=VERSIONS[1], weight=50.0,
            config=config, monitors=monitors, now=now, step_since=started)
        return
    evidence = Evidence(environment="production", stable=VERSIONS[0], candidate=VERSIONS[1],
                        label_delay=0.0, label_window=86_400.0)
    evidence.begin_step(0, started, 50.0)
    evidence.ingest(log, feedback.select(list(FEEDBACK_COLUMNS)), now)
    evidence.settle(now, 5.0)
    analyse(evidence, weight=50.0, config=config, monitors=monitors)


def timed(call: Callable[[], Any]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM), in MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb() -> float:
    """This process's resident set now (VmRSS), in MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure(kind: str, home: Path, rollout_id: int) -> None:
    """A child process's measurement, printed as JSON (its peak memory is its own)."""
    settings = Settings(home=home, actor="bench")
    manager = RolloutManager(ModelRegistry(settings))
    out: dict[str, Any] = {"rss_before_mb": peak_rss_mb()}
    if kind == "leader":
        out["seconds"] = timed(manager.tick)
        evidence = manager.ticker.tracked[rollout_id].evidence
        out["requests"] = [t.requests for t in evidence.traffic]
        out["labelled"] = [q.n for q in evidence.quality]
    else:
        old = old_analyse()
        out["baseline"] = f"commit {BASELINE_COMMIT}" if old else "today over a full read"
        out["seconds"] = timed(lambda: full_reread(manager, rollout_id, old))
    out["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(out))


def grown(found: dict[str, Any]) -> float:
    """Peak memory a measurement added to its process (over the imports)."""
    return float(found["peak_rss_mb"] - found["rss_before_mb"])


def child(kind: str, home: Path, rollout_id: int) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "--measure", kind, "--home", str(home),
                           "--rollout", str(rollout_id)], capture_output=True, text=True,
                          check=True)
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000,10000000")
    parser.add_argument("--new-rows", type=int, default=10_000)
    parser.add_argument("--file-rows", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--measure", choices=["leader", "full"], help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--rollout", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.measure, args.home, args.rollout)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    root = Path(tempfile.mkdtemp(prefix="mlops-tick-"))
    try:
        settings = Settings(home=root / ".mlops", actor="bench")
        registry = ModelRegistry(settings)
        x = np.random.default_rng(0).normal(size=(200, 4))
        y = (x[:, 0] > 0).astype(int)
        model = root / "model.skops"
        sio.dump(LogisticRegression().fit(x, y), model)
        for version in VERSIONS:
            registry.register(MODEL, model, version=version)
        registry.promote(MODEL, VERSIONS[0], "production")
        manager = RolloutManager(registry)
        rollout = manager.deploy(MODEL, VERSIONS[1], "production", strategy="ab_test",
                                 config={"traffic_split": 0.5, "min_samples": 10**9,
                                         "require_labels": True, "max_step_seconds": 1e9},
                                 override="benchmark")
        log = PredictionLog(settings.artifacts_uri, spool=False, flush_rows=args.file_rows,
                            max_buffer=2_000_000, flush_seconds=3600.0)
        traffic = Traffic(log)
        header = (f"{'rows in log':>12} | {'tick: 10k new rows':>18} | {'tick: nothing new':>17}"
                  f" | {'new leader, 1st tick':>21} | {'full re-read (before)':>21} | "
                  "speed-up")
        print(header.replace("10k", f"{args.new_rows // 1000}k"))
        print("-" * len(header))
        baseline = ""
        for size in sizes:
            while traffic.sent < size:
                traffic.write(min(200_000, size - traffic.sent))
                manager.tick()  # the controller keeps up while the log grows
            ticks = []
            for _ in range(args.repeat):
                traffic.write(args.new_rows)
                ticks.append(timed(manager.tick))
            tick = statistics.median(ticks)
            idle = timed(manager.tick)
            leader = child("leader", settings.home, rollout.id)
            full = child("full", settings.home, rollout.id)
            baseline = full["baseline"]
            running = manager.ticker.tracked[rollout.id].evidence
            assert [t.requests for t in running.traffic] == leader["requests"]
            assert [q.n for q in running.quality] == leader["labelled"]
            print(f"{traffic.sent:>12,} | {tick:>16.3f} s | {idle:>15.3f} s | "
                  f"{leader['seconds']:>7.2f} s, +{grown(leader):>6,.0f} MB | "
                  f"{full['seconds']:>7.2f} s, +{grown(full):>6,.0f} MB | "
                  f"{full['seconds'] / tick:>6,.0f}x", flush=True)
        print(f"before = read_predictions/read_feedback of every column since the rollout "
              f"began + the analysis of {baseline}; +MB = peak memory over the imports; "
              f"controller process now {rss_mb():,.0f} MB")
        log.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
