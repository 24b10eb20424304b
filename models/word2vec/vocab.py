"""Word vocabulary with counts (shared by training and serving; no dataset access)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.common.artifacts import read_json, write_json

VOCAB_FILE = "vocab.json"


@dataclass
class Vocab:
    """Index <-> token mapping with corpus counts.

    ``tokens[i]`` is the word with index ``i``; ``counts[i]`` its frequency in the
    training corpus (before subsampling). Tokens are ordered by descending count,
    ties broken alphabetically, so building is deterministic.
    """

    tokens: list[str]
    counts: list[int]
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.tokens) != len(self.counts):
            raise ValueError("tokens and counts must have the same length")
        self.index = {t: i for i, t in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            raise ValueError("duplicate tokens in vocabulary")

    @classmethod
    def build(cls, sentences: Iterable[Sequence[str]], min_count: int = 5) -> Vocab:
        """Count whitespace tokens and keep those seen at least ``min_count`` times."""
        counter = Counter(tok for sent in sentences for tok in sent)
        kept = sorted(
            ((t, c) for t, c in counter.items() if c >= min_count), key=lambda tc: (-tc[1], tc[0])
        )
        return cls([t for t, _ in kept], [c for _, c in kept])

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: object) -> bool:
        return token in self.index

    def counts_array(self) -> np.ndarray:
        """Counts as a float64 array of shape ``(V,)``."""
        return np.asarray(self.counts, dtype=np.float64)

    def save(self, directory: Path) -> None:
        """Write ``vocab.json`` (tokens and counts) into ``directory``."""
        write_json(directory / VOCAB_FILE, {"tokens": self.tokens, "counts": self.counts})

    @classmethod
    def load(cls, directory: Path) -> Vocab:
        """Read ``vocab.json`` from ``directory``.

        Raises:
            ArtifactError: the file is missing or not valid JSON.
        """
        obj = read_json(directory / VOCAB_FILE)
        return cls(list(obj["tokens"]), [int(c) for c in obj["counts"]])
