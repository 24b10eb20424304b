"""Multi-letter evaluation images composed from held-out handwritten letters.

We have no real photos of handwritten lines, so :func:`compose` lays out real letters
from the shared archives' **test** split (``split == 1``) as words and lines, and
"photographs" them: pen colour on paper with lighting, texture, optional ruled lines,
rotation, blur, sensor noise and JPEG. Every letter is a separate connected component:
letters never touch, and their boxes stay at least ``Layout.min_gap_px`` apart even after
rotation. :func:`make_eval_set` writes such a set to disk with its ground truth.

Two difficulties:
    clean       no rotation, no ruled lines, even lighting, little noise, JPEG 88-95
                (the "clean block-capital photo" of the CER target)
    realistic   rotation up to ±3°, lighting gradient and soft shadows, paper texture,
                faint ruled lines between text lines, more blur and noise, JPEG 55-85

For one seed the text and the letter images are the same for both difficulties (they
come from their own child generators), so the two sets differ only in the "photo".
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from models.common.paths import data_dir as default_data_root
from models.handwriting.data import SETS_64

log = logging.getLogger(__name__)

DIFFICULTIES = ("clean", "realistic")
CASES = ("upper", "mixed")
#: Alpha at or above which a pixel counts as ink for the letter boxes.
BOX_THRESHOLD = 0.1

#: Common English words, 2-8 letters, covering all of A-Z.
_WORD_LIST = """
OF TO IN IT IS BE AS AT SO WE HE BY OR ON DO IF ME MY UP AN GO NO US AM
THE AND FOR ARE BUT NOT YOU ALL ANY CAN HAD HER WAS ONE OUR OUT DAY GET HAS HIM HIS HOW
MAN NEW NOW OLD SEE TWO WAY WHO BOY DID ITS LET PUT SAY SHE TOO USE BOX FOX ZOO SKY
ABOUT AFTER AGAIN ALWAYS ANIMAL ANSWER APPLE AROUND BECAUSE BEFORE BETTER BETWEEN BLACK
BOOK BOTH BREAD BRING BROTHER BUILD CALL CAME CHANGE CHILD CITY CLOSE COLD COME COULD
COUNTRY DOOR DOWN EACH EARLY EARTH EVERY FAMILY FATHER FIND FIRST FOOD FOUND FRIEND FROM
GARDEN GIRL GIVE GOOD GREAT GREEN GROUP HAND HAPPY HAVE HEAD HELP HERE HIGH HOME HORSE
HOUSE IDEA JUST KEEP KIND KNOW LARGE LAST LEARN LEFT LIGHT LIKE LINE LITTLE LIVE LONG
LOOK MAKE MANY MIGHT MONEY MORE MORNING MOTHER MOVE MUCH MUST NAME NEAR NEVER NEXT NIGHT
NUMBER OFTEN ONLY OPEN OTHER OVER PAPER PART PEOPLE PLACE PLANT PLAY POINT QUICK QUIET
QUITE RIVER ROAD ROUND SCHOOL SECOND SHOULD SHOW SMALL SOUND SPELL STAND START STILL
STORY STUDY SUCH TABLE TAKE TELL THAN THAT THEIR THEM THEN THERE THESE THEY THING THINK
THIS THOSE THREE TIME TOGETHER TREE TURN UNDER UNTIL VERY VOICE WALK WANT WATER WELL WENT
WERE WHAT WHEN WHERE WHICH WHILE WHITE WINDOW WITH WORD WORK WORLD WOULD WRITE YEAR
YELLOW YOUNG ZERO JUMP JAZZ QUEEN EXTRA VALLEY OXYGEN SIX SEVEN FIVE
"""
WORDS: tuple[str, ...] = tuple(_WORD_LIST.split())

# Lower-case letters: (height, descent below the baseline) as fractions of the capital
# height; the source images fill their frame, so the real proportions must be restored.
_ASCENDERS = {c: (1.0, 0.0) for c in "bdfhkl"} | {"t": (0.85, 0.0), "i": (0.85, 0.0)}
_DESCENDERS = {c: (0.95, 0.35) for c in "gpqy"} | {"j": (1.2, 0.35)}
_X_HEIGHT = (0.62, 0.0)


@dataclass(frozen=True)
class PoolLetter:
    """One held-out letter image.

    Attributes:
        image: uint8 (64, 64), ink bright on black (the shared data's convention).
        upper: the source labelled it upper case.
        source: archive name, e.g. ``"chars74k-hnd"``.
        index: row in that archive's arrays.
    """

    image: np.ndarray
    upper: bool
    source: str
    index: int


#: Upper-case letter → its images (either case; see ``PoolLetter.upper``).
LetterPool = dict[str, list[PoolLetter]]


@dataclass(frozen=True)
class Layout:
    """Page geometry. Fractions are of the image's capital-letter height ``H``.

    Attributes:
        letter_height_px: range of ``H`` in output pixels (drawn once per image).
        height_jitter: each letter's height is ``H * U(1 ± height_jitter)``.
        baseline_jitter: each letter's bottom moves by ``U(± baseline_jitter) * H``.
        letter_gap, word_gap: gaps between the ink boxes of neighbouring letters.
        line_spacing: baseline-to-baseline distance (raised where lines would collide).
        margin: page margin on each side.
        min_gap_px: least distance between any two letter boxes in the output image.
    """

    letter_height_px: tuple[float, float] = (40.0, 56.0)
    height_jitter: float = 0.15
    baseline_jitter: float = 0.06
    letter_gap: tuple[float, float] = (0.15, 0.5)
    word_gap: tuple[float, float] = (0.8, 1.5)
    line_spacing: tuple[float, float] = (1.4, 1.6)
    margin: tuple[float, float] = (0.6, 1.5)
    min_gap_px: int = 3


@dataclass(frozen=True)
class Photo:
    """How the page is "photographed"; ranges are sampled once per image."""

    max_rotation_deg: float
    papers: tuple[str, ...]
    exposure: tuple[float, float]        # overall brightness factor
    gradient: tuple[float, float]        # brightness drop across the page
    shadow_prob: float
    shadow_depth: tuple[float, float]
    texture: float                       # paper reflectance texture amplitude
    ruled_prob: float
    ink_strength: tuple[float, float]    # pen darkness per image
    letter_strength: tuple[float, float]  # extra darkness factor per letter
    blur_sigma: tuple[float, float]      # Gaussian blur, px
    noise_std: tuple[float, float]       # sensor noise, 0-255 units
    jpeg_quality: tuple[int, int]


PHOTOS = {
    "clean": Photo(max_rotation_deg=0.0, papers=("white", "cream"), exposure=(0.92, 1.0),
                   gradient=(0.0, 0.08), shadow_prob=0.0, shadow_depth=(0.0, 0.0),
                   texture=0.01, ruled_prob=0.0, ink_strength=(0.9, 1.0),
                   letter_strength=(0.95, 1.0), blur_sigma=(0.3, 0.6), noise_std=(0.5, 2.0),
                   jpeg_quality=(88, 95)),
    "realistic": Photo(max_rotation_deg=3.0, papers=("white", "cream", "grey"),
                       exposure=(0.7, 1.0), gradient=(0.05, 0.35), shadow_prob=0.4,
                       shadow_depth=(0.15, 0.4), texture=0.035, ruled_prob=0.5,
                       ink_strength=(0.65, 1.0), letter_strength=(0.85, 1.0),
                       blur_sigma=(0.5, 1.3), noise_std=(2.0, 6.0), jpeg_quality=(55, 85)),
}
# Reflectances (RGB, 0-1).
_PAPERS = {"white": (0.95, 0.95, 0.94), "cream": (0.96, 0.92, 0.80), "grey": (0.80, 0.80, 0.78)}
_INKS = ((0.10, 0.14, 0.42), (0.06, 0.06, 0.07), (0.25, 0.25, 0.27))  # blue, black, dark grey
_RULE = (0.55, 0.65, 0.85)


@dataclass
class SynthImage:
    """A composed "photo" and its ground truth.

    Attributes:
        image: uint8 (H, W, 3) RGB, exactly what decoding ``jpeg`` gives.
        text: the ground truth: words joined by single spaces, lines by ``"\\n"``.
        boxes: ``(x, y, w, h)`` in pixels of ``image``, one per letter of ``text`` in
            reading order (spaces and newlines have none); the tight box of the letter's
            ink (alpha >= ``BOX_THRESHOLD``).
        jpeg: the encoded image.
    """

    image: np.ndarray
    text: str
    boxes: list[tuple[int, int, int, int]]
    jpeg: bytes


@dataclass
class _Glyph:
    """A letter placed on the unrotated canvas; ``x`` is page-relative, ``y`` baseline-relative
    until the line's baseline is fixed."""

    alpha: np.ndarray  # float32 (h, w) in [0, 1]
    x: int
    y: int

    @property
    def rect(self) -> tuple[float, float, float, float]:
        h, w = self.alpha.shape
        return float(self.x), float(self.y), float(w), float(h)


# ------------------------------------------------------------------------- letters


def load_letter_pool(data_dir: Path | None = None, split: int = 1,
                     sources: tuple[str, ...] | list[str] = SETS_64) -> LetterPool:
    """Letters A-Z (either case) of one split of the 64x64 archives.

    Args:
        data_dir: folder holding ``<source>.npz``; default ``data_dir() / "handwriting"``.
        split: 1 = test (held out from training; use this for evaluation), 0 = train.
        sources: archive names without ``.npz``; digits in them are skipped.

    Returns:
        ``{"A": [PoolLetter, ...], ...}`` keyed by upper-case letter; only letters present.

    Raises:
        FileNotFoundError: an archive is missing.
        ValueError: an archive's images are not (N, 64, 64) uint8 (e.g. Kassel's 16x8).
    """
    root = data_dir if data_dir is not None else default_data_root() / "handwriting"
    pool: LetterPool = {}
    for name in sources:
        path = root / f"{name}.npz"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; pass the folder holding the shared "
                                    "handwriting archives (MODELZOO_DATA_DIR/handwriting)")
        with np.load(path, allow_pickle=False) as d:
            images, labels, splits = d["images"], d["labels"], d["split"]
        if images.dtype != np.uint8 or images.shape[1:] != (64, 64):
            raise ValueError(f"{path}: images are {images.dtype} {images.shape}, "
                             "expected uint8 (N, 64, 64); leave this archive out of `sources`")
        upper = (labels >= 65) & (labels <= 90)
        lower = (labels >= 97) & (labels <= 122)
        for i in np.flatnonzero((splits == split) & (upper | lower)):
            key = chr(int(labels[i])).upper()
            pool.setdefault(key, []).append(PoolLetter(images[i], bool(upper[i]), name, int(i)))
    log.info("letter pool (split %d): %d images, %d letters from %s", split,
             sum(map(len, pool.values())), len(pool), ", ".join(sources))
    return pool


def trim_to_ink(image: np.ndarray, threshold: float = 0.25) -> np.ndarray:
    """Crop a letter image to the box of its ink and drop faint haze.

    Ink is ``>= threshold * max``; components of <= 2 px are ignored for the box. Pixels
    below ``0.4 * threshold * max`` become 0, so no haze rectangle shows on the paper.

    Args:
        image: uint8 (S, S), ink bright on black.

    Returns:
        uint8 (h, w); the whole image if it holds no ink.
    """
    peak = int(image.max())
    if peak == 0:
        return image.copy()
    mask = (image >= max(1.0, threshold * peak)).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    keep = [s for s in stats[1:n] if s[cv2.CC_STAT_AREA] > 2] or list(stats[1:n])
    x0 = min(int(s[cv2.CC_STAT_LEFT]) for s in keep)
    y0 = min(int(s[cv2.CC_STAT_TOP]) for s in keep)
    x1 = max(int(s[cv2.CC_STAT_LEFT] + s[cv2.CC_STAT_WIDTH]) for s in keep)
    y1 = max(int(s[cv2.CC_STAT_TOP] + s[cv2.CC_STAT_HEIGHT]) for s in keep)
    crop = image[y0:y1, x0:x1].copy()
    crop[crop < 0.4 * threshold * peak] = 0
    return crop


def random_text(rng: np.random.Generator, lines: tuple[int, int] = (1, 3),
                words: tuple[int, int] = (1, 4)) -> str:
    """Random lines of random ``WORDS``: ``lines`` and ``words`` per line are inclusive ranges."""
    out = []
    for _ in range(int(rng.integers(lines[0], lines[1] + 1))):
        n_words = int(rng.integers(words[0], words[1] + 1))
        out.append(" ".join(WORDS[int(i)] for i in rng.integers(0, len(WORDS), n_words)))
    return "\n".join(out)


def _parse_text(text: str) -> list[list[str]]:
    """Non-blank lines of words, upper-cased.

    Raises:
        ValueError: a character other than a letter, space or newline; or no letters.
    """
    bad = sorted({c for c in text if not (c.isascii() and c.isalpha()) and c not in " \n"})
    if bad:
        raise ValueError(f"text may hold only letters A-Z, spaces and newlines; got {bad}")
    lines = [line.upper().split() for line in text.split("\n")]
    lines = [line for line in lines if line]
    if not lines:
        raise ValueError("text holds no letters")
    return lines


def _pick_letters(lines: list[list[str]], pool: LetterPool, case: str,
                  rng: np.random.Generator) -> list[list[list[tuple[str, PoolLetter]]]]:
    """Choose one image per letter: source first (uniform over the sources that have the
    letter in the wanted case, so big archives do not dominate), then an image.

    With ``case="mixed"`` each word is drawn upper, lower or capitalised (1/3 each);
    a letter without images of the wanted case falls back to the other case.

    Returns:
        lines → words → ``(character as rendered, image)``.

    Raises:
        ValueError: the pool has no image of a letter (in upper case, for ``case="upper"``).
    """
    picked = []
    for line in lines:
        out_line = []
        for word in line:
            style = "upper" if case == "upper" else ("upper", "lower", "title")[rng.integers(3)]
            out_word = []
            for j, c in enumerate(word):
                want_upper = style == "upper" or (style == "title" and j == 0)
                images = pool.get(c, [])
                cands = [p for p in images if p.upper == want_upper]
                if not cands and case == "mixed":
                    cands = images
                if not cands:
                    raise ValueError(f"the letter pool has no {'upper-case ' * want_upper}"
                                     f"images of {c!r}")
                sources = sorted({p.source for p in cands})
                src = sources[int(rng.integers(len(sources)))]
                cands = [p for p in cands if p.source == src]
                letter = cands[int(rng.integers(len(cands)))]
                out_word.append((c if letter.upper else c.lower(), letter))
            out_line.append(out_word)
        picked.append(out_line)
    return picked


# -------------------------------------------------------------------------- layout


def _rotation(theta_deg: float) -> np.ndarray:
    """The linear part (2, 2) of ``cv2.getRotationMatrix2D(_, theta_deg, 1)``."""
    a, b = math.cos(math.radians(theta_deg)), math.sin(math.radians(theta_deg))
    return np.array([[a, b], [-b, a]])


def _rotated_boxes(rects: np.ndarray, rot: np.ndarray) -> np.ndarray:
    """Axis-aligned boxes (N, 4) ``x0, y0, x1, y1`` of rectangles (N, 4) ``x, y, w, h``
    after the linear map ``rot`` (2, 2)."""
    x, y, w, h = (rects[:, i, None] for i in range(4))
    xs = np.concatenate([x, x + w, x, x + w], axis=1)                       # (N, 4) corners
    ys = np.concatenate([y, y, y + h, y + h], axis=1)
    px = rot[0, 0] * xs + rot[0, 1] * ys
    py = rot[1, 0] * xs + rot[1, 1] * ys
    return np.stack([px.min(1), py.min(1), px.max(1), py.max(1)], axis=1)


def _min_separation(a: np.ndarray, b: np.ndarray) -> float:
    """Least distance, over pairs of boxes (N, 4) x (M, 4) ``x0, y0, x1, y1``, along each
    pair's freer axis; negative when two boxes overlap; +inf when either is empty."""
    if len(a) == 0 or len(b) == 0:
        return math.inf
    a, b = a[:, None, :], b[None, :, :]
    sep = np.maximum.reduce([b[..., 0] - a[..., 2], a[..., 0] - b[..., 2],
                             b[..., 1] - a[..., 3], a[..., 1] - b[..., 3]])  # (N, M)
    return float(sep.min())


def _rects(glyphs: list[_Glyph], dy: float = 0.0) -> np.ndarray:
    """(N, 4) float ``x, y + dy, w, h`` of the glyphs."""
    rects = np.array([g.rect for g in glyphs], dtype=np.float64).reshape(-1, 4)
    rects[:, 1] += dy
    return rects


def _scale_letter(crop: np.ndarray, height: int) -> np.ndarray:
    """Resize ``crop`` to ``height`` px keeping its aspect (width capped at 2x height);
    returns float32 alpha in [0, 1]."""
    ch, cw = crop.shape
    th, tw = height, max(1, round(cw * height / ch))
    if tw > 2 * th:
        tw, th = 2 * th, max(1, round(ch * 2 * th / cw))
    interp = cv2.INTER_AREA if th < ch else cv2.INTER_LINEAR
    return cv2.resize(crop, (tw, th), interpolation=interp).astype(np.float32) / 255.0


def _place_line(words: list[list[tuple[str, PoolLetter]]], big_h: float, rot: np.ndarray,
                cfg: Layout, rng: np.random.Generator) -> list[_Glyph]:
    """Letters of one line left to right; ``y`` relative to the baseline."""
    glyphs: list[_Glyph] = []
    need = cfg.min_gap_px + 1.0  # one px slack for rounding and interpolation
    x = rng.uniform(0.0, 0.5) * big_h
    for w, word in enumerate(words):
        for j, (char, letter) in enumerate(word):
            size, descent = (1.0, 0.0) if char.isupper() else \
                _ASCENDERS.get(char) or _DESCENDERS.get(char) or _X_HEIGHT
            jitter = rng.uniform(1 - cfg.height_jitter, 1 + cfg.height_jitter)
            alpha = _scale_letter(trim_to_ink(letter.image), max(4, round(big_h * size * jitter)))
            bottom = round(big_h * (descent + rng.uniform(-cfg.baseline_jitter,
                                                         cfg.baseline_jitter)))
            if glyphs:
                gap = rng.uniform(*(cfg.word_gap if j == 0 and w > 0 else cfg.letter_gap))
                prev = glyphs[-1]
                x = prev.x + prev.alpha.shape[1] + max(1, round(gap * big_h))
            glyph = _Glyph(alpha, int(x), bottom - alpha.shape[0])
            # Push right until it clears its neighbours even after the page's rotation.
            near = _rotated_boxes(_rects(glyphs[-3:]), rot)
            while (sep := _min_separation(near, _rotated_boxes(_rects([glyph]), rot))) < need:
                glyph.x += max(1, math.ceil(need - sep))
            glyphs.append(glyph)
    return glyphs


def _layout(picked: list[list[list[tuple[str, PoolLetter]]]], theta: float, cfg: Layout,
            rng: np.random.Generator) -> tuple[list[_Glyph], list[float], tuple[int, int]]:
    """Place every letter on an unrotated page.

    Returns:
        glyphs in reading order (page coordinates), ruled-line y positions (just below
        each text line and above the first), and the page size ``(width, height)``.
    """
    big_h = rng.uniform(*cfg.letter_height_px)
    rot = _rotation(theta)
    need = cfg.min_gap_px + 1.0
    margins = rng.uniform(*cfg.margin, size=4) * big_h  # left, top, right, bottom
    lines = [_place_line(words, big_h, rot, cfg, rng) for words in picked]
    tops = [min(g.y for g in line) for line in lines]
    bottoms = [max(g.y + g.alpha.shape[0] for g in line) for line in lines]
    baselines = [round(margins[1]) - tops[0]]
    for k in range(1, len(lines)):
        prev_base = baselines[-1]
        base = max(round(prev_base + rng.uniform(*cfg.line_spacing) * big_h),
                   prev_base + bottoms[k - 1] - tops[k] + round(0.15 * big_h))
        placed = _rotated_boxes(np.concatenate(
            [_rects(line, b) for line, b in zip(lines[:k], baselines, strict=True)]), rot)
        # Push down until it clears every earlier line even after the page's rotation.
        while (sep := _min_separation(placed, _rotated_boxes(_rects(lines[k], base), rot))
               ) < need:
            base += max(1, math.ceil(need - sep))
        baselines.append(base)
    left = round(margins[0])
    glyphs = [_Glyph(g.alpha, g.x + left, g.y + base)
              for line, base in zip(lines, baselines, strict=True) for g in line]
    width = round(max(g.x + g.alpha.shape[1] for g in glyphs) + margins[2])
    height = round(baselines[-1] + bottoms[-1] + margins[3])
    below = [baselines[k] + bottoms[k] for k in range(len(lines))]
    gaps = [baselines[k + 1] + tops[k + 1] - below[k] for k in range(len(lines) - 1)]
    offset = rng.uniform(0.05, 0.12) * big_h
    rules = [baselines[0] + tops[0] - min(offset, margins[1] / 2)]
    rules += [b + min(offset, g / 2) for b, g in zip(below, [*gaps, margins[3]], strict=True)]
    return glyphs, rules, (width, height)


# -------------------------------------------------------------------------- photo


def _rotation_matrix(size: tuple[int, int], theta: float) -> tuple[np.ndarray, tuple[int, int]]:
    """``cv2`` affine (2, 3) rotating a ``(width, height)`` page by ``theta`` degrees about
    its centre, onto a canvas just big enough to hold it; and that canvas size."""
    w, h = size
    m = cv2.getRotationMatrix2D((w / 2, h / 2), theta, 1.0)
    c, s = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = math.ceil(h * s + w * c - 1e-9), math.ceil(h * c + w * s - 1e-9)
    m[0, 2] += nw / 2 - w / 2
    m[1, 2] += nh / 2 - h / 2
    return m, (nw, nh)


def _boxes(labels: np.ndarray, glyphs: list[_Glyph], m: np.ndarray
           ) -> list[tuple[int, int, int, int]]:
    """Tight box of each glyph's label pixels, searched within its rotated rectangle."""
    out = []
    H, W = labels.shape
    for k, g in enumerate(glyphs, start=1):
        x0, y0, x1, y1 = _rotated_boxes(_rects([g]), m[:, :2])[0]
        x0, y0 = max(0, math.floor(x0 + m[0, 2]) - 2), max(0, math.floor(y0 + m[1, 2]) - 2)
        x1, y1 = min(W, math.ceil(x1 + m[0, 2]) + 2), min(H, math.ceil(y1 + m[1, 2]) + 2)
        ys, xs = np.nonzero(labels[y0:y1, x0:x1] == k)
        if len(xs) == 0:  # no pixel reached BOX_THRESHOLD: fall back to the rectangle
            out.append((x0, y0, x1 - x0, y1 - y0))
            continue
        out.append((x0 + int(xs.min()), y0 + int(ys.min()),
                    int(xs.max() - xs.min()) + 1, int(ys.max() - ys.min()) + 1))
    return out


def _illumination(shape: tuple[int, int], p: Photo, rng: np.random.Generator) -> np.ndarray:
    """float32 (H, W) brightness: exposure x linear gradient x optional soft shadow."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    t = xx * math.cos(angle) + yy * math.sin(angle)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
    light = rng.uniform(*p.exposure) * (1 - rng.uniform(*p.gradient) * t)
    if rng.random() < p.shadow_prob:  # a blurred half-plane: a hand or phone over the page
        angle = rng.uniform(0, 2 * np.pi)
        d = (xx - rng.uniform(0, w)) * math.cos(angle) + (yy - rng.uniform(0, h)) * math.sin(angle)
        soft = rng.uniform(0.05, 0.2) * math.hypot(h, w)
        light *= 1 - rng.uniform(*p.shadow_depth) / (1 + np.exp(-d / soft))
    return light.astype(np.float32)


def _texture(shape: tuple[int, int], amount: float, rng: np.random.Generator) -> np.ndarray:
    """float32 (H, W) multiplicative paper texture around 1: blotches plus grain."""
    h, w = shape
    coarse = rng.standard_normal((h // 24 + 2, w // 24 + 2)).astype(np.float32)
    blotch = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    grain = rng.standard_normal((h, w)).astype(np.float32)
    return 1 + amount * (0.7 * blotch + 0.3 * grain)


def _photograph(ink: np.ndarray, rules: np.ndarray, p: Photo, rng: np.random.Generator
                ) -> tuple[np.ndarray, bytes]:
    """Ink alpha (H, W) and ruled-line alpha (H, W), float32 in [0, 1] → RGB uint8
    (H, W, 3) decoded from JPEG, and the JPEG bytes."""
    paper = np.array(_PAPERS[p.papers[int(rng.integers(len(p.papers)))]], np.float32)
    paper = np.clip(paper + rng.uniform(-0.03, 0.03, 3), 0, 1)
    pen = np.array(_INKS[int(rng.integers(len(_INKS)))], np.float32)
    pen = np.clip(pen + rng.uniform(-0.04, 0.04, 3), 0, 1)
    a = (ink * rng.uniform(*p.ink_strength))[..., None]                    # (H, W, 1)
    r = (rules * rng.uniform(0.15, 0.35))[..., None]
    refl = paper * _texture(ink.shape, p.texture, rng)[..., None]          # (H, W, 3)
    refl = refl * (1 - r) + np.array(_RULE, np.float32) * paper * r
    refl = refl * (1 - a) + pen * a
    img = 255 * refl * _illumination(ink.shape, p, rng)[..., None]
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(*p.blur_sigma))
    img += rng.normal(0, rng.uniform(*p.noise_std), img.shape).astype(np.float32)
    rgb = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    quality = int(rng.integers(p.jpeg_quality[0], p.jpeg_quality[1] + 1))
    ok, buf = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if decoded is None:
        raise RuntimeError("JPEG decoding failed")
    return np.ascontiguousarray(decoded[..., ::-1]), buf.tobytes()


def compose(pool: LetterPool, rng: np.random.Generator, difficulty: str = "clean",
            case: str = "upper", text: str | None = None, layout: Layout | None = None
            ) -> SynthImage:
    """Compose one photo-like image of handwritten text from real letter images.

    Args:
        pool: from :func:`load_letter_pool` (use the test split for evaluation).
        rng: the only source of randomness; the same seed gives the same image.
        difficulty: ``"clean"`` or ``"realistic"`` (see the module docstring).
        case: ``"upper"`` uses upper-case images only (block capitals); ``"mixed"`` draws
            each word upper, lower or capitalised, and ``text`` reports the case drawn.
        text: letters, spaces and newlines (case ignored); default :func:`random_text`.
        layout: page geometry; default ``Layout()``.

    Raises:
        ValueError: unknown difficulty or case, a bad text, or a letter the pool lacks.
    """
    if difficulty not in PHOTOS:
        raise ValueError(f"unknown difficulty {difficulty!r}; use one of {DIFFICULTIES}")
    if case not in CASES:
        raise ValueError(f"unknown case {case!r}; use one of {CASES}")
    text_rng, letter_rng, layout_rng, photo_rng = rng.spawn(4)
    lines = _parse_text(random_text(text_rng) if text is None else text)
    picked = _pick_letters(lines, pool, case, letter_rng)
    photo = PHOTOS[difficulty]
    theta = layout_rng.uniform(-1, 1) * photo.max_rotation_deg
    glyphs, rule_ys, size = _layout(picked, theta, layout or Layout(), layout_rng)

    ink = np.zeros(size[::-1], np.float32)                                # (H0, W0)
    labels = np.zeros(size[::-1], np.uint16)
    strengths = photo_rng.uniform(*photo.letter_strength, size=len(glyphs))
    for k, (g, s) in enumerate(zip(glyphs, strengths, strict=True), start=1):
        h, w = g.alpha.shape
        ink[g.y:g.y + h, g.x:g.x + w] = g.alpha * s
        labels[g.y:g.y + h, g.x:g.x + w][g.alpha >= BOX_THRESHOLD] = k
    m, out_size = _rotation_matrix(size, theta)
    if theta != 0.0:
        ink = cv2.warpAffine(ink, m, out_size, flags=cv2.INTER_LINEAR, borderValue=0)
        labels = cv2.warpAffine(labels, m, out_size, flags=cv2.INTER_NEAREST, borderValue=0)
    rules = np.zeros(out_size[::-1], np.uint8)
    if photo_rng.random() < photo.ruled_prob:
        for y in rule_ys:  # page-wide lines, rotated with the page
            ends = m @ np.array([[-size[0], size[0] * 2], [y, y], [1.0, 1.0]])
            cv2.line(rules, (round(ends[0, 0]), round(ends[1, 0])),
                     (round(ends[0, 1]), round(ends[1, 1])), 255, 1, cv2.LINE_AA)
    image, jpeg = _photograph(ink, rules.astype(np.float32) / 255.0, photo, photo_rng)
    truth = "\n".join(" ".join("".join(c for c, _ in word) for word in line) for line in picked)
    return SynthImage(image, truth, _boxes(labels, glyphs, m), jpeg)


# ------------------------------------------------------------------------ eval set


def make_eval_set(out_dir: Path, n_images: int, seed: int, difficulty: str = "clean",
                  data_dir: Path | None = None, case: str = "upper",
                  sources: tuple[str, ...] | list[str] = SETS_64,
                  overwrite: bool = False) -> Path:
    """Write ``n_images`` composed images from the **test** split to ``out_dir/<difficulty>/``.

    Files: ``NNNN.jpg``; ``labels.jsonl`` with one ``{"file", "text", "boxes"}`` object per
    image (boxes as ``[x, y, w, h]`` lists); ``README.md`` saying how the set was made.
    Image ``i`` uses ``numpy.random.default_rng([seed, i])``, so a set is deterministic
    and a larger ``n_images`` extends a smaller one.

    Args:
        data_dir: folder holding the archives; default ``data_dir() / "handwriting"``.

    Returns:
        The folder written.

    Raises:
        FileExistsError: the folder already holds a set and ``overwrite`` is false.
        ValueError: ``n_images < 1``, or as :func:`compose`.
        FileNotFoundError: as :func:`load_letter_pool`.
    """
    if n_images < 1:
        raise ValueError(f"n_images must be >= 1, got {n_images}")
    if difficulty not in PHOTOS:
        raise ValueError(f"unknown difficulty {difficulty!r}; use one of {DIFFICULTIES}")
    folder = out_dir / difficulty
    if (folder / "labels.jsonl").exists():
        if not overwrite:
            raise FileExistsError(f"{folder} already holds a set; pass overwrite=True "
                                  "or choose another out_dir")
        for old in folder.glob("[0-9][0-9][0-9][0-9].jpg"):
            old.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    pool = load_letter_pool(data_dir, split=1, sources=sources)
    records = []
    for i in range(n_images):
        sample = compose(pool, np.random.default_rng([seed, i]), difficulty, case)
        name = f"{i:04d}.jpg"
        (folder / name).write_bytes(sample.jpeg)
        records.append({"file": name, "text": sample.text,
                        "boxes": [list(b) for b in sample.boxes]})
    with (folder / "labels.jsonl").open("w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    counts = ", ".join(f"{name} ({sum(p.source == name for ps in pool.values() for p in ps)})"
                       for name in sources)
    (folder / "README.md").write_text(
        f"# Synthetic handwriting pages: {difficulty}\n\n"
        f"{n_images} images made by `models.handwriting.synth.make_eval_set(out_dir, "
        f"n_images={n_images}, seed={seed}, difficulty={difficulty!r}, case={case!r})`: "
        f"real handwritten letters from the **test split only** (split == 1) of {counts} "
        f"A-Z letter images (either case; case='upper' draws upper-case ones only, one "
        f"source chosen uniformly per letter, then an image), composed into lines of "
        f"common English words and rendered as "
        f"photos of paper. Ground truth: labels.jsonl (file, text, boxes as [x, y, w, h]).\n",
        encoding="utf-8")
    log.info("wrote %d %s images to %s", n_images, difficulty, folder)
    return folder
