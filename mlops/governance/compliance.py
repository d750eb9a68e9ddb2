"""Compliance reports (SR 11-7, the EU AI Act) from recorded evidence.

Each item of a framework is *met* (with the evidence: audit events, CI runs, card
sections), *missing* (with what would supply it) or *not applicable* (with the reason).
Nothing is asserted that the platform did not record: the evidence comes from the model
card (:func:`~mlops.governance.card.build_card`, the one reader of a version's records)
and from the audit chain's verification. Items the platform cannot see (a signed
declaration of conformity, the standards a provider applied) are listed as not applicable
to what it records, with the reason, so that the report never reads as complete by default.

The items follow the Federal Reserve's SR 11-7 guidance (inventory, development
documentation, independent validation, ongoing monitoring, outcomes analysis, change
control) and the EU AI Act (Annex IV technical documentation, Article 10 data governance,
Article 12 record-keeping, Article 14 human oversight, Article 15 accuracy and robustness,
Article 72 post-market monitoring).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from mlops.ci.policy import configured_policy
from mlops.errors import GovernanceError
from mlops.governance.card import CardSection, ModelCard, SectionStatus, build_card
from mlops.governance.memo import verified_chain
from mlops.registry.service import ModelRegistry

__all__ = ["FRAMEWORKS", "ComplianceItem", "ComplianceReport", "ItemStatus",
           "compliance_report"]


class ItemStatus(StrEnum):
    MET = "met"
    MISSING = "missing"
    NOT_APPLICABLE = "not applicable"


@dataclass(frozen=True)
class ComplianceItem:
    id: str
    title: str
    requirement: str  # what the framework asks, in a line
    status: ItemStatus
    evidence: list[str] = field(default_factory=list)
    detail: str = ""  # met: what the evidence shows; missing: what is missing; n/a: why
    supply: str = ""  # missing: the command that supplies it

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "requirement": self.requirement,
                "status": self.status.value, "evidence": self.evidence,
                "detail": self.detail, "supply": self.supply or None}


@dataclass(frozen=True)
class ComplianceReport:
    framework: str
    title: str
    model: str
    version: str
    generated_at: str
    items: list[ComplianceItem]
    audit_ok: bool
    audit_events: int

    def counts(self) -> dict[str, int]:
        return {s.value: sum(1 for i in self.items if i.status is s) for s in ItemStatus}

    def to_dict(self) -> dict[str, Any]:
        return {"framework": self.framework, "title": self.title, "model": self.model,
                "version": self.version, "generated_at": self.generated_at,
                "summary": self.counts(), "audit_chain": {"ok": self.audit_ok,
                                                          "events": self.audit_events},
                "items": [i.to_dict() for i in self.items]}


@dataclass
class _Facts:
    """The evidence the items read: the card, the chain's verification, the tier."""

    card: ModelCard
    audit_ok: bool
    audit_events: int
    audit_head: str
    tier: str

    def s(self, key: str) -> CardSection:
        return self.card.section(key)

    def present(self, key: str) -> bool:
        return self.s(key).status is SectionStatus.PRESENT

    @property
    def deployed(self) -> bool:
        return self.present("deployments")

    def approvals(self) -> list[dict[str, Any]]:
        return [a for a in self.s("approvals").content.get("approvals", [])
                if a.get("counts") and a.get("decision") == "approve"]


def _item(id_: str, title: str, requirement: str, ok: bool, evidence: list[str],
          met: str, missing: str, supply: str) -> ComplianceItem:
    if ok:
        return ComplianceItem(id_, title, requirement, ItemStatus.MET, evidence, met)
    return ComplianceItem(id_, title, requirement, ItemStatus.MISSING, evidence, missing,
                          supply)


def _na(id_: str, title: str, requirement: str, why: str) -> ComplianceItem:
    return ComplianceItem(id_, title, requirement, ItemStatus.NOT_APPLICABLE, [], why)


def _from_section(f: _Facts, id_: str, title: str, requirement: str, key: str,
                  met: str) -> ComplianceItem:
    sec = f.s(key)
    return _item(id_, title, requirement, sec.status is SectionStatus.PRESENT, sec.evidence,
                 met, sec.missing, sec.supply)


# ---------------------------------------------------------------------- SR 11-7
def _sr11_7(f: _Facts) -> list[ComplianceItem]:
    details, use = f.s("model_details").content, f.s("intended_use")
    name, version = f.card.model, f.card.version
    inventory_ok = use.status is SectionStatus.PRESENT
    items = [
        _item("inventory", "Model inventory",
              "A firm-wide inventory: each model's purpose, owner, version, status and risk.",
              inventory_ok, f.s("model_details").evidence + use.evidence,
              f"{name} {version}: owner {details['registered_by']}, stage {details['stage']}, "
              f"risk tier {f.tier}, purpose stated, artifact sha256 "
              f"{details['artifact']['sha256'][:12]}",
              "The inventory entry has no stated purpose.", use.supply),
    ]
    training = f.s("training_data")
    run = training.content
    documented = training.status is SectionStatus.PRESENT and bool(
        run.get("params") or run.get("git_commit") or run.get("mlflow_run_id"))
    items.append(_item(
        "development", "Development documentation",
        "Documentation of design, theory, data and methods, enough for others to understand "
        "and reproduce the model.", documented, training.evidence,
        "training data with its SHA-256, the training run (parameters, code commit or MLflow "
        "run) and the input signature are recorded",
        training.missing or "The training run (parameters, code commit or MLflow run id) "
        "was not recorded.",
        training.supply or f"register the next version with -m params=... and from a git "
        f"checkout: mlops models register MODEL_FILE --name {name}"))
    approvals = f.approvals()
    evaluation = f.s("evaluation")
    items.append(_item(
        "independent_validation", "Independent validation",
        "Validation by people independent of development: conceptual soundness, ongoing "
        "monitoring, outcomes analysis.",
        bool(approvals) and evaluation.status is SectionStatus.PRESENT,
        evaluation.evidence + f.s("approvals").evidence,
        f"gates of CI run #{evaluation.content.get('run')} reviewed and approved by "
        + ", ".join(f"{a['by']} ({a['comment']})" for a in approvals)
        + " (neither registered the version nor ran its gates)",
        "No gate run approved by someone independent of its development."
        if evaluation.status is SectionStatus.PRESENT else evaluation.missing,
        f.s("approvals").supply or evaluation.supply))
    if not f.deployed:
        why = "the version has not been put into use (never staged, routed or rolled out)"
        items += [_na("ongoing_monitoring", "Ongoing monitoring",
                      "Monitoring of the model in use: performance, stability, limits.", why),
                  _na("outcomes_analysis", "Outcomes analysis",
                      "Comparison of the model's outputs with actual outcomes.", why)]
    else:
        items.append(_from_section(
            f, "ongoing_monitoring", "Ongoing monitoring",
            "Monitoring of the model in use: performance, stability, limits.", "monitoring",
            "monitoring windows evaluated where it serves, alerts recorded"))
        outcomes = [e for e in f.s("monitoring").content.get("serving", [])
                    if any(m in e.get("metrics", {}) for m in ("accuracy", "label_coverage"))]
        items.append(_item(
            "outcomes_analysis", "Outcomes analysis",
            "Comparison of the model's outputs with actual outcomes.", bool(outcomes),
            f.s("monitoring").evidence,
            "accuracy against labelled outcomes in "
            + ", ".join(e["environment"] for e in outcomes),
            "No labelled outcomes were joined with this version's predictions.",
            f"send labels to POST /v1/models/{name}/feedback, then mlops monitor evaluate "
            f"{name}"))
    items.append(_item(
        "change_control", "Change control",
        "Controlled, documented changes: who changed what, when, with which approval.",
        f.audit_ok, [f"audit chain: {f.audit_events} events, head {f.audit_head[:16]}"],
        f"every change of this version is an event in a hash chain that verifies "
        f"({f.audit_events} events); serving changes pass one promotion gate",
        "The audit chain does not verify: a recorded change was altered or removed.",
        "mlops audit verify (find the broken event; restore the store from a backup)"))
    return items


# ---------------------------------------------------------------------- EU AI Act
def _eu_ai_act(f: _Facts) -> list[ComplianceItem]:
    name = f.card.model
    items = [
        _from_section(f, "annex_iv_1", "Annex IV(1): general description",
                      "Intended purpose, provider, version, how it interacts with other "
                      "systems.", "intended_use",
                      "intended purpose, version and interfaces (its signature) recorded"),
        _item("annex_iv_2", "Annex IV(2): elements and development process",
              "Methods, design choices, training data and its provenance, validation and "
              "testing procedures.",
              f.present("training_data") and f.present("evaluation"),
              f.s("training_data").evidence + f.s("evaluation").evidence,
              "training data with its SHA-256, the training run and the gate run recorded",
              f.s("training_data").missing or f.s("evaluation").missing,
              f.s("training_data").supply or f.s("evaluation").supply),
        _from_section(f, "annex_iv_3", "Annex IV(3): monitoring, functioning and control",
                      "Capabilities and limitations, foreseeable misuse, human oversight "
                      "measures.", "limitations", "limitations stated and recorded caveats"),
        _from_section(f, "annex_iv_4", "Annex IV(4): appropriateness of performance metrics",
                      "The metrics used and why they fit the purpose.", "evaluation",
                      "each gate's metric with its threshold, from the policy"),
        _item("annex_iv_5", "Annex IV(5): risk management system",
              "A risk management system (Article 9) applied to this system.",
              f.present("evaluation"), f.s("evaluation").evidence,
              f"risk tier {f.tier}: its gates, thresholds and approvals applied by the policy",
              "No gate run under a risk-tier policy.", f.s("evaluation").supply),
        _from_section(f, "annex_iv_6", "Annex IV(6): changes through the lifecycle",
                      "Relevant changes made by the provider through the lifecycle.",
                      "deployments", "stage changes, routes and rollouts, each audited"),
        _na("annex_iv_7", "Annex IV(7): harmonised standards applied",
            "The standards applied, or the solutions adopted instead.",
            "which standards a provider applies is not something the platform records; "
            "state it in the provider's own documentation"),
        _na("annex_iv_8", "Annex IV(8): EU declaration of conformity",
            "A copy of the declaration (Article 47).",
            "a legal declaration the provider signs, outside what the platform records"),
        _from_section(f, "annex_iv_9", "Annex IV(9): post-market monitoring plan",
                      "The system in place to evaluate performance after placing on the "
                      "market (Article 72).", "monitoring",
                      "monitoring windows, drift and accuracy alerts where it serves")
        if f.deployed else _na("annex_iv_9", "Annex IV(9): post-market monitoring plan",
                               "The post-market monitoring system (Article 72).",
                               "the version has not been placed in use"),
        _item("art_10", "Article 10: data and data governance",
              "Training, validation and test data with known provenance and quality checks.",
              f.present("training_data") and any(
                  g.get("gate") == "data_quality" and g.get("passed")
                  for g in f.s("evaluation").content.get("gates", [])),
              f.s("training_data").evidence + f.s("evaluation").evidence,
              "training data hashed; the data quality gate passed on the test data",
              f.s("training_data").missing or "No passing data quality gate.",
              f.s("training_data").supply or f"mlops ci gates {name} "
              f"{f.card.version} --test-data TEST_FILE"),
        _item("art_12", "Article 12: record-keeping",
              "Automatic logging of events over the system's lifetime, traceable.",
              f.audit_ok, [f"audit chain: {f.audit_events} events, head {f.audit_head[:16]}"],
              f"events are logged automatically in a hash chain that verifies "
              f"({f.audit_events} events); predictions are logged by the gateway",
              "The audit chain does not verify.", "mlops audit verify"),
    ]
    approvals = f.approvals()
    items.append(_item(
        "art_14", "Article 14: human oversight",
        "People can understand, oversee, decide not to use, and stop or roll back the system.",
        bool(approvals), f.s("approvals").evidence,
        "approved by " + ", ".join(a["by"] for a in approvals)
        + "; rollback is one command (mlops rollback) through the same gate",
        "No person approved this version.", f.s("approvals").supply))
    gates = {g.get("gate"): g for g in f.s("evaluation").content.get("gates", [])}
    robust = [g for g in ("slices", "champion", "fairness") if g in gates]
    items.append(_item(
        "art_15", "Article 15: accuracy, robustness",
        "Declared accuracy metrics, consistent performance across groups and over time.",
        "metrics" in gates and bool(robust), f.s("evaluation").evidence,
        f"accuracy declared by the metrics gate; robustness checked by {', '.join(robust)}",
        "No metrics gate, or no slice, champion or fairness check, in the gate run."
        if f.present("evaluation") else f.s("evaluation").missing,
        "add metrics and slices gates to the model's policy, then: mlops ci gates "
        f"{name} {f.card.version} --test-data TEST_FILE"))
    if f.deployed:
        items.append(_from_section(
            f, "art_72", "Article 72: post-market monitoring",
            "Active collection and analysis of performance data in use.", "monitoring",
            "monitoring windows and alerts recorded where it serves"))
    else:
        items.append(_na("art_72", "Article 72: post-market monitoring",
                         "Collection and analysis of performance data in use.",
                         "the version has not been placed in use"))
    return items


FRAMEWORKS: dict[str, tuple[str, Callable[[_Facts], list[ComplianceItem]]]] = {
    "sr11-7": ("SR 11-7: Guidance on Model Risk Management", _sr11_7),
    "eu-ai-act": ("EU AI Act: high-risk AI systems (Annex IV, Articles 10-15, 72)",
                  _eu_ai_act),
}


def compliance_report(registry: ModelRegistry, name: str, version: str, framework: str
                      ) -> ComplianceReport:
    """The ``framework`` report (``sr11-7`` or ``eu-ai-act``) of ``name`` ``version``."""
    if framework not in FRAMEWORKS:
        raise GovernanceError(f"Unknown framework {framework!r}.",
                          fix=f"Use one of {', '.join(FRAMEWORKS)}.")
    title, items = FRAMEWORKS[framework]
    card = build_card(registry, name, version)
    verified = verified_chain(registry)
    tier = configured_policy(registry.settings.policy_file).for_model(name).tier
    facts = _Facts(card, verified.ok, verified.events, verified.head or "", tier)
    return ComplianceReport(framework, title, name, card.version, card.generated_at,
                            items(facts), verified.ok, verified.events)
