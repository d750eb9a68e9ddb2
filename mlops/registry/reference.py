"""Reference profiles of a version: what "normal" input and output look like.

Computed once (at registration from the training frame or an explicit reference set, or
later with :meth:`ModelRegistry.set_reference`) and stored as a content-addressed blob
with a ``reference_profiles`` row. Drift checks reuse the stored sorted samples and bins;
nothing re-reads or re-sorts the reference.

Two profiles per version: ``features`` (the model's input columns) and ``outputs`` (one
column ``prediction``: categorical for classifiers, numeric for regressors), predicted on
at most :data:`OUTPUT_ROWS` reference rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from mlops.errors import MonitoringError, SignatureError
from mlops.flavors.base import LoadedModel, to_frame
from mlops.stats.profile import ReferenceProfile, build_profile
from mlops.store.artifacts import ArtifactStore
from mlops.store.schema import ProfileRow, VersionRow, utcnow

__all__ = [
    "KINDS",
    "OUTPUT_ROWS",
    "ProfileInfo",
    "StoredProfile",
    "attach_profiles",
    "compute_profiles",
    "load_profile",
    "profile_rows",
    "put_profiles",
]

KINDS = ("features", "outputs")
#: Rows of the reference set the model predicts to profile its outputs.
OUTPUT_ROWS = 100_000


@dataclass(frozen=True)
class ProfileInfo:
    """Summary of a stored profile (the row, not the blob)."""

    kind: str
    digest: str
    n_rows: int
    columns: dict[str, Any]
    source: str
    created_at: datetime


def compute_profiles(data: Any, model: LoadedModel | None, *, model_name: str,
                     sample_cap: int = 100_000) -> dict[str, ReferenceProfile]:
    """Profiles of ``data`` (features) and, when ``model`` is given, of its predictions."""
    import pandas as pd

    try:
        frame = to_frame(data)
    except (TypeError, ValueError, SignatureError) as exc:
        raise MonitoringError(f"The reference data of {model_name!r} is not a table: {exc}",
                              fix="Pass a pandas DataFrame (or a 2-D array) of model inputs.",
                              model=model_name) from exc
    if len(frame) == 0:
        raise MonitoringError(f"The reference data of {model_name!r} has no rows.",
                              fix="Pass the training frame or a sample of production inputs.",
                              model=model_name)
    frame.columns = [str(c) for c in frame.columns]
    profiles = {"features": build_profile(frame, sample_cap=sample_cap)}
    if model is not None:
        rows = frame.iloc[:OUTPUT_ROWS]
        try:
            predicted = np.asarray(model.predict(rows)).reshape(len(rows), -1)[:, 0]
        except Exception as exc:
            raise MonitoringError(
                f"The model {model_name!r} could not predict its reference data: {exc}",
                fix="Pass reference data with the model's input columns.",
                model=model_name) from exc
        categorical = ["prediction"] if model.classes is not None or predicted.dtype.kind in "OUSb" \
            else []
        out = pd.DataFrame({"prediction": predicted.astype(str) if categorical else predicted})
        profiles["outputs"] = build_profile(out, sample_cap=sample_cap, categorical=categorical)
    return profiles


def _summary(profile: ReferenceProfile) -> dict[str, Any]:
    return {name: {"kind": col.kind,
                   "missing_rate": float(col.missing_rate)}
            for name, col in profile.columns.items()}


@dataclass(frozen=True)
class StoredProfile:
    """A profile written to the artifact store, not yet attached to a version."""

    kind: str
    digest: str
    n_rows: int
    columns: dict[str, Any]


def put_profiles(artifacts: ArtifactStore, profiles: dict[str, ReferenceProfile]
                 ) -> list[StoredProfile]:
    """Write the blobs (outside any transaction: content-addressed, so idempotent)."""
    return [StoredProfile(kind, artifacts.put_bytes(p.to_bytes()).digest, int(p.n_rows),
                          _summary(p)) for kind, p in profiles.items()]


def attach_profiles(session: Session, row: VersionRow, stored: list[StoredProfile],
                    source: str) -> None:
    """(Re)place the version's profile rows, inside the caller's write transaction."""
    for item in stored:
        existing = session.get(ProfileRow, (row.id, item.kind))
        if existing is None:
            existing = ProfileRow(version_id=row.id, kind=item.kind)
            session.add(existing)
        existing.digest = item.digest
        existing.n_rows = item.n_rows
        existing.columns = item.columns
        existing.source = source[:255]
        existing.created_at = utcnow()


def profile_rows(session: Session, row: VersionRow) -> list[ProfileInfo]:
    found = session.scalars(select(ProfileRow).where(ProfileRow.version_id == row.id)).all()
    return [ProfileInfo(kind=p.kind, digest=p.digest, n_rows=p.n_rows, columns=dict(p.columns),
                        source=p.source, created_at=p.created_at) for p in found]


def load_profile(session: Session, artifacts: ArtifactStore, row: VersionRow, kind: str,
                 *, model_name: str) -> ReferenceProfile:
    """The stored profile of a version; a clear error when there is none."""
    if kind not in KINDS:
        raise MonitoringError(f"Unknown profile kind {kind!r}.", fix=f"Use one of {KINDS}.",
                              model=model_name)
    found = session.get(ProfileRow, (row.id, kind))
    if found is None:
        raise MonitoringError(
            f"Version {row.version} of {model_name!r} has no {kind} reference profile.",
            fix=f"Register with training_frame=/reference=, or run `mlops monitor reference "
                f"{model_name} {row.version} --data FILE`.",
            model=model_name, version=row.version)
    return ReferenceProfile.from_bytes(artifacts.get_bytes(found.digest))
