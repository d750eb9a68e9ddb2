"""Short GIL turns while the prediction log's flush thread builds its columns.

The flush thread turns buffered requests into Arrow columns in Python: for a busy gateway
that is tens of milliseconds of GIL time every flush. CPython lets a thread keep the GIL
for its switch interval (5 ms) while another waits for it, so each request arriving during
a flush waited for one or more such turns of the flush thread (LR under load: p99 20-28 ms
with the log on, 4 ms with it off). :func:`short_turns` lowers the interval to
:data:`SHORT_TURN` seconds for the duration of that work only, then puts the previous value
back: p99 10.9 ms against 25.2 ms in the same sitting, at the same throughput. The interval
stays at its default otherwise: lowered for good, it cost gRPC 2-5% of its throughput
(``grpc.aio``'s poller thread takes turns with the event loop too). See ``bench/RESULTS.md``.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator

__all__ = ["SHORT_TURN", "short_turns"]

#: the switch interval while the flush thread builds columns, in seconds
SHORT_TURN = 0.0005


class _Turns:
    """Nested and concurrent users (several logs in one process) share one lowering: the
    first sets it, the last puts the previous interval back."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._saved = 0.0

    @contextlib.contextmanager
    def short(self) -> Iterator[None]:
        with self._lock:
            if self._users == 0:
                self._saved = sys.getswitchinterval()
                sys.setswitchinterval(min(self._saved, SHORT_TURN))
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0:
                    sys.setswitchinterval(self._saved)


_TURNS = _Turns()


def short_turns() -> contextlib.AbstractContextManager[None]:
    """A context in which a thread waiting for the GIL gets it after :data:`SHORT_TURN`
    seconds, instead of the process's switch interval."""
    return _TURNS.short()
