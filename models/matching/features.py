"""Text → tensors for the matching models: normalisation, tokens, letter trigrams, batches.

The Quora dev split is CoreNLP-tokenized (``do n't``, ``-LRB-``, `````` ``...'' ``````) while
our Quora training set and WikiQA are raw text (SOURCES-quora.md section 5), so every text
goes through one :func:`normalize` + :func:`tokenize` and both spellings give the same
tokens. Each token also gets its letter trigrams (``#good#`` → ``#go goo ood od#``), the
word hashing of DSSM (Huang et al. 2013), hashed into ``n_buckets`` with CRC-32 (stable
across processes, unlike Python's ``hash``). Exact-match flags (a token of one text occurs
in the other) are the feature of Wang et al. 2016 / DIIN (Gong et al. 2018).
"""

from __future__ import annotations

import functools
import re
import unicodedata
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields

import torch

PAD, UNK = 0, 1
SPECIALS = ("<pad>", "<unk>")
MAX_TRIGRAMS = 12  # letter trigrams kept per token (a 12-letter word has 12 with '#...#')

_PTB_ESCAPES = {"-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "{",
                "-RCB-": "}", "``": '"', "''": '"'}
_ESCAPE_RE = re.compile("|".join(re.escape(k) for k in _PTB_ESCAPES))
_NOT_RE = re.compile(r"\s?n't\b", re.IGNORECASE)  # "DON'T" as "don't" (before lower())
_TOKEN_RE = re.compile(r"\w+|[^\w\s]")


def normalize(text: str) -> str:
    """NFKC, PTB bracket/quote escapes undone, ``n't`` → `` not``, lower case.

    ``"Don't"`` and ``"Do n't"`` both become ``"do not"``; ``"-LRB-"`` becomes ``"("``.
    """
    text = unicodedata.normalize("NFKC", text)
    text = _ESCAPE_RE.sub(lambda m: _PTB_ESCAPES[m.group(0)], text)
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    return _NOT_RE.sub(" not", text).lower()


def tokenize(text: str) -> list[str]:
    """Normalised word and punctuation tokens: ``"What's 2+2?"`` → ``what ' s 2 + 2 ?``."""
    return _TOKEN_RE.findall(normalize(text))


def letter_trigrams(token: str) -> list[str]:
    """DSSM word hashing: the letter trigrams of ``#token#`` (``good`` → ``#go goo ood od#``);
    a one-letter token gives the single trigram ``#a#``."""
    marked = f"#{token}#"
    return [marked[i:i + 3] for i in range(len(marked) - 2)]


@functools.lru_cache(maxsize=200_000)
def trigram_ids(token: str, n_buckets: int) -> tuple[int, ...]:
    """Hashed ids in ``1..n_buckets-1`` (0 is padding) of the first :data:`MAX_TRIGRAMS`
    letter trigrams of ``token``."""
    return tuple(zlib.crc32(t.encode("utf-8")) % (n_buckets - 1) + 1
                 for t in letter_trigrams(token)[:MAX_TRIGRAMS])


class Vocab:
    """Token ↔ id map; ``<pad>`` = 0, ``<unk>`` = 1.

    Args:
        tokens: the id order (specials first).
    """

    def __init__(self, tokens: Sequence[str]) -> None:
        if tuple(tokens[:2]) != SPECIALS:
            raise ValueError(f"a vocabulary starts with {SPECIALS}; got {tuple(tokens[:2])}")
        self.itos = list(tokens)
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    @classmethod
    def build(cls, texts: Iterable[list[str]], min_count: int = 2,
              max_size: int | None = None) -> Vocab:
        """Tokens seen at least ``min_count`` times, most frequent first (ties: alphabetical)."""
        counts = Counter(tok for toks in texts for tok in toks)
        kept = sorted((t for t, c in counts.items() if c >= min_count),
                      key=lambda t: (-counts[t], t))
        return cls(list(SPECIALS) + kept[:max_size])

    def __len__(self) -> int:
        return len(self.itos)

    def ids(self, tokens: Sequence[str]) -> list[int]:
        """Token ids, unknown tokens → ``UNK``."""
        return [self.stoi.get(t, UNK) for t in tokens]


@dataclass
class MatchBatch:
    """A padded batch of text pairs (side ``a``: question / query, side ``b``: the other).

    Attributes:
        a_ids, b_ids: ``(B, La)`` / ``(B, Lb)`` int64 token ids, ``PAD`` = 0 after the text
            (every text has at least one token, so lengths are ``(ids != 0).sum(1)``).
        a_tri, b_tri: ``(B, La, MAX_TRIGRAMS)`` / ``(B, Lb, MAX_TRIGRAMS)`` int64 hashed letter
            trigram ids of each token, 0 = padding.
        a_em, b_em: ``(B, La)`` / ``(B, Lb)`` float32 exact-match flags: 1.0 where the token
            occurs in the other text of the pair, 0.0 elsewhere (and on padding).
    """

    a_ids: torch.Tensor
    b_ids: torch.Tensor
    a_tri: torch.Tensor
    b_tri: torch.Tensor
    a_em: torch.Tensor
    b_em: torch.Tensor

    def to(self, device: torch.device | str) -> MatchBatch:
        """The same batch on ``device``."""
        return MatchBatch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def __len__(self) -> int:
        return int(self.a_ids.size(0))

    @property
    def a_len(self) -> torch.Tensor:
        """``(B,)`` int64 token counts of side a."""
        return (self.a_ids != PAD).sum(1)

    @property
    def b_len(self) -> torch.Tensor:
        """``(B,)`` int64 token counts of side b."""
        return (self.b_ids != PAD).sum(1)


@dataclass
class Featurizer:
    """Turns token lists into :class:`MatchBatch` tensors.

    Args:
        vocab: word ids.
        n_buckets: size of the letter-trigram hash space (id 0 is padding).
        max_len: tokens kept per text (longer texts are cut).
    """

    vocab: Vocab
    n_buckets: int = 2 ** 14
    max_len: int = 64

    def batch(self, pairs: Sequence[tuple[list[str], list[str]]]) -> MatchBatch:
        """Pad a list of ``(tokens_a, tokens_b)`` into one batch.

        Raises:
            ValueError: ``pairs`` is empty, or a text has no tokens.
        """
        if not pairs:
            raise ValueError("cannot build a batch of no pairs")
        cut = [(a[:self.max_len], b[:self.max_len]) for a, b in pairs]
        for i, (a, b) in enumerate(cut):
            if not a or not b:
                raise ValueError(f"pair {i} has a text without tokens")
        sides = []
        for side in (0, 1):
            texts = [p[side] for p in cut]
            others = [set(p[1 - side]) for p in cut]
            length = max(len(t) for t in texts)
            ids = torch.zeros(len(texts), length, dtype=torch.long)
            tri = torch.zeros(len(texts), length, MAX_TRIGRAMS, dtype=torch.long)
            em = torch.zeros(len(texts), length)
            for r, (toks, other) in enumerate(zip(texts, others, strict=True)):
                ids[r, :len(toks)] = torch.tensor(self.vocab.ids(toks))
                for c, tok in enumerate(toks):
                    grams = trigram_ids(tok, self.n_buckets)
                    tri[r, c, :len(grams)] = torch.tensor(grams)
                    em[r, c] = float(tok in other)
            sides.append((ids, tri, em))
        (a_ids, a_tri, a_em), (b_ids, b_tri, b_em) = sides
        return MatchBatch(a_ids, b_ids, a_tri, b_tri, a_em, b_em)
