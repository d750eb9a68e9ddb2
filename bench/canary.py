"""Canary benchmark: rollback decisions of threshold rules, naive peeking and the mSPRT.

Run with ``make bench-canary`` (or ``.venv/bin/python bench/canary.py --runs 20000``).

A canary rollout is simulated as ``--looks`` analysis intervals; each interval adds ``--n``
requests to each arm (stable and candidate), and after every interval each method decides
"roll back" or "continue". A run counts as rolled back as soon as a method decides so once
(a rollback cannot be undone). Every method sees the same simulated requests of a run.

Methods (the candidate is judged "worse" in the metric's bad direction only):

- ``argo``: the Argo Rollouts AnalysisTemplate style - an absolute threshold on the
  candidate alone over the last interval, ``failureLimit: 0`` (the default), so the first
  failed measurement aborts the rollout. Thresholds a team would set for a 0.90-accuracy
  model with a 0.5 % error rate: ``failureCondition: result < 0.88`` on accuracy and
  ``failureCondition: result > 2 x 0.005`` (1 %) on the 5xx rate.
- ``flagger``: the same per-interval checks, Flagger style: failed checks are cumulative
  (never reset by a passing check) and the canary is rolled back when the count reaches
  ``threshold`` (``--flagger-threshold``, 5 by default, as in Flagger's examples).
- ``naive-z``: the pooled two-proportion z-test (``mlops.stats.two_proportion_z_test``,
  vectorised here) on all data so far, at every look; roll back at two-sided p < 0.05 with
  the candidate worse. Fine once at a fixed horizon, wrong when peeked at every look.
- ``msprt`` (ours): the one-sided always-valid mSPRT "candidate worse than stable" - the
  "inferior" side of ``mlops.stats.msprt_non_inferiority_proportions`` with ``margin=0`` -
  computed for all runs and looks at once with ``mixture_log_lambda(..., side=...)`` and
  ``always_valid_p_values``; roll back once the running p-value is <= alpha (0.05). ``tau``
  is ``choose_tau`` of the smallest effect that matters: 2 accuracy points; for errors a 5x
  rise of 0.5 %, i.e. +2 points. A sample of runs is re-checked against the scalar library
  path (``msprt_non_inferiority_proportions`` + ``SequentialMonitor``) and must agree.

Label timing: accuracy needs labels. With ``immediate`` labels the look at interval k sees
every request up to k; with ``delayed`` labels (``--delay`` D, 3 by default) it sees only the
requests of intervals <= k - D (a threshold rule judges interval k - D, the latest one whose
labels are in). 5xx errors are known at once, so the error scenarios are the same under
both timings and are run once, as ``immediate``.

Reported per row: the share of runs rolled back (a false rollback in A/A scenarios, a
detection within the horizon otherwise) with a 95 % Wilson interval, and for the effect
scenarios the median number of requests per arm served until the rollback (runs never rolled
back count as never: "> horizon" when fewer than half are), the median number of labelled
requests per arm the decision was based on, and that median against the fixed-horizon
sample size of a one-sided two-proportion test at alpha 0.05 and power 0.8
(``mlops.stats.sample_size_proportions`` at two-sided alpha 0.10, which is the same z).
Goals checked: in A/A, msprt <= 5 % while naive-z > 5 %; with an effect, msprt's median
labelled requests <= 2x the fixed-horizon size.

Medians move in steps of ``--n``, so the default interval (250 requests per arm, 40 looks, a
horizon of 10,000 per arm) is kept well under the smallest fixed-horizon size (456 for the
5xx rise); at ``--n 500`` a rollback after 1 or 2 intervals is all the resolution there is.
The threshold rules depend strongly on the interval size (their per-interval noise does),
the mSPRT does not: compare ``--n 500 --looks 20`` and ``--n 100 --looks 100``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

from mlops.stats import (
    SequentialMonitor,
    always_valid_p_values,
    choose_tau,
    mixture_log_lambda,
    msprt_non_inferiority_proportions,
    sample_size_proportions,
    two_proportion_z_test,
)

ALPHA = 0.05
BASE_ACCURACY = 0.90
BASE_ERROR = 0.005
ACCURACY_FLOOR = 0.88  # argo/flagger: failure if interval accuracy < 0.88
ERROR_CEILING = 2.0 * BASE_ERROR  # argo/flagger: failure if interval 5xx rate > 2x baseline
MIN_ACCURACY_DROP = 0.02  # smallest effect that matters: 2 accuracy points
ERROR_RISE = 5.0  # ... and a 5x error-rate rise
METHODS = ("argo", "flagger", "naive-z", "msprt")
CHUNK = 20_000  # runs simulated at once (bounds memory for large --runs)
CROSS_CHECK_RUNS = 40  # runs re-computed with the scalar library path

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Scenario:
    name: str
    metric: str  # "accuracy" (higher is better) or "error" (lower is better)
    p_stable: float
    p_candidate: float

    @property
    def null(self) -> bool:
        return self.p_stable == self.p_candidate

    @property
    def worse_side(self) -> int:
        """Sign of ``p_candidate - p_stable`` that means "candidate worse"."""
        return -1 if self.metric == "accuracy" else 1


SCENARIOS = (
    Scenario("A/A accuracy 0.90", "accuracy", BASE_ACCURACY, BASE_ACCURACY),
    Scenario("accuracy 0.90->0.88", "accuracy", BASE_ACCURACY, BASE_ACCURACY - 0.02),
    Scenario("A/A errors 0.5%", "error", BASE_ERROR, BASE_ERROR),
    Scenario("errors 0.5%->2.5%", "error", BASE_ERROR, ERROR_RISE * BASE_ERROR),
)


@dataclass
class Settings:
    runs: int
    looks: int
    n: int
    delay: int
    seed: int
    flagger_threshold: int
    tau_accuracy: float
    tau_error: float

    def tau(self, sc: Scenario) -> float:
        return self.tau_accuracy if sc.metric == "accuracy" else self.tau_error


# --------------------------------------------------------------------------- data views


def _lag(a: IntArray, d: int) -> IntArray:
    """Shift along looks by ``d`` (look k gets the value of look k - d; 0 before)."""
    if d == 0:
        return a
    out = np.zeros_like(a)
    if d < a.shape[1]:
        out[:, d:] = a[:, :-d]
    return out


@dataclass(frozen=True)
class View:
    """What the analysis at each look sees: shape (runs, looks)."""

    cum_x: IntArray  # cumulative events (correct predictions / 5xx) in the stable arm
    cum_y: IntArray  # ... in the candidate arm
    cum_n: IntArray  # cumulative requests per arm the events were counted on (labelled)
    last_y: IntArray  # candidate events in the last interval judged by a threshold rule
    last_ok: BoolArray  # whether that interval exists yet (labels in)


def make_view(x: IntArray, y: IntArray, n: int, delay: int) -> View:
    runs, looks = x.shape
    n_per_look = np.full((runs, looks), n, dtype=np.int64)
    cum_n = _lag(np.cumsum(n_per_look, axis=1), delay)
    ok = np.broadcast_to(np.arange(looks) >= delay, (runs, looks))
    return View(_lag(np.cumsum(x, axis=1), delay), _lag(np.cumsum(y, axis=1), delay), cum_n,
                _lag(y, delay), np.asarray(ok))


# --------------------------------------------------------------------------- methods


def threshold_fails(sc: Scenario, v: View, n: int) -> BoolArray:
    """Argo/Flagger check on the candidate's last judged interval: True = failed check."""
    rate = v.last_y / n
    bad = rate < ACCURACY_FLOOR if sc.metric == "accuracy" else rate > ERROR_CEILING
    return np.asarray(bad & v.last_ok)


def naive_z_fires(sc: Scenario, v: View) -> BoolArray:
    """Pooled two-proportion z-test on all labelled data, two-sided p < alpha, worse side."""
    n = v.cum_n.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = (v.cum_y - v.cum_x) / n
        pooled = (v.cum_x + v.cum_y) / (2.0 * n)
        se0 = np.sqrt(pooled * (1.0 - pooled) * 2.0 / n)
        z = np.where((n > 0) & (se0 > 0), diff / se0, 0.0)
    p = 2.0 * sps.norm.sf(np.abs(z))
    return np.asarray((p < ALPHA) & (sc.worse_side * z > 0))


def plug_in_variance(cum_x: IntArray, cum_y: IntArray, cum_n: IntArray) -> FloatArray:
    """The library's Bernoulli plug-in ``V`` (proportions clipped to [1/(2n), 1-1/(2n)]);
    NaN where there is no data yet (the mSPRT then carries no evidence)."""
    n = cum_n.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        lo, hi = 0.5 / n, 1.0 - 0.5 / n
        px = np.clip(cum_x / n, lo, hi)
        py = np.clip(cum_y / n, lo, hi)
        v = px * (1.0 - px) / n + py * (1.0 - py) / n
    return np.asarray(np.where(n > 0, v, np.nan), dtype=np.float64)


def msprt_p_values(sc: Scenario, v: View, tau: float) -> FloatArray:
    """Running always-valid p-values of "candidate worse" (one-sided mixture, theta0 = 0)."""
    n = np.maximum(v.cum_n, 1).astype(np.float64)
    estimate = np.where(v.cum_n > 0, (v.cum_y - v.cum_x) / n, 0.0)
    log_lambda = mixture_log_lambda(estimate, plug_in_variance(v.cum_x, v.cum_y, v.cum_n), tau,
                                    side=sc.worse_side)
    return always_valid_p_values(log_lambda, axis=1)


def first_look(fires: BoolArray) -> IntArray:
    """Index of the first look that fires per run; -1 when none does."""
    hit = fires.any(axis=1)
    return np.where(hit, fires.argmax(axis=1), -1).astype(np.int64)


def decide(sc: Scenario, v: View, s: Settings) -> dict[str, IntArray]:
    failed = threshold_fails(sc, v, s.n)
    return {
        "argo": first_look(failed),
        "flagger": first_look(np.cumsum(failed, axis=1) >= s.flagger_threshold),
        "naive-z": first_look(naive_z_fires(sc, v)),
        "msprt": first_look(msprt_p_values(sc, v, s.tau(sc)) <= ALPHA),
    }


# --------------------------------------------------------------------------- cross-check


def cross_check(sc: Scenario, v: View, s: Settings, runs: int) -> int:
    """Recompute ``runs`` runs with the scalar library calls; return the number of looks."""
    tau = s.tau(sc)
    p_vec = msprt_p_values(sc, v, tau)
    z_vec = naive_z_fires(sc, v)
    checked = 0
    for r in range(min(runs, v.cum_n.shape[0])):
        monitor: SequentialMonitor | None = None
        for k in range(v.cum_n.shape[1]):
            n = int(v.cum_n[r, k])
            if n == 0:
                if p_vec[r, k] != 1.0:
                    raise AssertionError(f"{sc.name}: evidence before any data (run {r})")
                continue
            sx, sy = int(v.cum_x[r, k]), int(v.cum_y[r, k])
            look = msprt_non_inferiority_proportions(
                sx, n, sy, n, margin=0.0, tau=tau, alpha=ALPHA,
                higher_is_better=sc.metric == "accuracy")
            monitor = monitor or SequentialMonitor.like(look)
            running = monitor.update(look).p_inferior
            if running is None or not math.isclose(running, p_vec[r, k], rel_tol=1e-9,
                                                    abs_tol=1e-15):
                raise AssertionError(f"{sc.name}: vectorised mSPRT p {p_vec[r, k]!r} != "
                                     f"library {running!r} (run {r}, look {k})")
            z = two_proportion_z_test(sx, n, sy, n, alpha=ALPHA)
            scalar_fire = z.p_value < ALPHA and sc.worse_side * z.estimate > 0
            if scalar_fire != bool(z_vec[r, k]):
                raise AssertionError(f"{sc.name}: vectorised z-test disagrees with "
                                     f"two_proportion_z_test (run {r}, look {k})")
            checked += 1
    return checked


# --------------------------------------------------------------------------- simulation


def simulate(sc: Scenario, index: int, s: Settings, timings: tuple[str, ...]
             ) -> tuple[dict[tuple[str, str], IntArray], int]:
    """First rollback look per run, per (timing, method); same requests for every method."""
    rng = np.random.default_rng([s.seed, index])
    parts: dict[tuple[str, str], list[IntArray]] = {}
    checked = 0
    done = 0
    while done < s.runs:
        m = min(CHUNK, s.runs - done)
        x = rng.binomial(s.n, sc.p_stable, size=(m, s.looks)).astype(np.int64)
        y = rng.binomial(s.n, sc.p_candidate, size=(m, s.looks)).astype(np.int64)
        for timing in timings:
            view = make_view(x, y, s.n, s.delay if timing == "delayed" else 0)
            if done == 0:
                checked += cross_check(sc, view, s, CROSS_CHECK_RUNS)
            for method, first in decide(sc, view, s).items():
                parts.setdefault((timing, method), []).append(first)
        done += m
    return {key: np.concatenate(v) for key, v in parts.items()}, checked


# --------------------------------------------------------------------------- reporting


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def median_requests(first: IntArray, n: int, offset: int) -> float:
    """Median requests per arm at the rollback look (never rolled back = infinite)."""
    req = np.where(first >= 0, (first + 1 - offset) * n, np.inf).astype(np.float64)
    return float(np.median(req))


def fmt_req(x: float) -> str:
    return "> horizon" if not math.isfinite(x) else f"{x:,.0f}"


def fixed_horizon(sc: Scenario) -> int:
    """Per-arm n of a one-sided test at alpha 0.05, power 0.8 (two-sided alpha 0.10)."""
    return sample_size_proportions(sc.p_stable, sc.p_candidate, alpha=2 * ALPHA,
                                   power=0.8).per_arm


def verdict(sc: Scenario, method: str, rate: float, ratio: float) -> str:
    if sc.null:
        if method == "msprt":
            return f"<= 5%: {'PASS' if rate <= ALPHA else 'FAIL'}"
        if method == "naive-z":
            return f"> 5% (peeking inflates): {'YES' if rate > ALPHA else 'NO'}"
        return ""
    if method == "msprt":
        return f"<= 2x fixed n: {'PASS' if ratio <= 2.0 else 'FAIL'}"
    return ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000, help="simulated canaries per scenario")
    parser.add_argument("--looks", type=int, default=40, help="analysis intervals per canary")
    parser.add_argument("--n", type=int, default=250, help="requests per arm per interval")
    parser.add_argument("--delay", type=int, default=3,
                        help="label delay in intervals for the 'delayed' timing")
    parser.add_argument("--flagger-threshold", type=int, default=5,
                        help="failed checks (cumulative) before Flagger rolls back")
    parser.add_argument("--seed", type=int, default=20251125)
    args = parser.parse_args()
    for name in ("runs", "looks", "n", "flagger_threshold"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if not 0 <= args.delay < args.looks:
        parser.error("--delay must be >= 0 and < --looks")

    s = Settings(args.runs, args.looks, args.n, args.delay, args.seed, args.flagger_threshold,
                 tau_accuracy=choose_tau(MIN_ACCURACY_DROP),
                 tau_error=choose_tau(ERROR_RISE * BASE_ERROR - BASE_ERROR))
    t0 = time.perf_counter()
    horizon = s.looks * s.n
    print(f"Canary benchmark: {s.runs} runs per scenario, {s.looks} looks x {s.n} requests "
          f"per arm (horizon {horizon:,} per arm), seed {s.seed}, {os.cpu_count()} CPUs")
    print(f"label timings: immediate; delayed by {s.delay} looks (accuracy only, 5xx are "
          f"immediate)")
    print(f"argo: rollback at the first interval with candidate accuracy < {ACCURACY_FLOOR:.2f}"
          f" or 5xx rate > {ERROR_CEILING:.1%} (failureLimit 0)")
    print(f"flagger: same checks, rollback when failed checks (cumulative) reach "
          f"{s.flagger_threshold}")
    print(f"naive-z: pooled two-proportion z-test on all data at every look, p < {ALPHA} and "
          f"candidate worse")
    print(f"msprt: one-sided always-valid mSPRT (candidate worse), alpha {ALPHA}, "
          f"tau {s.tau_accuracy:g} (accuracy) / {s.tau_error:g} (5xx), at every look")
    effects = [sc for sc in SCENARIOS if not sc.null]
    fixed = {sc.name: fixed_horizon(sc) for sc in effects}
    print("fixed-horizon n per arm (one-sided alpha 0.05, power 0.8): "
          + "; ".join(f"{name}: {v:,}" for name, v in fixed.items()))
    print()

    header = (f"{'scenario':<20} {'labels':<9} {'method':<8} {'rolled back [95% CI]':>23} "
              f"{'median req/arm':>14} {'labelled':>9} {'vs fixed n':>10}  goal")
    print(header)
    print("-" * len(header))
    results: dict[tuple[str, str], dict[tuple[str, str], IntArray]] = {}
    checked = 0
    for i, sc in enumerate(SCENARIOS):
        timings = ("immediate", "delayed") if sc.metric == "accuracy" else ("immediate",)
        firsts, c = simulate(sc, i, s, timings)
        checked += c
        results[(sc.metric, "null" if sc.null else "effect")] = firsts
        for timing in timings:
            offset = s.delay if timing == "delayed" else 0
            for method in METHODS:
                first = firsts[(timing, method)]
                k = int((first >= 0).sum())
                rate = k / s.runs
                lo, hi = wilson(k, s.runs)
                cell = f"{rate:6.1%} [{lo:5.1%}-{hi:5.1%}]"
                served = lab = ratio = math.nan
                if not sc.null:
                    served = median_requests(first, s.n, 0)
                    lab = median_requests(first, s.n, offset)
                    ratio = lab / fixed[sc.name]
                req = "" if sc.null else fmt_req(served)
                labelled = "" if sc.null else fmt_req(lab)
                rel = "" if sc.null else ("-" if not math.isfinite(ratio) else f"{ratio:.2f}x")
                line = (f"{sc.name:<20} {timing:<9} {method:<8} {cell:>23} {req:>14} "
                        f"{labelled:>9} {rel:>10}  {verdict(sc, method, rate, ratio)}")
                print(line.rstrip())
        print()

    print("A/A with both metrics watched (rollback on either; independent runs paired by index):")
    acc, err = results[("accuracy", "null")], results[("error", "null")]
    for timing in ("immediate", "delayed"):
        cells = []
        for method in METHODS:
            either = (acc[(timing, method)] >= 0) | (err[("immediate", method)] >= 0)
            cells.append(f"{method} {either.mean():.1%}")
        print(f"  accuracy labels {timing:<9}: " + ", ".join(cells))
    print()
    print(f"medians: requests per arm served until the rollback look (runs never rolled back "
          f"count as never); 'labelled' = requests the decision saw; 'vs fixed n' = labelled / "
          f"fixed-horizon n. Steps of {s.n}.")
    print(f"vectorised msprt/naive-z decisions equal the scalar library calls on {checked:,} "
          f"looks ({CROSS_CHECK_RUNS} runs per scenario and timing)")
    print(f"run time {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
