"""The ids the gateway remembers for matching feedback: the newest ones, bounded."""

from __future__ import annotations

from mlops.serving.gateway import RecentIds


def test_the_newest_ids_are_remembered_and_the_oldest_forgotten() -> None:
    ids = RecentIds(3)
    for i in range(7):
        ids.add(f"r{i}")
    # generations of 3: r0-r2 were dropped when r3-r5 filled theirs; r6 starts a new one
    assert [f"r{i}" in ids for i in range(7)] == [False, False, False, True, True, True, True]
    assert len(ids) == 4


def test_at_least_one_generation_is_always_remembered() -> None:
    ids = RecentIds(1000)
    for i in range(10_000):
        ids.add(str(i))
        assert str(i) in ids and len(ids) <= 2000
    assert all(str(i) in ids for i in range(9000, 10_000))
