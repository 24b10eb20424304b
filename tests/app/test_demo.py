"""The demo page at ``/`` and its static assets, via httpx (the browser test is in
tests/browser/)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from html import unescape
from html.parser import HTMLParser

import httpx
import pytest

from app.config import TASKS, Settings
from app.routes.demo import STATIC_DIR
from tests.conftest import ARTIFACTS, running_app

pytestmark = pytest.mark.anyio

APP_JS = STATIC_DIR / "app.js"
# an endpoint in app.js is written ["METHOD", "/path"], every call goes through them
ENDPOINT = re.compile(r"""\[\s*["'](GET|POST)["']\s*,\s*["'](/[^"'?#]*)["']\s*\]""")
ANY_API_PATH = re.compile(r"""["'`](/(?:v1|readyz|healthz)[^"'`?#]*)""")
JS_TASKS = re.compile(r"const TASKS = \[([^\]]*)\]")
FORMS = {"form-word2vec", "form-lm", "form-translation", "form-handwriting", "form-match",
         "form-match-rank"}


class _Refs(HTMLParser):
    """Collect script sources, stylesheet links, form ids and label targets."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self.forms: list[str] = []
        self.labels: list[str] = []
        self.inputs: list[str] = []
        self.external: list[str] = []
        self.cards: list[str] = []
        self.badges: list[str] = []
        self.disabled: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "script" and a.get("src"):
            self.scripts.append(a["src"])
        if tag == "link" and a.get("rel") == "stylesheet":
            self.styles.append(a["href"])
        if tag == "form" and a.get("id"):
            self.forms.append(a["id"])
        if tag == "label" and a.get("for"):
            self.labels.append(a["for"])
        if tag in ("input", "textarea", "select") and a.get("id"):
            self.inputs.append(a["id"])
        if a.get("data-task"):
            self.cards.append(a["data-task"])
        if a.get("data-badge"):
            self.badges.append(a["data-badge"])
        if "disabled" in a or a.get("aria-disabled") == "true":
            self.disabled.append(a.get("id") or tag)
        for key in ("src", "href"):
            if a.get(key, "").startswith(("http:", "https:", "//")):
                self.external.append(a[key])


@pytest.fixture
async def demo_client() -> AsyncIterator[httpx.AsyncClient]:
    """The app on the committed word2vec artifact (the page needs no model)."""
    async with running_app(Settings(artifacts_dir=ARTIFACTS, models="word2vec")) as client:
        yield client


def parse(html: str) -> _Refs:
    refs = _Refs()
    refs.feed(html)
    return refs


async def test_root_serves_the_demo_page_referencing_its_assets(
    demo_client: httpx.AsyncClient,
) -> None:
    response = await demo_client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    refs = parse(response.text)
    assert refs.scripts == ["/static/app.js"]
    assert refs.styles == ["/static/style.css"]
    assert set(refs.forms) >= FORMS
    assert 'href="/docs"' in response.text and 'href="/metrics"' in response.text
    assert "coming soon" not in response.text
    assert refs.disabled == []  # no card or control is switched off any more


async def test_every_task_has_a_live_card_with_a_status_badge(
    demo_client: httpx.AsyncClient,
) -> None:
    refs = parse((await demo_client.get("/")).text)
    assert sorted(refs.cards) == sorted(TASKS)
    assert sorted(refs.badges) == sorted(TASKS)
    # refreshStatus() sets the badges of the tasks listed in app.js
    listed = JS_TASKS.search(APP_JS.read_text(encoding="utf-8"))
    assert listed is not None
    assert sorted(re.findall(r'"([a-z0-9]+)"', listed.group(1))) == sorted(TASKS)


async def test_the_matching_forms_are_prefilled_with_the_api_examples(
    demo_client: httpx.AsyncClient,
) -> None:
    html = (await demo_client.get("/")).text
    schema = (await demo_client.get("/openapi.json")).json()["components"]["schemas"]
    pair = schema["MatchRequest"]["examples"][0]
    ranking = schema["RankRequest"]["examples"][0]
    for input_id, expected in (("match-a", pair["text_a"]), ("match-b", pair["text_b"]),
                               ("rank-query", ranking["query"])):
        value = re.search(rf'<input id="{input_id}"[^>]*\svalue="([^"]*)"', html)
        assert value is not None, input_id
        assert unescape(value.group(1)) == expected
    textarea = re.search(r'<textarea id="rank-candidates"[^>]*>(.*?)</textarea>', html, re.S)
    assert textarea is not None
    assert unescape(textarea.group(1)).splitlines() == ranking["candidates"]
    # the model selects start with the "server default" option, filled in by app.js
    for select in ("match-model", "rank-model"):
        assert re.search(rf'<select id="{select}"[^>]*>\s*<option value="">', html)


async def test_the_page_loads_nothing_from_outside(demo_client: httpx.AsyncClient) -> None:
    html = (await demo_client.get("/")).text
    assert parse(html).external == []
    for name in ("app.js", "style.css"):
        text = (await demo_client.get(f"/static/{name}")).text
        assert not re.search(r"https?://|@import|url\(\s*['\"]?//", text), name


async def test_every_input_has_a_label(demo_client: httpx.AsyncClient) -> None:
    refs = parse((await demo_client.get("/")).text)
    assert refs.inputs
    assert sorted(refs.inputs) == sorted(refs.labels)


@pytest.mark.parametrize(("path", "content_type"), [
    ("/static/app.js", "text/javascript"),
    ("/static/style.css", "text/css"),
    ("/static/index.html", "text/html"),
])
async def test_assets_are_served_with_their_content_type(
    demo_client: httpx.AsyncClient, path: str, content_type: str
) -> None:
    response = await demo_client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] in (
        content_type, "application/javascript")
    assert response.content


async def test_a_missing_asset_is_404_in_the_error_shape(demo_client: httpx.AsyncClient) -> None:
    response = await demo_client.get("/static/nope.js")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_the_page_is_not_in_the_openapi_schema(demo_client: httpx.AsyncClient) -> None:
    paths = (await demo_client.get("/openapi.json")).json()["paths"]
    assert "/" not in paths
    assert not any(p.startswith("/static") for p in paths)


async def test_every_endpoint_the_script_calls_exists_in_the_schema(
    demo_client: httpx.AsyncClient,
) -> None:
    source = APP_JS.read_text(encoding="utf-8")
    endpoints = ENDPOINT.findall(source)
    assert len(endpoints) >= 6, endpoints
    # no API path hides outside the ENDPOINTS table (a fetch("/v1/...") written inline)
    assert {p for _, p in endpoints} == set(ANY_API_PATH.findall(source))
    paths = (await demo_client.get("/openapi.json")).json()["paths"]
    for method, path in endpoints:
        assert path in paths, f"app.js calls {path}, which the app does not serve"
        assert method.lower() in paths[path], f"app.js calls {method} {path}"
    called = {p for _, p in endpoints}
    assert {"/v1/word2vec/neighbors", "/v1/lm/generate", "/v1/translate",
            "/v1/handwriting/recognize", "/v1/match", "/v1/match/rank", "/v1/match/models",
            "/v1/models", "/readyz"} <= called


async def test_the_page_stays_public_when_api_keys_are_on() -> None:
    settings = Settings(artifacts_dir=ARTIFACTS, models="word2vec", api_keys="s3cret")
    async with running_app(settings) as client:
        for path in ("/", "/static/app.js", "/static/style.css"):
            assert (await client.get(path)).status_code == 200, path
        assert (await client.get("/v1/models")).status_code == 401
        keyed = await client.get("/v1/models", headers={"X-API-Key": "s3cret"})
        assert keyed.status_code == 200
        # a dot segment under /static reaches the static files, never the API
        raw = await client.get("/static/%2E%2E/v1/models")
        assert raw.status_code == 404


@pytest.mark.parametrize(("page", "asset"), [
    ("/docs", "/docs-assets/swagger-ui-bundle.js"),
    ("/redoc", "/docs-assets/redoc.standalone.js"),
])
async def test_api_pages_use_local_assets_not_a_cdn(
    demo_client: httpx.AsyncClient, page: str, asset: str
) -> None:
    response = await demo_client.get(page)
    assert response.status_code == 200
    assert asset in response.text
    assert "cdn.jsdelivr.net" not in response.text and "fonts.googleapis" not in response.text
    script = await demo_client.get(asset)
    assert script.status_code == 200 and len(script.content) > 100_000
    assert "javascript" in script.headers["content-type"]
