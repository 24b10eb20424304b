"""The demo page: ``GET /`` (plain HTML) and its assets under ``/static``.

Everything is served from ``app/static/`` (no build step, no external resources), outside
the OpenAPI schema. The page is public; the ``/v1`` calls it makes carry the API key the
user enters (see ``app/security.py``).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
INDEX = STATIC_DIR / "index.html"

router = APIRouter(include_in_schema=False)
router.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    """The demo page (revalidated on each load, so a new release shows at once)."""
    return FileResponse(INDEX, media_type="text/html; charset=utf-8",
                        headers={"Cache-Control": "no-cache"})
