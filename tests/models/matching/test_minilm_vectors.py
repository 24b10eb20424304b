"""Static word vectors from MiniLM (models/matching/minilm_vectors.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.common.artifacts import ArtifactError
from models.matching.features import Vocab
from models.matching.minilm_vectors import encode_words, main, reduce, training_words, write_vec
from models.matching.train import load_vectors
from tests.models.matching.test_train import _write_fixture


def test_reduce_keeps_the_main_directions_and_sets_the_mean_norm() -> None:
    g = torch.Generator().manual_seed(0)
    # 200 points spread along two directions of a 16-d space, plus a little noise
    basis = torch.linalg.qr(torch.randn(16, 16, generator=g))[0][:, :2]
    x = torch.randn(200, 2, generator=g) * torch.tensor([5.0, 2.0]) @ basis.T
    x = x + 0.01 * torch.randn(200, 16, generator=g) + 3.0
    y = reduce(x, 2, scale=7.0)
    assert y.shape == (200, 2) and y.dtype == torch.float32
    assert y.norm(dim=1).mean().item() == pytest.approx(7.0, rel=1e-4)
    # pairwise distances are kept up to the one scale factor
    d_x = torch.cdist(x, x)
    d_y = torch.cdist(y, y)
    ratio = d_y[d_x > 1] / d_x[d_x > 1]
    assert ratio.std().item() < 0.01 * ratio.mean().item()
    with pytest.raises(ValueError, match="dim"):
        reduce(x, 17)


def test_written_vectors_load_back_into_a_matcher_vocabulary(tmp_path: Path) -> None:
    words = ["money", "cash", "lizard"]
    vectors = torch.arange(12, dtype=torch.float32).reshape(3, 4) / 10
    path = tmp_path / "w.vec"
    write_vec(path, words, vectors)
    vocab = Vocab.build([["cash", "money", "unseen"]], min_count=1)
    loaded, found = load_vectors(path, vocab, 4)
    assert found == 2
    torch.testing.assert_close(loaded[vocab.stoi["cash"]], vectors[1])
    torch.testing.assert_close(loaded[vocab.stoi["money"]], vectors[0])
    assert loaded[vocab.stoi["unseen"]].abs().sum() == 0


def test_training_words_come_from_the_training_split_most_frequent_first(
        tmp_path: Path) -> None:
    root = _write_fixture(tmp_path / "data")
    words = training_words(root, "quora")
    assert len(words) == len(set(words)) > 5
    assert len(training_words(root, "quora", min_count=1000)) == 0


def _minilm_or_skip() -> None:
    try:
        from models.matching.transformer import base_model_dir
        base_model_dir()
    except ArtifactError as exc:
        pytest.skip(f"the pretrained MiniLM is not installed: {exc}")


def test_minilm_word_vectors_put_synonyms_close() -> None:
    _minilm_or_skip()
    v = encode_words(["money", "cash", "lizard"], batch_size=2)
    assert v.shape == (3, 384)
    cos = torch.nn.functional.cosine_similarity
    assert cos(v[0], v[1], dim=0) > cos(v[0], v[2], dim=0) + 0.1


def test_the_command_writes_a_file_train_matching_reads(tmp_path: Path) -> None:
    _minilm_or_skip()
    root = _write_fixture(tmp_path / "data")
    out = tmp_path / "quora.vec"
    main(["--data-dir", str(root), "--dataset", "quora", "--dim", "8", "--out", str(out)])
    header = out.read_text(encoding="utf-8").splitlines()[0].split()
    words = training_words(root, "quora")
    assert header == [str(len(words)), "8"]
    vocab = Vocab.build([words], min_count=1)
    loaded, found = load_vectors(out, vocab, 8)
    assert found == len(words)
    assert loaded[2:].norm(dim=1).mean().item() == pytest.approx(8 ** 0.5, rel=1e-3)
