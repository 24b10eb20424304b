"""Ink map → lines → words → letter boxes, and letter crops prepared like the training data.

The seed tutorial finds each letter with ``cv2.findContours`` (external contours) and its
bounding box. Here that is made usable on real pages: specks, page edges and ruled lines are
dropped, pieces of one letter are merged (the dot of i/j, strokes broken by the pen), and the
letters are put in reading order (lines top to bottom, words and letters left to right).

Boxes are in ink-map pixels; ``Layout.boxes_in_original`` maps them to the decoded image.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image

from models.handwriting.preprocess import INK_FLOOR, InkMap, binarize

log = logging.getLogger(__name__)

MARGIN = 1.15  # square side = ceil(MARGIN · max(h, w)) + 2, as in the shared letter datasets


@dataclass(frozen=True)
class Box:
    """Axis-aligned box in pixels: columns ``x .. x2 - 1``, rows ``y .. y2 - 1``."""

    x: int
    y: int
    w: int
    h: int

    @property
    def x2(self) -> int:
        return self.x + self.w

    @property
    def y2(self) -> int:
        return self.y + self.h

    @property
    def area(self) -> int:
        return self.w * self.h

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    @property
    def cy(self) -> float:
        return self.y + self.h / 2

    @property
    def slices(self) -> tuple[slice, slice]:
        """``image[box.slices]`` is the (h, w) region of the box."""
        return slice(self.y, self.y2), slice(self.x, self.x2)

    def union(self, other: Box) -> Box:
        x, y = min(self.x, other.x), min(self.y, other.y)
        return Box(x, y, max(self.x2, other.x2) - x, max(self.y2, other.y2) - y)

    def scaled(self, factor: float) -> Box:
        """The box in a frame ``factor`` times as large, rounded outwards (it still covers)."""
        x, y = math.floor(self.x * factor), math.floor(self.y * factor)
        return Box(x, y, math.ceil(self.x2 * factor) - x, math.ceil(self.y2 * factor) - y)

    def padded(self, pad: int) -> Box:
        return Box(self.x - pad, self.y - pad, self.w + 2 * pad, self.h + 2 * pad)

    def clipped(self, width: int, height: int) -> Box:
        """The part inside an image of ``width`` × ``height`` (w or h 0 when outside)."""
        x, y = min(max(self.x, 0), width), min(max(self.y, 0), height)
        return Box(x, y, max(0, min(self.x2, width) - x), max(0, min(self.y2, height) - y))


@dataclass
class Layout:
    """Letters of one image in reading order.

    Attributes:
        ink: the ink map the boxes refer to.
        lines: lines (top to bottom) → words (left to right) → letter boxes (ink-map pixels).
        labels: int32 (h, w): for each ink pixel of a kept component its id (1..K), else 0.
        components: the component ids of each letter, nested exactly like ``lines``.
    """

    ink: InkMap
    lines: list[list[list[Box]]]
    labels: np.ndarray | None = None
    components: list[list[list[tuple[int, ...]]]] = field(default_factory=list)

    def letters(self) -> list[Box]:
        """All letter boxes, flat, in reading order."""
        return [box for line in self.lines for word in line for box in word]

    def letter_components(self) -> list[tuple[int, ...]]:
        """Component ids of each letter, flat, parallel to ``letters()``."""
        return [ids for line in self.components for word in line for ids in word]

    def boxes_in_original(self) -> list[Box]:
        """Letter boxes in pixels of the decoded image (divided by ``ink.scale``, clipped)."""
        height, width = self.ink.original_shape
        return [b.scaled(1.0 / self.ink.scale).clipped(width, height) for b in self.letters()]

    def letter_mask(self, index: int, box: Box) -> np.ndarray | None:
        """bool (box.h, box.w): where letter ``index``'s ink may be, inside ``box``.

        Its own components grown by 2 px (to keep the soft stroke edges that binarization
        cut), minus other letters' components grown by 1 px. None without ``labels``.
        """
        if self.labels is None:
            return None
        return _letter_mask(self.labels[box.slices], self.letter_components()[index])


def _letter_mask(region: np.ndarray, ids: tuple[int, ...]) -> np.ndarray:
    """See ``Layout.letter_mask``; ``region`` int32 (h, w) labels → bool (h, w)."""
    own = np.isin(region, ids).astype(np.uint8)
    other = ((region > 0) & (own == 0)).astype(np.uint8)
    near = cv2.dilate(own, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    blocked = cv2.dilate(other, np.ones((3, 3), np.uint8))
    return ((near > 0) & (blocked == 0)) | (own > 0)


# --------------------------------------------------------------------------- segmentation


def segment(
    ink: InkMap | np.ndarray,
    *,
    floor: float = INK_FLOOR,
    min_area: int = 4,
    speck_ratio: float = 0.002,
    border_len: float = 0.5,
    max_aspect: float = 10.0,
    line_len: float = 2.5,
    stroke_overlap: float = 0.6,
    stroke_gap: float = 0.25,
    dot_size: float = 0.35,
    dot_gap: float = 0.6,
    max_letter: float = 2.0,
    min_letter: float = 0.3,
    line_overlap: float = 0.5,
    word_gap: float = 0.65,
    word_gap_ratio: float = 2.5,
    word_gap_max: float = 1.0,
    max_components: int = 3000,
) -> Layout:
    """Find the letters of an ink map and put them in reading order.

    Lengths below are in units of ``ref_h``, the median height of the letter-sized
    components (heights >= 0.4 × the area-weighted 90th percentile of heights).

    Args:
        ink: an InkMap, or a float32 (h, w) ink map in [0, 1] (scale 1).
        floor: lowest ink threshold for ``binarize``.
        min_area: components with fewer ink pixels are specks.
        speck_ratio: ... and so are those with fewer than ``speck_ratio`` · ref_h² pixels.
        border_len: components touching the border and spanning this fraction of the image
            width or height are page edges or table, not letters.
        max_aspect, line_len: components with aspect ratio > ``max_aspect`` and longer than
            ``line_len`` · ref_h are lines (rules, underlines, margins).
        stroke_overlap, stroke_gap: two pieces overlapping in x by this fraction of the
            narrower one and at most ``stroke_gap`` apart vertically are one letter.
        dot_size, dot_gap: a piece at most ``dot_size`` tall and wide, centred over a taller
            piece (± 0.25 ref_h) and at most ``dot_gap`` above it is its dot or accent.
        max_letter: merges never make a letter taller than this.
        min_letter: letters whose longer side is below this are dropped (lone dots, commas).
        line_overlap: a letter joins a line when its vertical overlap with the line's local
            band (median top/bottom of its 3 letters nearest on the left) is at least this
            fraction of the smaller height.
        word_gap, word_gap_ratio, word_gap_max: a gap between letters (in x) is a word break
            when larger than max(word_gap · h, min(word_gap_ratio · median gap,
            word_gap_max · h)), h the line's median letter height; the median-gap term is
            used only with >= 3 gaps.
        max_components: beyond this many components (a noise image) only the largest are kept.
    """
    inkmap = ink if isinstance(ink, InkMap) else _as_inkmap(ink)
    mask = binarize(inkmap.ink, floor=floor)  # uint8 (h, w)
    labels, boxes, areas = _components(mask)
    keep, ref_h = _drop_noise(
        boxes, areas, mask.shape, min_area, speck_ratio, border_len, max_aspect, line_len
    )
    if len(keep) > max_components:
        log.warning("%d components, keeping the %d largest", len(keep), max_components)
        keep = sorted(keep, key=lambda i: -int(areas[i]))[:max_components]
    kept = [boxes[i] for i in keep]
    groups = _merge_pieces(kept, ref_h, stroke_overlap, stroke_gap, dot_size, dot_gap, max_letter)
    letters = [(_union(kept[i] for i in g), tuple(keep[i] + 1 for i in g)) for g in groups]
    letters = [(b, ids) for b, ids in letters if max(b.w, b.h) >= min_letter * ref_h]
    lines = _group_lines(letters, line_overlap)
    words = [_split_words(line, word_gap, word_gap_ratio, word_gap_max) for line in lines]
    used = sorted({i for _, ids in letters for i in ids})
    table = np.zeros(len(boxes) + 1, np.int32)
    table[used] = used  # keep the ids of used components, 0 for dropped ones
    return Layout(
        ink=inkmap,
        lines=[[[b for b, _ in word] for word in line] for line in words],
        labels=table[labels],
        components=[[[ids for _, ids in word] for word in line] for line in words],
    )


def _as_inkmap(ink: np.ndarray) -> InkMap:
    array = np.asarray(ink, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"expected an ink map (h, w), got shape {array.shape}")
    return InkMap(ink=array, scale=1.0, original_shape=(array.shape[0], array.shape[1]))


def _union(boxes: Iterable[Box]) -> Box:
    it = iter(boxes)
    out = next(it)
    for b in it:
        out = out.union(b)
    return out


def _components(mask: np.ndarray) -> tuple[np.ndarray, list[Box], np.ndarray]:
    """External contours of ``mask`` as components.

    Returns:
        labels: int32 (h, w), id 1..n on the ink pixels of each external contour's region
            (ink inside a letter's hole belongs to that letter), 0 elsewhere.
        boxes: n bounding boxes, ``boxes[i]`` for id ``i + 1``.
        areas: int (n,), ink pixels per component.
    """
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    filled = np.zeros_like(mask)
    cv2.drawContours(filled, contours, -1, 255, thickness=cv2.FILLED)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(filled, connectivity=8)
    labels[mask == 0] = 0
    areas = np.bincount(labels.ravel(), minlength=n)[1:]
    boxes = [Box(*(int(v) for v in s[:4])) for s in stats[1:]]
    return labels.astype(np.int32), boxes, areas


def _reference_height(heights: np.ndarray, areas: np.ndarray) -> float:
    """Median height of the letter-sized components: those at least 0.4 × the 90th
    percentile of height weighted by ink area (so that many specks do not count much).
    """
    if heights.size == 0:
        return 0.0
    order = np.argsort(heights)
    mass = np.cumsum(areas[order]) / max(float(areas.sum()), 1.0)
    p90 = heights[order][min(int(np.searchsorted(mass, 0.9)), heights.size - 1)]
    return float(np.median(heights[heights >= 0.4 * p90]))


def _drop_noise(
    boxes: list[Box],
    areas: np.ndarray,
    shape: tuple[int, ...],
    min_area: int,
    speck_ratio: float,
    border_len: float,
    max_aspect: float,
    line_len: float,
) -> tuple[list[int], float]:
    """Indices of the components that may be (parts of) letters, and ref_h."""
    if not boxes:
        return [], 0.0
    height, width = shape[:2]
    x, y, w, h = (np.array([getattr(b, a) for b in boxes]) for a in ("x", "y", "w", "h"))
    touches = (x == 0) | (y == 0) | (x + w == width) | (y + h == height)
    edge = touches & ((w >= border_len * width) | (h >= border_len * height))
    long, short = np.maximum(w, h), np.maximum(np.minimum(w, h), 1)
    thin = long / short > max_aspect
    cand = ~edge & (areas >= min_area)
    ref_h = _reference_height(h[cand & ~thin], areas[cand & ~thin])
    line = thin & (long > line_len * ref_h)
    speck = areas < speck_ratio * ref_h**2
    keep = np.flatnonzero(cand & ~line & ~speck)
    log.debug(
        "components %d: edge %d, line %d, speck %d, kept %d",
        len(boxes),
        int(edge.sum()),
        int((cand & line).sum()),
        int((cand & speck).sum()),
        keep.size,
    )
    return [int(i) for i in keep], ref_h


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        self.parent[self.find(i)] = self.find(j)


def _merge_pieces(
    boxes: list[Box],
    ref_h: float,
    stroke_overlap: float,
    stroke_gap: float,
    dot_size: float,
    dot_gap: float,
    max_letter: float,
) -> list[list[int]]:
    """Group pieces of one letter: broken strokes (heavy x-overlap, small vertical gap) and
    dots/accents (small piece just above a taller one). Returns groups of indices, each
    sorted, groups ordered by their first index.
    """
    n = len(boxes)
    uf = _UnionFind(n)
    if n == 0:
        return []
    x, y, w, h = (np.array([getattr(b, a) for b in boxes], float) for a in ("x", "y", "w", "h"))
    x2, y2 = x + w, y + h
    for i in range(n):
        # broken strokes: pairs (i, j) overlapping in x
        ox = np.minimum(x2[i], x2) - np.maximum(x[i], x)
        cover = ox / np.maximum(np.minimum(w[i], w), 1)
        gy = np.maximum(y[i], y) - np.minimum(y2[i], y2)
        tall = np.maximum(y2[i], y2) - np.minimum(y[i], y)
        ok = (cover >= stroke_overlap) & (gy <= stroke_gap * ref_h) & (tall <= max_letter * ref_h)
        ok[: i + 1] = False
        for j in np.flatnonzero(ok):
            uf.union(i, int(j))
        # dot or accent: i small, j taller and below it, i centred over j
        if h[i] > dot_size * ref_h or w[i] > dot_size * ref_h * 1.5:
            continue
        cx = x[i] + w[i] / 2
        gap = y - y2[i]  # (n,) vertical gap from the dot's bottom to each stem's top
        tol = 0.25 * ref_h
        stem = (
            (h > 1.5 * h[i])
            & (h >= 0.3 * ref_h)
            & (cx >= x - tol)
            & (cx <= x2 + tol)
            & (gap >= -0.5 * h[i])
            & (gap <= dot_gap * ref_h)
            & (y2 - y[i] <= max_letter * ref_h)
        )
        stem[i] = False
        if stem.any():
            score = np.abs(cx - (x + w / 2)) + np.abs(gap)
            uf.union(i, int(np.flatnonzero(stem)[np.argmin(score[stem])]))
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(uf.find(i), []).append(i)
    return sorted(groups.values(), key=lambda g: g[0])


Letter = tuple[Box, tuple[int, ...]]


def _group_lines(letters: list[Letter], line_overlap: float) -> list[list[Letter]]:
    """Letters → text lines, top to bottom, each left to right.

    Letters are visited left to right; each joins the line whose local band (median top and
    bottom of its last 3 letters) it overlaps most, if that overlap is at least
    ``line_overlap`` of the smaller height, else it starts a line. The local band follows
    slightly tilted lines and mixed letter heights.
    """
    lines: list[list[Letter]] = []
    for letter in sorted(letters, key=lambda lt: (lt[0].x, lt[0].y)):
        box = letter[0]
        best, best_frac = -1, line_overlap
        for k, line in enumerate(lines):
            last = [b for b, _ in line[-3:]]
            top = float(np.median([b.y for b in last]))
            bottom = float(np.median([b.y2 for b in last]))
            overlap = min(box.y2, bottom) - max(box.y, top)
            frac = overlap / max(min(box.h, bottom - top), 1.0)
            if frac >= best_frac:
                best, best_frac = k, frac
        if best < 0:
            lines.append([letter])
        else:
            lines[best].append(letter)
    return sorted(lines, key=lambda line: float(np.median([b.cy for b, _ in line])))


def _split_words(
    line: list[Letter], word_gap: float, word_gap_ratio: float, word_gap_max: float
) -> list[list[Letter]]:
    """One line (left to right) → words, split where the gap is a word break."""
    if len(line) < 2:
        return [line]
    height = float(np.median([b.h for b, _ in line]))
    ends = np.maximum.accumulate([b.x2 for b, _ in line[:-1]])
    gaps = np.maximum(np.array([b.x for b, _ in line[1:]]) - ends, 0)  # (len - 1,)
    threshold = word_gap * height
    if gaps.size >= 3:
        typical = word_gap_ratio * float(np.median(gaps))
        threshold = max(threshold, min(typical, word_gap_max * height))
    words: list[list[Letter]] = [[line[0]]]
    for letter, gap in zip(line[1:], gaps, strict=True):
        if gap > threshold:
            words.append([])
        words[-1].append(letter)
    return words


# --------------------------------------------------------------------------- crops


def crop_letter(
    ink: np.ndarray, box: Box, size: int = 64, mask: np.ndarray | None = None
) -> np.ndarray:
    """The letter in ``box`` as uint8 (size, size), prepared like the training images.

    Args:
        ink: float (h, w) ink map in [0, 1] (uint8 0..255 is accepted too).
        box: the letter's box in ``ink`` pixels (clipped to the image).
        mask: optional, shaped like ``ink`` or like the box: nonzero where the letter's ink
            may be; ink elsewhere (a neighbour reaching into the box) is zeroed.

    Raises:
        ValueError: ``mask`` has neither shape.
    """
    image = np.asarray(ink)
    scale = 1.0 / 255.0 if image.dtype == np.uint8 else 1.0
    box = box.clipped(image.shape[1], image.shape[0])
    patch = image[box.slices].astype(np.float32) * scale  # (box.h, box.w)
    if mask is not None:
        if mask.shape == image.shape:
            mask = mask[box.slices]
        elif mask.shape != patch.shape:
            raise ValueError(f"mask shape {mask.shape} is neither {image.shape} nor {patch.shape}")
        patch[mask == 0] = 0.0
    return normalize_letter(patch, size)


def normalize_letter(patch: np.ndarray, size: int = 64) -> np.ndarray:
    """Ink patch float (h, w) → uint8 (size, size): the shared datasets' recipe.

    1. divide by the 99.5th percentile of the ink above ``INK_FLOOR`` and clip to [0, 1];
    2. tight box of the pixels above max(Otsu, ``INK_FLOOR``), ignoring specks of <= 2 px;
    3. centre it in a black square of side ceil(1.15 · max(h, w)) + 2;
    4. resize to ``size`` × ``size`` with Pillow LANCZOS; round to uint8 (ink up to 255).

    A patch without ink gives all zeros.
    """
    blank = np.zeros((size, size), np.uint8)
    inked = patch[patch > INK_FLOOR]
    if inked.size == 0:
        return blank
    patch = np.clip(patch / float(np.percentile(inked, 99.5)), 0.0, 1.0).astype(np.float32)
    patch8 = np.rint(patch * 255.0).astype(np.uint8)
    otsu, _ = cv2.threshold(patch8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    strong = (patch8 > max(float(otsu), INK_FLOOR * 255.0)).astype(np.uint8)
    _, _, stats, _ = cv2.connectedComponentsWithStats(strong, connectivity=8)
    stats = stats[1:][stats[1:, cv2.CC_STAT_AREA] > 2]
    if stats.size == 0:
        return blank
    x0, y0 = stats[:, 0].min(), stats[:, 1].min()
    x1, y1 = (stats[:, 0] + stats[:, 2]).max(), (stats[:, 1] + stats[:, 3]).max()
    crop = patch[y0:y1, x0:x1]  # (h, w)
    h, w = crop.shape
    side = math.ceil(MARGIN * max(h, w)) + 2
    canvas = np.zeros((side, side), np.float32)
    top, left = (side - h) // 2, (side - w) // 2
    canvas[top : top + h, left : left + w] = crop
    resized = Image.fromarray(canvas * 255.0).resize((size, size), Image.Resampling.LANCZOS)
    return np.clip(np.rint(np.asarray(resized)), 0, 255).astype(np.uint8)


def crop_letters(layout: Layout, size: int = 64, pad: int = 2) -> np.ndarray:
    """All letters of ``layout`` as uint8 (N, size, size) in reading order (N may be 0).

    Each box is grown by ``pad`` px (soft stroke edges) and masked with
    ``Layout.letter_mask`` so that neighbours reaching into the box are left out.
    """
    ink = layout.ink.ink
    height, width = ink.shape
    crops = []
    for box, ids in zip(layout.letters(), layout.letter_components(), strict=True):
        region = box.padded(pad).clipped(width, height)
        mask = None if layout.labels is None else _letter_mask(layout.labels[region.slices], ids)
        crops.append(crop_letter(ink, region, size, mask))
    if not crops:
        return np.zeros((0, size, size), np.uint8)
    return np.stack(crops)
