"""What each worker serves: route snapshots refreshed from the routing table.

A :class:`RouteTable` polls the ``routing`` change counter (one indexed read every
``poll_seconds``); when it moved, it reads the routing rows for its environment (falling
back to registry stages), loads any model not loaded yet, and swaps in a new snapshot.
Requests read the current snapshot without locks.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from sqlalchemy import select

from mlops.deployment.routes import RouteSpec, stage_for_environment
from mlops.errors import MlopsError, ModelUnavailable
from mlops.flavors.base import LoadedModel
from mlops.registry.promotion import servable_versions
from mlops.registry.service import ModelRegistry
from mlops.registry.signature import Signature
from mlops.registry.versions import parse_version
from mlops.serving.codecs import Schema
from mlops.store.counters import ROUTING, read_counter
from mlops.store.schema import DeploymentRow, ModelRow, VersionRow

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
    """A loaded version with the schema its requests are validated against."""

    name: str
    version: str
    model: LoadedModel
    schema: Schema
    batching: bool = True


@dataclass
class ServingRoute:
    spec: RouteSpec
    stable: ServedModel
    candidate: ServedModel | None = None
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)

    def choose(self, unit: str | None) -> tuple[str, ServedModel]:
        """``("stable"|"candidate", model)`` for a split; shadow always answers stable."""
        if self.candidate is None or self.spec.weight <= 0 or self.spec.mode == "shadow":
            return "stable", self.stable
        if not self.breaker.allow():
            return "stable", self.stable
        point = bucket(self.spec.salt, unit) if unit is not None else random.randrange(10000)
        if point < self.spec.weight * 100:
            return "candidate", self.candidate
        return "stable", self.stable

    def shadow_for(self, unit: str | None) -> ServedModel | None:
        """The candidate when this request should be mirrored to it."""
        if self.candidate is None or self.spec.mode != "shadow" or self.spec.weight <= 0:
            return None
        if not self.breaker.allow():
            return None
        point = bucket(self.spec.salt, unit) if unit is not None else random.randrange(10000)
        return self.candidate if point < self.spec.weight * 100 else None


class RouteTable:
    """The current routes of one environment, kept fresh from the metadata store."""

    def __init__(self, registry: ModelRegistry, environment: str, *,
                 breaker_threshold: int = 5, breaker_cooldown: float = 30.0,
                 direct_cache: int = 8) -> None:
        self.registry = registry
        self.environment = environment
        self.routes: dict[str, ServingRoute] = {}
        self.revision = -1
        self.breaker_threshold = breaker_threshold
        self.breaker_cooldown = breaker_cooldown
        self._models: dict[tuple[str, str], ServedModel] = {}
        self._direct: OrderedDict[tuple[str, str], ServedModel] = OrderedDict()
        self._direct_cache = direct_cache
        #: per model, the versions explicit-version URLs may reach in this environment
        self.servable: dict[str, frozenset[str]] = {}
        self._lock = threading.Lock()
        self.last_error: str | None = None

    # -------------------------------------------------------------- loading
    def _load(self, name: str, version: str) -> ServedModel:
        key = (name, version)
        served = self._models.get(key) or self._direct.get(key)
        if served is not None:
            return served
        mv = self.registry.get_version(name, version)
        if mv.version != version:  # a routing row names exact versions, never an alias
            raise ModelUnavailable(
                f"The route of {name!r} names {version!r}, which is not a version number.",
                fix=f"Write the route again with an exact version (it resolves to "
                    f"{mv.version} today).", model=name, version=version)
        model = self.registry.load_model(name, mv.version)
        schema = _schema(mv.signature, model)
        return ServedModel(name, version, model, schema)

    def specs(self) -> list[RouteSpec]:
        """Routing rows of this environment plus stage fallbacks for the other models."""
        store = self.registry.store
        with store.read() as s:
            rows = s.execute(select(DeploymentRow, ModelRow.name).join(ModelRow).where(
                DeploymentRow.environment == self.environment)).all()
            out = [RouteSpec(model=name, environment=r.environment, stable=r.stable_version,
                             candidate=r.candidate_version, weight=r.candidate_weight,
                             mode=r.mode, salt=r.salt, unit_field=r.unit_field,
                             strategy=r.strategy, state=r.state, revision=r.revision,
                             config=dict(r.config or {})) for r, name in rows]
            routed = {spec.model for spec in out}
            stage = stage_for_environment(self.environment)
            query = select(ModelRow.name, VersionRow.version).join(VersionRow)
            if stage is not None:
                query = query.where(VersionRow.stage == stage)
            best: dict[str, str] = {}
            for name, version in s.execute(query):
                if name in routed:
                    continue
                if name not in best or parse_version(version) > parse_version(best[name]):
                    best[name] = version
        out += [RouteSpec(model=name, environment=self.environment, stable=version,
                          strategy="stage", state="stable") for name, version in best.items()]
        return out

    def refresh(self, force: bool = False) -> bool:
        """Reload when the routing counter moved; returns True when routes changed."""
        with self._lock:
            with self.registry.store.read() as s:
                revision = read_counter(s, ROUTING)
                if revision == self.revision and not force:
                    return False
                servable = {name: frozenset(found) for name, found in
                            servable_versions(s, self.environment).items()}
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
                keep_until = float(spec.config.get("keep_until", 0) or 0)
                for version in spec.config.get("keep_loaded", []) if keep_until > time.time() \
                        else []:
                    key = (spec.model, str(version))
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
            self.revision = -1 if failed else revision
            return True

    def route(self, name: str) -> ServingRoute:
        route = self.routes.get(name)
        if route is None:
            raise ModelUnavailable(
                f"Model {name!r} is not deployed in environment {self.environment!r}.",
                fix=f"Deploy it, or promote a version to {stage_for_environment(self.environment) or 'a stage'}"
                    " (`mlops models promote`).", model=name)
        return route

    def cached(self, name: str, version: str) -> ServedModel | None:
        """A loaded version this environment serves, without loading anything."""
        if version not in self.servable.get(name, ()):
            return None
        return self._models.get((name, version)) or self._direct.get((name, version))

    def _servable(self, name: str, ref: str) -> str:
        """The version number ``ref`` names, when this environment serves it: explicit
        URLs reach only deployed or staged versions, never any registered one."""
        allowed = self.servable.get(name, frozenset())
        version = ref
        if ref not in allowed:
            try:
                version = self.registry.get_version(name, ref).version
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
        from mlops.registry.signature import ColumnSpec

        return Schema([ColumnSpec(c, "float64") for c in model.input_columns])
    return Schema(None)
