"""Shared fixtures: data locations, a tiny synthetic corpus, and a running app client."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest

from app.config import Settings
from app.main import create_app
from models.common.paths import REPO_ROOT, data_dir

# Start-up warm-up runs one real inference per model; tests that patch predictor methods
# before startup would see it, so it is off unless a test asks (tests/app/test_startup.py).
os.environ.setdefault("MODELZOO_WARMUP", "false")

ARTIFACTS = REPO_ROOT / "artifacts"
DATA = data_dir()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def require_data(*parts: str) -> Path:
    """Path under the shared data folder, or skip the test (fresh clones have no ../shared)."""
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"dataset {path} not present (set MODELZOO_DATA_DIR to the shared data)")
    return path


def write_tiny_corpus(path: Path, n_sentences: int = 300, seed: int = 0) -> Path:
    """A PTB-format corpus with topical structure: two topics that never share a sentence."""
    rng = np.random.default_rng(seed)
    topics = [
        ["chip", "intel", "computer", "software", "memory", "processor"],
        ["baby", "mother", "child", "family", "school", "doctor"],
    ]
    glue = ["the", "a", "of", "and", "to", "in", "N", "<unk>"]
    lines = []
    for _ in range(n_sentences):
        topic = topics[rng.integers(2)]
        words = [
            topic[rng.integers(len(topic))] if rng.random() < 0.5 else glue[rng.integers(8)]
            for _ in range(rng.integers(4, 14))
        ]
        lines.append(" " + " ".join(words) + " ")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_corpus(tmp_path_factory.mktemp("corpus") / "tiny.train.txt")


@pytest.fixture(scope="session")
def tiny_lm_root(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An artifacts folder holding ``lm/``: a tiny LSTM LM trained on the tiny corpus."""
    from models.lm.train import TrainConfig, train

    root = tmp_path_factory.mktemp("lm_artifacts")
    train(TrainConfig(train_file=tiny_corpus, valid_file=tiny_corpus, out_dir=root / "lm",
                      checkpoint_dir=root / "ckpt", embed_size=16, hidden_size=16,
                      num_layers=1, dropout=0.0, tie_weights=True, lr=5.0, batch_size=4,
                      seq_length=10, epochs=2, checkpoint_every=0))
    return root


async def wait_ready(client: httpx.AsyncClient, timeout_s: float = 30.0) -> httpx.Response:
    """Poll /readyz until 200 or until ``timeout_s`` passes; return the last response."""
    response = await client.get("/readyz")
    deadline = asyncio.get_running_loop().time() + timeout_s
    while response.status_code != 200 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)
        response = await client.get("/readyz")
    return response


@asynccontextmanager
async def running_app(settings: Settings, ready: bool = True) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and give an httpx client bound to it (ASGI transport)."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://modelzoo") as client:
            if ready:
                response = await wait_ready(client)
                assert response.status_code == 200, response.text
            yield client


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """A client of the service on the committed artifacts (word2vec only)."""
    if not (ARTIFACTS / "word2vec").is_dir():
        pytest.fail("artifacts/word2vec is missing: it is committed with the repository")
    async with running_app(Settings(artifacts_dir=ARTIFACTS, models="word2vec")) as c:
        yield c
