"""``kill -9`` of ``mlops serve`` under load loses no acknowledged prediction: every request
answered with HTTP 200 is in the log after a restart, exactly once."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from mlops.registry.service import ModelRegistry
from mlops.store.predlog import read_predictions
from tests.serving.conftest import start_server

CLIENTS = 16


def test_sigkill_under_load_then_restart_logs_every_acknowledged_request_once(
        served_store: tuple[Path, ModelRegistry], data: tuple[pd.DataFrame, np.ndarray]
        ) -> None:
    home, _ = served_store
    x, _ = data
    artifacts = str(home / "artifacts")
    before = set(read_predictions(artifacts, model="clf")["request_id"].to_pylist())
    srv = start_server(home)
    answered: list[list[str]] = [[] for _ in range(CLIENTS)]
    stop = threading.Event()

    def client(k: int) -> None:
        with httpx.Client(base_url=srv.url, timeout=10) as c:
            i = k
            while not stop.is_set():
                try:
                    r = c.post("/v1/models/clf:predict",
                               json={"instances": [x.iloc[i % len(x)].tolist()]})
                except httpx.HTTPError:
                    return  # the server is gone
                if r.status_code == 200:  # acknowledged
                    answered[k].append(r.headers["x-request-id"])
                i += CLIENTS

    threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
    for t in threads:
        t.start()
    time.sleep(3.0)
    srv.proc.send_signal(signal.SIGKILL)  # no shutdown hook, no final flush
    srv.proc.wait(30)
    stop.set()
    for t in threads:
        t.join(15)
    acked = {rid for ids in answered for rid in ids}
    assert len(acked) > 200 and srv.proc.returncode == -signal.SIGKILL
    flushed = set(read_predictions(artifacts, model="clf")["request_id"].to_pylist())
    assert acked - flushed, "nothing was waiting in the buffer: the kill proved nothing"

    again = start_server(home)  # claims the killed process's spool and writes it
    assert again.stop() in (0, -signal.SIGTERM)
    logged = Counter(r for r in read_predictions(artifacts, model="clf")["request_id"]
                     .to_pylist() if r not in before)
    missing = acked - set(logged)
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged predictions lost"
    twice = {r: n for r, n in logged.items() if n > 1}
    assert not twice, f"{len(twice)} predictions logged more than once"
    assert not list((home / "spool").glob("*.spool"))
