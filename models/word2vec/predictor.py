"""Serving-side word2vec: nearest words, pair similarity and analogies by cosine."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from models.common.artifacts import load_artifact
from models.common.errors import InvalidInputError, UnknownItemError
from models.word2vec.vectors import WordVectors
from models.word2vec.vocab import Vocab

log = logging.getLogger(__name__)

Neighbor = tuple[str, float]


class Word2VecPredictor:
    """Cosine queries over the trained center vectors.

    Words are looked up as given, then lowercased (PTB is lowercase; ``<unk>`` and ``N``
    are words of their own). Every method runs under ``torch.inference_mode()``.
    """

    task = "word2vec"

    def __init__(self, vectors: WordVectors, card: dict[str, Any]) -> None:
        self.vectors = vectors
        self.vocab: Vocab = vectors.vocab
        self.card = card
        self.device = vectors.device
        self.quantized = False

    @classmethod
    def load(
        cls, artifact_dir: Path, device: torch.device | str = "cpu", quantize: bool = False
    ) -> Word2VecPredictor:
        """Load ``model.safetensors`` (``center``: ``(V, D)`` float16) and ``vocab.json``.

        ``quantize`` is accepted for a uniform interface: the model is an embedding table
        with no Linear/LSTM layer, so dynamic int8 quantization does not apply and float32
        vectors are served (a warning is logged).

        Raises:
            ArtifactError: a file is missing or unreadable.
        """
        if quantize:
            log.warning("word2vec has no Linear/LSTM layers: int8 dynamic quantization "
                        "does not apply, serving float32 vectors")
        tensors, _config, card = load_artifact(artifact_dir, device)
        vectors = WordVectors(Vocab.load(artifact_dir), tensors["center"])
        return cls(vectors, card)

    def warmup(self) -> None:
        """One tiny query (a neighbors search), run once at startup by the service."""
        self.neighbors([self.vocab.tokens[0]], 1)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def resolve(self, word: str) -> int:
        """Vocabulary index of ``word`` (exact match first, then lowercased).

        Raises:
            UnknownItemError: the word is not in the vocabulary.
        """
        index = self.vocab.index.get(word)
        if index is None:
            index = self.vocab.index.get(word.lower())
        if index is None:
            raise UnknownItemError(self.unknown_message([word]), details={"unknown": [word]})
        return index

    def unknown_message(self, words: Sequence[str]) -> str:
        """Explain which words are unknown and what the vocabulary is."""
        quoted = ", ".join(repr(w) for w in words)
        return (
            f"not in the vocabulary: {quoted}. The model knows the {self.vocab_size} words of "
            "the Penn Treebank training set seen at least 5 times (lowercase, '<unk>' for rare "
            "words and 'N' for numbers)"
        )

    def check_k(self, k: int, excluded: int) -> None:
        """Raise :class:`InvalidInputError` unless ``1 <= k <= V - excluded``."""
        limit = self.vocab_size - excluded
        if not 1 <= k <= limit:
            raise InvalidInputError(
                f"k must be between 1 and {limit} (the vocabulary size minus the "
                f"{excluded} query word(s)); got {k}"
            )

    def _pairs(self, scores: torch.Tensor, indices: torch.Tensor) -> list[list[Neighbor]]:
        tokens = self.vocab.tokens
        return [
            [(tokens[j], round(s, 6)) for s, j in zip(srow, irow, strict=True)]
            for srow, irow in zip(scores.tolist(), indices.tolist(), strict=True)
        ]

    def neighbors(self, words: Sequence[str], k: int) -> list[list[Neighbor] | None]:
        """Top-``k`` words by cosine for each word (itself excluded), best first.

        Unknown words get ``None`` instead of a list; use :meth:`resolve` first to make
        them an error.

        Raises:
            InvalidInputError: ``k`` is outside ``1..V-1``.
        """
        self.check_k(k, excluded=1)
        found = {i: self.vocab.index.get(w, self.vocab.index.get(w.lower())) for i, w in
                 enumerate(words)}
        known = [i for i, idx in found.items() if idx is not None]
        results: list[list[Neighbor] | None] = [None] * len(words)
        if known:
            query = torch.tensor([found[i] for i in known], device=self.device)
            with torch.inference_mode():
                scores, top = self.vectors.neighbors(query, k)
            for i, row in zip(known, self._pairs(scores, top), strict=True):
                results[i] = row
        return results

    def canonical(self, word: str) -> str:
        """The vocabulary form of ``word`` (see :meth:`resolve`)."""
        return self.vocab.tokens[self.resolve(word)]

    def similarity(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[float | None, list[str]]]:
        """Cosine similarity per pair; a pair with unknown words gets ``(None, unknown)``."""
        out: list[tuple[float | None, list[str]]] = []
        index = self.vocab.index
        ids = [(index.get(a, index.get(a.lower())), index.get(b, index.get(b.lower())))
               for a, b in pairs]
        known = [n for n, (i, j) in enumerate(ids) if i is not None and j is not None]
        cos: dict[int, float] = {}
        if known:
            left = torch.tensor([ids[n][0] for n in known], device=self.device)
            right = torch.tensor([ids[n][1] for n in known], device=self.device)
            with torch.inference_mode():
                values = self.vectors.cosine(left, right).tolist()
            cos = dict(zip(known, values, strict=True))
        for n, ((a, b), (i, j)) in enumerate(zip(pairs, ids, strict=True)):
            unknown = [w for w, x in ((a, i), (b, j)) if x is None]
            out.append((round(cos[n], 6) if n in cos else None, unknown))
        return out

    def analogy(self, a: str, b: str, c: str, k: int) -> list[Neighbor]:
        """Words nearest ``a - b + c`` by 3CosAdd, the three inputs excluded.

        Raises:
            UnknownItemError: any of the words is unknown (all are named).
            InvalidInputError: ``k`` is outside ``1..V-3``.
        """
        self.check_k(k, excluded=3)
        unknown = [w for w in (a, b, c) if w not in self.vocab and w.lower() not in self.vocab]
        if unknown:
            raise UnknownItemError(self.unknown_message(unknown), details={"unknown": unknown})
        ia, ib, ic = (torch.tensor([self.resolve(w)], device=self.device) for w in (a, b, c))
        with torch.inference_mode():
            scores, top = self.vectors.analogy(ia, ib, ic, k)
        return self._pairs(scores, top)[0]
