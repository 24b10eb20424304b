"""The demo page in a real headless browser (Playwright driving a system Chromium).

The app runs under uvicorn in a subprocess on a free loopback port, on the committed
artifacts, with an API key on, so the page's key field is exercised too. Skips with the
reason when Playwright or a Chromium binary is missing (``apt-get install
chromium-headless-shell`` or ``chromium``; ``MODELZOO_BROWSER=/path/to/chrome`` picks one).
Playwright's own browser download is never used: it needs a CDN.

The screenshot goes to pytest's temporary folder; ``MODELZOO_UPDATE_SCREENSHOT=1`` also
writes it to ``docs/demo.png``.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
from PIL import Image

from models.common.paths import REPO_ROOT

ARTIFACTS = REPO_ROOT / "artifacts"
SCREENSHOT = REPO_ROOT / "docs" / "demo.png"
API_KEY = "browser-test-key"
CANDIDATES = ("chromium", "chromium-browser", "chromium-headless-shell", "google-chrome",
              "google-chrome-stable", "chrome", "headless_shell")
KNOWN_PATHS = ("/usr/lib/chromium/chromium", "/usr/lib/chromium/chromium-headless-shell",
               "/opt/google/chrome/chrome")
STARTUP_S = 120.0
TIMEOUT_MS = 30_000


def find_browser() -> str | None:
    """A Chromium/Chrome executable: $MODELZOO_BROWSER, then PATH, then known locations."""
    chosen = os.environ.get("MODELZOO_BROWSER")
    if chosen:
        return chosen if Path(chosen).is_file() else None
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return next((p for p in KNOWN_PATHS if Path(p).is_file()), None)


def served_tasks() -> list[str]:
    """The tasks with committed artifacts (translation and matching are optional)."""
    tasks = ["word2vec", "lm", "handwriting"]
    return tasks + [t for t in ("translation", "matching") if (ARTIFACTS / t).is_dir()]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def capitals_png(lines: list[str]) -> bytes:
    """Block capitals in a thick pen (Hershey simplex), dark on light, spaced like writing."""
    font, scale, thickness = cv2.FONT_HERSHEY_SIMPLEX, 3.0, 9
    (_, cap), _ = cv2.getTextSize("H", font, scale, thickness)
    advance = [[cv2.getTextSize(c, font, scale, thickness)[0][0] + cap // 4 for c in line]
               for line in lines]
    image = np.full((2 * cap * len(lines) + cap, max(map(sum, advance)) + 2 * cap, 3), 235,
                    np.uint8)
    for i, line in enumerate(lines):
        x = cap
        for ch, dx in zip(line, advance[i], strict=True):
            cv2.putText(image, ch, (x, 2 * cap * (i + 1)), font, scale, (20, 20, 20),
                        thickness, cv2.LINE_AA)
            x += dx
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def browser_path() -> str:
    pytest.importorskip("playwright.sync_api",
                        reason="playwright is not installed (pip install -e '.[dev]')")
    path = find_browser()
    if path is None:
        pytest.skip("no Chromium/Chrome binary on this machine (apt-get install "
                    "chromium-headless-shell, or set MODELZOO_BROWSER)")
    return path


@pytest.fixture(scope="module")
def server(browser_path: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """uvicorn serving the committed artifacts on a free loopback port; yields its URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "uvicorn.log"
    env = {**os.environ, "MODELZOO_ARTIFACTS_DIR": str(ARTIFACTS),
           "MODELZOO_MODELS": ",".join(served_tasks()), "MODELZOO_API_KEYS": API_KEY,
           "MODELZOO_CORS_ORIGINS": "", "MODELZOO_TORCH_THREADS": "1",
           "MODELZOO_ACCESS_LOG": "false", "MODELZOO_LOG_LEVEL": "warning",
           "OMP_NUM_THREADS": "1"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory",
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the server did not get ready:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def browser(browser_path: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=browser_path, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.js_errors = []
    page.on("pageerror", lambda exc: page.js_errors.append(str(exc)))
    yield page
    context.close()


def submit(page: Any, form: str) -> None:
    page.click(f"#{form} button[type=submit]")


def test_demo_page_answers_every_served_task(page: Any, server: str,
                                            tmp_path: Path) -> None:
    from playwright.sync_api import expect

    page.goto(f"{server}/")
    expect(page).to_have_title("modelzoo — demo")
    for form in ("form-word2vec", "form-lm", "form-translation", "form-handwriting",
                 "form-match", "form-match-rank"):
        expect(page.locator(f"#{form}")).to_be_visible()

    # the key is on: /v1/models answers 401 and the page says so; saving the key fixes it
    expect(page.locator("#status-error")).to_contain_text("unauthorized")
    expect(page.locator("#ready-summary")).to_contain_text("Ready")
    page.fill("#api-key", API_KEY)
    page.click("#key-form button[type=submit]")
    expect(page.locator("#status-error")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('modelzoo.apiKey')") == API_KEY
    for task in served_tasks():
        expect(page.locator(f'[data-badge="{task}"]')).to_have_text("ready")
        expect(page.locator("#model-list")).to_contain_text(task)

    # word2vec: an unknown word shows the API's error in the form, then a real answer
    page.fill("#w2v-word", "xyzzy")
    submit(page, "form-word2vec")
    error = page.locator("#form-word2vec .error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("not_found (HTTP 404)")
    expect(error).to_contain_text("not in the vocabulary")
    page.fill("#w2v-word", "chip")
    page.fill("#w2v-k", "5")
    submit(page, "form-word2vec")
    expect(page.locator("#result-word2vec li")).to_have_count(5)
    expect(error).to_be_hidden()
    expect(page.locator("#result-word2vec li").first).to_contain_text("intel")

    # LM: same seed, same text
    page.fill("#lm-max-tokens", "12")
    submit(page, "form-lm")
    output = page.locator("#result-lm .output")
    expect(output).not_to_be_empty()
    expect(page.locator("#result-lm .meta")).to_contain_text("seed 7 · 12 tokens")
    assert len(output.inner_text().split()) >= 12

    # translation: an answer when the artifact exists, else the 503 shown in the form
    page.fill("#tr-text", "Ein Mann fährt Fahrrad.")
    submit(page, "form-translation")
    if "translation" in served_tasks():
        expect(page.locator("#result-translation .output")).not_to_be_empty()
    else:
        expect(page.locator('[data-badge="translation"]')).to_have_text("not loaded")
        expect(page.locator("#form-translation .error")).to_contain_text("HTTP 503")

    # handwriting: preview on select, then the text and a box per letter on the canvas
    page.set_input_files("#hw-file", files=[{
        "name": "hello.png", "mimeType": "image/png",
        "buffer": capitals_png(["HELLO", "WORLD"])}])
    canvas = page.locator("#hw-canvas")
    expect(canvas).to_be_visible()
    submit(page, "form-handwriting")
    expect(page.locator("#result-handwriting .output")).to_have_text("HELLO\nWORLD")
    expect(page.locator("#result-handwriting .meta")).to_contain_text("10 letters")
    colored = page.evaluate("""() => {
        const c = document.getElementById('hw-canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) {
          const hi = Math.max(d[i], d[i + 1], d[i + 2]), lo = Math.min(d[i], d[i + 1], d[i + 2]);
          if (hi - lo > 80) n++;
        }
        return n;
    }""")
    assert colored > 500, "no coloured boxes were drawn over the grey-scale image"

    if "matching" in served_tasks():
        check_matching(page, server)
    else:  # no artifact: the badge says so and the form shows the 503
        expect(page.locator('[data-badge="matching"]')).to_have_text("not loaded")
        submit(page, "form-match")
        expect(page.locator("#form-match .error")).to_contain_text("HTTP 503")

    assert page.js_errors == []
    shot = tmp_path / "demo.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size < 400_000  # docs/demo.png stays small
    if os.environ.get("MODELZOO_UPDATE_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)


def percent(text: str) -> float:
    """'87.3%' → 87.3."""
    assert text.endswith("%"), text
    return float(text[:-1])


def check_matching(page: Any, server: str) -> None:
    """The pair form shows the API's score, label, threshold and model; the rank form lists
    the candidates in the API's order with their scores."""
    from playwright.sync_api import expect

    headers = {"X-API-Key": API_KEY}
    served = httpx.get(f"{server}/v1/match/models", headers=headers, timeout=30).json()
    # the selects are filled from /v1/match/models, each on its endpoint's default
    expect(page.locator("#match-model option")).to_have_count(len(served["models"]))
    expect(page.locator("#match-model")).to_have_value(served["default_match"])
    expect(page.locator("#rank-model")).to_have_value(served["default_rank"])

    # pair: score as a percentage (+ bar with the threshold mark), label, threshold, model
    pair = {"text_a": page.input_value("#match-a"), "text_b": page.input_value("#match-b"),
            "model": served["default_match"]}
    assert pair["text_a"] and pair["text_b"]
    submit(page, "form-match")
    verdict = page.locator("#result-match .verdict")
    expect(verdict).to_be_visible()
    answer = httpx.post(f"{server}/v1/match", json=pair, headers=headers, timeout=30).json()
    expect(page.locator("#result-match .verdict-label")).to_have_text(
        "match" if answer["label"] else "no match")
    assert abs(percent(verdict.locator(".score").inner_text()) - 100 * answer["score"]) <= 0.051
    meta = page.locator("#result-match .meta")
    expect(meta).to_contain_text(f"model {answer['model']}")
    expect(meta).to_contain_text("threshold 0.")
    expect(page.locator("#result-match .scorebar .fill")).to_have_count(1)
    expect(page.locator("#result-match .scorebar .tick")).to_have_count(1)
    expect(page.locator("#form-match .error")).to_be_hidden()

    # rank: no candidate is caught in the page; then the API's order, best first
    candidates = [c for c in page.input_value("#rank-candidates").splitlines() if c.strip()]
    assert len(candidates) >= 3
    page.fill("#rank-candidates", " \n\n")
    submit(page, "form-match-rank")
    rank_error = page.locator("#form-match-rank .error")
    expect(rank_error).to_contain_text("at least one candidate")
    page.fill("#rank-candidates", "\n".join(candidates))
    submit(page, "form-match-rank")
    items = page.locator("#result-match-rank ol.ranking > li")
    expect(items).to_have_count(len(candidates))
    expect(rank_error).to_be_hidden()
    query = page.input_value("#rank-query")
    ranked = httpx.post(f"{server}/v1/match/rank", headers=headers, timeout=30, json={
        "query": query, "candidates": candidates, "model": served["default_rank"]}).json()
    for i, result in enumerate(ranked["results"]):
        expect(items.nth(i).locator(".text")).to_contain_text(result["text"])
        expect(items.nth(i).locator(".text")).to_contain_text(f"(line {result['index'] + 1})")
    shown = [percent(t) for t in items.locator(".score").all_inner_texts()]
    assert shown == sorted(shown, reverse=True), shown
    for got, result in zip(shown, ranked["results"], strict=True):
        assert abs(got - 100 * result["score"]) <= 0.051
    expect(page.locator("#result-match-rank .meta")).to_contain_text(f"model {ranked['model']}")


def test_demo_page_fits_a_narrow_screen(browser: Any, server: str) -> None:
    context = browser.new_context(viewport={"width": 360, "height": 740})
    try:
        page = context.new_page()
        page.goto(f"{server}/")
        page.wait_for_selector("#form-handwriting")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 360, f"the page scrolls sideways on a phone ({width}px wide)"
    finally:
        context.close()


def test_docs_page_renders_swagger_ui(page: Any, server: str) -> None:
    page.goto(f"{server}/docs", wait_until="domcontentloaded")
    assert page.locator("#swagger-ui").count() == 1
    page.wait_for_selector(".swagger-ui .opblock", timeout=15_000)  # local assets, no CDN
    assert page.locator(".opblock-summary-path[data-path='/v1/word2vec/neighbors']").count() == 1
