"""Cosine nearest neighbours, similarity and analogies over a word-vector table."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from models.word2vec.vocab import Vocab


class WordVectors:
    """Unit-normalised word vectors for cosine queries (what the tutorial's ``get_similar_tokens``
    does, batched).

    Args:
        vocab: the vocabulary; row ``i`` of ``embeddings`` is ``vocab.tokens[i]``.
        embeddings: ``(V, D)`` float tensor (any float dtype; stored as float32 here).
    """

    def __init__(self, vocab: Vocab, embeddings: torch.Tensor) -> None:
        if embeddings.shape[0] != len(vocab):
            raise ValueError(
                f"embeddings have {embeddings.shape[0]} rows but the vocabulary has {len(vocab)}"
            )
        self.vocab = vocab
        self.unit = F.normalize(embeddings.float(), dim=1)  # (V, D) float32

    @property
    def device(self) -> torch.device:
        return self.unit.device

    def nearest(
        self, queries: torch.Tensor, k: int, exclude: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-``k`` words by cosine for each query vector.

        Args:
            queries: ``(Q, D)`` float vectors (normalised here).
            k: neighbours per query, ``1 <= k <= V``.
            exclude: optional ``(Q, E)`` int64 word indices that must not be returned.

        Returns:
            ``(scores (Q, k) float32, indices (Q, k) int64)``, best first.
        """
        sims = F.normalize(queries.float(), dim=1) @ self.unit.T  # (Q, V)
        if exclude is not None:
            sims.scatter_(1, exclude, float("-inf"))
        return torch.topk(sims, k, dim=1)

    def neighbors(self, indices: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-``k`` neighbours of the words ``indices (Q,)``, each word itself excluded."""
        return self.nearest(self.unit[indices], k, exclude=indices[:, None])

    def cosine(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """Cosine similarity of word pairs: ``(P,)`` int64 x ``(P,)`` int64 -> ``(P,)`` float32."""
        return (self.unit[left] * self.unit[right]).sum(dim=1)

    def analogy(
        self, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, k: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """3CosAdd (Mikolov et al. 2013; Levy & Goldberg 2014): words nearest ``a - b + c``.

        ``a, b, c`` are ``(Q,)`` int64; the three input words are excluded from the answers.
        E.g. ``a=king, b=man, c=woman`` -> ``queen``.
        """
        target = self.unit[a] - self.unit[b] + self.unit[c]  # (Q, D)
        return self.nearest(target, k, exclude=torch.stack([a, b, c], dim=1))
