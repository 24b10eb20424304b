"""A model trained by the training module is served by the API."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import Settings
from models.word2vec.train import TrainConfig, train
from tests.conftest import running_app


@pytest.mark.anyio
async def test_freshly_trained_artifact_is_served(tiny_corpus: Path, tmp_path: Path) -> None:
    train(TrainConfig(train_file=tiny_corpus, out_dir=tmp_path / "artifacts" / "word2vec",
                      checkpoint_dir=tmp_path / "ckpt", wordsim_dir=None, embed_size=16,
                      min_count=1, batch_size=64, epochs=2, checkpoint_every=0))
    settings = Settings(artifacts_dir=tmp_path / "artifacts", models="word2vec")
    async with running_app(settings) as client:
        response = await client.post("/v1/word2vec/neighbors", json={"word": "baby", "k": 4})
        models = await client.get("/v1/models")
    assert response.status_code == 200
    assert len(response.json()["neighbors"]) == 4
    assert models.json()["models"][0]["card"]["vocab_size"] == 20
