"""Usage audit over a real server: callers recorded as the token's identity (team mode with
inference tokens) or the client address (anonymous inference), per version; failures and
CPU time from the log; refused credentials and refused model files as security events."""

from __future__ import annotations

import os
import pickle
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from mlops.cli.audit import audit_app
from mlops.config import Settings
from mlops.errors import GovernanceError, UnsafeModel
from mlops.governance.tokens import TokenService
from mlops.governance.usage import UNRECORDED, audit_model_usage, parse_when
from mlops.identity import Role
from mlops.registry.service import ModelRegistry
from mlops.store.predlog import PredictionLog, PredictionRecord, read_predictions
from tests.serving.conftest import FEATURES, start_server


class _Hostile:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo pwned",))


def _store(root: Path) -> ModelRegistry:
    registry = ModelRegistry(Settings(home=root / ".mlops", actor="setup"))
    rng = np.random.default_rng(5)
    x = pd.DataFrame(rng.normal(size=(200, 5)), columns=FEATURES)
    y = (x["x0"] > 0).astype(int).to_numpy()
    path = root / "m.skops"
    sio.dump(LogisticRegression().fit(x, y), path)
    registry.register("clf", path, version="1.0.0", input_example=x.head(10))
    registry.promote("clf", "1.0.0", "production")
    return registry


ROW = {"instances": [[0.1, 0.2, 0.3, 0.4, 0.5], [0.5, 0.4, 0.3, 0.2, 0.1]]}


def test_usage_names_each_caller_and_the_security_events(tmp_path: Path) -> None:
    registry = _store(tmp_path)
    start = datetime.now(UTC) - timedelta(seconds=1)
    tokens = {name: TokenService(registry).create(name, Role.VIEWER)[1]
              for name in ("alice", "bob")}
    hostile = tmp_path / "hostile.pkl"
    hostile.write_bytes(pickle.dumps(_Hostile()))
    with pytest.raises(UnsafeModel):
        registry.register("clf", hostile, version="9.9.9")
    home = tmp_path / ".mlops"
    srv = start_server(home, "--auth", "--controller-interval", "3600",
                       env_extra={"MLOPS_AUTH_INFERENCE": "1"})
    try:
        with srv.client() as c:
            for name, n in (("alice", 3), ("bob", 1)):
                for _ in range(n):
                    r = c.post("/v1/models/clf:predict", json=ROW,
                               headers={"Authorization": f"Bearer {tokens[name]}"})
                    assert r.status_code == 200, r.text
            wrong = c.post("/v1/models/clf:predict", json=ROW,
                           headers={"Authorization": "Bearer mlops_000000000000_" + "A" * 43})
            assert wrong.status_code == 401
    finally:
        srv.stop()  # SIGTERM: a clean stop that flushes the prediction log
    srv = start_server(home, "--controller-interval", "3600")  # single-user: anonymous
    try:
        with srv.client() as c:
            assert c.post("/v1/models/clf:predict", json=ROW).status_code == 200
    finally:
        srv.stop()

    audit = audit_model_usage(registry, "clf", start)
    callers = {c.caller: (c.predictions, c.requests, c.versions) for c in audit.callers}
    assert callers == {"token:alice": (6, 3, ("1.0.0",)), "token:bob": (2, 1, ("1.0.0",)),
                       "address:127.0.0.1": (2, 1, ("1.0.0",))}
    [version] = audit.versions
    assert (version.version, version.predictions, version.requests, version.failed) == \
        ("1.0.0", 10, 5, 0)
    assert version.cpu_seconds is not None and version.cpu_seconds > 0
    assert version.latency_p50_ms is not None and version.latency_p99_ms is not None
    assert (audit.predictions, audit.requests, audit.error_rate) == (10, 5, 0.0)
    actions = [e.action for e in audit.security_events]
    assert "security.model_refused" in actions and "security.auth_refused" in actions
    refused = next(e for e in audit.security_events if e.action == "security.auth_refused")
    assert "127.0.0.1 (1)" in refused.summary
    assert {c.framework for c in audit.compliance} == {"sr11-7", "eu-ai-act"}
    assert all(c.version == "1.0.0" and c.met + c.missing + c.not_applicable > 0
               for c in audit.compliance)
    assert registry.verify_audit().ok

    # a period before any of it: nothing, and still the same shape
    empty = audit_model_usage(registry, "clf", start - timedelta(days=3),
                              start - timedelta(days=2))
    assert (empty.predictions, empty.versions, empty.callers, empty.security_events) == \
        (0, (), (), ())

    result = CliRunner().invoke(audit_app, ["usage", "clf", "--since", "1d", "--json"],
                                env={"MLOPS_HOME": str(home)})
    assert result.exit_code == 0, result.output
    assert '"caller": "token:alice"' in result.output


def test_rows_logged_before_callers_were_recorded_count_as_unrecorded(
        tmp_path: Path) -> None:
    registry = _store(tmp_path)
    now = datetime.now(UTC).timestamp()
    log = PredictionLog(registry.settings.artifacts_uri, spool=tmp_path / "spool")
    log.start()
    log.log([PredictionRecord("r1", now, "clf", "1.0.0", "production", "stable", None, 0,
                              "{}", "1", 1.0, None, 2.0, 200),
             PredictionRecord("r2", now, "clf", "1.0.0", "production", "stable", None, 0,
                              "{}", "null", None, None, 2.0, 500, caller="token:eve",
                              cpu_ms=0.5),
             PredictionRecord("r3", now, "clf", "1.0.0", "production", "shadow", None, 0,
                              "{}", "1", 1.0, None, 2.0, 200, caller="token:eve")])
    log.close()
    assert len(read_predictions(registry.settings.artifacts_uri, "clf")) == 3
    audit = audit_model_usage(registry, "clf", datetime.now(UTC) - timedelta(hours=1),
                              with_compliance=False)
    callers = {c.caller: (c.predictions, c.failed) for c in audit.callers}
    assert callers == {UNRECORDED: (1, 0), "token:eve": (1, 1)}  # the shadow copy is not hers
    [version] = audit.versions
    assert (version.predictions, version.shadow, version.failed) == (3, 1, 1)
    assert version.cpu_seconds == pytest.approx(0.0005)
    assert audit.predictions == 2 and audit.error_rate == 0.5


def test_bad_periods_and_names_are_refused(tmp_path: Path) -> None:
    registry = _store(tmp_path)
    now = datetime.now(UTC)
    with pytest.raises(GovernanceError, match="empty"):
        audit_model_usage(registry, "clf", now, now - timedelta(days=1))
    with pytest.raises(GovernanceError, match="not a time"):
        parse_when("last tuesday")
    assert parse_when("2d", now=now) == now - timedelta(days=2)
    assert parse_when("2026-11-01") == datetime(2026, 11, 1, tzinfo=UTC)
    runner = CliRunner()
    env = {"MLOPS_HOME": str(tmp_path / ".mlops")}
    from mlops.cli.app import app
    for args in (["audit", "usage", "nope"], ["audit", "usage", "clf", "--since", "soon"]):
        result = runner.invoke(app, args, env=env)
        assert result.exit_code != 0 and "Traceback" not in result.output


def test_a_reused_request_id_still_counts_each_request(tmp_path: Path) -> None:
    registry = _store(tmp_path)
    now = datetime.now(UTC).timestamp()
    log = PredictionLog(registry.settings.artifacts_uri, spool=tmp_path / "spool")
    log.start()
    log.log([PredictionRecord("same", now + i, "clf", "1.0.0", "production", "stable", None,
                              0, "{}", "1", 1.0, None, 2.0, 200 if i else 500,
                              caller="address:10.0.0.9") for i in range(3)])
    log.close()
    audit = audit_model_usage(registry, "clf", datetime.now(UTC) - timedelta(hours=1),
                              datetime.now(UTC) + timedelta(minutes=1), with_compliance=False)
    [caller] = audit.callers
    assert (caller.requests, caller.failed) == (3, 1)
    [version] = audit.versions
    assert version.latency_p50_ms == 2.0  # the answered ones keep their latency


def _main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
          ) -> tuple[int, str]:
    """``mlops ARGS`` through the entry point's error handling."""
    import importlib

    cli_app = importlib.import_module("mlops.cli.app")
    monkeypatch.setattr(sys, "argv", ["mlops", *args])
    code = 0
    try:
        cli_app.main()
    except SystemExit as done:
        code = int(done.code or 0)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_a_refused_load_is_recorded_once_and_markup_in_names_is_shown_as_text(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from sqlalchemy import text

    registry = _store(tmp_path)
    hostile = tmp_path / "evil.pkl"
    hostile.write_bytes(b"c[/]evil\n[link=http://x]foo\n)R.")
    code, out = _main(monkeypatch, capsys, "models", "register", str(hostile), "--name",
                      "clf", "--version", "6.6.6")
    assert code == 2 and "[/]evil" in out and "Traceback" not in out, out
    # a stored file that is no longer trusted: each load is refused, recorded once
    import decimal

    model = LogisticRegression().fit(np.eye(5), [0, 1, 0, 1, 0])
    model.note = decimal.Decimal("1.5")  # not on the allow list: loads only when trusted
    trusted = tmp_path / "trusted.pkl"
    trusted.write_bytes(pickle.dumps(model))
    registry.register("clf", trusted, version="2.0.0", trust=True)
    with registry.store.write() as s:
        s.execute(text("UPDATE model_versions SET trusted = false WHERE version = '2.0.0'"))
    before = len(registry.audit_log(action="security.model_refused", limit=None))
    for _ in range(3):
        with pytest.raises(UnsafeModel):
            registry.load_model("clf", "2.0.0")
    after = registry.audit_log(action="security.model_refused", limit=None)
    assert len(after) == before + 1 and after[0].payload["when"] == "load"
    monkeypatch.setenv("COLUMNS", "250")
    code, out = _main(monkeypatch, capsys, "audit", "usage", "clf", "--since", "1d")
    assert code == 0 and "[/]evil" in out, out  # the refused file's import, as text
    code, out = _main(monkeypatch, capsys, "audit", "usage", "[/]x")
    assert code == 2 and "[/]x" in out, out
