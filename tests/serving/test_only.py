"""``mlops serve --only NAME``: a gateway that serves (and loads) only the models it is
given, as each KServe InferenceService does; the others answer 404 naming what it serves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import skops.io as sio
from sklearn.linear_model import LinearRegression

from mlops.registry.service import ModelRegistry
from tests.serving.conftest import child_env, make_served_store, start_server

ROW = [0.1, 0.2, 0.3, 0.4, 0.5]


def _v2() -> dict[str, object]:
    return {"inputs": [{"name": "x", "shape": [1, 5], "datatype": "FP64", "data": ROW}]}


def test_only_serves_and_loads_the_named_model(tmp_path: Path,
                                               data: tuple[pd.DataFrame, np.ndarray]) -> None:
    home, registry = make_served_store(tmp_path, data)
    x, y = data
    path = tmp_path / "price.skops"
    sio.dump(LinearRegression().fit(x, y), path)
    registry.register("price", path, input_example=x.head(5))
    registry.promote("price", "1.0.0", "production")

    srv = start_server(home, "--only", "clf")
    try:
        with srv.client() as c:
            ok = c.post("/v2/models/clf/infer", json=_v2())
            assert ok.status_code == 200, ok.text
            other = c.post("/v2/models/price/infer", json=_v2())
            assert other.status_code == 404
            assert "serves only clf" in other.json()["error"]
            pinned = c.post("/v2/models/price/versions/1.0.0/infer", json=_v2())
            assert pinned.status_code == 404 and "serves only clf" in pinned.json()["error"]
            assert c.get("/v2/models/price/ready").status_code != 200
            # one model served: /invocations serves it without --model
            inv = c.post("/invocations", json={"instances": [ROW]})
            assert inv.status_code == 200 and inv.headers["x-model-version"] == "1.0.0"
            loaded = [line for line in c.get("/metrics").text.splitlines()
                      if line.startswith("mlops_model_loaded{")]
            assert loaded and all('model_name="clf"' in line for line in loaded), loaded
    finally:
        srv.stop()

    everything = start_server(home)  # without --only: both
    try:
        with everything.client() as c:
            assert c.post("/v2/models/price/infer", json=_v2()).status_code == 200
            assert c.post("/v2/models/clf/infer", json=_v2()).status_code == 200
    finally:
        everything.stop()


def test_only_refuses_a_model_flag_it_would_never_serve(
        served_store: tuple[Path, ModelRegistry]) -> None:
    home, _ = served_store
    for args, says in ((["--only", "clf", "--model", "price"], "--model price is not among"),
                       (["--only", "a/b"], "not a valid model name")):
        r = subprocess.run([sys.executable, "-m", "mlops", "serve", "--port", "1", *args],
                           env=child_env(MLOPS_HOME=str(home)), capture_output=True,
                           text=True, timeout=60)
        assert r.returncode != 0
        assert says in r.stdout + r.stderr, r.stdout + r.stderr
        assert "Traceback" not in r.stdout + r.stderr
