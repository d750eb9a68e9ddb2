"""Monitoring benchmark: performance windows with DuckDB vs pyarrow + pandas + scikit-learn.

Run with ``.venv/bin/python bench/monitoring.py`` (10M predictions; ``--rows 1000000`` for a
quick run).

A synthetic prediction log is written with pyarrow directly, in the prediction log's own
layout (``predictions/model=.../version=.../date=.../part-*.parquet``, lz4, the files a
gateway flushing every ``--file-rows`` rows would write): ``--rows`` predictions of a binary
classifier with probabilities over ``--days`` days, two versions (80/20), two environments,
5% batch requests of 4 rows, 0.5% 5xx and 0.5% 4xx, latency ~ gamma; feedback for 30% of the
successful rows, 0-6 h after the prediction, 1% of them sent twice (a corrected label).

Each measurement runs in a fresh process (so that peak RSS is its own) on the same files:

- ``mlops``: :func:`mlops.monitoring.performance.performance_window` over one day and over
  the whole log, and :func:`performance_series` by hour over the whole log;
- ``pyarrow+pandas``: the way the rollout analysis reads the log today -
  ``read_predictions`` / ``read_feedback`` of the model, filter the window in pandas, drop
  duplicate labels (latest wins), merge, then scikit-learn (accuracy, precision, recall,
  F1, ROC-AUC, log loss), ``nunique`` request ids and ``np.percentile`` latencies; the hourly
  series groups the merged frame by hour and calls scikit-learn per bucket.

Wall time is the call alone (imports excluded); peak RSS is the process's maximum resident
set (``VmHWM``) and "+RSS" the growth over the RSS after imports. Both approaches must
agree on the figures (checked and printed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

MODEL = "bench"
VERSIONS = ("1.0.0", "1.1.0")
T0 = datetime(2026, 1, 5, tzinfo=UTC)
DAY_US = 86_400_000_000
TS = pa.timestamp("us", tz="UTC")


# ---------------------------------------------------------------------------- data


def _write(table: pa.Table, folder: str, file_rows: int) -> int:
    os.makedirs(folder, exist_ok=True)
    for s in range(0, table.num_rows, file_rows):
        stamp = (T0 + timedelta(microseconds=s)).strftime("%Y%m%dT%H%M%S%fZ")
        pq.write_table(table.slice(s, file_rows),
                       f"{folder}/part-{stamp}-{uuid.uuid4().hex}.parquet", compression="lz4")
    return -(-table.num_rows // file_rows)


def generate(root: str, rows: int, days: int, file_rows: int, seed: int = 0) -> dict[str, int]:
    """Write the synthetic log; returns counts."""
    from mlops.store.predlog import FEEDBACK_SCHEMA, PREDICTION_SCHEMA

    rng = np.random.default_rng(seed)
    t0 = (T0 - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    ts = t0 + rng.integers(0, days * DAY_US, rows)
    rid = np.arange(rows)
    row = np.zeros(rows, np.int64)
    starts = np.flatnonzero(rng.random(rows - 3) < 0.05 / 4)
    starts = starts[np.diff(starts, prepend=-10) >= 4]
    for k in range(1, 4):  # batch requests: 4 rows share the request id and everything else
        rid[starts + k], row[starts + k] = rid[starts], k
    ts, version = ts[rid], (rng.random(rows) < 0.2)[rid].astype(np.int64)
    u = rng.random(rows)[rid]
    status = np.where(u < 0.005, 500, np.where(u < 0.01, 400, 200)).astype(np.int32)
    ok = status == 200
    p = rng.beta(2, 2, rows)
    actual = (rng.random(rows) < p).astype(np.int64)
    labels = pa.array(["0", "1"])
    proba = pa.ListArray.from_arrays(pa.array(np.arange(0, 2 * rows + 1, 2, dtype=np.int32)),
                                     pa.array(np.stack([1 - p, p], axis=1).ravel()),
                                     mask=pa.array(~ok))
    request_id = pc.utf8_lpad(pc.cast(pa.array(rid), pa.string()), 32, "0")
    pool = pa.array([json.dumps({"age": i % 90, "plan": ["free", "pro"][i % 2],
                                 "spend": round(i * 0.37, 2)}) for i in range(1000)])
    env = np.where(rng.random(rows) < 0.9, "production", "staging")[rid]
    file_schema = pa.schema([f for f in PREDICTION_SCHEMA
                             if f.name not in ("model", "version", "date")])
    table = pa.table({
        "request_id": request_id, "ts": pa.array(ts, TS), "environment": pa.array(env),
        "route": pa.array(np.where(version == 1, "candidate", "stable")),
        "unit_hash": pa.nulls(rows, pa.string()), "row": pa.array(row),
        "inputs": pc.take(pool, pa.array(rng.integers(0, 1000, rows))),
        "prediction": pc.if_else(pa.array(ok), pc.take(labels, pa.array((p >= 0.5) * 1)),
                                 pa.scalar("null")),
        "prediction_num": pa.array((p >= 0.5) * 1.0, mask=~ok), "proba": proba,
        "latency_ms": pa.array(rng.gamma(4, 2.0, rows)[rid]), "status": pa.array(status),
        "propensity": pa.nulls(rows, pa.float64()),
        "caller": pa.nulls(rows, pa.string()), "cpu_ms": pa.nulls(rows, pa.float64()),
    }).cast(file_schema)
    order = np.lexsort((ts, version))
    table, ts, version = table.take(pa.array(order)), ts[order], version[order]
    day = (ts - t0) // DAY_US
    files = 0
    model_dir = f"{root}/predictions/model={quote(MODEL, safe='')}"
    for v, name in enumerate(VERSIONS):
        for d in range(days):
            lo, hi = np.searchsorted(version * days + day, [v * days + d, v * days + d + 1])
            date = (T0 + timedelta(days=d)).strftime("%Y-%m-%d")
            files += _write(table.slice(lo, hi - lo),
                            f"{model_dir}/version={quote(name, safe='')}/date={date}", file_rows)
    # feedback: 30% of the successful rows, 0-6 h later; 1% sent twice (corrected label)
    ok, p_row = ok[order], actual[order]
    fb = np.flatnonzero(ok & (rng.random(rows) < 0.3))
    dup = fb[rng.random(len(fb)) < 0.01]
    idx = np.concatenate([dup, fb])
    values = np.concatenate([1 - p_row[dup], p_row[fb]])
    fts = np.concatenate([ts[dup], ts[fb] + rng.integers(0, 6 * 3_600_000_000, len(fb))])
    fts[: len(dup)] += rng.integers(0, 60_000_000, len(dup))  # the wrong label comes first
    fts[len(dup):][np.isin(fb, dup)] += 3_600_000_000 * 7
    fb_schema = pa.schema([f for f in FEEDBACK_SCHEMA if f.name not in ("model", "date")])
    feedback = pa.table({
        "request_id": table["request_id"].take(pa.array(idx)),
        "row": table["row"].take(pa.array(idx)),
        "actual": pc.take(labels, pa.array(values)), "actual_num": pa.array(values * 1.0),
        "ts": pa.array(fts, TS)}).cast(fb_schema)
    f_order = np.argsort(fts, kind="stable")
    feedback, fday = feedback.take(pa.array(f_order)), (fts[f_order] - t0) // DAY_US
    for d in np.unique(fday):
        lo, hi = np.searchsorted(fday, [d, d + 1])
        date = (T0 + timedelta(days=int(d))).strftime("%Y-%m-%d")
        files += _write(feedback.slice(lo, hi - lo),
                        f"{root}/feedback/model={quote(MODEL, safe='')}/date={date}", file_rows)
    return {"predictions": rows, "feedback": feedback.num_rows, "files": files}


# ---------------------------------------------------------------------------- measurements


def _status_mb(key: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process; unlike ru_maxrss, VmHWM starts afresh
    at exec and does not inherit the parent's peak."""
    # no /proc (not Linux): fall back to ru_maxrss
    with contextlib.suppress(OSError), open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _window_args(scenario: str, days: int) -> dict[str, Any]:
    now = T0 + timedelta(days=days)
    if scenario.endswith("day"):
        return {"start": T0 + timedelta(days=days // 2), "end": T0 + timedelta(days=days // 2 + 1),
                "now": now}
    return {"start": T0, "end": now, "now": now}


def _run_mlops(root: str, scenario: str, days: int) -> dict[str, Any]:
    from mlops.monitoring.performance import performance_series, performance_window

    args = _window_args(scenario, days)
    if scenario == "series":
        series = performance_series(root, MODEL, bucket=timedelta(hours=1), **args)
        return {"buckets": len(series), "n_labeled": sum(w.n_labeled for w in series),
                "accuracy_h0": series[0].metrics.get("accuracy"),
                "roc_auc_h0": series[0].metrics.get("roc_auc")}
    w = performance_window(root, MODEL, **args)
    return {"n_predictions": w.n_predictions, "n_requests": w.n_requests,
            "n_labeled": w.n_labeled, "latency_p99_ms": w.latency_p99_ms, **w.metrics}


def _quality(j: Any) -> dict[str, float]:
    from sklearn.metrics import (
        accuracy_score,
        f1_score,
        log_loss,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    y, yp = j.actual_num.to_numpy(), j.prediction_num.to_numpy()
    proba = np.stack(list(j.proba))
    out = {"accuracy": accuracy_score(y, yp), "precision": precision_score(y, yp),
           "recall": recall_score(y, yp), "f1": f1_score(y, yp),
           "log_loss": log_loss(y, proba, labels=[0.0, 1.0])}
    if np.unique(y).size == 2:  # one class in a small bucket: AUC is undefined, left out
        out["roc_auc"] = roc_auc_score(y, proba[:, 1])
    return out


def _run_pandas(root: str, scenario: str, days: int) -> dict[str, Any]:
    from mlops.store.predlog import read_feedback, read_predictions

    args = _window_args(scenario, days)
    p = read_predictions(root, MODEL).to_pandas()
    f = read_feedback(root, MODEL).to_pandas()
    p = p[(p.ts >= args["start"]) & (p.ts < args["end"])]
    f = f[f.ts <= args["now"]].sort_values("ts").drop_duplicates(["request_id", "row"],
                                                                 keep="last")
    mature = p[(p.status < 400) & (p.ts <= args["now"])]
    j = mature.merge(f[["request_id", "row", "actual", "actual_num"]], on=["request_id", "row"])
    if scenario == "series":
        j = j.assign(hour=(j.ts - args["start"]) // timedelta(hours=1))
        per_hour = {int(h): _quality(g) for h, g in j.groupby("hour")}
        p = p.assign(hour=(p.ts - args["start"]) // timedelta(hours=1))
        ok = p[(p.status < 400) & (p.row == 0)]
        _ = ok.groupby("hour").latency_ms.quantile([0.5, 0.95, 0.99])
        _ = p.groupby("hour").request_id.nunique()
        return {"buckets": len(per_hour), "n_labeled": len(j),
                "accuracy_h0": per_hour[0]["accuracy"], "roc_auc_h0": per_hour[0]["roc_auc"]}
    ok = p[(p.status < 400) & (p.row == 0)]
    return {"n_predictions": len(p), "n_requests": int(p.request_id.nunique()),
            "n_labeled": len(j), "latency_p99_ms": float(np.percentile(ok.latency_ms, 99)),
            **_quality(j)}


def worker(approach: str, root: str, scenario: str, days: int) -> None:
    import pandas  # noqa: F401
    import sklearn.metrics  # noqa: F401

    import mlops.monitoring.performance
    import mlops.store.predlog  # noqa: F401

    base = _status_mb("VmRSS")
    t = time.perf_counter()
    summary = (_run_mlops if approach == "mlops" else _run_pandas)(root, scenario, days)
    seconds = time.perf_counter() - t
    peak = _status_mb("VmHWM")
    print(json.dumps({"seconds": seconds, "peak_mb": peak, "growth_mb": peak - base,
                      "summary": summary}))


def measure(approach: str, root: str, scenario: str, days: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--worker", approach, "--dir", root,
                          "--scenario", scenario, "--days", str(days)],
                         check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _agree(a: dict[str, Any], b: dict[str, Any]) -> str:
    worst = 0.0
    for k, v in a.items():
        if isinstance(v, int | float) and k in b and b[k] is not None:
            worst = max(worst, abs(v - b[k]) / max(abs(b[k]), 1e-12))
    return "yes" if worst < 1e-6 else f"NO (max rel diff {worst:.2g})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--file-rows", type=int, default=20_000)
    ap.add_argument("--dir", help="data folder (default: a temporary one, removed at the end)")
    ap.add_argument("--keep", action="store_true", help="keep (and reuse) the data in --dir")
    ap.add_argument("--worker", choices=["mlops", "pandas"], help=argparse.SUPPRESS)
    ap.add_argument("--scenario", default="all", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        worker(a.worker, a.dir, a.scenario, a.days)
        return
    root = a.dir or tempfile.mkdtemp(prefix="mlops-bench-monitoring-")
    marker = os.path.join(root, "bench.json")
    try:
        if a.keep and os.path.exists(marker):
            with open(marker) as fh:
                counts = json.load(fh)
            print(f"reusing {root}: {counts}")
        else:
            shutil.rmtree(os.path.join(root, "predictions"), ignore_errors=True)
            shutil.rmtree(os.path.join(root, "feedback"), ignore_errors=True)
            t = time.perf_counter()
            counts = generate(root, a.rows, a.days, a.file_rows)
            with open(marker, "w") as fh:
                json.dump(counts, fh)
            print(f"generated {counts['predictions']:,} predictions, {counts['feedback']:,} "
                  f"feedback rows, {counts['files']} files in {time.perf_counter() - t:.1f} s")
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root) for f in fs)
        print(f"log size {size / 2**20:,.0f} MiB, {os.cpu_count()} CPUs\n")
        print(f"{'scenario':<22}{'approach':<16}{'wall s':>8}{'peak RSS MB':>13}"
              f"{'+RSS MB':>9}{'speed-up':>10}  agree")
        figures: dict[str, Any] = {}
        for scenario, title in (("day", "window: 1 day"), ("all", "window: whole log"),
                                ("series", "series: hourly")):
            m = measure("mlops", root, scenario, a.days)
            figures[scenario] = m["summary"]
            pd_ = measure("pandas", root, scenario, a.days)
            for name, r in (("mlops", m), ("pyarrow+pandas", pd_)):
                ratio = pd_["seconds"] / m["seconds"] if name == "mlops" else 1.0
                print(f"{title:<22}{name:<16}{r['seconds']:>8.2f}{r['peak_mb']:>13,.0f}"
                      f"{r['growth_mb']:>9,.0f}{ratio:>9.1f}x  "
                      f"{_agree(m['summary'], pd_['summary']) if name == 'mlops' else ''}")
        print("\nmlops whole-log figures:", json.dumps(
            {k: round(v, 4) if isinstance(v, float) else v for k, v in figures["all"].items()}))
    finally:
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
