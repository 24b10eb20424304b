"""Training lines for the CRNN line recognizer, composed from real letters and handwriting fonts.

``../shared/data`` has no real line images to train on (the four real pages in
``handwriting-pages/`` are the development set), so :class:`LineSynthesizer` makes text-line
images with their transcription, the way synthetic-data OCR work does (Jaderberg et al.
2014, "Synthetic data and artificial neural networks for natural scene text recognition";
Krishnan & Jawahar 2016, "Generating synthetic data for text recognition"),
from two kinds of glyph sources:

* **letters**: the real handwritten letter and digit crops of the shared archives
  (``split == 0`` only, both cases; Chars74K lines are drawn from one writer, the other sets
  from one source per line), sized to restore case proportions (x-height, ascenders,
  descenders), placed with touching and overlapping neighbours, optional joins drawn from the
  end of one letter to the start of the next, baseline drift and slant;
* **fonts**: handwriting TrueType/OpenType fonts (Debian's ``fonts-*`` handwriting packages:
  cursive, print, felt-tip), drawn whole-line (joined scripts stay joined) or letter by letter
  with jitter, then sheared, warped and elastically distorted.

Every line is then "photographed" (paper colour and texture, ruled lines, shadow gradient,
bleed-through, pen colour and width, blur, noise, JPEG), passed through the service's own
preprocessing (:func:`models.handwriting.preprocess.ink_map`), cropped to its ink with the
same padding as :func:`models.handwriting.lines.line_crop` and resized to the model's height.
So training inputs are what the service feeds the model: float32 ink maps, ink bright on
black, values in [0, 1].

Where real line or word images with transcriptions are at hand (a folder with a
``manifest.tsv``, :class:`models.handwriting.reallines.RealLineBank`; development pages
dropped), ``real_share`` of the samples are drawn from them instead, given the same optional
shear, photograph and preprocessing.

Text comes from English training text we have (Penn Treebank train, Multi30k English train):
spans of 1-9 words, with some upper-cased, capitalised or given digits and punctuation.
"""

from __future__ import annotations

import gzip
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from models.handwriting.data import SETS_64
from models.handwriting.preprocess import ink_map
from models.handwriting.reallines import RealLineBank

log = logging.getLogger(__name__)

#: Characters the line recognizer reads (class 0 is the CTC blank, class i>0 is ALPHABET[i-1]).
ALPHABET = (" ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
            ".,!?'\"-:;()&/")
#: Punctuation drawn as primitives in letter lines (the letter archives have none).
_PUNCT_DRAWN = ".,!?'-:;"

#: Handwriting font families looked for under ``/usr/share/fonts`` (Debian packages
#: fonts-dkg-handwriting, -breip, -bwht, -dancingscript, -ecolier-court, -humor-sans,
#: -kaushanscript, -klee, -kristi, -rufscript, -comic-neue); a line picks a family first,
#: then one of its files, so families with many weights do not dominate.
FONT_GLOBS = ("fifthhorseman/dkg*.ttf", "breip/*.ttf", "bwht/*.otf", "dancingscript/*.otf",
              "ecolier-court/*.ttf", "humor-sans/*.ttf", "kaushanscript/*.otf", "klee/*.ttf",
              "kristi/*.ttf", "rufscript/*.ttf", "comic-neue/*.otf")
#: Fonts whose lower-case letters are capitals (their lines are labelled upper case).
_CAPS_FONTS = ("BecauseWe", "Humor-Sans")
#: Fonts whose letters join (drawn whole-line only, never letter by letter).
_JOINED_FONTS = ("Dancing", "Ecolier", "Kristi", "Kaushan", "BecauseWeConnect")

# Lower-case proportions (height, descent below the baseline) as fractions of the capital
# height: the letter crops fill their frame, so their real sizes must be restored.
_ASCENDERS = {c: (1.0, 0.0) for c in "bdfhkl"} | {"t": (0.85, 0.0), "i": (0.8, 0.0)}
_DESCENDERS = {c: (0.95, 0.35) for c in "gpqy"} | {"j": (1.15, 0.35)}
_X_HEIGHT = (0.6, 0.0)


def find_fonts(root: Path = Path("/usr/share/fonts")) -> list[Path]:
    """Handwriting font files installed under ``root`` (see :data:`FONT_GLOBS`); [] if none."""
    return [p for family in find_font_families(root) for p in family]


def find_font_families(root: Path = Path("/usr/share/fonts")) -> list[list[Path]]:
    """The installed files of each family of :data:`FONT_GLOBS` (families with none left out)."""
    families = [sorted(root.glob(f"*/{pattern}")) for pattern in FONT_GLOBS]
    return [f for f in families if f]


def english_lines(data_dir: Path) -> list[str]:
    """Training sentences: Penn Treebank train (``<unk>`` dropped, ``N`` made a number) and
    Multi30k English train captions, one string each.

    Raises:
        FileNotFoundError: neither ``ptb/ptb.train.txt`` nor ``multi30k/train.en.gz`` exists.
    """
    out: list[str] = []
    ptb = data_dir / "ptb" / "ptb.train.txt"
    m30k = data_dir / "multi30k" / "train.en.gz"
    if not ptb.is_file() and not m30k.is_file():
        raise FileNotFoundError(f"no English text under {data_dir} (ptb/ptb.train.txt, "
                                "multi30k/train.en.gz); pass --data-dir")
    if ptb.is_file():
        for line in ptb.read_text(encoding="utf-8").splitlines():
            words = [w for w in line.split() if w != "<unk>"]
            if words:
                out.append(" ".join(words))
    if m30k.is_file():
        with gzip.open(m30k, "rt", encoding="utf-8") as f:
            out += [line.strip() for line in f if line.strip()]
    return out


#: share of composed line texts written all in capitals, unless a run asks otherwise
DEFAULT_UPPER_SHARE = 0.12

#: share of composed line texts given extra numbers (addresses, dates, codes), unless a run
#: asks otherwise; PTB's own numbers come on top
DEFAULT_NUMBER_SHARE = 0.0


@dataclass
class TextSampler:
    """Random line texts from English sentences, in the recognizer's alphabet.

    Attributes:
        sentences: the English text to draw spans from.
        upper_share: probability a span is written all in capitals (block capitals); the
            next 0.28 are capitalised, the 0.1 after that title-cased, the rest as found.
        number_share: probability a span gets one or two numbers as people write them on
            notes and envelopes (:meth:`written_number`: house numbers, zip and phone
            numbers, dates, times, codes), in place of a word or beside one.
    """

    sentences: list[str]
    upper_share: float = DEFAULT_UPPER_SHARE
    number_share: float = DEFAULT_NUMBER_SHARE

    def sample(self, rng: np.random.Generator, max_chars: int = 48) -> str:
        """A span of 1-9 words; sometimes upper-cased or capitalised, with a number or
        punctuation; only characters of :data:`ALPHABET`; 1..``max_chars`` characters."""
        words = self.sentences[int(rng.integers(len(self.sentences)))].split()
        n = int(rng.integers(1, 10))
        start = int(rng.integers(0, max(1, len(words) - n + 1)))
        words = [self._number(rng) if w == "N" else w for w in words[start:start + n]]
        if self.number_share > 0 and rng.random() < self.number_share:  # no draw at 0
            for _ in range(int(rng.integers(1, 3))):
                k = int(rng.integers(0, len(words) + 1))
                replace = k < len(words) and rng.random() < 0.5
                words[k:k + int(replace)] = [self.written_number(rng)]
        text = " ".join(words)
        text = re.sub(r" ([.,!?;:'])", r"\1", text) if rng.random() < 0.8 else text
        r = rng.random()
        if r < self.upper_share:
            text = text.upper()
        elif r < self.upper_share + 0.28:
            text = text[:1].upper() + text[1:]
        elif r < self.upper_share + 0.38:
            text = " ".join(w.capitalize() for w in text.split())
        if rng.random() < 0.15:
            text += str(rng.choice(list(".,!?:;")))
        if rng.random() < 0.05:
            left, right = ("(", ")") if rng.random() < 0.5 else ('"', '"')
            text = left + text + right
        text = "".join(c for c in text if c in ALPHABET)
        text = re.sub(" +", " ", text).strip()[:max_chars].strip()
        return text or "a"

    @staticmethod
    def _number(rng: np.random.Generator) -> str:
        return str(int(rng.integers(0, 10 ** int(rng.integers(1, 5)))))

    @staticmethod
    def written_number(rng: np.random.Generator) -> str:
        """A number in one of the forms handwritten notes carry, with zeros as common as
        any digit (so ``0`` and ``O`` are told apart by context, not by prior): 1-6 digits
        (house and zip numbers, ``21250``), a date (``12/07/2026``, ``7-12-26``), a time
        (``10:30``), a phone number (``555-0134``), a decimal (``3.50``) or a code of
        capitals and digits (``MD 762``, ``B12``)."""
        def digits(n: int) -> str:
            return "".join(str(d) for d in rng.integers(0, 10, n))

        form = int(rng.integers(0, 7))
        if form <= 1:
            return str(int(rng.integers(1, 10))) + digits(int(rng.integers(0, 6)))
        if form == 2:
            sep = "/" if rng.random() < 0.6 else "-"
            year = str(int(rng.integers(1950, 2040)))
            return sep.join([str(int(rng.integers(1, 32))), str(int(rng.integers(1, 13))),
                             year if rng.random() < 0.6 else year[2:]])
        if form == 3:
            return f"{int(rng.integers(0, 24))}:{int(rng.integers(0, 60)):02d}"
        if form == 4:
            return f"{digits(3)}-{digits(4)}"
        if form == 5:
            return f"{int(rng.integers(0, 1000))}.{digits(int(rng.integers(1, 3)))}"
        letters = "".join(chr(65 + int(c)) for c in rng.integers(0, 26, int(rng.integers(1, 4))))
        return letters + ("" if rng.random() < 0.5 else " ") + digits(int(rng.integers(1, 5)))


# --------------------------------------------------------------------- letter sources


@dataclass
class LetterBank:
    """Real letter/digit crops trimmed to their ink, grouped by style.

    Attributes:
        styles: one dict per style (a Chars74K writer, or one whole other archive):
            character → list of uint8 (h, w) crops, ink bright on black.
    """

    styles: list[dict[str, list[np.ndarray]]]

    @classmethod
    def load(cls, root: Path, sources: tuple[str, ...] = SETS_64, split: int = 0) -> LetterBank:
        """Read the ``split`` crops of the archives ``root/<source>.npz``.

        Raises:
            FileNotFoundError: none of the archives exists.
        """
        from models.handwriting.synth import trim_to_ink

        styles: list[dict[str, list[np.ndarray]]] = []
        for name in sources:
            path = root / f"{name}.npz"
            if not path.is_file():
                continue
            with np.load(path, allow_pickle=False) as d:
                images, labels, splits, writers = d["images"], d["labels"], d["split"], d["writer"]
            if images.shape[1:] != (64, 64):
                continue
            by_writer = name == "chars74k-hnd"
            groups: dict[int, dict[str, list[np.ndarray]]] = {}
            for i in np.flatnonzero(splits == split):
                ch = chr(int(labels[i]))
                if ch not in ALPHABET:
                    continue
                key = int(writers[i]) if by_writer else 0
                groups.setdefault(key, {}).setdefault(ch, []).append(trim_to_ink(images[i]))
            styles += list(groups.values())
        if not styles:
            raise FileNotFoundError(f"no letter archives ({', '.join(sources)}) under {root}")
        return cls(styles)

    def pick(self, style: dict[str, list[np.ndarray]], ch: str,
             rng: np.random.Generator) -> np.ndarray | None:
        """A crop of ``ch``: from ``style`` if it has one, else from any style (the other
        case for a letter no style has); None for characters with no crop at all."""
        for cands in (style.get(ch), self._any(ch, rng), self._any(ch.swapcase(), rng)):
            if cands:
                return cands[int(rng.integers(len(cands)))]
        return None

    def _any(self, ch: str, rng: np.random.Generator) -> list[np.ndarray] | None:
        having = [s[ch] for s in self.styles if ch in s]
        return having[int(rng.integers(len(having)))] if having else None


# ------------------------------------------------------------------------- rendering


def _letter_size(ch: str) -> tuple[float, float]:
    if ch.isupper() or ch.isdigit():
        return 1.0, 0.0
    return _ASCENDERS.get(ch) or _DESCENDERS.get(ch) or _X_HEIGHT


def _stamp(canvas: np.ndarray, glyph: np.ndarray, x: int, y: int) -> None:
    """Max-composite float alpha ``glyph`` onto ``canvas`` at top-left (x, y), clipped."""
    h, w = glyph.shape
    y0, x0 = max(0, y), max(0, x)
    y1, x1 = min(canvas.shape[0], y + h), min(canvas.shape[1], x + w)
    if y1 > y0 and x1 > x0:
        region = canvas[y0:y1, x0:x1]
        np.maximum(region, glyph[y0 - y:y1 - y, x0 - x:x1 - x], out=region)


def _punct(ch: str, cap: float, pen: float) -> tuple[np.ndarray, float]:
    """A punctuation mark drawn as primitives: (alpha, descent below baseline in px)."""
    size = max(6, round(cap * (0.9 if ch in "!?'" else 0.5)))
    img = np.zeros((size + 4, max(4, round(size * 0.5)) + 4), np.float32)
    w = img.shape[1]
    t = max(1, round(pen))
    r = max(1, round(pen * 0.8))
    if ch in ".,:;!?":
        cv2.circle(img, (w // 2, size), r, 1.0, -1, cv2.LINE_AA)
    if ch in ",;":
        cv2.line(img, (w // 2, size), (w // 2 - 2, size + 3), 1.0, t, cv2.LINE_AA)
    if ch in ":;":
        cv2.circle(img, (w // 2, size // 2), r, 1.0, -1, cv2.LINE_AA)
    if ch == "!":
        cv2.line(img, (w // 2, 1), (w // 2, size - 3 * r), 1.0, t, cv2.LINE_AA)
    if ch == "?":
        cv2.ellipse(img, (w // 2, size // 4 + 1), (w // 3, size // 4), 0, 180, 450, 1.0, t,
                    cv2.LINE_AA)
        cv2.line(img, (w // 2, size // 2), (w // 2, size - 3 * r), 1.0, t, cv2.LINE_AA)
    if ch == "'":
        cv2.line(img, (w // 2, 1), (w // 2 - 1, size // 3), 1.0, t, cv2.LINE_AA)
    if ch == "-":
        img = np.zeros((t + 4, max(6, round(cap * 0.4))), np.float32)
        cv2.line(img, (1, 2), (img.shape[1] - 2, 2), 1.0, t, cv2.LINE_AA)
        return img, -cap * 0.35
    return img, 0.0 if ch not in ",;" else 3.0


def _ink_ends(alpha: np.ndarray, lo: float, hi: float) -> tuple[tuple[int, int], tuple[int, int]]:
    """Leftmost and rightmost ink points between rows ``lo``..``hi`` (fractions of height)."""
    h = alpha.shape[0]
    band = alpha[int(lo * h):max(int(lo * h) + 1, int(hi * h))] > 0.3
    cols = np.flatnonzero(band.any(axis=0))
    if cols.size == 0:
        return (0, h - 1), (alpha.shape[1] - 1, h - 1)
    left_rows = np.flatnonzero(band[:, cols[0]]) + int(lo * h)
    right_rows = np.flatnonzero(band[:, cols[-1]]) + int(lo * h)
    return (int(cols[0]), int(left_rows.mean())), (int(cols[-1]), int(right_rows.mean()))


def _stroke_width(alpha: np.ndarray) -> float:
    """Mean stroke width in px: twice the mean distance-to-background over the skeleton-ish
    core (pixels at a local maximum of the distance transform)."""
    mask = np.pad((alpha > 0.3).astype(np.uint8), 1)
    if mask.sum() == 0:
        return 1.0
    dist = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
    core = dist >= cv2.dilate(dist, np.ones((3, 3), np.uint8))
    values = dist[core & (mask > 0)]
    return float(2 * values.mean()) if values.size else 1.0


def _set_pen(alpha: np.ndarray, target: float) -> np.ndarray:
    """Erode or dilate ``alpha`` towards a stroke width of ``target`` px."""
    delta = round((target - _stroke_width(alpha)) / 2)
    if delta == 0:
        return alpha
    k = np.ones((2 * abs(delta) + 1,) * 2, np.uint8)
    out = cv2.dilate(alpha, k) if delta > 0 else cv2.erode(alpha, k)
    return out if (out > 0.3).any() else alpha


def render_letters(text: str, bank: LetterBank, rng: np.random.Generator,
                   apart_share: float = 0.0) -> tuple[np.ndarray, str]:
    """A line of real letter crops: float32 alpha (h, w) in [0, 1], ink 1, and the text
    drawn (characters with no crop and no drawn form are left out).

    Capital height 28-48 px; per-letter size and baseline jitter; gaps from overlapping to
    wide; with probability 0.4 the letters of a word are joined by a drawn stroke; else,
    with probability ``apart_share``, written well apart (gaps of 0.15-0.6 capital heights
    inside a word, as block capitals often are; word gaps widened to match).
    """
    cap = float(rng.uniform(28, 48))
    style = bank.styles[int(rng.integers(len(bank.styles)))]
    pen = float(rng.uniform(0.06, 0.14)) * cap
    joined = rng.random() < 0.4
    apart = not joined and rng.random() < apart_share
    gap_lo, gap_hi = (-0.12, 0.1) if joined else ((0.15, 0.6) if apart else (-0.1, 0.35))
    word_gap = (1.0, 1.6) if apart else (0.5, 1.0)
    slope = float(rng.normal(0, 0.02))
    advance = 1.8 if apart else 1.3  # canvas width per character, in capital heights
    canvas = np.zeros((int(cap * 2.2), int(cap * (len(text) * advance + 2))), np.float32)
    base = int(cap * 1.4)
    x = int(cap * 0.3)
    prev_end: tuple[int, int] | None = None
    drawn: list[str] = []
    for ch in text:
        if ch == " ":
            x += int(cap * rng.uniform(*word_gap))
            prev_end = None
            drawn.append(ch)
            continue
        crop = bank.pick(style, ch, rng) if ch not in _PUNCT_DRAWN else None
        if crop is None and ch not in _PUNCT_DRAWN:
            continue
        drawn.append(ch)
        if crop is None:
            glyph, descent = _punct(ch, cap, pen)
        else:
            size, desc = _letter_size(ch)
            h = max(4, round(cap * size * rng.uniform(0.9, 1.1)))
            w = max(2, round(crop.shape[1] * h / crop.shape[0] * rng.uniform(0.85, 1.15)))
            w = min(w, 2 * h)
            glyph = cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA if h < crop.shape[0]
                               else cv2.INTER_LINEAR).astype(np.float32) / 255.0
            glyph = _set_pen(glyph, pen)
            descent = desc * cap
        gh, gw = glyph.shape
        y_base = base + slope * x + rng.uniform(-0.04, 0.04) * cap
        top = int(y_base + descent - gh)
        if crop is not None and x > cap * 0.3:
            x += int(cap * rng.uniform(gap_lo, gap_hi))
        if joined and prev_end is not None and crop is not None and ch.islower():
            (lx, ly), _ = _ink_ends(glyph, 0.4, 1.0)
            start = prev_end
            end = (x + lx, top + ly)
            mid = ((start[0] + end[0]) // 2, max(start[1], end[1]) + int(cap * 0.08))
            pts = np.array([start, mid, end], np.int32)
            line = np.zeros_like(canvas)
            cv2.polylines(line, [pts], False, 1.0, max(1, round(pen)), cv2.LINE_AA)
            np.maximum(canvas, line, out=canvas)
        _stamp(canvas, glyph, x, top)
        if crop is not None:
            _, (rx, ry) = _ink_ends(glyph, 0.5, 1.0)
            prev_end = (x + rx, top + ry)
        x += gw
        if x >= canvas.shape[1] - int(cap):
            break
    return canvas, re.sub(" +", " ", "".join(drawn)).strip()


class FontBank:
    """Handwriting fonts and the characters each really has (no .notdef boxes)."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        folders = sorted({p.parent for p in paths})
        #: index of each path's family (its folder)
        self.family = [folders.index(p.parent) for p in paths]
        self.supported: list[set[str]] = []
        for p in paths:
            font = ImageFont.truetype(str(p), 40)
            notdef = np.asarray(font.getmask("\ue000"))
            have = set()
            for ch in ALPHABET:
                m = np.asarray(font.getmask(ch))
                if ch == " " or (m.size and (m.shape != notdef.shape or
                                              not np.array_equal(m, notdef))):
                    have.add(ch)
            self.supported.append(have)
        self._cache: dict[tuple[int, int], ImageFont.FreeTypeFont] = {}

    def font(self, i: int, size: int) -> ImageFont.FreeTypeFont:
        key = (i, size)
        if key not in self._cache:
            self._cache[key] = ImageFont.truetype(str(self.paths[i]), size)
        return self._cache[key]


def render_font(text: str, fonts: FontBank,
                rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """A line in a handwriting font: float32 alpha (h, w) in [0, 1], ink 1, and the text
    drawn (characters the font lacks become the other case or a space); whole-line, or
    (for print fonts, half the time) letter by letter with size, baseline and gap jitter."""
    family = int(rng.integers(max(fonts.family) + 1))
    members = [j for j, f in enumerate(fonts.family) if f == family]
    i = members[int(rng.integers(len(members)))]
    have = fonts.supported[i]
    if any(c in fonts.paths[i].name for c in _CAPS_FONTS):
        text = text.upper()
    text = "".join(c if c in have else (c.swapcase() if c.swapcase() in have else " ")
                   for c in text)
    size = int(rng.uniform(32, 56))
    font = fonts.font(i, size)
    width = int(size * (len(text) * 1.2 + 4))
    img = Image.new("L", (width, int(size * 2.4)), 0)
    draw = ImageDraw.Draw(img)
    base = int(size * 1.5)
    joined = any(j in fonts.paths[i].name for j in _JOINED_FONTS)
    if joined or rng.random() < 0.5:
        draw.text((size // 2, base), text, fill=255, font=font, anchor="ls")
    else:
        x = size / 2
        for ch in text:
            s = fonts.font(i, max(8, int(size * rng.uniform(0.9, 1.1))))
            draw.text((x, base + rng.uniform(-0.04, 0.04) * size), ch, fill=255, font=s,
                      anchor="ls")
            x += s.getlength(ch) * rng.uniform(0.85, 1.2)
    return np.asarray(img, np.float32) / 255.0, re.sub(" +", " ", text).strip()


# ------------------------------------------------------------------------ geometry


def _geometry(alpha: np.ndarray, rng: np.random.Generator,
              shear_max: float = 0.35) -> np.ndarray:
    """Slant (shear ±``shear_max``), rotation (±2°), a slow baseline wave and elastic
    distortion."""
    h, w = alpha.shape
    shear = float(rng.uniform(-shear_max, shear_max))
    angle = np.deg2rad(rng.uniform(-2, 2))
    cos, sin = np.cos(angle), np.sin(angle)
    m = np.array([[cos, -sin + shear, 0], [sin, cos, 0]], np.float32)
    m[0, 2] = -shear * h / 2 + h * 0.3 * abs(shear)
    pad = int(h * 0.5)
    out_w = w + pad
    alpha = cv2.warpAffine(alpha, m, (out_w, h), flags=cv2.INTER_LINEAR)
    if rng.random() < 0.6:  # baseline wave + elastic jitter
        xs = np.arange(out_w, dtype=np.float32)
        amp = rng.uniform(0, 0.06) * h
        period = rng.uniform(2, 6) * h
        wave = (amp * np.sin(2 * np.pi * xs / period + rng.uniform(0, 6))).astype(np.float32)
        dx = cv2.GaussianBlur(rng.normal(0, 1, (h, out_w)).astype(np.float32), (0, 0), 6)
        dy = cv2.GaussianBlur(rng.normal(0, 1, (h, out_w)).astype(np.float32), (0, 0), 6)
        k = rng.uniform(0, 0.04) * h / max(1e-6, float(np.abs(dx).max()))
        map_x = xs[None, :] + k * dx
        map_y = np.arange(h, dtype=np.float32)[:, None] + wave[None, :] + k * dy
        alpha = cv2.remap(alpha, map_x.astype(np.float32), map_y.astype(np.float32),
                          cv2.INTER_LINEAR)
    return alpha


def _photograph(alpha: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Ink alpha → uint8 gray "photo": paper, texture, ruling, shadow, bleed-through, pen
    darkness, blur, noise, JPEG."""
    h, w = alpha.shape
    paper = rng.uniform(170, 250)
    img = np.full((h, w), paper, np.float32)
    img *= 1 + cv2.GaussianBlur(rng.normal(0, 0.04, (h, w)).astype(np.float32), (0, 0), 1.5)
    if rng.random() < 0.35:  # ruled lines, faint, through the baseline region
        gap = rng.uniform(0.6, 1.1) * h
        y = rng.uniform(0.55, 0.8) * h
        darkness = rng.uniform(0.1, 0.45)
        while y < h:
            cv2.line(img, (0, int(y)), (w, int(y + rng.uniform(-2, 2))),
                     float(paper * (1 - darkness)), int(rng.integers(1, 3)))
            y += gap
            if rng.random() < 0.5:
                break
        y = rng.uniform(0.55, 0.8) * h - gap
        if y > 0 and rng.random() < 0.5:
            cv2.line(img, (0, int(y)), (w, int(y)), float(paper * (1 - darkness)), 1)
    if rng.random() < 0.2:  # bleed-through: faint mirrored strokes
        ghost = cv2.GaussianBlur(np.fliplr(alpha), (0, 0), 1.2)
        img *= 1 - rng.uniform(0.05, 0.15) * ghost
    if rng.random() < 0.4:  # shadow / lighting gradient
        gx = np.linspace(rng.uniform(0.6, 1), rng.uniform(0.6, 1), w, dtype=np.float32)
        img *= gx[None, :]
    strength = rng.uniform(0.55, 0.95)
    img *= 1 - strength * np.clip(alpha * rng.uniform(0.8, 1.2), 0, 1)
    sigma = rng.uniform(0.2, 1.4)
    blurred = cv2.GaussianBlur(img, (0, 0), sigma)
    noisy = blurred + rng.normal(0, rng.uniform(0.5, 6), img.shape).astype(np.float32)
    img8: np.ndarray = np.clip(noisy, 0, 255).astype(np.uint8)
    if rng.random() < 0.6:
        ok, buf = cv2.imencode(".jpg", img8, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(40, 95))])
        if ok:
            img8 = np.asarray(cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE))
    return img8


def crop_to_height(ink: np.ndarray, height: int, pad: float = 0.15,
                   threshold: float = 0.2) -> np.ndarray:
    """Crop an ink map to the box of its ink (plus ``pad`` × box height above and below and
    half that left and right), then resize to ``height`` rows keeping the aspect ratio.

    Args:
        ink: float32 (h, w) in [0, 1], ink bright.

    Returns:
        float32 (height, W) with W >= height; all zeros (height, height) without ink.
    """
    rows = np.flatnonzero((ink > threshold).any(axis=1))
    cols = np.flatnonzero((ink > threshold).any(axis=0))
    if rows.size == 0:
        return np.zeros((height, height), np.float32)
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    p = pad * (y1 - y0)
    y0, y1 = max(0, int(y0 - p)), min(ink.shape[0], int(y1 + p))
    x0, x1 = max(0, int(x0 - p / 2)), min(ink.shape[1], int(x1 + p / 2))
    crop = ink[y0:y1, x0:x1]
    w = max(height, round(crop.shape[1] * height / crop.shape[0]))
    return cv2.resize(crop, (w, height), interpolation=cv2.INTER_AREA).astype(np.float32)


class LineSynthesizer:
    """Random (line image, transcription) pairs for CTC training.

    Args:
        sentences: English text to draw line texts from (:func:`english_lines`).
        bank: real letter crops (:meth:`LetterBank.load`), or None for fonts only.
        fonts: handwriting fonts (:class:`FontBank`), or None for letters only.
        height: output height in px (the model's input height).
        font_share: probability a line is drawn in a font when both sources exist.
        real: real line/word images with transcriptions
            (:class:`models.handwriting.reallines.RealLineBank`), or None.
        real_share: probability a line is a real image (then geometry, photograph and crop
            as for composed lines) when ``real`` is given.
        upper_share: probability a composed line's text is all capitals
            (:class:`TextSampler`).
        apart_share: probability a line of letter crops is written with its letters well
            apart (:func:`render_letters`).
        number_share: probability a composed line's text gets written numbers
            (:class:`TextSampler`).

    Raises:
        ValueError: neither letters nor fonts; a share outside [0, 1].
    """

    def __init__(self, sentences: list[str], bank: LetterBank | None, fonts: FontBank | None,
                 height: int = 32, font_share: float = 0.5, real: RealLineBank | None = None,
                 real_share: float = 0.0, upper_share: float = DEFAULT_UPPER_SHARE,
                 apart_share: float = 0.0, number_share: float = DEFAULT_NUMBER_SHARE) -> None:
        for name, share in (("real_share", real_share), ("upper_share", upper_share),
                            ("apart_share", apart_share), ("number_share", number_share)):
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {share}")
        if bank is None and (fonts is None or not fonts.paths):
            raise ValueError("no glyph source: give letter archives and/or handwriting fonts")
        self.real, self.real_share = real, (real_share if real is not None else 0.0)
        self.text = TextSampler(sentences, upper_share, number_share)
        self.apart_share = apart_share
        self.bank, self.fonts, self.height = bank, fonts, height
        self.font_share = font_share if bank is not None and fonts and fonts.paths else (
            1.0 if bank is None else 0.0)

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        """One line: float32 (height, W) ink map in [0, 1] and its text."""
        if self.real is not None and rng.random() < self.real_share:
            alpha, text = self.real.sample(rng)
            if rng.random() < 0.5:  # real lines already slant and wave: half kept as written
                alpha = _geometry(alpha, rng, shear_max=0.15)
            alpha = _trim(alpha)
            ink = ink_map(_photograph(alpha, rng), max_side=4096).ink
            return crop_to_height(ink, self.height, pad=float(rng.uniform(0.05, 0.25))), text
        text = self.text.sample(rng)
        if rng.random() < self.font_share:
            assert self.fonts is not None
            alpha, text = render_font(text, self.fonts, rng)
        else:
            assert self.bank is not None
            alpha, text = render_letters(text, self.bank, rng, self.apart_share)
        alpha = _geometry(alpha, rng)
        alpha = _trim(alpha)
        photo = _photograph(alpha, rng)
        ink = ink_map(photo, max_side=4096).ink
        return crop_to_height(ink, self.height, pad=float(rng.uniform(0.05, 0.25))), text


def _trim(alpha: np.ndarray, margin: float = 0.6) -> np.ndarray:
    """Crop to the ink box plus ``margin`` × its height of paper on every side."""
    rows = np.flatnonzero((alpha > 0.2).any(axis=1))
    cols = np.flatnonzero((alpha > 0.2).any(axis=0))
    if rows.size == 0:
        return alpha
    m = int(margin * (rows[-1] - rows[0] + 1))
    out = np.zeros((rows[-1] - rows[0] + 1 + 2 * m, cols[-1] - cols[0] + 1 + 2 * m), np.float32)
    out[m:-m or None, m:-m or None] = alpha[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    return out
