"""``mlops demo``: the end-to-end lifecycle on generated data, in the default store."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mlops.cli.output import console, models_table, versions_table
from mlops.config import get_settings
from mlops.errors import PermissionDenied

if TYPE_CHECKING:  # the heavy modules load when the demo runs, not with every command
    import pandas as pd

    from mlops.registry.service import ModelRegistry

__all__ = ["demo", "demo_people"]


def demo(
    model_name: Annotated[str, typer.Option(help="Name to register the demo model under.")
                          ] = "demo_classifier",
    rows: Annotated[int, typer.Option(min=500, max=1_000_000, help="Rows to generate.")] = 5000,
) -> None:
    """The whole lifecycle on generated data: pipeline, registry, gateway, rollouts,
    monitoring and the audit chain."""
    import numpy as np
    import pandas as pd
    import skops.io as sio
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    from mlops.deployment.rollouts import RolloutManager
    from mlops.deployment.routes import RoutingService
    from mlops.registry.service import ModelRegistry

    # the demo follows the rule a team runs (team mode's default): production takes only
    # versions that passed staging, their gates and an approval
    registry = ModelRegistry(get_settings(promotion_policy="gated"))
    work = Path(registry.context.settings.home) / "demo"
    work.mkdir(parents=True, exist_ok=True)
    console.rule("[bold]1. data")
    rng = np.random.default_rng(7)
    x = rng.normal(size=(rows, 8))
    logits = x[:, 0] * 1.5 - x[:, 1] + 0.8 * x[:, 2] * x[:, 3] + rng.normal(scale=0.5, size=rows)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(8)])
    frame["label"] = (logits > 0).astype(int)
    train, test = train_test_split(frame, test_size=0.3, random_state=7)
    train_path = work / "train.csv"
    train.to_csv(train_path, index=False)
    features = [c for c in frame.columns if c != "label"]
    console.print(f"{len(train)} training rows, {len(test)} test rows, {len(features)} features"
                  f" -> {train_path}")

    console.rule("[bold]2. train two models; each goes through the CI pipeline")
    from mlops.ci.approvals import approve
    from mlops.ci.pipeline import ModelPipeline
    from mlops.cli.ci import pipeline_table

    test_path = work / "test.csv"
    test.to_csv(test_path, index=False)
    candidates = [("logistic", LogisticRegression(max_iter=500)),
                  ("forest", RandomForestClassifier(n_estimators=60, max_depth=8,
                                                    random_state=7))]
    ana, rui = demo_people(registry)
    console.print("two people with tokens: ana (developer) runs the pipeline, rui (approver) "
                  "approves and promotes; the audit log names them")
    pipeline = ModelPipeline(ana)  # the built-in medium-risk policy
    versions = []
    for algo, est in candidates:
        est.fit(train[features], train["label"])
        proba = est.predict_proba(test[features])[:, 1]
        path = work / f"{algo}.skops"
        sio.dump(est, path)
        result = pipeline.run(path, model_name, test_path, metadata={
            "training_data": str(train_path), "algorithm": algo,
            "roc_auc": roc_auc_score(test["label"], proba), "params": est.get_params(),
            # what only people can state goes on the model card as version tags
            "card.intended_use": "demo: score generated rows for the positive class",
            "card.limitations": "trained on synthetic Gaussian features; says nothing "
                                "about real data"})
        console.print(pipeline_table(result))
        if result.version is None:
            raise typer.Exit(1)
        versions.append(result.version)
        console.print(f"{model_name} {result.version} ({algo}): {result.status}; "
                      "rui approves it (four eyes: not the person who registered it)")
        if len(versions) == 1:
            try:
                RolloutManager(ana).deploy(model_name, result.version, "production")
            except PermissionDenied as exc:
                console.print(f"ana tries to ship it herself: [red]refused[/] ({exc.message})")
        approve(rui, model_name, result.version, "demo review")
        if len(versions) == 1:  # the first model: nothing in production to compare with yet
            rollout = ModelPipeline(rui).promote(model_name, result.version)
            console.print(f"mlops ci promote {model_name} {result.version}: {rollout.state} "
                          f"(no version in production yet, so it takes all traffic)")

    console.rule("[bold]3. stages and aliases")
    v1, v2 = versions
    registry.set_alias(model_name, "champion", v1)
    registry.set_alias(model_name, "challenger", v2)
    registry.setup_ab_test(model_name=model_name, version_a=v1, version_b=v2, traffic_split=0.5)
    console.print(f"{v1} serves production (champion), {v2} is in staging (challenger), "
                  "A/B split 50/50 stored for the gateway")
    champion = registry.load_model(model_name, alias="champion")
    sample = test[features].head(3)
    console.print(f"champion predicts {champion.predict(sample).tolist()} on 3 test rows; "
                  f"P(label=1) = {np.round(champion.predict_proba(sample)[:, 1], 3).tolist()}")

    console.rule("[bold]4. registry")
    console.print(models_table(registry.list_models()))
    console.print(versions_table(registry.search(f"name = {model_name} and accuracy > 0.5"),
                                 f"search: name = {model_name} and accuracy > 0.5"))

    console.rule("[bold]4b. compile the challenger forest to ONNX")
    compiled = ana.compile(model_name, v2, to="onnx", data=test[features])
    onnx = compiled.runtimes["onnx"]
    console.print(f"{model_name} {v2}: ONNX runtime sha256 {onnx['digest'][:12]}, labels "
                  f"identical and probabilities within {onnx['max_abs_diff']:.1e} of the "
                  f"original on {onnx['rows_checked']} rows; the gateway now executes it "
                  "(x-model-runtime: onnx)")

    console.rule("[bold]5. serve: a canary of the challenger through the gateway")
    _serve_traffic(registry, model_name, v1, v2, test, features)

    console.rule("[bold]6. rollouts: the controller decides from live traffic and labels")
    from mlops.cli.demo_rollout import rollout_section

    RoutingService(registry).clear_route(model_name, "production", reason="demo: end of section 5")
    rollout_section(rui, ana, model_name, train, test, features, v2)

    console.rule("[bold]7. monitoring: drift and an accuracy drop in production")
    from mlops.cli.demo_monitor import monitor_section

    monitor_section(registry, model_name, test, features)

    console.rule("[bold]7b. retraining: the drift trigger closes the loop")
    from mlops.cli.demo_retrain import retrain_section

    retrain_section(registry, rui, model_name, features)

    console.rule("[bold]8. governance: model card and lineage, from the records")
    _governance_section(registry, model_name, v2, work)
    _impact_section(registry, model_name, v2, test, features)

    console.rule("[bold]9. audit chain")
    verified = registry.verify_audit()
    console.print(("ok" if verified.ok else "BROKEN") + f" {verified.events} events, "
                  f"head {verified.head[:16]}")
    if not verified.ok:
        raise typer.Exit(1)
    console.print(f"\nState is in {registry.context.settings.home}. Try: mlops models show {model_name}"
                  " · mlops audit log · mlops models search \"stage = production\"")


def _governance_section(registry: ModelRegistry, model_name: str, version: str,
                        work: Path) -> None:
    from rich.tree import Tree

    from mlops.governance.card import build_card
    from mlops.governance.lineage import LineageNode, track_lineage
    from mlops.ui.card import card_html

    card = build_card(registry, model_name, version)
    path = work / f"card-{model_name}-{version}.html"
    path.write_text(card_html(card))
    present = [s.title for s in card.sections if s.key not in {m.key for m in card.missing()}]
    console.print(f"model card of {model_name} {version}: {path}")
    console.print(f"  with evidence: {', '.join(present)}")
    for missing in card.missing():
        console.print(f"  missing {missing.title}: {missing.missing} ({missing.supply})",
                      soft_wrap=True)

    def grow(branch: Tree, node: LineageNode) -> None:
        for child in node.children:
            if child.kind != "analysis":  # mlops lineage shows them; the demo stays short
                audit = f" (audit #{child.audit})" if child.audit is not None else ""
                grow(branch.add(f"{child.kind}: {child.label}{audit}"), child)

    from mlops.governance.compliance import ItemStatus, compliance_report

    sr = compliance_report(registry, model_name, version, "sr11-7")
    counts = sr.counts()
    console.print(f"SR 11-7 for {model_name} {version}: {counts['met']} met, "
                  f"{counts['missing']} missing, {counts['not applicable']} not applicable")
    for item in sr.items:
        mark = {ItemStatus.MET: "[green]met[/]", ItemStatus.MISSING: "[red]missing[/]",
                ItemStatus.NOT_APPLICABLE: "n/a"}[item.status]
        console.print(f"  {item.title}: {mark} ({item.detail})", soft_wrap=True)

    from mlops.governance.maturity import assess_maturity

    maturity = assess_maturity(registry)
    console.print(f"MLOps maturity from what this store shows: level {maturity.maturity_level} "
                  f"({maturity.level_name}), score {maturity.overall_score:.2f}/5; next: "
                  + "; ".join(maturity.improvement_recommendations[:2]), soft_wrap=True)

    from datetime import UTC, datetime, timedelta

    from mlops.governance.usage import audit_model_usage

    usage = audit_model_usage(registry, model_name, datetime.now(UTC) - timedelta(days=1),
                              with_compliance=False)
    console.print(f"usage audit of {model_name} (mlops audit usage {model_name} --since 1d): "
                  f"{usage.predictions} predictions in {usage.requests} requests, "
                  f"{usage.failed} failed; by version "
                  + ", ".join(f"{v.version} {v.predictions - v.shadow}" for v in usage.versions)
                  + "; callers " + ", ".join(f"{c.caller} {c.requests}" for c in usage.callers)
                  + f"; {len(usage.security_events)} security events", soft_wrap=True)

    root = track_lineage(registry, model_name, version)
    tree = Tree(f"{root.kind}: {root.label}")
    grow(tree, root)
    console.print(f"mlops lineage {model_name} {version}:")
    console.print(tree)


def _impact_section(registry: ModelRegistry, model_name: str, version: str,
                    test: pd.DataFrame, features: list[str]) -> None:
    """A KPI measured here (accuracy against always guessing the majority class), the cost
    per 1,000 predictions from the logged CPU time, and what retention would delete."""
    from mlops.governance.impact import define_kpi, impact_report, record_kpi
    from mlops.governance.retention import apply_retention

    majority = float(test["label"].value_counts(normalize=True).max()) * 100
    model = registry.load_model(model_name, version)
    accuracy = float((model.predict(test[features]) == test["label"]).mean()) * 100
    define_kpi(registry, model_name, "prediction_accuracy", unit="percentage",
               baseline=round(majority, 2), target=85.0,
               description="test-set accuracy; baseline: always the majority class")
    record_kpi(registry, model_name, "prediction_accuracy", round(accuracy, 2),
               version=version)
    report = impact_report(registry, model_name, version=version)
    for k in report.kpis:
        console.print(f"KPI {k.definition.name} of {model_name} {version}: "
                      f"{k.definition.baseline:g} -> {k.latest.value if k.latest else '-'} "
                      f"({k.change:+.1f} {k.change_unit}; target {k.definition.target:g} "
                      f"{'met' if k.target_met else 'not met'})" if k.change is not None
                      else f"KPI {k.definition.name}: no value")
    for v in report.cost.versions:
        cpu = f"{v.cpu_cost_per_1000:.2e}" if v.cpu_cost_per_1000 is not None else "-"
        total = f"{v.cost_per_1000:.2e}" if v.cost_per_1000 is not None else \
            "not measured (" + "; ".join(m.supply for m in v.missing) + ")"
        console.print(f"cost per 1,000 predictions of {model_name} {v.version} "
                      f"({v.n_predictions} logged): CPU {cpu} {report.cost.currency}, "
                      f"total {total}", soft_wrap=True)
    retention = apply_retention(registry, dry_run=True)
    console.print(f"mlops retention apply --dry-run: {len(retention.partitions)} partitions "
                  f"and {retention.snapshots} metric snapshots older than the policy "
                  f"({registry.settings.retention_days} days) would be deleted")


def demo_people(registry: ModelRegistry) -> tuple[ModelRegistry, ModelRegistry]:
    """ana (developer) and rui (approver), each with a token that expires in a day."""
    from mlops.governance.tokens import TokenService
    from mlops.identity import Role
    from mlops.store.credentials import Authenticator
    from mlops.store.tokens import parse_duration

    service = TokenService(registry)
    auth = Authenticator(registry.context.settings, registry.context.store)
    people = []
    for name, role in (("ana", Role.DEVELOPER), ("rui", Role.APPROVER)):
        _, token = service.create(name, role, parse_duration("1d"))
        people.append(registry.acting_as(auth.authenticate(token)))
    return people[0], people[1]


def _serve_traffic(registry: ModelRegistry, model_name: str, v1: str, v2: str,
                   test: pd.DataFrame, features: list[str]) -> None:
    """Start a gateway on a free port, canary v2 at 20% by user, send traffic and labels."""
    import signal
    from collections import Counter

    from mlops.cli.demo_gateway import post_json, start_gateway
    from mlops.deployment.routes import RoutingService
    from mlops.store.predlog import read_feedback, read_predictions

    route = RoutingService(registry).set_route(model_name, "production", stable=v1, candidate=v2,
                                            weight=20, strategy="canary",
                                            reason="demo canary")
    proc, url = start_gateway(registry)
    try:
        console.print(f"gateway on {url}: {model_name} {v1} stable, {v2} canary at "
                      f"{route.weight:.0f}% (sticky by the x-mlops-unit header)")
        served: Counter[str] = Counter()
        labels = []
        rows = test.head(400)
        for i, (_, row) in enumerate(rows.iterrows()):
            unit = f"user-{i % 100}"
            values = [float(row[c]) for c in features]
            if i % 3 == 0:
                status, headers, body = post_json(
                    f"{url}/v2/models/{model_name}/infer",
                    {"inputs": [{"name": "x", "shape": [1, len(features)], "datatype": "FP64",
                                 "data": values}]}, {"x-mlops-unit": unit})
            elif i % 3 == 1:
                status, headers, body = post_json(f"{url}/v1/models/{model_name}:predict",
                                              {"instances": [values]}, {"x-mlops-unit": unit})
            else:
                status, headers, body = post_json(
                    f"{url}/invocations",
                    {"dataframe_split": {"columns": features, "data": [values]}},
                    {"x-mlops-unit": unit, "x-mlops-model": model_name})
            assert status == 200, body
            served[f"{headers['x-model-version']} ({headers.get('x-model-runtime', '?')})"] += 1
            labels.append({"request_id": headers["x-request-id"], "actual": int(row["label"])})
        post_json(f"{url}/v1/models/{model_name}/feedback", labels)
        bad, _, error = post_json(f"{url}/v1/models/{model_name}:predict", {"instances": [[1, 2]]})
        console.print("400 requests over V2, KServe V1 and MLflow /invocations: "
                      + ", ".join(f"{v}: {n}" for v, n in sorted(served.items()))
                      + f"; {len(labels)} labels sent back")
        console.print(f"a bad request gets {bad}: {error}")
        with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
            metrics = [line for line in resp.read().decode().splitlines()
                       if line.startswith("mlops_requests_total")]
        console.print("GET /metrics:")
        for line in metrics[:3]:
            console.print(f"  {line}", soft_wrap=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    artifacts = str(registry.context.settings.artifacts_uri)
    log = read_predictions(artifacts, model=model_name).to_pandas()
    feedback = read_feedback(artifacts, model=model_name).to_pandas()
    joined = log.merge(feedback, on=["request_id", "row"])
    accuracy = joined.groupby("version").apply(
        lambda g: float((g.prediction_num == g.actual_num).mean()), include_groups=False)
    console.print(f"prediction log: {len(log)} rows, {len(feedback)} labels joined by request "
                  "id; accuracy by version: "
                  + ", ".join(f"{v} {a:.3f}" for v, a in accuracy.items()))
