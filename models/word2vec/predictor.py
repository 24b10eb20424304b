"""Serving-side word2vec: nearest words, pair similarity, analogies and 2-D pictures.

The artifact folder holds the default vectors; each sub-folder with its own
``model.safetensors`` + ``vocab.json`` (e.g. ``cbow/``, written by
``modelzoo train word2vec --arch cbow``) is another model over the same vocabulary, picked
per request by name (its card's ``arch``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from models.common.artifacts import WEIGHTS, ArtifactError, load_artifact
from models.common.errors import InvalidInputError, UnknownItemError
from models.word2vec.plot import METHODS, Method, project, render_png
from models.word2vec.vectors import WordVectors
from models.word2vec.vocab import Vocab

log = logging.getLogger(__name__)

Neighbor = tuple[str, float]
PLOT_MAX_WORDS = 100


def served_table(directory: Path, device: torch.device | str = "cpu"
                 ) -> tuple[Vocab, torch.Tensor, dict]:
    """The served embedding table of one word2vec artifact folder (``config.json`` →
    ``served``: ``center`` for skip-gram, ``context`` for CBOW): ``(vocab, (V, D) float16
    table, card)``.

    Raises:
        ArtifactError: a file is missing or the table is absent.
    """
    tensors, config, card = load_artifact(directory, device)
    key = config.get("served", "center")
    if key not in tensors:
        raise ArtifactError(f"{directory / WEIGHTS} has no '{key}' table (config.json "
                            f"names it); it holds {sorted(tensors)}")
    return Vocab.load(directory), tensors[key], card


def _load_vectors(directory: Path, device: torch.device | str) -> tuple[WordVectors, dict]:
    """The served table of one word2vec artifact folder as cosine-ready vectors, and its card."""
    vocab, table, card = served_table(directory, device)
    return WordVectors(vocab, table), card


class Word2VecPredictor:
    """Cosine queries over the trained center vectors.

    Words are looked up as given, then lowercased (PTB is lowercase; ``<unk>`` and ``N``
    are words of their own). Every method runs under ``torch.inference_mode()`` and takes
    an optional ``model`` name (``None``: the default, the artifact folder's own vectors).

    Args:
        vectors: the default model's vectors.
        card: its model card.
        variants: other models by name, ``(vectors, card)``, over the same vocabulary.

    Raises:
        ValueError: a variant's vocabulary differs from the default's, or names collide.
    """

    task = "word2vec"

    def __init__(self, vectors: WordVectors, card: dict[str, Any],
                 variants: dict[str, tuple[WordVectors, dict[str, Any]]] | None = None) -> None:
        self.vectors = vectors
        self.vocab: Vocab = vectors.vocab
        self.default_model: str = card.get("arch", "skipgram")
        self.models: dict[str, WordVectors] = {self.default_model: vectors}
        summaries = {}
        for name, (other, other_card) in (variants or {}).items():
            if name in self.models:
                raise ValueError(f"two word2vec models are named {name!r}")
            if other.vocab.tokens != self.vocab.tokens:
                raise ValueError(f"word2vec model {name!r} has another vocabulary than "
                                 f"{self.default_model!r}; train both on the same data")
            self.models[name] = other
            summaries[name] = {k: other_card[k] for k in ("name", "description", "metrics")
                               if k in other_card}
        self.card = {**card, "variants": summaries} if summaries else card
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
        vectors, card = _load_vectors(artifact_dir, device)
        variants = {}
        for sub in sorted(p for p in artifact_dir.iterdir() if p.is_dir()):
            if (sub / WEIGHTS).is_file() and (sub / "vocab.json").is_file():
                other, other_card = _load_vectors(sub, device)
                variants[str(other_card.get("arch", sub.name))] = (other, other_card)
        try:
            return cls(vectors, card, variants)
        except ValueError as exc:
            raise ArtifactError(f"{artifact_dir}: {exc}") from exc

    def model_names(self) -> list[str]:
        """The served models, the default first."""
        return list(self.models)

    def get_vectors(self, model: str | None = None) -> WordVectors:
        """The vectors of ``model`` (``None``: the default).

        Raises:
            UnknownItemError: no such model (the message lists the served ones).
        """
        if model is None:
            return self.vectors
        try:
            return self.models[model]
        except KeyError:
            raise UnknownItemError(
                f"unknown word2vec model {model!r}: choose one of "
                f"{', '.join(repr(m) for m in self.models)} (default {self.default_model!r})",
                details={"models": self.model_names()},
            ) from None

    def warmup(self) -> None:
        """One tiny query (a neighbors search), run once at startup by the service."""
        self.neighbors([self.vocab.tokens[0]], 1)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def dtype(self) -> str:
        """The dtype queries are computed in (``"float32"``: the float16 files are widened
        at load), reported by ``GET /v1/models``."""
        return str(self.vectors.unit.dtype).removeprefix("torch.")

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

    def neighbors(self, words: Sequence[str], k: int,
                  model: str | None = None) -> list[list[Neighbor] | None]:
        """Top-``k`` words by cosine for each word (itself excluded), best first.

        Unknown words get ``None`` instead of a list; use :meth:`resolve` first to make
        them an error.

        Raises:
            InvalidInputError: ``k`` is outside ``1..V-1``.
            UnknownItemError: an unknown ``model``.
        """
        vectors = self.get_vectors(model)
        self.check_k(k, excluded=1)
        found = {i: self.vocab.index.get(w, self.vocab.index.get(w.lower())) for i, w in
                 enumerate(words)}
        known = [i for i, idx in found.items() if idx is not None]
        results: list[list[Neighbor] | None] = [None] * len(words)
        if known:
            query = torch.tensor([found[i] for i in known], device=self.device)
            with torch.inference_mode():
                scores, top = vectors.neighbors(query, k)
            for i, row in zip(known, self._pairs(scores, top), strict=True):
                results[i] = row
        return results

    def canonical(self, word: str) -> str:
        """The vocabulary form of ``word`` (see :meth:`resolve`)."""
        return self.vocab.tokens[self.resolve(word)]

    def similarity(self, pairs: Sequence[tuple[str, str]],
                   model: str | None = None) -> list[tuple[float | None, list[str]]]:
        """Cosine similarity per pair; a pair with unknown words gets ``(None, unknown)``."""
        vectors = self.get_vectors(model)
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
                values = vectors.cosine(left, right).tolist()
            cos = dict(zip(known, values, strict=True))
        for n, ((a, b), (i, j)) in enumerate(zip(pairs, ids, strict=True)):
            unknown = [w for w, x in ((a, i), (b, j)) if x is None]
            out.append((round(cos[n], 6) if n in cos else None, unknown))
        return out

    def analogy(self, a: str, b: str, c: str, k: int,
                model: str | None = None) -> list[Neighbor]:
        """Words nearest ``a - b + c`` by 3CosAdd, the three inputs excluded.

        Raises:
            UnknownItemError: any of the words is unknown (all are named).
            InvalidInputError: ``k`` is outside ``1..V-3``.
        """
        vectors = self.get_vectors(model)
        self.check_k(k, excluded=3)
        unknown = [w for w in (a, b, c) if w not in self.vocab and w.lower() not in self.vocab]
        if unknown:
            raise UnknownItemError(self.unknown_message(unknown), details={"unknown": unknown})
        ia, ib, ic = (torch.tensor([self.resolve(w)], device=self.device) for w in (a, b, c))
        with torch.inference_mode():
            scores, top = vectors.analogy(ia, ib, ic, k)
        return self._pairs(scores, top)[0]

    def plot(self, words: Sequence[str], method: Method = "pca", model: str | None = None,
             max_words: int = PLOT_MAX_WORDS) -> tuple[bytes, list[str], list[str]]:
        """A PNG of ``words`` projected to 2-D (PCA or t-SNE of the unit vectors), labelled.

        Words are resolved as in :meth:`resolve`; repeats (after resolving) are drawn once.

        Returns:
            ``(png, plotted, unknown)``: the image, the vocabulary forms drawn (in request
            order) and the requested words that are not in the vocabulary.

        Raises:
            InvalidInputError: more than ``max_words`` words, an unknown method, or fewer
                than two distinct known words (the message names the unknown ones).
            UnknownItemError: an unknown ``model``.
        """
        vectors = self.get_vectors(model)
        if len(words) > max_words:
            raise InvalidInputError(f"too many words to plot: {len(words)}; send at most "
                                    f"{max_words}")
        if method not in METHODS:
            raise InvalidInputError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
        index = self.vocab.index
        plotted: dict[int, str] = {}
        unknown: list[str] = []
        for word in words:
            i = index.get(word, index.get(word.lower()))
            if i is None:
                unknown.append(word)
            else:
                plotted.setdefault(i, self.vocab.tokens[i])
        if len(plotted) < 2:
            why = f"; not in the vocabulary: {', '.join(map(repr, unknown))}" if unknown else ""
            raise InvalidInputError(
                f"a plot needs at least 2 distinct words the model knows, got {len(plotted)}"
                f"{why}", details={"unknown": unknown})
        ids = torch.tensor(list(plotted), device=self.device)
        with torch.inference_mode():
            x = vectors.unit[ids].cpu().numpy()  # (N, D)
        coords, axes = project(x, method)
        how = "PCA" if method == "pca" else "t-SNE"
        title = f"{len(plotted)} words, {how} of the {model or self.default_model} vectors"
        drawn = list(plotted.values())
        return render_png(drawn, coords, axes, title), drawn, unknown
