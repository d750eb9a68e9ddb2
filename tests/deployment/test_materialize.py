"""Served models materialised as files (``*_MODEL_PATH``): a real SQLite store, real
deployments and promotions, real folders and links."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import update

from mlops.config import Settings
from mlops.deployment.controller import Controller
from mlops.deployment.materialize import (
    MANIFEST,
    Materialized,
    materialize,
    model_paths,
)
from mlops.deployment.rollouts import RolloutManager
from mlops.errors import (
    ArtifactCorrupted,
    ConfigError,
    DeploymentError,
    MaterializeError,
    RegistryError,
)
from mlops.registry.service import ModelRegistry
from mlops.store.schema import ModelRow

OVERRIDE = "tests go straight to production"


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "models" / "staging", tmp_path / "models" / "production"


@pytest.fixture
def reg(database_url: str, tmp_path: Path, folders: tuple[Path, Path]) -> ModelRegistry:
    staging, production = folders
    return ModelRegistry(Settings(home=tmp_path / ".mlops", database_url=database_url,
                                  artifacts_uri=str(tmp_path / "artifacts"), actor="tester",
                                  staging_model_path=staging,
                                  production_model_path=production))


@pytest.fixture
def churn(reg: ModelRegistry, skops_file: Path, pickle_file: Path) -> ModelRegistry:
    """churn 1.0.0 (skops) and 1.1.0 (joblib): two versions with different bytes."""
    reg.register("churn", skops_file)
    reg.register("churn", pickle_file, bump="minor")
    return reg


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(folder: Path) -> dict[str, tuple[int, int, str]]:
    """Every entry under ``folder`` with its inode, mtime and link target (lstat)."""
    out = {}
    for path in sorted(folder.rglob("*")):
        st = path.lstat()
        out[str(path.relative_to(folder))] = (st.st_ino, st.st_mtime_ns,
                                              os.readlink(path) if path.is_symlink() else "")
    return out


def test_a_deploy_to_staging_materialises_the_version(churn: ModelRegistry, skops_file: Path,
                                                      folders: tuple[Path, Path]) -> None:
    staging, production = folders
    RolloutManager(churn).deploy("churn", "1.0.0", "staging", strategy="full")

    done = materialize(churn.context)

    assert done == [Materialized("churn", "staging", "1.0.0", staging / "churn", True, None)]
    link = staging / "churn"
    assert os.readlink(link) == ".versions/churn/1.0.0"
    assert (link / "model.skops").read_bytes() == skops_file.read_bytes()
    meta = json.loads((link / MANIFEST).read_text())
    assert {k: meta[k] for k in ("name", "version", "environment", "flavor", "format")} == \
        {"name": "churn", "version": "1.0.0", "environment": "staging", "flavor": "sklearn",
         "format": "skops"}
    assert meta["files"] == [{"name": "model.skops", "sha256": sha(skops_file),
                              "size": skops_file.stat().st_size}]
    assert meta["materialised_at"]
    # production serves nothing yet: its folder holds no model
    assert [p.name for p in production.iterdir() if not p.name.startswith(".")] == []


def test_a_promotion_to_production_switches_the_link_atomically(
        churn: ModelRegistry, skops_file: Path, pickle_file: Path,
        folders: tuple[Path, Path]) -> None:
    _, production = folders
    link = production / "churn"
    churn.promote("churn", "1.0.0", "production", override=OVERRIDE)
    assert [(d.version, d.changed) for d in materialize(churn.context)] == [("1.0.0", True)]
    manager = RolloutManager(churn)
    manager.deploy("churn", "1.1.0", "production", strategy="full", override=OVERRIDE)

    done = materialize(churn.context)

    assert done == [Materialized("churn", "production", "1.1.0", link, True, "1.0.0")]
    assert (link / "model.pkl").read_bytes() == pickle_file.read_bytes()
    assert not (link / "model.skops").exists()
    # the previous version stays on disk for a rollback, nothing older
    assert sorted(p.name for p in (production / ".versions" / "churn").iterdir()) == \
        ["1.0.0", "1.1.0"]

    # a reader that resolves the link once always sees one whole version, and the link
    # never disappears, while the served version flips back and forth
    expected = {sha(skops_file), sha(pickle_file)}
    seen: set[str] = set()
    problems: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            if not os.path.lexists(link):
                problems.append("link missing")
                continue
            real = Path(os.path.realpath(link))
            try:
                meta = json.loads((real / MANIFEST).read_text())
                entry = meta["files"][0]
                digest = sha(real / entry["name"])
            except (OSError, ValueError) as exc:
                problems.append(repr(exc))
                continue
            if digest != entry["sha256"] or digest not in expected:
                problems.append(f"{real}: {digest}")
            seen.add(meta["version"])

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(12):
            target = "1.0.0" if i % 2 == 0 else "1.1.0"
            manager.rollback("churn", "production", to=target)
            assert [d.version for d in materialize(churn.context)] == [target]
    finally:
        stop.set()
        thread.join()
    assert problems == []
    assert seen == {"1.0.0", "1.1.0"}


def test_a_second_call_changes_nothing(churn: ModelRegistry,
                                       folders: tuple[Path, Path]) -> None:
    staging, _ = folders
    churn.promote("churn", "1.0.0", "staging")
    churn.promote("churn", "1.1.0", "production", override=OVERRIDE)
    first = materialize(churn.context)
    assert {(d.environment, d.version, d.changed) for d in first} == \
        {("staging", "1.0.0", True), ("production", "1.1.0", True)}
    before = snapshot(staging.parent)

    second = materialize(churn.context)

    assert {(d.environment, d.version, d.changed, d.previous) for d in second} == \
        {("staging", "1.0.0", False, "1.0.0"), ("production", "1.1.0", False, "1.1.0")}
    assert snapshot(staging.parent) == before  # same inodes, same mtimes, same links


def test_a_model_no_longer_served_loses_its_link(churn: ModelRegistry,
                                                 folders: tuple[Path, Path]) -> None:
    staging, _ = folders
    churn.promote("churn", "1.0.0", "staging")
    materialize(churn.context)
    (staging / "notes.txt").write_text("mine")  # files that are not ours stay
    os.symlink("/tmp", staging / "elsewhere")
    churn.promote("churn", "1.0.0", "archived")

    done = materialize(churn.context)

    assert done == [Materialized("churn", "staging", None, staging / "churn", True, "1.0.0")]
    assert not os.path.lexists(staging / "churn")
    assert (staging / "notes.txt").read_text() == "mine"
    assert os.readlink(staging / "elsewhere") == "/tmp"
    # the last version served is kept (a quick way back), nothing else
    assert [p.name for p in (staging / ".versions" / "churn").iterdir()] == ["1.0.0"]
    assert materialize(churn.context) == []


def test_unset_paths_write_nothing(registry: ModelRegistry, skops_file: Path,
                                   tmp_path: Path) -> None:
    registry.register("churn", skops_file)
    registry.promote("churn", "1.0.0", "staging")
    before = sorted(p.name for p in tmp_path.iterdir())

    assert model_paths(registry.settings) == {}
    assert materialize(registry.context) == []
    Controller(registry).run_once()

    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_the_variables_and_the_seed_readme_names(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("STAGING_MODEL_PATH", "PRODUCTION_MODEL_PATH"):
        monkeypatch.delenv(key, raising=False)
    assert (Settings().staging_model_path, Settings().production_model_path) == (None, None)
    # the seed README's names, relative to the working directory (tmp_path here)
    monkeypatch.setenv("STAGING_MODEL_PATH", "models/staging")
    monkeypatch.setenv("PRODUCTION_MODEL_PATH", "models/production")
    s = Settings()
    assert s.staging_model_path == tmp_path / "models" / "staging"
    assert s.production_model_path == tmp_path / "models" / "production"
    assert model_paths(s) == {"staging": tmp_path / "models" / "staging",
                              "production": tmp_path / "models" / "production"}
    # the MLOPS_ names win; an empty value means unset
    monkeypatch.setenv("MLOPS_STAGING_MODEL_PATH", str(tmp_path / "mine"))
    monkeypatch.setenv("MLOPS_PRODUCTION_MODEL_PATH", "")
    s = Settings()
    assert s.staging_model_path == tmp_path / "mine"
    assert s.production_model_path is None
    # mlops.toml too, under the environment
    monkeypatch.delenv("MLOPS_STAGING_MODEL_PATH")
    monkeypatch.delenv("MLOPS_PRODUCTION_MODEL_PATH")
    monkeypatch.delenv("PRODUCTION_MODEL_PATH")
    (tmp_path / "mlops.toml").write_text('[mlops]\nproduction_model_path = "out/prod"\n')
    assert Settings().production_model_path == tmp_path / "out" / "prod"
    # one folder for both environments is refused
    monkeypatch.setenv("MLOPS_PRODUCTION_MODEL_PATH", "models/staging")
    with pytest.raises(ConfigError, match="same folder") as info:
        model_paths(Settings())
    assert info.value.fix


@pytest.mark.parametrize("name", ["..", ".versions"])
def test_a_hostile_model_name_is_refused_and_the_others_are_served(
        churn: ModelRegistry, skops_file: Path, folders: tuple[Path, Path], tmp_path: Path,
        name: str) -> None:
    staging, _ = folders
    with pytest.raises(RegistryError):
        churn.register(name, skops_file)  # the registry refuses it today ...
    churn.register("legacy", skops_file)
    churn.promote("legacy", "1.0.0", "staging")
    with churn.store.write() as s:  # ... but a store written by an older version may hold it
        s.execute(update(ModelRow).where(ModelRow.name == "legacy").values(name=name))
    churn.promote("churn", "1.0.0", "staging")

    with pytest.raises(MaterializeError) as info:
        materialize(churn.context)

    error = info.value
    assert isinstance(error, DeploymentError)
    assert [(m, env) for m, env, _ in error.failures] == [(name, "staging")]
    assert error.fix and "plain name" in error.fix
    assert [(d.model, d.version) for d in error.results] == [("churn", "1.0.0")]
    assert sorted(p.name for p in staging.iterdir()) == [".lock", ".versions", "churn"]
    assert sorted(p.name for p in (staging / ".versions").iterdir()) == ["churn"]
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["production", "staging"]


def test_a_corrupted_artifact_or_a_foreign_folder_is_not_served(
        churn: ModelRegistry, folders: tuple[Path, Path]) -> None:
    staging, production = folders
    churn.promote("churn", "1.0.0", "staging")
    churn.promote("churn", "1.1.0", "production", override=OVERRIDE)
    blob = Path(churn.artifacts.uri_for(churn.get_version("churn", "1.1.0").artifact_digest))
    blob.chmod(0o644)
    blob.write_bytes(b"tampered")
    (staging / "churn").mkdir(parents=True)  # somebody's own folder where the link goes

    with pytest.raises(MaterializeError) as info:
        materialize(churn.context)

    kinds = {env: type(exc) for _, env, exc in info.value.failures}
    assert kinds == {"staging": DeploymentError, "production": ArtifactCorrupted}
    assert (staging / "churn").is_dir() and not (staging / "churn").is_symlink()
    assert not os.path.lexists(production / "churn")
    assert list((production / ".versions").rglob("*.pkl")) == []


def test_the_controller_materialises_and_keeps_going(
        churn: ModelRegistry, folders: tuple[Path, Path],
        caplog: pytest.LogCaptureFixture) -> None:
    staging, _ = folders
    churn.promote("churn", "1.0.0", "staging")
    controller = Controller(churn, holder="test")
    controller.run_once()
    assert os.readlink(staging / "churn") == ".versions/churn/1.0.0"

    churn.register("legacy", staging / "churn" / "model.skops")
    churn.promote("legacy", "1.0.0", "staging")
    with churn.store.write() as s:  # a name an older version of the registry accepted
        s.execute(update(ModelRow).where(ModelRow.name == "legacy").values(name=".."))
    churn.promote("churn", "1.1.0", "staging")
    with caplog.at_level(logging.INFO, logger="mlops.deployment"):
        assert controller.run_once() == []  # no exception: the failure is logged
        controller.run_once()
    assert os.readlink(staging / "churn") == ".versions/churn/1.1.0"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "'..'" in warnings[0].getMessage()  # once, not every pass
    assert any("materialised churn 1.1.0" in r.getMessage() for r in caplog.records)
    controller.release()


def test_the_cli_materialises_after_a_promotion(tmp_path: Path, skops_file: Path) -> None:
    ModelRegistry().register("churn", skops_file)  # the store the CLI opens (MLOPS_HOME)
    env = {k: v for k, v in os.environ.items() if k.startswith(("MLOPS_", "PATH", "HOME"))}
    env |= {"STAGING_MODEL_PATH": "models/staging", "COLUMNS": "200"}

    r = subprocess.run([sys.executable, "-m", "mlops", "models", "promote", "churn", "1.0.0",
                        "staging"], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=120)

    assert r.returncode == 0, r.stderr
    assert "materialised churn 1.0.0 at models/staging/churn" in r.stdout
    assert (tmp_path / "models" / "staging" / "churn" / "model.skops").read_bytes() == \
        skops_file.read_bytes()
