"""The word2vec predictor on the committed artifact (no HTTP)."""

from __future__ import annotations

import pytest
import torch

from models.common.errors import InvalidInputError, UnknownItemError
from models.word2vec.predictor import Word2VecPredictor
from tests.conftest import ARTIFACTS


@pytest.fixture(scope="module")
def predictor() -> Word2VecPredictor:
    return Word2VecPredictor.load(ARTIFACTS / "word2vec")


def test_k_above_vocabulary_size_is_invalid(predictor: Word2VecPredictor) -> None:
    v = predictor.vocab_size
    assert len(predictor.neighbors(["chip"], v - 1)[0] or []) == v - 1
    with pytest.raises(InvalidInputError, match=f"between 1 and {v - 1}"):
        predictor.neighbors(["chip"], v)
    with pytest.raises(InvalidInputError):
        predictor.analogy("king", "man", "woman", v - 2)


def test_neighbors_match_a_brute_force_cosine(predictor: Word2VecPredictor) -> None:
    unit = predictor.vectors.unit
    i = predictor.resolve("stock")
    cos = unit @ unit[i]
    cos[i] = -2
    expected = [predictor.vocab.tokens[j] for j in torch.topk(cos, 5).indices.tolist()]
    (found,) = predictor.neighbors(["stock"], 5)
    assert found is not None and [w for w, _ in found] == expected


def test_analogy_is_nearest_to_a_minus_b_plus_c(predictor: Word2VecPredictor) -> None:
    unit = predictor.vectors.unit
    a, b, c = (predictor.resolve(w) for w in ("japan", "tokyo", "london"))
    target = torch.nn.functional.normalize(unit[a] - unit[b] + unit[c], dim=0)
    cos = unit @ target
    cos[[a, b, c]] = -2
    best = predictor.vocab.tokens[int(cos.argmax())]
    assert predictor.analogy("japan", "tokyo", "london", 1)[0][0] == best


def test_unknown_word_error_names_it(predictor: Word2VecPredictor) -> None:
    with pytest.raises(UnknownItemError, match="'qqqzz'"):
        predictor.resolve("qqqzz")
