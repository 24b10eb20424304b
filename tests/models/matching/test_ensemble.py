"""Ensemble matchers (mean of the members' probabilities) on tiny trained models: the
``modelzoo ensemble matching`` command, the served probability, loading errors, the index
default and the held-out-half accuracy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from models.cli import app
from models.common.artifacts import ArtifactError
from models.common.manifest import verify_manifest, write_manifest
from models.common.predictor import predictor_modules
from models.matching.ensemble import held_out_half_accuracy
from models.matching.predictor import EnsembleMatcher, MatchingPredictor
from models.matching.train import TrainConfig, train, write_index
from tests.models.matching.test_train import _write_fixture

PAIRS = [("how do i learn python", "what is the best way to learn python"),
         ("why is the sky blue", "how do i cook rice"),
         ("how can i lose weight", "zzz unknown qqq")]
SMALL = {"dssm": {"hidden": 16, "out_dim": 8}, "esim": {"embed_dim": 8, "hidden": 8}}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<tmp>/artifacts``: dssm and esim on both fixture datasets, then ``ensemble-quora``
    over the two Quora models, made by the CLI; the fixture data is ``<tmp>/data``."""
    tmp = tmp_path_factory.mktemp("ensemble")
    data = _write_fixture(tmp / "data")
    out = tmp / "artifacts"
    for arch in ("dssm", "esim"):
        for dataset in ("quora", "wikiqa"):
            train(TrainConfig.from_arch(arch, dataset=dataset, data_dir=data, out_root=out,
                                        checkpoint_dir=tmp / "ckpt", model=SMALL[arch],
                                        n_buckets=256, epochs=1, min_count=1))
    result = CliRunner().invoke(app, ["ensemble", "matching", "--members",
                                      "dssm-quora,esim-quora", "--artifacts-dir", str(out),
                                      "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    return out


def _copy(built: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(built, tmp_path / "artifacts"))


def test_the_cli_writes_an_ensemble_folder_without_weights(built: Path) -> None:
    folder = built / "ensemble-quora"
    assert sorted(p.name for p in folder.iterdir()) == ["card.json", "ensemble.json"]
    config = json.loads((folder / "ensemble.json").read_text())
    assert config["arch"] == "ensemble" and config["dataset"] == "quora"
    assert config["members"] == ["dssm-quora", "esim-quora"]
    card = json.loads((folder / "card.json").read_text())
    assert card["members"] == config["members"]
    assert set(card["metrics"]) == {"accuracy", "f1", "threshold", "accuracy_at_0.5",
                                    "f1_at_0.5"}
    assert card["metrics"]["threshold"] == round(config["threshold"], 4)
    assert "chosen" in card["dataset"]["note"]
    assert card["held_out_half_accuracy"]["runs"] == 40
    assert 0.0 <= card["held_out_half_accuracy"]["mean"] <= 1.0
    assert card["command"].startswith("modelzoo ensemble matching --members "
                                      "dssm-quora,esim-quora")
    assert set(card["members_on_dev"]) == {"dssm-quora", "esim-quora"}
    index = json.loads((built / "card.json").read_text())
    assert index["models"]["ensemble-quora"]["members"] == ["dssm-quora", "esim-quora"]
    assert verify_manifest(built) > 16


def test_evaluate_prints_the_accuracy_of_the_card(built: Path) -> None:
    dev = built.parent / "data" / "quora" / "dev.tsv.gz"
    result = CliRunner().invoke(app, ["evaluate", "matching", "--file", str(dev), "--model",
                                      "ensemble-quora", "--artifact-dir", str(built)])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    card = json.loads((built / "ensemble-quora" / "card.json").read_text())
    assert out["model"] == "ensemble-quora"
    assert (out["accuracy"], out["f1"]) == (card["metrics"]["accuracy"], card["metrics"]["f1"])


@pytest.mark.parametrize("quantize", [False, True])
def test_ensemble_probability_is_the_mean_of_its_members(built: Path, quantize: bool) -> None:
    predictor = MatchingPredictor.load(built, "cpu", quantize)
    ensemble = predictor.matchers["ensemble-quora"]
    assert isinstance(ensemble, EnsembleMatcher)
    assert ensemble.members == [predictor.matchers["dssm-quora"],
                                predictor.matchers["esim-quora"]]  # shared, not reloaded
    dssm = predictor.score_pairs(PAIRS, model="dssm-quora").scores
    esim = predictor.score_pairs(PAIRS, model="esim-quora").scores
    got = predictor.score_pairs(PAIRS, model="ensemble-quora")
    assert got.scores == pytest.approx([(a + b) / 2 for a, b in zip(dssm, esim, strict=True)],
                                       abs=1e-9)
    assert got.threshold == ensemble.threshold
    assert "ensemble-quora" not in predictor_modules(predictor)  # int8/CUDA: members only


def test_models_info_lists_the_members(built: Path) -> None:
    info = {m["name"]: m for m in MatchingPredictor.load(built).models_info()}
    assert info["ensemble-quora"]["arch"] == "ensemble"
    assert info["ensemble-quora"]["members"] == ["dssm-quora", "esim-quora"]
    assert info["esim-quora"]["members"] is None
    assert info["ensemble-quora"]["params"] == (info["dssm-quora"]["params"]
                                                + info["esim-quora"]["params"])


def test_a_missing_member_is_an_artifact_error_naming_it(built: Path, tmp_path: Path) -> None:
    root = _copy(built, tmp_path)
    shutil.rmtree(root / "esim-quora")
    with pytest.raises(ArtifactError, match="ensemble ensemble-quora: member esim-quora is not"):
        MatchingPredictor.load(root)


@pytest.mark.parametrize("members, fragment", [
    (["dssm-quora", "dssm-wikiqa"], "trained on another dataset"),
    (["dssm-quora", "ensemble-quora"], "member ensemble-quora is not a model folder"),
    ([], "non-empty list"),
])
def test_a_bad_ensemble_json_is_an_artifact_error(built: Path, tmp_path: Path,
                                                  members: list[str], fragment: str) -> None:
    root = _copy(built, tmp_path)
    path = root / "ensemble-quora" / "ensemble.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "members": members}))
    with pytest.raises(ArtifactError, match=fragment):
        MatchingPredictor.load(root)


def test_the_index_default_switches_to_the_ensemble_when_it_is_best(built: Path,
                                                                    tmp_path: Path) -> None:
    root = _copy(built, tmp_path)
    card_path = root / "ensemble-quora" / "card.json"
    card = json.loads(card_path.read_text())
    for accuracy, expected in ((1.0, "ensemble-quora"), (0.0, None)):
        card["metrics"]["accuracy"] = accuracy
        card_path.write_text(json.dumps(card))
        index = write_index(root)
        singles = {n: m["metrics"]["accuracy"] for n, m in index["models"].items()
                   if m["dataset"] == "quora" and n != "ensemble-quora"}
        assert index["default_match"] == (expected or max(singles, key=singles.__getitem__))
        assert index["default_rank"] in ("dssm-wikiqa", "esim-wikiqa")
        assert MatchingPredictor.load(root).defaults["match"] == index["default_match"]
        assert verify_manifest(root) > 16  # the manifest follows the index


def test_the_index_names_its_defaults_and_keeps_quantization_figures_only_for_the_same_models(
        built: Path, tmp_path: Path) -> None:
    root = _copy(built, tmp_path)
    index = write_index(root)
    assert index["name"] == f"matching-{index['default_match']}-{index['default_rank']}"
    card = json.loads((root / "card.json").read_text())
    card["quantization"] = {"rows": ["figures of these models"]}
    (root / "card.json").write_text(json.dumps(card))
    assert write_index(root)["quantization"] == {"rows": ["figures of these models"]}
    member = root / "dssm-quora" / "card.json"
    changed = json.loads(member.read_text())
    changed["metrics"]["accuracy"] = 0.0  # as if retrained: the old figures no longer apply
    member.write_text(json.dumps(changed))
    assert "quantization" not in write_index(root)


def test_a_wikiqa_ensemble_gets_map_and_no_threshold_free_held_out_figure(
        built: Path, tmp_path: Path) -> None:
    root = _copy(built, tmp_path)
    result = CliRunner().invoke(app, [
        "ensemble", "matching", "--members", "esim-wikiqa,dssm-wikiqa", "--name", "both-wikiqa",
        "--artifacts-dir", str(root), "--data-dir", str(built.parent / "data")])
    assert result.exit_code == 0, result.output
    card = json.loads((root / "both-wikiqa" / "card.json").read_text())
    assert {"map", "mrr", "questions", "threshold", "f1"} == set(card["metrics"])
    assert card["held_out_half_accuracy"] is None and "no threshold" in card["dataset"]["note"]
    assert "both-wikiqa" in MatchingPredictor.load(root).matchers


@pytest.mark.parametrize("args, fragment", [
    (["--members", "dssm-quora"], "at least two distinct members"),
    (["--members", "dssm-quora,nope-quora"], "nope-quora is not a model folder"),
    (["--members", "dssm-quora,dssm-wikiqa"], "share one dataset"),
    (["--members", "dssm-quora,esim-quora", "--name", "esim-quora"], "trained model folder"),
    (["--members", "dssm-quora,esim-quora", "--name", "../up"], "must be letters"),
])
def test_the_cli_rejects_bad_members_and_names(built: Path, args: list[str],
                                               fragment: str) -> None:
    result = CliRunner().invoke(app, ["ensemble", "matching", *args, "--artifacts-dir",
                                      str(built), "--data-dir", str(built.parent / "data")])
    assert result.exit_code != 0
    assert fragment in " ".join(result.output.split())


def test_the_cli_refuses_a_changed_artifact(built: Path, tmp_path: Path) -> None:
    root = _copy(built, tmp_path)
    write_manifest(root)
    (root / "dssm-quora" / "vocab.json").write_text("[]")
    result = CliRunner().invoke(app, ["ensemble", "matching", "--members",
                                      "dssm-quora,esim-quora", "--artifacts-dir", str(root),
                                      "--data-dir", str(built.parent / "data")])
    assert result.exit_code == 1 and "integrity check" in result.output


def test_held_out_half_accuracy_tunes_on_one_half_and_scores_the_other() -> None:
    labels = np.array([0, 1] * 50)
    separable = held_out_half_accuracy(labels * 0.8 + 0.1, labels, halvings=5)
    assert separable["mean"] == 1.0 and separable["runs"] == 10
    noise = held_out_half_accuracy(np.random.default_rng(1).random(100), labels)
    assert noise["mean"] < 0.6 and noise["sd"] > 0.0  # tuning on noise does not carry over
    with pytest.raises(ValueError, match="as many labels"):
        held_out_half_accuracy(np.zeros(3), labels)


def test_modelzoo_quantize_writes_int8_for_the_members_only(built: Path, tmp_path: Path) -> None:
    root = _copy(built, tmp_path)
    expected = MatchingPredictor.load(root, "cpu", True).score_pairs(PAIRS, "ensemble-quora")
    result = CliRunner().invoke(app, ["quantize", "matching", "--artifact-dir", str(root)])
    assert result.exit_code == 0, result.output
    assert (root / "esim-quora" / "int8").is_dir()
    assert not (root / "ensemble-quora" / "int8").exists()
    assert verify_manifest(root) > 16
    loaded = MatchingPredictor.load(root, "cpu", True)
    assert loaded.score_pairs(PAIRS, "ensemble-quora").scores == expected.scores
