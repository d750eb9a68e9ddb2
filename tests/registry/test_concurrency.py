"""Four processes register versions of the same model at once: distinct versions, no crash,
an intact audit chain; on SQLite and PostgreSQL."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

from mlops.config import Settings
from mlops.registry.service import ModelRegistry

PROCESSES = 4
PER_PROCESS = 5


def _worker(settings_json: str, model_file: str, barrier: object) -> list[str]:
    settings = Settings.model_validate_json(settings_json)
    registry = ModelRegistry(settings)
    barrier.wait()  # type: ignore[attr-defined]
    return [registry.register("shared", model_file).version for _ in range(PER_PROCESS)]


def test_concurrent_registration_yields_distinct_versions(settings: Settings,
                                                          skops_file: Path) -> None:
    ModelRegistry(settings)  # migrate once up front, like a running deployment would
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(PROCESSES)
        with ctx.Pool(PROCESSES) as pool:
            results = pool.starmap(_worker, [(settings.model_dump_json(), str(skops_file),
                                              barrier)] * PROCESSES)
    versions = [v for chunk in results for v in chunk]
    assert len(versions) == PROCESSES * PER_PROCESS
    assert len(set(versions)) == len(versions)
    registry = ModelRegistry(settings)
    stored = [v.version for v in registry.list_versions("shared")]
    assert sorted(stored) == sorted(versions)
    assert stored[0] == "1.0.0" and stored[-1] == f"1.0.{PROCESSES * PER_PROCESS - 1}"
    verified = registry.verify_audit()
    assert verified.ok
    assert verified.events == PROCESSES * PER_PROCESS + 1  # + model.create


def _migrating_worker(settings_json: str, barrier: object) -> int:
    settings = Settings.model_validate_json(settings_json)
    barrier.wait()  # type: ignore[attr-defined]
    return ModelRegistry(settings).count_versions()


def test_concurrent_first_start_migrates_once(settings: Settings) -> None:
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(PROCESSES)
        with ctx.Pool(PROCESSES) as pool:
            counts = pool.starmap(_migrating_worker,
                                  [(settings.model_dump_json(), barrier)] * PROCESSES)
    assert counts == [0] * PROCESSES
