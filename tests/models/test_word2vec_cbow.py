"""CBOW with negative sampling: its batches, its masked mean, training, and serving it
beside skip-gram as a second model of the same predictor."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from models.common.artifacts import ArtifactError, read_json, write_json
from models.common.errors import UnknownItemError
from models.common.manifest import verify_manifest, write_manifest
from models.word2vec.data import CBOWEpoch, Corpus, NegativeSampler, SkipGramEpoch
from models.word2vec.model import CBOW
from models.word2vec.predictor import Word2VecPredictor
from models.word2vec.train import TrainConfig, train


def _corpus(n: int = 200, vocab: int = 30, seed: int = 0) -> Corpus:
    rng = np.random.default_rng(seed)
    return Corpus(rng.integers(0, vocab, n), np.repeat(np.arange(n // 20), 20))


def _epoch(cls: type, epoch: int = 0) -> CBOWEpoch:
    counts = np.arange(1, 31, dtype=np.float64)
    return cls(_corpus(), np.ones(30), NegativeSampler(counts), max_window_size=3,
               num_noise_words=4, seed=0, epoch=epoch)


def test_cbow_batch_holds_each_centers_window_and_k_noise_words() -> None:
    dataset = _epoch(CBOWEpoch)
    idx = list(range(0, 40, 3))
    contexts, context_mask, center_negatives, labels = dataset.__getitems__(idx)
    assert contexts.shape == context_mask.shape == (len(idx), 6)
    assert center_negatives.shape == labels.shape == (len(idx), 5)  # center + K = 4
    centers, rows = dataset.examples(idx)
    assert center_negatives[:, 0].tolist() == centers.tolist()
    for b in range(len(idx)):  # the masked contexts are exactly the example's contexts
        assert contexts[b][context_mask[b].bool()].tolist() == rows[b].tolist()
    assert (center_negatives[:, 1:] != center_negatives[:, :1]).all()  # noise != center
    assert labels[:, 0].eq(1).all() and labels[:, 1:].eq(0).all()


def test_cbow_and_skipgram_share_subsampling_and_windows() -> None:
    cbow, skipgram = _epoch(CBOWEpoch), _epoch(SkipGramEpoch)
    assert np.array_equal(cbow.centers, skipgram.centers)
    assert np.array_equal(cbow.context_mask, skipgram.context_mask)
    assert not np.array_equal(_epoch(CBOWEpoch, epoch=1).context_mask, cbow.context_mask)


def test_cbow_averages_only_the_unmasked_contexts() -> None:
    torch.manual_seed(0)
    model = CBOW(12, 8)
    torch.nn.init.normal_(model.center.weight)
    contexts = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    targets = torch.tensor([[6, 7], [8, 9]])
    logits = model(contexts, mask, targets)  # (B, 1, L)
    assert logits.shape == (2, 1, 2)
    padded_differently = contexts.masked_fill(mask == 0, 11)
    assert torch.allclose(model(padded_differently, mask, targets), logits)
    mean = model.context.weight[[4, 5]].mean(dim=0)
    assert torch.allclose(logits[1, 0], model.center.weight[[8, 9]] @ mean, atol=1e-6)


def _cbow_config(corpus: Path, out: Path, tmp: Path, **kw: object) -> TrainConfig:
    base: dict[str, object] = {
        "arch": "cbow", "train_file": corpus, "out_dir": out, "checkpoint_dir": tmp / "ckpt",
        "wordsim_dir": None, "embed_size": 16, "min_count": 1, "batch_size": 32, "epochs": 2,
        "subsample_t": 1e-2, "checkpoint_every": 0,
    }
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def two_model_artifact(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A skip-gram artifact with a manifest and a CBOW one trained into its cbow/ folder."""
    tmp = tmp_path_factory.mktemp("w2v")
    root = tmp / "word2vec"
    train(TrainConfig(train_file=tiny_corpus, out_dir=root, checkpoint_dir=tmp / "ck-sg",
                      wordsim_dir=None, embed_size=16, min_count=1, batch_size=64, epochs=2,
                      subsample_t=1e-2, checkpoint_every=0))
    train(_cbow_config(tiny_corpus, root / "cbow", tmp))
    return root


def test_cbow_artifact_serves_its_context_table_and_keeps_the_parent_manifest_valid(
        two_model_artifact: Path) -> None:
    config = read_json(two_model_artifact / "cbow" / "config.json")
    card = read_json(two_model_artifact / "cbow" / "card.json")
    assert config["arch"] == "cbow" and config["served"] == "context"
    assert card["arch"] == "cbow" and card["name"] == "cbow-ptb"
    assert verify_manifest(two_model_artifact) > 4  # the cbow/ files are covered
    predictor = Word2VecPredictor.load(two_model_artifact / "cbow")
    assert predictor.model_names() == ["cbow"]


def test_predictor_serves_both_models_and_picks_one_per_call(two_model_artifact: Path) -> None:
    predictor = Word2VecPredictor.load(two_model_artifact)
    assert predictor.default_model == "skipgram" and predictor.model_names() == [
        "skipgram", "cbow"]
    assert set(predictor.card["variants"]) == {"cbow"}
    (default,) = predictor.similarity([("chip", "intel")])
    (skipgram,) = predictor.similarity([("chip", "intel")], model="skipgram")
    (cbow,) = predictor.similarity([("chip", "intel")], model="cbow")
    assert default == skipgram and cbow != skipgram
    (nbrs,) = predictor.neighbors(["chip"], 3, model="cbow")
    assert nbrs is not None and len(nbrs) == 3
    assert len(predictor.analogy("chip", "intel", "baby", 2, model="cbow")) == 2


def test_unknown_model_is_named_with_the_served_ones(two_model_artifact: Path) -> None:
    predictor = Word2VecPredictor.load(two_model_artifact)
    with pytest.raises(UnknownItemError, match=r"'glove'.*'skipgram', 'cbow'") as info:
        predictor.neighbors(["chip"], 3, model="glove")
    assert info.value.details == {"models": ["skipgram", "cbow"]}


def test_variant_with_another_vocabulary_is_refused(two_model_artifact: Path,
                                                    tmp_path: Path) -> None:
    copy = tmp_path / "word2vec"
    shutil.copytree(two_model_artifact, copy)
    vocab = read_json(copy / "cbow" / "vocab.json")
    vocab["tokens"] = list(reversed(vocab["tokens"]))
    write_json(copy / "cbow" / "vocab.json", vocab)
    write_manifest(copy)
    with pytest.raises(ArtifactError, match="another vocabulary"):
        Word2VecPredictor.load(copy)


def test_cli_rejects_an_unknown_arch() -> None:
    from typer.testing import CliRunner

    from models.cli import app

    result = CliRunner().invoke(app, ["train", "word2vec", "--arch", "glove"])
    assert result.exit_code != 0 and "skipgram" in result.output


def test_resuming_another_archs_checkpoint_is_refused(tiny_corpus: Path, tmp_path: Path) -> None:
    train(_cbow_config(tiny_corpus, tmp_path / "sg", tmp_path, arch="skipgram"))
    with pytest.raises(ValueError, match="skipgram checkpoint, not cbow"):
        train(_cbow_config(tiny_corpus, tmp_path / "cbow", tmp_path, resume=True))
