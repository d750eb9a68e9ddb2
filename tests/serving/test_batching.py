"""Adaptive batching gathers concurrent requests and gives the unbatched answers."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlops.registry.service import ModelRegistry
from mlops.serving.batching import Batcher, predict_columns, quiet_name_check
from mlops.serving.codecs import Columns, Schema
from mlops.serving.routing import ServedModel
from tests.serving.conftest import FEATURES, Server

Data = tuple[pd.DataFrame, np.ndarray]


@pytest.fixture(autouse=True)
def _as_the_gateway() -> None:
    """The gateway silences scikit-learn's missing-names warning (pytest restores the
    filters after each test)."""
    quiet_name_check()


def _columns(x: pd.DataFrame) -> Columns:
    return Columns(list(FEATURES), {c: x[c].to_numpy() for c in FEATURES}, len(x))


def test_batched_predictions_equal_unbatched(served_store: tuple[Path, ModelRegistry],
                                             data: Data) -> None:
    _, registry = served_store
    x, _ = data
    model = registry.load_model("clf", "1.0.0")
    served = ServedModel("clf", "1.0.0", model, Schema(None))
    sizes: list[int] = []
    batcher = Batcher(max_batch=32, max_wait_us=2000, on_batch=lambda s, n: sizes.append(n))

    async def run() -> list[Any]:
        rows = [x.iloc[[i]] for i in range(100)]
        for _ in rows:
            batcher.decoding(served, 1)
        tasks = []
        for r in rows:
            batcher.decoding(served, -1)
            tasks.append(asyncio.ensure_future(batcher.predict(served, _columns(r), True)))
        return await asyncio.gather(*tasks)

    results = asyncio.run(run())
    values = np.concatenate([r.values for r in results])
    proba = np.concatenate([r.proba for r in results])
    np.testing.assert_array_equal(values, model.predict(x.head(100)))
    np.testing.assert_allclose(proba, model.predict_proba(x.head(100)))
    assert max(sizes) > 1 and sum(sizes) == 100 and max(sizes) <= 32
    unbatched = predict_columns(served, _columns(x.head(100)), True)
    np.testing.assert_array_equal(unbatched.values, values)


def test_lone_request_is_not_delayed(served_store: tuple[Path, ModelRegistry],
                                     data: Data) -> None:
    _, registry = served_store
    x, _ = data
    served = ServedModel("clf", "1.0.0", registry.load_model("clf", "1.0.0"), Schema(None))
    batcher = Batcher(max_batch=64, max_wait_us=500_000)  # half a second, if it waited

    async def one() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await batcher.predict(served, _columns(x.head(1)), False)
        return loop.time() - start

    assert asyncio.run(one()) < 0.1


def test_concurrent_http_requests_are_batched_and_correct(server: Server, data: Data,
                                                          local_model: Any) -> None:
    x, _ = data

    def call(i: int) -> list[int]:
        import httpx

        r = httpx.post(server.url + "/v1/models/clf:predict",
                       json={"instances": [x.iloc[i].tolist()]})
        assert r.status_code == 200
        return list(r.json()["predictions"])

    with ThreadPoolExecutor(16) as pool:
        got = [p[0] for p in pool.map(call, range(200))]
    assert got == local_model("1.0.0").predict(x.head(200)).tolist()
    import httpx

    families = {f.name: f for f in text_string_to_metric_families(
        httpx.get(server.url + "/metrics").text)}
    counts = {s.labels.get("le"): s.value for s in families["mlops_batch_size"].samples
              if s.name.endswith("_bucket")}
    assert counts["1.0"] < counts["+Inf"]  # some predict calls carried more than one row


def test_batching_opt_out_predicts_each_request_alone(served_store: tuple[Path, ModelRegistry],
                                                      data: Data) -> None:
    _, registry = served_store
    x, _ = data
    model = registry.load_model("clf", "1.0.0")
    served = ServedModel("clf", "1.0.0", model, Schema(None), batching=False)
    sizes: list[int] = []
    batcher = Batcher(max_batch=32, max_wait_us=2000, on_batch=lambda s, n: sizes.append(n))

    async def run() -> list[Any]:
        return await asyncio.gather(*[batcher.predict(served, _columns(x.iloc[[i]]), False)
                                      for i in range(20)])

    results = asyncio.run(run())
    assert sizes == [1] * 20
    np.testing.assert_array_equal(np.concatenate([r.values for r in results]),
                                  model.predict(x.head(20)))


def test_deployment_config_turns_batching_off(served_store: tuple[Path, ModelRegistry]) -> None:
    from mlops.deployment.routes import RoutingService
    from mlops.serving.routing import RouteTable

    _, registry = served_store
    writer = RoutingService(registry)
    writer.set_route("clf", "staging", stable="1.0.0", config={"batching_opt_out": True})
    try:
        table = RouteTable(registry.context, "staging")
        table.refresh(force=True)
        assert table.route("clf").stable.batching is False
    finally:
        writer.clear_route("clf", "staging")


def _recording_model(wants_frame: bool, array_ok: bool, columns: list[str]
                     ) -> tuple[ServedModel, list[Any]]:
    from mlops.flavors.base import LoadedModel

    seen: list[Any] = []

    def predict(x: Any) -> np.ndarray:
        seen.append(x)
        return np.zeros(len(x))

    model = LoadedModel("sklearn", None, predict, input_columns=columns,
                        wants_frame=wants_frame, array_ok=array_ok)
    return ServedModel("m", "1", model, Schema(None)), seen


def test_a_model_that_only_checks_names_is_handed_an_array() -> None:
    block = np.arange(6, dtype=np.float64).reshape(2, 3)
    served, seen = _recording_model(True, True, ["a", "b", "c"])
    predict_columns(served, Columns.from_dense(["a", "b", "c"], block), False)
    predict_columns(served, Columns(["a", "b", "c"], {c: block[:, j] for j, c in
                                                       enumerate("abc")}, 2), False)
    assert [type(x) for x in seen] == [np.ndarray, np.ndarray]
    np.testing.assert_array_equal(seen[0], block)
    np.testing.assert_array_equal(seen[1], block)


def test_names_in_another_order_or_a_name_reading_model_get_a_frame() -> None:
    block = np.arange(6, dtype=np.float64).reshape(2, 3)
    served, seen = _recording_model(True, True, ["c", "b", "a"])
    predict_columns(served, Columns.from_dense(["a", "b", "c"], block), False)
    reader, read = _recording_model(True, False, ["a", "b", "c"])
    predict_columns(reader, Columns.from_dense(["a", "b", "c"], block), False)
    for x in (*seen, *read):
        assert isinstance(x, pd.DataFrame)
    assert list(seen[0].columns) == ["c", "b", "a"]  # by name, in the model's own order
    assert list(read[0].columns) == ["a", "b", "c"]


def test_dense_columns_make_their_views_on_demand() -> None:
    block = np.array([[1.0, 2.0], [3.0, 4.0]])
    cols = Columns.from_dense(["x", "y"], block)
    assert cols.value("y", 1) == 4.0 and cols.value("z") is None and cols.value("x", 5) is None
    np.testing.assert_array_equal(cols.data["x"], [1.0, 3.0])
    assert cols.block() is block  # the log takes the block itself: no copy, no rows
    mixed = Columns(["x", "s"], {"x": np.array([1, 2]), "s": np.array(["a", "b"])}, 2)
    assert mixed.block() == {"x": [1, 2], "s": ["a", "b"]}


def test_a_slow_model_waits_briefly_for_the_callers_it_just_answered() -> None:
    """Closed-loop callers that take a moment to send their next row: without a refill
    wait the batches alternate between a straggler alone and everyone else; with it, the
    stragglers join and each predict call serves (nearly) every caller."""
    import time as clock

    from mlops.flavors.base import LoadedModel

    def slow(x: Any) -> np.ndarray:
        clock.sleep(0.02)  # a 20 ms forest; releases the GIL like native code does
        return np.zeros(len(x))

    model = LoadedModel("sklearn", None, slow, input_columns=["a"])
    served = ServedModel("slow", "1", model, Schema(None))

    def mean_batch(refill_ms: float) -> float:
        sizes: list[int] = []
        batcher = Batcher(max_batch=64, max_wait_us=500, max_refill_ms=refill_ms,
                          on_batch=lambda s, n: sizes.append(n), inline_limit_ms=0.0)

        async def caller(i: int) -> None:
            await asyncio.sleep(0.001 * i)  # callers start (and then answer) staggered
            for _ in range(6):
                await batcher.predict(served, Columns.from_dense(["a"], np.ones((1, 1))),
                                      False)
                await asyncio.sleep(0.001)  # the round trip before the caller's next row

        async def run() -> None:
            await asyncio.gather(*(caller(i) for i in range(8)))

        asyncio.run(run())
        batcher.close()
        assert sum(sizes) == 48
        return sum(sizes) / len(sizes)

    without, with_refill = mean_batch(0.0), mean_batch(5.0)
    assert with_refill >= 6 and with_refill > without + 1.5, (without, with_refill)
