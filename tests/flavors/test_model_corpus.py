"""Real models of every supported family keep working under the allow list.

Each corpus model (tests/flavors/model_corpus.py) is saved with pickle (highest protocol
and protocol 2), joblib (plain, zlib, xz) and skops (where skops can save it); each file
must scan safe and load back through the restricted loaders predicting exactly what the
original predicts. A false refusal is a failure.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlops.flavors.files import detect_format, load_bytes, safety_check
from mlops.registry.service import ModelRegistry
from tests.flavors.model_corpus import WRITERS, CorpusModel, corpus_names, saved_files

#: Models skops cannot save (it raises on them); they are covered by pickle and joblib.
NOT_SKOPS = {"birch", "frame_holder", "stats_holder"}


def _same_predictions(loaded: object, cm: CorpusModel) -> None:
    expected = np.asarray(cm.model.predict(cm.x))
    got = loaded.predict(cm.x)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(got, expected)
    if hasattr(cm.model, "predict_proba") and getattr(loaded, "has_proba", False):
        np.testing.assert_allclose(loaded.predict_proba(cm.x),  # type: ignore[attr-defined]
                                   cm.model.predict_proba(cm.x), rtol=1e-12, atol=0)


@pytest.mark.parametrize("writer", sorted(WRITERS))
@pytest.mark.parametrize("name", corpus_names())
def test_saved_model_scans_safe_and_predicts_the_same(
        name: str, writer: str, corpus: dict[str, CorpusModel]) -> None:
    cm = corpus[name]
    filename, write = WRITERS[writer]
    data = write(cm.model)
    if data is None:
        assert writer == "skops" and name in NOT_SKOPS, f"skops cannot save {name}"
        pytest.skip("skops cannot save this model")
    fmt = detect_format(filename, data)
    report = safety_check(fmt, data)
    assert report.safe, report.offending
    loaded, _ = load_bytes(data, filename)
    _same_predictions(loaded, cm)


def test_skops_saves_everything_but_the_known_few(corpus: dict[str, CorpusModel]) -> None:
    _, write = WRITERS["skops"]
    assert {name for name, cm in corpus.items() if write(cm.model) is None} == NOT_SKOPS


@pytest.mark.parametrize("name", ["column_transformer_pipeline", "hist_gradient_boosting",
                                  "xgb_classifier", "lgbm_regressor", "frame_holder"])
def test_registry_round_trip(name: str, corpus: dict[str, CorpusModel], registry: ModelRegistry,
                             tmp_path: Path) -> None:
    cm = corpus[name]
    for kind, (filename, data) in saved_files(cm.model).items():
        path = tmp_path / kind / filename
        path.parent.mkdir()
        path.write_bytes(data)
        mv = registry.register(f"{name.replace('_', '-')}-{kind}", path)
        assert not mv.trusted
        _same_predictions(registry.load_model(mv.model), cm)
    assert registry.audit_log(action="security.trust_override") == []
