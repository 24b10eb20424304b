"""A fused skip-gram training step: closed-form gradients on sparse kernels, lazy updates.

The autograd path (:class:`models.word2vec.model.SkipGram` + :func:`masked_sigmoid_bce` +
``loss.backward()`` + ``SparseAdam``) materialises the ``(B, L, D)`` gathered context
vectors, their ``(B, L, D)`` gradient, and a sparse COO gradient that the optimizer has to
coalesce (sort) every step; on a 2-core CPU that bookkeeping, not arithmetic, is most of
the step. This module computes *the same* loss, gradients and optimizer update without
those intermediates, by writing the batch as a sparse matrix ``A (B, V)`` whose row ``i``
holds the center's ``L`` contexts-and-negatives:

- scores: ``s_ij = u_{o_ij} . v_{c_i}`` is a sampled dense-dense product (SDDMM) of the
  center vectors ``v (B, D)`` and the context table ``U (V, D)`` on ``A``'s pattern;
- ``dLoss/ds = (sigmoid(s) - label) * mask / sum(mask)`` (the tutorial's masked sigmoid
  binary cross-entropy, averaged per row, summed over the batch);
- center gradient ``A_g @ U`` (sparse @ dense, ``(B, D)``), coalesced over repeated centers;
- context gradient ``A_g^T @ v`` for the touched rows only: the transpose, grouped by word,
  is laid out in the data thread (:func:`sparse_skipgram_batch`), so the product directly
  yields one coalesced row per distinct word.

The update is then exactly ``torch.optim.SparseAdam``'s lazy Adam (moments and weights of
the touched rows only, bias correction by the global step; Kingma & Ba 2015) or plain SGD,
reading and writing the optimizer's own state, so checkpoints are interchangeable with
the autograd path. Tests check gradients and updates against autograd + the torch
optimizers.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from models.word2vec.model import SkipGram

# torch warns once that CSR support is "beta"; the tests pin what this module relies on.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta",
                        category=UserWarning)


@dataclass(frozen=True)
class SparseSkipGramBatch:
    """One skip-gram batch laid out for :func:`skipgram_sparse_gradients`.

    ``B`` centers, each with ``L`` contexts-and-negatives (``N = B * L`` entries).

    Attributes:
        centers: ``(B,)`` int64 center words.
        contexts_negatives: ``(N,)`` int64, the batch's ``(B, L)`` matrix row-major.
        crow: ``(B + 1,)`` int64 CSR row pointers of that matrix (``0, L, 2L, ...``).
        labels: ``(B, L)`` float32, 1 on contexts, 0 on noise words (and padding).
        weights: ``(B, L)`` float32, ``mask / mask.sum(row)``: the per-row mean of the loss.
        center_rows: ``(Rc,)`` int64 distinct centers, ascending.
        center_inverse: ``(B,)`` int64 position of each center in ``center_rows``.
        context_rows: ``(R,)`` int64 distinct words of ``contexts_negatives``, ascending.
        context_crow: ``(R + 1,)`` int64 CSR row pointers of the transpose, one row per word.
        context_col: ``(N,)`` int64 batch row (center) of each entry of the transpose.
        context_order: ``(N,)`` int64 flat entry of ``contexts_negatives`` behind each entry
            of the transpose.
    """

    centers: torch.Tensor
    contexts_negatives: torch.Tensor
    crow: torch.Tensor
    labels: torch.Tensor
    weights: torch.Tensor
    center_rows: torch.Tensor
    center_inverse: torch.Tensor
    context_rows: torch.Tensor
    context_crow: torch.Tensor
    context_col: torch.Tensor
    context_order: torch.Tensor

    def __len__(self) -> int:
        return len(self.centers)


def sparse_skipgram_batch(batch: tuple[torch.Tensor, ...]) -> SparseSkipGramBatch:
    """Lay out a ``batchify``-style batch for the fused step (NumPy; run it off the
    training thread, e.g. in :func:`models.common.prefetch.prefetch`).

    Args:
        batch: ``centers (B, 1)``, ``contexts_negatives (B, L)``, ``masks (B, L)`` and
            ``labels (B, L)`` integer tensors, as :func:`models.word2vec.data.batchify` and
            :class:`models.word2vec.data.SkipGramEpoch` return them.

    Raises:
        ValueError: shapes disagree, or a row has an all-zero mask.
    """
    centers_t, cn_t, mask_t, labels_t = batch
    b, length = cn_t.shape
    if centers_t.shape != (b, 1) or mask_t.shape != (b, length) or labels_t.shape != (b, length):
        raise ValueError(f"batch shapes disagree: centers {tuple(centers_t.shape)}, "
                         f"contexts_negatives {tuple(cn_t.shape)}, masks "
                         f"{tuple(mask_t.shape)}, labels {tuple(labels_t.shape)}")
    mask = mask_t.numpy().astype(np.float32)
    per_row = mask.sum(axis=1, keepdims=True)
    if (per_row == 0).any():
        raise ValueError("every row needs at least one unmasked entry")
    flat = cn_t.numpy().reshape(-1).astype(np.int64)
    # Entries grouped by word, batch order kept; a stable sort of 16-bit keys is a radix
    # sort (10x faster than on int64).
    small = flat.size > 0 and flat.min() >= 0 and flat.max() < 2**16
    keys = flat.astype(np.uint16) if small else flat
    order = np.argsort(keys, kind="stable")
    grouped = flat[order]
    starts = np.flatnonzero(np.diff(grouped)) + 1
    crow_t = np.concatenate([[0], starts, [len(flat)]])
    centers = centers_t.numpy().reshape(-1).astype(np.int64)
    center_rows, center_inverse = np.unique(centers, return_inverse=True)
    return SparseSkipGramBatch(
        centers=torch.from_numpy(centers),
        contexts_negatives=torch.from_numpy(flat),
        crow=torch.arange(0, b * length + 1, length, dtype=torch.int64),
        labels=labels_t.to(torch.float32),
        weights=torch.from_numpy(mask / per_row),
        center_rows=torch.from_numpy(center_rows),
        center_inverse=torch.from_numpy(center_inverse.reshape(-1)),
        context_rows=torch.from_numpy(grouped[crow_t[:-1]]),
        context_crow=torch.from_numpy(crow_t.astype(np.int64)),
        context_col=torch.from_numpy(order // length),
        context_order=torch.from_numpy(order),
    )


@dataclass(frozen=True)
class SparseGradients:
    """Coalesced gradients of one batch's summed loss.

    Attributes:
        loss: the batch loss, ``sum_i masked_mean_j BCE(s_ij, label_ij)`` (float).
        center_rows: ``(Rc,)`` int64 center-table rows with a gradient.
        center_grad: ``(Rc, D)`` float32 their gradients.
        context_rows: ``(R,)`` int64 context-table rows with a gradient.
        context_grad: ``(R, D)`` float32 their gradients.
    """

    loss: float
    center_rows: torch.Tensor
    center_grad: torch.Tensor
    context_rows: torch.Tensor
    context_grad: torch.Tensor


def skipgram_sparse_gradients(
    center_weight: torch.Tensor, context_weight: torch.Tensor, sb: SparseSkipGramBatch
) -> SparseGradients:
    """The loss and the gradients autograd would give for ``SkipGram`` + masked BCE.

    Args:
        center_weight: ``(V, D)`` float32 center vectors ``v``.
        context_weight: ``(V, D)`` float32 context vectors ``u``.
        sb: the batch (:func:`sparse_skipgram_batch`).

    Returns:
        :class:`SparseGradients` of the loss summed over the batch (each row averaged over
        its mask), the tutorial's ``l.sum()``.
    """
    b = len(sb)
    vocab_size = context_weight.shape[0]
    v = center_weight.index_select(0, sb.centers)  # (B, D)
    logits = _scores(v, context_weight, sb)  # (B, L)
    loss = F.binary_cross_entropy_with_logits(
        logits, sb.labels, weight=sb.weights, reduction="sum"
    )
    dlogits = (torch.sigmoid(logits) - sb.labels).mul_(sb.weights).reshape(-1)  # (N,)
    a = torch.sparse_csr_tensor(sb.crow, sb.contexts_negatives, dlogits, (b, vocab_size),
                                check_invariants=False)
    grad_v = torch.sparse.mm(a, context_weight)  # (B, D)
    center_grad = torch.zeros(len(sb.center_rows), v.shape[1], dtype=v.dtype)
    center_grad.index_add_(0, sb.center_inverse, grad_v)
    a_t = torch.sparse_csr_tensor(
        sb.context_crow, sb.context_col, dlogits.index_select(0, sb.context_order),
        (len(sb.context_rows), b), check_invariants=False,
    )
    context_grad = torch.sparse.mm(a_t, v)  # (R, D), one row per distinct word
    return SparseGradients(float(loss), sb.center_rows, center_grad, sb.context_rows,
                           context_grad)


def _scores(v: torch.Tensor, context_weight: torch.Tensor, sb: SparseSkipGramBatch
            ) -> torch.Tensor:
    """``s_ij = u_{o_ij} . v_i`` as ``(B, L)`` float32, by SDDMM on the batch's pattern.

    torch's CSR ``sampled_addmm`` fails when the pattern holds more entries than the dense
    ``(B, V)`` matrix has cells (only possible with a toy vocabulary smaller than a row);
    those batches take the plain gather.
    """
    b, vocab_size = len(sb), context_weight.shape[0]
    if len(sb.contexts_negatives) > b * vocab_size:
        u = context_weight.index_select(0, sb.contexts_negatives).reshape(
            *sb.labels.shape, -1)  # (B, L, D)
        return (u * v.unsqueeze(1)).sum(dim=2)
    pattern = torch.sparse_csr_tensor(
        sb.crow, sb.contexts_negatives, sb.weights.reshape(-1), (b, vocab_size),
        check_invariants=False,
    )
    scores = torch.sparse.sampled_addmm(pattern, v, context_weight.t(), beta=0.0)
    return scores.values().reshape(sb.labels.shape)


def _group_of(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> dict:
    for group in optimizer.param_groups:
        if any(p is param for p in group["params"]):
            return group
    raise ValueError("the parameter is not managed by this optimizer")


def sparse_adam_rows_(
    optimizer: torch.optim.SparseAdam, param: torch.Tensor, rows: torch.Tensor,
    grad: torch.Tensor,
) -> None:
    """``SparseAdam.step()`` for one parameter whose coalesced gradient is ``grad`` on ``rows``.

    Same arithmetic as ``torch.optim._functional.sparse_adam`` (lazy Adam: only ``rows``
    have their moments and values updated; the bias correction uses this parameter's
    step count), on the optimizer's own state.

    Args:
        param: ``(V, D)`` float32, updated in place.
        rows: ``(R,)`` int64 distinct rows.
        grad: ``(R, D)`` float32.

    Raises:
        ValueError: ``param`` is not in the optimizer, or ``maximize`` is set.
    """
    group = _group_of(optimizer, param)
    if group.get("maximize", False):
        raise ValueError("maximize=True is not supported by the fused step")
    state = optimizer.state[param]
    if len(state) == 0:
        state["step"] = 0
        state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
    state["step"] += 1
    step = state["step"]
    beta1, beta2 = group["betas"]
    exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
    m = exp_avg.index_select(0, rows)
    m.add_(grad.sub(m).mul_(1 - beta1))  # old += (1 - b1) * (new - old)
    s = exp_avg_sq.index_select(0, rows)
    s.add_(grad.pow(2).sub_(s).mul_(1 - beta2))
    exp_avg.index_copy_(0, rows, m)
    exp_avg_sq.index_copy_(0, rows, s)
    step_size = float(group["lr"]) * math.sqrt(1 - beta2**step) / (1 - beta1**step)
    # index_add_ without ``alpha`` takes a much faster kernel: fold the step size in.
    param.index_add_(0, rows, m.div_(s.sqrt_().add_(group["eps"])).mul_(-step_size))


def sgd_rows_(
    optimizer: torch.optim.SGD, param: torch.Tensor, rows: torch.Tensor, grad: torch.Tensor
) -> None:
    """Plain SGD (``torch.optim.SGD`` without momentum or weight decay) on ``rows``.

    Raises:
        ValueError: ``param`` is not in the optimizer, or momentum, weight decay or
            ``maximize`` is set.
    """
    group = _group_of(optimizer, param)
    if group.get("momentum", 0) or group.get("weight_decay", 0) or group.get("maximize"):
        raise ValueError("the fused step supports SGD without momentum, weight decay or "
                         "maximize")
    param.index_add_(0, rows, grad.mul(-float(group["lr"])))


def fused_step(
    model: SkipGram, optimizer: torch.optim.Optimizer, sb: SparseSkipGramBatch
) -> float:
    """One training step of ``model`` on ``sb``: gradients, then the optimizer's update.

    Equivalent to ``masked_sigmoid_bce(model(...)).sum().backward(); optimizer.step()``
    with ``SparseAdam`` or plain ``SGD`` (both tables' gradients are taken before either
    is updated, as there).

    Returns:
        The batch loss (float, summed over rows).

    Raises:
        TypeError: the optimizer is neither ``SparseAdam`` nor ``SGD``.
    """
    with torch.no_grad():
        grads = skipgram_sparse_gradients(model.center.weight, model.context.weight, sb)
        if isinstance(optimizer, torch.optim.SparseAdam):
            sparse_adam_rows_(optimizer, model.center.weight, grads.center_rows,
                              grads.center_grad)
            sparse_adam_rows_(optimizer, model.context.weight, grads.context_rows,
                              grads.context_grad)
        elif isinstance(optimizer, torch.optim.SGD):
            sgd_rows_(optimizer, model.center.weight, grads.center_rows, grads.center_grad)
            sgd_rows_(optimizer, model.context.weight, grads.context_rows,
                      grads.context_grad)
        else:
            raise TypeError(f"the fused step supports SparseAdam and SGD, not "
                            f"{type(optimizer).__name__}")
    return grads.loss
