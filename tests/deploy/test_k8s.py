"""deploy/k8s: valid Kubernetes objects (offline schemas of kubernetes-validate), wired up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from deploy import dockerfile
from models.common.paths import REPO_ROOT
from tests.deploy.facts import (
    DOCKERFILE,
    RUNTIME,
    app_route_paths,
    settings_from,
    unknown_variables,
)

K8S = REPO_ROOT / "deploy" / "k8s"
MANIFESTS = sorted(K8S.glob("*.yaml"))
KUBERNETES_VERSION = "1.37.0"  # the newest schema set kubernetes-validate 1.37.0 bundles


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def _objects() -> dict[str, dict[str, Any]]:
    """kind → object, over every manifest (one object of each kind here)."""
    objects = [d for path in MANIFESTS for d in _documents(path)]
    by_kind = {o["kind"]: o for o in objects}
    assert len(by_kind) == len(objects), "expected one object per kind"
    return by_kind


def _container() -> dict[str, Any]:
    (container,) = _objects()["Deployment"]["spec"]["template"]["spec"]["containers"]
    return container


def test_the_manifests_are_a_deployment_service_hpa_and_configmap() -> None:
    assert set(_objects()) == {"Deployment", "Service", "HorizontalPodAutoscaler", "ConfigMap"}


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_validates_against_the_kubernetes_schema(path: Path) -> None:
    for document in _documents(path):
        try:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{path.name}: {'/'.join(map(str, e.path))}: {e.message}")


def test_probes_hit_routes_the_app_serves() -> None:
    container = _container()
    paths = {name: container[name]["httpGet"]["path"]
             for name in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert paths["readinessProbe"] == "/readyz" and paths["livenessProbe"] == "/healthz"
    routes = app_route_paths()
    assert "/v1/models" in routes and "/no/such/route" not in routes
    assert set(paths.values()) <= routes


def test_ports_line_up_from_service_to_probes_to_the_image() -> None:
    container = _container()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    exposed = int(dockerfile.last(DOCKERFILE, "EXPOSE", RUNTIME).args)
    assert ports == {"http": exposed}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] in ports
    (service_port,) = _objects()["Service"]["spec"]["ports"]
    assert service_port["targetPort"] in ports


def test_service_and_hpa_target_the_deployment() -> None:
    objects = _objects()
    deployment = objects["Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert objects["Service"]["spec"]["selector"].items() <= pod_labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    hpa = objects["HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    # Utilization is measured against requests: without a CPU request the HPA cannot scale.
    assert "cpu" in _container()["resources"]["requests"]
    assert "memory" in _container()["resources"]["limits"]


def test_pod_runs_as_the_images_non_root_user() -> None:
    pod = _objects()["Deployment"]["spec"]["template"]["spec"]
    uid = dockerfile.last(DOCKERFILE, "USER", RUNTIME).args.split(":")[0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert str(pod["securityContext"]["runAsUser"]) == uid
    security = _container()["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]


def test_env_comes_from_the_configmap_and_settings_accept_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configmap = _objects()["ConfigMap"]
    (source,) = _container()["envFrom"]
    assert source["configMapRef"]["name"] == configmap["metadata"]["name"]
    data = configmap["data"]
    assert unknown_variables(set(data)) == set()
    settings = settings_from(data, monkeypatch)  # raises on a bad value
    cpu_limit = int(_container()["resources"]["limits"]["cpu"])
    assert settings.torch_threads == cpu_limit
