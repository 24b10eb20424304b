"""A character n-gram language model for shallow fusion in the CTC beam search.

Smoothing is interpolated modified Kneser-Ney (Chen & Goodman 1998, "An Empirical Study of
Smoothing Techniques for Language Modeling", TR-10-98, sec. 3.5 and eq. 26): three discounts
per order (for counts 1, 2 and 3+) estimated from counts of counts, continuation counts
``N1+(. g)`` for the lower orders, and a uniform distribution below the unigrams. As in SRILM,
n-grams that start at the line start (with the BOS pad) keep their raw counts at every
order, since nothing can precede them.

Pruning is a count cutoff: n-grams of order >= 2 seen fewer than ``min_count`` times are
dropped and their probability mass flows to the lower order. Each context's interpolation
weight is the mass its kept n-grams leave over, ``gamma(h) = 1 - sum_w alpha(h, w)``, so
every conditional distribution sums to one exactly, pruned or not.

The model is case-insensitive and sees text the way :meth:`CharNgramLM.normalize` writes
it: lower-cased, characters outside the alphabet replaced by a space, runs of spaces
collapsed. Every line is a sentence: the history before its first character is
``order - 1`` BOS pads (a symbol of its own, never predicted), and an end-of-line event
closes it. The predicted symbols are the vocabulary's characters plus the end of line.

Files are ``.npz`` archives of integer arrays plus a JSON header (read with
``allow_pickle=False``): the kept n-grams, their (continuation) counts and the totals of
their contexts, from which the model is rebuilt exactly.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import math
import random
import re
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.common.paths import data_dir

log = logging.getLogger(__name__)

FORMAT = "modelzoo-char-ngram-kn"
VERSION = 1
_BOS = "\ue000"  # private-use code points: internal pad and end symbols
_EOS = "\ue001"
_CACHE_LIMIT = 1 << 16  # cached next-char distributions before the cache is cleared
#: A default alphabet for English lines: lower-case letters, digits, common punctuation, space.
DEFAULT_ALPHABET = string.ascii_lowercase + string.digits + " .,'\"-!?;:&()/"


@dataclass(frozen=True)
class _Order:
    """The kept n-grams of one order ``k`` (arrays aligned by n-gram, sorted by id).

    Attributes:
        ids: int64 (N,), n-gram ids ``sum_j s_j * S**(k-1-j)`` over symbol ids.
        counts: int64 (N,), the count Kneser-Ney discounts (raw or continuation).
        totals: int64 (H,), per distinct context ``ids // S`` (sorted), the sum of the counts
            of all its n-grams before pruning.
        discounts: (D1, D2, D3+).
    """

    ids: np.ndarray
    counts: np.ndarray
    totals: np.ndarray
    discounts: tuple[float, float, float]


class CharNgramLM:
    """Interpolated modified Kneser-Ney character n-gram model (see module docstring).

    Build one with :meth:`train` or :meth:`load`. Queries take the line so far as
    ``context`` (only its last ``order - 1`` normalized characters matter) and are served
    from a per-instance cache of next-symbol distributions.

    Attributes:
        vocab: the predicted characters in index order (lower-case, with a space).
        order: n, the longest n-gram.
        min_count: the count cutoff used in training.
    """

    def __init__(self, vocab: str, orders: Sequence[_Order], min_count: int) -> None:
        """Rebuild the lookup tables from the kept n-grams (use :meth:`train`/:meth:`load`).

        Raises:
            ValueError: an inconsistent set of arrays.
        """
        if " " not in vocab or len(set(vocab)) != len(vocab) or not orders:
            raise ValueError("the vocabulary must hold distinct characters including a space, "
                             "and there must be at least one order")
        self.vocab = vocab
        self.order = len(orders)
        self.min_count = min_count
        self._orders = tuple(orders)
        self._index = {c: i for i, c in enumerate(vocab)}
        self._space = self._index[" "]
        self._n_out = len(vocab) + 1  # characters + end of line
        self._symbols = vocab + _EOS + _BOS  # symbol id -> internal char
        self._drop = _drop_pattern(vocab)
        self._tables = [self._table(k, o) for k, o in enumerate(self._orders, start=1)]
        self._cache: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------ building

    def _table(self, k: int, o: _Order) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
        """Context string (k-1 internal chars) -> (next-symbol ids, alpha, gamma)."""
        size = len(self._symbols)
        if not (len(o.ids) == len(o.counts) and np.all(np.diff(o.ids) > 0)
                and np.all(o.counts >= 1) and np.all(o.totals >= 1)):
            raise ValueError(f"order {k}: n-gram ids must be unique, sorted and match "
                             "positive counts")
        table: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}
        if len(o.ids) == 0:
            return table
        ctx, w = np.divmod(o.ids, size)
        starts = np.flatnonzero(np.r_[True, ctx[1:] != ctx[:-1]])
        if len(starts) != len(o.totals):
            raise ValueError(f"order {k}: {len(o.totals)} context totals for "
                             f"{len(starts)} contexts")
        d = np.asarray(o.discounts, dtype=np.float64)
        disc = d[np.minimum(o.counts, 3) - 1]
        alpha = (o.counts - disc) / np.repeat(o.totals, np.diff(np.r_[starts, len(ctx)]))
        ends = np.r_[starts[1:], len(ctx)]
        gammas = np.maximum(0.0, 1.0 - np.add.reduceat(alpha, starts)).tolist()
        keys = self._context_strings(ctx[starts], k - 1)
        for key, s, e, gamma in zip(keys, starts.tolist(), ends.tolist(), gammas, strict=True):
            table[key] = (w[s:e], alpha[s:e], gamma)
        return table

    def _context_strings(self, ids: np.ndarray, length: int) -> list[str]:
        """Context ids (H,) -> their internal strings of ``length`` symbols."""
        if length == 0:
            return [""] * len(ids)
        size = len(self._symbols)
        digits = (ids[:, None] // size ** np.arange(length - 1, -1, -1)) % size  # (H, length)
        codes = np.array([ord(c) for c in self._symbols], dtype="<u4")[digits]
        return np.ascontiguousarray(codes).view(f"<U{length}").ravel().tolist()

    @classmethod
    def train(
        cls, texts: Iterable[str], order: int = 6, min_count: int = 2, *, alphabet: str
    ) -> CharNgramLM:
        """Count and smooth n-grams over ``texts`` (one line or sentence per string).

        Args:
            texts: training lines; each is normalized (see :meth:`normalize`), and lines
                left empty are skipped.
            order: n, the longest n-gram (>= 1).
            min_count: n-grams of order >= 2 seen fewer times are pruned (>= 1; 1 keeps all).
            alphabet: the characters to model; lower-cased and de-duplicated, a space is
                added when missing.

        Returns:
            the trained model.

        Raises:
            ValueError: bad ``order``/``min_count``/``alphabet``, or no usable text.
        """
        if order < 1:
            raise ValueError(f"order must be >= 1, got {order}")
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        vocab = _vocab(alphabet)
        size = len(vocab) + 2
        if size**order >= 2**62:
            raise ValueError(f"{size} symbols ** order {order} overflows int64 n-gram ids; "
                             "use a smaller order or alphabet")
        drop = _drop_pattern(vocab)
        pad = _BOS * (order - 1)
        lines = (_normalize(t, drop) for t in texts)
        joined = "".join(pad + line + _EOS for line in lines if line)
        if not joined:
            raise ValueError("no training text left after normalization; check the alphabet")
        sym = _symbol_ids(joined, vocab + _EOS + _BOS)  # (L,) int64
        bos = size - 1
        pos = np.flatnonzero(sym != bos)  # every predicted position
        raw = []
        for k in range(1, order + 1):
            ids = np.zeros(len(pos), dtype=np.int64)
            for j in range(k):
                ids = ids * size + sym[pos - (k - 1) + j]
            raw.append(np.unique(ids, return_counts=True))
        orders = []
        for k in range(1, order + 1):
            ids, counts = raw[k - 1]
            if k < order:  # continuation counts N1+(. g); raw counts where g starts with BOS
                higher = raw[k][0] % size**k
                cont_ids, cont = np.unique(higher, return_counts=True)
                cont_full = np.zeros(len(ids), dtype=np.int64)
                cont_full[np.searchsorted(ids, cont_ids)] = cont
                starts_bos = ids // size ** (k - 1) == bos
                kn = np.where(starts_bos, counts, cont_full)
            else:
                kn = counts
            orders.append(_prune(ids, kn, counts, size, min_count if k > 1 else 1))
        lm = cls(vocab, orders, min_count)
        log.info("char LM: order %d, min_count %d, %s n-grams kept", order, min_count,
                 [len(o.ids) for o in orders])
        return lm

    # ------------------------------------------------------------------ queries

    def normalize(self, text: str) -> str:
        """Lower-case, map characters outside the vocabulary to a space, collapse runs of
        spaces and strip the ends (the view of text the model is trained on)."""
        return _normalize(text, self._drop)

    def _context_key(self, context: str) -> str:
        """The last ``order - 1`` symbols of the normalized context, BOS-padded on the left.
        Leading spaces of the context are kept (the model sees them as spaces)."""
        n = self.order - 1
        if n == 0:
            return ""
        tail = context[-4 * n:]
        norm = _collapse(self._drop.sub(" ", tail.lower()))
        if len(norm) < n and len(tail) < len(context):
            norm = _collapse(self._drop.sub(" ", context.lower()))
        return (_BOS * n + norm)[-n:]

    def _distribution(self, key: str) -> np.ndarray:
        """log P(. | key) over vocab + end: float64 (V+1,), cached."""
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        p = np.full(self._n_out, 1.0 / self._n_out)
        for k, table in enumerate(self._tables, start=1):
            entry = table.get(key[len(key) - (k - 1):] if k > 1 else "")
            if entry is None:  # a context with no kept n-gram: no longer one has any either
                break
            w, a, gamma = entry
            p *= gamma
            p[w] += a
        out = np.log(p)
        out.flags.writeable = False  # shared through the cache
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = out
        return out

    def next_log_probs(self, context: str) -> np.ndarray:
        """Natural-log probabilities of every next symbol after ``context``.

        Returns:
            float64 (V+1,): ``vocab`` characters in order, then the end of line; exp sums to 1.
            The array is read-only (it is shared through the cache).
        """
        return self._distribution(self._context_key(context))

    def char_index(self, char: str) -> int:
        """Index of ``char`` in :attr:`vocab` after lower-casing; characters outside the
        vocabulary map to the space, as in training.

        Raises:
            ValueError: ``char`` is not a single character.
        """
        if len(char) != 1:
            raise ValueError(f"expected one character, got {char!r}")
        low = char.lower()
        return self._index.get(low if len(low) == 1 else char, self._space)

    def log_prob(self, context: str, char: str) -> float:
        """ln P(char | context), case-insensitive (see :meth:`char_index`).

        Raises:
            ValueError: ``char`` is not a single character.
        """
        return float(self.next_log_probs(context)[self.char_index(char)])

    def end_log_prob(self, context: str) -> float:
        """ln P(end of line | context)."""
        return float(self.next_log_probs(context)[-1])

    def line_log_prob(self, text: str) -> tuple[float, int]:
        """ln P of one line under the model, and the number of events it is made of.

        The line is normalized (:meth:`normalize`); its events are each character and the
        end of line, so an empty line is the single end-of-line event.

        Returns:
            (sum of natural-log probabilities, number of events >= 1).
        """
        line = self.normalize(text)
        total = sum(self.log_prob(line[:i], c) for i, c in enumerate(line))
        return total + self.end_log_prob(line), len(line) + 1

    def perplexity(self, texts: Iterable[str]) -> float:
        """Per-character perplexity ``exp(-sum ln P / N)`` over normalized ``texts``: N counts
        every character of each non-empty normalized line plus its end-of-line event.

        Raises:
            ValueError: no characters to score.
        """
        total, n = 0.0, 0
        for text in texts:
            if not self.normalize(text):
                continue
            log_p, events = self.line_log_prob(text)
            total += log_p
            n += events
        if n == 0:
            raise ValueError("no characters to score after normalization")
        return math.exp(-total / n)

    # ------------------------------------------------------------------ files

    def save(self, path: str | Path) -> None:
        """Write the model as a compressed ``.npz`` (no pickled objects).

        Layout: ``header`` (uint8 JSON: format, version, vocab, order, min_count, discounts)
        and per order k, with contexts ``h = id // S`` and next symbols ``w = id % S``:
        ``w{k}`` (uint8, per n-gram), ``nchild{k}`` (kept n-grams per context),
        ``ctx{k}`` (delta-coded context ids), ``counts{k}`` and ``totals{k}``. Multi-byte
        arrays are stored byte-plane by byte-plane (uint8 (bytes, N), little-endian), which
        deflate compresses much better.
        """
        header = {"format": FORMAT, "version": VERSION, "vocab": self.vocab,
                  "order": self.order, "min_count": self.min_count,
                  "discounts": [list(o.discounts) for o in self._orders]}
        arrays: dict[str, Any] = {
            "header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)}
        size = len(self._symbols)
        for k, o in enumerate(self._orders, start=1):
            ctx, w = np.divmod(o.ids, size)
            starts = np.flatnonzero(np.r_[True, ctx[1:] != ctx[:-1]]) if len(ctx) else ctx
            arrays[f"w{k}"] = w.astype(np.uint8)
            arrays[f"nchild{k}"] = _planes(np.diff(np.r_[starts, len(ctx)]))
            arrays[f"ctx{k}"] = _planes(np.diff(ctx[starts], prepend=0))
            arrays[f"counts{k}"] = _planes(o.counts)
            arrays[f"totals{k}"] = _planes(o.totals)
        with Path(path).open("wb") as f:
            np.savez_compressed(f, allow_pickle=False, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> CharNgramLM:
        """Read a model written by :meth:`save` (``allow_pickle=False``).

        Raises:
            ValueError: not such a file, a different format version, or inconsistent arrays.
            OSError: the file cannot be read.
        """
        try:
            with np.load(Path(path), allow_pickle=False) as z:
                header = json.loads(bytes(z["header"]).decode())
                if header.get("format") != FORMAT or header.get("version") != VERSION:
                    raise ValueError(f"{path}: not a {FORMAT} v{VERSION} file")
                size = len(header["vocab"]) + 2
                orders = []
                for k in range(1, header["order"] + 1):
                    nchild = _unplanes(z[f"nchild{k}"])
                    ctx = np.repeat(np.cumsum(_unplanes(z[f"ctx{k}"])), nchild)
                    ids = ctx * size + z[f"w{k}"].astype(np.int64)
                    orders.append(_Order(ids, _unplanes(z[f"counts{k}"]),
                                         _unplanes(z[f"totals{k}"]),
                                         tuple(header["discounts"][k - 1])))
        except KeyError as e:
            raise ValueError(f"{path}: missing entry {e} in char LM file") from e
        return cls(header["vocab"], orders, int(header["min_count"]))


# ---------------------------------------------------------------------- helpers

_SPACES = re.compile(" {2,}")


def _collapse(text: str) -> str:
    return _SPACES.sub(" ", text)


def _vocab(alphabet: str) -> str:
    """Lower-cased, de-duplicated alphabet with a space (order of first appearance)."""
    out: dict[str, None] = {}
    for c in alphabet:
        low = c.lower()
        out[low if len(low) == 1 else c] = None
    out[" "] = None
    vocab = "".join(out)
    if _BOS in vocab or _EOS in vocab:
        raise ValueError("the alphabet must not contain U+E000 or U+E001 (reserved)")
    if any(c in "\n\r\t" for c in vocab):
        raise ValueError("the alphabet must not contain newlines or tabs")
    return vocab


def _drop_pattern(vocab: str) -> re.Pattern[str]:
    """Matches one character outside ``vocab``."""
    return re.compile("[^" + re.escape(vocab) + "]")


def _normalize(text: str, drop: re.Pattern[str]) -> str:
    return _collapse(drop.sub(" ", text.lower())).strip(" ")


def _symbol_ids(text: str, symbols: str) -> np.ndarray:
    """Map every char of ``text`` (all in ``symbols``) to its index: int64 (len(text),)."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    table = np.array([ord(c) for c in symbols], dtype=np.uint32)
    order = np.argsort(table)
    return order[np.searchsorted(table[order], codes)].astype(np.int64)


def _discounts(counts: np.ndarray) -> tuple[float, float, float]:
    """Modified Kneser-Ney discounts D1, D2, D3+ from counts of counts (Chen & Goodman
    1998, eq. 26), clipped to keep every count positive and every gamma > 0."""
    n = np.bincount(np.minimum(counts, 5), minlength=5).astype(np.float64)
    n1, n2, n3, n4 = n[1], n[2], n[3], n[4]
    y = n1 / (n1 + 2 * n2) if n1 + 2 * n2 > 0 else 0.5
    raw = (1 - 2 * y * n2 / n1 if n1 else 0.5,
           2 - 3 * y * n3 / n2 if n2 else 1.0,
           3 - 4 * y * n4 / n3 if n3 else 1.5)
    d1, d2, d3 = (float(np.clip(d, 0.05, i - 0.05)) for i, d in enumerate(raw, start=1))
    return d1, d2, d3


def _prune(ids: np.ndarray, kn: np.ndarray, raw: np.ndarray, size: int, min_count: int) -> _Order:
    """Keep the n-grams with raw count >= min_count; context totals count all of them."""
    ctx = ids // size
    starts = np.flatnonzero(np.r_[True, ctx[1:] != ctx[:-1]])
    totals_all = np.add.reduceat(kn, starts) if len(kn) else kn
    keep = raw >= min_count
    kept_ctx_flags = np.add.reduceat(keep.astype(np.int64), starts) > 0 if len(kn) else keep
    return _Order(ids[keep], kn[keep], totals_all[kept_ctx_flags], _discounts(kn))


def _planes(a: np.ndarray) -> np.ndarray:
    """Non-negative ints (N,) as uint8 (B, N): byte b of every value in row b (little-endian),
    with B the fewest bytes that hold the largest value."""
    top = int(a.max()) if len(a) else 0
    nbytes = next(b for b in (1, 2, 4, 8) if top < 256**b)
    le = np.ascontiguousarray(a, dtype=f"<u{nbytes}")
    return np.ascontiguousarray(le.view(np.uint8).reshape(len(a), nbytes).T)


def _unplanes(planes: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_planes`: int64 (N,)."""
    nbytes = planes.shape[0]
    raw = np.ascontiguousarray(planes.T).view(f"<u{nbytes}").reshape(-1)
    return raw.astype(np.int64)


# ---------------------------------------------------------------------- corpora

def ptb_lines(path: Path, number_seed: int | None = 0) -> list[str]:
    """Penn Treebank (Mikolov) lines with ``<unk>`` tokens dropped and each number token
    ``N`` written as a number.

    Mikolov's PTB replaces every number with ``N``; written as one fixed digit, the LM
    learns that the other digits hardly occur and pulls the recognizer's digits towards
    letters. So each ``N`` becomes a random number (:func:`random_number`) drawn from
    ``random.Random(number_seed)`` (repeatable), or ``1`` with ``number_seed=None`` (the
    LMs served before 2026-12-07).
    """
    rng = random.Random(number_seed) if number_seed is not None else None
    out = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            words = [(random_number(rng) if rng is not None else "1") if w == "N" else w
                     for w in line.split() if w != "<unk>"]
            if words:
                out.append(" ".join(words))
    return out


def random_number(rng: random.Random) -> str:
    """A number as people write them: 1 to 4 digits (each length equally likely, no
    leading zero), a tenth of them with one or two decimals, e.g. ``7``, ``1984``, ``3.25``."""
    digits = rng.randint(1, 4)
    text = str(rng.randint(0 if digits == 1 else 10 ** (digits - 1), 10 ** digits - 1))
    if rng.random() < 0.1:
        text += "." + "".join(str(rng.randint(0, 9)) for _ in range(rng.randint(1, 2)))
    return text


#: the corpora :func:`english_corpus` reads by default (the served LM's text)
LM_SOURCES = ("ptb", "multi30k", "wikiqa")

#: WikiQA's sentences are partly tokenized ("Glacier .", "Resorts 's", "( 1998 )"); these
#: rules join the pieces back as people write them
_DETOKENIZE = ((re.compile(r" +([.,;:!?%)\]])"), r"\1"), (re.compile(r"([(\[]) +"), r"\1"),
               (re.compile(r" +('s|'re|'ve|'ll|'d|'m|n't)\b"), r"\1"))


def detokenize(text: str) -> str:
    """Undo Penn-Treebank-style spaces before punctuation and clitics:
    ``"Resorts 's Islands ( 1998 ) ."`` → ``"Resorts's Islands (1998)."``."""
    for pattern, repl in _DETOKENIZE:
        text = pattern.sub(repl, text)
    return text.strip()


def wikiqa_lines(path: Path) -> list[str]:
    """The questions and Wikipedia sentences of a WikiQA file (``WikiQA-train.tsv``: a
    header row, then QuestionID, Question, DocumentID, DocumentTitle, SentenceID, Sentence,
    Label), each once, in file order, :func:`detokenize`-d.

    Wikipedia text is open-vocabulary: names, places, acronyms and numbers that PTB (whose
    rare words are all ``<unk>``, dropped by :func:`ptb_lines`) and the Multi30k captions
    do not have, so an LM trained with it pulls rare words less towards common ones.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the header lacks the Question or Sentence column.
    """
    out: list[str] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        if "Question" not in header or "Sentence" not in header:
            raise ValueError(f"{path}: expected WikiQA columns Question and Sentence, "
                             f"found {header}")
        cols = (header.index("Question"), header.index("Sentence"))
        for line in f:
            cells = line.rstrip("\n").split("\t")
            for i in cols:
                text = detokenize(cells[i]) if i < len(cells) else ""
                if text and text not in seen:
                    seen.add(text)
                    out.append(text)
    return out


def english_corpus(data_dir: Path, sources: Sequence[str] = LM_SOURCES) -> list[str]:
    """English training lines, in this order: PTB train (``ptb/ptb.train.txt``, see
    :func:`ptb_lines`), the Multi30k English training captions (``multi30k/train.en.gz``)
    and WikiQA train's questions and sentences (``wikiqa/WikiQA-train.tsv``, see
    :func:`wikiqa_lines`), each where ``sources`` names it. No validation or test file is
    read.

    Raises:
        FileNotFoundError: a file is missing under ``data_dir``.
        ValueError: ``sources`` names a corpus other than ``ptb``, ``multi30k``, ``wikiqa``.
    """
    unknown = set(sources) - set(LM_SOURCES)
    if unknown:
        raise ValueError(f"unknown LM corpora {sorted(unknown)}; choose from {LM_SOURCES}")
    lines: list[str] = []
    if "ptb" in sources:
        lines.extend(ptb_lines(data_dir / "ptb" / "ptb.train.txt"))
    if "multi30k" in sources:
        with gzip.open(data_dir / "multi30k" / "train.en.gz", "rt", encoding="utf-8") as f:
            lines.extend(s for s in (line.strip() for line in f) if s)
    if "wikiqa" in sources:
        lines.extend(wikiqa_lines(data_dir / "wikiqa" / "WikiQA-train.tsv"))
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m models.handwriting.charlm --out lm.npz``: train on :func:`english_corpus`,
    save, and log the file size and the perplexity on PTB valid. With the defaults this is
    the served ``crnn/charlm.npz``, byte for byte (the CRNN's alphabet, order 7, cutoff 3,
    all of :data:`LM_SOURCES`)."""
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--data-dir", type=Path, default=data_dir())
    ap.add_argument("--out", type=Path, required=True)
    # 7-grams with a cutoff of 3 fit the 2 MB budget on this corpus (about 1.7 MB)
    ap.add_argument("--order", type=int, default=7)
    ap.add_argument("--min-count", type=int, default=3)
    ap.add_argument("--alphabet", default="crnn",
                    help="characters to model; 'crnn' (default) for the line recognizer's "
                         "alphabet, 'default' for DEFAULT_ALPHABET, or the characters")
    ap.add_argument("--sources", nargs="+", default=list(LM_SOURCES), choices=LM_SOURCES,
                    help="corpora to train on (default: all)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    alphabet = {"default": DEFAULT_ALPHABET}.get(args.alphabet, args.alphabet)
    if alphabet == "crnn":
        from models.handwriting.linesynth import ALPHABET as alphabet
    lm = CharNgramLM.train(english_corpus(args.data_dir, args.sources), args.order,
                           args.min_count, alphabet=alphabet)
    lm.save(args.out)
    valid = ptb_lines(args.data_dir / "ptb" / "ptb.valid.txt")
    log.info("saved %s: %d bytes; PTB valid per-char perplexity %.3f",
             args.out, args.out.stat().st_size, lm.perplexity(valid))


if __name__ == "__main__":
    main()
