"""Ink map → text lines (box, skew, words) and normalised line crops for a line recognizer.

The page-layout step in front of a CRNN + CTC line recognizer: ``find_lines`` finds the
text lines of a photo or scan, ``line_crop`` cuts one out, level and at a fixed height.

Method (lengths in units of ``ref_h``, the median height of the letter-sized components;
for print that is about the letter height, for cursive the word height):

1. binarize (``preprocess.binarize``: ink > max(Otsu, 0.2)); 8-connected components;
2. drop noise (``DROP_REASONS``): specks; page edges and shadows (taller than
   ``max_height``, or stroke width above ``max_stroke``); ink on a textured background
   (a wooden table beside the page: most paper pixels around it are inked too, and it is
   fainter than the text); leftover ruled and margin lines (long and thin);
   bleed-through (peak ink below ``faint`` × the page's text);
3. smear the letter-sized components ("seeds") horizontally (run-length smoothing, RLSA:
   Wong, Casey & Wahl, "Document analysis system", IBM J. Res. Dev. 26(6), 1982); each
   connected piece of the smear is a line candidate;
4. skew of each candidate by projection-profile sharpness (Postl 1986; Baird 1987): the
   angle at which the histogram of its ink rows is most peaked; narrow candidates take the
   page's angle;
5. split candidates in which the smear joined adjacent lines at the minima of their
   deskewed horizontal projection profile, when few components cross the cut; a letter
   touching the next line's letter is carved at the cut;
6. join collinear pieces of one line that the smear left apart (wide word gaps, "!"), and
   give narrow pieces lying against a line (a big i-dot, a detached bar) to that line;
7. attach small components (i-dots, punctuation, accents, broken stroke ends) to the
   line whose core band is nearest, within reach;
8. words: gaps between a line's seeds wider than ``word_gap`` × its x-height (the
   adaptive rule of ``segment._split_words``);
9. reading order: recursive X-Y cut (Nagy & Seth, ICPR 1984) of the deskewed line boxes at
   the widest whitespace gap, so blocks are read top to bottom, side-by-side columns left
   to right, and lines of a block top to bottom.

Boxes are ``(x, y, w, h)`` in ink-map pixels; ``TextLine.original_box`` maps them to the
decoded image.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass, field, replace

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d

from models.handwriting.preprocess import INK_FLOOR, InkMap, binarize
from models.handwriting.segment import Box

log = logging.getLogger(__name__)

BoxT = tuple[int, int, int, int]  # (x, y, w, h)


@dataclass
class TextLine:
    """One text line of an ink map.

    Attributes:
        box: ``(x, y, w, h)`` in ink-map pixels: the union of the line's components.
        angle_deg: skew of the baseline in degrees, counter-clockwise as seen on the screen
            (positive: the line rises to the right); ``line_crop`` rotates it level.
        words: word boxes ``(x, y, w, h)`` in ink-map pixels, left to right.
        x_height: height of the line's core band (without ascenders and descenders), px.
        index: this line's id in ``owners`` (1-based reading order).
        owners: int32 (h, w) over the whole ink map, shared by the lines of one page: for
            each ink pixel of a component, the ``index`` of its line, -1 for components
            dropped as non-text (``MASKED``: page edges, shadows, table, rules), 0 for paper,
            faint ink and specks. None: ``line_crop`` masks nothing.
    """

    box: BoxT
    angle_deg: float
    words: list[BoxT]
    x_height: float = 0.0
    index: int = 0
    owners: np.ndarray | None = field(default=None, repr=False, compare=False)

    def original_box(self, ink: InkMap) -> BoxT:
        """``box`` in pixels of the decoded image (divided by ``ink.scale``, rounded
        outwards, clipped to the image)."""
        return to_original(self.box, ink)

    def original_words(self, ink: InkMap) -> list[BoxT]:
        """``words`` in pixels of the decoded image (see ``original_box``)."""
        return [to_original(b, ink) for b in self.words]


def to_original(box: BoxT, ink: InkMap) -> BoxT:
    """An ink-map box ``(x, y, w, h)`` → the decoded image's pixels (it still covers)."""
    height, width = ink.original_shape
    b = Box(*box).scaled(1.0 / ink.scale).clipped(width, height)
    return (b.x, b.y, b.w, b.h)


@dataclass(frozen=True)
class LineParams:
    """Knobs of ``find_lines``. Lengths are in units of ``ref_h``, the median height of the
    letter-sized components. The defaults were set on composed pages (``synth``), pages
    drawn with OpenCV (the tests) and, for the textured-background rule, the wood around
    the development photo; every rule is needed by at least one test.

    Attributes:
        floor: lowest ink threshold for ``binarize`` (Otsu's threshold otherwise).
        hysteresis, join_clutter: pieces of the mask connected by ink above ``hysteresis`` ×
            that threshold, in a region mostly below it, are one faint stroke when the paper
            around the region is clean: ``_clutter`` at most ``join_clutter`` (measured: at
            most 0.067 around the faint marker words of a flip-chart photo, 0.05 to 0.6,
            median 0.14, for the regions in a table's grain). ``hysteresis`` >= 1: off.
        min_area: components with fewer ink pixels are specks.
        max_height: components taller than this are page edges, shadows or drawings.
        max_stroke: components whose stroke width (2 · area / boundary pixels) exceeds this
            are blobs (shadows, fingers, tape), not pen strokes.
        stroke_ratio: ... and so are those whose stroke width exceeds ``stroke_ratio`` × the
            text's (area-weighted median of the letter-sized components on clean paper,
            ``max_clutter``): a scribbled-out
            word, ink blots, the dark patches of a photo's background (measured: text at
            most 2.1 × its page's median on 43 photos and scans, such blobs 2.6 to 6.5).
        hug: kept components with more than this fraction of their pixels within 0.1 ref_h
            of a tall or solid component are patches of the background (``_hugging``).
        rule_len, rule_thickness: components longer than ``rule_len`` that are at most
            ``rule_thickness`` thick in 3 of 4 columns (rows, for vertical ones) are ruled,
            margin or underline leftovers.
        clutter_level, max_clutter: components where more than ``max_clutter`` of the
            paper pixels around them (box grown by ref_h; pixels within 0.1 ref_h of
            binarized ink left out) have ink above ``clutter_level`` × the page's mean text ink
            lie on a textured background: a table beside the page. (Measured: letters of
            30 realistic composed pages at most 0.03, the faint "Hello World" of the
            development photo 0.09, the wood grain around that page 0.13, 95 % above 0.19.)
            Components whose peak ink is at least ``clutter_keep`` × that of the text on
            clean paper stay (text among dense bleed-through looks cluttered too).
        faint: components whose peak ink is below ``faint`` × the page's text (area-weighted
            median of the components' peak ink) are bleed-through or smudges.
        min_seed: components whose longer side is below this may join a line (dots,
            punctuation, broken stroke ends) but do not start one.
        smear: horizontal RLSA length; gaps up to this are bridged within a line.
        join_gap: line pieces up to this far apart whose ink lines up are one line.
        max_offset: ... when their core bands' centres are at most this far apart.
        max_skew_deg: the page's skew is searched within ± this many degrees.
        line_skew_deg: a line's own skew within ± this many degrees of the page's.
        skew_width: lines narrower than this take the page's skew (too short to measure).
        valley, min_line_gap, max_cross: splitting lines that the smear merged (``_split``).
        reach: small components join a line at most this far above or below its ink.
        word_gap, word_gap_ratio, word_gap_max: a gap between a line's components is a
            word break when wider than max(word_gap · xh, min(word_gap_ratio · median gap,
            word_gap_max · xh)), xh the line's x-height; the median term only with >= 3
            gaps (``segment._split_words``' rule).
        vertical: a page whose seeds' row profile is less sharp than ``vertical`` × their
            column profile may have vertical lines (``_turned``): measured 0.54 on a photo
            turned sideways, at least 1.0 on 42 upright photos and scans (a column of single
            words); 0: never turn.
    """

    floor: float = INK_FLOOR
    hysteresis: float = 0.5
    join_clutter: float = 0.07
    min_area: int = 3
    max_height: float = 4.0
    max_stroke: float = 0.45
    rule_len: float = 3.0
    rule_thickness: float = 0.3
    clutter_level: float = 0.25
    max_clutter: float = 0.12
    clutter_keep: float = 0.85
    faint: float = 0.45
    min_seed: float = 0.35
    smear: float = 1.5
    join_gap: float = 4.0
    max_offset: float = 0.8
    max_skew_deg: float = 10.0
    line_skew_deg: float = 3.0
    skew_width: float = 8.0
    valley: float = 0.6
    min_line_gap: float = 0.8
    max_cross: float = 0.25
    reach: float = 0.5
    word_gap: float = 0.6
    word_gap_ratio: float = 2.5
    word_gap_max: float = 1.0
    vertical: float = 0.7
    stroke_ratio: float = 2.5
    hug: float = 0.2

    def __post_init__(self) -> None:
        """Raises ValueError naming every knob out of range."""
        bad = [f"{k}={v}" for k, v in vars(self).items() if not v >= 0]
        bad += [f"floor={self.floor}"] * (not self.floor < 1)
        bad += [f"min_area={self.min_area}"] * (self.min_area < 1)
        bad += [f"{k}={getattr(self, k)}" for k in ("smear", "valley") if getattr(self, k) <= 0]
        bad = list(dict.fromkeys(bad))
        if bad:
            raise ValueError(f"LineParams: {', '.join(bad)}; lengths and fractions must be "
                             ">= 0, floor < 1, min_area >= 1, smear and valley > 0")


#: Why ``find_lines`` dropped a component (index into this tuple; 0: kept). "blob" also
#: covers strokes much wider than the text's and patches hugging a tall or solid blob.
#: :func:`line_crop` thickens a line's strokes (dilates its ink before resizing) when they
#: would come out thinner than this many pixels at the recognizer's height: thin pens on
#: big photos, which shrink to faint hairlines the CRNN never saw in training. 0: never.
#: (Measured on the real dev images: the README's "Thin strokes" table.)
MIN_STROKE = 1.0
#: Ink above this counts as stroke when measuring stroke width (:func:`stroke_width`).
STROKE_INK = 0.35

DROP_REASONS = ("kept", "speck", "tall", "blob", "clutter", "rule", "faint")
#: Dropped components whose ink ``line_crop`` zeroes (not text at all).
MASKED = tuple(DROP_REASONS.index(r) for r in ("tall", "blob", "clutter", "rule"))


# --------------------------------------------------------------------------- components


@dataclass
class _Components:
    """Connected components of the binarized ink map; arrays are (n,), index i = id i + 1.

    Attributes:
        labels: int32 (h, w), component id per ink pixel, 0 elsewhere.
        x, y, w, h, area: int64 boxes and ink pixel counts.
        mean: float64 mean ink of each component's pixels.
        peak: float64 highest ink of each component: its darkness (the ink map is blurred,
            so one pixel is no outlier; the mean also falls with the stroke width).
        stroke: float64 stroke width estimate, 2 · area / boundary pixels.
        pix: per component, int64 flat indices (row · width + column) of its pixels.

    ``carve`` splits a component in two (a letter touching the next line's), so the
    arrays grow while lines are built.
    """

    labels: np.ndarray
    x: np.ndarray
    y: np.ndarray
    w: np.ndarray
    h: np.ndarray
    area: np.ndarray
    mean: np.ndarray
    peak: np.ndarray
    stroke: np.ndarray
    pix: list[np.ndarray]

    @property
    def n(self) -> int:
        return int(self.x.size)

    def coords(self, ids: np.ndarray | list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Columns and rows (float64) of the pixels of components ``ids`` (0-based)."""
        width = self.labels.shape[1]
        parts = [self.pix[i] for i in ids]
        flat = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        return (flat % width).astype(np.float64), (flat // width).astype(np.float64)

    def carve(self, i: int, take: np.ndarray) -> int:
        """Move the pixels ``take`` (bool, one per pixel of component i) of component i to a
        new component; returns its id (0-based). Boxes and areas are recomputed; ink
        and stroke width are inherited."""
        j = self.n
        self.pix.append(self.pix[i][take])
        self.pix[i] = self.pix[i][~take]
        self.labels.reshape(-1)[self.pix[j]] = j + 1
        for name in ("x", "y", "w", "h", "area", "mean", "peak", "stroke"):
            values = getattr(self, name)
            setattr(self, name, np.append(values, values[i]))
        width = self.labels.shape[1]
        for k in (i, j):
            cols, rows = self.pix[k] % width, self.pix[k] // width
            self.x[k], self.y[k] = cols.min(), rows.min()
            self.w[k], self.h[k] = np.ptp(cols) + 1, np.ptp(rows) + 1
            self.area[k] = self.pix[k].size
        return j


def _ink_components(ink: np.ndarray, cfg: LineParams) -> tuple[np.ndarray, _Components]:
    """Binarize ``ink`` (``preprocess.binarize``: above max(Otsu, ``cfg.floor``)) and take its
    components, with faint strokes rejoined by hysteresis.

    A connected region of ink above ``cfg.hysteresis`` × the threshold that holds two or more
    pieces of the mask, lies mostly (more than half its pixels) below the threshold, is at
    most twice as tall as a letter (the rough ref_h, ``_rough_height``) and has clean paper
    around it (``_clutter`` of the region, its own pixels left out, at most
    ``cfg.join_clutter``) is a faint stroke or word broken where its ink dips (a light marker
    on a flip chart or a whiteboard): the
    whole region becomes one component. Dark text keeps exactly the mask's components, and
    so does the grain of a table (tall regions, or busy around). Returns the mask (uint8
    (h, w) {0, 255}) and its components.
    """
    mask = binarize(ink, floor=cfg.floor)
    c = _components(ink, mask)
    if cfg.hysteresis >= 1 or c.n < 2:
        return mask, c
    ink8 = np.rint(np.clip(ink, 0.0, 1.0) * 255.0).astype(np.uint8)
    otsu, _ = cv2.threshold(ink8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    on = mask > 0
    low = ((ink8 > cfg.hysteresis * max(float(otsu), cfg.floor * 255.0)) | on).astype(np.uint8)
    n, regions, stats, _ = cv2.connectedComponentsWithStats(low, connectivity=8)
    pairs = np.unique(regions[on].astype(np.int64) * (c.n + 1) + c.labels[on])
    pieces = np.bincount(pairs // (c.n + 1), minlength=n)
    inked = np.bincount(regions[on], minlength=n)
    rough = _rough_height(c, mask.shape, cfg.min_area)
    faint = ((pieces >= 2) & (inked < 0.5 * stats[:, cv2.CC_STAT_AREA])
             & (stats[:, cv2.CC_STAT_HEIGHT] <= 2 * rough))
    faint[0] = False
    if not faint.any():
        return mask, c
    ids = np.flatnonzero(faint)
    text = _text_ink(c.mean, c, c.area >= cfg.min_area, cfg.min_seed * rough)
    pad, halo = max(3, round(rough)), max(2, round(0.1 * rough))
    boxes = tuple(stats[ids, k].astype(np.int64) for k in range(4))
    clutter = _clutter(ink, mask, boxes, pad, halo, cfg.clutter_level * text, (regions, ids))
    busy = clutter > cfg.join_clutter
    if busy.all():
        return mask, c
    faint[ids[busy]] = False
    joined = np.where(on | faint[regions], 255, 0).astype(np.uint8)
    return joined, _components(ink, joined)


def _components(ink: np.ndarray, mask: np.ndarray) -> _Components:
    """Components of ``mask`` uint8 (h, w) {0, 255}, with stats from ``ink`` (h, w)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    flat = labels.ravel()
    area = stats[1:, cv2.CC_STAT_AREA].astype(np.int64)
    eroded = cv2.erode(mask, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT)
    edge = flat[(mask.ravel() > 0) & (eroded.ravel() == 0)]
    boundary = np.bincount(edge, minlength=n)[1:]
    inked = np.flatnonzero(flat)
    by_label = inked[np.argsort(flat[inked], kind="stable")].astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(area)[:-1]]).astype(np.int64)
    pix = np.split(by_label, starts[1:]) if n > 1 else []
    values = ink.ravel()[by_label].astype(np.float64)
    peak = np.maximum.reduceat(values, starts) if n > 1 else np.zeros(0)
    mean = np.add.reduceat(values, starts) / np.maximum(area, 1) if n > 1 else np.zeros(0)
    return _Components(
        labels=labels.astype(np.int32),
        x=stats[1:, 0].astype(np.int64),
        y=stats[1:, 1].astype(np.int64),
        w=stats[1:, 2].astype(np.int64),
        h=stats[1:, 3].astype(np.int64),
        area=area.astype(np.int64),
        mean=mean,
        peak=peak,
        stroke=2.0 * area / np.maximum(boundary, 1),
        pix=list(pix),
    )


def _rough_height(c: _Components, shape: tuple[int, ...], min_area: int) -> float:
    """First estimate of ref_h (``_reference_height``) over the letter-like components: no
    speck, line, dot or solid bar; off the border (page edges, table, fingers) unless nothing
    else is (a tight line crop). 0.0 when no component has ``min_area`` pixels."""
    height, width = shape[:2]
    aspect = np.maximum(c.w, c.h) / np.maximum(np.minimum(c.w, c.h), 1)
    touches = (c.x == 0) | (c.y == 0) | (c.x + c.w == width) | (c.y + c.h == height)
    sized = c.area >= min_area
    rough = sized & (aspect <= 10) & (c.stroke < 0.45 * np.minimum(c.w, c.h))
    for narrower in (rough & ~touches, rough, sized):
        if narrower.any():
            return _reference_height(c.h[narrower], c.area[narrower])
    return 0.0


def _reference_height(heights: np.ndarray, areas: np.ndarray) -> float:
    """Median height of the letter-sized components: those between 0.4 and 3 × the median
    height weighted by ink area (so that many specks count little; the 90th percentile
    that ``segment`` uses would follow one big page-edge blob)."""
    if heights.size == 0:
        return 0.0
    anchor = _weighted_median(heights.astype(np.float64), areas)
    return float(np.median(heights[(heights >= 0.4 * anchor) & (heights <= 3 * anchor)]))


def _clutter(
    ink: np.ndarray, mask: np.ndarray, boxes: tuple[np.ndarray, ...], pad: int, halo: int,
    level: float, own: tuple[np.ndarray, np.ndarray] | None = None
) -> np.ndarray:
    """float64 (n,): fraction of the paper pixels around each box (``boxes``: arrays x, y, w,
    h; grown by ``pad``; pixels within ``halo`` of ``mask`` left out, so faint stroke parts
    next to ink do not count) with ink above ``level``: ~0 on paper, high on wood or cloth.
    ``own``: (labels (h, w), one label per box): each box's own pixels are left out too."""
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * halo + 1, 2 * halo + 1))
    free = cv2.dilate(mask, disk) == 0
    busy = cv2.integral((free & (ink > level)).astype(np.uint8))  # (h + 1, w + 1)
    total = cv2.integral(free.astype(np.uint8))
    height, width = mask.shape
    x, y, w, h = boxes
    x0, y0 = np.clip(x - pad, 0, width), np.clip(y - pad, 0, height)
    x1, y1 = np.clip(x + w + pad, 0, width), np.clip(y + h + pad, 0, height)

    def box_sum(s: np.ndarray, pixels: np.ndarray) -> np.ndarray:
        inside = (s[y1, x1] - s[y0, x1] - s[y1, x0] + s[y0, x0]).astype(np.float64)
        if own is None:
            return inside
        labels, ids = own
        return inside - np.bincount(labels[pixels], minlength=int(ids.max()) + 1)[ids]

    busy_px = free & (ink > level)
    return box_sum(busy, busy_px) / np.maximum(box_sum(total, free), 1.0)


def _thin(c: _Components, ids: np.ndarray, ref_h: float, rule_len: float, thickness: float
          ) -> np.ndarray:
    """bool (len(ids),): long thin components (ruled, margin and underline leftovers):
    longer than ``rule_len`` · ref_h and, across their length, at most ``thickness`` · ref_h
    thick in 3 of 4 positions (per-column / per-row extent, so tilted lines count too).
    One less than 8 times longer than its box is thick must also be straight: its centre
    line (per position) within 0.06 ref_h (at least 1.5 px) of a parabola in 9 of 10
    positions, so a flat cursive word ("wenn", "own") is not taken for a rule."""
    out = np.zeros(len(ids), bool)
    for k, i in enumerate(ids):
        long_side = max(c.w[i], c.h[i])
        if long_side <= rule_len * ref_h or long_side < 5 * min(c.w[i], c.h[i]):
            continue  # short, or not thin enough to be a line
        xs, ys = c.coords([i])
        along, across = (xs, ys) if c.w[i] >= c.h[i] else (ys, xs)
        pos = (along - along.min()).astype(np.int64)
        lo = np.full(pos.max() + 1, np.inf)
        hi = np.full(pos.max() + 1, -np.inf)
        np.minimum.at(lo, pos, across)
        np.maximum.at(hi, pos, across)
        seen = np.isfinite(lo)
        extent = (hi - lo + 1)[seen]
        out[k] = float(np.percentile(extent, 75)) <= thickness * ref_h
        if out[k] and long_side < 8 * min(c.w[i], c.h[i]):
            t, centre = np.flatnonzero(seen).astype(np.float64), ((lo + hi) / 2)[seen]
            bend = np.abs(centre - np.polyval(np.polyfit(t, centre, 2), t))
            out[k] = float(np.percentile(bend, 90)) <= max(1.5, 0.06 * ref_h)
    return out


def _hugging(c: _Components, reason: np.ndarray, reach: int, hug: float) -> np.ndarray:
    """Ids of the kept components of which more than ``hug`` of the pixels lie within
    ``reach`` px of a tall or solid component (reasons "tall", "blob"): patches of a patterned
    cloth or of a table between the thin light lines of its pattern, not letters (a letter
    next to a page edge's shadow has a few pixels there, if any)."""
    blocking = np.isin(reason, (DROP_REASONS.index("tall"), DROP_REASONS.index("blob")))
    kept = np.flatnonzero(reason == 0)
    if not blocking.any() or kept.size == 0:
        return np.zeros(0, np.int64)
    table = np.concatenate([[False], blocking])
    free = np.where(table[c.labels], 0, 255).astype(np.uint8)
    near = cv2.distanceTransform(free, cv2.DIST_L2, 3) <= reach
    close = np.bincount(c.labels[near], minlength=c.n + 1)[1:]
    return kept[close[kept] > hug * c.area[kept]].astype(np.int64)


def _dotted(c: _Components, ids: np.ndarray, ref_h: float, rule_len: float) -> np.ndarray:
    """Ids (of ``ids``) of the dots of dotted rules (a dotted notebook page).

    Dots: at most 0.2 ref_h (at least 3 px) across and round. A horizontal closing of the
    dots alone (0.6 ref_h) joins each row of them; a row of 8 or more spanning more than
    ``rule_len`` · ref_h is a dotted rule. On a page that has one, rows of 3 or more dots no
    bigger than 1.5 × the rules' median dot are rules too (the pieces of a rule between the
    words written on it). i-dots and full stops never line up so; a row of dots written as
    text does.
    """
    side = np.maximum(c.w[ids], c.h[ids])
    dots = ids[(side <= max(3.0, 0.2 * ref_h)) & (side <= 2 * np.minimum(c.w[ids], c.h[ids]))]
    if dots.size < 8:
        return np.zeros(0, np.int64)
    only = np.zeros(c.labels.shape, np.uint8)
    flat = only.reshape(-1)
    for i in dots:
        flat[c.pix[i]] = 255
    k = max(3, round(0.6 * ref_h)) | 1
    rows = cv2.morphologyEx(only, cv2.MORPH_CLOSE, np.ones((1, k), np.uint8))
    _, pieces, stats, _ = cv2.connectedComponentsWithStats(rows, connectivity=8)
    piece = np.array([pieces.reshape(-1)[c.pix[i][0]] for i in dots])
    count = np.bincount(piece, minlength=stats.shape[0])
    rule = (count >= 8) & (stats[:, cv2.CC_STAT_WIDTH] > rule_len * ref_h)
    rule[0] = False
    if not rule.any():
        return np.zeros(0, np.int64)
    size = float(np.median(np.maximum(c.w, c.h)[dots[rule[piece]]]))
    biggest = np.zeros(stats.shape[0])
    np.maximum.at(biggest, piece, np.maximum(c.w[dots], c.h[dots]))
    rule |= (count >= 3) & (biggest <= 1.5 * size)
    rule[0] = False
    return dots[rule[piece]].astype(np.int64)


# --------------------------------------------------------------------------- skew


def _skew(xs: np.ndarray, ys: np.ndarray, bin_px: float, lo_deg: float, hi_deg: float
          ) -> float:
    """Angle in [lo_deg, hi_deg] (CCW positive) maximising the sharpness (sum of squared
    bin counts) of the histogram of ``y + x · tan(angle)`` over pixels ``xs, ys``: a 0.5°
    grid, then 0.1° steps around its best. The middle of the range for < 10 pixels."""
    if xs.size < 10 or hi_deg <= lo_deg:
        return (lo_deg + hi_deg) / 2
    if xs.size > 20_000:  # a regular subsample keeps the profile's shape
        step = xs.size // 20_000 + 1
        xs, ys = xs[::step], ys[::step]
    xc = xs - xs.mean()

    def score(deg: float) -> float:
        p = ys + xc * math.tan(math.radians(deg))
        hist = np.bincount(((p - p.min()) / bin_px).astype(np.int64))
        return float(np.dot(hist, hist))

    # grids of whole multiples of 0.5° and 0.1° (and the range's ends): a line's angle does
    # not depend on where its range, set by the page's angle, happens to start
    steps = np.arange(math.ceil(lo_deg / 0.5), math.floor(hi_deg / 0.5) + 1) * 0.5
    coarse = np.unique(np.concatenate([[lo_deg], steps, [hi_deg]]))
    best = float(coarse[int(np.argmax([score(a) for a in coarse]))])
    tenths = np.round(np.arange(round(best * 10) - 4, round(best * 10) + 5) / 10, 1)
    fine = np.unique(np.clip(tenths, lo_deg, hi_deg))
    return float(fine[int(np.argmax([score(a) for a in fine]))])


def _profile(p: np.ndarray, sigma: float) -> tuple[np.ndarray, float]:
    """Smoothed histogram (1-px bins) of positions ``p`` and the position of bin 0."""
    lo = math.floor(float(p.min()))
    hist = np.bincount((p - lo).astype(np.int64)).astype(np.float64)
    return gaussian_filter1d(hist, sigma, mode="constant"), float(lo)


def _core(p: np.ndarray) -> tuple[float, float]:
    """The core band (x-height zone) of one line's deskewed row positions ``p`` (one per
    ink pixel): the median ± the interquartile range. Ink spread evenly over the x-height
    gives exactly that band; ascenders and descenders move it little; capitals give the
    cap height (a profile-peak run would follow one horizontal bar there)."""
    q25, q50, q75 = (float(v) for v in np.percentile(p, [25, 50, 75]))
    return q50 - (q75 - q25), q50 + (q75 - q25)


def _x_height(p: np.ndarray, frac: float = 0.4) -> float:
    """x-height of one line from its deskewed row positions ``p`` (one per ink pixel): the
    run of rows around the peak of the projection profile (smoothed, sigma 1.5 px) at or
    above ``frac`` × the peak. Ascender and descender rows hold far less ink than the
    x-height band; on capitals the run spans the cap height (measured on composed pages)."""
    lo = math.floor(float(p.min()))
    hist = np.bincount((p - lo).astype(np.int64)).astype(np.float64)
    prof = gaussian_filter1d(hist, 1.5, mode="constant")
    above = prof >= frac * prof.max()
    top = bottom = int(np.argmax(prof))
    while top > 0 and above[top - 1]:
        top -= 1
    while bottom < prof.size - 1 and above[bottom + 1]:
        bottom += 1
    return float(bottom - top + 1)


# --------------------------------------------------------------------------- lines


@dataclass
class _Line:
    """A line under construction: 0-based component ids, its angle, its deskewed bands."""

    seeds: list[int]
    angle: float = 0.0
    cx: float = 0.0  # pivot column of the shear y + (x - cx) · tan(angle)
    lo: float = 0.0  # deskewed extent of the seeds' ink
    hi: float = 0.0
    core_lo: float = 0.0  # deskewed core band
    core_hi: float = 0.0
    small: list[int] = field(default_factory=list)


def _shear(xs: np.ndarray, ys: np.ndarray, angle: float, cx: float) -> np.ndarray:
    return ys + (xs - cx) * math.tan(math.radians(angle))


def _fit(line: _Line, c: _Components, ref_h: float, page_angle: float, cfg: LineParams
         ) -> _Line:
    """Set ``line``'s angle and its deskewed bands; returns ``line``. The angle is the
    page's, or, for a line at least ``skew_width`` wide, its own within ``line_skew_deg``
    of the page's (a short word's profile is too noisy to trust alone)."""
    xs, ys = c.coords(line.seeds)
    x0 = min(int(c.x[i]) for i in line.seeds)
    x1 = max(int(c.x[i] + c.w[i]) for i in line.seeds)
    line.angle = page_angle
    if x1 - x0 >= cfg.skew_width * ref_h:
        lo = max(-cfg.max_skew_deg, page_angle - cfg.line_skew_deg)
        hi = min(cfg.max_skew_deg, page_angle + cfg.line_skew_deg)
        line.angle = _skew(xs, ys, max(1.0, ref_h / 8), lo, hi)
    line.cx = (x0 + x1) / 2
    p = _shear(xs, ys, line.angle, line.cx)
    line.lo, line.hi = float(p.min()), float(p.max()) + 1
    line.core_lo, line.core_hi = _core(p)
    return line


def _split(line: _Line, c: _Components, ref_h: float, valley: float, min_gap: float,
           max_cross: float) -> list[list[int]]:
    """Split a candidate at the minima of its deskewed projection profile.

    Adjacent profile peaks (at least ``min_gap`` · ref_h apart, the valley between them at
    most ``valley`` × the lower peak) are kept apart; the cut is the valley's minimum and is
    used only if at most ``max_cross`` of the components (at least 1) have >= 20 % of their
    ink on each side. Components go to the band holding most of their ink; a crossing
    component with >= 15 % of its ink inside another band's core (median ± IQR of that
    band's other components), a letter touching the next line's, is carved at the cut.
    Returns the candidate's seeds as one group when fewer than two bands keep components
    of their own.
    """
    if len(line.seeds) < 2 or line.hi - line.lo < 1.5 * ref_h:
        return [line.seeds]
    per = [_shear(*c.coords([i]), line.angle, line.cx) for i in line.seeds]
    prof, lo = _profile(np.concatenate(per), max(1.0, ref_h / 8))
    inner = prof[1:-1]
    peaks = list(np.flatnonzero((inner >= prof[:-2]) & (inner > prof[2:]) &
                                (inner >= 0.1 * prof.max())) + 1)
    while len(peaks) > 1:  # merge the least separated neighbours until all are apart
        worst, worst_score = -1, 1.0
        for k in range(len(peaks) - 1):
            a, b = peaks[k], peaks[k + 1]
            ratio = float(prof[a:b + 1].min()) / max(min(prof[a], prof[b]), 1e-9)
            score = ratio / valley if b - a >= min_gap * ref_h else math.inf
            if score > worst_score:
                worst, worst_score = k, score
        if worst < 0:
            break
        a, b = peaks[worst], peaks[worst + 1]
        peaks.pop(worst if prof[a] < prof[b] else worst + 1)
    cuts = []
    for a, b in itertools.pairwise(peaks):
        cut = lo + a + int(np.argmin(prof[a:b + 1]))
        crossing = sum(min(float((p < cut).mean()), float((p >= cut).mean())) >= 0.2
                       for p in per)
        if crossing <= max(1.0, max_cross * len(per)):
            cuts.append(cut)
    if not cuts:
        return [line.seeds]
    edges = np.array([-np.inf, *cuts, np.inf])
    band_of: list[np.ndarray] = [np.searchsorted(edges, p, side="right") - 1 for p in per]
    counts = [np.bincount(b, minlength=len(cuts) + 1) / b.size for b in band_of]
    home = [int(np.argmax(f)) for f in counts]
    crosses = [bool(np.sort(f)[-2] >= 0.2) if f.size > 1 else False for f in counts]
    own = [[i for i, h, x in zip(line.seeds, home, crosses, strict=True) if h == k and not x]
           for k in range(len(cuts) + 1)]
    if sum(1 for members in own if members) < 2:
        return [line.seeds]
    bands = [list(members) for members in own]
    cores = [_core(_shear(*c.coords(m), line.angle, line.cx)) if m else None for m in own]
    for i, p, where, h, x in zip(line.seeds, per, band_of, home, crosses, strict=True):
        if not x:
            continue
        for k, core in enumerate(cores):
            if core is None or k == h:
                continue
            inside = (where == k) & (p >= core[0]) & (p <= core[1])
            if inside.mean() >= 0.15 and (where != k).any():
                bands[k].append(c.carve(i, where == k))
                p, where = p[where != k], where[where != k]
        bands[h].append(i)
    return [members for members in bands if members]


def _join(lines: list[_Line], c: _Components, ref_h: float, gap_px: float,
          max_offset: float) -> list[_Line]:
    """Join pieces of one line that the smear left apart (wide word gaps, a raised "!").

    Piece B continues piece A when it starts at most ``gap_px`` right of A's end and,
    deskewed at the angle of the wider of the two, their extents overlap by half the
    shorter one and their core bands' centres are at most ``max_offset`` · ref_h apart (a
    piece narrower than 1.5 ref_h, a lone capital or "!", needs only the overlap). Each
    piece continues at most one piece and is continued by at most one, best pairs first
    (smallest gap + offset), so two stacked lines are never joined through a third piece.
    """
    n = len(lines)
    if n < 2:
        return lines
    x0 = [min(int(c.x[i]) for i in ln.seeds) for ln in lines]
    x1 = [max(int(c.x[i] + c.w[i]) for i in ln.seeds) for ln in lines]
    y0 = [min(int(c.y[i]) for i in ln.seeds) for ln in lines]
    y1 = [max(int(c.y[i] + c.h[i]) for i in ln.seeds) for ln in lines]
    pairs: list[tuple[float, int, int]] = []
    for a in range(n):
        for b in range(n):
            gap = x0[b] - x1[a]
            if a == b or not -ref_h < gap <= gap_px or x0[b] < x0[a]:
                continue
            if min(y1[a], y1[b]) <= max(y0[a], y0[b]):  # no vertical overlap at all
                continue
            frame = lines[a] if x1[a] - x0[a] >= x1[b] - x0[b] else lines[b]
            p = [_shear(*c.coords(lines[k].seeds), frame.angle, frame.cx) for k in (a, b)]
            extent = min(p[0].max(), p[1].max()) - max(p[0].min(), p[1].min()) + 1
            shorter = min(float(np.ptp(q)) + 1 for q in p)
            if extent < 0.5 * shorter:
                continue
            (a0, a1), (b0, b1) = (_core(q) for q in p)
            offset = abs((a0 + a1) - (b0 + b1)) / 2
            narrow = min(x1[a] - x0[a], x1[b] - x0[b]) < 1.5 * ref_h
            if offset <= max_offset * ref_h or narrow:
                pairs.append(((max(gap, 0) + offset) / ref_h, a, b))
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    has_next, has_prev = [False] * n, [False] * n
    for _, a, b in sorted(pairs):
        if has_next[a] or has_prev[b] or find(a) == find(b):
            continue
        has_next[a] = has_prev[b] = True
        parent[find(a)] = find(b)
    groups: dict[int, list[int]] = {}
    for k in range(n):
        groups.setdefault(find(k), []).extend(lines[k].seeds)
    return [_Line(sorted(seeds)) for seeds in groups.values()]


def _nearest_line(lines: list[_Line], spans: np.ndarray, c: _Components, i: int,
                  reach_px: float, smear_px: float) -> int:
    """Index of the line whose core band is nearest (deskewed) to component i's centre,
    among those whose extent ± ``reach_px`` holds it and whose x-span (``spans`` (L, 2))
    ± ``smear_px`` covers it; -1 if none."""
    cx, cy = c.x[i] + c.w[i] / 2, c.y[i] + c.h[i] / 2
    best, best_d = -1, math.inf
    for j, ln in enumerate(lines):
        if not spans[j, 0] - smear_px <= cx <= spans[j, 1] + smear_px:
            continue
        p = cy + (cx - ln.cx) * math.tan(math.radians(ln.angle))
        if not ln.lo - reach_px <= p <= ln.hi + reach_px:
            continue
        d = max(ln.core_lo - p, p - ln.core_hi, 0.0)
        if d < best_d:
            best, best_d = j, d
    return best


def _spans(lines: list[_Line], c: _Components) -> np.ndarray:
    """float (L, 2): x0, x1 of each line's seeds."""
    return np.array([[min(c.x[i] for i in ln.seeds), max(c.x[i] + c.w[i] for i in ln.seeds)]
                     for ln in lines], float).reshape(-1, 2)


def _absorb(lines: list[_Line], c: _Components, ref_h: float, reach_px: float,
            smear_px: float) -> list[_Line]:
    """Lines narrower than 1.5 ref_h (a big i-dot, an E's detached bar, a raised accent)
    whose seeds all lie within reach of one wider line become part of that line."""
    spans = _spans(lines, c)
    narrow = spans[:, 1] - spans[:, 0] < 1.5 * ref_h
    wide = [ln for ln, n in zip(lines, narrow, strict=True) if not n]
    if not wide or narrow.all():
        return lines
    wide_spans = spans[~narrow]
    out = list(wide)
    for ln in (ln for ln, n in zip(lines, narrow, strict=True) if n):
        hosts = {_nearest_line(wide, wide_spans, c, i, reach_px, smear_px) for i in ln.seeds}
        if len(hosts) == 1 and (host := hosts.pop()) >= 0:
            wide[host].seeds.extend(ln.seeds)
        else:
            out.append(ln)
    return out


def _attach(lines: list[_Line], small: np.ndarray, c: _Components, reach_px: float,
            smear_px: float) -> None:
    """Give each small component to its nearest line (``_nearest_line``), if any."""
    spans = _spans(lines, c)
    for i in small:
        best = _nearest_line(lines, spans, c, int(i), reach_px, smear_px)
        if best >= 0:
            lines[best].small.append(int(i))


def _words(line: _Line, c: _Components, x_height: float, cfg: LineParams) -> list[BoxT]:
    """Word boxes of one line, left to right: runs of overlapping x-intervals of its seeds
    and of the small components centred in its core band (stroke pieces), split at word
    gaps (``LineParams.word_gap``), a run without seeds (a full stop) staying with the word
    before it; every other small component (i-dot, accent, comma, speck) then joins the
    word nearest to it in x, so it neither bridges nor opens a gap."""
    tilt = math.tan(math.radians(line.angle))
    centre = [float(c.y[i] + c.h[i] / 2 + (c.x[i] + c.w[i] / 2 - line.cx) * tilt)
              for i in line.small]
    core = [i for i, p in zip(line.small, centre, strict=True)
            if line.core_lo <= p <= line.core_hi]
    small = [i for i in line.small if i not in core]
    order = sorted(line.seeds + core, key=lambda i: int(c.x[i]))
    runs: list[list[int]] = [[order[0]]]
    end = int(c.x[order[0]] + c.w[order[0]])
    gaps: list[int] = []
    for i in order[1:]:
        if c.x[i] > end:
            gaps.append(int(c.x[i]) - end)
            runs.append([])
        runs[-1].append(i)
        end = max(end, int(c.x[i] + c.w[i]))
    threshold = cfg.word_gap * x_height
    if len(gaps) >= 3:
        typical = cfg.word_gap_ratio * float(np.median(gaps))
        threshold = max(threshold, min(typical, cfg.word_gap_max * x_height))
    words: list[list[int]] = [runs[0]]
    seeds = set(line.seeds)
    for run, gap in zip(runs[1:], gaps, strict=True):
        if gap > threshold and not seeds.isdisjoint(run):  # a full stop opens no word
            words.append([])
        words[-1].extend(run)
    if len(words) > 1 and seeds.isdisjoint(words[0]):
        first = words.pop(0)
        words[0] = first + words[0]
    spans = np.array([[min(c.x[i] for i in w), max(c.x[i] + c.w[i] for i in w)] for w in words])
    for i in small:
        centre = c.x[i] + c.w[i] / 2
        distance = np.maximum(spans[:, 0] - centre, centre - spans[:, 1])  # < 0 inside
        words[int(np.argmin(distance))].append(i)
    return [_union(word, c) for word in words]


def _union(ids: list[int], c: _Components) -> BoxT:
    x0 = min(int(c.x[i]) for i in ids)
    y0 = min(int(c.y[i]) for i in ids)
    x1 = max(int(c.x[i] + c.w[i]) for i in ids)
    y1 = max(int(c.y[i] + c.h[i]) for i in ids)
    return (x0, y0, x1 - x0, y1 - y0)


def _xy_cut(boxes: list[tuple[float, float, float, float]], items: list[int]) -> list[int]:
    """Recursive X-Y cut: ``items`` (indices of ``boxes`` x0, y0, x1, y1) in reading order.

    The boxes' projections on y and on x are split at their whitespace gaps; the axis with
    the widest gap is cut (so a column gutter wins over the gaps between lines, and a
    title above a paragraph is cut off first): y cuts give groups top to bottom, x cuts
    left to right. Where neither axis has a gap, the boxes' centres order them by y.
    """
    if len(items) <= 1:
        return list(items)
    best: tuple[float, list[list[int]]] = (-1.0, [])
    for lo, hi in ((1, 3), (0, 2)):  # y first: equal gaps cut top to bottom
        order = sorted(items, key=lambda i: boxes[i][lo])
        groups: list[list[int]] = [[order[0]]]
        end, widest = boxes[order[0]][hi], -1.0
        for i in order[1:]:
            if boxes[i][lo] >= end:
                widest = max(widest, boxes[i][lo] - end)
                groups.append([])
            groups[-1].append(i)
            end = max(end, boxes[i][hi])
        if len(groups) > 1 and widest > best[0]:
            best = (widest, groups)
    if not best[1]:
        return sorted(items, key=lambda i: (boxes[i][1] + boxes[i][3]) / 2)
    return [i for g in best[1] for i in _xy_cut(boxes, g)]


def find_lines(ink: InkMap, *, params: LineParams | None = None) -> list[TextLine]:
    """Find the text lines of an ink map, in reading order (see the module docstring).

    A page whose lines run vertically (a photo taken sideways: ``_turned``) is read turned
    upright; its lines' angles are then near ±90°, which ``line_crop`` turns level.

    Args:
        ink: from ``preprocess.ink_map``: float32 (h, w) in [0, 1], ink bright.
        params: the knobs; default ``LineParams()``.

    Returns:
        The lines in reading order (blocks top to bottom, side-by-side columns left to
        right, lines of a block top to bottom); [] for a page without text.
    """
    cfg = params or LineParams()
    page = _page(ink.ink, cfg)
    if page.lines and page.upright < cfg.vertical:
        turned = _turned(ink.ink, cfg, page)
        if turned is not None:
            return turned
    return page.lines


@dataclass
class _Page:
    """``_page``'s result: the lines, and two orientation measures.

    Attributes:
        lines: the text lines, in reading order.
        upright: projection-profile sharpness of the seeds' ink along rows over that along
            columns (``_sharpness``; each at its best angle within ± ``max_skew_deg``):
            well above 1 for horizontal lines, below 1 for vertical ones.
        ascent: ink above the lines' core bands over ink below them (ascenders and capitals
            outnumber descenders in Latin script, so < 1 on an upside-down page).
        aspect: width / height of the line boxes, averaged weighted by their ink.
    """

    lines: list[TextLine]
    upright: float = math.inf
    ascent: float = 1.0
    aspect: float = 0.0


def _page(image: np.ndarray, cfg: LineParams) -> _Page:
    """``find_lines`` on an ink map (h, w), as it lies."""
    mask, c = _ink_components(image, cfg)  # uint8 (h, w) {0, 255}
    reason, ref_h = _classify(image, mask, c, cfg)
    kept = reason == 0
    long_side = np.maximum(c.w, c.h)
    # a solid blob (stroke width near half its short side) smaller than a letter: a dot
    dot = (c.stroke >= 0.35 * np.minimum(c.w, c.h)) & (long_side < 0.6 * ref_h)
    seed = kept & (long_side >= cfg.min_seed * ref_h) & ~dot
    log.debug(
        "%d components, ref_h %.1f px: %s; seeds %d",
        c.n,
        ref_h,
        ", ".join(f"{r} {int((reason == k).sum())}" for k, r in enumerate(DROP_REASONS)),
        int(seed.sum()),
    )
    if not seed.any():
        return _Page([])
    seeds = np.flatnonzero(seed)
    upright = math.inf
    if cfg.vertical > 0:
        xs, ys = c.coords(seeds)
        bin_px = max(1.0, ref_h / 8)
        upright = (_sharpness(xs, ys, bin_px, cfg.max_skew_deg)
                   / max(_sharpness(ys, xs, bin_px, cfg.max_skew_deg), 1.0))
    lines = _lines(c, seeds, np.flatnonzero(kept & ~seed), ref_h, cfg, image.shape[1])
    reason = np.concatenate([reason, np.zeros(c.n - reason.size, np.int8)])  # carved pieces
    # (n,) owner of each component: -1 for non-text that crops hide; faint ink and specks
    # (maybe a light letter's pieces) stay 0 like the ink that binarization left out
    table = np.where(np.isin(reason, MASKED), -1, 0).astype(np.int32)
    for k, line in enumerate(lines, start=1):
        table[line.seeds + line.small] = k
    owners = np.concatenate([[0], table]).astype(np.int32)[c.labels]  # (h, w)
    out = []
    above = below = aspect = weight = 0.0
    for k, line in enumerate(lines, start=1):
        ids = sorted(line.seeds + line.small)
        xs, ys = c.coords(ids)
        p = _shear(xs, ys, line.angle, line.cx)
        xh = _x_height(p)
        words = _words(line, c, xh, cfg)
        box = _union(ids, c)
        out.append(TextLine(box, round(line.angle, 2), words, xh, k, owners))
        lo, hi = _core(p)
        above, below = above + float((p < lo).sum()), below + float((p > hi).sum())
        aspect, weight = aspect + p.size * box[2] / max(box[3], 1), weight + p.size
    return _Page(out, upright, above / max(below, 1.0), aspect / max(weight, 1.0))


def _sharpness(xs: np.ndarray, ys: np.ndarray, bin_px: float, max_deg: float) -> float:
    """Largest ``_skew`` score (sum of squared bin counts of ``y + x · tan(angle)``) over
    angles within ± ``max_deg`` (1° steps; pixels subsampled to at most 5000)."""
    if xs.size > 5000:
        step = xs.size // 5000 + 1
        xs, ys = xs[::step], ys[::step]
    xc = xs - xs.mean()
    best = 0.0
    for deg in np.arange(-max_deg, max_deg + 0.5, 1.0):
        q = ys + xc * math.tan(math.radians(float(deg)))
        hist = np.bincount(((q - q.min()) / bin_px).astype(np.int64))
        best = max(best, float(np.dot(hist, hist)))
    return best


def _turned(image: np.ndarray, cfg: LineParams, page: _Page) -> list[TextLine] | None:
    """The lines of a page whose text runs vertically, found on the ink map turned upright
    and mapped back (boxes, words and owners in ``image``'s pixels, angles ± 90°); None
    when turning does not give clearly better lines.

    ``page`` (found as the image lies) has a row profile less sharp than its column profile
    (``_Page.upright`` < ``cfg.vertical``). Turned 90° counter-clockwise, the lines must be
    clearly longer (ink-weighted width / height of the line boxes at least 1.5 × those of
    ``page``); turned clockwise instead when that gives more ascender than descender ink
    (``_Page.ascent``; the two turns differ by 180°).
    """
    best: tuple[int, _Page] | None = None
    for k in (1, -1):
        turned = _page(np.ascontiguousarray(np.rot90(image, k)), replace(cfg, vertical=0.0))
        if not turned.lines or turned.aspect < 1.5 * page.aspect:
            return None
        if best is None or turned.ascent > best[1].ascent:
            best = (k, turned)
        if turned.ascent >= 1:
            break
    if best is None or (turned_owners := best[1].lines[0].owners) is None:
        return None
    k, turned = best
    log.debug("vertical lines (upright %.2f, aspect %.1f → %.1f): turned %d°", page.upright,
              page.aspect, turned.aspect, 90 * k)
    height, width = image.shape
    owners = np.ascontiguousarray(np.rot90(turned_owners, -k))

    def back(box: BoxT) -> BoxT:
        x, y, w, h = box
        return (width - y - h, x, h, w) if k == 1 else (y, height - x - w, h, w)

    return [TextLine(back(ln.box), round(ln.angle_deg - 90 * k, 2),
                     [back(b) for b in ln.words], ln.x_height, ln.index, owners)
            for ln in turned.lines]


def _classify(image: np.ndarray, mask: np.ndarray, c: _Components, cfg: LineParams
              ) -> tuple[np.ndarray, float]:
    """Why each component is dropped (int8 (n,), index into ``DROP_REASONS``; 0 kept) and
    ref_h, the median height of the letter-sized components (0.0 when there are none)."""
    reason = np.zeros(c.n, np.int8)
    if c.n == 0:
        return reason, 0.0
    if not (c.area >= cfg.min_area).any():
        reason[:] = 1
        return reason, 0.0
    ref_h = _rough_height(c, image.shape, cfg.min_area)
    checks = (
        (1, c.area < cfg.min_area),
        (2, c.h > cfg.max_height * ref_h),
        (3, c.stroke > max(cfg.max_stroke * ref_h, 2.0)),
    )
    for code, bad in checks:
        reason[(reason == 0) & bad] = code
    text = _text_ink(c.mean, c, reason == 0, cfg.min_seed * ref_h)
    pad, halo = max(3, round(ref_h)), max(2, round(0.1 * ref_h))
    busy = _clutter(image, mask, (c.x, c.y, c.w, c.h), pad, halo, cfg.clutter_level * text
                    ) > cfg.max_clutter
    # ink as dark as the text on clean paper stays: its neighbours may be bleed-through
    clean = _text_ink(c.peak, c, (reason == 0) & ~busy, cfg.min_seed * ref_h)
    reason[(reason == 0) & busy & (c.peak < cfg.clutter_keep * clean)] = 4
    for _ in range(2):  # lines, then again with ref_h re-estimated without them
        ids = np.flatnonzero(reason == 0)
        reason[ids[_thin(c, ids, ref_h, cfg.rule_len, cfg.rule_thickness)]] = 5
        if not (reason == 0).any():
            return reason, ref_h
        ref_h = _reference_height(c.h[reason == 0], c.area[reason == 0])
    reason[_dotted(c, np.flatnonzero(reason == 0), ref_h, cfg.rule_len)] = 5
    kept = reason == 0
    # the text's stroke width, from ink on clean paper (on a patterned cloth, its patches)
    pen = _text_ink(c.stroke, c, kept & ~busy if (kept & ~busy).any() else kept,
                    cfg.min_seed * ref_h)
    reason[kept & (c.stroke > max(cfg.stroke_ratio * pen, 2.0))] = 3
    reason[_hugging(c, reason, max(2, round(0.25 * ref_h)), cfg.hug)] = 3
    kept = reason == 0
    dark = _text_ink(c.peak, c, kept, cfg.min_seed * ref_h)
    reason[kept & (c.peak < cfg.faint * dark)] = 6
    return reason, ref_h


def _lines(c: _Components, seeds: np.ndarray, small: np.ndarray, ref_h: float,
           cfg: LineParams, width: int) -> list[_Line]:
    """Seeds → smear → split → join → absorb narrow pieces → attach the small components
    → reading order."""
    smear_px = cfg.smear * ref_h
    bin_px = max(1.0, ref_h / 8)
    page_angle = _skew(*c.coords(seeds), bin_px, -cfg.max_skew_deg, cfg.max_skew_deg)

    def fit(line: _Line) -> _Line:
        return _fit(line, c, ref_h, page_angle, cfg)

    lines: list[_Line] = []
    for group in _smear(c, seeds, smear_px):
        parts = _split(fit(_Line(group)), c, ref_h, cfg.valley, cfg.min_line_gap,
                       cfg.max_cross)
        lines.extend(fit(_Line(part)) for part in parts)
    lines = [fit(ln) for ln in _join(lines, c, ref_h, cfg.join_gap * ref_h, cfg.max_offset)]
    lines = [fit(ln) for ln in _absorb(lines, c, ref_h, cfg.reach * ref_h, smear_px)]
    _attach(lines, small, c, cfg.reach * ref_h, smear_px)
    tilt = math.tan(math.radians(page_angle))
    boxes = []  # (x0, y0, x1, y1), y in the page's deskewed frame, for the reading order
    for ln in lines:
        x0, _, w, _ = _union(ln.seeds, c)
        shift = (ln.cx - width / 2) * tilt
        boxes.append((float(x0), ln.lo + shift, float(x0 + w), ln.hi + shift))
    return [lines[k] for k in _xy_cut(boxes, list(range(len(lines))))]


def _text_ink(values: np.ndarray, c: _Components, kept: np.ndarray, min_size: float
              ) -> float:
    """The page's text ink: area-weighted median of ``values`` (one per component, e.g.
    ``c.peak``) over the kept components whose longer side is at least ``min_size`` (all
    kept ones if none is; 1.0 if none is kept)."""
    sized = kept & (np.maximum(c.w, c.h) >= min_size)
    use = sized if sized.any() else kept
    if not use.any():
        return 1.0
    return _weighted_median(values[use], c.area[use].astype(np.float64))


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The value at half the cumulative weight (values sorted ascending)."""
    order = np.argsort(values)
    mass = np.cumsum(weights[order]) / max(float(weights.sum()), 1.0)
    return float(values[order][min(int(np.searchsorted(mass, 0.5)), values.size - 1)])


def _smear(c: _Components, seeds: np.ndarray, length: float) -> list[list[int]]:
    """RLSA: close horizontal gaps up to ``length`` px in the seeds' mask (a closing with a
    1 × length segment); the seeds grouped by the connected piece of the result that they
    fall in."""
    only = np.zeros(c.labels.shape, np.uint8)
    flat = only.reshape(-1)
    for i in seeds:
        flat[c.pix[i]] = 255
    k = max(3, round(length)) | 1  # odd: with an even segment the closing shifts a pixel
    smeared = cv2.morphologyEx(only, cv2.MORPH_CLOSE, np.ones((1, k), np.uint8))
    _, pieces = cv2.connectedComponents(smeared, connectivity=8)
    flat_pieces = pieces.reshape(-1)
    groups: dict[int, list[int]] = {}
    for i in seeds:
        piece = int(flat_pieces[c.pix[i][0]])  # a seed lies in one piece
        groups.setdefault(piece, []).append(int(i))
    return list(groups.values())


# --------------------------------------------------------------------------- crops


def stroke_width(ink: np.ndarray, threshold: float = STROKE_INK) -> float:
    """Mean stroke width in pixels of the ink in ``ink`` (float32 (h, w), ink bright):
    twice the ink area over its boundary (pixels that a 3x3 erosion removes), since a
    stroke of width s and length L has area s·L and two edges of length L. A stroke one or
    two pixels wide, which erodes away whole, measures 2. 0.0 without ink above
    ``threshold``."""
    mask = (ink > threshold).astype(np.uint8)
    area = int(mask.sum())
    if area == 0:
        return 0.0
    inner = int(cv2.erode(mask, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT,
                          borderValue=0).sum())
    return 2.0 * area / max(1, area - inner)


def line_crop(ink: InkMap, line: TextLine, height: int = 32, pad: float = 0.15,
              min_stroke: float = MIN_STROKE) -> np.ndarray:
    """One line of ``ink`` as float32 (height, W) in [0, 1], ink bright on black.

    The line is rotated level by ``line.angle_deg`` about its box centre; the crop spans the
    line's own ink (ascenders and descenders included) plus ``pad`` × its height above and
    below and half that left and right (the padding of the training lines,
    ``linesynth.crop_to_height``), and is resized (cv2.INTER_AREA when shrinking) to
    ``height`` rows keeping the aspect ratio; W >= ``height`` (a short line is centred on
    black). Ink of components that belong to other lines or were dropped as non-text
    (``line.owners``) is zeroed (grown by 2 px, except next to this line's own ink), so a
    neighbour reaching into the box does not show. Faint ink (below binarization, or
    dropped as faint) stays. Strokes that would be thinner than ``min_stroke`` pixels after
    resizing (:func:`stroke_width` of the line's ink x the scale) are first dilated by the
    difference (an elliptic kernel), so thin pens on large photos keep the stroke weight
    of the training lines (stroke-width normalization, as in the normalization steps of
    Marti & Bunke's HMM line recognizer, IJPRAI 2001; 0 turns it off).

    Raises:
        ValueError: ``height < 1`` or ``pad < 0``; the line comes from an ink map of another
            shape; its box lies outside the ink map.
    """
    if height < 1 or pad < 0:
        raise ValueError(f"height must be >= 1 and pad >= 0, got height={height}, pad={pad}")
    image = ink.ink
    H, W = image.shape
    if line.owners is not None and line.owners.shape != image.shape:
        raise ValueError(f"the line was found on a {line.owners.shape} ink map, not on this "
                         f"{image.shape} one; crop with the ink map passed to find_lines")
    inside = Box(*line.box).clipped(W, H)
    x, y, w, h = inside.x, inside.y, inside.w, inside.h
    if w == 0 or h == 0:
        raise ValueError(f"line box {line.box} lies outside the {W}x{H} ink map")
    theta = math.radians(line.angle_deg)
    cos, sin = math.cos(theta), math.sin(theta)
    cx, cy = x + w / 2, y + h / 2
    # level frame: u = (x - cx) cos θ - (y - cy) sin θ, v = (x - cx) sin θ + (y - cy) cos θ
    if line.owners is not None and line.index > 0:
        region = line.owners[y : y + h, x : x + w]
        ys, xs = np.nonzero(region == line.index)
        xs, ys = xs + x, ys + y
    else:
        ys, xs = np.nonzero(image[y : y + h, x : x + w] > INK_FLOOR)
        xs, ys = xs + x, ys + y
    if xs.size == 0:
        xs, ys = np.array([x, x + w - 1]), np.array([y, y + h - 1])
    u = (xs - cx) * cos - (ys - cy) * sin
    v = (xs - cx) * sin + (ys - cy) * cos
    u0, u1, v0, v1 = float(u.min()), float(u.max()) + 1, float(v.min()), float(v.max()) + 1
    margin = pad * (v1 - v0)
    u0, u1, v0, v1 = u0 - margin / 2, u1 + margin / 2, v0 - margin, v1 + margin
    out_w, out_h = max(1, math.ceil(u1 - u0)), max(1, math.ceil(v1 - v0))
    # source region (axis-aligned) that the level crop reads from
    corners_u = np.array([u0, u1, u0, u1])
    corners_v = np.array([v0, v0, v1, v1])
    sx = cx + corners_u * cos + corners_v * sin
    sy = cy - corners_u * sin + corners_v * cos
    rx0, ry0 = max(0, math.floor(sx.min()) - 2), max(0, math.floor(sy.min()) - 2)
    rx1, ry1 = min(W, math.ceil(sx.max()) + 3), min(H, math.ceil(sy.max()) + 3)
    patch = image[ry0:ry1, rx0:rx1].astype(np.float32)
    if line.owners is not None and line.index > 0:
        patch = patch * _keep(line.owners[ry0:ry1, rx0:rx1], line.index)
    if min_stroke > 0:
        patch = _thicken(patch, line, (rx0, ry0), height / out_h, min_stroke)
    # destination (col, row) = (u - u0, v - v0); as a map from source (x - rx0, y - ry0)
    m = np.array([
        [cos, -sin, -u0 + (rx0 - cx) * cos - (ry0 - cy) * sin],
        [sin, cos, -v0 + (rx0 - cx) * sin + (ry0 - cy) * cos],
    ])
    level = cv2.warpAffine(patch, m, (out_w, out_h), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    new_w = max(1, round(out_w * height / out_h))
    interp = cv2.INTER_AREA if height < out_h else cv2.INTER_LINEAR
    resized = cv2.resize(level, (new_w, height), interpolation=interp)
    if new_w < height:
        canvas = np.zeros((height, height), np.float32)
        left = (height - new_w) // 2
        canvas[:, left : left + new_w] = resized
        resized = canvas
    return np.clip(resized, 0.0, 1.0).astype(np.float32)


def _thicken(patch: np.ndarray, line: TextLine, origin: tuple[int, int], scale: float,
             min_stroke: float) -> np.ndarray:
    """``patch`` (float32, the crop's source region at ``origin`` of the ink map) with its
    strokes dilated when the line's own ink, measured by :func:`stroke_width`, would be
    thinner than ``min_stroke`` after scaling by ``scale`` (output px per ink-map px)."""
    own = patch
    if line.owners is not None and line.index > 0:
        h, w = patch.shape
        x0, y0 = origin
        own = patch * (line.owners[y0 : y0 + h, x0 : x0 + w] == line.index)
    width = stroke_width(own)
    if width == 0.0 or width * scale >= min_stroke:
        return patch
    grow = round(min_stroke / scale - width)
    if grow < 1:
        return patch
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (grow + 1, grow + 1))
    return np.asarray(cv2.dilate(patch, kernel), np.float32)


def _keep(owners: np.ndarray, index: int) -> np.ndarray:
    """float32 (h, w): 0 on other components' ink grown by 2 px (not next to own ink), 1
    elsewhere."""
    own = (owners == index).astype(np.uint8)
    other = ((owners != 0) & (owners != index)).astype(np.uint8)
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    blocked = (cv2.dilate(other, disk) > 0) & (cv2.dilate(own, np.ones((3, 3), np.uint8)) == 0)
    return (~blocked).astype(np.float32)
