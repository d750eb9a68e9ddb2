"""The real ``mlops`` command in a subprocess: output, --json and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import create_engine, text

Table = tuple[pd.DataFrame, object]


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k.startswith(("MLOPS_", "PATH", "HOME"))}
    env["COLUMNS"] = "200"
    return subprocess.run([sys.executable, "-m", "mlops", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def example_csv(tmp_path: Path, table: Table) -> Path:
    x, _ = table
    path = tmp_path / "example.csv"
    x.head(10).to_csv(path, index=False)  # type: ignore[attr-defined]
    return path


def test_register_show_promote_alias_search_and_verify(tmp_path: Path, skops_file: Path,
                                                       example_csv: Path) -> None:
    r = run("models", "register", str(skops_file), "--name", "churn", "-m", "accuracy=0.93",
            "-m", "team=risk", "--input-example", str(example_csv), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "registered churn version 1.0.0" in r.stdout
    assert run("models", "register", str(skops_file), "--name", "churn", "--bump", "minor",
               cwd=tmp_path).returncode == 0
    assert run("models", "promote", "churn", "1.0.0", "production", cwd=tmp_path).returncode == 0
    assert run("models", "alias", "churn", "champion", "1.1.0", cwd=tmp_path).returncode == 0
    assert run("models", "tag", "churn", "owner=ana", cwd=tmp_path).returncode == 0

    listed = json.loads(run("models", "list", "--json", cwd=tmp_path).stdout)
    assert listed[0]["name"] == "churn"
    assert listed[0]["stages"] == {"Production": "1.0.0"}
    assert listed[0]["aliases"] == {"champion": "1.1.0"}
    assert listed[0]["tags"] == {"owner": "ana"}

    shown = json.loads(run("models", "show", "churn", "1.0.0", "--json", cwd=tmp_path).stdout)
    assert shown["metrics"] == {"accuracy": 0.93}
    assert shown["tags"] == {"team": "risk"}
    assert [c["name"] for c in shown["signature"]["inputs"]] == ["a", "b", "c", "d"]
    text_show = run("models", "show", "churn", "champion", cwd=tmp_path)
    assert "1.1.0" in text_show.stdout

    found = json.loads(run("models", "search", "accuracy > 0.9 and stage = production",
                           "--json", cwd=tmp_path).stdout)
    assert [(v["model"], v["version"]) for v in found] == [("churn", "1.0.0")]

    verify = run("audit", "verify", cwd=tmp_path)
    assert verify.returncode == 0
    assert verify.stdout.startswith("ok 6 events")
    log = json.loads(run("audit", "log", "--json", cwd=tmp_path).stdout)
    assert [e["action"] for e in log][:2] == ["tag.set", "alias.set"]


def test_tampered_audit_row_makes_verify_exit_1(tmp_path: Path, skops_file: Path) -> None:
    assert run("models", "register", str(skops_file), "--name", "m", cwd=tmp_path).returncode == 0
    db = tmp_path / ".mlops" / "mlops.db"
    engine = create_engine(os.environ.get("MLOPS_DATABASE_URL") or f"sqlite:///{db}")
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET actor = 'mallory' WHERE seq = 2"))
    engine.dispose()
    r = run("audit", "verify", cwd=tmp_path)
    assert r.returncode == 1
    assert "broken at event 2" in r.stdout
    assert json.loads(run("audit", "verify", "--json", cwd=tmp_path).stdout)["broken_seq"] == 2


def test_user_errors_exit_2_with_a_fix_and_no_traceback(tmp_path: Path, skops_file: Path
                                                       ) -> None:
    r = run("models", "register", str(skops_file), "--name", "m", "--version", "1.0",
            cwd=tmp_path)
    assert r.returncode == 2
    assert "not a semantic version" in r.stderr and "fix:" in r.stderr
    assert "Traceback" not in r.stderr
    r = run("models", "show", "ghost", cwd=tmp_path)
    assert r.returncode == 2 and "ghost" in r.stderr
    r = run("models", "search", "accuracy >", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = run("models", "promote", cwd=tmp_path)
    assert r.returncode == 2  # usage error


def test_unsafe_pickle_is_refused_by_the_cli(tmp_path: Path) -> None:
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(b"cos\nsystem\n(S'echo hi'\ntR.")
    r = run("models", "register", str(evil), "--name", "evil", cwd=tmp_path)
    assert r.returncode == 2
    assert "system" in r.stderr  # the payload is a protocol-0 pickle of os.system('echo hi')


@pytest.mark.default_store  # where the SQLite file goes
def test_settings_from_mlops_toml(tmp_path: Path, skops_file: Path) -> None:
    home = tmp_path / "elsewhere"
    (tmp_path / "mlops.toml").write_text(f'[mlops]\nhome = "{home}"\n')
    env_home = os.environ.pop("MLOPS_HOME")
    try:
        assert run("models", "register", str(skops_file), "--name", "m",
                   cwd=tmp_path).returncode == 0
    finally:
        os.environ["MLOPS_HOME"] = env_home
    assert (home / "mlops.db").exists()


def test_tag_values_stay_text(tmp_path: Path, skops_file: Path) -> None:
    assert run("models", "register", str(skops_file), "--name", "m", "-m", "git_commit=007",
               cwd=tmp_path).returncode == 0
    assert run("models", "tag", "m", "v=1.10", "id=007", cwd=tmp_path).returncode == 0
    listed = json.loads(run("models", "list", "--json", cwd=tmp_path).stdout)
    assert listed[0]["tags"] == {"v": "1.10", "id": "007"}
    shown = json.loads(run("models", "show", "m", "1.0.0", "--json", cwd=tmp_path).stdout)
    assert shown["lineage"]["git_commit"] == "007"


def test_unwritable_home_is_exit_2_without_traceback(tmp_path: Path) -> None:
    os.environ["MLOPS_HOME"], old = "/dev/null/x", os.environ["MLOPS_HOME"]
    try:
        r = run("models", "list", cwd=tmp_path)
    finally:
        os.environ["MLOPS_HOME"] = old
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "MLOPS_HOME" in r.stderr


def test_audit_verify_against_checkpoint(tmp_path: Path, skops_file: Path) -> None:
    assert run("models", "register", str(skops_file), "--name", "m", cwd=tmp_path).returncode == 0
    cp = run("audit", "checkpoint", "--json", cwd=tmp_path)
    data = json.loads(cp.stdout)
    text = f"{data['events']}:{data['head']}"
    assert run("audit", "verify", "--checkpoint", text, cwd=tmp_path).returncode == 0
    assert run("audit", "verify", "--checkpoint", "5:" + "0" * 64, cwd=tmp_path).returncode == 1
    assert run("audit", "verify", "--checkpoint", "junk", cwd=tmp_path).returncode == 2


def test_deploy_rollout_and_rollback_commands(tmp_path: Path, skops_file: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    for _ in range(2):
        assert run("models", "register", str(skops_file), "--name", "m",
                   cwd=tmp_path).returncode == 0
    assert run("models", "promote", "m", "1.0.0", "production", cwd=tmp_path).returncode == 0
    monkeypatch.setenv("MLOPS_PROMOTION_POLICY", "staged")  # staging before production
    refused = run("deploy", "m", "1.0.1", "--env", "production", cwd=tmp_path)
    assert refused.returncode == 2 and "staging" in refused.stderr
    assert run("deploy", "m", "1.0.1", "--env", "staging", "--strategy", "full",
               cwd=tmp_path).returncode == 0
    r = run("deploy", "m", "1.0.1", "--env", "production", "--strategy", "canary", "--steps",
            '[{"weight": 20, "pause": "manual"}]', "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["weight"] == 20
    status = json.loads(run("rollout", "status", "m", "--env", "production", "--json",
                            cwd=tmp_path).stdout)
    assert status["state"] == "progressing" and status["candidate"] == "1.0.1"
    assert run("rollout", "pause", "m", "--env", "production", cwd=tmp_path).returncode == 0
    assert run("rollout", "promote", "m", "--env", "production", cwd=tmp_path).returncode == 0
    r = run("rollback", "m", "--env", "production", "--reason", "smoke", cwd=tmp_path)
    assert r.returncode == 0 and "now serves 1.0.0" in r.stdout
    bad = run("deploy", "m", "1.0.1", "--steps", "[oops", cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.returncode == 2 and "not valid JSON" in bad.stderr
    assert run("audit", "verify", cwd=tmp_path).returncode == 0
