"""The matching trainer end to end on tiny fixture files: artifact, index card, predictor,
``modelzoo evaluate matching`` and pretrained-vector initialisation."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from models.cli import app
from models.common.manifest import verify_manifest
from models.matching.data import WIKIQA_HEADER, read_pairs, split_path
from models.matching.evaluate import evaluate_file
from models.matching.features import Vocab
from models.matching.predictor import MatchingPredictor
from models.matching.train import (
    TrainConfig,
    freeze_word_embeddings,
    init_embeddings,
    load_vectors,
    to_examples,
    train,
    weight_average,
)

QUESTIONS = ["how do i learn python", "what is the best way to learn python",
             "how can i lose weight", "what is the capital of france",
             "how do i cook rice", "why is the sky blue"]


def _write_fixture(root: Path) -> Path:
    (root / "quora").mkdir(parents=True)
    (root / "wikiqa").mkdir()
    quora = [f"{i % 2}\t{QUESTIONS[i % 6]}\t{QUESTIONS[(i + 1) % 6]}\t{i}" for i in range(40)]
    for split in ("train", "dev"):
        with gzip.open(root / "quora" / f"{split}.tsv.gz", "wt", encoding="utf-8") as f:
            f.write("\n".join(quora) + "\n")
    rows = [WIKIQA_HEADER]
    for q in range(6):
        for c in range(4):
            rows.append(f"Q{q}\t{QUESTIONS[q]}\tD{q}\tT\tD{q}-{c}\t{QUESTIONS[(q + c) % 6]} "
                        f"answer\t{int(c == 0)}")
    for split in ("train", "dev"):
        (root / "wikiqa" / f"WikiQA-{split}.tsv").write_text("\r\n".join(rows) + "\r\n",
                                                             encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("matching")
    data = _write_fixture(tmp / "data")
    out = tmp / "artifacts"
    small = {"dssm": {"hidden": 16, "out_dim": 8},
             "esim": {"embed_dim": 8, "hidden": 8}}
    for arch, dataset in (("dssm", "quora"), ("esim", "wikiqa")):
        cfg = TrainConfig.from_arch(arch, dataset=dataset, data_dir=data, out_root=out,
                                    checkpoint_dir=tmp / "ckpt", model=small[arch],
                                    n_buckets=256, epochs=2, min_count=1)
        train(cfg)
    return out


def test_training_writes_both_models_an_index_and_a_manifest(trained: Path) -> None:
    index = json.loads((trained / "card.json").read_text())
    assert set(index["models"]) == {"dssm-quora", "esim-wikiqa"}
    assert index["default_match"] == "dssm-quora" and index["default_rank"] == "esim-wikiqa"
    card = json.loads((trained / "esim-wikiqa" / "card.json").read_text())
    assert len(card["history"]) == 2 and 0.0 <= card["metrics"]["map"] <= 1.0
    assert verify_manifest(trained) > 8


def test_predictor_loads_the_artifact_and_evaluate_scores_a_file(trained: Path,
                                                                 tmp_path: Path) -> None:
    predictor = MatchingPredictor.load(trained)
    assert predictor.defaults == {"match": "dssm-quora", "rank": "esim-wikiqa"}
    result = predictor.score_pairs([("how do i learn python", "zzz unknown qqq")])
    assert 0.0 <= result.scores[0] <= 1.0
    file = tmp_path / "pairs.tsv"
    file.write_text("1\thow do i learn python\thow do i learn python\n"
                    "0\twhy is the sky blue\thow do i cook rice\n", encoding="utf-8")
    metrics = evaluate_file(predictor, file)
    assert metrics["format"] == "quora" and metrics["pairs"] == 2
    assert metrics["model"] == "dssm-quora" and 0.0 <= metrics["accuracy"] <= 1.0


def test_evaluate_cli_prints_map_for_a_wikiqa_file(trained: Path) -> None:
    wikiqa = trained.parent / "data" / "wikiqa" / "WikiQA-dev.tsv"
    res = CliRunner().invoke(app, ["evaluate", "matching", "--file", str(wikiqa),
                                   "--artifact-dir", str(trained)])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["format"] == "wikiqa" and out["questions"] == 6 and 0.0 < out["map"] <= 1.0
    bad = CliRunner().invoke(app, ["evaluate", "matching", "--file", str(wikiqa),
                                   "--artifact-dir", str(trained), "--model", "nope"])
    assert bad.exit_code != 0 and "unknown model" in bad.output


def test_pretrained_vectors_fill_known_rows(tmp_path: Path) -> None:
    vocab = Vocab.build([["learn", "python"]], min_count=1)
    path = tmp_path / "vec.txt"
    path.write_text("3 2\nlearn 1.0 2.0\nPython 3.0 4.0\nabsent 5.0 6.0\n", encoding="utf-8")
    vectors, found = load_vectors(path, vocab, 2)
    assert found == 2
    assert vectors[vocab.stoi["python"]].tolist() == [3.0, 4.0]
    with pytest.raises(ValueError, match="embed_dim is 3"):
        load_vectors(path, vocab, 3)
    embedding = torch.nn.Module()
    embedding.word = torch.nn.Embedding(len(vocab), 2)
    assert init_embeddings(embedding, path, vocab) == 2
    assert embedding.word.weight[vocab.stoi["learn"]].tolist() == [1.0, 2.0]


def test_pretrained_vectors_from_a_word2vec_artifact_folder(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"center": torch.tensor([[0.0, 0.0], [1.0, 2.0], [3.0, 4.0]])},
              tmp_path / "model.safetensors")
    (tmp_path / "vocab.json").write_text(json.dumps({"tokens": ["the", "learn", "python"],
                                                     "counts": [9, 5, 5]}))
    (tmp_path / "config.json").write_text(json.dumps({"served": "center"}))
    (tmp_path / "card.json").write_text("{}")
    vocab = Vocab.build([["learn", "python", "other"]], min_count=1)
    vectors, found = load_vectors(tmp_path, vocab, 2)
    assert found == 2
    assert vectors[vocab.stoi["python"]].tolist() == [3.0, 4.0]
    assert vectors[vocab.stoi["other"]].tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="--embed-size 4"):
        load_vectors(tmp_path, vocab, 4)


def test_weight_average_is_an_exponential_moving_average() -> None:
    model = torch.nn.Linear(3, 1)
    assert weight_average(model, 0.0) is None
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="decay"):
            weight_average(model, bad)
    ema = weight_average(model, 0.75)
    assert ema is not None
    start = model.weight.detach().clone()
    ema.update_parameters(model)  # the first update copies the weights
    torch.testing.assert_close(ema.module.weight, start)
    with torch.no_grad():
        model.weight += 4.0
    ema.update_parameters(model)  # 0.75 x old + 0.25 x new
    torch.testing.assert_close(ema.module.weight, start + 1.0)


def test_training_with_ema_keeps_the_averaged_weights_and_resumes(tmp_path: Path) -> None:
    data = _write_fixture(tmp_path / "data")
    cfg = TrainConfig.from_arch("dssm", dataset="quora", data_dir=data,
                                out_root=tmp_path / "out", checkpoint_dir=tmp_path / "ckpt",
                                model={"hidden": 16, "out_dim": 8}, n_buckets=256, epochs=1,
                                min_count=1, batch_size=8, ema=0.9)  # 5 steps an epoch
    card = train(cfg)
    assert card["training"]["ema"] == 0.9
    state = torch.load(tmp_path / "ckpt" / "dssm-quora" / "last.pt", weights_only=False)
    assert "ema" in state
    averaged = {k.removeprefix("module."): v for k, v in state["ema"].items()
                if k.startswith("module.")}
    assert averaged.keys() == state["best_model"].keys()
    for k, v in averaged.items():  # the kept weights are the average, not the last step's
        torch.testing.assert_close(state["best_model"][k], v)
    assert any(not torch.equal(state["model"][k], v) for k, v in averaged.items()
               if v.is_floating_point())
    # a resumed run picks the average up and trains one more epoch
    cfg.epochs, cfg.resume = 2, True
    assert len(train(cfg)["history"]) == 2


def test_ema_is_refused_out_of_range_by_the_cli(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", "matching", "--arch", "dssm", "--ema", "1.5",
                                      "--data-dir", str(tmp_path)])
    assert result.exit_code != 0
    assert "--ema must be in [0, 1)" in result.output


def test_frozen_word_vectors_stay_as_loaded_while_the_rest_trains(tmp_path: Path) -> None:
    data = _write_fixture(tmp_path / "data")
    words = sorted({w for q in QUESTIONS for w in q.split()})
    gen = torch.Generator().manual_seed(0)
    vec = tmp_path / "vec.txt"
    vec.write_text("".join(f"{w} " + " ".join(f"{v:.4f}" for v in torch.randn(8, generator=gen)
                                             .tolist()) + "\n" for w in words))
    cfg = TrainConfig.from_arch("esim", dataset="quora", data_dir=data,
                                out_root=tmp_path / "out", checkpoint_dir=tmp_path / "ckpt",
                                model={"embed_dim": 8, "hidden": 8}, n_buckets=256, epochs=1,
                                min_count=1, batch_size=8, embeddings=vec,
                                freeze_embeddings=True, bf16=False)
    card = train(cfg)
    assert card["training"]["freeze_embeddings"] is True
    state = torch.load(tmp_path / "ckpt" / "esim-quora" / "last.pt", weights_only=False)
    train_ex = to_examples(read_pairs(split_path(data, "quora", "train"))[1])
    vocab = Vocab.build((t for a, b, _, _ in train_ex for t in (a, b)), 1)  # as train() does
    loaded, found = load_vectors(vec, vocab, 8)
    assert found == len(words)
    word = state["model"]["embed.word.weight"]
    known = loaded.abs().sum(1) > 0
    torch.testing.assert_close(word[known], loaded[known])  # not one update
    trainable = [k for k in state["model"] if k != "embed.word.weight"
                 and state["model"][k].is_floating_point()]
    assert len(state["optimizer"]["state"]) == len(trainable)  # Adam moves all the rest
    cfg.freeze_embeddings, cfg.checkpoint_dir = False, tmp_path / "ckpt2"
    train(cfg)  # the same run unfrozen does move the loaded vectors
    moved = torch.load(tmp_path / "ckpt2" / "esim-quora" / "last.pt",
                       weights_only=False)["model"]["embed.word.weight"]
    assert not torch.allclose(moved[known], loaded[known])
    with pytest.raises(ValueError, match="give embeddings"):
        train(TrainConfig.from_arch("esim", dataset="quora", data_dir=data,
                                    out_root=tmp_path / "o2", freeze_embeddings=True))
    with pytest.raises(ValueError, match="no word embedding"):
        freeze_word_embeddings(torch.nn.Linear(2, 2))


def test_freeze_embeddings_without_vectors_is_refused_by_the_cli(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", "matching", "--arch", "bimpm",
                                      "--freeze-embeddings", "--data-dir", str(tmp_path)])
    assert result.exit_code != 0
    assert "--freeze-embeddings needs --embeddings" in result.output
