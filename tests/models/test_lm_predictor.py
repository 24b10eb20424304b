"""LM sampling filters and the predictor on a tiny trained model."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from models.lm.predictor import LMPredictor, filter_logits


def test_top_k_keeps_exactly_k_tokens() -> None:
    logits = torch.tensor([[0.1, 2.0, -1.0, 3.0, 0.5, 1.5]])
    kept = filter_logits(logits, top_k=3, top_p=None)
    assert torch.isfinite(kept).sum() == 3
    assert set(torch.nonzero(torch.isfinite(kept[0])).flatten().tolist()) == {1, 3, 5}


def test_top_p_keeps_the_smallest_nucleus() -> None:
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    kept = filter_logits(probs.log(), top_k=None, top_p=0.75)
    assert torch.isfinite(kept[0]).tolist() == [True, True, False, False]
    only_best = filter_logits(probs.log(), top_k=None, top_p=0.1)
    assert torch.isfinite(only_best[0]).tolist() == [True, False, False, False]


def test_same_seed_same_samples(tiny_lm_root: Path) -> None:
    lm = LMPredictor.load(tiny_lm_root / "lm")
    args = ("the chip", 12, 1.0, None, None, 123, 3, False)
    first = [(s.sample, s.token) for s in lm.stream(*args)]
    again = [(s.sample, s.token) for s in lm.stream(*args)]
    other = [(s.sample, s.token) for s in lm.stream(*args[:5], 124, 3, False)]
    assert first == again and len(first) == 36
    assert first != other


def test_stop_at_eos_ends_each_sample(tiny_lm_root: Path) -> None:
    lm = LMPredictor.load(tiny_lm_root / "lm")
    steps = list(lm.stream("", 60, 1.0, None, None, 0, 4, True))
    for sample in range(4):
        own = [s for s in steps if s.sample == sample]
        assert all(not s.finished for s in own[:-1])
        assert sum(s.token == "<eos>" for s in own) <= 1
        if own[-1].token == "<eos>":
            assert own[-1].finished


def test_score_is_consistent_and_reports_unknown_words(tiny_lm_root: Path) -> None:
    lm = LMPredictor.load(tiny_lm_root / "lm")
    tokens, logprobs, ppl, unknown = lm.score("The chip xyzzy computer")
    assert tokens == ["the", "chip", "<unk>", "computer", "<eos>"]
    assert unknown == ["xyzzy"]
    assert all(lp <= 0 for lp in logprobs)
    assert ppl == pytest.approx(math.exp(-sum(logprobs) / len(logprobs)))


def test_int8_quantized_model_stays_close(tiny_lm_root: Path) -> None:
    fp32 = LMPredictor.load(tiny_lm_root / "lm")
    int8 = LMPredictor.load(tiny_lm_root / "lm", quantize=True)
    assert int8.quantized and int8.device.type == "cpu"
    text = "the chip computer and the memory"
    assert int8.score(text)[2] == pytest.approx(fp32.score(text)[2], rel=0.05)


def _score_alone(lm: LMPredictor, text: str) -> list[float]:
    """Reference: one unpadded sequence through the model, as ``score`` did before batching."""
    ids = [*lm.encode(text)[0], lm.eos]
    with torch.inference_mode():
        logits, _ = lm.model(torch.tensor([[lm.eos, *ids[:-1]]]), lm.model.init_hidden(1))
        logp = torch.log_softmax(logits[0].float(), dim=-1)
    return logp[torch.arange(len(ids)), torch.tensor(ids)].tolist()


def test_score_many_pads_without_changing_any_text_score(tiny_lm_root: Path) -> None:
    lm = LMPredictor.load(tiny_lm_root / "lm")
    texts = ["the chip", "a mother and the child of the family school doctor", "memory",
             "The chip xyzzy computer", "N N N <unk> the"]
    batched = lm.score_many(texts)
    assert len(batched) == len(texts)
    for text, (tokens, logprobs, ppl, unknown) in zip(texts, batched, strict=True):
        alone = lm.score(text)
        assert tokens == alone[0] and unknown == alone[3]
        assert len(logprobs) == len(text.split()) + 1
        assert logprobs == pytest.approx(_score_alone(lm, text), abs=1e-5)
        assert logprobs == pytest.approx(alone[1], abs=1e-5)
        assert ppl == pytest.approx(alone[2], rel=1e-5)
    assert lm.score_many([]) == []
