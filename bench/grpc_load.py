"""gRPC load generator for ``bench/serving.py``: wrk cannot speak gRPC.

Open Inference Protocol ``ModelInfer`` calls (KServe's proto, package ``inference``: the
generated stubs shipped in ``mlops/serving/grpc/proto/``, the service MLServer implements
too), one ``[1, F]`` FP64 tensor per call in ``raw_input_contents`` (little-endian, as
``tritonclient.grpc`` sends it), cycling through the rows of a ``.npy`` file.

Two modes, each printing one JSON line on stdout:

- ``--verify``: wait for ``ModelReady``, then send each row once and check the ``predict``
  output against ``--expected`` (a JSON list, one label per row); exit 1 on the first
  difference or error.
- otherwise, load: a closed loop with ``--concurrency`` calls in flight (wrk's connections)
  for ``--duration`` seconds on one channel (HTTP/2 streams on one connection, as gRPC
  clients do). Requests are serialised once up front and answers are not parsed, like wrk's
  pre-formatted requests. Reports calls per second that ended OK, p50/p99 latency over all
  completed calls, errors by status code, and the CPU this client used (in cores): Python
  and grpc.aio cost more per call than wrk's C loop, so on 2 cores the client takes more of
  the server's CPU than wrk does. Every server's gRPC form is measured with this same client.

Run with .venv's Python from the repository root (it imports ``mlops``'s generated stubs):
``python bench/grpc_load.py --port 8001 --model lr --rows rows.npy --duration 20``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mlops.serving.grpc.proto import grpc_predict_v2_pb2 as pb  # noqa: E402
from mlops.serving.grpc.proto import grpc_predict_v2_pb2_grpc as pb_grpc  # noqa: E402

METHOD = "/inference.GRPCInferenceService/ModelInfer"
_RAW = {"INT64": "<i8", "INT32": "<i4", "INT16": "<i2", "INT8": "i1", "UINT8": "u1",
        "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8", "FP64": "<f8", "FP32": "<f4",
        "BOOL": "?"}
_TYPED = {"INT64": "int64_contents", "INT32": "int_contents", "INT16": "int_contents",
          "INT8": "int_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
          "UINT32": "uint_contents", "UINT64": "uint64_contents", "FP64": "fp64_contents",
          "FP32": "fp32_contents", "BOOL": "bool_contents"}


def infer_request(model: str, row: np.ndarray) -> Any:
    x = np.ascontiguousarray(row, dtype="<f8").reshape(1, -1)
    tensor = pb.ModelInferRequest.InferInputTensor(name="input-0", datatype="FP64",
                                                   shape=list(x.shape))
    return pb.ModelInferRequest(model_name=model, inputs=[tensor],
                                raw_input_contents=[x.tobytes()])


def predictions(answer: Any) -> list[Any]:
    """The ``predict`` output of a ModelInferResponse, raw or typed."""
    for i, out in enumerate(answer.outputs):
        if out.name != "predict":
            continue
        if answer.raw_output_contents:
            return np.frombuffer(answer.raw_output_contents[i], _RAW[out.datatype]).tolist()
        return list(getattr(out.contents, _TYPED[out.datatype]))
    raise KeyError(f"no 'predict' output in {[o.name for o in answer.outputs]}")


async def verify(target: str, model: str, rows: np.ndarray, expected: list[Any],
                 ready_timeout: float) -> dict[str, Any]:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        deadline = time.monotonic() + ready_timeout
        last = "no answer"
        while True:
            try:
                ready = await stub.ModelReady(pb.ModelReadyRequest(name=model), timeout=2)
                if ready.ready:
                    break
                last = "ModelReady says not ready"
            except grpc.aio.AioRpcError as exc:
                last = f"{exc.code().name}: {exc.details()}"
            if time.monotonic() > deadline:
                raise RuntimeError(f"gRPC not ready after {ready_timeout:g}s ({last})")
            await asyncio.sleep(0.2)
        for i, (row, want) in enumerate(zip(rows, expected, strict=True)):
            try:
                answer = await stub.ModelInfer(infer_request(model, row), timeout=10)
            except grpc.aio.AioRpcError as exc:
                raise RuntimeError(f"row {i}: {exc.code().name}: {exc.details()}") from exc
            got = predictions(answer)
            if len(got) != 1 or got[0] != want:
                raise RuntimeError(f"row {i}: predicted {got!r}, the local model says "
                                   f"[{want!r}]")
    return {"verified": len(rows)}


async def load(target: str, model: str, rows: np.ndarray, duration: float,
               concurrency: int) -> dict[str, Any]:
    payloads = [infer_request(model, row).SerializeToString() for row in rows]
    n = len(payloads)
    counter = itertools.count(random.randrange(n))
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    ok = 0
    # no (de)serializers: bytes go out as built above and come back unparsed
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(METHOD)
        await channel.channel_ready()
        cpu0, start = time.process_time(), time.perf_counter()
        deadline = start + duration

        async def worker() -> None:
            nonlocal ok
            while True:
                t0 = time.perf_counter()
                if t0 >= deadline:
                    return
                try:
                    await call(payloads[next(counter) % n], timeout=10)
                    ok += 1
                except grpc.aio.AioRpcError as exc:
                    errors[exc.code().name] += 1
                latencies.append(time.perf_counter() - t0)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu0
    lat = np.asarray(latencies) * 1e3
    return {"requests": ok + sum(errors.values()), "ok": ok, "seconds": seconds,
            "rps": ok / seconds if seconds else 0.0,
            "p50_ms": float(np.percentile(lat, 50)) if len(lat) else None,
            "p99_ms": float(np.percentile(lat, 99)) if len(lat) else None,
            "errors": sum(errors.values()),
            "error_detail": ", ".join(f"{k} {v}" for k, v in errors.most_common()),
            "client_cores": cpu / seconds if seconds else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--rows", type=Path, required=True, help=".npy file, one row per call")
    parser.add_argument("--expected", type=Path, help="JSON list of labels (--verify)")
    parser.add_argument("--verify", action="store_true")
    parser.add_argument("--ready-timeout", type=float, default=30.0)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    rows = np.load(args.rows)
    target = f"{args.host}:{args.port}"
    try:
        if args.verify:
            if args.expected is None:
                parser.error("--verify needs --expected")
            expected = json.loads(args.expected.read_text())
            out = asyncio.run(verify(target, args.model, rows, expected, args.ready_timeout))
        else:
            out = asyncio.run(load(target, args.model, rows, args.duration, args.concurrency))
    except RuntimeError as exc:
        print(json.dumps({"error": str(exc)}))
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
