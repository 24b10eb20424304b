"""Each predictor's ``warmup()`` (run once at startup by the service) is a real, tiny call."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from models.handwriting.predictor import HandwritingPredictor
from models.lm.predictor import LMPredictor
from models.matching.predictor import MatchingPredictor
from models.translation.predictor import TranslationPredictor
from models.word2vec.predictor import Word2VecPredictor
from tests.conftest import ARTIFACTS
from tests.models.test_quantize import _tiny_matching


def _counting(monkeypatch: pytest.MonkeyPatch, cls: type, name: str) -> list[Any]:
    calls: list[Any] = []
    original: Callable[..., Any] = getattr(cls, name)

    def spy(self: object, *args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, name, spy)
    return calls


def test_word2vec_warmup_is_one_neighbors_query(monkeypatch: pytest.MonkeyPatch) -> None:
    predictor = Word2VecPredictor.load(ARTIFACTS / "word2vec")
    calls = _counting(monkeypatch, Word2VecPredictor, "neighbors")
    predictor.warmup()
    assert len(calls) == 1


def test_lm_warmup_generates_and_scores(tiny_lm_root: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    for quantize in (False, True):
        predictor = LMPredictor.load(tiny_lm_root / "lm", "cpu", quantize)
        calls = _counting(monkeypatch, LMPredictor, "score_many")
        predictor.warmup()
        assert len(calls) == 1
        monkeypatch.undo()


def test_matching_warmup_scores_one_pair_per_model(tmp_path: Path) -> None:
    predictor = MatchingPredictor.load(_tiny_matching(tmp_path / "matching"))
    predictor.warmup()


@pytest.mark.parametrize("quantize", [False, True])
def test_translation_warmup_translates_one_word(monkeypatch: pytest.MonkeyPatch,
                                                quantize: bool) -> None:
    predictor = TranslationPredictor.load(ARTIFACTS / "translation", "cpu", quantize)
    calls = _counting(monkeypatch, TranslationPredictor, "translate")
    with torch.inference_mode():
        predictor.warmup()
    assert len(calls) == 1


def test_handwriting_warmup_classifies_a_blank_crop(monkeypatch: pytest.MonkeyPatch) -> None:
    predictor = HandwritingPredictor.load(ARTIFACTS / "handwriting")
    calls = _counting(monkeypatch, HandwritingPredictor, "classify")
    predictor.warmup()
    assert len(calls) == 1 and calls[0][0].shape == (1, 64, 64)
