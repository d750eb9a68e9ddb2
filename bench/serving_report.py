"""Tables and goals of ``bench/serving.py``: per model, every form x server, then the
ratios that issue 12's goals name, each marked met or missed by how much."""

from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass, field
from typing import Any

from serving_paired import Paired
from serving_payloads import FORMS

NAMES = {"mlserver": "MLServer", "mlflow": "mlflow models serve"}
SHORT = {"json": "V2 JSON tensor", "cols": "V2 JSON per column", "binary": "V2 binary",
         "grpc": "gRPC", "invocations": "/invocations"}
LOG_COST = "prediction log cost"
GRPC_PAIR = "gRPC, gateway vs MLServer"


@dataclass
class Result:
    key: str            # MODEL/SERVER/FORM
    label: str          # the server's label
    model: str = ""
    server: str = ""
    form: str = ""
    rps: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    requests: int = 0
    errors: int = 0
    error_detail: str = ""
    skipped: str = ""
    unsupported: str = ""  # the server does not take this form: why
    startup_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(title: str, results: list[Result]) -> None:
    print(f"\n{title}")
    print(f"{'form':<36} {'server':<42} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'err':>5}"
          f" {'cores':>5}")
    print("-" * 118)
    for form, form_label in FORMS.items():
        rows = [r for r in results if r.form == form]
        for i, r in enumerate(rows):
            first = form_label if i == 0 else ""
            if r.unsupported:
                print(f"{first:<36} {r.label:<42} not supported: {r.unsupported}")
            elif r.skipped:
                print(f"{first:<36} {r.label:<42} skipped: {r.skipped}")
            else:
                print(f"{first:<36} {r.label:<42} {fmt(r.rps, ',.0f'):>8} "
                      f"{fmt(r.p50_ms, '.2f'):>8} {fmt(r.p99_ms, '.2f'):>8} {r.errors:>5} "
                      f"{fmt(r.extra.get('server_cores'), '.2f'):>5}")
    print("(cores: CPU the server's processes used during the measurement, of "
          f"{os.cpu_count()})")


# ----------------------------------------------------------------------------- goals
def _measured(by_key: dict[str, Result], key: str) -> Result | None:
    r = by_key.get(key)
    return r if r is not None and not r.skipped and not r.unsupported and r.rps else None


def _ratio_row(name: str, num: Result | None, den: Result | None, goal: float | None,
               why_na: str = "") -> dict[str, Any]:
    """``num``'s req/s over ``den``'s, against ``goal`` (at least); None: no goal (info)."""
    if num is None or den is None:
        return {"name": name, "value": None, "shown": "-", "goal": _goal_text(goal),
                "met": None, "verdict": "n/a" + (f": {why_na}" if why_na else "")}
    value = num.rps / den.rps  # type: ignore[operator]
    row = {"name": name, "value": value, "shown": f"{value:.2f}x", "goal": _goal_text(goal)}
    if goal is None:
        return {**row, "met": None, "verdict": "info"}
    met = value >= goal
    verdict = (f"met ({value / goal - 1:+.0%} over)" if met
               else f"MISSED by {1 - value / goal:.0%} ({value:.2f}x of {goal:g}x)")
    return {**row, "met": met, "verdict": verdict}


def _goal_text(goal: float | None) -> str:
    return "info" if goal is None else f">= {goal:g}x"


def _p99_row(name: str, ours: Result | None, other: Result | None, why_na: str = "",
             judged: bool = True) -> dict[str, Any]:
    if ours is None or other is None or ours.p99_ms is None or other.p99_ms is None:
        return {"name": name, "value": None, "shown": "-", "goal": "lower", "met": None,
                "verdict": "n/a" + (f": {why_na}" if why_na else "")}
    a, b = ours.p99_ms, other.p99_ms
    if not judged:
        return {"name": name, "value": a, "other": b, "shown": f"{a:.2f} vs {b:.2f} ms",
                "goal": "info", "met": None, "verdict": "info"}
    return _p99_verdict(name, a, b)


def _p99_verdict(name: str, a: float, b: float) -> dict[str, Any]:
    met = a < b
    verdict = (f"met ({a / b - 1:+.0%})" if met
               else f"MISSED by {a - b:.2f} ms ({a / b - 1:+.0%})")
    return {"name": name, "value": a, "other": b, "shown": f"{a:.2f} vs {b:.2f} ms",
            "goal": "lower", "met": met, "verdict": verdict}


def goals(model: str, by_key: dict[str, Result], log_cost: Paired | None = None,
          grpc_pair: Paired | None = None) -> list[dict[str, Any]]:
    """The goal lines of one model (rows of ``by_key`` are keyed MODEL/SERVER/FORM). The
    prediction log's goal and gRPC's are judged on their interleaved measurements when there
    are some; the single runs' figures are then shown for information."""
    def get(server: str, form: str) -> Result | None:
        return _measured(by_key, f"{model}/{server}/{form}")

    def why(server: str, form: str) -> str:
        r = by_key.get(f"{model}/{server}/{form}")
        if r is None:
            return "not run"
        if r.unsupported:
            return f"{NAMES.get(server, server)} does not support it"
        return "not measured" if r.skipped else ""

    rows: list[dict[str, Any]] = []
    for form in ("json", "cols", "binary", "grpc"):
        gw, ms = get("gw", form), get("mlserver", form)
        na = why("mlserver", form) or why("gw", form)
        paired = grpc_pair if form == "grpc" and grpc_pair is not None \
            and grpc_pair.ratio is not None else None
        if paired is not None:
            rows += _paired_rows(f"{SHORT[form]}: gateway / MLServer req/s, interleaved",
                                 f"{SHORT[form]}: p99 gateway vs MLServer, interleaved",
                                 paired)
        single = " (one run each)" if paired is not None else ""
        rows.append(_ratio_row(f"{SHORT[form]}: gateway / MLServer req/s{single}", gw, ms,
                               None if paired else 2.0, na))
        rows.append(_p99_row(f"{SHORT[form]}: p99 gateway vs MLServer{single}", gw, ms, na,
                             judged=paired is None))
    gw, ml = get("gw", "invocations"), get("mlflow", "invocations")
    na = why("mlflow", "invocations") or why("gw", "invocations")
    rows.append(_ratio_row("/invocations: gateway / mlflow models serve req/s", gw, ml, 20.0,
                           na))
    rows.append(_p99_row("/invocations: p99 gateway vs mlflow models serve", gw, ml, na))
    name = "prediction log cost 1 - log on / log off (JSON)"
    interleaved = log_cost.cost if log_cost is not None else None
    if interleaved is not None:
        rows.append(_cost_row("log cost 1 - on/off (JSON), interleaved, median round",
                              interleaved, True))
    on, off = get("gw", "json"), get("gw-nolog", "json")
    if on is not None and off is not None:
        cost = 1 - on.rps / off.rps  # type: ignore[operator]
        rows.append(_cost_row("log cost 1 - on/off (JSON), the two single runs"
                              if interleaved is not None else name, cost, interleaved is None))
    elif interleaved is None:
        rows.append({"name": name, "value": None, "shown": "-", "goal": "<= 10%", "met": None,
                     "verdict": "n/a: not run"})
    rows.append(_ratio_row("2 workers / 1 worker req/s (JSON)", get("gw-w2", "json"),
                           get("gw", "json"), None, why("gw-w2", "json")))
    if f"{model}/floor/json" in by_key:
        rows.append(_ratio_row("gateway / raw ASGI floor req/s (JSON)", get("gw", "json"),
                               get("floor", "json"), 0.25, why("floor", "json")))
    if f"{model}/floor-grpc/grpc" in by_key:
        rows.append(_ratio_row("gRPC: gateway / raw grpc.aio floor req/s", get("gw", "grpc"),
                               get("floor-grpc", "grpc"), None, why("floor-grpc", "grpc")))
        rows.append(_ratio_row("gRPC: raw grpc.aio floor / MLServer req/s",
                               get("floor-grpc", "grpc"), get("mlserver", "grpc"), None,
                               why("floor-grpc", "grpc") or why("mlserver", "grpc")))
    if any(k.startswith(f"{model}/gw-onnx/") for k in by_key):
        for form in ("json", "cols", "grpc"):
            onnx = get("gw-onnx", form)
            na = why("gw-onnx", form) or why("mlserver", form)
            rows.append(_ratio_row(f"{SHORT[form]}: compiled gateway / MLServer req/s", onnx,
                                   get("mlserver", form), 3.0, na))
        for form in ("json", "grpc"):
            rows.append(_ratio_row(f"{SHORT[form]}: compiled / sklearn runtime (gateway)",
                                   get("gw-onnx", form), get("gw", form), None,
                                   why("gw-onnx", form)))
    return rows


def _paired_rows(name: str, p99_name: str, pair: Paired) -> list[dict[str, Any]]:
    """The 2x goal on the median of interleaved rounds' ratios, and the p99 goal on each
    side's median p99."""
    ratio = pair.ratio
    assert ratio is not None
    met = ratio >= 2.0
    rows = [{"name": name, "value": ratio, "shown": f"{ratio:.2f}x", "goal": ">= 2x",
             "met": met, "verdict": (f"met ({ratio / 2.0 - 1:+.0%} over)" if met else
                                     f"MISSED by {1 - ratio / 2.0:.0%} ({ratio:.2f}x of 2x)")}]
    p99 = pair.p99
    if p99 is not None:
        rows.append(_p99_verdict(p99_name, *p99))
    return rows


def _cost_row(name: str, cost: float, judged: bool) -> dict[str, Any]:
    """A log-cost line: judged against the 10% goal, or shown for information only."""
    if not judged:
        return {"name": name, "value": cost, "shown": f"{cost:.1%}", "goal": "info",
                "met": None, "verdict": "info (one run each, a minute apart)"}
    met = cost <= 0.10
    return {"name": name, "value": cost, "shown": f"{cost:.1%}", "goal": "<= 10%", "met": met,
            "verdict": (f"met ({(0.10 - cost) * 100:.1f} points under)" if met
                        else f"MISSED by {(cost - 0.10) * 100:.1f} points")}


def print_goals(rows: list[dict[str, Any]]) -> None:
    print()
    print(f"{'goal':<52} {'value':>22} {'goal':>7}  verdict")
    print("-" * 118)
    for row in rows:
        print(f"{row['name']:<52} {row['shown']:>22} {row['goal']:>7}  {row['verdict']}")


def print_notes(notes: list[str]) -> None:
    print("\nnotes:")
    for note in notes:
        print("  - " + textwrap.fill(note, 110, subsequent_indent="    "))
