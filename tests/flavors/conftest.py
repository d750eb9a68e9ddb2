"""Fixtures of the flavor tests: the real-model corpus, fitted once per session, and a
SQLite-only store.

These tests check what a model file may import and how it loads: the same on every metadata
backend, since the store only keeps the file's digest. They run on SQLite alone; the
registry, store and API tests cover PostgreSQL (a fresh PostgreSQL database per corpus
entry would double the suite's time for no new check).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.flavors.model_corpus import CorpusModel, build_corpus


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    yield f"sqlite:///{tmp_path / 'meta.db'}"


@pytest.fixture(scope="session")
def corpus() -> dict[str, CorpusModel]:
    """Every corpus model by name (see tests/flavors/model_corpus.py)."""
    return {cm.name: cm for cm in build_corpus()}
