"""Skip-gram and CBOW models and their masked loss (d2l.ai "Pretraining word2vec";
Mikolov et al. 2013a for CBOW)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SkipGram(nn.Module):
    """Skip-gram with two embedding tables: center vectors ``v`` and context vectors ``u``.

    The score of a (center, context-or-noise) pair is ``u_o . v_c`` (Mikolov et al. 2013).

    Args:
        vocab_size: number of words ``V``.
        embed_size: vector dimension ``D`` (100 in the tutorial).
        sparse: emit sparse gradients (pair with ``torch.optim.SparseAdam``).
    """

    #: the table served for cosine queries
    served = "center"

    def __init__(self, vocab_size: int, embed_size: int = 100, sparse: bool = False) -> None:
        super().__init__()
        self.vocab_size, self.embed_size = vocab_size, embed_size
        self.center = nn.Embedding(vocab_size, embed_size, sparse=sparse)  # v
        self.context = nn.Embedding(vocab_size, embed_size, sparse=sparse)  # u
        # word2vec.c initialisation: small uniform center vectors, zero context vectors.
        nn.init.uniform_(self.center.weight, -0.5 / embed_size, 0.5 / embed_size)  # INIT
        nn.init.zeros_(self.context.weight)

    def forward(self, center: torch.Tensor, contexts_and_negatives: torch.Tensor) -> torch.Tensor:
        """Score each center against its contexts and negatives.

        Args:
            center: ``(B, 1)`` int64 word indices.
            contexts_and_negatives: ``(B, L)`` int64 word indices.

        Returns:
            ``(B, 1, L)`` float logits, the batched matrix product ``v (B,1,D) @ u^T (B,D,L)``.
            It is computed as ``(u @ v^T)^T``: the same numbers, and faster on CPU because
            the large ``u`` needs no transposed copy in the backward pass.
        """
        v = self.center(center)  # (B, 1, D)
        u = self.context(contexts_and_negatives)  # (B, L, D)
        return torch.bmm(u, v.transpose(1, 2)).transpose(1, 2)  # (B, L, 1) -> (B, 1, L)


class CBOW(nn.Module):
    """Continuous bag of words: the mean of the context words' vectors predicts the center.

    Two tables as in word2vec.c: input vectors ``v`` (``context``, averaged over the window
    and served, initialised small uniform) and output vectors ``u`` (``center``, scored,
    initialised to zero). The score of a center or noise word ``o`` is ``u_o . mean_c v_c``.

    Args:
        vocab_size: number of words ``V``.
        embed_size: vector dimension ``D``.
        sparse: emit sparse gradients (pair with ``torch.optim.SparseAdam``).
    """

    #: the table served for cosine queries (word2vec.c writes the input vectors, syn0)
    served = "context"

    def __init__(self, vocab_size: int, embed_size: int = 100, sparse: bool = False) -> None:
        super().__init__()
        self.vocab_size, self.embed_size = vocab_size, embed_size
        self.context = nn.Embedding(vocab_size, embed_size, sparse=sparse)  # v
        self.center = nn.Embedding(vocab_size, embed_size, sparse=sparse)  # u
        nn.init.uniform_(self.context.weight, -0.5 / embed_size, 0.5 / embed_size)
        nn.init.zeros_(self.center.weight)

    def forward(
        self, contexts: torch.Tensor, context_mask: torch.Tensor, center_negatives: torch.Tensor
    ) -> torch.Tensor:
        """Score each window's mean context vector against its center and noise words.

        Args:
            contexts: ``(B, C)`` int64 context word indices (anything where padded).
            context_mask: ``(B, C)`` 1 on real contexts, 0 on padding (at least one 1 a row).
            center_negatives: ``(B, L)`` int64, the center then the noise words.

        Returns:
            ``(B, 1, L)`` float logits.
        """
        mask = context_mask.to(self.context.weight.dtype).unsqueeze(2)  # (B, C, 1)
        v = (self.context(contexts) * mask).sum(dim=1, keepdim=True)  # (B, 1, D)
        v = v / mask.sum(dim=1, keepdim=True).clamp_min(1.0)  # masked mean
        u = self.center(center_negatives)  # (B, L, D)
        return torch.bmm(u, v.transpose(1, 2)).transpose(1, 2)  # (B, L, 1) -> (B, 1, L)


def masked_sigmoid_bce(
    logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """The tutorial's ``SigmoidBinaryCrossEntropyLoss``, averaged per row over the mask.

    Args:
        logits: ``(B, L)`` float scores.
        labels: ``(B, L)`` 1 for contexts, 0 for noise words.
        mask: ``(B, L)`` 1 for real entries, 0 for padding.

    Returns:
        ``(B,)`` float32: ``sum_j mask*BCE(logit, label) / sum_j mask`` per row.
    """
    mask_f = mask.float()
    loss = F.binary_cross_entropy_with_logits(
        logits.float(), labels.float(), weight=mask_f, reduction="none"
    )
    return loss.sum(dim=1) / mask_f.sum(dim=1)
