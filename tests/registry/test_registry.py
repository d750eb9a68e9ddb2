from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from mlops.errors import (
    ArtifactCorrupted,
    DuplicateVersion,
    InvalidQuery,
    InvalidStage,
    InvalidVersion,
    ModelNotFound,
    RegistryError,
    StoreError,
    VersionNotFound,
)
from mlops.registry.service import ModelRegistry


def test_register_auto_bumps_patch_then_minor_and_major(registry: ModelRegistry,
                                                        skops_file: Path) -> None:
    assert registry.register("m", skops_file).version == "1.0.0"
    assert registry.register("m", skops_file).version == "1.0.1"
    assert registry.register("m", skops_file, bump="minor").version == "1.1.0"
    assert registry.register("m", skops_file, bump="major").version == "2.0.0"
    assert registry.register("m", skops_file, version="2.5.0").version == "2.5.0"
    assert registry.register("m", skops_file).version == "2.5.1"


def test_malformed_version_is_rejected_and_nothing_is_written(registry: ModelRegistry,
                                                             skops_file: Path) -> None:
    with pytest.raises(InvalidVersion) as err:
        registry.register("m", skops_file, version="1.0")
    assert err.value.model == "m"
    with pytest.raises(ModelNotFound):
        registry.get_model("m")
    assert registry.verify_audit().events == 0


def test_duplicate_version_is_rejected_with_the_next_free_one(registry: ModelRegistry,
                                                             skops_file: Path) -> None:
    registry.register("m", skops_file, version="1.0.0")
    with pytest.raises(DuplicateVersion) as err:
        registry.register("m", skops_file, version="1.0.0")
    assert "1.0.1" in str(err.value)
    assert err.value.version == "1.0.0"
    assert len(registry.list_versions("m")) == 1


def test_unknown_model_version_stage_and_alias_errors(registry: ModelRegistry,
                                                      skops_file: Path) -> None:
    with pytest.raises(ModelNotFound, match="nope"):
        registry.get_version("nope")
    registry.register("m", skops_file)
    with pytest.raises(VersionNotFound, match=r"9\.9\.9"):
        registry.get_version("m", "9.9.9")
    with pytest.raises(VersionNotFound, match="Production"):
        registry.get_version("m", stage="production")
    with pytest.raises(VersionNotFound, match="champion"):
        registry.get_version("m", alias="champion")
    with pytest.raises(InvalidStage):
        registry.promote("m", "1.0.0", "prod")


def test_a_nul_character_is_an_mlops_error_on_both_stores(registry: ModelRegistry,
                                                          skops_file: Path) -> None:
    """PostgreSQL refuses text with NUL characters, which SQLite would store: both stores
    refuse them alike (a 4xx over the API), and nothing is written."""
    with pytest.raises(StoreError, match="NUL"):
        registry.get_model("a\x00b")
    with pytest.raises((RegistryError, StoreError)):
        registry.register("a\x00b", skops_file)
    registry.register("m", skops_file)
    with pytest.raises(RegistryError, match="NUL"):
        registry.register("m", skops_file, description="bad\x00text")
    with pytest.raises(RegistryError, match="NUL"):
        registry.register("m", skops_file, tags={"team": "a\x00"})
    with pytest.raises(RegistryError, match="NUL"):
        registry.set_description("m", "bad\x00text")
    assert [v.version for v in registry.list_versions("m")] == ["1.0.0"]


def test_metadata_splits_into_metrics_tags_and_lineage(registry: ModelRegistry,
                                                       skops_file: Path, tmp_path: Path) -> None:
    data = tmp_path / "train.csv"
    data.write_text("a,b\n1,2\n")
    mv = registry.register("m", skops_file, metadata={
        "accuracy": 0.91, "training_data": str(data), "algorithm": "logreg",
        "params": {"C": 1.0}})
    assert mv.metrics == {"accuracy": 0.91}
    assert mv.tags == {"algorithm": "logreg"}
    assert mv.lineage.training_data == str(data)
    assert mv.lineage.training_data_sha256 is not None
    assert len(mv.lineage.training_data_sha256) == 64
    assert mv.lineage.params == {"C": 1.0}
    assert mv.metadata["algorithm"] == "logreg"


def test_lineage_records_git_commit_inside_a_repo(registry: ModelRegistry, skops_file: Path,
                                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                  ) -> None:
    import subprocess

    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    (repo / "train.py").write_text("print('x')\n")
    subprocess.run(["git", "add", "."], cwd=repo, check=True)
    subprocess.run(["git", "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "x"],
                   cwd=repo, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                          text=True, check=True).stdout.strip()
    monkeypatch.chdir(repo)
    mv = registry.register("m", skops_file)
    assert mv.lineage.git_commit == head
    assert mv.lineage.git_dirty is False


def test_parent_version_must_exist(registry: ModelRegistry, skops_file: Path) -> None:
    registry.register("m", skops_file)
    assert registry.register("m", skops_file, parent_version="1.0.0").lineage.parent_version \
        == "1.0.0"
    with pytest.raises(VersionNotFound):
        registry.register("m", skops_file, parent_version="7.0.0")


def test_signature_inferred_from_input_example(registry: ModelRegistry, skops_file: Path,
                                               table: tuple[pd.DataFrame, np.ndarray]) -> None:
    x, _ = table
    mv = registry.register("m", skops_file, input_example=x.head(10))
    assert mv.signature is not None
    assert [(c.name, c.dtype) for c in mv.signature.inputs] == [
        ("a", "float64"), ("b", "float64"), ("c", "float64"), ("d", "float64")]
    assert [c.name for c in mv.signature.outputs] == ["prediction", "probabilities"]
    assert mv.signature.outputs[0].dtype == "int64"
    assert mv.signature.classes == [0, 1]


def test_register_in_memory_model_prefers_skops(registry: ModelRegistry,
                                                logistic: LogisticRegression,
                                                table: tuple[pd.DataFrame, np.ndarray]) -> None:
    x, _ = table
    mv = registry.register("m", model=logistic, input_example=x.head(5))
    assert mv.format == "skops"
    loaded = registry.load_model("m")
    np.testing.assert_array_equal(loaded.predict(x), logistic.predict(x))


def test_promote_to_production_archives_previous(registry: ModelRegistry,
                                                 skops_file: Path) -> None:
    for _ in range(3):
        registry.register("m", skops_file)
    registry.promote("m", "1.0.0", "Production")
    registry.promote("m", "1.0.1", "staging")
    registry.promote("m", "1.0.1", "PRODUCTION")
    stages = {v.version: v.stage for v in registry.list_versions("m")}
    assert stages == {"1.0.0": "Archived", "1.0.1": "Production", "1.0.2": "None"}
    registry.promote("m", "1.0.2", "production", archive_existing=False)
    prod = [v.version for v in registry.list_versions("m") if v.stage == "Production"]
    assert prod == ["1.0.1", "1.0.2"]
    assert registry.get_version("m", stage="production").version == "1.0.2"
    event = registry.audit_log(action="version.stage", limit=5)[1]
    assert event.payload["archived"] == ["1.0.0"]


def test_alias_moves_atomically_and_resolves(registry: ModelRegistry, skops_file: Path) -> None:
    registry.register("m", skops_file)
    registry.register("m", skops_file)
    registry.set_alias("m", "champion", "1.0.0")
    assert registry.get_version("m", alias="champion").version == "1.0.0"
    registry.set_alias("m", "champion", "1.0.1")
    assert registry.get_version("m", "champion").version == "1.0.1"
    assert registry.get_version("m", "1.0.0").aliases == []
    assert registry.get_model("m").aliases == {"champion": "1.0.1"}
    moves = registry.audit_log(action="alias.set")
    assert moves[0].payload == {"alias": "champion", "from": "1.0.0", "to": "1.0.1"}
    registry.delete_alias("m", "champion")
    with pytest.raises(VersionNotFound):
        registry.get_version("m", alias="champion")


def test_tags_on_model_and_version(registry: ModelRegistry, skops_file: Path) -> None:
    registry.register("m", skops_file)
    registry.set_tag("m", "team", "risk")
    registry.set_tag("m", "dataset", "2026-11", version="1.0.0")
    assert registry.get_model("m").tags == {"team": "risk"}
    assert registry.get_version("m", "1.0.0").tags == {"dataset": "2026-11"}
    registry.delete_tag("m", "dataset", version="1.0.0")
    assert registry.get_version("m", "1.0.0").tags == {}
    with pytest.raises(RegistryError):
        registry.delete_tag("m", "dataset", version="1.0.0")


def test_search_filters(registry: ModelRegistry, skops_file: Path) -> None:
    registry.register("fraud", skops_file, metadata={"accuracy": 0.95, "team": "risk"})
    registry.register("fraud", skops_file, metadata={"accuracy": 0.85, "team": "risk"})
    registry.register("churn", skops_file, metadata={"accuracy": 0.92, "team": "growth"})
    registry.promote("fraud", "1.0.0", "production")
    registry.set_alias("churn", "champion", "1.0.0")

    def found(q: str) -> list[tuple[str, str]]:
        return [(v.model, v.version) for v in registry.search(q)]

    assert found("accuracy > 0.9") == [("churn", "1.0.0"), ("fraud", "1.0.0")]
    assert found("metrics.accuracy <= 0.85") == [("fraud", "1.0.1")]
    assert found("name = fraud") == [("fraud", "1.0.1"), ("fraud", "1.0.0")]
    assert found("name ~ fr*") == [("fraud", "1.0.1"), ("fraud", "1.0.0")]
    assert found("stage = production") == [("fraud", "1.0.0")]
    assert found("alias = champion") == [("churn", "1.0.0")]
    assert found("tags.team = risk and accuracy > 0.9") == [("fraud", "1.0.0")]
    assert found("tags.team != risk") == [("churn", "1.0.0")]
    assert found("stage = None and name = 'fraud'") == [("fraud", "1.0.1")]
    assert len(found("")) == 3
    assert found("accuracy > 0.99") == []


@pytest.mark.parametrize("bad", ["accuracy >", "accuracy > high", "stage > 1",
                                 "a = 1 or b = 2", "stage = prod", "tags.x > 3"])
def test_search_rejects_malformed_queries(registry: ModelRegistry, bad: str) -> None:
    with pytest.raises(RegistryError) as err:
        registry.search(bad)
    assert isinstance(err.value, InvalidQuery | InvalidStage)
    assert err.value.fix


def test_load_detects_corrupted_artifact(registry: ModelRegistry, skops_file: Path) -> None:
    mv = registry.register("m", skops_file)
    path = Path(registry.artifacts.uri_for(mv.artifact_digest))
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactCorrupted) as err:
        registry.load_model("m", "1.0.0")
    assert str(path) in str(err.value)


def test_every_state_change_is_audited(registry: ModelRegistry, skops_file: Path) -> None:
    registry.register("m", skops_file)
    registry.register("m", skops_file)
    registry.register("m", skops_file)
    registry.promote("m", "1.0.0", "production")
    registry.set_alias("m", "champion", "1.0.0")
    registry.set_tag("m", "k", "v")
    registry.log_metrics("m", "1.0.0", {"auc": 0.9})
    registry.setup_ab_test("m", "1.0.0", "1.0.1", 0.2)
    registry.delete_version("m", "1.0.2")
    actions = [e.action for e in reversed(registry.audit_log(limit=50))]
    assert actions == ["model.create", "version.register", "version.register",
                       "version.register", "version.stage", "alias.set", "tag.set",
                       "metrics.log", "abtest.setup", "version.delete"]
    assert all(e.actor == "tester" for e in registry.audit_log())
    assert registry.verify_audit().ok


def test_setup_ab_test_is_stored_for_the_deployment_layer(registry: ModelRegistry,
                                                          skops_file: Path) -> None:
    registry.register("m", skops_file)
    registry.register("m", skops_file, bump="minor")
    ab = registry.setup_ab_test("m", "1.0.0", "1.1.0", traffic_split=0.3)
    assert registry.active_ab_test("m") == ab
    assert len(ab.salt) == 16
    second = registry.setup_ab_test("m", "1.1.0", "1.0.0", traffic_split=0.5)
    assert registry.active_ab_test("m") == second
    with pytest.raises(RegistryError, match="traffic_split"):
        registry.setup_ab_test("m", "1.0.0", "1.1.0", traffic_split=1.5)
    with pytest.raises(VersionNotFound):
        registry.setup_ab_test("m", "1.0.0", "3.0.0")


def test_delete_model_removes_everything(registry: ModelRegistry, skops_file: Path) -> None:
    registry.register("m", skops_file, metadata={"acc": 1.0})
    registry.set_alias("m", "champion", "1.0.0")
    registry.delete_model("m")
    with pytest.raises(ModelNotFound):
        registry.get_model("m")
    assert registry.search("") == []
    assert registry.verify_audit().ok


def test_crash_inside_the_write_leaves_no_partial_version(registry: ModelRegistry,
                                                         skops_file: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    registry.register("m", skops_file)
    import mlops.registry.registration as registration

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("process died mid-write")

    monkeypatch.setattr(registration, "append_event", boom)
    with pytest.raises(RuntimeError):
        registry.register("m", skops_file, metadata={"accuracy": 0.5, "team": "x"})
    with pytest.raises(RuntimeError):
        registry.register("new_model", skops_file)
    monkeypatch.undo()
    assert [v.version for v in registry.list_versions("m")] == ["1.0.0"]
    assert registry.search("accuracy > 0") == []
    assert [m.name for m in registry.list_models()] == ["m"]
    assert registry.verify_audit().ok
    assert registry.register("m", skops_file).version == "1.0.1"


def test_version_in_active_ab_test_cannot_be_deleted(registry: ModelRegistry,
                                                     skops_file: Path) -> None:
    registry.register("m", skops_file)
    registry.register("m", skops_file)
    registry.setup_ab_test("m", "1.0.0", "1.0.1")
    with pytest.raises(RegistryError, match="A/B test"):
        registry.delete_version("m", "1.0.1")
    assert len(registry.list_versions("m")) == 2


def test_re_registering_repairs_a_corrupted_blob(registry: ModelRegistry,
                                                 skops_file: Path) -> None:
    mv = registry.register("m", skops_file)
    Path(registry.artifacts.uri_for(mv.artifact_digest)).write_bytes(b"rot")
    with pytest.raises(ArtifactCorrupted):
        registry.load_model("m")
    registry.register("m", skops_file)
    assert registry.load_model("m", "1.0.0").has_proba


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"metrics": {"x": "abc"}}, "must be a number"),
    ({"metrics": {"x": float("nan")}}, "finite"),
    ({"version": 3}, "must be text"),
    ({"version": "2.0.0+build.7"}, "build metadata"),
    ({"version": "1.0.99999999999"}, "too large"),
    ({"tags": {"long": "x" * 2000}}, "limit is 1024"),
])
def test_bad_register_arguments_are_registry_errors(registry: ModelRegistry, skops_file: Path,
                                                    kwargs: dict[str, object], match: str
                                                    ) -> None:
    with pytest.raises(RegistryError, match=match):
        registry.register("m", skops_file, **kwargs)  # type: ignore[arg-type]
    assert registry.verify_audit().events == 0


def test_params_with_arrays_and_nan_are_stored(registry: ModelRegistry, skops_file: Path) -> None:
    mv = registry.register("m", skops_file, params={"w": np.arange(3), "alpha": float("nan"),
                                                    "n": np.int64(5)})
    assert mv.lineage.params == {"w": [0, 1, 2], "alpha": None, "n": 5}


def test_bump_from_a_prerelease_finalises_it(registry: ModelRegistry, skops_file: Path) -> None:
    registry.register("m", skops_file, version="2.0.0-rc.1")
    assert registry.register("m", skops_file, bump="major").version == "2.0.0"


def test_search_matches_model_tags_and_stage_globs(registry: ModelRegistry,
                                                   skops_file: Path) -> None:
    registry.register("churn", skops_file)
    registry.register("other", skops_file)
    registry.set_tag("churn", "owner", "ana")
    registry.promote("churn", "1.0.0", "production")
    assert [v.model for v in registry.search("tags.owner = ana")] == ["churn"]
    assert [v.model for v in registry.search("tags.owner != ana")] == ["other"]
    assert [v.model for v in registry.search("stage ~ prod*")] == ["churn"]
    with pytest.raises(InvalidQuery):
        registry.search("name = >=")


@pytest.mark.parametrize("name", ["", " m", "a/b", "a\\b", ".", "..", ".hidden", "tab\there",
                                  "x" * 256])
def test_a_model_name_that_could_name_another_folder_is_refused(
        registry: ModelRegistry, skops_file: Path, name: str) -> None:
    with pytest.raises(RegistryError, match="not a valid model name"):
        registry.register(name, skops_file)
    assert registry.list_models() == []


def test_notable_versions_are_the_newest_the_staged_the_aliased_and_the_named(
        registry: ModelRegistry, skops_file: Path) -> None:
    for i in range(9):
        registry.register("m", skops_file, metadata={"accuracy": 0.5 + i / 100, "i": str(i)})
    registry.register("m", skops_file, version="1.1.0-rc.1")
    registry.register("other", skops_file)
    registry.promote("m", "1.0.0", "Production")
    registry.promote("m", "1.0.1", "Staging")
    registry.set_alias("m", "champion", "1.0.2")
    registry.promote("m", "1.0.3", "Archived")
    notable = registry.notable_versions(3, {"m": {"1.0.4"}})
    assert [v.version for v in notable["m"]] == ["1.0.0", "1.0.1", "1.0.2", "1.0.4", "1.0.7",
                                                 "1.0.8", "1.1.0-rc.1"]
    assert [v.version for v in notable["other"]] == ["1.0.0"]
    every = {v.version: v for v in registry.list_versions("m")}
    for mv in notable["m"]:  # read in bulk, the same as one by one
        assert mv == every[mv.version] == registry.get_version("m", mv.version)
    assert notable["m"][2].aliases == ["champion"]
    assert notable["m"][3].metrics == {"accuracy": 0.54} and notable["m"][3].tags == {"i": "4"}
    assert [v.version for v in registry.list_versions("m")][-3:] == ["1.0.7", "1.0.8",
                                                                     "1.1.0-rc.1"]
