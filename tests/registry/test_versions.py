from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlops.errors import InvalidAlias, InvalidStage, InvalidVersion
from mlops.store.versions import (
    next_version,
    normalize_stage,
    parse_version,
    validate_alias,
    version_key,
)


def test_first_version_is_1_0_0() -> None:
    assert next_version([]) == "1.0.0"


@pytest.mark.parametrize(("bump", "expected"), [("patch", "1.2.4"), ("minor", "1.3.0"),
                                                ("major", "2.0.0")])
def test_bump_from_highest_semantic_version_not_string_order(bump: str, expected: str) -> None:
    assert next_version(["1.2.3", "1.2.0", "1.1.9"], bump) == expected


def test_bump_orders_numerically() -> None:
    assert next_version(["1.9.0", "1.10.0"]) == "1.10.1"


def test_patch_bump_after_prerelease_finalises_it() -> None:
    assert next_version(["1.0.0", "1.1.0-rc.1"]) == "1.1.0"


@pytest.mark.parametrize("bad", ["1", "1.0", "01.0.0", "1.0.0.0", "abc", "", "1.0.x"])
def test_malformed_version_rejected_with_fix(bad: str) -> None:
    with pytest.raises(InvalidVersion) as err:
        parse_version(bad)
    assert "semantic version" in str(err.value)
    assert err.value.fix


def test_leading_v_accepted() -> None:
    assert str(parse_version("v2.1.0")) == "2.1.0"


def test_unknown_bump_rejected() -> None:
    with pytest.raises(InvalidVersion, match="Unknown bump"):
        next_version(["1.0.0"], "huge")


@pytest.mark.parametrize(("given", "canonical"), [("production", "Production"),
                                                  ("STAGING", "Staging"), ("none", "None"),
                                                  (None, "None"), ("Archived", "Archived")])
def test_stage_names_case_insensitive(given: str | None, canonical: str) -> None:
    assert normalize_stage(given) == canonical


def test_unknown_stage_lists_valid_ones() -> None:
    with pytest.raises(InvalidStage, match="Production"):
        normalize_stage("prod")


@pytest.mark.parametrize("bad", ["", "1abc", "has space", "production", "latest", "x" * 65])
def test_bad_alias_rejected(bad: str) -> None:
    with pytest.raises(InvalidAlias):
        validate_alias(bad)


_PART = st.one_of(st.integers(0, 30).map(str), st.sampled_from(["alpha", "beta", "rc", "a1"]))
_VERSION = st.builds(
    lambda n, pre: f"{n[0]}.{n[1]}.{n[2]}" + (f"-{'.'.join(pre)}" if pre else ""),
    st.tuples(*(st.integers(0, 12),) * 3), st.lists(_PART, max_size=3))


@given(st.lists(_VERSION, min_size=2, max_size=12))
def test_version_key_orders_as_semantic_versioning_does(versions: list[str]) -> None:
    by_key = sorted(versions, key=version_key)
    by_semver = sorted(versions, key=parse_version)
    assert [parse_version(v) for v in by_key] == [parse_version(v) for v in by_semver]


def test_version_key_puts_a_prerelease_before_its_release() -> None:
    assert sorted(["1.0.0", "1.0.0-rc.10", "1.0.0-rc.2", "1.0.0-alpha", "0.9.9"],
                  key=version_key) == ["0.9.9", "1.0.0-alpha", "1.0.0-rc.2", "1.0.0-rc.10",
                                       "1.0.0"]
