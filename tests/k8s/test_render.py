"""``mlops k8s render``: every object deserialises into the kubernetes client's models and
back unchanged, passes the Kubernetes JSON schemas offline (kubernetes-validate, strict),
the CRD kinds meet the vendored KServe and Argo Rollouts schemas, the pods are hardened,
no secret value is ever written, and the Argo analysis names only metrics the gateway
exports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from kubernetes.client import ApiClient
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from mlops.cli.app import app
from mlops.config import Settings
from mlops.deployment.cluster import cluster_spec
from mlops.deployment.routes import RoutingService
from mlops.errors import ConfigError, DeploymentError
from mlops.k8s import ClusterSpec, Flavor, k8s_name, render, to_yaml
from mlops.k8s.argo import analysis_queries
from mlops.registry.service import ModelRegistry
from tests.conftest import child_env
from tests.k8s.metric_names import exported_metric_names, promql_metric_names

CRDS = Path(__file__).resolve().parent / "data" / "crds"
#: kind -> the kubernetes client model it must round-trip through
MODELS = {"ConfigMap": "V1ConfigMap", "Deployment": "V1Deployment", "Service": "V1Service",
          "HorizontalPodAutoscaler": "V2HorizontalPodAutoscaler",
          "PodDisruptionBudget": "V1PodDisruptionBudget",
          "NetworkPolicy": "V1NetworkPolicy"}
CRD_SCHEMAS = {"Rollout": "argo-rollout.json", "AnalysisTemplate": "argo-analysistemplate.json",
               "InferenceService": "kserve-inferenceservice.json"}
SECRET = "s3cr3t-Passw0rd"
S3 = "s3://models/mlops"


def _round_trip(obj: Any, model: str) -> Any:
    api = ApiClient()
    return api.sanitize_for_serialization(api.deserialize(json.dumps(obj), model,
                                                          "application/json"))


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModelRegistry:
    """Two models served in production (one with a canary); a password in the database URL
    and an AWS secret in the environment, neither of which may reach a manifest."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    settings = Settings(home=tmp_path / ".mlops", actor="tester",
                        artifacts_uri=str(tmp_path / "artifacts"))
    registry = ModelRegistry(settings)
    model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    for name in ("churn", "Fraud_Detector"):
        registry.register(name, model=model)
        registry.register(name, model=model)
    routing = RoutingService(registry)
    routing.set_route("churn", "production", stable="1.0.0", candidate="1.0.1", weight=10,
                      strategy="canary", reason="test", override="test")
    routing.set_route("Fraud_Detector", "production", stable="1.0.1", reason="test",
                      override="test")
    return registry


def _spec(registry: ModelRegistry, **kwargs: Any) -> ClusterSpec:
    return cluster_spec(registry, "production", artifacts_uri=S3, **kwargs)


@pytest.mark.parametrize("flavor", list(Flavor))
def test_every_object_round_trips_through_the_client_models(registry: ModelRegistry,
                                                            flavor: Flavor) -> None:
    objects = render(_spec(registry, replicas=3), flavor)
    kinds = [o["kind"] for o in objects]
    for obj in objects:
        if obj["kind"] in MODELS:
            assert _round_trip(obj, MODELS[obj["kind"]]) == obj, obj["kind"]
        elif obj["kind"] == "Rollout":  # its pod template is the core PodTemplateSpec
            template = obj["spec"]["template"]
            assert _round_trip(template, "V1PodTemplateSpec") == template
        elif obj["kind"] == "InferenceService":
            predictor = obj["spec"]["predictor"]
            for box in predictor["containers"]:
                assert _round_trip(box, "V1Container") == box
            for volume in predictor["volumes"]:
                assert _round_trip(volume, "V1Volume") == volume
    expected = {Flavor.PLAIN: {"ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler",
                               "PodDisruptionBudget", "NetworkPolicy", "ServiceMonitor"},
                Flavor.KSERVE: {"ConfigMap", "InferenceService"},
                Flavor.ARGO: {"ConfigMap", "Rollout", "AnalysisTemplate", "Service",
                              "HorizontalPodAutoscaler", "PodDisruptionBudget",
                              "NetworkPolicy", "Deployment", "ServiceMonitor"}}[flavor]
    assert set(kinds) == expected


@pytest.mark.parametrize("flavor", list(Flavor))
def test_the_core_kinds_pass_the_kubernetes_schemas_offline(registry: ModelRegistry,
                                                            flavor: Flavor,
                                                            tmp_path: Path) -> None:
    """kubernetes-validate (the Kubernetes JSON schemas, shipped in the package: nothing is
    downloaded), strict: an unknown field fails too."""
    import kubernetes_validate

    objects = [o for o in render(_spec(registry), flavor) if o["kind"] in MODELS]
    version = kubernetes_validate.latest_version()
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)
    broken = {**objects[0], "spec": {"no-such-field": 1}} if objects[0]["kind"] != \
        "ConfigMap" else {**objects[0], "data": {"k": 1}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, version, strict=True)


def _broken(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` with one thing its CRD requires taken away or mistyped."""
    spec = obj["spec"]
    if obj["kind"] == "Rollout":
        steps = [{"setWeight": "ten"}, *spec["strategy"]["canary"]["steps"][1:]]
        canary = {**spec["strategy"]["canary"], "steps": steps}
        return {**obj, "spec": {**spec, "strategy": {"canary": canary}}}
    if obj["kind"] == "AnalysisTemplate":
        first = {k: v for k, v in spec["metrics"][0].items() if k != "provider"}
        return {**obj, "spec": {**spec, "metrics": [first, *spec["metrics"][1:]]}}
    return {**obj, "spec": {k: v for k, v in spec.items() if k != "predictor"}}


@pytest.mark.parametrize("flavor", [Flavor.ARGO, Flavor.KSERVE])
def test_the_crd_kinds_meet_the_vendored_schemas(registry: ModelRegistry,
                                                 flavor: Flavor) -> None:
    """The CRDs' schemas as their projects publish them (tests/k8s/data/crds/README.md
    names the sources), reduced to what is not a pod (pods are checked above)."""
    checked = []
    for obj in render(_spec(registry), flavor):
        if obj["kind"] not in CRD_SCHEMAS:
            continue
        schema = json.loads((CRDS / CRD_SCHEMAS[obj["kind"]]).read_text())
        jsonschema.validate(obj, schema)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(_broken(obj), schema)
        checked.append(obj["kind"])
    assert checked == (["Rollout", "AnalysisTemplate"] if flavor is Flavor.ARGO
                       else ["InferenceService", "InferenceService"])


def test_pods_are_hardened_with_probes_and_resources(registry: ModelRegistry) -> None:
    objects = render(_spec(registry), Flavor.PLAIN)
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    assert {d["metadata"]["labels"]["app.kubernetes.io/component"] for d in deployments} == {
        "gateway", "control"}
    for d in deployments:
        pod = d["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        [box] = pod["containers"]
        sc = box["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]} and sc["runAsNonRoot"] is True
        assert box["resources"]["requests"] and box["resources"]["limits"]
        assert box["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
        assert box["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
        assert {m["mountPath"] for m in box["volumeMounts"]} == {"/var/lib/mlops", "/tmp"}
        assert box["envFrom"] == [{"configMapRef": {"name": "mlops-config-production"}},
                                  {"secretRef": {"name": "mlops-secrets"}}]
    gateway = next(d for d in deployments if "gateway" in d["metadata"]["name"])
    args = gateway["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:3] == ["serve", "--role", "gateway"] and "--auth" in args
    control = next(d for d in deployments if "control" in d["metadata"]["name"])
    assert control["spec"]["replicas"] == 2
    assert "--role" in (c := control["spec"]["template"]["spec"]["containers"][0]["args"]) \
        and c[c.index("--role") + 1] == "control"
    hpa = next(o for o in objects if o["kind"] == "HorizontalPodAutoscaler")
    assert hpa["spec"]["minReplicas"] == 2 and hpa["spec"]["maxReplicas"] == 6
    monitor = next(o for o in objects if o["kind"] == "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


def test_no_secret_is_ever_written(registry: ModelRegistry, tmp_path: Path) -> None:
    for flavor in Flavor:
        text = to_yaml(render(_spec(registry), flavor))
        assert SECRET not in text and "kind: Secret" not in text
        config = next(o for o in yaml.safe_load_all(text) if o["kind"] == "ConfigMap")
        assert config["data"] == {"MLOPS_AUTH": "on", "MLOPS_ARTIFACTS_URI": S3,
                                  "AWS_DEFAULT_REGION": "eu-west-1"}
    with pytest.raises(ConfigError, match="ConfigMap"):
        ClusterSpec(environment="production", config={"MLOPS_DATABASE_URL": "x"})
    with pytest.raises(ConfigError, match="credentials"):
        cluster_spec(registry, "production", artifacts_uri="s3://key:secret@bucket/x")


def test_kserve_renders_one_v2_predictor_per_served_model(registry: ModelRegistry) -> None:
    services = [o for o in render(_spec(registry), Flavor.KSERVE)
                if o["kind"] == "InferenceService"]
    assert [s["metadata"]["annotations"]["mlops.dev/model"] for s in services] == [
        "Fraud_Detector", "churn"]
    names = [s["metadata"]["name"] for s in services]
    assert names[1] == "churn-production"
    assert names[0].startswith("fraud-detector-production-") and names[0] == \
        k8s_name("Fraud_Detector-production")  # changed, so a hash keeps it unique
    box = services[1]["spec"]["predictor"]["containers"][0]
    assert box["name"] == "kserve-container" and box["ports"][0]["containerPort"] == 8080
    assert box["args"][box["args"].index("--model") + 1] == "churn"
    assert box["args"][box["args"].index("--only") + 1] == "churn"  # loads churn alone


def test_argo_steps_and_analysis_use_the_gateways_metrics(registry: ModelRegistry) -> None:
    objects = render(_spec(registry), Flavor.ARGO)
    rollout = next(o for o in objects if o["kind"] == "Rollout")
    canary = rollout["spec"]["strategy"]["canary"]
    assert canary["steps"] == [{"setWeight": 10}, {"pause": {"duration": "300s"}},
                               {"setWeight": 50}, {"pause": {"duration": "300s"}},
                               {"setWeight": 100}]
    services = {o["metadata"]["name"] for o in objects if o["kind"] == "Service"}
    assert {canary["canaryService"], canary["stableService"]} <= services
    template = next(o for o in objects if o["kind"] == "AnalysisTemplate")
    assert canary["analysis"]["templates"][0]["templateName"] == template["metadata"]["name"]
    exported = exported_metric_names()
    for metric in template["spec"]["metrics"]:
        names = promql_metric_names(metric["provider"]["prometheus"]["query"])
        assert names and names <= exported, (metric["name"], names - exported)
    assert promql_metric_names(analysis_queries(_spec(registry))["error-rate"]) == {
        "mlops_requests_total"}


def test_bad_requests_are_clear_errors(registry: ModelRegistry, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="local folder"):
        cluster_spec(registry, "production")  # the store is a local folder
    with pytest.raises(DeploymentError, match="Unknown environment"):
        cluster_spec(registry, "moon", artifacts_uri=S3)
    with pytest.raises(ConfigError, match="Unknown flavor"):
        render(_spec(registry), "helm")
    with pytest.raises(ConfigError, match="Nothing is served"):
        render(cluster_spec(registry, "staging", artifacts_uri=S3), Flavor.KSERVE)
    for bad in ({"replicas": 0}, {"image": "bad image"}, {"namespace": "Not_OK"},
                {"replicas": 3, "max_replicas": 2}):
        with pytest.raises(ConfigError):
            _spec(registry, **bad)


def test_the_cli_writes_one_file_per_object(registry: ModelRegistry, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_HOME", str(registry.context.settings.home))
    monkeypatch.setenv("MLOPS_ARTIFACTS_URI", S3)
    out = tmp_path / "manifests"
    result = CliRunner().invoke(app, ["k8s", "render", "--env", "production", "--replicas",
                                      "3", "--flavor", "argo", "--out", str(out)])
    assert result.exit_code == 0, result.output
    files = sorted(out.glob("*.yaml"))
    assert len(files) == len(render(_spec(registry, replicas=3), Flavor.ARGO))
    assert yaml.safe_load(files[1].read_text())["kind"] == "Rollout"
    assert "mlops-secrets" in result.output
    printed = subprocess.run([sys.executable, "-m", "mlops", "k8s", "render"],
                             capture_output=True, text=True,
                             env={**_env(registry), "MLOPS_ARTIFACTS_URI": S3})
    assert printed.returncode == 0, printed.stderr
    assert [d["kind"] for d in yaml.safe_load_all(printed.stdout)][:2] == ["ConfigMap",
                                                                          "Deployment"]
    local = subprocess.run([sys.executable, "-m", "mlops", "k8s", "render"],
                           capture_output=True, text=True, env=_env(registry))
    assert local.returncode == 2 and "--artifacts-uri" in local.stderr
    assert "Traceback" not in local.stderr


def _env(registry: ModelRegistry) -> dict[str, str]:
    return child_env(MLOPS_HOME=str(registry.context.settings.home), MLOPS_ACTOR="tester",
                     MLOPS_DATABASE_URL=registry.context.settings.database_url)
