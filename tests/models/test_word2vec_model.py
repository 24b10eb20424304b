"""Skip-gram scores and the masked loss."""

from __future__ import annotations

import torch

from models.word2vec.model import SkipGram, masked_sigmoid_bce


def test_forward_is_the_batched_matrix_product_of_center_and_context_vectors() -> None:
    torch.manual_seed(0)
    model = SkipGram(20, 8)
    torch.nn.init.normal_(model.context.weight)
    center = torch.tensor([[1], [2], [3]])
    ctx_neg = torch.tensor([[4, 5, 6, 7], [8, 9, 10, 0], [1, 1, 2, 3]])
    scores = model(center, ctx_neg)
    assert scores.shape == (3, 1, 4)
    expected = torch.bmm(model.center(center), model.context(ctx_neg).permute(0, 2, 1))
    torch.testing.assert_close(scores, expected)


def test_masked_loss_equals_the_hand_written_formula() -> None:
    logits = torch.tensor([[1.1, -2.2, 3.3, -4.4], [1.1, -2.2, 3.3, -4.4]])
    labels = torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])

    def bce(x: float, y: float) -> float:
        p = 1 / (1 + torch.exp(torch.tensor(-x)))
        return float(-(y * torch.log(p) + (1 - y) * torch.log(1 - p)))

    row0 = (bce(1.1, 1) + bce(-2.2, 0) + bce(3.3, 0) + bce(-4.4, 0)) / 4
    row1 = (bce(1.1, 1) + bce(-2.2, 1)) / 2
    torch.testing.assert_close(masked_sigmoid_bce(logits, labels, mask),
                               torch.tensor([row0, row1]), rtol=1e-5, atol=1e-6)


def test_padding_does_not_change_the_loss() -> None:
    logits = torch.tensor([[0.5, -0.5, 9.0]])
    labels = torch.tensor([[1.0, 0.0, 1.0]])
    full = masked_sigmoid_bce(logits[:, :2], labels[:, :2], torch.ones(1, 2))
    padded = masked_sigmoid_bce(logits, labels, torch.tensor([[1, 1, 0]]))
    torch.testing.assert_close(full, padded)
