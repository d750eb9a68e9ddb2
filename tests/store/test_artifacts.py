from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from mlops.errors import ArtifactCorrupted, ArtifactError, ArtifactNotFound
from mlops.store.artifacts import ArtifactStore


def test_put_is_content_addressed_and_idempotent(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "a"))
    ref1 = store.put_bytes(b"model-bytes")
    ref2 = store.put_bytes(b"model-bytes")
    assert ref1 == ref2
    assert ref1.digest == hashlib.sha256(b"model-bytes").hexdigest()
    assert store.get_bytes(ref1.digest) == b"model-bytes"


def test_put_file_matches_put_bytes(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "a"))
    f = tmp_path / "m.bin"
    f.write_bytes(os.urandom(3_000_000))
    ref = store.put_file(f)
    assert ref.size == 3_000_000
    assert store.get_bytes(ref.digest) == f.read_bytes()
    assert not list((tmp_path / "a").rglob("*.tmp-*"))


def test_corrupted_artifact_names_the_file(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "a"))
    ref = store.put_bytes(b"original")
    path = Path(ref.uri)
    path.write_bytes(b"tampered")
    with pytest.raises(ArtifactCorrupted) as err:
        store.get_bytes(ref.digest)
    assert str(path) in str(err.value)
    with pytest.raises(ArtifactCorrupted):
        store.local_path(ref.digest)


def test_an_artifact_folder_that_cannot_be_made_is_an_artifact_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(ArtifactError, match="Cannot create the artifact folder") as info:
        ArtifactStore(str(tmp_path / "file" / "artifacts"))
    assert "MLOPS_ARTIFACTS_URI" in (info.value.fix or "")


def test_missing_artifact_raises_not_found(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "a"))
    with pytest.raises(ArtifactNotFound):
        store.get_bytes("0" * 64)


def test_memory_filesystem_works_through_fsspec() -> None:
    store = ArtifactStore("memory://mlops-test-artifacts")
    ref = store.put_bytes(b"remote")
    assert store.get_bytes(ref.digest) == b"remote"
