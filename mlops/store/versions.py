"""Semantic versions, stages and alias names: parsing and validation rules."""

from __future__ import annotations

import re
from collections.abc import Iterable

import semver

from mlops.errors import InvalidAlias, InvalidStage, InvalidVersion

__all__ = [
    "FIRST_VERSION",
    "STAGES",
    "next_version",
    "normalize_stage",
    "parse_version",
    "validate_alias",
    "version_key",
]

FIRST_VERSION = "1.0.0"
STAGES = ("None", "Staging", "Production", "Archived")
_STAGE_BY_LOWER = {s.lower(): s for s in STAGES}
_ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
_BUMPS = ("patch", "minor", "major")
_MAX_PART = 2**31 - 1


def parse_version(text: str, *, model: str | None = None) -> semver.Version:
    """Parse ``MAJOR.MINOR.PATCH[-pre][+build]``; a leading ``v`` is accepted."""
    fix = ("Use MAJOR.MINOR.PATCH such as 1.2.0 (optionally -rc.1), or leave the version "
           "out to bump the patch number.")
    if not isinstance(text, str):
        raise InvalidVersion(f"A version must be text like '1.2.0', got {text!r}.", fix=fix,
                             model=model)
    raw = text.strip()
    if raw[:1] in {"v", "V"}:
        raw = raw[1:]
    try:
        parsed = semver.Version.parse(raw)
    except (ValueError, TypeError) as exc:
        raise InvalidVersion(f"{text!r} is not a semantic version.", fix=fix, model=model,
                             version=text) from exc
    if parsed.build:
        raise InvalidVersion(
            f"{text!r} has build metadata (+{parsed.build}), which does not order versions.",
            fix=f"Register {parsed.replace(build=None)} and record the build as a tag.",
            model=model, version=text)
    if max(parsed.major, parsed.minor, parsed.patch) > _MAX_PART or len(raw) > 64:
        raise InvalidVersion(f"{text!r} is too large for a version.",
                             fix=f"Keep each number below {_MAX_PART} and the text within 64 "
                                 "characters.", model=model, version=text)
    return parsed


def version_key(text: str) -> tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]:
    """A sort key that orders versions as semantic versioning does (a pre-release before its
    release; numeric pre-release parts numerically, below alphanumeric ones), and compares
    as fast as plain tuples (``semver.Version``'s comparisons cost ~6 us each)."""
    v = parse_version(text)
    pre = v.prerelease
    parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split(".")) \
        if pre else ()
    return (v.major, v.minor, v.patch, 0 if pre else 1, parts)


def next_version(existing: Iterable[str], bump: str = "patch", *,
                 model: str | None = None) -> str:
    """The version after the highest of ``existing`` (``1.0.0`` when there is none)."""
    if bump not in _BUMPS:
        raise InvalidVersion(f"Unknown bump {bump!r}.", fix="Use 'patch', 'minor' or 'major'.",
                             model=model)
    parsed = [parse_version(v, model=model) for v in existing]
    if not parsed:
        return FIRST_VERSION
    # semver's next_version finalises a pre-release when the bump fits it:
    # 1.1.0-rc.1 -> patch/minor 1.1.0; 2.0.0-rc.1 -> major 2.0.0
    return str(max(parsed).next_version(bump))


def normalize_stage(stage: str | None, *, model: str | None = None) -> str:
    """Case-insensitive stage name to its canonical spelling."""
    key = "none" if stage is None else str(stage).strip().lower()
    try:
        return _STAGE_BY_LOWER[key]
    except KeyError:
        raise InvalidStage(f"Unknown stage {stage!r}.",
                           fix=f"Use one of {', '.join(STAGES)} (any case).", model=model) from None


def validate_alias(alias: str, *, model: str | None = None) -> str:
    """Aliases start with a letter, then letters, digits, ``_`` or ``-``; not a stage name."""
    if not _ALIAS.match(alias or ""):
        raise InvalidAlias(
            f"{alias!r} is not a valid alias.",
            fix="Start with a letter; then letters, digits, '_' or '-' (at most 64 characters).",
            model=model,
        )
    if alias.lower() in _STAGE_BY_LOWER or alias.lower() == "latest":
        raise InvalidAlias(f"{alias!r} is reserved (stage names and 'latest').",
                           fix="Choose another alias such as 'champion'.", model=model)
    return alias
