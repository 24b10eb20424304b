"""int8 checkpoints (``modelzoo quantize``): plain tensors in safetensors, loaded back with
the same outputs as quantizing at load time; pickles and stale files are not used."""

from __future__ import annotations

import copy
import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from typer.testing import CliRunner

from models.cli import app
from models.common.artifacts import ArtifactError, save_artifact, write_json
from models.common.manifest import verify_manifest, write_manifest
from models.common.quantize import (
    INT8_DIR,
    INT8_INFO,
    INT8_WEIGHTS,
    apply_saved_int8,
    ignoring_saved_int8,
    int8_state,
    load_int8_state,
    quantize_dynamic_int8,
)
from models.lm.predictor import LMPredictor
from models.matching.model import build_model
from models.matching.predictor import MatchingPredictor

PLAIN_DTYPES = {torch.int8, torch.float64, torch.int64, torch.float32}


class Tiny(nn.Module):
    """Embedding → 2-layer bidirectional LSTM → Linear → Linear (no bias)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(30, 8)
        self.lstm = nn.LSTM(8, 12, num_layers=2, bidirectional=True, batch_first=True)
        self.head = nn.Sequential(nn.Linear(24, 8), nn.ReLU(), nn.Linear(8, 3, bias=False))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(self.embed(ids))[0])  # (B, T, 3)


def _quantize(path: Path, task: str) -> str:
    result = CliRunner().invoke(app, ["quantize", task, "--artifact-dir", str(path)])
    assert result.exit_code == 0, result.output
    return result.output


def _lm_outputs(lm: LMPredictor) -> tuple[list[object], list[str]]:
    scored = lm.score_many(["the chip computer", "a baby of the family"])
    tokens = [s.token for s in lm.stream("the chip", 8, 1.0, None, None, 7, 2, False)]
    return scored, tokens


def test_int8_state_is_plain_tensors_that_restore_the_quantized_layers() -> None:
    torch.manual_seed(0)
    model = Tiny().eval()
    reference = quantize_dynamic_int8(copy.deepcopy(model))
    tensors, layers = int8_state(reference)
    assert {t.dtype for t in tensors.values()} <= PLAIN_DTYPES
    assert {n: spec["type"] for n, spec in layers.items()} == {
        "lstm": "LSTM", "head.0": "Linear", "head.2": "Linear"}
    other = copy.deepcopy(model)  # same embedding, different Linear/LSTM weights
    with torch.no_grad():
        for name, p in other.named_parameters():
            if not name.startswith("embed"):
                p.add_(torch.randn_like(p))
    restored = quantize_dynamic_int8(other)
    ids = torch.randint(0, 30, (2, 7))
    assert not torch.equal(restored(ids), reference(ids))
    load_int8_state(restored, tensors, layers)
    assert torch.equal(restored(ids), reference(ids))


def test_a_checkpoint_of_other_layers_is_refused() -> None:
    tensors, layers = int8_state(quantize_dynamic_int8(Tiny().eval()))
    only_linear = quantize_dynamic_int8(Tiny().eval(), frozenset({nn.Linear}))
    with pytest.raises(ArtifactError, match="quantizes layers"):
        load_int8_state(only_linear, tensors, layers)
    del tensors["head.0.bias"]
    with pytest.raises(ArtifactError, match=r"head\.0"):
        load_int8_state(quantize_dynamic_int8(Tiny().eval()), tensors, layers)


def test_lm_int8_checkpoint_gives_the_outputs_of_quantizing_at_load(
        tiny_lm_root: Path, tmp_path: Path) -> None:
    artifact = shutil.copytree(tiny_lm_root / "lm", tmp_path / "lm")
    write_manifest(artifact)
    expected = _lm_outputs(LMPredictor.load(artifact, "cpu", quantize=True))
    output = _quantize(artifact, "lm")
    assert "layers" in output
    assert (artifact / INT8_DIR / INT8_WEIGHTS).is_file()
    info = json.loads((artifact / INT8_DIR / INT8_INFO).read_text())
    assert set(info["layers"]) == {"lstm", "linear"} and info["source"]["sha256"]
    assert {t.dtype for t in load_file(artifact / INT8_DIR / INT8_WEIGHTS).values()} <= (
        PLAIN_DTYPES)
    assert verify_manifest(artifact) >= 6  # the manifest now lists int8/ too

    loaded = LMPredictor.load(artifact, "cpu", quantize=True)
    assert loaded.quantized and loaded.device == torch.device("cpu")
    assert _lm_outputs(loaded) == expected

    # the stored weights are what is served: change one and the outputs change
    path = artifact / INT8_DIR / INT8_WEIGHTS
    tensors = load_file(path)
    tensors["linear.weight.int8"] = torch.flip(tensors["linear.weight.int8"], dims=[0])
    save_file(tensors, path)
    assert _lm_outputs(LMPredictor.load(artifact, "cpu", quantize=True)) != expected
    with ignoring_saved_int8():
        assert _lm_outputs(LMPredictor.load(artifact, "cpu", quantize=True)) == expected


def test_a_pickled_int8_file_is_refused_without_running_it(tiny_lm_root: Path,
                                                           tmp_path: Path) -> None:
    artifact = shutil.copytree(tiny_lm_root / "lm", tmp_path / "lm")
    _quantize(artifact, "lm")
    ran: list[str] = []

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (ran.append, ("pickled code ran",))

    torch.save({"linear.weight.int8": Payload()}, artifact / INT8_DIR / INT8_WEIGHTS)
    with pytest.raises(ArtifactError, match="not a safetensors file"):
        LMPredictor.load(artifact, "cpu", quantize=True)
    assert ran == []


def test_a_stale_int8_file_is_ignored_with_a_warning(tiny_lm_root: Path, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    artifact = shutil.copytree(tiny_lm_root / "lm", tmp_path / "lm")
    _quantize(artifact, "lm")
    weights = load_file(artifact / "model.safetensors")  # "retrained": other float weights
    weights = {k: v * 1.5 if v.is_floating_point() else v for k, v in weights.items()}
    save_file(weights, artifact / "model.safetensors")
    model = LMPredictor.load(artifact, "cpu", quantize=False).model
    with caplog.at_level(logging.WARNING, logger="models.common.quantize"):
        used = apply_saved_int8(quantize_dynamic_int8(model), artifact)
    assert used is False
    assert "other float weights" in caplog.text


def _tiny_matching(root: Path) -> Path:
    """Four untrained tiny matchers (LSTM, Linear, conv) in the trainer's layout."""
    torch.manual_seed(0)
    tokens = ["<pad>", "<unk>", "how", "do", "i", "learn", "python", "what", "is"]
    sizes = {"vocab_size": len(tokens), "n_buckets": 64}
    archs = {"dssm": {"hidden": 16, "out_dim": 8},
             "mvlstm": {"embed_dim": 8, "hidden": 8, "k": 3, "mlp_hidden": 8},
             "matchpyramid": {"embed_dim": 8, "channels": 4, "mlp_hidden": 8},
             "esim": {"embed_dim": 8, "hidden": 8}}
    for arch, model_cfg in archs.items():
        model = build_model(arch, **sizes, **model_cfg).eval()
        config = {"arch": arch, "model": {**sizes, **model_cfg}, "dataset": "quora",
                  "featurizer": {"n_buckets": 64, "max_len": 16}, "threshold": 0.5}
        folder = root / f"{arch}-quora"
        save_artifact(folder, {k: v.half() if v.is_floating_point() else v
                               for k, v in model.state_dict().items()}, config, {"metrics": {}})
        write_json(folder / "vocab.json", tokens)
    write_json(root / "card.json", {"task": "matching", "default_match": "esim-quora"})
    write_manifest(root)
    return root


def test_matching_int8_checkpoints_give_the_outputs_of_quantizing_at_load(
        tmp_path: Path) -> None:
    root = _tiny_matching(tmp_path / "matching")
    pairs = [("how do i learn python", "what is python"), ("what is", "how do i")]
    fresh = MatchingPredictor.load(root, "cpu", quantize=True)
    expected = {name: fresh.score_pairs(pairs, model=name).scores for name in fresh.matchers}
    _quantize(root, "matching")
    for name in fresh.matchers:
        assert (root / name / INT8_DIR / INT8_WEIGHTS).is_file()
    assert verify_manifest(root) > 12
    loaded = MatchingPredictor.load(root, "cpu", quantize=True)
    assert {name: loaded.score_pairs(pairs, model=name).scores
            for name in loaded.matchers} == expected


def test_quantize_refuses_word2vec_and_a_changed_artifact(tiny_lm_root: Path,
                                                          tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["quantize", "word2vec"])
    assert result.exit_code != 0 and "no Linear/LSTM layer" in result.output
    artifact = shutil.copytree(tiny_lm_root / "lm", tmp_path / "lm")
    write_manifest(artifact)
    (artifact / "vocab.json").write_text("[]")
    result = CliRunner().invoke(app, ["quantize", "lm", "--artifact-dir", str(artifact)])
    assert result.exit_code == 1 and "integrity check" in result.output
    assert not (artifact / INT8_DIR).exists()
