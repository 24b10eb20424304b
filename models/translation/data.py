"""Multi30k German→English pairs, text clean-up, a SentencePiece tokenizer and token batches.

The seed tutorial (bentrevett/pytorch-seq2seq part 1) tokenizes with spaCy and lowercases;
we keep case and punctuation and learn one joint subword vocabulary on the training
split only (Kudo & Richardson 2018, SentencePiece), so the output can be detokenized and
scored with sacreBLEU on the raw references.
"""

from __future__ import annotations

import gzip
import logging
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sentencepiece as spm
import torch

log = logging.getLogger(__name__)

PAD, UNK, SOS, EOS = 0, 1, 2, 3  # ids fixed in the SentencePiece model
TOKENIZER_FILE = "spm.model"
_SPACES = re.compile(r"\s+")


def clean(text: str) -> str:
    """NFC-normalise, turn TABs/no-break spaces/runs of whitespace into one space, strip
    (the quirks listed in SOURCES-multi30k.md)."""
    text = unicodedata.normalize("NFC", text).replace("\u00a0", " ")
    return _SPACES.sub(" ", text).strip()


def read_lines(path: Path) -> list[str]:
    """Read a UTF-8 text file, gzipped (``.gz``) or not, one cleaned sentence per line.

    Raises:
        FileNotFoundError: the file does not exist.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")  # not splitlines(): U+2028 etc. must not split a pair
    if lines and lines[-1] == "":
        lines.pop()
    return [clean(line) for line in lines]


def read_pairs(src: Path, tgt: Path) -> list[tuple[str, str]]:
    """Parallel (source, target) sentences.

    Raises:
        ValueError: the files have different line counts.
    """
    a, b = read_lines(src), read_lines(tgt)
    if len(a) != len(b):
        raise ValueError(f"{src} has {len(a)} lines but {tgt} has {len(b)}")
    return list(zip(a, b, strict=True))


def split_paths(data_dir: Path, split: str) -> tuple[Path, Path]:
    """``(<split>.de.gz, <split>.en.gz)`` under the Multi30k folder."""
    return data_dir / f"{split}.de.gz", data_dir / f"{split}.en.gz"


def train_tokenizer(sentences: list[str], out_dir: Path, vocab_size: int = 8000,
                    ) -> Path:
    """Train a joint unigram SentencePiece model on ``sentences`` (both languages).

    Ids: ``<pad>`` 0, ``<unk>`` 1, ``<s>`` 2, ``</s>`` 3. Returns the ``spm.model`` path.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = out_dir / TOKENIZER_FILE.removesuffix(".model")
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_prefix=str(prefix), vocab_size=vocab_size,
        model_type="unigram", character_coverage=1.0, pad_id=PAD, unk_id=UNK, bos_id=SOS,
        eos_id=EOS, input_sentence_size=len(sentences), shuffle_input_sentence=False,
        num_threads=2, minloglevel=2,
    )
    return out_dir / TOKENIZER_FILE


class Tokenizer:
    """SentencePiece subwords ⇄ ids; ``encode`` adds no specials, ``decode`` drops them.

    Raises:
        OSError: the model file cannot be read.
    """

    def __init__(self, model_file: Path) -> None:
        self.sp = spm.SentencePieceProcessor(model_file=str(model_file))
        self.vocab_size = int(self.sp.get_piece_size())

    def encode(self, texts: list[str]) -> list[list[int]]:
        return [list(ids) for ids in self.sp.encode([clean(t) for t in texts])]

    def decode(self, ids: list[list[int]]) -> list[str]:
        return [str(s) for s in self.sp.decode([[i for i in row if i > EOS] for row in ids])]


@dataclass
class Encoded:
    """A split as token ids. ``src`` and ``tgt`` have no specials; ``tgt`` gets ``<s>``/``</s>``
    when batched."""

    src: list[list[int]]
    tgt: list[list[int]]


def pad_batch(rows: list[list[int]], bos_eos: bool) -> torch.Tensor:
    """Right-pad id lists → int64 (B, T_max) with ``PAD``; optionally wrap in ``<s>`` ``</s>``."""
    if bos_eos:
        rows = [[SOS, *r, EOS] for r in rows]
    out = torch.full((len(rows), max(len(r) for r in rows)), PAD, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, :len(r)] = torch.tensor(r, dtype=torch.long)
    return out


def token_batches(data: Encoded, max_tokens: int, rng: np.random.Generator | None,
                  max_len: int = 128) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Length-bucketed batches of about ``max_tokens`` target tokens (padding included).

    Pairs are sorted by length (with random tie-breaking when ``rng`` is given), cut into
    batches, and the batch order is shuffled; pairs longer than ``max_len`` are skipped.

    Yields:
        ``src`` int64 (B, S) and ``tgt`` int64 (B, T) with ``<s>``/``</s>``, PAD-padded.
    """
    lengths = np.array([max(len(s), len(t) + 2) for s, t in zip(data.src, data.tgt, strict=True)])
    keys = lengths + (rng.random(len(lengths)) if rng is not None else 0)
    order = [int(i) for i in np.argsort(keys, kind="stable") if lengths[i] <= max_len]
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        longest = max(longest, int(lengths[i]))
        if current and longest * (len(current) + 1) > max_tokens:
            batches.append(current)
            current, longest = [], int(lengths[i])
        current.append(i)
    if current:
        batches.append(current)
    if rng is not None:
        rng.shuffle(batches)
    for b in batches:
        yield (pad_batch([data.src[i] for i in b], bos_eos=False),
               pad_batch([data.tgt[i] for i in b], bos_eos=True))
