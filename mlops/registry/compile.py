"""Compiling a version to ONNX: an alternate runtime of the same version.

The original file stays what the version *is*; the compiled graph is stored next to it in
the content-addressed artifact store and recorded in the version's ``extra["runtimes"]``
(digest, size, converter versions, tolerance, the largest difference found, the rows
checked, who compiled it and when). The gateway serves the compiled runtime when one
exists (:func:`mlops.store.catalog.load_version` with ``runtime="auto"``);
``ModelRegistry.load_model`` keeps returning the original unless asked.

A runtime is stored only after it proved equal to the original (see
:mod:`mlops.flavors.compile`) on the version's stored input example plus held-out rows
(``data``): identical labels, and probabilities or regression values within the stated
tolerance. Anything else raises :class:`~mlops.errors.CompileRefused` and stores nothing.
The original is loaded through the one restricted loader (allow list, digest check).

Who may compile: a developer, except a version that a protected environment (production)
serves now, may reach (staged, a rollout's candidate, a warm spare) or has served (a
rollback target). Compiling such a version changes what production executes without any
deploy, so it needs the approver role, like every other change of what production serves.
At registration (``register(..., compile="onnx")``) the runtime is part of the new
version from the start, under the registration's role.

Every compile is one transaction: the version's runtime record, the ``version.compile``
audit event (both digests and the equality result) and a routing change notification, so
that gateways load the compiled runtime.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy.orm import Session

from mlops.errors import CompileRefused
from mlops.flavors.base import LoadedModel, to_frame
from mlops.flavors.compile import (
    MIN_ROWS,
    RUNTIMES,
    Compiled,
    Equality,
    check_equal,
    check_rows,
    load_compiled,
    to_onnx,
)
from mlops.flavors.signature import Signature
from mlops.identity import Role
from mlops.registry.promotion import has_served, is_protected, servable_versions
from mlops.registry.types import ModelVersion
from mlops.registry.views import to_version
from mlops.store.artifacts import ArtifactRef
from mlops.store.audit import append_event
from mlops.store.catalog import audit_subject, load_version, model_row, version_row
from mlops.store.context import Context
from mlops.store.counters import ROUTING, bump_counter
from mlops.store.schema import ModelRow, VersionRow, utcnow

if TYPE_CHECKING:
    import pandas as pd  # imported where a frame is made: CLI commands start sooner

__all__ = ["PreparedRuntime", "compile_version", "prepare_runtime", "record_runtime",
           "runtime_summary"]


@dataclass(frozen=True)
class PreparedRuntime:
    """A compiled graph that passed the equality check, not stored yet."""

    runtime: str
    compiled: Compiled
    equality: Equality
    classes: list[Any] | None
    has_proba: bool
    input_columns: list[str] | None

    def record(self, ref: ArtifactRef, actor: str) -> dict[str, Any]:
        """The entry of ``extra["runtimes"]``."""
        eq = self.equality.payload()
        return {"digest": ref.digest, "size": ref.size, "format": self.runtime,
                "input_dtype": self.compiled.input_dtype, "opset": self.compiled.opset,
                "converter": dict(self.compiled.converter), "tolerance": eq["tolerance"],
                "max_abs_diff": eq["max_abs_diff"], "max_diff_at": eq["max_diff_at"],
                "labels_identical": eq["labels_identical"],
                "rows_checked": eq["rows_checked"], "checked": eq["checked"],
                "classes": self.classes, "has_proba": self.has_proba,
                "input_columns": self.input_columns, "created_by": actor,
                "created_at": datetime.now(UTC).isoformat()}


def _check_runtime(to: str) -> None:
    if to not in RUNTIMES:
        raise CompileRefused(f"Unknown compile target {to!r}.",
                             fix=f"Use --to {' or '.join(RUNTIMES)}.")


def _plain(value: Any) -> Any:
    value = value.item() if hasattr(value, "item") else value
    return value if isinstance(value, str | int | float | bool) else str(value)


def _columns(model: LoadedModel, signature: Signature | None) -> list[str] | None:
    if model.input_columns:
        return list(model.input_columns)
    if signature is not None and signature.inputs:
        return signature.columns
    return None


def _as_frame(data: Any, columns: list[str] | None, positional: bool) -> pd.DataFrame:
    """Held-out rows as a frame with the model's columns: an unnamed array is taken by
    position, and so is a frame of the right width for a model without column names."""
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        if not positional or columns is None or all(c in data.columns for c in columns) \
                or data.shape[1] != len(columns):
            return data
        return pd.DataFrame(data.to_numpy(), columns=columns)
    return to_frame(data, columns)


def prepare_runtime(model: LoadedModel, signature: Signature | None,
                    frames: dict[str, Any], *, to: str = "onnx",
                    rtol: float | None = None, atol: float | None = None,
                    what: str = "model", fix: str | None = None) -> PreparedRuntime:
    """Compile ``model`` and check it on ``frames`` (source name -> rows); raises
    :class:`CompileRefused` when it is not equal (nothing is stored here either way)."""
    _check_runtime(to)
    columns = _columns(model, signature)
    positional = not model.input_columns and (signature is None or signature.positional)
    given = {k: _as_frame(v, columns, positional) for k, v in frames.items() if v is not None}
    rows, sources = check_rows(given, columns, what, fix)
    compiled = to_onnx(model, rows.shape[1])
    runtime = load_compiled(compiled.data, classes=model.classes, has_proba=model.has_proba,
                            input_columns=columns)
    equality = check_equal(model, runtime, rows, rtol=rtol, atol=atol,
                           precision=compiled.input_dtype, sources=sources)
    if not equality.passed:
        raise equality.refusal(what)
    classes = [_plain(c) for c in model.classes] if model.classes is not None else None
    return PreparedRuntime(to, compiled, equality, classes, model.has_proba, columns)


def record_runtime(s: Session, ctx: Context, model: ModelRow, row: VersionRow,
                   prepared: PreparedRuntime, ref: ArtifactRef, *, when: str,
                   protected: str | None = None) -> dict[str, Any]:
    """Inside the caller's write transaction: store the runtime record on the version,
    append the ``version.compile`` event and notify gateways."""
    extra = dict(row.extra or {})
    runtimes = dict(extra.get("runtimes") or {})
    before = runtimes.get(prepared.runtime)
    record = prepared.record(ref, ctx.actor)
    runtimes[prepared.runtime] = record
    row.extra = {**extra, "runtimes": runtimes}  # a new dict: the JSON column sees a change
    row.updated_at = utcnow()
    bump_counter(s, ROUTING)  # gateways reload the version with its compiled runtime
    append_event(s, actor=ctx.actor, action="version.compile",
                 subject=audit_subject(model.name, row.version),
                 payload={"runtime": prepared.runtime, "sha256": ref.digest,
                          "original_sha256": row.artifact_digest, "size": ref.size,
                          "replaces": before.get("digest") if before else None,
                          "converter": record["converter"],
                          "input_dtype": record["input_dtype"], "when": when,
                          "equality": prepared.equality.payload(),
                          **({"protected_environment": protected} if protected else {})})
    return record


def _authorise(s: Session, ctx: Context, model: ModelRow, version: str) -> str | None:
    """Approver for a version a protected environment serves, may serve or has served
    (compiling it changes what that environment executes); developer otherwise. Returns
    that environment, if any."""
    settings = ctx.settings
    for env in settings.environments:
        if not is_protected(settings, env):
            continue
        reach = servable_versions(s, env, model.name).get(model.name, set())
        if version in reach or has_served(s, model, env, version):
            ctx.require(Role.APPROVER,
                        f"compile {model.name} {version}, which {env} serves or has served "
                        f"(a compiled runtime changes what {env} executes)")
            return env
    ctx.require(Role.DEVELOPER, f"compile {model.name} {version}")
    return None


def compile_version(ctx: Context, name: str, version: str, *, to: str = "onnx",
                    data: Any = None, rtol: float | None = None,
                    atol: float | None = None) -> ModelVersion:
    """Compile a registered version to ``to`` (``onnx``) and store it as an alternate
    runtime, after checking it on the stored input example and ``data`` (held-out rows).

    Raises :class:`CompileRefused` (nothing stored) when the rows are too few, the
    converter cannot handle the model, or the outputs differ beyond the tolerance.
    """
    import pandas as pd

    _check_runtime(to)
    with ctx.store.read() as s:
        mrow = model_row(s, name)
        row = version_row(s, mrow, version)
        number, example = row.version, (row.extra or {}).get("input_example")
        _authorise(s, ctx, mrow, number)  # refuse early; checked again when writing
    loaded = load_version(ctx, name, number, runtime="original")
    frames: dict[str, Any] = {}
    if example:
        frames["input_example"] = pd.DataFrame.from_records(example)
    if data is not None:
        frames["data"] = data
    what = f"{name} {number}"
    if data is None and frames:
        # say what was checked: only the stored example (at most 10 rows) without data
        n = len(frames["input_example"])
        if n < MIN_ROWS:
            raise CompileRefused(
                f"{what} has only its stored input example ({n} rows) to be checked on, "
                f"and no held-out rows were given; at least {MIN_ROWS} rows are needed.",
                fix=f"mlops models compile {name} {number} --to {to} --data FILE "
                    "(held-out rows with the model's input columns; data= in Python).",
                model=name, version=number)
    prepared = prepare_runtime(loaded.model, loaded.signature, frames, to=to, rtol=rtol,
                               atol=atol, what=what)
    ref = ctx.artifacts.put_bytes(prepared.compiled.data)  # slow work before the write
    with ctx.store.write() as s:
        mrow = model_row(s, name)
        row = version_row(s, mrow, number)
        protected = _authorise(s, ctx, mrow, number)
        record_runtime(s, ctx, mrow, row, prepared, ref, when="compile", protected=protected)
        s.flush()
        return to_version(s, row, name)


def runtime_summary(record: dict[str, Any]) -> str:
    """``sha256 1a2b3c4d5e6f, float32, max diff 3.9e-07 on 210 rows`` for people."""
    diff = record.get("max_abs_diff")
    return (f"sha256 {str(record.get('digest', ''))[:12]}, {record.get('input_dtype', '?')}, "
            f"max diff {float(diff) if diff is not None else np.nan:.2g} on "
            f"{record.get('rows_checked', '?')} rows (rtol "
            f"{record.get('tolerance', {}).get('rtol', '?')}, atol "
            f"{record.get('tolerance', {}).get('atol', '?')})")
