"""Hostile model files inside the gateway: every canary payload of the bypass corpus is
stored as a Production version the way a scanner bug would let it in (the row written
directly, skipping registration's scan), and a real gateway must refuse to load each one:
no canary file appears, and requests for those models are refused, not answered."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from mlops.config import Settings
from mlops.registry.service import ModelRegistry
from mlops.store.schema import ModelRow, VersionRow
from mlops.store.versions import parse_version
from tests.flavors.bypass_corpus import BYPASSES
from tests.serving.conftest import start_server

ROW = {"instances": [[0.1, 0.2, 0.3]]}
CANARY_BYPASSES = [b for b in BYPASSES if b.effect == "canary" and b.trigger == "load"]


def _plant(registry: ModelRegistry, name: str, filename: str, data: bytes) -> None:
    """A Production version whose file never went through the scan."""
    ref = registry.artifacts.put_bytes(data)
    fmt = "joblib" if filename.endswith(".joblib") else \
        "skops" if filename.endswith(".skops") else "pickle"
    sv = parse_version("1.0.0")
    with registry.store.write() as s:
        model = ModelRow(name=name, description="")
        s.add(model)
        s.flush()
        s.add(VersionRow(model_id=model.id, version="1.0.0", major=sv.major, minor=sv.minor,
                         patch=sv.patch, prerelease="", stage="Production",
                         artifact_digest=ref.digest, artifact_name=filename,
                         artifact_size=ref.size, flavor="sklearn", trusted=False,
                         signature={}, lineage={}, extra={"format": fmt}))


def test_the_gateway_refuses_to_load_what_a_scanner_bug_let_in(tmp_path: Path) -> None:
    home = tmp_path / ".mlops"
    registry = ModelRegistry(Settings(home=home, actor="tester"))
    canaries: dict[str, Path] = {}
    for i, bypass in enumerate(CANARY_BYPASSES):
        canary = tmp_path / f"canary-{i}"
        filename, data = bypass.build(canary)
        _plant(registry, f"hostile{i}", filename, data)
        canaries[f"hostile{i}"] = canary
    assert len(canaries) >= 25, "the corpus lost its canary payloads"
    srv = start_server(home, "--role", "gateway", wait_for="/v2/health/live")
    try:
        with srv.client() as c:
            for name in canaries:
                r = c.post(f"/v1/models/{name}:predict", json=ROW)
                assert r.status_code in (404, 503), (name, r.status_code, r.text)
                direct = c.post(f"/v2/models/{name}/versions/1.0.0/infer", json={
                    "inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64",
                                "data": [0.1, 0.2, 0.3]}]})
                assert direct.status_code in (404, 503), (name, direct.text)
    finally:
        srv.stop()
    ran = [name for name, canary in canaries.items() if canary.exists()]
    assert ran == [], f"payloads ran inside the gateway: {ran}"
    log = srv.log.read_text()
    assert "not on the allow list" in log or "UnsafeModel" in log or "refused" in log
    with registry.store.read() as s:  # the planted rows are still there: nothing was lost
        assert len(s.scalars(select(VersionRow.id)).all()) == len(canaries)


@pytest.mark.parametrize("bypass", CANARY_BYPASSES[:3], ids=lambda b: b.name)
def test_registration_refuses_before_any_payload_runs(tmp_path: Path, bypass: object,
                                                      registry: ModelRegistry) -> None:
    from mlops.errors import FlavorError

    canary = tmp_path / "canary"
    filename, data = bypass.build(canary)  # type: ignore[attr-defined]
    path = tmp_path / filename
    path.write_bytes(data)
    with pytest.raises(FlavorError):
        registry.register("hostile", path)
    assert not canary.exists()
