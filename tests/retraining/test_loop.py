"""The closed loop with real parts: a store, the prediction log with labels, a training
command in a subprocess, the CI pipeline under the store's policy, and the rollout.

The production model learnt ``y = x0 > 0``; the world moved to ``y = x0 + 0.4 x1 > 0``
(production is still right on ~88% of rows). A retrain on the labelled window learns the
new rule, passes the gates (the champion gate compares it with production on the window's
held-out rows) and replaces production; a retrain on shuffled labels is rejected,
production keeps its version and the ``retrain-failed`` alert fires."""

from __future__ import annotations

import json
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from mlops.config import Settings
from mlops.deployment.routes import RoutingService
from mlops.errors import ConfigError, PermissionDenied
from mlops.governance.lineage import track_lineage
from mlops.governance.tokens import TokenService
from mlops.identity import Role
from mlops.monitoring.alerts import AlertManager
from mlops.registry.service import ModelRegistry
from mlops.retraining.service import RETRAIN_RULE, RetrainService
from mlops.store import retrain as rows
from mlops.store.credentials import Authenticator
from mlops.store.predlog import FeedbackRecord, PredictionLog, PredictionRecord
from mlops.store.retrain import JobState

FEATURES = ["x0", "x1", "x2"]
POLICY = """default_tier: t
tiers:
  t:
    gates: {security: {}, data_quality: {}, metrics: {accuracy: 0.7}, champion: {}}
    approvals: 0
    rollout: {strategy: full}
"""
TRAIN = """
import os, sys
import pandas as pd, skops.io as sio
from sklearn.linear_model import LogisticRegression
window = pd.read_parquet(os.environ["MLOPS_RETRAIN_WINDOW"])
x = window[["x0", "x1", "x2"]]
y = window[os.environ["MLOPS_RETRAIN_LABEL"]].astype(int)
if sys.argv[1:] == ["shuffle"]:
    y = y.sample(frac=1.0, random_state=0).reset_index(drop=True)
print("training on", len(window), "rows; reasons:", os.environ["MLOPS_RETRAIN_REASONS"])
assert "MLOPS_TEST_SECRET" not in os.environ
sio.dump(LogisticRegression().fit(x, y), os.path.join(os.environ["MLOPS_RETRAIN_OUTPUT"],
                                                       "model.skops"))
"""


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(size=(n, 3)), columns=FEATURES)


@pytest.fixture
def store(tmp_path: Path) -> ModelRegistry:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    registry = ModelRegistry(Settings(home=tmp_path / ".mlops", actor="setup",
                                      policy_file=str(policy)))
    old = _frame(500, 1)
    path = tmp_path / "v1.skops"
    sio.dump(LogisticRegression().fit(old, (old["x0"] > 0).astype(int)), path)
    registry.register("churn", path, version="1.0.0", training_frame=old)
    RoutingService(registry).set_route("churn", "production", stable="1.0.0",
                                       reason="first version")
    # production traffic after the world moved: labels follow x0 + 0.4 x1 now
    now = datetime.now(UTC).timestamp()
    new = _frame(400, 2)
    log = PredictionLog(registry.settings.artifacts_uri, spool=tmp_path / "spool")
    log.start()
    log.log([PredictionRecord(f"r{i}", now - 600 + i, "churn", "1.0.0", "production",
                              "stable", None, 0, json.dumps(row), str(int(row["x0"] > 0)),
                              float(row["x0"] > 0), None, 1.0, 200)
             for i, row in enumerate(new.to_dict("records"))])
    truth = [int(row["x0"] + 0.4 * row["x1"] > 0) for row in new.to_dict("records")]
    log.log_feedback([FeedbackRecord(f"r{i}", 0, "churn", str(truth[i]), float(truth[i]),
                                     now - 300 + i)
                      for i, row in enumerate(new.to_dict("records"))])
    log.close()
    (tmp_path / "train.py").write_text(TRAIN)
    return registry


def _config(tmp_path: Path, *args: str, auto_deploy: bool = True, timeout: str = "2m") -> str:
    command = json.dumps([sys.executable, str(tmp_path / "train.py"), *args])
    return (f"command: {command}\ntimeout: {timeout}\nauto_deploy: {str(auto_deploy).lower()}\n"
            "triggers:\n  - {name: by-hand, kind: manual}\n")


def test_a_good_retrain_replaces_production_with_its_whole_chain_recorded(
        store: ModelRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_TEST_SECRET", "not for the job")
    service = RetrainService(store)
    service.set_config("churn", _config(tmp_path))
    job = service.run("churn", "labels say the rule changed")
    assert job.state is JobState.QUEUED
    report = service.run_pass(wait=True)
    assert report.started == [job.id]
    done, log = service.job(job.id)
    assert done.state is JobState.SUCCEEDED, done.outcome
    assert "training on 280 rows" in log and done.wall_seconds and done.peak_rss_mb
    new = done.outcome["version"]
    assert new == "1.0.1" and done.outcome["deploy"]["status"] == "passed"
    assert RoutingService(store).served("churn", "production").stable == new
    mv = store.get_version("churn", new)
    assert mv.lineage.parent_version == "1.0.0"
    assert mv.lineage.training_data_sha256 == done.outcome["data"]["window"]["sha256"]
    assert mv.lineage.params["retrain_job"] == job.id and mv.tags["retrain.job"] == str(job.id)
    actions = [e.action for e in reversed(store.audit_log(subject="model/churn",
                                                          limit=None))]
    chain = [a for a in actions if a.startswith("retrain.job") or a in (
        "version.register", "ci.run.finish", "route.set")]
    assert chain[chain.index("retrain.job.queue"):] == [  # staging, then production
        "retrain.job.queue", "retrain.job.start", "version.register", "route.set",
        "route.set", "ci.run.finish", "retrain.job.finish"]
    own = track_lineage(store, "churn", new)  # its tree starts at the job that made it
    assert own.kind == "retrain_job" and {"dataset", "version", "ci_run"} <= {
        n.kind for n in own.walk()}
    parent = track_lineage(store, "churn", "1.0.0").walk()  # 1.0.0 -> job -> 1.0.1
    [job_node] = [n for n in parent if n.kind == "retrain_job"]
    assert job_node.audit is not None and "labels say the rule changed" in job_node.label
    assert any(n.id == f"version:{new}" for n in job_node.walk())
    assert store.verify_audit().ok


def test_a_bad_retrain_keeps_production_and_fires_the_alert(store: ModelRegistry,
                                                           tmp_path: Path) -> None:
    service = RetrainService(store)
    service.set_config("churn", _config(tmp_path, "shuffle"))
    job = service.run("churn")
    service.run_pass(wait=True)
    done, _ = service.job(job.id)
    assert done.state is JobState.FAILED
    assert "gate:" in done.outcome["error"]
    assert RoutingService(store).served("churn", "production").stable == "1.0.0"
    firing = AlertManager(store).alerts("churn", state="firing")
    assert [a.rule for a in firing] == [RETRAIN_RULE]
    kinds = [n.kind for n in track_lineage(store, "churn", "1.0.0").walk()]
    assert "retrain_job" in kinds  # the rejected attempt is on record too


def test_a_hanging_command_times_out_and_a_running_job_can_be_cancelled(
        store: ModelRegistry, tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("import time\ntime.sleep(60)\n")
    service = RetrainService(store)
    service.set_config("churn", _config(tmp_path, timeout="2s"))
    job = service.run("churn")
    started = time.monotonic()
    service.run_pass(wait=True)
    done, _ = service.job(job.id)
    assert done.state is JobState.TIMED_OUT and time.monotonic() - started < 30
    service.set_config("churn", _config(tmp_path, timeout="1m"))
    job = service.run("churn")
    runner = threading.Thread(target=service.run_pass, kwargs={"wait": True})
    runner.start()
    deadline = time.monotonic() + 20
    while service.job(job.id)[0].state is JobState.QUEUED and time.monotonic() < deadline:
        time.sleep(0.05)
    service.cancel(job.id)
    runner.join(30)
    assert service.job(job.id)[0].state is JobState.CANCELLED


def test_two_processes_never_run_the_same_job(store: ModelRegistry, tmp_path: Path) -> None:
    service = RetrainService(store)
    service.set_config("churn", _config(tmp_path))
    job = service.run("churn")
    claims = []

    def claim(holder: str) -> None:
        with store.store.write() as s:
            claims.append(rows.claim_next(s, holder, limit=5))

    threads = [threading.Thread(target=claim, args=(f"host-{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [c.id for c in claims if c is not None] == [job.id]


def test_an_interrupted_job_is_queued_again(store: ModelRegistry, tmp_path: Path) -> None:
    service = RetrainService(store)
    service.set_config("churn", _config(tmp_path))
    job = service.run("churn")
    with store.store.write() as s:  # a server that took it, then died
        assert rows.claim_next(s, "dead-host:1", limit=1) is not None
    later = datetime.now(UTC) + timedelta(minutes=5)
    report = service.run_pass(later, wait=True)
    assert report.interrupted == [job.id]
    assert service.job(job.id)[0].state is JobState.INTERRUPTED
    again = [j for j in service.jobs("churn") if j.id != job.id]
    assert again and again[0].state is JobState.SUCCEEDED
    assert any(r["trigger"] == "requeue" for r in again[0].reasons)


def test_configuring_takes_an_admin_and_triggering_a_developer(store: ModelRegistry,
                                                               tmp_path: Path) -> None:
    team = store.settings.model_copy(update={"auth": True})
    people = {}
    for name, role in (("viv", Role.VIEWER), ("dev", Role.DEVELOPER)):
        _, token = TokenService(store).create(name, role)
        people[role] = ModelRegistry(team, principal=Authenticator(team).authenticate(token))
    for role in (Role.VIEWER, Role.DEVELOPER):  # the command would run on the server
        with pytest.raises(PermissionDenied, match="runs on the server"):
            RetrainService(people[role]).set_config("churn", _config(tmp_path))
    service = RetrainService(store)
    with pytest.raises(ConfigError, match="no retraining configuration"):
        service.run("churn")
    service.set_config("churn", _config(tmp_path))
    with pytest.raises(PermissionDenied):
        RetrainService(people[Role.VIEWER]).run("churn")
    assert RetrainService(people[Role.DEVELOPER]).run("churn").created_by == "dev"
    with pytest.raises(ConfigError, match="line 2"):
        service.set_config("churn", "command: [python]\ntimout: 5m\n")


def test_signals_for_one_model_coalesce_into_one_job(store: ModelRegistry,
                                                     tmp_path: Path) -> None:
    service = RetrainService(store)
    service.set_config("churn", _config(tmp_path))
    first = service.run("churn", "drift in income", priority="low")
    second = service.run("churn", "accuracy fell", priority="critical")
    assert first.id == second.id
    assert [r["reason"] for r in second.reasons] == ["drift in income", "accuracy fell"]
    assert second.priority == "critical"
    decisions = service.decisions("churn")
    assert [d.decision for d in decisions] == ["joined", "queued"]


def test_no_job_starts_while_a_rollout_of_the_model_is_in_progress(
        store: ModelRegistry, tmp_path: Path) -> None:
    from mlops.deployment.rollouts import RolloutManager

    store.register("churn", tmp_path / "v1.skops", version="1.1.0")
    RolloutManager(store).deploy("churn", "1.1.0", "production", strategy="canary",
                                 config={"steps": [{"weight": 10, "pause": "manual"}]},
                                 reason="a canary in progress")
    service = RetrainService(store)
    service.set_config("churn", _config(tmp_path))
    job = service.run("churn")
    report = service.run_pass(wait=True)
    assert report.started == [] and service.job(job.id)[0].state is JobState.QUEUED
    assert any("rollout of this model is in progress" in d.reason
               for d in service.decisions("churn"))
    RolloutManager(store).abort("churn", "production", reason="done with it")
    assert service.run_pass(wait=True).started == [job.id]


def test_two_control_processes_never_claim_the_same_job(store: ModelRegistry,
                                                        tmp_path: Path) -> None:
    import subprocess

    names = [f"m{i}" for i in range(6)]
    for name in names:  # one queued job per model (a model never runs two at once)
        store.register(name, tmp_path / "v1.skops", version="1.0.0")
        with store.store.write() as s:
            rows.queue_job(s, name, [{"trigger": "manual", "reason": "race"}],
                           priority="high", actor="setup")
    claim = (
        "import json, sys\n"
        "from mlops.config import Settings\n"
        "from mlops.store.db import MetadataStore\n"
        "from mlops.store import retrain as rows\n"
        "store = MetadataStore(sys.argv[1])\n"
        "got = []\n"
        "while True:\n"
        "    with store.write() as s:\n"
        "        job = rows.claim_next(s, sys.argv[2], limit=100)\n"
        "    if job is None:\n"
        "        break\n"
        "    got.append(job.id)\n"
        "print(json.dumps(got))\n")
    url = store.settings.database_url
    procs = [subprocess.Popen([sys.executable, "-c", claim, url, f"host-{i}"],
                              stdout=subprocess.PIPE, text=True) for i in range(2)]
    claimed = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    everything = claimed[0] + claimed[1]
    assert sorted(everything) == sorted(set(everything))  # nobody claimed a job twice
    assert len(everything) == len(names)  # and every job was claimed by one of them


def test_an_auto_deploy_version_waiting_for_approval_ships_once_approved(
        store: ModelRegistry, tmp_path: Path) -> None:
    from mlops.ci.approvals import approve
    from mlops.identity import Principal

    policy = Path(store.settings.policy_file)
    policy.write_text(POLICY.replace("approvals: 0", "approvals: 1"))
    service = RetrainService(store)
    service.set_config("churn", _config(tmp_path))
    job = service.run("churn")
    service.run_pass(wait=True)
    done, _ = service.job(job.id)
    assert done.state is JobState.SUCCEEDED and done.outcome["deploy"]["status"] == "pending"
    new = done.outcome["version"]
    assert service.run_pass(wait=True).shipped == []  # nobody approved yet
    assert RoutingService(store).served("churn", "production").stable == "1.0.0"
    rui = store.acting_as(Principal("rui", Role.APPROVER, "token"))
    approve(rui, "churn", new, "looked at the held-out numbers")
    assert service.run_pass(wait=True).shipped == [job.id]
    assert RoutingService(store).served("churn", "production").stable == new
    assert service.job(job.id)[0].outcome["deploy"]["status"] == "passed"
    assert service.run_pass(wait=True).shipped == []  # once
