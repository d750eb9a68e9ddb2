"""Import an MLflow model registry: every version of the named (or all) registered models,
with their stages, aliases, tags, run metrics, descriptions and run ids.

Each version is registered through the normal path
(:func:`mlops.registry.registration.register_version` with its ``models:/NAME/VERSION``
URI), so its model file goes through the same allow list, scan and load as any other; a
version that fails is reported as refused and the others continue. A stage goes through the
normal promotion gate: when the gate refuses (team mode), the version stays in stage None
and the refusal is reported.

Idempotent: each imported version carries the tags ``mlflow.source``
(``models:/NAME/VERSION``), ``mlflow.version`` and ``mlflow.tracking_uri``; a re-run skips
the versions whose source (from the same tracking server) is already there. MLflow version N becomes version N.0.0 when
that number is free, else the next major version.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from mlops.errors import DuplicateVersion, MlopsError, ModelNotFound, RegistryError
from mlops.identity import Role
from mlops.registry.mlflow_source import (
    open_client,
    redact_uri,
    tracking_uri_or_env,
)
from mlops.registry.service import ModelRegistry
from mlops.registry.types import ModelVersion

__all__ = ["ImportReport", "ImportedVersion", "import_mlflow"]

#: Tags that identify an imported version (the re-run check reads ``mlflow.source``).
SOURCE_TAG, VERSION_TAG, URI_TAG = "mlflow.source", "mlflow.version", "mlflow.tracking_uri"

_PAGE = 200
log = logging.getLogger("mlops.registry")
_TAG_LIMIT = 1024


@dataclass(frozen=True)
class ImportedVersion:
    """What happened to one MLflow model version.

    ``status`` is ``imported``, ``skipped`` (imported before) or ``refused`` (``reason``
    and ``fix`` say why). ``stage_refused`` is set when the version was imported but the
    promotion gate kept it out of its MLflow stage.
    """

    model: str
    mlflow_version: str
    status: str
    version: str | None = None
    stage: str = "None"
    aliases: tuple[str, ...] = ()
    reason: str = ""
    fix: str = ""
    stage_refused: bool = False
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ImportReport:
    tracking_uri: str  # without credentials
    results: list[ImportedVersion] = field(default_factory=list)

    def of(self, status: str) -> list[ImportedVersion]:
        return [r for r in self.results if r.status == status]

    @property
    def imported(self) -> list[ImportedVersion]:
        return self.of("imported")

    @property
    def skipped(self) -> list[ImportedVersion]:
        return self.of("skipped")

    @property
    def refused(self) -> list[ImportedVersion]:
        """Versions not imported, and imported versions whose stage the gate refused."""
        return [r for r in self.results if r.status == "refused" or r.stage_refused]

    @property
    def ok(self) -> bool:
        return not self.refused

    def to_dict(self) -> dict[str, Any]:
        return {"tracking_uri": self.tracking_uri, "ok": self.ok,
                "counts": {s: len(self.of(s)) for s in ("imported", "skipped", "refused")},
                "results": [r.to_dict() for r in self.results]}


def import_mlflow(registry: ModelRegistry, tracking_uri: str | None = None,
                  names: Sequence[str] | None = None) -> ImportReport:
    """Import every version of the registered models ``names`` (default: all) from the
    MLflow registry at ``tracking_uri`` (else ``MLFLOW_TRACKING_URI``).

    Raises :class:`~mlops.errors.RegistryError` when the server cannot be read or a named
    model does not exist there (before anything is imported); problems with one version
    are reported in its :class:`ImportedVersion` and the import goes on.
    """
    uri = tracking_uri_or_env(tracking_uri, "Importing from MLflow")
    registry.require(Role.DEVELOPER, "import models from MLflow")
    client = open_client(uri)
    results: list[ImportedVersion] = []
    for model in _registered_models(client, names, uri):
        try:
            results += _import_model(registry, client, model, uri)
        except Exception as exc:  # its versions could not even be listed: the next model
            results.append(ImportedVersion(
                str(model.name), "", "refused",
                reason=f"its versions cannot be read: {_explain(exc)}",
                fix="Check the model in MLflow; the other models were imported."))
    return ImportReport(redact_uri(uri), results)


def _explain(exc: BaseException) -> str:
    if isinstance(exc, MlopsError):
        return exc.message
    return f"{type(exc).__name__}: {str(exc)[:300]}"


# ---------------------------------------------------------------------------- one model
def _import_model(registry: ModelRegistry, client: Any, model: Any, uri: str
                  ) -> list[ImportedVersion]:
    name = str(model.name)
    existing = _existing(registry, name)
    here = redact_uri(uri)[:_TAG_LIMIT]  # a version of another server is another version
    done = {mv.tags[SOURCE_TAG]: mv for mv in existing
            if SOURCE_TAG in mv.tags and mv.tags.get(URI_TAG, here) == here}
    numbers = {mv.version for mv in existing}
    aliases: dict[str, list[str]] = {}
    for alias, version in sorted((getattr(model, "aliases", None) or {}).items()):
        aliases.setdefault(str(version), []).append(str(alias))
    out: list[ImportedVersion] = []
    for mv in _versions(client, name, uri):
        number = str(mv.version)
        source = f"models:/{name}/{number}"
        if source in done:
            ours = done[source]
            out.append(ImportedVersion(name, number, "skipped", ours.version, ours.stage,
                                       tuple(ours.aliases),
                                       reason=f"imported before as {ours.version}"))
            continue
        status = str(getattr(mv, "status", "READY") or "READY")
        if status != "READY":
            out.append(ImportedVersion(name, number, "refused", reason=f"its status in "
                                       f"MLflow is {status}", fix="Import it when it is READY."))
            continue
        result = _import_version(registry, client, uri, mv, aliases.get(number, []), numbers)
        if result.version:
            numbers.add(result.version)
        out.append(result)
    imported = [i for i, r in enumerate(out) if r.status == "imported"]
    if imported:
        notes: list[str] = []
        _copy_model_fields(registry, model, notes)
        if notes:  # said on the model's first imported version
            first = out[imported[0]]
            out[imported[0]] = replace(first, notes=(*first.notes, *notes),
                                       reason="; ".join(filter(None, (first.reason, *notes))))
    return out


def _import_version(registry: ModelRegistry, client: Any, uri: str, mv: Any,
                    aliases: list[str], numbers: set[str]) -> ImportedVersion:
    name, number = str(mv.name), str(mv.version)
    source = f"models:/{name}/{number}"
    tags = {str(k)[:255]: str(v)[:_TAG_LIMIT] for k, v in (mv.tags or {}).items()}
    tags.update({SOURCE_TAG: source, VERSION_TAG: number,
                 URI_TAG: redact_uri(uri)[:_TAG_LIMIT]})
    wanted = f"{number}.0.0" if number.isdigit() and f"{number}.0.0" not in numbers else None
    notes: list[str] = []
    kwargs: dict[str, Any] = dict(
        tags=tags, metrics=_run_metrics(client, mv.run_id, notes), tracking_uri=uri,
        description=str(mv.description or ""), mlflow_run_id=mv.run_id or None)
    try:
        try:
            ours = registry.register(name, source, version=wanted, bump="major", **kwargs)
        except DuplicateVersion:  # N.0.0 was taken before (a deleted version)
            ours = registry.register(name, source, bump="major", **kwargs)
    except MlopsError as exc:
        return ImportedVersion(name, number, "refused", reason=exc.message, fix=exc.fix or "")
    except Exception as exc:  # a file no check foresaw: this version only, never the run
        log.exception("importing %s from MLflow failed", source)
        return ImportedVersion(name, number, "refused", reason=f"unexpected {_explain(exc)}",
                               fix="Check the version's files in MLflow; the other versions "
                                   "were imported.")
    set_aliases = tuple(a for a in aliases if _try(notes, f"alias {a}",
                                                   registry.set_alias, name, a, ours.version))
    stage, refused = _stage(registry, ours, str(mv.current_stage or "None"), source, notes)
    return ImportedVersion(name, number, "imported", ours.version, stage, set_aliases,
                           reason="; ".join(notes), stage_refused=refused, notes=tuple(notes))


def _stage(registry: ModelRegistry, ours: ModelVersion, stage: str, source: str,
           notes: list[str]) -> tuple[str, bool]:
    """Move ``ours`` to its MLflow stage through the promotion gate; (stage, refused)."""
    if stage in ("", "None"):
        return "None", False
    try:
        moved = registry.promote(ours.model, ours.version, stage, archive_existing=False,
                                 reason=f"imported from MLflow {source}")
    except MlopsError as exc:
        notes.append(f"stage {stage} refused, the version stays in None: {exc.message}"
                     + (f" Fix: {exc.fix}" if exc.fix else ""))
        return "None", True
    return moved.stage, False


def _try(notes: list[str], what: str, fn: Any, *args: Any) -> bool:
    try:
        fn(*args)
    except MlopsError as exc:
        notes.append(f"{what} not set: {exc.message}")
        return False
    return True


def _copy_model_fields(registry: ModelRegistry, model: Any, notes: list[str]) -> None:
    """The registered model's description and tags, where ours has none yet; one that
    cannot be stored is a note, not the end of the import."""
    name = str(model.name)
    ours = registry.get_model(name)
    if model.description and not ours.description:
        _try(notes, "the description", registry.set_description, name, str(model.description))
    for key, value in (model.tags or {}).items():
        if key not in ours.tags:
            _try(notes, f"tag {str(key)[:60]!r}", registry.set_tag, name, str(key)[:255],
                 str(value)[:_TAG_LIMIT])


# ---------------------------------------------------------------------------- MLflow reads
def _existing(registry: ModelRegistry, name: str) -> list[ModelVersion]:
    try:
        return registry.list_versions(name)
    except ModelNotFound:
        return []


def _registered_models(client: Any, names: Sequence[str] | None, uri: str) -> list[Any]:
    if names:
        found = []
        for name in dict.fromkeys(names):
            try:
                found.append(client.get_registered_model(name))
            except Exception as exc:  # MlflowException, connection errors
                if getattr(exc, "error_code", "") != "RESOURCE_DOES_NOT_EXIST":
                    raise RegistryError(
                        f"Cannot read the registered model {name!r} from MLflow at "
                        f"{redact_uri(uri)}: {type(exc).__name__}: {str(exc)[:500]}.",
                        fix="Check the tracking URI and your credentials.",
                        model=name) from exc
                known = [m.name for m in _paged(client.search_registered_models, uri)][:20]
                raise RegistryError(
                    f"MLflow at {redact_uri(uri)} has no registered model {name!r}.",
                    fix=f"Name one of: {', '.join(known) or '(none registered)'}; or leave "
                        "--name out to import every model.", model=name) from exc
        return found
    return sorted(_paged(client.search_registered_models, uri), key=lambda m: str(m.name))


def _versions(client: Any, name: str, uri: str) -> list[Any]:
    quoted = f'"{name}"' if "'" in name else f"'{name}'"
    found = _paged(client.search_model_versions, uri, filter_string=f"name = {quoted}")
    return sorted((v for v in found if str(v.name) == name),
                  key=lambda v: int(v.version) if str(v.version).isdigit() else math.inf)


def _paged(search: Any, uri: str, **kwargs: Any) -> list[Any]:
    out: list[Any] = []
    token = None
    try:
        while True:
            page = search(max_results=_PAGE, page_token=token, **kwargs)
            out += list(page)
            token = getattr(page, "token", None)
            if not token:
                return out
    except Exception as exc:  # MlflowException, connection errors
        raise RegistryError(f"Cannot read the MLflow registry at {redact_uri(uri)}: "
                            f"{type(exc).__name__}: {str(exc)[:500]}.",
                            fix="Check the tracking URI and your credentials.") from exc


def _run_metrics(client: Any, run_id: str | None, notes: list[str]) -> dict[str, float]:
    """The latest value of each finite metric of the source run; {} without a run, or
    when the run cannot be read (a note says why: the version is still worth importing)."""
    if not run_id:
        return {}
    try:
        metrics = client.get_run(run_id).data.metrics
    except Exception as exc:  # a deleted run, a run in another workspace
        notes.append(f"metrics of run {run_id} not read: {type(exc).__name__}")
        return {}
    return {str(k)[:255]: float(v) for k, v in metrics.items()
            if isinstance(v, int | float) and math.isfinite(float(v))}
