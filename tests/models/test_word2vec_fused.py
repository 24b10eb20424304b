"""The fused skip-gram step gives autograd's gradients and the torch optimizers' updates."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from models.cli import app
from models.word2vec.data import batchify
from models.word2vec.fused import (
    fused_step,
    skipgram_sparse_gradients,
    sparse_skipgram_batch,
)
from models.word2vec.model import SkipGram, masked_sigmoid_bce
from models.word2vec.train import TrainConfig, resolve_engine, train

VOCAB, DIM = 50, 8


def _padded_batch(seed: int, rows: int = 12, words: int = VOCAB) -> tuple[torch.Tensor, ...]:
    """A tutorial-layout batch: rows of different lengths (padding masked), repeated
    centers and repeated words within and across rows (only ``words`` distinct ones)."""
    g = torch.Generator().manual_seed(seed)
    data = []
    for _ in range(rows):
        n = int(torch.randint(1, 4, (1,), generator=g))
        center = int(torch.randint(0, min(words, 6), (1,), generator=g))  # repeated centers
        contexts = torch.randint(0, words, (n,), generator=g).tolist()
        negatives = torch.randint(0, min(words, 10), (2 * n,), generator=g).tolist()
        data.append((center, contexts, negatives))
    return batchify(data)


def _model(seed: int = 0, vocab: int = VOCAB) -> SkipGram:
    torch.manual_seed(seed)
    model = SkipGram(vocab, DIM, sparse=True)
    torch.nn.init.normal_(model.context.weight, 0.0, 0.3)  # nonzero, so both grads are
    torch.nn.init.normal_(model.center.weight, 0.0, 0.3)
    return model


def _autograd_loss(model: SkipGram, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    centers, contexts_negatives, masks, labels = batch
    logits = model(centers, contexts_negatives).reshape(labels.shape)
    return masked_sigmoid_bce(logits, labels, masks).sum()


def _dense(rows: torch.Tensor, grad: torch.Tensor, vocab: int = VOCAB) -> torch.Tensor:
    return torch.zeros(vocab, DIM).index_add_(0, rows, grad)


# A 3-word vocabulary makes the batch hold more entries than (rows x vocabulary) cells:
# the scores then come from the plain gather instead of the sparse product.
@pytest.mark.parametrize("vocab", [VOCAB, 3])
def test_gradients_equal_autograd_on_a_padded_batch(vocab: int) -> None:
    model, batch = _model(vocab=vocab), _padded_batch(0, words=vocab)
    assert (batch[2] == 0).any()  # padding is really there
    assert (batch[1].numel() > len(batch[1]) * vocab) == (vocab == 3)
    loss = _autograd_loss(model, batch)
    loss.backward()
    assert model.center.weight.grad is not None and model.context.weight.grad is not None
    sb = sparse_skipgram_batch(batch)
    grads = skipgram_sparse_gradients(model.center.weight.detach(),
                                      model.context.weight.detach(), sb)
    assert grads.loss == pytest.approx(loss.item(), rel=1e-5)
    torch.testing.assert_close(_dense(grads.center_rows, grads.center_grad, vocab),
                               model.center.weight.grad.to_dense())
    torch.testing.assert_close(_dense(grads.context_rows, grads.context_grad, vocab),
                               model.context.weight.grad.to_dense())
    # Coalesced: one gradient row per distinct word, in ascending order.
    for rows in (grads.center_rows, grads.context_rows):
        assert (rows[1:] > rows[:-1]).all()
    assert set(grads.context_rows.tolist()) == set(batch[1].reshape(-1).tolist())


@pytest.mark.parametrize("name", ["sparse_adam", "sgd"])
def test_steps_equal_the_torch_optimizer(name: str) -> None:
    reference = _model()
    fused = copy.deepcopy(reference)

    def make(model: SkipGram) -> torch.optim.Optimizer:
        params = list(model.parameters())
        if name == "sgd":
            return torch.optim.SGD(params, lr=0.5)
        return torch.optim.SparseAdam(params, lr=0.05)

    opt_ref, opt_fused = make(reference), make(fused)
    for step in range(6):
        batch = _padded_batch(step)
        for group in (*opt_ref.param_groups, *opt_fused.param_groups):
            group["lr"] *= 0.9  # a schedule changes lr between steps, as in training
        opt_ref.zero_grad()
        _autograd_loss(reference, batch).backward()
        opt_ref.step()
        fused_step(fused, opt_fused, sparse_skipgram_batch(batch))
    assert not torch.equal(fused.center.weight, _model().center.weight)  # it did train
    for a, b in ((reference.center.weight, fused.center.weight),
                 (reference.context.weight, fused.context.weight)):
        torch.testing.assert_close(a, b)
    # The optimizer state is the torch optimizer's: checkpoints are interchangeable.
    ref_state, fused_state = opt_ref.state_dict()["state"], opt_fused.state_dict()["state"]
    assert ref_state.keys() == fused_state.keys()
    for key, state in ref_state.items():
        assert state.keys() == fused_state[key].keys()
        for field, value in state.items():
            if isinstance(value, torch.Tensor):
                torch.testing.assert_close(value, fused_state[key][field])
            else:
                assert value == fused_state[key][field]


def test_unsupported_optimizers_are_refused() -> None:
    model, sb = _model(), sparse_skipgram_batch(_padded_batch(0))
    with pytest.raises(TypeError, match="SparseAdam and SGD"):
        fused_step(model, torch.optim.Adagrad(model.parameters()), sb)
    with pytest.raises(ValueError, match="momentum"):
        fused_step(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), sb)


def test_bad_batches_are_refused() -> None:
    centers, contexts_negatives, masks, labels = _padded_batch(0)
    with pytest.raises(ValueError, match="shapes disagree"):
        sparse_skipgram_batch((centers, contexts_negatives[:, :-1], masks, labels))
    masks = masks.clone()
    masks[0] = 0
    with pytest.raises(ValueError, match="unmasked"):
        sparse_skipgram_batch((centers, contexts_negatives, masks, labels))


@pytest.mark.parametrize(("overrides", "engine"), [
    ({}, "fused"),
    ({"optimizer": "sgd"}, "fused"),
    ({"optimizer": "adam"}, "autograd"),
    ({"arch": "cbow"}, "autograd"),
    ({"bf16": True}, "autograd"),
    ({"engine": "autograd"}, "autograd"),
])
def test_auto_takes_the_fused_step_where_it_applies(
    overrides: dict[str, object], engine: str
) -> None:
    assert resolve_engine(TrainConfig(**overrides)) == engine  # type: ignore[arg-type]


def test_forcing_the_fused_step_where_it_does_not_apply_says_why(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"arch 'cbow'.*--engine autograd"):
        resolve_engine(TrainConfig(arch="cbow", engine="fused"))
    result = CliRunner().invoke(app, [
        "train", "word2vec", "--optimizer", "adam", "--engine", "fused",
        "--out-dir", str(tmp_path / "out"), "--checkpoint-dir", str(tmp_path / "ckpt"),
    ])
    assert result.exit_code == 2
    assert "optimizer 'adam'" in result.output and not (tmp_path / "out").exists()
    result = CliRunner().invoke(app, ["train", "word2vec", "--engine", "jit"])
    assert result.exit_code == 2 and "auto, fused or autograd" in result.output


@pytest.mark.parametrize("optimizer", ["sparse_adam", "sgd"])
def test_training_with_either_step_gives_the_same_vectors(
    tiny_corpus: Path, tmp_path: Path, optimizer: str
) -> None:
    vectors = {}
    for engine in ("fused", "autograd"):
        out = tmp_path / engine
        card = train(TrainConfig(
            train_file=tiny_corpus, out_dir=out / "artifact", checkpoint_dir=out / "ckpt",
            wordsim_dir=None, embed_size=16, min_count=1, batch_size=16, epochs=2,
            subsample_t=1e-2, checkpoint_every=0, optimizer=optimizer,  # type: ignore[arg-type]
            lr=0.5 if optimizer == "sgd" else 0.01, engine=engine,  # type: ignore[arg-type]
        ))
        assert card["training"]["engine"] == engine
        vectors[engine] = load_file(out / "artifact" / "model.safetensors")["center"].float()
    # float16 artifacts: equal to the last bit or one float16 step apart
    torch.testing.assert_close(vectors["fused"], vectors["autograd"], atol=2e-3, rtol=2e-3)
