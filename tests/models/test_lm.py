"""LSTM LM: data batching, BPTT detaching, perplexity, training smoke and resume."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from models.cli import app
from models.lm.data import EOS, UNK, Corpus, Dictionary, batchify, get_batch
from models.lm.evaluate import perplexity
from models.lm.model import RNNLM, detach
from models.lm.train import TrainConfig, train


def test_tokenize_appends_eos_and_maps_unknown_words(tmp_path: Path) -> None:
    train_file = tmp_path / "train.txt"
    train_file.write_text(" a b c \n b c \n")
    valid_file = tmp_path / "valid.txt"
    valid_file.write_text(" a z \n")
    corpus = Corpus.load(train_file, valid_file)
    words = corpus.dictionary.idx2word
    assert [words[i] for i in corpus.train] == ["a", "b", "c", EOS, "b", "c", EOS]
    assert [words[i] for i in corpus.valid] == ["a", UNK, EOS]


def test_batchify_makes_parallel_streams_and_drops_the_tail() -> None:
    streams = batchify(torch.arange(23), 4)
    assert streams.shape == (4, 5)
    assert streams[1].tolist() == [5, 6, 7, 8, 9]


def test_get_batch_targets_are_inputs_shifted_by_one() -> None:
    streams = batchify(torch.arange(40), 2)  # (2, 20)
    inputs, targets = get_batch(streams, 0, 7)
    assert inputs.shape == targets.shape == (2, 7)
    assert torch.equal(targets[:, :-1], inputs[:, 1:])
    last_in, last_tg = get_batch(streams, 14, 7)  # only 5 columns left to predict
    assert last_in.shape == (2, 5) and last_tg[0, -1] == 19


def test_detached_hidden_state_does_not_grow_the_graph() -> None:
    model = RNNLM(30, 8, 16)
    hidden = model.init_hidden(2)
    x = torch.randint(0, 30, (2, 5))
    _, hidden = model(x, hidden)
    assert hidden[0].grad_fn is not None
    hidden = detach(hidden)
    assert hidden[0].grad_fn is None and not hidden[0].requires_grad
    logits, _ = model(x, hidden)
    logits.sum().backward()  # only this chunk's graph: no error, grads exist
    assert model.embed.weight.grad is not None


def test_perplexity_is_exp_of_mean_nll() -> None:
    model = RNNLM(50, 8, 8)
    torch.nn.init.zeros_(model.linear.weight)
    torch.nn.init.zeros_(model.linear.bias)  # uniform prediction -> perplexity == V
    assert perplexity(model, torch.randint(0, 50, (400,)), batch_size=4) == pytest.approx(50)
    with torch.no_grad():
        model.linear.bias[7] = 3.0
    ids = torch.full((400,), 7)
    p7 = math.exp(3.0) / (math.exp(3.0) + 49)
    assert perplexity(model, ids, batch_size=4, seq_length=9) == pytest.approx(1 / p7, rel=1e-4)


def test_tied_weights_share_one_tensor() -> None:
    model = RNNLM(40, 16, 16, num_layers=2, dropout=0.3, tie_weights=True)
    assert model.linear.weight.data_ptr() == model.embed.weight.data_ptr()
    with pytest.raises(ValueError, match="embed_size == hidden_size"):
        RNNLM(40, 8, 16, tie_weights=True)


def _cfg(corpus: Path, tmp: Path, **kw: object) -> TrainConfig:
    base: dict[str, object] = {
        "train_file": corpus, "valid_file": corpus, "out_dir": tmp / "lm",
        "checkpoint_dir": tmp / "ckpt", "embed_size": 16, "hidden_size": 16, "num_layers": 2,
        "dropout": 0.1, "tie_weights": True, "lr": 5.0, "batch_size": 4, "seq_length": 10,
        "epochs": 2, "checkpoint_every": 0,
    }
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_training_lowers_perplexity_and_writes_an_artifact(
    tiny_corpus: Path, tmp_path: Path
) -> None:
    card = train(_cfg(tiny_corpus, tmp_path, epochs=3))
    history = [h["valid_ppl"] for h in card["history"]]
    vocab = len(Dictionary.load(tmp_path / "lm"))
    assert history[-1] < history[0] < vocab * 2
    assert "linear.weight" not in load_file(tmp_path / "lm" / "model.safetensors")
    result = CliRunner().invoke(app, ["evaluate", "lm", "--file", str(tiny_corpus),
                                      "--artifact-dir", str(tmp_path / "lm")])
    assert result.exit_code == 0, result.output
    reported = float(result.output.rsplit("perplexity", 1)[1])
    assert reported == pytest.approx(card["metrics"]["valid_perplexity"], rel=1e-3)


def test_resume_continues_to_the_same_weights(tiny_corpus: Path, tmp_path: Path) -> None:
    straight = train(_cfg(tiny_corpus, tmp_path / "a", epochs=2))
    train(_cfg(tiny_corpus, tmp_path / "b", epochs=2, checkpoint_every=7, max_steps=10))
    resumed = train(_cfg(tiny_corpus, tmp_path / "b", epochs=2, checkpoint_every=7,
                         resume=True))
    assert resumed["history"] == straight["history"]
    a = load_file(tmp_path / "a" / "lm" / "model.safetensors")
    b = load_file(tmp_path / "b" / "lm" / "model.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k])


def test_unknown_preset_is_rejected() -> None:
    with pytest.raises(ValueError, match="preset must be one of"):
        TrainConfig.from_preset("huge")


def test_set_lr_on_resume_changes_the_learning_rate(tiny_corpus: Path, tmp_path: Path) -> None:
    train(_cfg(tiny_corpus, tmp_path, epochs=1))
    card = train(_cfg(tiny_corpus, tmp_path, epochs=2, resume=True, set_lr=1.25))
    assert [h["lr"] for h in card["history"]] == [5.0, 1.25]
