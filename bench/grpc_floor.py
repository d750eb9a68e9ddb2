"""Raw gRPC floor for ``bench/serving.py``: the least a Python ``grpc.aio`` server can do
per Open Inference Protocol ``ModelInfer`` call, as :mod:`floor_app` is for HTTP.

A ``grpc.aio`` server on uvloop (as the gateway and MLServer run it) with the generated
KServe stubs: ``ModelReady`` says yes; ``ModelInfer`` reads the first input's raw bytes as
float64, reshapes them, predicts with the plain array (no validation, routing, batching,
logging or metrics), and answers the labels raw. It checks nothing it does not need to, so
it is a floor to compare against, not a server to deploy.

Run: ``python bench/grpc_floor.py --port 8001 --model lr.joblib --name lr`` (from the
repository root, with .venv's Python: it imports the stubs shipped in ``mlops``).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import uvloop

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mlops.serving.grpc.proto import grpc_predict_v2_pb2 as pb  # noqa: E402
from mlops.serving.grpc.proto import grpc_predict_v2_pb2_grpc as pb_grpc  # noqa: E402


class Floor(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, model: Any, name: str) -> None:
        self.model, self.name = model, name

    async def ModelReady(self, request: Any, context: Any) -> Any:
        return pb.ModelReadyResponse(ready=request.name == self.name)

    async def ModelInfer(self, request: Any, context: Any) -> Any:
        shape = list(request.inputs[0].shape)
        x = np.frombuffer(request.raw_input_contents[0], dtype="<f8").reshape(shape)
        y = np.asarray(self.model.predict(x), dtype="<i8")
        response = pb.ModelInferResponse(model_name=self.name, id=request.id,
                                         raw_output_contents=[y.tobytes()])
        response.outputs.add(name="predict", datatype="INT64", shape=list(y.shape))
        return response


async def serve(port: int, model_path: str, name: str) -> None:
    import joblib

    # fitted on named columns: scikit-learn warns on every bare array
    warnings.filterwarnings("ignore", message="X does not have valid feature names")
    server = grpc.aio.server()
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(Floor(joblib.load(model_path), name),
                                                       server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", required=True, help="a joblib file of the estimator")
    parser.add_argument("--name", default="bench", help="the model name callers use")
    args = parser.parse_args()
    uvloop.run(serve(args.port, args.model, args.name))


if __name__ == "__main__":
    main()
