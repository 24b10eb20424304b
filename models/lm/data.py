"""PTB for language modelling: Dictionary/Corpus, batchify, truncated-BPTT batches.

Follows the seed tutorial "Pytorch intermediate: Language Model (RNN-LM)" and
pytorch/examples ``word_language_model``: every line gets ``<eos>`` appended, the token
stream is cut into ``batch_size`` parallel streams (batch-first, as the tutorial), and
training walks them in ``seq_length`` chunks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from models.common.artifacts import read_json, write_json

EOS = "<eos>"
UNK = "<unk>"
VOCAB_FILE = "vocab.json"


@dataclass
class Dictionary:
    """Word <-> index, in order of first appearance (the tutorial's ``Dictionary``)."""

    idx2word: list[str] = field(default_factory=list)
    word2idx: dict[str, int] = field(default_factory=dict)

    def add_word(self, word: str) -> int:
        """Index of ``word``, adding it if new."""
        if word not in self.word2idx:
            self.word2idx[word] = len(self.idx2word)
            self.idx2word.append(word)
        return self.word2idx[word]

    def __len__(self) -> int:
        return len(self.idx2word)

    def encode(self, words: list[str]) -> tuple[list[int], list[str]]:
        """Indices of ``words``; unknown words become ``<unk>`` and are returned as well.

        Raises:
            KeyError: the dictionary has no ``<unk>`` and a word is unknown.
        """
        unknown = [w for w in words if w not in self.word2idx]
        unk = self.word2idx.get(UNK)
        if unknown and unk is None:
            raise KeyError(f"unknown words {unknown} and no {UNK} in the vocabulary")
        return [self.word2idx.get(w, unk) for w in words], unknown  # type: ignore[misc]

    def save(self, directory: Path) -> None:
        """Write ``vocab.json`` (the words in index order)."""
        write_json(directory / VOCAB_FILE, {"idx2word": self.idx2word})

    @classmethod
    def load(cls, directory: Path) -> Dictionary:
        """Read ``vocab.json``.

        Raises:
            ArtifactError: the file is missing or not valid JSON.
        """
        d = cls()
        for word in read_json(directory / VOCAB_FILE)["idx2word"]:
            d.add_word(word)
        return d


def tokenize(path: Path, dictionary: Dictionary, grow: bool = True) -> torch.Tensor:
    """Read a PTB-format file into a ``(N,)`` int64 tensor of indices, ``<eos>`` after
    each line.

    Args:
        grow: add new words to ``dictionary`` (training file); otherwise map them to
            ``<unk>`` (any held-out file).

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    ids: list[int] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            words = [*line.split(), EOS]
            if grow:
                ids.extend(dictionary.add_word(w) for w in words)
            else:
                ids.extend(dictionary.encode(words)[0])
    return torch.tensor(ids, dtype=torch.int64)


@dataclass
class Corpus:
    """Train and validation token streams over one dictionary built from train."""

    dictionary: Dictionary
    train: torch.Tensor
    valid: torch.Tensor

    @classmethod
    def load(cls, train_file: Path, valid_file: Path) -> Corpus:
        """Build the dictionary on ``train_file`` and index both files."""
        dictionary = Dictionary()
        train = tokenize(train_file, dictionary, grow=True)
        dictionary.add_word(UNK)
        valid = tokenize(valid_file, dictionary, grow=False)
        return cls(dictionary, train, valid)


def batchify(ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Cut a ``(N,)`` stream into ``batch_size`` parallel streams.

    Returns:
        ``(batch_size, N // batch_size)`` int64; the tail that does not fill a row is dropped.

    Raises:
        ValueError: fewer tokens than ``batch_size``.
    """
    n = ids.numel() // batch_size
    if n == 0:
        raise ValueError(f"{ids.numel()} tokens cannot fill {batch_size} streams")
    return ids[: n * batch_size].view(batch_size, n)


def get_batch(streams: torch.Tensor, i: int, seq_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-word targets for the chunk starting at column ``i``.

    Args:
        streams: ``(B, N)`` from :func:`batchify`.

    Returns:
        ``inputs (B, L)`` and ``targets (B, L)``, ``targets[:, t] == streams[:, i + t + 1]``,
        with ``L = min(seq_length, N - 1 - i)``.
    """
    length = min(seq_length, streams.size(1) - 1 - i)
    return streams[:, i : i + length], streams[:, i + 1 : i + 1 + length]
