"""The helper process's loop (``python -m mlops.store.predlog.helper_main``): it writes the
spool segments its writer hands over (protocol: :mod:`~mlops.store.predlog.helper`)."""

from __future__ import annotations

import gc
import logging
import sys
from pathlib import Path

import orjson

from mlops.store.predlog.writer import PredictionLog

__all__ = ["serve"]


def serve() -> int:
    """Answer each segment handed over on standard input until it closes."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    first = sys.stdin.buffer.readline()
    if not first:
        return 0
    store = orjson.loads(first)
    log = PredictionLog(store["uri"], spool=store["spool"],
                        storage_options=store.get("storage_options") or None)
    # a segment makes tens of thousands of short-lived lists: collected once per segment
    # instead of by generation thresholds that would walk them (and the imports) many times
    gc.freeze()
    gc.disable()
    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        path = ""
        try:
            doc = orjson.loads(line)
            path = str(doc["path"])
            written, dropped, error = log.write_segment(Path(path),
                                                        check_written=bool(doc["check"]))
        except Exception as exc:  # answer anyway: the writer counts on it
            written, dropped, error = 0, 0, exc
        gc.collect()
        try:
            out.write(orjson.dumps({"path": path, "written": written, "dropped": dropped,
                                    "error": None if error is None
                                    else f"{type(error).__name__}: {error}"}) + b"\n")
            out.flush()
        except BrokenPipeError:  # the writer is gone; what is left stays in the spool
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(serve())
