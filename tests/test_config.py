from __future__ import annotations

from pathlib import Path

import pytest

from mlops.config import Settings, get_settings
from mlops.errors import ConfigError


@pytest.mark.default_store  # the defaults, with no MLOPS_DATABASE_URL
def test_defaults_live_under_mlops_home(tmp_path: Path) -> None:
    s = get_settings()
    assert s.home == (tmp_path / ".mlops").resolve()
    assert s.database_url == f"sqlite:///{s.home / 'mlops.db'}"
    assert s.artifacts_uri == str(s.home / "artifacts")
    assert s.actor == "tester"


def test_toml_is_read_and_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    (tmp_path / "mlops.toml").write_text(
        '[mlops]\nartifacts_uri = "memory://x"\nactor = "from-toml"\n')
    assert get_settings().artifacts_uri == "memory://x"
    assert get_settings().actor == "tester"  # MLOPS_ACTOR set by the test environment
    monkeypatch.setenv("MLOPS_ARTIFACTS_URI", "/data/artifacts")
    assert get_settings().artifacts_uri == "/data/artifacts"


def test_broken_toml_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "mlops.toml").write_text("[mlops\nhome = ")
    with pytest.raises(ConfigError, match=r"mlops\.toml"):
        get_settings()


def test_the_seed_registry_path_locates_the_store_when_mlops_home_is_unset(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLOPS_HOME", raising=False)
    monkeypatch.setenv("MODEL_REGISTRY_PATH", str(tmp_path / "model_registry"))
    assert Settings().home == (tmp_path / "model_registry").resolve()
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "mine"))  # the mlops variable wins
    assert Settings().home == (tmp_path / "mine").resolve()
