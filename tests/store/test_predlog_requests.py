"""The gateway's form of logging: a whole request with its arrays, rows made when written.

The oracle is the row-by-row form (one :class:`PredictionRecord` per row, its inputs the
JSON object of its columns): a request must be written as exactly those rows, whether it
is written from memory or replayed from the spool of a killed process.
"""

from __future__ import annotations

import math
import os
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mlops.store.predlog import (
    REQUEST_FIELDS,
    PredictionLog,
    PredictionRecord,
    read_predictions,
)
from mlops.store.predlog.records import (
    request_from_payload,
    request_payload,
    requests_table,
)
from mlops.store.predlog.spool import SUFFIX, read_segment
from tests.store.test_predlog_spool import run_until_killed

REPO = Path(__file__).resolve().parents[2]
TS = 1_715_949_000.0
NAMES = ["age", "income", "score"]


def request(request_id: str, inputs: Any, values: Any, proba: Any = None, *,
            names: list[str] | None = None, ts: float = TS, version: str = "1.0.0",
            unit_hash: str | None = None, propensity: float | None = None,
            cpu_ms: float | None = 0.02) -> tuple[Any, ...]:
    return (request_id, ts, "churn", version, "production", "stable", unit_hash,
            NAMES if names is None else names, inputs, values, proba, 1.5, 200, propensity,
            "alice", cpu_ms)


def oracle(req: tuple[Any, ...]) -> list[PredictionRecord]:
    """The rows the gateway logged one by one before requests were handed over whole."""
    fields = dict(zip(REQUEST_FIELDS, req, strict=True))
    names, inputs = fields["names"], fields["inputs"]
    if isinstance(inputs, dict):
        lists = {c: np.asarray(inputs[c]).tolist() if isinstance(inputs[c], np.ndarray)
                 else inputs[c] for c in names}
        n = len(next(iter(lists.values()))) if lists else len(fields["values"])
        rows = [{c: lists[c][i] for c in names} for i in range(n)]
    else:
        rows = [dict(zip(names, r, strict=True)) for r in np.asarray(inputs).tolist()]
    values = np.asarray(fields["values"]).tolist()
    proba = None if fields["proba"] is None else np.asarray(fields["proba"]).tolist()
    return [PredictionRecord(
        request_id=fields["request_id"], ts=fields["ts"], model=fields["model"],
        version=fields["version"], environment=fields["environment"], route=fields["route"],
        unit_hash=fields["unit_hash"], row=i,
        inputs=orjson.dumps(rows[i], option=orjson.OPT_SERIALIZE_NUMPY).decode(),
        prediction=orjson.dumps(v, option=orjson.OPT_SERIALIZE_NUMPY).decode(),
        prediction_num=float(v) if isinstance(v, int | float | np.number | np.bool_)
        else None,
        proba=proba[i] if proba is not None else None, latency_ms=fields["latency_ms"],
        status=fields["status"], propensity=fields["propensity"], caller=fields["caller"],
        cpu_ms=fields["cpu_ms"]) for i, v in enumerate(values)]


def rows_of(table: pa.Table) -> list[dict[str, Any]]:
    """Rows comparable with NaN (NaN != NaN): floats as their repr."""
    def plain(v: Any) -> Any:
        if isinstance(v, float):
            return repr(v)
        if isinstance(v, list):
            return [plain(x) for x in v]
        return v
    return sorted(({k: plain(v) for k, v in r.items()} for r in table.to_pylist()),
                  key=lambda r: (str(r["request_id"]), r["row"]))


def expected_table(reqs: list[tuple[Any, ...]]) -> pa.Table:
    from mlops.store.predlog.records import prediction_table
    return prediction_table([r for q in reqs for r in oracle(q)])


KINDS = [
    request("dense-one", np.array([[41.0, 5200.5, -0.0]]), np.array([1]),
            np.array([[0.25, 0.75]])),
    request("dense-three", np.array([[1.0, 2.0, 3.0], [np.nan, np.inf, 1e-300],
                                     [4.0, 5.0, 6.0]]), np.array([0, 1, 1]),
            np.array([[0.9, 0.1], [0.4, 0.6], [0.5, 0.5]]), unit_hash="ab" * 8,
            propensity=0.25),
    request("regression-nan", np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]),
            np.array([np.nan, 2.5]), cpu_ms=None),
    request("labels", np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]),
            np.array(["yes", "no"], dtype=object), np.array([[0.2, 0.8], [0.7, 0.3]])),
    request("mixed-columns", {"age": [41, None], "income": [1.5, 2.5],
                              "score": ["a", "b"]}, np.array([True, False])),
    request("failed", np.array([[1.0, 2.0, 3.0]]), np.full(1, None, dtype=object)),
    request("strided", np.arange(12.0).reshape(3, 4)[:, :3], np.array([1, 2, 3]),
            np.arange(6.0).reshape(2, 3).T),
    request("float32", np.array([[1.0, 2.0, 3.0]]), np.array([0.1], dtype=np.float32),
            np.array([[0.3, 0.7]], dtype=np.float32)),
    request("multi-output", np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]),
            np.array([[1.5, np.nan], [-np.inf, 2.0]])),
    request("dict-labels", np.array([[1.0, 2.0, 3.0]]),
            np.array([{"nonfinite": "x"}], dtype=object)),
    request("numpy-scalars", np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]),
            np.array([np.int64(3), np.float32(0.5)], dtype=object)),
]


def test_a_request_is_written_as_exactly_the_rows_logged_one_by_one() -> None:
    assert rows_of(requests_table(KINDS)) == rows_of(expected_table(KINDS))


def test_a_spooled_request_comes_back_as_the_same_rows() -> None:
    replayed = [request_from_payload(orjson.loads(request_payload(q))) for q in KINDS]
    assert rows_of(requests_table(replayed)) == rows_of(expected_table(KINDS))


def test_a_request_of_rows_and_predictions_that_disagree_is_refused() -> None:
    with pytest.raises(ValueError, match="input rows"):
        requests_table([request("short", np.array([[1.0, 2.0, 3.0]]), np.array([1, 0]))])
    with pytest.raises(ValueError):
        requests_table([request("narrow", np.array([[1.0, 2.0]]), np.array([1]))])
    with pytest.raises(ValueError, match="fields"):
        request_from_payload(["too", "short"])


@settings(max_examples=60, deadline=None)
@given(block=arrays(np.float64, st.tuples(st.integers(1, 4), st.just(3))),
       labels=st.lists(st.one_of(st.integers(-2**53, 2**53), st.floats(allow_nan=True),
                                 st.text(max_size=5), st.booleans(), st.none()),
                       min_size=4, max_size=4))
def test_any_request_round_trips_through_the_spool(block: np.ndarray, labels: list[Any]
                                                   ) -> None:
    values = np.array(labels[:len(block)], dtype=object)
    if all(isinstance(v, float) for v in values):
        values = values.astype(np.float64)
    req = request("r", block, values)
    replayed = request_from_payload(orjson.loads(request_payload(req)))
    assert rows_of(requests_table([replayed])) == rows_of(expected_table([req]))
    assert rows_of(requests_table([req])) == rows_of(expected_table([req]))


def test_the_log_writes_requests_and_records_side_by_side(tmp_path: Path) -> None:
    log = PredictionLog(str(tmp_path / "artifacts"), spool=tmp_path / "spool")
    for q in KINDS:
        assert log.log_request(q) == len(q[REQUEST_FIELDS.index("values")])
    records = [r for q in KINDS for r in oracle(q)]
    for r in records:
        r.request_id += "-as-record"
    assert log.log(records) == len(records)
    log.close()
    table = read_predictions(str(tmp_path / "artifacts")).select(
        expected_table(KINDS).column_names)
    as_record = pa.compute.ends_with(table["request_id"], "-as-record")
    assert rows_of(table.filter(pa.compute.invert(as_record))) == \
        rows_of(expected_table(KINDS))
    assert table.filter(as_record).num_rows == len(records)


def test_a_malformed_request_is_dropped_and_counted_and_the_others_written(
        tmp_path: Path) -> None:
    dropped: list[int] = []
    log = PredictionLog(str(tmp_path / "artifacts"), spool=False, on_drop=dropped.append)
    log.log_request(KINDS[0])
    log.log_request(request("bad", np.array([[1.0, 2.0, 3.0]] * 2), np.array([1, 0]),
                            np.array([[0.5, 0.5]])))  # one probability row for two rows
    log.log_request(KINDS[1])
    log.close()
    assert log.dropped == 2 and dropped == [2] and log.pending == 0
    ids = set(read_predictions(str(tmp_path / "artifacts"))["request_id"].to_pylist())
    assert ids == {"dense-one", "dense-three"}


def test_a_request_that_does_not_fit_the_buffer_is_dropped_whole(tmp_path: Path) -> None:
    log = PredictionLog(str(tmp_path / "artifacts"), spool=False, max_buffer=3)
    assert log.log_request(KINDS[1]) == 3
    assert log.log_request(KINDS[0]) == 0  # the buffer is full: none of its rows
    assert log.dropped == 1
    log.close()


def test_requests_of_a_killed_writer_are_written_once_by_the_next_start(
        tmp_path: Path) -> None:
    root, spool = tmp_path / "artifacts", tmp_path / "spool"
    code = textwrap.dedent(f"""
        import os, signal
        import numpy as np
        from mlops.store.predlog import PredictionLog
        log = PredictionLog({str(root)!r}, spool={str(spool)!r}, flush_seconds=3600,
                            flush_rows=10**9)
        log.start()
        for i in range(200):
            log.log_request((f"req-{{i}}", {TS} + i, "churn", "1.0.0" if i % 3 else "2.0.0",
                             "production", "stable", None, ["a", "b"],
                             np.array([[i * 0.5, -i]] * (1 + i % 2), dtype=float),
                             np.array([i % 2] * (1 + i % 2)), None, 2.0, 200, None, None,
                             None))
    """)
    run_until_killed(code)
    [segment] = spool.glob(f"*{SUFFIX}")
    assert len(read_segment(segment.read_bytes()).requests) == 200
    log = PredictionLog(str(root), spool=spool)
    log.start()
    log.close()
    assert log.replayed == 300  # 100 requests of one row, 100 of two
    table = read_predictions(str(root))
    assert table.num_rows == 300
    first = table.filter(pa.compute.equal(table["request_id"], "req-3")).to_pylist()
    assert [(r["row"], orjson.loads(r["inputs"]), r["prediction"]) for r in first] == \
        [(0, {"a": 1.5, "b": -3.0}, "1"), (1, {"a": 1.5, "b": -3.0}, "1")]
    assert not list(spool.glob(f"*{SUFFIX}"))
    again = PredictionLog(str(root), spool=spool)
    assert again.recover() == 0
    again.close()
    assert read_predictions(str(root)).num_rows == 300


def test_a_segment_of_the_earlier_format_is_still_replayed(tmp_path: Path) -> None:
    """Segments written before requests were spooled whole (format 2: rows only)."""
    import struct

    from mlops.store.predlog.spool import MAGIC

    root, spool = tmp_path / "artifacts", tmp_path / "spool"
    spool.mkdir()
    frame = struct.Struct("<IB")
    header = orjson.dumps({"format": 2, "uri": str(root), "pid": 1, "created": TS})
    rows = orjson.dumps([["old-1", TS, "churn", "1.0.0", "production", "stable", None, 0,
                          '{"a":1}', "1", 1.0, None, 2.0, 200, None, None, None]])
    data = MAGIC + frame.pack(len(header), 0) + header + frame.pack(len(rows), 1) + rows
    (spool / f"{'0' * 32}{SUFFIX}").write_bytes(data + bytes(64))
    log = PredictionLog(str(root), spool=spool)
    assert log.recover() == 1
    log.close()
    assert read_predictions(str(root))["request_id"].to_pylist() == ["old-1"]


def test_log_files_are_zstd_without_statistics_for_the_inputs(tmp_path: Path) -> None:
    log = PredictionLog(str(tmp_path / "artifacts"), spool=False)
    log.log_request(KINDS[1])
    log.close()
    [path] = (tmp_path / "artifacts").rglob("part-*.parquet")
    meta = pq.ParquetFile(path).metadata.row_group(0)
    columns = {meta.column(i).path_in_schema: meta.column(i) for i in range(meta.num_columns)}
    assert {c.compression for c in columns.values()} == {"ZSTD"}
    assert not columns["inputs"].is_stats_set
    assert columns["latency_ms"].is_stats_set
    assert math.isclose(columns["latency_ms"].statistics.min, 1.5)


def test_a_spooled_request_nested_too_deep_is_read_and_dropped_when_written(
        tmp_path: Path) -> None:
    """Predictions nested as deep as JSON allows (no writer makes them): the frame reads,
    the request is dropped and counted when its rows are made, the segment is consumed."""
    root, spool = tmp_path / "artifacts", tmp_path / "spool"
    deep = b"[" * 1000 + b"1" + b"]" * 1000
    body = b'["deep",1.0,"m","1","p","s",null,["a"],[[1.0]],' + deep + \
        b',null,1.0,200,null,null,null]'
    write_segment_file(spool, str(root), [(3, body), (3, request_payload(KINDS[0]))])
    log = PredictionLog(str(root), spool=spool)
    assert log.recover() == 2
    log.close()
    assert read_predictions(str(root))["request_id"].to_pylist() == ["dense-one"]
    assert log.dropped == 1 and log.pending == 0


def write_segment_file(spool: Path, uri: str, frames: list[tuple[int, bytes]],
                       fmt: Any = 3) -> Path:
    import struct

    from mlops.store.predlog.spool import MAGIC

    frame = struct.Struct("<IB")
    header = orjson.dumps({"format": fmt, "uri": uri, "pid": 1, "created": TS})
    data = MAGIC + frame.pack(len(header), 0) + header
    for kind, body in frames:
        data += frame.pack(len(body), kind) + body
    spool.mkdir(exist_ok=True)
    path = spool / f"{os.urandom(16).hex()}{SUFFIX}"
    path.write_bytes(data + bytes(64))
    return path


def test_hostile_spooled_frames_are_skipped_and_the_rest_written(tmp_path: Path) -> None:
    """Frames no writer makes (a model name that is a list, a mark that points nowhere,
    not JSON) are dropped and counted; the good frames around them are written."""
    root, spool = tmp_path / "artifacts", tmp_path / "spool"
    good = request_payload(KINDS[0])
    unhashable = orjson.loads(request_payload(KINDS[0]))
    unhashable[0], unhashable[2] = "bad-model", ["a", "list"]
    bad_mark = orjson.loads(request_payload(KINDS[0]))
    bad_mark[0], bad_mark[9] = "bad-mark", {"values": [1], "nonfinite": [[5, "nan"]]}
    write_segment_file(spool, str(root), [
        (3, good), (3, orjson.dumps(unhashable)), (3, orjson.dumps(bad_mark)),
        (3, b"not json"), (1, b"[[1, 2]]"), (3, good.replace(b"dense-one", b"dense-two"))])
    dropped: list[int] = []
    log = PredictionLog(str(root), spool=spool, on_drop=dropped.append)
    assert log.recover() == 3  # the two good requests and the unhashable one
    log.close()
    assert sorted(read_predictions(str(root))["request_id"].to_pylist()) == \
        ["dense-one", "dense-two"]
    assert log.dropped == 4 and sum(dropped) == 4 and log.pending == 0
    assert not list(spool.glob(f"*{SUFFIX}"))


def test_a_segment_whose_header_no_writer_makes_is_left_alone(tmp_path: Path) -> None:
    root, spool = tmp_path / "artifacts", tmp_path / "spool"
    odd = write_segment_file(spool, str(root), [(3, request_payload(KINDS[0]))],
                             fmt=["a", "list"])
    write_segment_file(spool, str(root), [(3, request_payload(KINDS[1]))])
    log = PredictionLog(str(root), spool=spool)
    assert log.recover() == 3
    log.close()
    assert set(read_predictions(str(root))["request_id"].to_pylist()) == {"dense-three"}
    assert list(spool.glob(f"*{SUFFIX}")) == [odd]  # not ours to write, not locked either
    again = PredictionLog(str(root), spool=spool)
    assert again.recover() == 0
    again.close()
