"""Rollout plans: strategies turned into steps of (candidate weight, pause).

``canary`` takes steps such as ``[{"weight": 10, "pause": "5m"}, {"weight": 50}, ...]`` or
the seed's ``{"initial_traffic": 10, "increment": 10, "interval_minutes": 5}``; a pause is
seconds, a duration (``"30s"``, ``"5m"``, ``"1h"``), ``"analysis"`` (until the analysis
decides) or ``"manual"`` (until a person promotes). ``blue_green`` sends everything to the
new version for an observation window and switches back on failure; ``ab_test`` holds a
fixed split until the analysis decides; ``shadow`` mirrors a share of requests to the
candidate (clients always get stable) and switches when the paired analysis passes;
``full`` replaces at once.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from mlops.errors import DeploymentError

__all__ = ["STRATEGIES", "Step", "parse_pause", "plan_steps"]

STRATEGIES = ("full", "canary", "blue_green", "ab_test", "shadow", "bandit")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


@dataclass(frozen=True)
class Step:
    """Send ``weight`` percent to the candidate; move on after ``pause`` seconds and a
    successful analysis (``until="time"``), when the analysis decides (``"analysis"``), when
    a person promotes (``"manual"``), or once smoke requests pass (``"smoke"``)."""

    weight: float
    pause: float = 0.0
    until: str = "time"
    mode: str = "split"  # "shadow": the candidate sees a mirrored share, clients get stable

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_pause(value: Any) -> tuple[float, str]:
    """``(seconds, until)`` from a number, a duration string, "analysis" or "manual"."""
    if value is None:
        return 0.0, "time"
    if isinstance(value, bool):
        raise DeploymentError(f"Pause {value!r} is not a duration.",
                              fix='Use seconds, "30s", "5m", "1h", "analysis" or "manual".')
    if isinstance(value, int | float):
        if value < 0:
            raise DeploymentError(f"Pause {value} is negative.", fix="Use 0 or more seconds.")
        return float(value), "time"
    text = str(value).strip().lower()
    if text in {"analysis", "manual"}:
        return 0.0, text
    match = _DURATION.match(text)
    if not match:
        raise DeploymentError(f"Pause {value!r} is not a duration.",
                              fix='Use seconds, "30s", "5m", "1h", "analysis" or "manual".')
    return float(match.group(1)) * _UNITS[match.group(2)], "time"


def _weight(value: Any, where: str) -> float:
    try:
        weight = float(value)
    except (TypeError, ValueError):
        raise DeploymentError(f"{where}: weight {value!r} is not a number.",
                              fix="Give weights in percent, 0-100.") from None
    if not 0.0 < weight <= 100.0:
        raise DeploymentError(f"{where}: weight {weight} is outside (0, 100].",
                              fix="Give weights in percent, above 0 and at most 100.")
    return weight


def plan_steps(strategy: str, config: dict[str, Any] | None) -> list[Step]:
    """The steps of a strategy; the last step of every plan sends 100% to the candidate."""
    config = dict(config or {})
    if strategy not in STRATEGIES:
        raise DeploymentError(f"Unknown strategy {strategy!r}.",
                              fix=f"Use one of {', '.join(STRATEGIES)}.")
    if strategy == "full":
        return [Step(100.0)]
    if strategy == "blue_green":
        seconds, until = parse_pause(config.get("observe", "analysis"))
        # green is loaded beside blue with no traffic and must answer smoke requests first
        return [Step(0.0, 0.0, "smoke"), Step(100.0, seconds, until), Step(100.0)]
    if strategy == "bandit":  # the controller moves the share; this is where it starts
        start = _weight(config.get("initial_weight", 50), "bandit initial_weight")
        return [Step(min(start, 99.0), 0.0, "analysis"), Step(100.0)]
    if strategy == "shadow":
        mirror = _weight(config.get("mirror", 100), "shadow mirror share")
        seconds, until = parse_pause(config.get("pause", "analysis"))
        return [Step(mirror, seconds, until, "shadow"), Step(100.0)]
    if strategy == "ab_test":
        split = config.get("traffic_split", 0.5)
        weight = _weight(float(split) * 100 if float(split) <= 1 else split, "ab_test")
        if weight >= 100:
            raise DeploymentError("An A/B test needs traffic on both versions.",
                                  fix="Use a traffic_split below 1 (e.g. 0.5).")
        seconds, until = parse_pause(config.get("pause", "analysis"))
        return [Step(weight, seconds, until), Step(100.0)]
    # canary
    if "steps" in config:
        raw = config["steps"]
        if not isinstance(raw, list) or not raw:
            raise DeploymentError("canary steps must be a non-empty list.",
                                  fix='Use [{"weight": 10, "pause": "5m"}, {"weight": 100}].')
        steps = []
        last = 0.0
        for i, item in enumerate(raw):
            if not isinstance(item, dict) or "weight" not in item:
                raise DeploymentError(f"canary step {i} needs a weight.",
                                      fix='Write {"weight": 10, "pause": "5m"}.')
            weight = _weight(item["weight"], f"canary step {i}")
            if weight < last:
                raise DeploymentError(f"canary step {i} lowers the weight ({last} -> {weight}).",
                                      fix="Give steps in increasing weight.")
            last = weight
            seconds, until = parse_pause(item.get("pause"))
            steps.append(Step(weight, seconds, until))
    else:
        initial = _weight(config.get("initial_traffic", 10), "canary initial_traffic")
        increment = _weight(config.get("increment", initial), "canary increment")
        interval = float(config.get("interval_minutes", 5)) * 60.0
        steps = []
        weight = initial
        while weight < 100.0:
            steps.append(Step(weight, interval, "time"))
            weight += increment
    if steps[-1].weight < 100.0:
        steps.append(Step(100.0))
    return steps
