"""docker-compose.yml: valid against the Compose spec schema (vendored) and wired to the image."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from deploy import dockerfile
from models.common.paths import REPO_ROOT
from tests.deploy.facts import (
    DOCKERFILE,
    HEALTHCHECK,
    RUNTIME,
    RUNTIME_ENV,
    settings_from,
    unknown_variables,
)

SCHEMA = json.loads((REPO_ROOT / "deploy" / "compose-spec.json").read_text(encoding="utf-8"))
# The vendored schema declares draft 2019-09 (under a $schema URL jsonschema does not know).
VALIDATOR = jsonschema.Draft201909Validator(SCHEMA)


def _compose() -> dict[str, Any]:
    data = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _errors(data: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in VALIDATOR.iter_errors(data)]


def test_the_vendored_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft201909Validator.check_schema(SCHEMA)
    assert SCHEMA["id"] == "compose_spec.json"


def test_compose_file_validates_against_the_compose_spec() -> None:
    assert _errors(_compose()) == []


def test_the_schema_rejects_a_misspelt_key() -> None:
    data = copy.deepcopy(_compose())
    data["services"]["api"]["deploy"]["resources"]["limits"]["cpu"] = "2"
    assert _errors(data)


def test_api_builds_the_cpu_image_with_limits_healthcheck_and_read_only_artifacts() -> None:
    api = _compose()["services"]["api"]
    assert api["build"]["context"] == "." and api["build"]["dockerfile"] == "Dockerfile"
    assert api["build"]["args"] == {"TORCH_VARIANT": "cpu"}
    assert "profiles" not in api
    limits = api["deploy"]["resources"]["limits"]
    assert float(limits["cpus"]) > 0 and limits["memory"]
    (volume,) = api["volumes"]
    assert volume["type"] == "bind" and volume["read_only"] is True
    assert (REPO_ROOT / volume["source"]).is_dir()
    assert volume["target"] == RUNTIME_ENV["MODELZOO_ARTIFACTS_DIR"]


@pytest.mark.parametrize("service", ["api", "api-gpu"])
def test_ports_build_args_and_healthcheck_match_the_dockerfile(service: str) -> None:
    spec = _compose()["services"][service]
    exposed = dockerfile.last(DOCKERFILE, "EXPOSE", RUNTIME).args
    assert [p.split(":")[-1] for p in spec["ports"]] == [exposed]
    assert set(spec["build"]["args"]) <= set(dockerfile.build_args(DOCKERFILE, "builder"))
    health = spec["healthcheck"]
    assert health["test"] == ["CMD", *(HEALTHCHECK.exec_form() or [])]
    flags = {k.replace("-", "_"): v for k, v in HEALTHCHECK.flags.items()}
    assert {k: str(v) for k, v in health.items() if k != "test"} == flags


@pytest.mark.parametrize("service", ["api", "api-gpu"])
def test_environment_names_and_values_are_accepted_by_settings(
    service: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    environment = _compose()["services"][service]["environment"]
    assert unknown_variables(set(environment)) == set()
    settings_from(environment, monkeypatch)  # raises on a bad value


def test_gpu_service_is_an_opt_in_profile_with_an_nvidia_device_and_the_cuda_build() -> None:
    gpu = _compose()["services"]["api-gpu"]
    assert gpu["profiles"] == ["gpu"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert gpu["build"]["args"]["TORCH_VARIANT"].startswith("cu")
    assert gpu["environment"]["MODELZOO_DEVICE"] == "cuda"
    assert gpu["image"] != _compose()["services"]["api"]["image"]


def test_the_schema_note_names_its_source() -> None:
    note = (Path(REPO_ROOT) / "deploy" / "README.md").read_text(encoding="utf-8")
    assert "compose-spec.json" in note and "sha256" in note
