"""``/docs`` (Swagger UI) and ``/redoc`` served with local assets, so the API page works on
machines without internet access (FastAPI's defaults load them from a CDN).

The assets are Swagger UI 5 and ReDoc as bundled by the ``fastapi-offline`` package (MIT).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"
ASSETS = "/docs-assets"

router = APIRouter(include_in_schema=False)
router.mount(ASSETS, StaticFiles(directory=ASSETS_DIR), name="docs-assets")


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    """The interactive API page (Swagger UI)."""
    return get_swagger_ui_html(
        openapi_url=request.app.openapi_url, title=f"{request.app.title} — API",
        swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS}/favicon.png",
        oauth2_redirect_url="/docs/oauth2-redirect",
    )


@router.get("/docs/oauth2-redirect")
def swagger_ui_redirect() -> HTMLResponse:
    """Swagger UI's OAuth2 redirect helper."""
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    """The API reference (ReDoc)."""
    return get_redoc_html(openapi_url=request.app.openapi_url,
                          title=f"{request.app.title} — reference",
                          redoc_js_url=f"{ASSETS}/redoc.standalone.js",
                          redoc_favicon_url=f"{ASSETS}/favicon.png", with_google_fonts=False)


def _app_models() -> dict[str, type[BaseModel]]:
    """The pydantic models defined in ``app.*`` modules, by class name."""
    found: dict[str, type[BaseModel]] = {}
    todo = list(BaseModel.__subclasses__())
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if cls.__module__.startswith("app."):
            found[cls.__name__] = cls
    return found


def keep_nulls_in_examples(app: FastAPI) -> None:
    """Put the models' own ``examples`` back into the OpenAPI schema.

    FastAPI drops every ``null`` from the document, examples included (fastapi/fastapi#5559),
    so the ``"neighbors": null`` of an unknown word would vanish from the example answer of
    ``/v1/word2vec/neighbors/batch``, leaving an example its own schema refuses.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = generate()
        models = _app_models()
        for name, component in schema.get("components", {}).get("schemas", {}).items():
            model = models.get(name.removesuffix("-Output").removesuffix("-Input"))
            extra = model.model_config.get("json_schema_extra") if model else None
            if isinstance(extra, dict) and "examples" in extra:
                component["examples"] = extra["examples"]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
