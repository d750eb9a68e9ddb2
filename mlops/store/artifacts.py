"""Content-addressed artifact store on any fsspec filesystem.

Objects live at ``<root>/sha256/<aa>/<digest>``. Writes go to a temporary name and are
renamed into place (an object store's single PUT is atomic already), so a crash never
leaves a half-written object under a digest. Every read verifies the digest.

>>> import tempfile
>>> store = ArtifactStore(tempfile.mkdtemp())
>>> ref = store.put_bytes(b"hello")
>>> store.get_bytes(ref.digest)
b'hello'
"""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from mlops.errors import ArtifactCorrupted, ArtifactError, ArtifactNotFound

__all__ = ["ArtifactRef", "ArtifactStore", "sha256_file"]

_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class ArtifactRef:
    digest: str
    size: int
    uri: str


class ArtifactStore:
    """Store and fetch immutable blobs by SHA-256."""

    def __init__(self, uri: str, **storage_options: Any) -> None:
        self.uri = uri
        try:
            fs, root = fsspec.core.url_to_fs(uri, **storage_options)
        except (ImportError, ValueError) as exc:
            raise ArtifactError(
                f"Cannot open artifact store {uri!r}: {exc}.",
                fix="Use a local folder or an fsspec URL whose driver is installed (pip install \"mlops[s3]\" for s3://).",
            ) from exc
        self.fs = fs
        self.root = root.rstrip("/")
        self.local = isinstance(fs, LocalFileSystem)
        if self.local:
            try:
                Path(self.root).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ArtifactError(
                    f"Cannot create the artifact folder {self.root}: {exc.strerror or exc}.",
                    fix="Point MLOPS_HOME (or MLOPS_ARTIFACTS_URI) at a writable folder.",
                ) from exc

    def _path(self, digest: str) -> str:
        return f"{self.root}/sha256/{digest[:2]}/{digest}"

    def uri_for(self, digest: str) -> str:
        return self.fs.unstrip_protocol(self._path(digest)) if not self.local else self._path(digest)

    def exists(self, digest: str) -> bool:
        return bool(self.fs.exists(self._path(digest)))

    def _intact(self, path: str, digest: str) -> bool:
        """True when ``path`` exists with the right content; a corrupted copy is rewritten."""
        try:
            if not self.fs.exists(path):
                return False
            if self.local:
                return sha256_file(path) == digest
            with self.fs.open(path, "rb") as fh:
                return bool(hashlib.sha256(fh.read()).hexdigest() == digest)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise self._unreachable("read", exc) from exc

    def put_file(self, path: str | os.PathLike[str]) -> ArtifactRef:
        """Copy a local file in; a no-op when the same content is already stored."""
        src = Path(path)
        if not src.is_file():
            raise ArtifactNotFound(f"No file at {src}.", fix="Check the path.", path=str(src))
        digest = sha256_file(src)
        size = src.stat().st_size
        dest = self._path(digest)
        if not self._intact(dest, digest):
            if self.local:
                Path(dest).parent.mkdir(parents=True, exist_ok=True)
                tmp = f"{dest}.tmp-{uuid.uuid4().hex}"
                try:
                    with open(src, "rb") as fin, open(tmp, "wb") as fout:
                        while chunk := fin.read(_CHUNK):
                            fout.write(chunk)
                        fout.flush()
                        os.fsync(fout.fileno())
                    # verify what landed before it becomes visible under the digest
                    if sha256_file(tmp) != digest:
                        raise ArtifactError(f"{src} changed while it was being stored.",
                                            fix="Register it again once it is no longer written to.")
                    os.replace(tmp, dest)
                finally:
                    if os.path.exists(tmp):
                        os.unlink(tmp)
            else:
                try:
                    self.fs.put_file(str(src), dest)  # one PUT: atomic on object stores
                except OSError as exc:
                    raise self._unreachable("write", exc) from exc
        return ArtifactRef(digest, size, self.uri_for(digest))

    def put_bytes(self, data: bytes) -> ArtifactRef:
        digest = hashlib.sha256(data).hexdigest()
        dest = self._path(digest)
        if not self._intact(dest, digest):
            if self.local:
                Path(dest).parent.mkdir(parents=True, exist_ok=True)
                tmp = f"{dest}.tmp-{uuid.uuid4().hex}"
                with open(tmp, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, dest)
            else:
                try:
                    with self.fs.open(dest, "wb") as fh:
                        fh.write(data)
                except OSError as exc:
                    raise self._unreachable("write", exc) from exc
        return ArtifactRef(digest, len(data), self.uri_for(digest))

    def _unreachable(self, doing: str, exc: OSError) -> ArtifactError:
        """An error of the store itself (no such bucket, access denied, unreachable)."""
        fix = ("Check the artifact store URI (MLOPS_ARTIFACTS_URI); for s3:// the bucket must "
               "exist and AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION (and "
               "AWS_ENDPOINT_URL for an S3-compatible server) must reach it.") \
            if not self.local else "Check that the folder exists and is writable."
        return ArtifactError(f"Cannot {doing} the artifact store {self.uri}: {exc}.",
                             fix=fix, path=self.uri)

    def get_bytes(self, digest: str) -> bytes:
        """Read and verify; raises :class:`ArtifactCorrupted` on a mismatch."""
        path = self._path(digest)
        try:
            with self.fs.open(path, "rb") as fh:
                data: bytes = fh.read()
        except FileNotFoundError as exc:
            raise ArtifactNotFound(
                f"Artifact sha256:{digest} is missing from {self.uri}.",
                fix="Restore it from a backup or register the model again.", path=path,
            ) from exc
        except OSError as exc:
            raise self._unreachable("read", exc) from exc
        actual = hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise ArtifactCorrupted(
                f"Artifact {path} is corrupted: its SHA-256 is {actual}, expected {digest}.",
                fix="Register the same model file again (the store rewrites a corrupted copy) "
                    "or restore it from a backup; do not load it.",
                path=path,
            )
        return data

    def local_path(self, digest: str) -> str:
        """A verified local path for loaders that need a file (local stores only)."""
        if not self.local:
            raise ArtifactError("local_path() needs a local artifact store.",
                                fix="Use get_bytes() for remote stores.")
        path = self._path(digest)
        if not os.path.exists(path):
            raise ArtifactNotFound(f"Artifact sha256:{digest} is missing from {self.uri}.",
                                   fix="Restore it or register the model again.", path=path)
        actual = sha256_file(path)
        if actual != digest:
            raise ArtifactCorrupted(
                f"Artifact {path} is corrupted: its SHA-256 is {actual}, expected {digest}.",
                fix="Register the same model file again (the store rewrites a corrupted copy) "
                    "or restore it from a backup; do not load it.",
                path=path,
            )
        return path
