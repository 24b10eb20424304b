"""Row-wise int8 weight storage: round trip error bound, loading, the CLI, and the real LM."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from models.cli import app
from models.common.artifacts import (
    ArtifactError,
    from_int8_rows,
    int8_rows,
    load_artifact,
    save_artifact,
)
from models.common.manifest import verify_manifest, write_manifest
from models.lm.model import RNNLM

runner = CliRunner()


def test_int8_rows_round_trip_is_within_half_a_step_per_row() -> None:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(50, 40, generator=g) * torch.logspace(-3, 1, 50)[:, None]  # rows of all sizes
    w[7] = 0.0  # an all-zero row must not divide by zero
    stored = int8_rows({"w": w, "b": torch.ones(3)}, ["w"])
    assert set(stored) == {"w.int8_rows", "w.int8_scale", "b"}
    assert stored["w.int8_rows"].dtype == torch.int8 and stored["w.int8_scale"].shape == (50,)
    back = from_int8_rows(dict(stored))
    assert set(back) == {"w", "b"} and back["w"].dtype == torch.float16
    step = w.abs().amax(dim=1, keepdim=True) / 127
    err = (back["w"].float() - w).abs()
    # half a quantization step, plus float16's own rounding of the result
    assert bool((err <= step / 2 + w.abs() * 2**-10 + 1e-7).all())
    assert bool((back["w"][7] == 0).all())
    assert int(stored["w.int8_rows"].abs().max()) == 127  # each row's absmax uses the range


def test_int8_rows_refuses_what_it_cannot_store() -> None:
    with pytest.raises(ValueError, match="2-D float"):
        int8_rows({"v": torch.ones(4)}, ["v"])
    with pytest.raises(ValueError, match="2-D float"):
        int8_rows({"i": torch.ones(2, 2, dtype=torch.int64)}, ["i"])
    with pytest.raises(KeyError):
        int8_rows({"v": torch.ones(2, 2)}, ["nope"])
    with pytest.raises(ArtifactError, match="int8_scale"):
        from_int8_rows({"w.int8_rows": torch.zeros(2, 2, dtype=torch.int8)})


def test_load_artifact_restores_int8_rows_under_the_original_name(tmp_path: Path) -> None:
    w = torch.randn(6, 5)
    save_artifact(tmp_path, int8_rows({"embed.weight": w}, ["embed.weight"]), {}, {})
    tensors, _, _ = load_artifact(tmp_path)
    assert list(tensors) == ["embed.weight"]
    assert torch.allclose(tensors["embed.weight"].float(), w, atol=float(w.abs().max()) / 127)


def _tiny_lm(directory: Path) -> RNNLM:
    torch.manual_seed(0)
    config = {"vocab_size": 200, "embed_size": 64, "hidden_size": 64, "num_layers": 1,
              "dropout": 0.0, "tie_weights": True}
    model = RNNLM(**config)
    with torch.no_grad():  # peaky predictions (embed.weight is also the output layer)
        model.embed.weight.mul_(3.0)
    save_artifact(directory, {k: v.half() for k, v in model.state_dict().items()
                              if k != "linear.weight"}, config, {"name": "tiny"})
    return model


def test_cli_rewrites_weights_card_and_manifest(tmp_path: Path) -> None:
    art = tmp_path / "lm"
    _tiny_lm(art)
    write_manifest(art)
    before = (art / "model.safetensors").stat().st_size
    res = runner.invoke(app, ["store-int8", str(art), "--tensor", "embed.weight",
                              "--tensor", "lstm.weight_hh_l0"])
    assert res.exit_code == 0, res.output
    stored = load_file(art / "model.safetensors")
    assert stored["embed.weight.int8_rows"].dtype == torch.int8 and "embed.weight" not in stored
    card = json.loads((art / "card.json").read_text())
    assert card["weights_storage"]["int8_rows"] == ["embed.weight", "lstm.weight_hh_l0"]
    assert card["weights_storage"]["bytes_before"] == before
    assert card["weights_storage"]["bytes_after"] == (art / "model.safetensors").stat().st_size
    assert card["weights_storage"]["command"].startswith("modelzoo store-int8 ")
    assert verify_manifest(art) == 3  # rewritten: the service's integrity check passes
    res = runner.invoke(app, ["store-int8", str(art), "--tensor", "nope"])
    assert res.exit_code == 2 and "nope" in res.output
    res = runner.invoke(app, ["store-int8", str(art), "--tensor", "lstm.bias_ih_l0"])
    assert res.exit_code == 1 and "2-D float" in res.output


def test_cli_on_a_model_sub_folder_rewrites_the_task_folders_manifest(tmp_path: Path) -> None:
    task = tmp_path / "matching"  # one sub-folder per model, one manifest for the task
    _tiny_lm(task / "model-a")
    _tiny_lm(task / "model-b")
    write_manifest(task)
    res = runner.invoke(app, ["store-int8", str(task / "model-a"), "--tensor", "embed.weight"])
    assert res.exit_code == 0, res.output
    assert verify_manifest(task) == 6  # the task's check passes on the rewritten weights
    assert not (task / "model-a" / "manifest.json").exists()  # no second, nested manifest
    manifest = json.loads((task / "manifest.json").read_text())
    assert manifest["files"]["model-a/model.safetensors"]["bytes"] == (
        task / "model-a" / "model.safetensors").stat().st_size


def test_an_lm_loaded_from_int8_rows_predicts_like_its_float16_weights(tmp_path: Path) -> None:
    fp16, int8 = tmp_path / "fp16", tmp_path / "int8"
    _tiny_lm(fp16)
    shutil.copytree(fp16, int8)
    res = runner.invoke(app, ["store-int8", str(int8), "--tensor", "embed.weight",
                              "--tensor", "lstm.weight_ih_l0", "--tensor", "lstm.weight_hh_l0"])
    assert res.exit_code == 0, res.output
    x = torch.randint(0, 200, (4, 40), generator=torch.Generator().manual_seed(1))
    nll = []
    for art in (fp16, int8):
        tensors, config, _ = load_artifact(art)  # as the LM predictor loads it
        model = RNNLM(**config).eval()
        missing, unexpected = model.load_state_dict(tensors, strict=False)
        assert missing == ["linear.weight"] and not unexpected  # tied to embed.weight
        with torch.no_grad():
            logits, _ = model(x[:, :-1], model.init_hidden(4, torch.device("cpu")))
        logp = torch.log_softmax(logits.float(), dim=-1)
        nll.append(-logp.gather(-1, x[:, 1:, None]).mean())
    assert nll[0] != nll[1]  # the weights did change
    # perplexity = exp(mean NLL) of this small random model moves by under 2 % (the
    # trained 2x650 LM: 86.50 both ways, README)
    assert abs(float(torch.exp(nll[1] - nll[0])) - 1) < 0.02
