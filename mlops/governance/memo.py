"""Evidence read once per page: inside :func:`one_reading`, a model card, a cost report or
the audit chain's verification is built once for each set of arguments, however many
reports ask for it.

A page shows a model card and two compliance reports built from that same card; the
governance page adds the maturity score (the cards of the staged versions) and the impact
report. Each card reads the model's audit events and runs a cost report over the prediction
log, so without this a page read the same evidence three to five times (and replayed the
whole audit chain two or three times), and could show two readings taken a moment apart.
Outside the block nothing is kept: every call reads afresh.

>>> with one_reading():
...     pass
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Concatenate, ParamSpec, TypeVar

from mlops.registry.service import ModelRegistry
from mlops.store.audit import VerifyResult

__all__ = ["memoized", "one_reading", "verified_chain"]

P = ParamSpec("P")
R = TypeVar("R")

_READING: ContextVar[dict[tuple[Any, ...], Any] | None] = ContextVar("governance_reading",
                                                                      default=None)


@contextmanager
def one_reading() -> Iterator[None]:
    """Within the block (one thread or task), memoized evidence is built once per arguments."""
    token = _READING.set({})
    try:
        yield
    finally:
        _READING.reset(token)


def memoized(fn: Callable[Concatenate[ModelRegistry, P], R]
             ) -> Callable[Concatenate[ModelRegistry, P], R]:
    """Build ``fn(registry, ...)`` once per store and arguments inside :func:`one_reading`
    (errors are not kept: a failed build raises again when asked again)."""

    @functools.wraps(fn)
    def wrapper(registry: ModelRegistry, /, *args: P.args, **kwargs: P.kwargs) -> R:
        reading = _READING.get()
        if reading is None:
            return fn(registry, *args, **kwargs)
        key = (fn.__qualname__, id(registry.context), args, tuple(sorted(kwargs.items())))
        if key not in reading:
            reading[key] = fn(registry, *args, **kwargs)
        return reading[key]

    return wrapper


@memoized
def verified_chain(registry: ModelRegistry) -> VerifyResult:
    """The audit chain's verification (a replay of every event, O(events)): once per
    :func:`one_reading`, so every report on a page shows one and the same."""
    return registry.verify_audit()
