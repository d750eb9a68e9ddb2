"""Fixtures of the flavor tests: the real-model corpus, fitted once per session."""

from __future__ import annotations

import pytest

from tests.flavors.model_corpus import CorpusModel, build_corpus


@pytest.fixture(scope="session")
def corpus() -> dict[str, CorpusModel]:
    """Every corpus model by name (see tests/flavors/model_corpus.py)."""
    return {cm.name: cm for cm in build_corpus()}
