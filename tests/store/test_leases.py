"""Leader election: one holder at a time (a PostgreSQL advisory lock, or a lease row on
SQLite), a dead leader replaced, a heartbeat that keeps a long pass's lease, and a fence
that refuses the writes of a pass that lost it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mlops.errors import LeaseLost
from mlops.registry.service import ModelRegistry
from mlops.store.db import MetadataStore
from mlops.store.dedicated import dedicated_connection
from mlops.store.leases import Lease, LeaseKind, current_leader, leader_loop
from mlops.store.schema import LeaseRow

REPO = Path(__file__).resolve().parents[2]


def wait_until(check: Callable[[], bool], timeout: float = 15.0, every: float = 0.05) -> float:
    """Seconds until ``check()`` held (fails the test after ``timeout``)."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"still false after {timeout} s")
        time.sleep(every)
    return time.monotonic() - start


def kill_leader(lease: Lease) -> None:
    """What the leader's crash looks like to everyone else: its advisory lock's session
    ends (terminated by the server), or its lease row expires."""
    if lease.kind is LeaseKind.ADVISORY:
        pid = lease.backend_pid
        assert pid is not None
        conn = dedicated_connection(lease.store, "test")
        try:
            conn.execute("SELECT pg_terminate_backend(%s)", [pid])
            wait_until(lambda: not conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = %s",
                [pid]).fetchone()[0])
        finally:
            conn.close()
        return
    with lease.store.write() as s:
        row = s.get(LeaseRow, lease.name)
        assert row is not None
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)


def _check(lease: Lease) -> None:
    with lease.store.write() as s:
        lease.check(s)


@pytest.fixture
def store(registry: ModelRegistry) -> MetadataStore:
    return registry.store


def test_the_lease_kind_follows_the_store(store: MetadataStore) -> None:
    lease = Lease(store, "kind")
    assert lease.kind is (LeaseKind.ADVISORY if store.dialect == "postgresql"
                          else LeaseKind.ROW)


def test_one_holder_at_a_time_and_a_dead_leader_is_replaced(store: MetadataStore) -> None:
    a, b = Lease(store, "one", holder="a"), Lease(store, "one", holder="b")
    try:
        assert a.acquire() and a.acquire()  # renewal
        assert not b.acquire()
        _check(a)
        kill_leader(a)
        assert b.acquire() and not a.acquire()
        with pytest.raises(LeaseLost) as lost:
            _check(a)
        assert lost.value.fix
        _check(b)
        b.release()  # a clean shutdown hands over at once
        assert a.acquire()
    finally:
        a.release()
        b.release()


def test_the_current_leader_is_named(store: MetadataStore) -> None:
    a, b = Lease(store, "named", holder="host-a:11"), Lease(store, "named", holder="host-b:22")
    try:
        assert current_leader(store, "named") is None
        assert a.acquire() and not b.acquire()
        assert current_leader(store, "named") == "host-a:11"
        a.release()
        assert b.acquire() and current_leader(store, "named") == "host-b:22"
        assert current_leader(store, "other") is None
    finally:
        a.release()
        b.release()


def test_a_heartbeat_keeps_the_lease_through_a_long_pass(store: MetadataStore) -> None:
    seconds = 0.6
    leader, rival = Lease(store, "beat", seconds=seconds, holder="a"), \
        Lease(store, "beat", seconds=seconds, holder="b")
    try:
        assert leader.acquire()
        with leader.heartbeat():
            end = time.monotonic() + 4 * seconds  # the pass outlasts the lease four times
            while time.monotonic() < end:
                assert not rival.acquire()
                time.sleep(0.05)
            _check(leader)  # still the leader: the pass may write
    finally:
        leader.release()
        rival.release()


def test_without_a_heartbeat_a_lease_row_expires_under_a_long_pass(registry: ModelRegistry
                                                                   ) -> None:
    if registry.store.dialect == "postgresql":
        pytest.skip("an advisory lock does not expire while its session lives")
    leader, rival = Lease(registry.store, "expire", seconds=0.3, holder="a"), \
        Lease(registry.store, "expire", seconds=0.3, holder="b")
    assert leader.acquire()
    wait_until(rival.acquire)  # the pass ran past its lease and nobody renewed it
    with pytest.raises(LeaseLost):
        _check(leader)


def test_the_heartbeat_notices_a_lost_lease(store: MetadataStore) -> None:
    leader, rival = Lease(store, "lost", seconds=0.6, holder="a"), \
        Lease(store, "lost", seconds=0.6, holder="b")
    try:
        assert leader.acquire()
        with leader.heartbeat():
            kill_leader(leader)
            if leader.kind is LeaseKind.ROW:
                assert rival.acquire()
            wait_until(lambda: not leader.held, timeout=5)
            with pytest.raises(LeaseLost):
                _check(leader)
    finally:
        leader.release()
        rival.release()


def test_leader_loop_renews_the_lease_while_a_pass_runs(store: MetadataStore) -> None:
    seconds = 0.6
    leader, rival = Lease(store, "loop", seconds=seconds, holder="a"), \
        Lease(store, "loop", seconds=seconds, holder="b")
    started, finished = threading.Event(), threading.Event()
    rival_won: list[bool] = []

    def long_pass() -> list[str]:
        if not leader.acquire():
            return []
        started.set()
        time.sleep(4 * seconds)
        _check(leader)  # the pass's write would be accepted
        finished.set()
        return ["done"]

    async def main() -> None:
        task = asyncio.create_task(leader_loop("test", leader, 60.0, long_pass,
                                               lambda _: None))
        await asyncio.to_thread(started.wait, 10)
        while not finished.is_set():
            rival_won.append(await asyncio.to_thread(rival.acquire))
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    try:
        asyncio.run(main())
        assert rival_won and not any(rival_won)
        assert rival.acquire()  # the loop handed the lease over when it stopped
    finally:
        rival.release()
        leader.release()


_HOLD = """
import sys, time
from mlops.store.db import MetadataStore
from mlops.store.leases import Lease
lease = Lease(MetadataStore(sys.argv[1]), "crash", seconds=float(sys.argv[2]), holder="child")
assert lease.acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_a_leader_killed_with_sigkill_is_replaced(store: MetadataStore) -> None:
    seconds = 2.0
    child = subprocess.Popen([sys.executable, "-c", _HOLD, store.url, str(seconds)],
                             stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)})
    ours = Lease(store, "crash", seconds=seconds, holder="parent")
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == b"held"
        assert not ours.acquire()
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        took = wait_until(ours.acquire, timeout=seconds + 10)
        # the server ends a dead client's session at once; a lease row waits for its expiry
        assert took < (2.0 if ours.kind is LeaseKind.ADVISORY else seconds + 1.0)
    finally:
        if child.poll() is None:
            child.kill()
        ours.release()
