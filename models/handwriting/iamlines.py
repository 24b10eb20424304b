"""Real text lines for CRNN training, rebuilt from the IAM Handwriting Database's word crops.

IAM (Marti & Bunke, IJDAR 5:39-46, 2002; research use, registration required) ships each
word as a crop (``words/<a01>/<a01-000u>/<a01-000u-00-00>.png``) and lists it in
``words.txt``::

    a01-000u-00-00 ok 154 408 768 27 51 AT A
    word id        |  gray  x   y  w  h tag transcription

``x, y, w, h`` are the crop's box in its form, in form pixels. Pasting every word of a line
(``a01-000u-00``) back at its box, darker pixel winning, gives the line as written: real
spacing, baseline and joins, which word crops alone do not teach a line recognizer.
:func:`build_iam_lines` writes those lines, plus a share of the single words, as a
``--real-lines`` folder (:mod:`models.handwriting.reallines`): ``manifest.tsv`` with
``path, text, source`` and the PNGs under ``lines/`` and ``words/``.

Evaluation images must stay out: every IAM text (a form id without its writer suffix,
``a01-000u`` → ``a01-000``: several writers copied the same text) that shares a line with a
``labels.tsv`` row (:func:`overlaps`) is dropped whole, its lines and its words.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from models.handwriting.reallines import MANIFEST, normalize_text

log = logging.getLogger(__name__)

#: tokens written against the word before them (IAM separates punctuation into words)
_NO_SPACE_BEFORE = frozenset({".", ",", ";", ":", "?", "!", ")", "...", "'s", "n't", "'ll",
                              "'re", "'ve", "'d", "'m"})
#: tokens the next word is written against
_NO_SPACE_AFTER = frozenset({"("})
_FORM = re.compile(r"^([a-z]\d\d-\d\d\d[a-z]?)-(\d\d)-(\d\d)$")


@dataclass(frozen=True)
class IamWord:
    """One row of IAM's ``words.txt``.

    Attributes:
        word_id: e.g. ``a01-000u-00-00`` (form ``a01-000u``, line 00, word 00).
        ok: IAM's segmentation flag (``ok``; ``err`` = the box may cut the word badly).
        box: (x, y, w, h) of the crop in its form, pixels.
        text: the transcription.
    """

    word_id: str
    ok: bool
    box: tuple[int, int, int, int]
    text: str

    @property
    def form(self) -> str:
        """The form id, e.g. ``a01-000u``."""
        return self.word_id.rsplit("-", 2)[0]

    @property
    def line_id(self) -> str:
        """The line id, e.g. ``a01-000u-00``."""
        return self.word_id.rsplit("-", 1)[0]

    @property
    def text_id(self) -> str:
        """The form id without its writer suffix (``a01-000u`` → ``a01-000``): forms of
        one text id are copies of the same text by different writers."""
        return re.sub(r"[a-z]$", "", self.form)


def read_words_txt(path: Path) -> list[IamWord]:
    """Rows of an IAM ``words.txt``, in file order.

    Comment lines (``#``) and rows that are not 9 space-separated fields with a valid word id
    are skipped: a transcription split by spaces is ambiguous, and a file cut short ends in
    a partial row.

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    words = []
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not raw.strip() or raw.startswith("#"):
            continue
        f = raw.split(" ")
        if len(f) != 9 or not _FORM.match(f[0]) or f[1] not in ("ok", "err"):
            continue
        try:
            x, y, w, h = (int(v) for v in f[3:7])
        except ValueError:
            continue
        words.append(IamWord(f[0], f[1] == "ok", (x, y, w, h), f[8]))
    return words


def join_tokens(tokens: Iterable[str]) -> str:
    """IAM's word tokens → the line as written: punctuation against its word, quotes
    alternately opening (against the next word) and closing (against the previous one).

    >>> join_tokens(["He", "said", '"', "no", '"', ",", "(", "twice", ")", "."])
    'He said "no", (twice).'
    """
    out = ""
    quotes = 0
    glue = False
    for tok in tokens:
        if tok == '"':
            quotes += 1
            opening = quotes % 2 == 1
            out += tok if (not out or glue or not opening) else " " + tok
            glue = opening
            continue
        out += tok if (not out or glue or tok in _NO_SPACE_BEFORE) else " " + tok
        glue = tok in _NO_SPACE_AFTER
    return out


def paste_line(crops: list[tuple[tuple[int, int], np.ndarray]], pad: int = 12) -> np.ndarray:
    """Word crops pasted at their form positions on white, darker pixel winning.

    Args:
        crops: ((x, y) form position, uint8 gray (h, w) crop) per word.
        pad: white margin around the line, pixels.

    Returns:
        uint8 (H, W) gray line image.

    Raises:
        ValueError: no crops.
    """
    if not crops:
        raise ValueError("a line needs at least one word crop")
    x0 = min(x for (x, _), _ in crops) - pad
    y0 = min(y for (_, y), _ in crops) - pad
    x1 = max(x + g.shape[1] for (x, _), g in crops) + pad
    y1 = max(y + g.shape[0] for (_, y), g in crops) + pad
    canvas = np.full((y1 - y0, x1 - x0), 255, np.uint8)
    for (x, y), g in crops:
        region = canvas[y - y0:y - y0 + g.shape[0], x - x0:x - x0 + g.shape[1]]
        np.minimum(region, g, out=region)
    return canvas


def overlaps(text: str, references: list[str], min_chars: int = 12, ngram: int = 4,
             min_words: int = 3) -> bool:
    """True when ``text`` shares a line with one of ``references``: one contains the other
    (compared by :func:`normalize_text`, at least ``min_chars`` long), they share a run
    of ``ngram`` words of at least ``min_chars`` letters and digits, or a reference of at
    least ``min_words`` words is a run of ``text``'s words (a crop of a few words of an
    IAM line, e.g. "made a list")."""
    key = normalize_text(text)
    words = [w for w in (normalize_text(w) for w in text.split()) if w]
    grams = {"".join(words[i:i + ngram]) for i in range(len(words) - ngram + 1)}
    grams = {g for g in grams if len(g) >= min_chars}
    for ref in references:
        r = normalize_text(ref)
        if (len(key) >= min_chars and key in r) or (len(r) >= min_chars and r in key):
            return True
        if any(g in r for g in grams):
            return True
        ref_words = [w for w in (normalize_text(w) for w in ref.split()) if w]
        n = len(ref_words)
        if n >= min_words and any(words[i:i + n] == ref_words for i in range(len(words) - n + 1)):
            return True
    return False


def word_image(words_dir: Path, word_id: str) -> Path:
    """Path of a word crop in IAM's layout: ``words/a01/a01-000u/a01-000u-00-00.png``."""
    form = word_id.rsplit("-", 2)[0]
    return words_dir / form.split("-")[0] / form / f"{word_id}.png"


def build_iam_lines(words_txt: Path, words_dir: Path, out_dir: Path, *,
                    exclude_texts: list[str] | None = None,
                    exclude_md5s: set[str] | None = None, word_share: float = 0.33,
                    min_word_chars: int = 2, seed: int = 0, source: str = "IAM"
                    ) -> dict[str, int]:
    """Write a ``--real-lines`` folder of IAM lines (and a share of single words).

    A line is kept only when each of its words has a readable crop of the size its box
    says and a transcription without ``#`` (IAM's stand-in for £). Single words are taken
    when IAM marks them ``ok``, their crop decodes, they have at least ``min_word_chars``
    characters with a letter, and a ``word_share`` draw picks them. Rows are shuffled
    (``seed``), so the trainer's every-20th held-out rows mix lines and words.

    Args:
        words_txt: IAM ``words.txt``.
        words_dir: IAM ``words/`` folder.
        out_dir: the folder to write (``manifest.tsv``, ``lines/``, ``words/``); created.
        exclude_texts: evaluation transcriptions; IAM texts that :func:`overlaps` any are
            dropped whole.
        exclude_md5s: md5s of evaluation images; the IAM text of a word crop with one of
            them is dropped whole (an evaluation image may be an IAM crop itself).
        word_share: share of eligible single words written besides the lines.
        min_word_chars: shortest single word kept.
        seed: shuffling and word-draw seed.
        source: written in the manifest's ``source`` column, before the IAM path.

    Returns:
        counts: ``lines``, ``words``, ``lines_skipped`` (a word missing, unreadable or
        mis-sized), ``texts_excluded`` (IAM text ids dropped as evaluation text).

    Raises:
        FileNotFoundError: ``words_txt`` or ``words_dir`` is missing.
        ValueError: ``words_txt`` has no usable row, or ``word_share`` is outside [0, 1].
    """
    if not words_dir.is_dir():
        raise FileNotFoundError(f"{words_dir} is not a folder: give IAM's words/ folder")
    if not 0.0 <= word_share <= 1.0:
        raise ValueError(f"word_share must be in [0, 1], got {word_share}")
    words = read_words_txt(words_txt)
    if not words:
        raise ValueError(f"{words_txt}: no row in IAM's words.txt layout "
                         "(word-id ok|err gray x y w h tag text)")
    lines: dict[str, list[IamWord]] = {}
    for w in words:
        lines.setdefault(w.line_id, []).append(w)
    texts: dict[str, list[str]] = {}
    for ws in lines.values():
        texts.setdefault(ws[0].text_id, []).append(join_tokens(w.text for w in ws))
    refs = [t for t in (exclude_texts or []) if t.strip()]
    excluded = {tid for tid, ts in texts.items() if any(overlaps(t, refs) for t in ts)}
    if exclude_md5s:
        for w in words:
            path = word_image(words_dir, w.word_id)
            if (w.text_id not in excluded and path.is_file()
                    and hashlib.md5(path.read_bytes()).hexdigest() in exclude_md5s):
                excluded.add(w.text_id)
    if excluded:
        log.info("IAM texts dropped as evaluation text: %s", ", ".join(sorted(excluded)))
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str, str]] = []
    skipped = 0
    for lid, ws in lines.items():
        if ws[0].text_id in excluded:
            continue
        crops = []
        for w in ws:
            gray = None
            path = word_image(words_dir, w.word_id)
            if "#" not in w.text and path.is_file():
                gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if gray is None or gray.shape != (w.box[3], w.box[2]) or min(w.box[:2]) < 0:
                break
            crops.append(((w.box[0], w.box[1]), gray))
        if len(crops) != len(ws):
            skipped += 1
            continue
        rel = f"lines/{lid.split('-')[0]}/{lid}.png"
        (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(out_dir / rel), paste_line(crops))
        rows.append((rel, join_tokens(w.text for w in ws), f"{source}:{lid} (words pasted "
                     "at their boxes)"))
    n_lines = len(rows)
    rng = random.Random(seed)
    for w in words:
        path = word_image(words_dir, w.word_id)
        if (w.text_id in excluded or not w.ok or "#" in w.text or len(w.text) < min_word_chars
                or not any(c.isalpha() for c in w.text) or rng.random() >= word_share
                or not path.is_file() or cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) is None):
            continue
        rel = f"words/{path.relative_to(words_dir).as_posix()}"
        (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, out_dir / rel)
        rows.append((rel, w.text, f"{source}:{w.word_id}"))
    rng.shuffle(rows)
    with (out_dir / MANIFEST).open("w", encoding="utf-8", newline="") as f:
        f.write("path\ttext\tsource\n")
        for rel, text, src in rows:
            f.write(f"{rel}\t{text}\t{src}\n")
    counts = {"lines": n_lines, "words": len(rows) - n_lines, "lines_skipped": skipped,
              "texts_excluded": len(excluded)}
    log.info("wrote %s: %s", out_dir / MANIFEST, counts)
    return counts
