"""Text-line finding and line crops on pages drawn with OpenCV and on composed pages."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np
import pytest

from models.handwriting.lines import (
    LineParams,
    TextLine,
    find_lines,
    line_crop,
    stroke_width,
    to_original,
)
from models.handwriting.preprocess import InkMap, decode_image, ink_map
from models.handwriting.synth import LetterPool, compose, load_letter_pool
from tests.conftest import require_data

SCRIPT, SIMPLEX = cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, cv2.FONT_HERSHEY_SIMPLEX
PANGRAM = ("the quick brown fox", "jumps over a lazy dog", "pack my box with", "five dozen liquor")

Box = tuple[int, int, int, int]


# --------------------------------------------------------------------------- helpers


@dataclass
class Page:
    rgb: np.ndarray  # uint8 (H, W, 3)
    truth: list[Box]  # drawn extent of each text line, (x, y, w, h) in image pixels


def render(
    texts: tuple[str, ...] | list[str],
    origins: list[tuple[int, int]],
    *,
    font: int = SCRIPT,
    scale: float = 2.0,
    thickness: int = 3,
    size: tuple[int, int] = (900, 1200),
    rules: list[int] | None = None,
    angle: float = 0.0,
    shadow: float = 0.0,
) -> Page:
    """Dark text lines on white paper, optionally ruled (gray 1-px lines across the page),
    rotated by ``angle`` degrees (counter-clockwise) and darkened towards the right by up
    to ``shadow``. Each line's truth is the box of its own pixels (drawn alone, > 50 %)."""
    h, w = size
    rgb: np.ndarray = np.full((h, w, 3), 255, np.uint8)
    for y in rules or []:
        cv2.line(rgb, (0, y), (w - 1, y), (170, 170, 170), 1)
    masks: list[np.ndarray] = []
    for text, org in zip(texts, origins, strict=True):
        cv2.putText(rgb, text, org, font, scale, (25, 25, 25), thickness, cv2.LINE_AA)
        alone = np.zeros((h, w), np.uint8)
        cv2.putText(alone, text, org, font, scale, 255, thickness, cv2.LINE_AA)
        masks.append(alone)
    if angle:
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        rgb = cv2.warpAffine(rgb, m, (w, h), borderValue=(255, 255, 255))
        masks = [cv2.warpAffine(a, m, (w, h)) for a in masks]
    if shadow:
        light = np.linspace(1.0, 1.0 - shadow, w, dtype=np.float32)[None, :, None]
        rgb = np.clip(rgb * light, 0, 255).astype(np.uint8)
    truth = []
    for alone in masks:
        ys, xs = np.nonzero(alone > 127)
        truth.append((int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1))
    return Page(rgb, truth)


def stacked(spacing: int = 110, y0: int = 150, x: int = 80, **kw: Any) -> Page:
    """The four PANGRAM lines, ``spacing`` px apart, the first baseline at ``y0``."""
    origins = [(x, y0 + k * spacing) for k in range(len(PANGRAM))]
    return render(PANGRAM, origins, **kw)


def contains(outer: Box, inner: Box, tol: int = 2) -> bool:
    x, y, w, h = outer
    ix, iy, iw, ih = inner
    return x <= ix + tol and y <= iy + tol and x + w >= ix + iw - tol and y + h >= iy + ih - tol


def tilt(crop: np.ndarray) -> float:
    """Row centroid of the ink in the right third of a crop minus that in the left third,
    as a fraction of the crop's height (0 for a level line)."""
    rows = np.arange(crop.shape[0], dtype=np.float64)[:, None]
    third = crop.shape[1] // 3
    left, right = crop[:, :third], crop[:, -third:]
    centroid = [float((part * rows).sum() / part.sum()) for part in (left, right)]
    return (centroid[1] - centroid[0]) / crop.shape[0]


def assert_lines_cover(lines: list[TextLine], ink: InkMap, truth: list[Box]) -> None:
    """One line per drawn line, in order; each box holds its line's ink and little more
    (so a rule, a shadow or bleed-through merged into a line fails too)."""
    assert len(lines) == len(truth), [ln.box for ln in lines]
    for k, (line, drawn) in enumerate(zip(lines, truth, strict=True)):
        found = line.original_box(ink)
        assert contains(found, drawn), f"line {k}: found {found}, drawn {drawn}"
        x, y, w, h = drawn
        m = max(3, round(0.1 * h))
        assert contains((x - m, y - m, w + 2 * m, h + 2 * m), found, tol=0), (
            f"line {k}: found {found}, more than the drawn {drawn}"
        )


# --------------------------------------------------------------------------- find_lines


RULES = [150 + 18 + k * 110 for k in range(-1, 4)]  # just under each baseline, one above


@pytest.mark.parametrize(
    ("name", "kw"),
    [
        ("script", {}),
        ("print", {"font": SIMPLEX, "scale": 1.5}),
        ("ruled", {"rules": RULES}),
        ("shadow", {"shadow": 0.6}),
        ("rotated ruled", {"rules": RULES, "angle": 3.0}),
        ("rotated print in shadow", {"font": SIMPLEX, "scale": 1.5, "angle": -4.0,
                                     "shadow": 0.5}),
    ],
)
def test_each_drawn_line_is_found_in_order_and_covers_its_ink(
    name: str, kw: dict[str, Any]
) -> None:
    page = stacked(**kw)
    ink = ink_map(page.rgb)
    lines = find_lines(ink)
    assert_lines_cover(lines, ink, page.truth)  # in order: truth is top to bottom
    angle = float(kw.get("angle", 0.0))
    assert all(abs(ln.angle_deg - angle) <= 0.5 for ln in lines), [ln.angle_deg for ln in lines]


def test_words_of_printed_lines_are_split_at_the_spaces() -> None:
    page = stacked(font=SIMPLEX, scale=1.5)
    lines = find_lines(ink_map(page.rgb))
    assert [len(ln.words) for ln in lines] == [len(t.split()) for t in PANGRAM]
    for line in lines:
        assert all(contains(line.box, word, tol=0) for word in line.words)
        assert [w[0] for w in line.words] == sorted(w[0] for w in line.words)


def test_lines_touching_through_descenders_are_split() -> None:
    # at this spacing "jumpy"'s descenders run into "black"'s ascenders: one component
    texts, origins = ("jumpy gypsy quay", "black hill kith"), [(40, 150), (40, 219)]
    page = render(texts, origins, size=(400, 900))
    lines = find_lines(ink_map(page.rgb))
    assert len(lines) == 2
    assert [ln.index for ln in lines] == [1, 2]
    (_, ay, _, ah), (_, by, _, bh) = lines[0].box, lines[1].box
    assert ay < by and ay + ah < by + bh
    for line, drawn in zip(lines, page.truth, strict=True):  # each keeps its whole width
        assert abs(line.box[0] - drawn[0]) <= 2 and abs(line.box[2] - drawn[2]) <= 4


def test_empty_pages_have_no_lines() -> None:
    white = np.full((600, 800, 3), 255, np.uint8)
    assert find_lines(ink_map(white)) == []
    rng = np.random.default_rng(0)
    grey = np.clip(200 + rng.normal(0, 3, (600, 800, 3)), 0, 255).astype(np.uint8)
    assert find_lines(ink_map(grey)) == []


def test_small_word_in_the_corner_of_a_12_megapixel_photo_is_found() -> None:
    page = render(["hello"], [(3600, 2900)], font=SIMPLEX, scale=1.3, size=(3000, 4000))
    ink = ink_map(page.rgb)  # downscaled to 1600 px: the word is ~13 px high
    assert ink.scale == pytest.approx(0.4)
    assert_lines_cover(find_lines(ink), ink, page.truth)  # in original-image pixels


def test_leftover_rules_and_an_edge_shadow_are_not_lines() -> None:
    # rules a quarter of the page wide survive ink_map's rule removal; a dark band down the
    # right edge is what a page edge or a shadow leaves after flat-fielding
    page = stacked()
    rgb = page.rgb.copy()
    for k in range(5):
        cv2.line(rgb, (700, 110 + k * 110), (1000, 110 + k * 110), (90, 90, 90), 2)
    rgb[:, 1150:1170] = 60
    ink = ink_map(rgb)
    assert_lines_cover(find_lines(ink), ink, page.truth)


def bleed(page: Page, back: Page, strength: float) -> np.ndarray:
    """``page`` with ``back`` showing through the paper: mirrored, ``strength`` as dark."""
    shine = (255 - back.rgb[:, ::-1].astype(np.float32)) * strength
    return np.minimum(page.rgb, 255 - shine.astype(np.uint8))


def test_faint_bleed_through_in_a_soft_photo_is_not_a_line() -> None:
    # the other side's lines fall between this side's; the blur (a photo slightly out of
    # focus) lowers Otsu's threshold, so the bleed-through is binarized: only its faintness
    # (peak ink under LineParams.faint x the text's) tells it apart
    page = stacked()
    back = stacked(y0=205, font=SIMPLEX, scale=1.2, thickness=2)
    ink = ink_map(cv2.GaussianBlur(bleed(page, back, 0.45), (0, 0), 2.0))
    assert_lines_cover(find_lines(ink), ink, page.truth)


def test_text_among_dense_faint_bleed_through_is_kept() -> None:
    # bleed-through just below the binarization threshold, all around the words: the
    # words must not be taken for marks on a textured table
    page = stacked()
    ink = ink_map(bleed(page, stacked(y0=205), 0.35))
    assert_lines_cover(find_lines(ink), ink, page.truth)


def grain(height: int, width: int, amplitude: float, seed: int = 0) -> np.ndarray:
    """uint8 (height, width, 3): a wood-like table, noise smeared along a slanted line."""
    noise = np.random.default_rng(seed).normal(0, 1, (height, width)).astype(np.float32)
    kernel = np.zeros((31, 31), np.float32)
    cv2.line(kernel, (8, 0), (22, 30), 1.0, 1)
    streaks = cv2.filter2D(noise, -1, kernel / kernel.sum())
    gray = np.clip(150 + amplitude * streaks / streaks.std(), 0, 255).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


def test_grain_of_the_table_around_the_page_makes_no_lines() -> None:
    page = stacked()
    rgb = grain(1300, 1600, amplitude=20)
    rgb[200:1100, 200:1400] = page.rgb  # a photo of the sheet lying on the table
    ink = ink_map(rgb)
    truth = [(x + 200, y + 200, w, h) for x, y, w, h in page.truth]
    assert_lines_cover(find_lines(ink), ink, truth)


def test_a_title_top_left_is_read_before_a_block_bottom_right() -> None:
    texts = ["Hello World", "this is it", "the first test", "page"]
    origins = [(120, 200), (430, 650), (430, 720), (430, 790)]
    page = render(texts, origins, scale=1.5, thickness=2, size=(1100, 850))
    ink = ink_map(page.rgb)
    assert_lines_cover(find_lines(ink), ink, page.truth)


def test_side_by_side_columns_are_read_left_column_first() -> None:
    texts = ["left one", "left two", "left three", "right one", "right two", "right three"]
    origins = [(60, 150), (60, 240), (60, 330), (800, 150), (800, 240), (800, 330)]
    page = render(texts, origins, font=SIMPLEX, scale=1.2, thickness=2, size=(600, 1400))
    ink = ink_map(page.rgb)
    assert_lines_cover(find_lines(ink), ink, page.truth)


def test_i_dots_and_full_stops_belong_to_their_line() -> None:
    page = render(["mini quiz in it."], [(60, 200)], font=SIMPLEX, scale=2.0, size=(400, 900))
    ink = ink_map(page.rgb)
    lines = find_lines(ink)
    assert_lines_cover(lines, ink, page.truth)
    assert len(lines[0].words) == 4  # the full stop opens no word of its own


def test_boxes_map_back_to_the_original_image() -> None:
    ink = InkMap(ink=np.zeros((100, 200), np.float32), scale=0.25, original_shape=(400, 801))
    assert to_original((10, 20, 30, 40), ink) == (40, 80, 120, 160)
    assert to_original((195, 90, 10, 10), ink) == (780, 360, 21, 40)  # clipped to 801 wide
    third = InkMap(ink=np.zeros((100, 200), np.float32), scale=0.3, original_shape=(333, 667))
    assert to_original((10, 20, 1, 1), third) == (33, 66, 4, 4)  # rounded outwards
    line = TextLine(box=(10, 20, 30, 40), angle_deg=0.0, words=[(10, 20, 5, 5)])
    assert line.original_words(ink) == [(40, 80, 20, 20)]


def test_invalid_params_are_refused() -> None:
    with pytest.raises(ValueError, match="smear"):
        LineParams(smear=0)
    with pytest.raises(ValueError, match="floor"):
        LineParams(floor=1.5)


# --------------------------------------------------------------------------- composed pages


@pytest.fixture(scope="module")
def pool() -> LetterPool:
    folder = require_data("handwriting", "chars74k-hnd.npz").parent
    return load_letter_pool(folder, split=1, sources=("chars74k-hnd",))


@pytest.mark.parametrize("difficulty", ["clean", "realistic"])
def test_composed_pages_have_one_line_per_text_line(pool: LetterPool, difficulty: str) -> None:
    for seed in range(4):  # realistic: rotation, shadows, and ruled paper on about half
        sample = compose(pool, np.random.default_rng([11, seed]), difficulty, "mixed")
        lines = find_lines(ink_map(sample.image))
        assert len(lines) == sample.text.count("\n") + 1, (seed, sample.text)


def test_development_photos_and_scans_give_their_lines() -> None:
    # the real images of the shared development set (labels.tsv: the text of each)
    folder = require_data("handwriting-pages")
    expected = {"page-hello-world.png": 4, "notes-for-testing.png": 2,
                "line-doorman.png": 1, "iam-line-fake-friend.png": 1}
    for name, n_lines in expected.items():
        ink = ink_map(decode_image((folder / name).read_bytes()))
        assert len(find_lines(ink)) == n_lines, name


# --------------------------------------------------------------------------- line_crop


@pytest.mark.parametrize("height", [32, 48])
def test_line_crop_is_float_in_unit_range_at_the_requested_height(height: int) -> None:
    page = stacked(angle=3.0)
    ink = ink_map(page.rgb)
    for line in find_lines(ink):
        crop = line_crop(ink, line, height=height)
        assert crop.dtype == np.float32 and crop.ndim == 2
        assert crop.shape[0] == height and crop.shape[1] >= height
        assert crop.min() >= 0.0 and crop.max() <= 1.0 and crop.max() > 0.5
        ratio = line.box[2] / line.box[3]  # a level line keeps roughly its aspect ratio
        assert crop.shape[1] / height == pytest.approx(ratio, rel=0.35)


@pytest.mark.parametrize("width", [4, 7, 12])
def test_stroke_width_measures_drawn_strokes(width: int) -> None:
    ink = np.zeros((300, 400), np.float32)
    for y in (60, 150, 240):
        cv2.line(ink, (40, y), (360, y), 1.0, width)
    cv2.circle(ink, (200, 150), 80, 1.0, width)
    assert stroke_width(ink) == pytest.approx(width, rel=0.25)


def test_stroke_width_of_hairlines_and_blank_ink() -> None:
    ink = np.zeros((100, 100), np.float32)
    assert stroke_width(ink) == 0.0
    cv2.line(ink, (10, 50), (90, 50), 1.0, 1)
    assert stroke_width(ink) == pytest.approx(2.0)
    assert stroke_width(ink * 0.3) == 0.0  # below the ink threshold


def test_line_crop_thickens_a_thin_pen_on_a_big_photo_only() -> None:
    # one word in capitals 200 px tall written with a 2-px pen: at 32 px it would be a
    # faint hairline; the same word in a 24-px pen is left as it is
    for thickness, thickened in ((2, True), (24, False)):
        page = render(["HOUSE"], [(60, 400)], font=SIMPLEX, scale=9.0, thickness=thickness,
                      size=(600, 1600))
        ink = ink_map(page.rgb)
        (line,) = find_lines(ink)
        plain = line_crop(ink, line, min_stroke=0.0)
        normal = line_crop(ink, line)
        assert normal.shape == plain.shape
        if thickened:
            assert np.percentile(plain, 99) < 0.5  # a hairline
            assert np.percentile(normal, 99) > 0.75
            assert (normal > 0.35).sum() > 2 * (plain > 0.35).sum()
        else:
            np.testing.assert_array_equal(normal, plain)


def test_line_crop_of_a_short_word_is_padded_to_a_square() -> None:
    page = render(["I"], [(100, 200)], font=SIMPLEX, scale=2.0, size=(400, 400))
    ink = ink_map(page.rgb)
    (line,) = find_lines(ink)
    crop = line_crop(ink, line, height=32)
    assert crop.shape == (32, 32)


def test_line_crop_is_level() -> None:
    page = render(["minimum minimum"], [(150, 300)], font=SIMPLEX, scale=2.0, size=(600, 900),
                  angle=6.0)
    ink = ink_map(page.rgb)
    (line,) = find_lines(ink)
    assert line.angle_deg == pytest.approx(6.0, abs=0.5)
    assert abs(tilt(line_crop(ink, line, height=64))) < 0.05
    # the same crop without the rotation: the word climbs by a third of the height
    assert tilt(line_crop(ink, replace(line, angle_deg=0.0), height=64)) < -0.2


def test_line_crop_leaves_out_the_neighbouring_lines_ink() -> None:
    # close lines: the padded crop of one reaches into the other's letters
    texts, origins = PANGRAM[:2], [(40, 150), (40, 216)]
    both = render(texts, origins, size=(400, 900))
    first = render(texts[:1], origins[:1], size=(400, 900))
    second = render(texts[1:], origins[1:], size=(400, 900))
    ink = ink_map(both.rgb)
    lines = find_lines(ink)
    assert len(lines) == 2
    for k, line in enumerate(lines):
        own = line_crop(ink_map((first, second)[k].rgb), line)
        other = ink_map((second, first)[k].rgb)
        intruding = line_crop(other, replace(line, owners=None)).sum()  # unmasked
        masked = line_crop(other, line).sum()
        assert intruding > 0.1 * own.sum()  # the neighbour does reach into the crop ...
        assert masked < 0.01 * own.sum()  # ... and is masked out
        assert np.abs(line_crop(ink, line) - own).mean() < 0.01  # the rest is untouched


def test_line_crop_refuses_bad_arguments() -> None:
    page = render(["word"], [(100, 200)], font=SIMPLEX, size=(400, 400))
    ink = ink_map(page.rgb)
    (line,) = find_lines(ink)
    with pytest.raises(ValueError, match="height"):
        line_crop(ink, line, height=0)
    small = InkMap(ink=np.zeros((50, 50), np.float32), scale=1.0, original_shape=(50, 50))
    with pytest.raises(ValueError, match="ink map"):
        line_crop(small, line)
    with pytest.raises(ValueError, match="outside"):
        line_crop(ink, replace(line, box=(500, 500, 10, 10), owners=None))


def test_crops_of_a_rotated_ruled_page_are_level() -> None:
    page = stacked(angle=-3.0, rules=RULES)
    ink = ink_map(page.rgb)
    lines = find_lines(ink)
    assert len(lines) == len(PANGRAM)
    tilts = [tilt(line_crop(ink, line)) for line in lines]
    assert max(abs(t) for t in tilts) < 0.05, tilts
