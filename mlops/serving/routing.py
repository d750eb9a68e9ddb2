"""What each worker serves: route snapshots refreshed from the routing table.

A :class:`RouteTable` learns that routes changed from the ``routing`` change feed
(:class:`mlops.store.changes.ChangeFeed`: PostgreSQL ``LISTEN/NOTIFY``, which costs no
database query while nothing changes; the counter's value on SQLite); then it reads what
its environment serves (:func:`mlops.store.routes.served_routes`: deployment row, else
stage, else newest version), loads any model not loaded yet (its compiled runtime when it
has one; a version compiled since it was loaded is loaded again), and swaps in a new
snapshot. Requests read the current snapshot without locks.
:meth:`RouteTable.wait_for_change` blocks until a change arrives, for a refresh loop that
should not sleep.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from mlops.errors import MlopsError, ModelUnavailable, shown
from mlops.flavors.base import LoadedModel
from mlops.flavors.signature import ColumnSpec, Signature
from mlops.serving.codecs import Schema
from mlops.store.catalog import load_version, resolve_version, runtime_digests
from mlops.store.changes import ChangeFeed
from mlops.store.context import Context
from mlops.store.counters import ROUTING
from mlops.store.routes import (
    RouteMode,
    RouteSpec,
    servable_versions,
    served_routes,
    stage_for_environment,
)

__all__ = ["CircuitBreaker", "RouteTable", "ServedModel", "ServingRoute", "bucket"]

log = logging.getLogger("mlops.serving")


def bucket(salt: str, unit: str) -> int:
    """Sticky bucket 0..9999: first 8 bytes (big-endian) of sha256(salt + "." + unit)."""
    digest = hashlib.sha256(f"{salt}.{unit}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10000


@dataclass
class CircuitBreaker:
    """Closed -> open after ``threshold`` consecutive candidate errors -> half-open after
    ``cooldown`` seconds, when exactly one request probes the candidate: a success closes
    the breaker, a failure opens it for another cooldown."""

    threshold: int = 5
    cooldown: float = 30.0
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False

    def allow(self) -> bool:
        """May this request go to the candidate? (Claims the probe when half-open.)"""
        if self.opened_at is None:
            return True
        if self.probing or time.monotonic() - self.opened_at < self.cooldown:
            return False
        self.probing = True
        return True

    @property
    def open(self) -> bool:
        return self.opened_at is not None

    def success(self) -> None:
        if self.opened_at is not None and not self.probing:
            return  # a late answer from before the breaker opened decides nothing
        self.failures = 0
        self.opened_at = None
        self.probing = False

    def failure(self) -> None:
        if self.opened_at is not None:
            if self.probing:  # the probe failed: stay open for another cooldown
                self.probing = False
                self.opened_at = time.monotonic()
            return
        self.failures += 1
        if self.failures >= self.threshold:
            self.opened_at = time.monotonic()


@dataclass
class ServedModel:
    """A loaded version with the schema its requests are validated against; ``runtime``
    says what executes it (``onnx`` when compiled, else the original's flavor) and
    ``digest`` which file that is."""

    name: str
    version: str
    model: LoadedModel
    schema: Schema
    batching: bool = True
    runtime: str = ""
    digest: str = ""


@dataclass
class ServingRoute:
    spec: RouteSpec
    stable: ServedModel
    candidate: ServedModel | None = None
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)

    def choose(self, unit: str | None) -> tuple[str, ServedModel]:
        """``("stable"|"candidate", model)`` for a split; shadow always answers stable."""
        if self.candidate is None or self.spec.weight <= 0 or \
                self.spec.mode == RouteMode.SHADOW:
            return "stable", self.stable
        if not self.breaker.allow():
            return "stable", self.stable
        point = bucket(self.spec.salt, unit) if unit is not None else random.randrange(10000)
        if point < self.spec.weight * 100:
            return "candidate", self.candidate
        return "stable", self.stable

    def shadow_for(self, unit: str | None) -> ServedModel | None:
        """The candidate when this request should be mirrored to it."""
        if self.candidate is None or self.spec.mode != RouteMode.SHADOW \
                or self.spec.weight <= 0:
            return None
        if not self.breaker.allow():
            return None
        point = bucket(self.spec.salt, unit) if unit is not None else random.randrange(10000)
        return self.candidate if point < self.spec.weight * 100 else None


class RouteTable:
    """The current routes of one environment, kept fresh from the metadata store."""

    def __init__(self, context: Context, environment: str, *,
                 breaker_threshold: int = 5, breaker_cooldown: float = 30.0,
                 direct_cache: int = 8, changes: ChangeFeed | None = None,
                 only: frozenset[str] | None = None) -> None:
        self.context = context
        self.environment = environment
        #: the models this table serves (``mlops serve --only``); None: every deployed one
        self.only = only
        self.routes: dict[str, ServingRoute] = {}
        #: tells the table that routes may have changed (LISTEN/NOTIFY or counter poll)
        feed = context.settings.change_feed
        self.changes = changes or ChangeFeed(context.store, ROUTING, listen=None if feed == "auto"
                                             else feed == "listen")
        self._stale = True  # nothing loaded yet, a change is waiting, or a load failed
        self.breaker_threshold = breaker_threshold
        self.breaker_cooldown = breaker_cooldown
        self._models: dict[tuple[str, str], ServedModel] = {}
        self._direct: OrderedDict[tuple[str, str], ServedModel] = OrderedDict()
        self._direct_cache = direct_cache
        #: per model, the versions explicit-version URLs may reach in this environment
        self.servable: dict[str, frozenset[str]] = {}
        self._lock = threading.Lock()
        #: one thread at a time uses the change feed (its connection is not shared)
        self._feed_lock = threading.Lock()
        self._closed = False
        self.last_error: str | None = None

    # -------------------------------------------------------------- loading
    def _load(self, name: str, version: str) -> ServedModel:
        key = (name, version)
        served = self._models.get(key) or self._direct.get(key)
        if served is not None:
            return served
        loaded = load_version(self.context, name, version, runtime="auto")
        if loaded.version != version:  # a routing row names exact versions, never an alias
            raise ModelUnavailable(
                f"The route of {name!r} names {version!r}, which is not a version number.",
                fix=f"Write the route again with an exact version (it resolves to "
                    f"{loaded.version} today).", model=name, version=version)
        return ServedModel(name, version, loaded.model, _schema(loaded.signature, loaded.model),
                           runtime=loaded.runtime, digest=loaded.digest)

    def _drop_outdated(self, current: dict[tuple[str, str], str]) -> None:
        """Forget loaded versions whose runtime changed (compiled since they were loaded),
        so that this refresh loads them again."""
        for cache in (self._models, self._direct):
            for key in [k for k, served in cache.items()
                        if served.digest and current.get(k, served.digest) != served.digest]:
                del cache[key]

    def specs(self) -> list[RouteSpec]:
        """What this environment serves, one route per model (see
        :func:`~mlops.store.routes.served_routes`), of :attr:`only` when set."""
        with self.context.store.read() as s:
            return [spec for spec in served_routes(s, self.environment).values()
                    if self.only is None or spec.model in self.only]

    @property
    def stale(self) -> bool:
        """A reload is due (nothing loaded yet, a change waits, or the last load failed)."""
        return self._stale

    def wait_for_change(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds until routes may have changed (then call
        :meth:`refresh`); returns at once when a change is already waiting."""
        with self._feed_lock:
            if not self._stale and not self._closed and self.changes.wait(timeout):
                self._stale = True
        return self._stale

    def close(self) -> None:
        """Stop listening for changes (the gateway's shutdown); waits for a
        :meth:`wait_for_change` in progress, at most its timeout."""
        with self._feed_lock:
            self._closed = True
            self.changes.close()

    def refresh(self, force: bool = False) -> bool:
        """Reload when the routes may have changed; returns True when it reloaded."""
        with self._lock:
            with self._feed_lock:  # always drained, so a forced load counts too
                changed = not self._closed and self.changes.changed()
            if not (changed or force or self._stale):
                return False
            with self.context.store.read() as s:
                servable = {name: frozenset(found) for name, found in
                            servable_versions(s, self.environment).items()
                            if self.only is None or name in self.only}
                current = runtime_digests(s, [*self._models, *self._direct])
            self._drop_outdated(current)
            models: dict[tuple[str, str], ServedModel] = {}
            routes: dict[str, ServingRoute] = {}
            failed = False
            specs = self.specs()
            for spec in specs:
                if spec.stable is None:
                    continue
                try:
                    stable = models.get((spec.model, spec.stable)) or \
                        self._load(spec.model, spec.stable)
                    models[(spec.model, spec.stable)] = stable
                    candidate = None
                    if spec.candidate:
                        candidate = models.get((spec.model, spec.candidate)) or \
                            self._load(spec.model, spec.candidate)
                        models[(spec.model, spec.candidate)] = candidate
                except Exception as exc:  # one broken model must not take the others down
                    failed = True
                    message = f"{spec.model}: {exc}"
                    if message != self.last_error:  # once per distinct failure, not per poll
                        log.error("cannot load %s for %s: %s", spec.model, self.environment,
                                  exc)
                    self.last_error = message
                    old = self.routes.get(spec.model)
                    if old is not None:
                        routes[spec.model] = old
                    continue
                for served in (stable, candidate):
                    if served is not None:
                        served.batching = not spec.config.get("batching_opt_out", False)
                old = self.routes.get(spec.model)
                keep = old is not None and old.candidate is not None and candidate is not None \
                    and old.candidate.version == candidate.version
                routes[spec.model] = ServingRoute(
                    spec, stable, candidate,
                    old.breaker if keep and old is not None else
                    CircuitBreaker(self.breaker_threshold, self.breaker_cooldown))
            for spec in specs:  # versions the deployment keeps warm for instant rollback
                for version in spec.warm():
                    key = (spec.model, version)
                    if key not in models:
                        try:
                            models[key] = self._models.get(key) or self._load(*key)
                        except Exception as exc:  # a warm spare is best effort
                            log.warning("cannot keep %s %s loaded: %s", *key, exc)
            for key, served in self._models.items():  # keep what a kept route still uses
                if any(r.stable is served or r.candidate is served for r in routes.values()):
                    models.setdefault(key, served)
            self._models = models
            self.routes = routes
            self.servable = servable
            # after a failed load, try again at the next poll instead of waiting for a change
            self._stale = failed
            return True

    def route(self, name: str) -> ServingRoute:
        route = self.routes.get(name)
        if route is None:
            self._refuse_unless_served(name)
            raise ModelUnavailable(
                f"Model {shown(name)} is not deployed in environment {self.environment!r}.",
                fix=f"Deploy it, or promote a version to {stage_for_environment(self.environment) or 'a stage'}"
                    " (`mlops models promote`).", model=name)
        return route

    def _refuse_unless_served(self, name: str) -> None:
        """404 for a model outside :attr:`only` (``mlops serve --only``)."""
        if self.only is not None and name not in self.only:
            raise ModelUnavailable(
                f"Model {shown(name)} is not served here: this gateway serves only "
                f"{', '.join(sorted(self.only))}.",
                fix="Send the request to the gateway that serves it (mlops serve --only).",
                model=name)

    def cached(self, name: str, version: str) -> ServedModel | None:
        """A loaded version this environment serves, without loading anything."""
        if version not in self.servable.get(name, ()):
            return None
        return self._models.get((name, version)) or self._direct.get((name, version))

    def _servable(self, name: str, ref: str) -> str:
        """The version number ``ref`` names, when this environment serves it: explicit
        URLs reach only deployed or staged versions, never any registered one."""
        self._refuse_unless_served(name)
        allowed = self.servable.get(name, frozenset())
        version = ref
        if ref not in allowed and (len(ref) > 100 or not ref.isprintable()):
            raise ModelUnavailable(
                f"{shown(ref)} is not a version, stage or alias of {shown(name)}.",
                fix="Name a version number, stage or alias (at most 100 printable "
                    "characters).", model=name)
        if ref not in allowed:
            try:
                with self.context.store.read() as s:
                    version = resolve_version(s, name, ref).version
            except MlopsError as exc:
                raise ModelUnavailable(str(exc.message), fix=exc.fix, model=name,
                                       version=ref) from exc
        if version not in allowed:
            raise ModelUnavailable(
                f"Version {ref} of {name!r} is not deployed or staged in environment "
                f"{self.environment!r}.",
                fix=f"Call /v2/models/{name}/infer for what it serves, or deploy {ref} "
                    f"(mlops deploy {name} {version} --env {self.environment}).",
                model=name, version=ref)
        return version

    def direct(self, name: str, version: str) -> ServedModel:
        """A specific version (``/versions/{v}`` URLs) this environment serves, loaded on
        demand and cached."""
        version = self._servable(name, version)
        key = (name, version)
        served = self._models.get(key) or self._direct.get(key)
        if served is not None:
            if key in self._direct:
                self._direct.move_to_end(key)
            return served
        try:
            served = self._load(name, version)
        except MlopsError as exc:
            raise ModelUnavailable(str(exc.message), fix=exc.fix, model=name,
                                   version=version) from exc
        self._direct[key] = served
        while len(self._direct) > self._direct_cache:
            self._direct.popitem(last=False)
        return served

    def loaded(self) -> list[ServedModel]:
        return list(self._models.values())


def _schema(signature: Signature | None, model: LoadedModel) -> Schema:
    if signature is not None and signature.inputs:
        return Schema(list(signature.inputs))
    if model.input_columns:
        return Schema([ColumnSpec(c, "float64") for c in model.input_columns])
    return Schema(None)
