"""``mlops demo``: the end-to-end lifecycle on generated data, in the default store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlops.cli.output import console, models_table, versions_table

__all__ = ["demo"]


def demo(
    model_name: Annotated[str, typer.Option(help="Name to register the demo model under.")
                          ] = "demo_classifier",
    rows: int = 5000,
) -> None:
    """Train two models on generated data, register, promote, alias and audit them."""
    import numpy as np
    import pandas as pd
    import skops.io as sio
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
    from sklearn.model_selection import train_test_split

    from mlops.registry.service import ModelRegistry

    registry = ModelRegistry()
    work = Path(registry.settings.home) / "demo"
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

    console.rule("[bold]2. train and register two versions")
    candidates = [("logistic", LogisticRegression(max_iter=500)),
                  ("forest", RandomForestClassifier(n_estimators=60, max_depth=8,
                                                    random_state=7))]
    versions = []
    for algo, est in candidates:
        est.fit(train[features], train["label"])
        proba = est.predict_proba(test[features])[:, 1]
        pred = est.predict(test[features])
        metrics = {"accuracy": accuracy_score(test["label"], pred),
                   "f1_score": f1_score(test["label"], pred),
                   "roc_auc": roc_auc_score(test["label"], proba)}
        path = work / f"{algo}.skops"
        sio.dump(est, path)
        version = registry.register_model(
            model_name=model_name, model_path=str(path),
            metadata={**metrics, "training_data": str(train_path), "algorithm": algo},
            input_example=train[features].head(20),
            params=est.get_params(),
        )
        versions.append(version)
        console.print(f"registered {model_name} {version} ({algo}): "
                      + ", ".join(f"{k}={v:.3f}" for k, v in metrics.items()))

    console.rule("[bold]3. stages and aliases")
    v1, v2 = versions
    registry.promote_to_stage(model_name, v1, "production")
    registry.promote_to_stage(model_name, v2, "staging")
    registry.set_alias(model_name, "champion", v1)
    registry.set_alias(model_name, "challenger", v2)
    registry.setup_ab_test(model_name=model_name, version_a=v1, version_b=v2, traffic_split=0.5)
    console.print(f"{v1} -> Production (champion), {v2} -> Staging (challenger), "
                  "A/B split 50/50 stored for the gateway")
    champion = registry.load_model(model_name, alias="champion")
    sample = test[features].head(3)
    console.print(f"champion predicts {champion.predict(sample).tolist()} on 3 test rows; "
                  f"P(label=1) = {np.round(champion.predict_proba(sample)[:, 1], 3).tolist()}")

    console.rule("[bold]4. registry")
    console.print(models_table(registry.list_models()))
    console.print(versions_table(registry.search(f"name = {model_name} and accuracy > 0.5"),
                                 f"search: name = {model_name} and accuracy > 0.5"))

    console.rule("[bold]5. audit chain")
    result = registry.verify_audit()
    console.print(("ok" if result.ok else "BROKEN") + f" {result.events} events, "
                  f"head {result.head[:16]}")
    if not result.ok:
        raise typer.Exit(1)
    console.print(f"\nState is in {registry.settings.home}. Try: mlops models show {model_name}"
                  " · mlops audit log · mlops models search \"stage = production\"")
