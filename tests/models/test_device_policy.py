"""The device and dtype policy (CUDA availability patched; no GPU needed), and half-precision
casting run for real on CPU with bfloat16."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from models.common.device import cast_for_inference, inference_dtype, resolve_device
from models.lm.predictor import LMPredictor
from models.matching.predictor import MatchingPredictor
from tests.models.test_quantize import _tiny_matching

CUDA, CPU = torch.device("cuda"), torch.device("cpu")


@pytest.fixture(params=[True, False], ids=["cuda", "no-cuda"])
def has_cuda(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    available: bool = request.param
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    return available


def test_auto_is_cuda_when_available_else_cpu(has_cuda: bool) -> None:
    assert resolve_device("auto") == (CUDA if has_cuda else CPU)


def test_cpu_setting_is_cpu(has_cuda: bool) -> None:
    assert resolve_device("cpu") == CPU


@pytest.mark.parametrize("setting", ["auto", "cuda", "cpu"])
def test_a_quantized_model_stays_on_cpu_even_with_cuda(
        monkeypatch: pytest.MonkeyPatch, setting: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device(setting, quantized=True) == CPU


def test_cuda_setting_without_cuda_fails_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="MODELZOO_DEVICE=auto or cpu"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="auto, cpu, cuda"):
        resolve_device("tpu")


@pytest.mark.parametrize(("device", "setting", "quantized", "expected"), [
    (CUDA, "float16", False, torch.float16),
    (CUDA, "bfloat16", False, torch.bfloat16),
    (CUDA, "float32", False, torch.float32),
    (CUDA, "float16", True, torch.float32),
    (CPU, "float16", False, torch.float32),
    (CPU, "bfloat16", False, torch.float32),
])
def test_inference_dtype_is_half_on_cuda_only(device: torch.device, setting: str,
                                              quantized: bool, expected: torch.dtype) -> None:
    assert inference_dtype(device, setting, quantized) == expected


def test_inference_dtype_refuses_an_unknown_dtype() -> None:
    with pytest.raises(ValueError, match="float16, bfloat16, float32"):
        inference_dtype(CUDA, "float8")


def test_cast_casts_weights_and_float_inputs_but_not_ids() -> None:
    model = cast_for_inference(nn.Sequential(nn.Linear(3, 2)), torch.bfloat16)
    assert model[0].weight.dtype == torch.bfloat16
    assert model(torch.ones(2, 3)).dtype == torch.bfloat16
    embed = cast_for_inference(nn.Embedding(5, 2), torch.bfloat16)
    assert embed(torch.tensor([1, 2])).dtype == torch.bfloat16
    same = nn.Linear(3, 2)
    assert cast_for_inference(same, torch.float32) is same and not same._forward_pre_hooks


def test_a_half_precision_lm_still_generates_and_scores(tiny_lm_root: Path) -> None:
    fp32 = LMPredictor.load(tiny_lm_root / "lm")
    half = LMPredictor.load(tiny_lm_root / "lm")
    cast_for_inference(half.model, torch.bfloat16)  # float32 hidden state from init_hidden
    tokens = [s.token for s in half.stream("the chip", 5, 1.0, None, None, 0, 2, False)]
    assert len(tokens) == 10
    (_, logprobs, _, _), = half.score_many(["the chip computer"])
    (_, reference, _, _), = fp32.score_many(["the chip computer"])
    assert logprobs == pytest.approx(reference, abs=0.1)


def test_half_precision_matchers_run_on_packed_sequences(tmp_path: Path) -> None:
    root = _tiny_matching(tmp_path / "matching")
    fp32 = MatchingPredictor.load(root)
    half = MatchingPredictor.load(root)
    for matcher in half.matchers.values():
        cast_for_inference(matcher.model, torch.bfloat16)
    pairs = [("how do i learn python", "what is python"), ("what is", "how do i")]
    for name in fp32.matchers:
        assert half.score_pairs(pairs, model=name).scores == pytest.approx(
            fp32.score_pairs(pairs, model=name).scores, abs=0.02)
