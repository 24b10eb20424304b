"""The LoRA-fine-tuned MiniLM matchers on a tiny randomly initialised BERT (the real
tokenizer, not the real weights): pooling, adapter merge, artifact round trip, smoke
fine-tunes of the cross-encoder and the bi-encoder, and the served artifact where present."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.common.artifacts import ArtifactError, load_artifact
from models.common.paths import artifacts_dir
from models.matching.predictor import MatchingPredictor
from models.matching.train_transformer import TransformerTrainConfig, train_transformer
from models.matching.transformer import (
    BI,
    CROSS,
    TransformerMatcher,
    build_transformer,
    load_tokenizer,
    load_transformer,
    mean_pool,
    trainable_state,
)
from tests.models.matching.test_train import _write_fixture

TINY_BERT = {"vocab_size": 30522, "hidden_size": 32, "num_hidden_layers": 2,
             "num_attention_heads": 2, "intermediate_size": 64,
             "max_position_embeddings": 128}


def _config(arch: str) -> dict[str, object]:
    return {"arch": arch, "dataset": "quora", "max_length": 64,
            "model": {"pooling": "mean", "bert_config": TINY_BERT,
                      "lora": {"r": 4, "alpha": 8, "dropout": 0.0}}}


def _perturbed(arch: str) -> torch.nn.Module:
    """A tiny model whose LoRA B matrices are non-zero (fresh ones are zero: a no-op)."""
    torch.manual_seed(0)
    model = build_transformer(_config(arch))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.5)
    return model.eval()


def test_mean_pool_ignores_padding() -> None:
    hidden = torch.randn(2, 5, 4)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    pooled = mean_pool(hidden, mask)
    torch.testing.assert_close(pooled[0], hidden[0, :3].mean(0))
    hidden[0, 3:] = 1e6  # padding states must not move the mean
    torch.testing.assert_close(mean_pool(hidden, mask)[0], pooled[0])


def test_only_adapters_and_head_are_trainable() -> None:
    model = build_transformer(_config(CROSS))
    names = list(trainable_state(model))
    assert names and all("lora_" in n or n.startswith("head.") for n in names)
    assert any(n.startswith("head.") for n in names)


@pytest.mark.parametrize("arch", [CROSS, BI])
def test_merged_model_scores_like_the_adapter_model(arch: str) -> None:
    model = _perturbed(arch)
    tokenizer = load_tokenizer()
    pairs = [(["how", "do", "i", "learn", "python"], ["best", "way", "to", "learn", "python"]),
             (["why", "is", "the", "sky", "blue"], ["how", "do", "i", "cook", "rice", "?"])]
    config = _config(arch)
    before = TransformerMatcher("a", model, tokenizer, config, {}).probabilities(
        pairs, torch.device("cpu"))
    torch.manual_seed(0)  # the same random base as _perturbed's (a real base is pretrained)
    merged = load_transformer(trainable_state(model), config)
    assert not any("lora_" in n for n, _ in merged.named_parameters())
    after = TransformerMatcher("b", merged, tokenizer, config, {}).probabilities(
        pairs, torch.device("cpu"))
    assert after == pytest.approx(before, abs=1e-5)
    assert before[0] != pytest.approx(before[1], abs=1e-6)  # the adapters do change scores


def test_bi_encoder_embedding_does_not_depend_on_batch_padding() -> None:
    model = _perturbed(BI)
    matcher = TransformerMatcher("bi", model, load_tokenizer(), _config(BI), {})
    alone = matcher.embed(["why is the sky blue"], torch.device("cpu"))
    padded = matcher.embed(["why is the sky blue", "a much longer text " * 6],
                           torch.device("cpu"), batch_size=2)
    torch.testing.assert_close(alone[0], padded[0], atol=1e-5, rtol=1e-4)
    assert float(alone.norm()) == pytest.approx(1.0, abs=1e-5)


def test_adapter_tensors_that_do_not_fit_are_an_artifact_error() -> None:
    state = trainable_state(_perturbed(CROSS))
    state.pop(next(iter(state)))
    with pytest.raises(ArtifactError, match="missing"):
        load_transformer(state, _config(CROSS))


@pytest.fixture(scope="module")
def fine_tuned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("minilm")
    data = _write_fixture(tmp / "data")
    out = tmp / "artifacts"
    for arch, dataset in ((CROSS, "quora"), (BI, "wikiqa")):
        train_transformer(TransformerTrainConfig(
            arch=arch, dataset=dataset, data_dir=data, out_root=out,
            checkpoint_dir=tmp / "ckpt", epochs=2, batch_size=8, lr=1e-3, bf16=False,
            bert_config=TINY_BERT, lora_r=4, lora_alpha=8, max_length=32, negatives=3))
    return out


def test_smoke_fine_tunes_write_artifacts_the_predictor_serves(fine_tuned: Path) -> None:
    for name in ("minilm-cross-quora", "minilm-bi-wikiqa"):
        tensors, config, card = load_artifact(fine_tuned / name)
        assert all("lora_" in k or k.startswith("head.") for k in tensors)
        assert 0.0 <= config["threshold"] <= 1.0
        assert len(card["history"]) == 2
    _, bi_config, _ = load_artifact(fine_tuned / "minilm-bi-wikiqa")
    assert {"scale", "bias"} <= set(bi_config["model"])
    predictor = MatchingPredictor.load(fine_tuned)
    assert predictor.defaults == {"match": "minilm-cross-quora", "rank": "minilm-bi-wikiqa"}
    result = predictor.score_pairs([("how do i learn python", "why is the sky blue")])
    assert result.model == "minilm-cross-quora" and 0.0 < result.scores[0] < 1.0
    name, ranked = predictor.rank("how do i cook rice",
                                  ["why is the sky blue", "how do i cook rice answer"])
    assert name == "minilm-bi-wikiqa"
    assert [c.score for c in ranked] == sorted((c.score for c in ranked), reverse=True)
    # the bi-encoder's ranking scores equal its pairwise scores (query embedded once)
    pair = predictor.score_pairs([("how do i cook rice", ranked[0].text)],
                                 model="minilm-bi-wikiqa").scores[0]
    assert pair == pytest.approx(ranked[0].score, abs=1e-5)


def test_resume_continues_from_the_checkpoint(tmp_path: Path, fine_tuned: Path) -> None:
    data = _write_fixture(tmp_path / "data")
    cfg = TransformerTrainConfig(arch=CROSS, dataset="quora", data_dir=data,
                                 out_root=tmp_path / "out", checkpoint_dir=tmp_path / "ckpt",
                                 epochs=2, batch_size=8, bf16=False, bert_config=TINY_BERT,
                                 lora_r=4, lora_alpha=8, max_length=32, max_steps=3)
    assert train_transformer(cfg)["training"]["steps"] == 3
    cfg.max_steps, cfg.resume = None, True
    card = train_transformer(cfg)
    assert card["training"]["steps"] == 10  # 2 epochs of 5 batches, 3 of them done before
    assert [h["epoch"] for h in card["history"]] == [1, 2]


def test_init_from_starts_at_the_artifacts_adapters_and_keeps_its_lineage(
        tmp_path: Path, fine_tuned: Path) -> None:
    source = fine_tuned / "minilm-cross-quora"
    data = _write_fixture(tmp_path / "data")
    cfg = TransformerTrainConfig(arch=CROSS, dataset="quora", data_dir=data,
                                 out_root=tmp_path / "out", checkpoint_dir=tmp_path / "ckpt",
                                 epochs=1, batch_size=8, lr=0.0, warmup=0.0, bf16=False,
                                 bert_config=TINY_BERT, lora_r=4, lora_alpha=8, max_length=32,
                                 init_from=source)
    card = train_transformer(cfg)  # lr 0: the weights stay those of the source artifact
    before, _, source_card = load_artifact(source)
    after, _, _ = load_artifact(tmp_path / "out" / "minilm-cross-quora")
    assert set(after) == set(before)
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert card["lineage"][0]["history"] == source_card["history"]
    assert card["metrics"]["accuracy"] == pytest.approx(source_card["metrics"]["accuracy"])


def test_init_from_refuses_an_artifact_with_other_lora_settings(
        tmp_path: Path, fine_tuned: Path) -> None:
    cfg = TransformerTrainConfig(arch=CROSS, dataset="quora",
                                 data_dir=_write_fixture(tmp_path / "data"),
                                 out_root=tmp_path / "out", checkpoint_dir=tmp_path / "ckpt",
                                 epochs=1, batch_size=8, bf16=False, bert_config=TINY_BERT,
                                 lora_r=8, lora_alpha=8, max_length=32,
                                 init_from=fine_tuned / "minilm-cross-quora")
    with pytest.raises(ArtifactError, match=r"model\.lora"):
        train_transformer(cfg)
    cfg.lora_r, cfg.init_from = 4, fine_tuned / "minilm-bi-wikiqa"
    with pytest.raises(ArtifactError, match="same arch"):
        train_transformer(cfg)


SERVED = artifacts_dir() / "matching" / "minilm-cross-quora"


@pytest.mark.skipif(not (SERVED / "config.json").is_file(),
                    reason="the committed minilm-cross-quora artifact is absent")
def test_the_served_cross_encoder_tells_a_duplicate_from_a_different_question() -> None:
    predictor = MatchingPredictor.load(SERVED.parent)
    scores = predictor.score_pairs([
        ("How can I learn to play the guitar quickly?",
         "What is the fastest way to learn guitar?"),
        ("How can I learn to play the guitar quickly?",
         "What is the capital city of Australia?")], model="minilm-cross-quora").scores
    assert scores[0] > 0.5 > scores[1]
