"""Training smoke tests: a few steps on a tiny corpus write an artifact that loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from models.cli import app
from models.word2vec.predictor import Word2VecPredictor
from models.word2vec.train import TrainConfig, train


def _config(corpus: Path, tmp: Path, **kw: object) -> TrainConfig:
    base: dict[str, object] = {
        "train_file": corpus, "out_dir": tmp / "artifact", "checkpoint_dir": tmp / "ckpt",
        "wordsim_dir": None, "embed_size": 16, "min_count": 1, "batch_size": 64, "epochs": 2,
        "subsample_t": 1e-2, "checkpoint_every": 0,
    }
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_training_writes_a_loadable_artifact(tiny_corpus: Path, tmp_path: Path) -> None:
    card = train(_config(tiny_corpus, tmp_path))
    out = tmp_path / "artifact"
    assert {p.name for p in out.iterdir()} >= {"model.safetensors", "config.json", "card.json",
                                               "vocab.json"}
    assert card["vocab_size"] == 20 and card["training"]["steps"] > 0
    predictor = Word2VecPredictor.load(out)
    (nbrs,) = predictor.neighbors(["chip"], 3)
    assert nbrs is not None and len(nbrs) == 3 and "chip" not in [w for w, _ in nbrs]


def test_training_separates_the_two_topics(tiny_corpus: Path, tmp_path: Path) -> None:
    train(_config(tiny_corpus, tmp_path, epochs=30, optimizer="sgd", lr=1.0))
    predictor = Word2VecPredictor.load(tmp_path / "artifact")
    (same, _), (cross, _) = predictor.similarity([("chip", "intel"), ("chip", "baby")])
    assert same is not None and cross is not None
    assert same > cross + 0.2


@pytest.mark.parametrize("optimizer", ["sgd", "sparse_adam", "adam"])
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(
    tiny_corpus: Path, tmp_path: Path, optimizer: str
) -> None:
    straight = tmp_path / "straight"
    train(_config(tiny_corpus, straight, optimizer=optimizer, epochs=3))
    interrupted = tmp_path / "interrupted"
    cfg = _config(tiny_corpus, interrupted, optimizer=optimizer, epochs=3, checkpoint_every=5)
    train(_config(tiny_corpus, interrupted, optimizer=optimizer, epochs=3, checkpoint_every=5,
                  max_steps=12))
    assert (interrupted / "ckpt" / "last.pt").is_file()
    cfg.resume = True
    train(cfg)
    a = load_file(straight / "artifact" / "model.safetensors")["center"]
    b = load_file(interrupted / "artifact" / "model.safetensors")["center"]
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize(("argv", "expected"), [
    ([], {"optimizer": "sgd", "lr": 1.25, "batch_size": 2048, "engine": "fused"}),
    (["--optimizer", "sparse_adam", "--lr", "0.01"],
     {"optimizer": "sparse_adam", "lr": 0.01, "batch_size": 2048, "engine": "fused"}),
    (["--arch", "cbow"],
     {"optimizer": "sparse_adam", "lr": 0.005, "batch_size": 512, "engine": "autograd"}),
    (["--arch", "cbow", "--batch-size", "64"],
     {"optimizer": "sparse_adam", "lr": 0.005, "batch_size": 64, "engine": "autograd"}),
])
def test_the_cli_trains_each_architectures_recipe_unless_told_otherwise(
    tiny_corpus: Path, tmp_path: Path, argv: list[str], expected: dict[str, object]
) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [
        "train", "word2vec", *argv, "--train-file", str(tiny_corpus), "--out-dir", str(out),
        "--checkpoint-dir", str(tmp_path / "ckpt"), "--wordsim-dir", str(tmp_path / "none"),
        "--min-count", "1", "--embed-size", "8", "--max-steps", "2", "--checkpoint-every", "0",
    ])
    assert result.exit_code == 0, result.output
    training = json.loads((out / "card.json").read_text())["training"]
    assert {k: training[k] for k in expected} == expected


def test_an_unknown_optimizer_is_refused_before_training(
    tiny_corpus: Path, tmp_path: Path
) -> None:
    result = CliRunner().invoke(app, ["train", "word2vec", "--optimizer", "rmsprop",
                                      "--out-dir", str(tmp_path / "out")])
    assert result.exit_code == 2 and "sgd, sparse_adam, adam" in result.output
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        train(_config(tiny_corpus, tmp_path, optimizer="rmsprop"))
    assert not (tmp_path / "artifact").exists()


def test_a_diverging_run_stops_with_the_knob_to_turn_and_writes_nothing(
    tiny_corpus: Path, tmp_path: Path
) -> None:
    with pytest.raises(FloatingPointError, match=r"lower --lr"):
        train(_config(tiny_corpus, tmp_path, optimizer="sgd", lr=1e30, checkpoint_every=1))
    assert not (tmp_path / "artifact").exists()
    result = CliRunner().invoke(app, [
        "train", "word2vec", "--train-file", str(tiny_corpus), "--out-dir", str(tmp_path / "o"),
        "--checkpoint-dir", str(tmp_path / "ck"), "--min-count", "1", "--lr", "1e30",
    ])
    assert result.exit_code == 1 and "lower --lr" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "o").exists()
