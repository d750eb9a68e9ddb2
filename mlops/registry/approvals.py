"""Which approvals and rejections of a version count: the one rule, read by the promotion
gate, the pipeline, ``mlops approvals`` and the model card.

A decision is an audit event (``version.approve`` or ``version.reject``) whose payload binds
it to what the person looked at: the version's artifact digest (``sha256``), the CI run whose
gates they read (``run``) and the digest of that run's gate results (``results``), with
their comment. A decision counts while it still describes the version: the artifact is the
one registered, and the version's *bound run* (its newest run that passed every gate, the
run the promotion gate reads) has the same results. A re-run whose results differ voids
every decision made on the old ones; so does a decision recorded without a binding. Per
person, the newest counting decision stands (approving after rejecting changes one's mind).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mlops.store.audit import list_events
from mlops.store.schema import CIRunRow

__all__ = ["APPROVE", "REJECT", "ApprovalState", "Decision", "approval_state", "bound_run",
           "results_digest"]

APPROVE, REJECT = "version.approve", "version.reject"


def results_digest(report: dict[str, Any]) -> str:
    """SHA-256 of a run's gate results (each gate's name, verdict, measured values and
    thresholds), in canonical JSON: equal results, equal digests, whatever the timing."""
    gates = sorted(
        ([g.get("gate"), g.get("passed"), g.get("skipped"), g.get("actual"), g.get("threshold")]
         for g in (step.get("gate") for step in report.get("steps", []))
         if isinstance(g, dict)), key=lambda row: str(row[0]))
    text = json.dumps(gates, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def bound_run(s: Session, model: str, version: str) -> CIRunRow | None:
    """The run decisions are bound to: the version's newest run that passed all its gates
    (an official one, under a policy file, when there is one)."""
    runs = s.scalars(select(CIRunRow).where(CIRunRow.model_name == model,
                                            CIRunRow.version == version)
                     .order_by(CIRunRow.id.desc())).all()
    passed = [r for r in runs if (r.report or {}).get("gates_passed")]
    official = [r for r in passed if (r.report or {}).get("official_policy")]
    chosen = official or passed
    return chosen[0] if chosen else None


@dataclass(frozen=True)
class Decision:
    """One person's approval or rejection, and whether it still counts (and why not)."""

    actor: str
    kind: str  # "approve" or "reject"
    at: str
    comment: str
    run: int | None
    audit: int
    counts: bool
    void: str = ""  # why it no longer counts

    def to_dict(self) -> dict[str, Any]:
        return {"by": self.actor, "decision": self.kind, "at": self.at,
                "comment": self.comment, "run": self.run, "audit": self.audit,
                "counts": self.counts, "void": self.void or None}


@dataclass(frozen=True)
class ApprovalState:
    """Every decision on a version, oldest first, and what they add up to."""

    model: str
    version: str
    run: int | None  # the bound run (None: no run passed its gates)
    results: str | None  # its results digest
    runner: str | None  # who ran it (who may not approve)
    decisions: list[Decision] = field(default_factory=list)

    def standing(self) -> dict[str, Decision]:
        """Each person's newest decision that counts."""
        out: dict[str, Decision] = {}
        for d in self.decisions:
            if d.counts:
                out[d.actor] = d
        return out

    @property
    def approvers(self) -> list[str]:
        return [a for a, d in self.standing().items() if d.kind == "approve"]

    @property
    def rejections(self) -> list[Decision]:
        return [d for d in self.standing().values() if d.kind == "reject"]


def approval_state(s: Session, model: str, version: str, artifact_digest: str
                   ) -> ApprovalState:
    """The decisions on ``model`` ``version`` and whether each counts (see the module)."""
    run = bound_run(s, model, version)
    results = results_digest(run.report or {}) if run is not None else None
    subject = f"model/{model}/{version}"
    events = [e for action in (APPROVE, REJECT)
              for e in list_events(s, subject=subject, action=action, limit=10_000)
              if e.subject == subject]
    decisions = []
    for e in sorted(events, key=lambda e: e.seq):
        p = e.payload
        if "results" not in p or "sha256" not in p:
            void = "recorded without the gate run it read (before approvals were bound)"
        elif p["sha256"] != artifact_digest:
            void = "made on another artifact than the version's"
        elif run is None or p["results"] != results:
            void = (f"made on the results of CI run #{p.get('run')}; the version's gates "
                    + ("have no passing run now" if run is None else
                       f"were re-run with different results (run #{run.id})"))
        else:
            void = ""
        decisions.append(Decision(e.actor, "approve" if e.action == APPROVE else "reject",
                                  e.ts, str(p.get("reason", "")), p.get("run"), e.seq,
                                  not void, void))
    return ApprovalState(model, version, run.id if run else None, results,
                         run.created_by if run else None, decisions)
