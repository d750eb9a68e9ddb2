"""Who takes which share of an environment's traffic, from its route: the one reading of a
:class:`~mlops.deployment.routes.RouteSpec` as weights (the dashboard's placements and the
control plane's ``mlops_route_weight`` gauge)."""

from __future__ import annotations

from dataclasses import dataclass

from mlops.deployment.routes import RouteSpec

__all__ = ["Placement", "placements"]


@dataclass(frozen=True)
class Placement:
    """One version's place in one environment: ``role`` is ``stable``, ``candidate`` or
    ``shadow``; ``weight`` its share of traffic in percent (for a shadow: the share of
    requests mirrored to it); ``source`` is how the environment decides (a deployment
    ``route``, the registry ``stage``, or the ``latest`` version)."""

    environment: str
    version: str
    role: str
    weight: float
    source: str
    strategy: str
    state: str


def placements(spec: RouteSpec) -> list[Placement]:
    """Who takes which share of ``spec``'s traffic (a candidate of a split takes its
    weight, the stable version the rest; a shadow only mirrors)."""
    out: list[Placement] = []
    shadow = spec.mode == "shadow"
    candidate = spec.candidate if spec.candidate and spec.candidate != spec.stable else None
    if spec.stable:
        weight = 100.0 if shadow or candidate is None else 100.0 - spec.weight
        out.append(Placement(spec.environment, spec.stable, "stable", weight, str(spec.source),
                             spec.strategy, str(spec.state)))
    if candidate:
        out.append(Placement(spec.environment, candidate, "shadow" if shadow else "candidate",
                             spec.weight, str(spec.source), spec.strategy, str(spec.state)))
    return out
