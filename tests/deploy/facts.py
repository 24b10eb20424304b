"""Shared facts for the deployment-file tests: the parsed Dockerfile and the env contract."""

from __future__ import annotations

import os
import re

import pytest

from app.config import Settings
from deploy import dockerfile
from models.common.paths import REPO_ROOT

DOCKERFILE = dockerfile.parse(REPO_ROOT / "Dockerfile")
RUNTIME = dockerfile.stages(DOCKERFILE)[-1]
RUNTIME_ENV = dockerfile.env(DOCKERFILE, RUNTIME)
CMD = dockerfile.last(DOCKERFILE, "CMD", RUNTIME)
HEALTHCHECK = dockerfile.last(DOCKERFILE, "HEALTHCHECK", RUNTIME)

SETTINGS_VARIABLES = {f"MODELZOO_{name.upper()}" for name in Settings.model_fields}
# MODELZOO_* names the image's CMD reads itself (`modelzoo serve --host/--port/--workers`).
CMD_VARIABLES = set(re.findall(r"\$\{?(MODELZOO_\w+)", CMD.args))


def unknown_variables(names: set[str]) -> set[str]:
    """MODELZOO_* names that neither Settings nor the image's CMD reads (typos, stale knobs)."""
    return {n for n in names if n.startswith("MODELZOO_")} - SETTINGS_VARIABLES - CMD_VARIABLES


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings as the service would build them from ``env`` (raises on a bad value)."""
    for name in [n for n in os.environ if n.startswith("MODELZOO_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, str(value))
    return Settings()


def app_route_paths() -> set[str]:
    """Paths the FastAPI app serves (built on the committed word2vec artifact, not started).

    Read from the OpenAPI schema: this FastAPI wraps included routers in ``app.routes``
    (private ``_IncludedRouter`` objects without ``path``), while ``app.openapi()`` lists
    every included route's path through public API.
    """
    from app.main import create_app

    app = create_app(Settings(artifacts_dir=REPO_ROOT / "artifacts", models="word2vec"))
    paths = {path for route in app.routes if isinstance(path := getattr(route, "path", None), str)}
    return paths | set(app.openapi()["paths"])
