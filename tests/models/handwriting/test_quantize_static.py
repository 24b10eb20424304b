"""Post-training static int8 quantization of the letter CNN (``modelzoo quantize handwriting
--static``): agreement with fp32, calibration on training images only, the stored
observers, and which int8 model the predictor serves."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from models.cli import app
from models.common.artifacts import read_json, write_json
from models.common.manifest import verify_manifest, write_manifest
from models.handwriting import quantize_static as qs
from models.handwriting.augment import prepare_batch
from models.handwriting.data import SETS_64, LabelSet, LetterSet, load_sets
from models.handwriting.predictor import HandwritingPredictor
from tests.conftest import ARTIFACTS, require_data

LETTERS = LabelSet.named("letters")
TRAIN_VALUE, TEST_VALUE = 40, 220  # tiny archives: every train image 40, every test one 220


def _write_tiny_archives(root: Path, names: tuple[str, ...] = SETS_64) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        split = np.array([0] * 20 + [1] * 10)
        images = np.where(split[:, None, None] == 0, TRAIN_VALUE, TEST_VALUE).astype(np.uint8)
        images = np.repeat(images, 64, axis=1).repeat(64, axis=2)  # (30, 64, 64)
        images[:, 20:44, 28:36] = 255  # a stroke, so the CNN sees some ink
        labels = rng.integers(ord("A"), ord("Z") + 1, size=30)
        np.savez(root / f"{name}.npz", images=images, labels=labels,
                 writer=np.zeros(30, np.int32), split=split)
    return root


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    """A copy of the committed handwriting artifact without any int8 folder."""
    out = tmp_path / "handwriting"
    shutil.copytree(ARTIFACTS / "handwriting", out,
                    ignore=shutil.ignore_patterns("int8", qs.STATIC_DIR))
    write_manifest(out)
    return out


def test_static_int8_agrees_with_fp32_on_a_fixed_batch() -> None:
    root = require_data("handwriting")
    predictor = HandwritingPredictor.load(ARTIFACTS / "handwriting")
    images, _ = qs.calibration_images(root, SETS_64, 300, LETTERS, seed=0)
    int8, _ = qs.quantize_static(predictor.model, images, predictor.image_size)
    test = load_sets(root, SETS_64, 1, LETTERS)
    batch = test.images[np.random.default_rng(1).choice(len(test), 600, replace=False)]
    x = prepare_batch(torch.from_numpy(batch), predictor.image_size)
    with torch.inference_mode():
        fp32 = predictor.model(x).argmax(-1)
        quantized = int8(x).argmax(-1)
    agreement = (fp32 == quantized).float().mean().item()
    assert agreement >= 0.98, agreement


def test_calibration_draws_only_training_images(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    root = _write_tiny_archives(tmp_path / "data", ("set-a", "set-b"))
    splits: list[int | None] = []
    real = qs.load_sets

    def spy(root: Path, names: list[str], split: int | None, label_set: LabelSet,
            size: int = 64) -> LetterSet:
        splits.append(split)
        return real(root, names, split, label_set, size)

    monkeypatch.setattr(qs, "load_sets", spy)
    images, per_set = qs.calibration_images(root, ["set-a", "set-b"], 1000, LETTERS)
    assert splits == [0]
    assert len(images) == 40 and per_set == {"set-a": 20, "set-b": 20}
    assert (images[:, 0, 0] == TRAIN_VALUE).all()  # no test image among them
    with pytest.raises(ValueError, match="at least one"):
        qs.calibration_images(root, ["set-a"], 0, LETTERS)


def test_stored_observers_rebuild_the_same_int8_model(artifact: Path) -> None:
    predictor = HandwritingPredictor.load(artifact)
    images = np.random.default_rng(0).integers(0, 256, (64, 64, 64), dtype=np.uint8)
    int8, state = qs.quantize_static(predictor.model, images, predictor.image_size)
    assert all(not t.is_quantized and t.dtype == torch.float32 for t in state.values())
    again = qs.from_observer_state(predictor.model, state)
    x = torch.rand(8, 1, 32, 32)
    assert torch.equal(int8(x), again(x))
    with pytest.raises(Exception, match="do not fit"):
        qs.from_observer_state(predictor.model, dict(list(state.items())[1:]))


def test_cli_measures_writes_and_serves_static_int8(artifact: Path, tmp_path: Path) -> None:
    data = _write_tiny_archives(tmp_path / "data")
    result = CliRunner().invoke(app, ["quantize", "handwriting", "--static", "--artifact-dir",
                                      str(artifact), "--data-dir", str(data),
                                      "--calibration-images", "100"])
    assert result.exit_code == 0, result.output
    assert "fp32" in result.output and "images/s" in result.output
    info = read_json(artifact / qs.STATIC_DIR / qs.INFO)
    assert info["calibration"]["split"].startswith("train")
    assert info["calibration"]["images"] == 100
    assert set(info["accuracy"]) == {*SETS_64, "all"}
    assert info["serve"] == (info["accuracy_drop_points"] <= 0.5)
    assert verify_manifest(artifact) >= 5

    def served() -> str:
        return HandwritingPredictor.load(artifact, "cpu", quantize=True).quantization

    info["serve"] = True
    write_json(artifact / qs.STATIC_DIR / qs.INFO, info)
    assert served() == "static"
    assert HandwritingPredictor.load(artifact, "cpu", quantize=False).quantization == "none"
    info["serve"] = False  # measured drop above the limit: dynamic int8 instead
    write_json(artifact / qs.STATIC_DIR / qs.INFO, info)
    assert served() == "dynamic"
    info["serve"], info["source"]["sha256"] = True, "0" * 64  # calibrated on other weights
    write_json(artifact / qs.STATIC_DIR / qs.INFO, info)
    assert served() == "dynamic"


def test_dynamic_quantize_still_works_beside_static(artifact: Path, tmp_path: Path) -> None:
    predictor = HandwritingPredictor.load(artifact)
    images = np.random.default_rng(0).integers(0, 256, (32, 64, 64), dtype=np.uint8)
    _, state = qs.quantize_static(predictor.model, images, predictor.image_size)
    qs.save_static(artifact, state, {"serve": True})
    write_manifest(artifact)
    result = CliRunner().invoke(app, ["quantize", "handwriting", "--artifact-dir",
                                      str(artifact)])
    assert result.exit_code == 0, result.output
    assert (artifact / "int8" / "model.safetensors").is_file()
    assert HandwritingPredictor.load(artifact, "cpu", quantize=True).quantization == "static"


def test_static_is_refused_for_other_tasks() -> None:
    result = CliRunner().invoke(app, ["quantize", "lm", "--static"])
    assert result.exit_code != 0 and "handwriting" in result.output


def test_quantization_json_is_plain_json(artifact: Path) -> None:
    qs.save_static(artifact, {"x.activation_post_process.min_val": torch.zeros(())},
                   {"serve": False})
    text = (artifact / qs.STATIC_DIR / qs.INFO).read_text(encoding="utf-8")
    assert json.loads(text)["format"] == qs.FORMAT
