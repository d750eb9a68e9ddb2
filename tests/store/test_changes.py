"""Change notification: PostgreSQL LISTEN/NOTIFY (no query while nothing changes) and the
counter poll on SQLite; each committed change is reported, a rolled-back one never."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlops.config import Settings
from mlops.errors import ConfigError
from mlops.registry.service import ModelRegistry
from mlops.serving.routing import RouteTable
from mlops.store.changes import ChangeFeed, FeedKind
from mlops.store.context import Context
from mlops.store.counters import ROUTING, bump_counter
from mlops.store.db import MetadataStore
from mlops.store.dedicated import dedicated_connection
from tests.store.test_leases import wait_until


@pytest.fixture
def store(registry: ModelRegistry) -> MetadataStore:
    return registry.store


@pytest.fixture
def feed(store: MetadataStore) -> Iterator[ChangeFeed]:
    found = ChangeFeed(store, ROUTING, poll_seconds=0.05)
    yield found
    found.close()


def _bump(store: MetadataStore) -> None:
    with store.write() as s:
        bump_counter(s, ROUTING)


def test_the_feed_kind_follows_the_store(feed: ChangeFeed, store: MetadataStore) -> None:
    assert feed.kind is (FeedKind.LISTEN if store.dialect == "postgresql" else FeedKind.POLL)


def test_each_committed_change_is_reported_once(feed: ChangeFeed, store: MetadataStore
                                                ) -> None:
    assert feed.changed()  # nothing seen yet
    assert not feed.changed()
    _bump(store)
    started = time.monotonic()
    assert feed.wait(5.0)
    assert time.monotonic() - started < 1.0
    assert not feed.changed()
    _bump(store)
    _bump(store)
    # both commits are done; on PostgreSQL their notifications reach the listen socket
    # asynchronously: give them time to land, then they must read as one change
    time.sleep(0.3)
    assert feed.wait(5.0)  # a burst is one change
    assert not feed.wait(0.2)


def test_a_rolled_back_change_is_not_reported(feed: ChangeFeed, store: MetadataStore
                                              ) -> None:
    assert feed.changed()
    with pytest.raises(RuntimeError), store.write() as s:
        bump_counter(s, ROUTING)
        raise RuntimeError("the route write failed after the bump")
    assert not feed.wait(0.3)


def test_listening_on_postgresql_reads_nothing_while_idle(
        feed: ChangeFeed, store: MetadataStore, monkeypatch: pytest.MonkeyPatch) -> None:
    if feed.kind is not FeedKind.LISTEN:
        pytest.skip("SQLite polls the counter")
    writer = MetadataStore(store.url)  # another process's store object
    assert feed.changed()

    def no_query(*_: Any, **__: Any) -> Any:
        raise AssertionError("the feed queried the database")

    monkeypatch.setattr(store, "read", no_query)
    monkeypatch.setattr(store, "write", no_query)
    for _ in range(20):
        assert not feed.changed()
    assert not feed.wait(0.2)
    _bump(writer)
    assert wait_until(feed.changed, timeout=5) < 1.0


def test_a_broken_listen_connection_reports_a_change_and_listens_again(
        feed: ChangeFeed, store: MetadataStore) -> None:
    if feed.kind is not FeedKind.LISTEN:
        pytest.skip("SQLite polls the counter")
    assert feed.changed()
    listener = feed.backend_pid
    assert listener is not None
    admin = dedicated_connection(store, "test")
    try:
        admin.execute("SELECT pg_terminate_backend(%s)", [listener])
    finally:
        admin.close()
    wait_until(feed.changed, timeout=5)  # a change may have been missed: read again
    assert feed.backend_pid not in (None, listener)
    assert not feed.changed()
    _bump(store)
    assert feed.wait(5.0)


@pytest.mark.default_store  # the embedded SQLite store has no LISTEN
def test_the_feed_kind_follows_the_setting(tmp_path: Path) -> None:
    for feed in ("auto", "poll"):
        ctx = Context.open(Settings(home=tmp_path / feed, change_feed=feed))
        assert RouteTable(ctx, "production").changes.kind is FeedKind.POLL
    with pytest.raises(ConfigError, match="PostgreSQL"):
        RouteTable(Context.open(Settings(home=tmp_path / "l", change_feed="listen")),
                   "production")
