"""Decoding, ink map and letter segmentation on synthetic pages drawn with OpenCV."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image, ImageFile

from models.common.errors import InvalidInputError
from models.handwriting.preprocess import (
    ImageTooLargeError,
    binarize,
    decode_image,
    ink_map,
    light_ink,
)
from models.handwriting.segment import Box, crop_letter, crop_letters, segment

FONT = cv2.FONT_HERSHEY_SIMPLEX


# --------------------------------------------------------------------------- helpers


def page(height: int = 600, width: int = 900, value: int = 255) -> np.ndarray:
    return np.full((height, width, 3), value, np.uint8)


def draw(
    img: np.ndarray,
    chars: str,
    xs: list[int],
    y: int,
    scale: float = 3,
    thickness: int = 8,
    color: tuple[int, int, int] = (0, 0, 0),
) -> list[Box]:
    """Draw each char at its own x (baseline y); return each char's true ink box."""
    truth = []
    for ch, x in zip(chars, xs, strict=True):
        cv2.putText(img, ch, (x, y), FONT, scale, color, thickness, cv2.LINE_AA)
        alone = np.zeros(img.shape[:2], np.uint8)
        cv2.putText(alone, ch, (x, y), FONT, scale, 255, thickness, cv2.LINE_AA)
        ys, xs_ = np.nonzero(alone > 127)
        truth.append(Box(int(xs_.min()), int(ys.min()), int(np.ptp(xs_)) + 1, int(np.ptp(ys)) + 1))
    return truth


def iou(a: Box, b: Box) -> float:
    ix = max(0, min(a.x2, b.x2) - max(a.x, b.x))
    iy = max(0, min(a.y2, b.y2) - max(a.y, b.y))
    inter = ix * iy
    return inter / (a.area + b.area - inter)


def name_boxes(found: list[Box], truth: dict[str, Box]) -> list[str]:
    """The truth label of each found box (best IoU), '?' when none overlaps well."""
    names = []
    for box in found:
        best = max(truth, key=lambda k: iou(box, truth[k]))
        names.append(best if iou(box, truth[best]) > 0.8 else "?")
    return names


def structure(img: np.ndarray, truth: dict[str, Box]) -> list[list[str]]:
    """Lines → words as strings of the truth labels, e.g. [['AB', 'CD'], ['EF']]."""
    layout = segment(ink_map(img))
    return [["".join(name_boxes(word, truth)) for word in line] for line in layout.lines]


def hello(img: np.ndarray, x: int = 50, y: int = 200) -> dict[str, Box]:
    return dict(zip("HELO", draw(img, "HELO", [x, x + 75, x + 150, x + 225], y), strict=True))


def encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


# --------------------------------------------------------------------------- segmentation


def test_letters_on_a_white_page_are_found_with_their_true_boxes() -> None:
    img = page()
    truth = draw(img, "HELLO", [50, 125, 200, 275, 350], 200)
    found = segment(ink_map(img)).letters()
    assert len(found) == 5
    for got, want in zip(found, truth, strict=True):
        assert (
            max(
                abs(got.x - want.x),
                abs(got.y - want.y),
                abs(got.x2 - want.x2),
                abs(got.y2 - want.y2),
            )
            <= 2
        ), (got, want)


def test_reading_order_is_lines_then_words_then_letters() -> None:
    img = page()
    truth = dict(zip("EF", draw(img, "EF", [50, 125], 400), strict=True))  # drawn first
    truth |= dict(zip("ABCD", draw(img, "ABCD", [50, 125, 400, 475], 200), strict=True))
    assert structure(img, truth) == [["AB", "CD"], ["EF"]]


def test_a_slightly_tilted_line_stays_one_line_in_order() -> None:
    img = page(500, 1000)
    chars = "ABCDEFGH"
    xs = [40 + 110 * k for k in range(8)]
    truth = {}
    for k, (ch, x) in enumerate(zip(chars, xs, strict=True)):  # baseline drops 12 px a letter
        truth[ch] = draw(img, ch, [x], 150 + 12 * k)[0]
    layout = segment(ink_map(img))
    assert len(layout.lines) == 1
    assert "".join(name_boxes(layout.letters(), truth)) == chars


def test_widely_spaced_letters_split_only_at_the_much_wider_word_gaps() -> None:
    img = page(400, 1400)
    xs = [40, 150, 260, 560, 670, 780, 890]  # gaps ~60 px (0.8 letter height), then ~250 px
    truth = dict(zip("ABCDEFG", draw(img, "ABCDEFG", xs, 200), strict=True))
    assert structure(img, truth) == [["ABC", "DEFG"]]


def test_a_hand_drawn_dot_off_centre_and_well_above_the_stem_is_merged() -> None:
    img = page()
    truth = hello(img)
    cv2.line(img, (420, 140), (420, 200), (0, 0, 0), 8)  # stem of an i, 60 px
    cv2.circle(img, (428, 112), 5, (0, 0, 0), -1)  # dot 23 px above, 8 px to the right
    truth["i"] = Box(416, 107, 18, 97)
    found = segment(ink_map(img)).letters()
    assert name_boxes(found, truth) == ["H", "E", "L", "O", "i"]


def test_pieces_of_a_letter_broken_by_the_pen_are_one_letter() -> None:
    img = page()
    truth = hello(img)
    cv2.line(img, (420, 130), (470, 130), (0, 0, 0), 8)  # a T whose bar floats 8 px above
    cv2.line(img, (445, 142), (445, 200), (0, 0, 0), 8)
    cv2.line(img, (560, 128), (560, 160), (0, 0, 0), 8)  # an l with a 9 px gap
    cv2.line(img, (560, 173), (560, 200), (0, 0, 0), 8)
    truth |= {"T": Box(416, 126, 59, 79), "l": Box(556, 124, 9, 81)}
    assert structure(img, truth) == [["HELO", "T", "l"]]


def test_dots_of_i_and_j_are_merged_into_their_letters() -> None:
    img = page()
    truth = dict(zip("Hij", draw(img, "Hij", [50, 200, 300], 200), strict=True))
    found = segment(ink_map(img)).letters()
    assert name_boxes(found, truth) == ["H", "i", "j"]
    assert found[1].y <= truth["i"].y + 2  # the box reaches up to the dot


def test_white_ink_on_black_gives_the_same_boxes() -> None:
    img = page()
    hello(img)
    draw(img, "ij", [400, 470], 200)
    dark_on_light = segment(ink_map(img)).letters()
    light_on_dark = segment(ink_map(255 - img)).letters()
    assert len(dark_on_light) == 6
    assert light_on_dark == dark_on_light


def _cloth(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A dark cloth with light curvy flowers: light 'strokes' on a dark surface."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w), 30, np.uint8)
    for _ in range(150):
        pts = np.cumsum(rng.integers(-25, 26, (8, 2)), axis=0) + rng.integers(0, [w, h])
        cv2.polylines(img, [pts.astype(np.int32)], False, 200, 6)
    return img


def test_a_sheet_on_patterned_dark_cloth_is_dark_ink_on_paper() -> None:
    # the sheet covers the top 45 %; the cloth's light pattern outweighs the writing
    img = _cloth(900, 700)
    img[:400] = 235
    for k, y in enumerate((110, 210, 310)):
        cv2.putText(img, ["Hello guys", "welcome to", "my channel"][k], (40, y), FONT, 2.2,
                    40, 5)
    assert not light_ink(img.astype(np.float32))  # (the cloth alone outweighed the writing)
    ink = ink_map(np.repeat(img[:, :, None], 3, axis=2)).ink
    strokes = img[:400] < 100
    assert ink[:400][strokes].mean() > 0.5  # the writing is ink, the sheet is not
    assert ink[:400][~strokes].mean() < 0.05


def test_chalk_on_a_board_stays_light_ink_with_or_without_a_bright_wall() -> None:
    board = np.full((600, 800), 40, np.uint8)
    cv2.putText(board, "HELLO", (200, 320), FONT, 3, 220, 8)
    assert light_ink(board.astype(np.float32))
    for y0, y1, x0, x1 in ((100, 520, 120, 700), (30, 570, 30, 770), (100, 600, 0, 800)):
        img = np.full((600, 800), 235, np.uint8)
        img[y0:y1, x0:x1] = 40
        cv2.putText(img, "HELLO", (200, 400), FONT, 3, 220, 8)
        assert light_ink(img.astype(np.float32)), (y0, y1, x0, x1)


def test_large_photo_is_downscaled_and_boxes_map_back_to_original_pixels() -> None:
    img = page(4000, 6000)
    truth = draw(img, "WORD", [500, 1300, 2100, 2900], 1500, scale=20, thickness=50)
    ink = ink_map(img)
    assert ink.ink.shape == (1067, 1600)
    assert ink.scale == pytest.approx(1600 / 6000)
    found = segment(ink).boxes_in_original()
    assert len(found) == 4
    for got, want in zip(found, truth, strict=True):
        assert iou(got, want) > 0.95, (got, want)


def test_empty_white_page_has_no_letters() -> None:
    layout = segment(ink_map(page()))
    assert layout.letters() == []
    assert layout.lines == []
    assert crop_letters(layout).shape == (0, 64, 64)


def test_shadow_gradient_does_not_become_ink() -> None:
    shade = np.linspace(255, 90, 900, dtype=np.float32)[None, :, None] / 255  # left to right
    empty = (page().astype(np.float32) * shade).astype(np.uint8)
    ink = ink_map(empty)
    assert float(ink.ink.max()) < 0.2
    assert segment(ink).letters() == []
    written = page()
    truth = hello(written, x=100) | dict(zip("W", draw(written, "W", [650], 200), strict=True))
    shaded = (written.astype(np.float32) * shade).astype(np.uint8)
    assert structure(shaded, truth) == [["HELO", "W"]]


def test_ruled_notebook_lines_and_margin_are_not_letters() -> None:
    img = page()
    for y in range(60, 600, 80):  # dark rules, one tilted by ~1.3 degrees
        cv2.line(img, (0, y), (899, y), (110, 110, 140), 3)
    cv2.line(img, (0, 485), (899, 505), (110, 110, 140), 3)
    cv2.line(img, (30, 0), (30, 599), (60, 60, 200), 3)  # red margin
    truth = hello(img, x=120, y=130)  # letters cross the rule at y = 60 and sit near y = 140
    layout = segment(ink_map(img))
    assert "".join(name_boxes(layout.letters(), truth)) == "HELO"
    left = binarize(layout.ink.ink)
    for box in layout.letters():
        left[box.padded(3).slices] = 0
    assert left.max() == 0  # the rules are gone from the ink map, not just filtered out


def test_specks_are_dropped() -> None:
    img = page()
    truth = hello(img)
    rng = np.random.default_rng(0)
    for _ in range(400):  # pepper noise, 1x1 to 3x3 px
        y, x = int(rng.integers(0, 595)), int(rng.integers(0, 895))
        img[y : y + int(rng.integers(1, 4)), x : x + int(rng.integers(1, 4))] = 0
    cv2.circle(img, (345, 195), 5, (0, 0, 0), -1)  # a full stop after the word
    assert structure(img, truth) == [["HELO"]]


def test_ink_map_is_float_in_unit_range_with_bright_ink() -> None:
    img = page()
    hello(img)
    ink = ink_map(img)
    assert ink.ink.dtype == np.float32
    assert ink.scale == 1.0
    assert float(ink.ink.min()) >= 0.0 and float(ink.ink.max()) == pytest.approx(1.0)
    assert float(ink.ink[5, 5]) == 0.0  # paper


def test_binarize_finds_no_ink_in_faint_noise() -> None:
    rng = np.random.default_rng(0)
    noise = rng.uniform(0.0, 0.15, (200, 200)).astype(np.float32)
    assert binarize(noise).max() == 0
    noise[50:80, 50:60] = 0.9
    mask = binarize(noise)
    assert set(np.unique(mask)) == {0, 255}
    assert (mask[50:80, 50:60] == 255).all()


# --------------------------------------------------------------------------- crops


def test_crop_letter_is_centred_64x64_uint8_with_black_margin() -> None:
    img = page()
    hello(img)
    layout = segment(ink_map(img))
    crops = crop_letters(layout)
    assert crops.shape == (4, 64, 64) and crops.dtype == np.uint8
    for crop in crops:
        assert crop.max() >= 250
        border = np.concatenate(
            [crop[:2].ravel(), crop[-2:].ravel(), crop[:, :2].ravel(), crop[:, -2:].ravel()]
        )
        assert border.max() <= 8
        ys, xs = np.nonzero(crop > 64)
        assert abs((ys.min() + ys.max()) / 2 - 31.5) <= 1.5
        assert abs((xs.min() + xs.max()) / 2 - 31.5) <= 1.5
    # the letter fills the frame: its longer side spans ~64 / 1.15 px
    ys, xs = np.nonzero(crops[0] > 64)
    assert 50 <= max(np.ptp(ys), np.ptp(xs)) + 1 <= 58


def test_crop_leaves_out_a_neighbour_reaching_into_the_box() -> None:
    alone = page()
    cv2.line(alone, (100, 100), (100, 200), (0, 0, 0), 8)  # an L
    cv2.line(alone, (100, 200), (160, 200), (0, 0, 0), 8)
    img = alone.copy()
    cv2.line(img, (145, 100), (185, 185), (0, 0, 0), 8)  # a V whose left arm enters the L's box
    cv2.line(img, (185, 185), (225, 100), (0, 0, 0), 8)
    layout = segment(ink_map(img))
    assert len(layout.letters()) == 2
    masked = crop_letters(layout)[0]
    reference = crop_letters(segment(ink_map(alone)))[0]
    unmasked = crop_letter(layout.ink.ink, layout.letters()[0].padded(2))
    assert np.abs(masked.astype(int) - reference).max() <= 16
    assert np.abs(unmasked.astype(int) - reference).max() > 100


def test_crop_letter_of_an_empty_box_is_black() -> None:
    crop = crop_letter(np.zeros((50, 50), np.float32), Box(5, 5, 20, 20))
    assert crop.shape == (64, 64) and crop.max() == 0


@given(
    st.integers(0, 500),
    st.integers(0, 500),
    st.integers(1, 300),
    st.integers(1, 300),
    st.floats(0.05, 1.0),
)
def test_box_scaled_back_covers_the_original(x: int, y: int, w: int, h: int, f: float) -> None:
    box = Box(x, y, w, h)
    back = box.scaled(f).scaled(1 / f)
    assert back.x <= box.x and back.y <= box.y and back.x2 >= box.x2 and back.y2 >= box.y2


# --------------------------------------------------------------------------- decoding


def test_decode_png_and_jpeg_return_rgb_uint8() -> None:
    noise = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    rgb = cv2.GaussianBlur(noise, (5, 5), 0)
    png = decode_image(encode(Image.fromarray(rgb), "PNG"))
    assert png.dtype == np.uint8 and png.shape == (30, 40, 3)
    assert (png == rgb).all()
    jpeg = decode_image(encode(Image.fromarray(rgb), "JPEG", quality=95, subsampling=0))
    assert jpeg.shape == (30, 40, 3)
    assert np.abs(jpeg.astype(int) - rgb).mean() < 4


@pytest.mark.parametrize("fmt", ["WEBP", "BMP", "TIFF"])
def test_decode_accepts_webp_bmp_and_tiff(fmt: str) -> None:
    img = Image.new("RGB", (8, 6), (10, 20, 30))
    data = encode(img, fmt, lossless=True) if fmt == "WEBP" else encode(img, fmt)
    rgb = decode_image(data)
    assert rgb.shape == (6, 8, 3) and rgb[0, 0].tolist() == [10, 20, 30]


def test_decode_refuses_other_formats_saying_what_to_send() -> None:
    with pytest.raises(InvalidInputError, match="PNG, JPEG, WebP, BMP or TIFF"):
        decode_image(encode(Image.new("RGB", (8, 8)), "GIF"))


def test_decode_honours_exif_orientation() -> None:
    img = Image.new("RGB", (40, 20), (255, 255, 255))  # 40 wide, 20 high
    img.paste((255, 0, 0), (0, 0, 8, 8))  # red in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # display = stored rotated 90 degrees clockwise
    rgb = decode_image(encode(img, "JPEG", quality=95, exif=exif.tobytes()))
    assert rgb.shape == (40, 20, 3)
    assert rgb[3, 16, 0] > 200 and rgb[3, 16, 1] < 60  # now in the top-right corner
    assert rgb[36, 3].min() > 200


def test_decode_composites_transparency_on_white() -> None:
    rgba = np.zeros((10, 10, 4), np.uint8)  # transparent black
    rgba[:5, :, 3] = 255  # top half opaque black
    rgba[5:, :5, 3] = 128  # half-transparent black
    rgb = decode_image(encode(Image.fromarray(rgba), "PNG"))
    assert (rgb[:5] == 0).all()
    assert (rgb[5:, 5:] == 255).all()
    assert np.abs(rgb[5:, :5].astype(int) - 127).max() <= 1


def test_decode_scales_16_bit_grayscale_and_palette_images() -> None:
    gray16 = np.array([[0, 32768, 65535]], np.uint16)
    rgb = decode_image(encode(Image.fromarray(gray16), "PNG"))
    assert rgb[0, :, 0].tolist() == [0, 128, 255] and rgb.shape == (1, 3, 3)
    pal = Image.new("P", (4, 4), 0)
    pal.putpalette([0, 0, 0, 10, 20, 30])
    pal.paste(1, (0, 0, 2, 4))
    rgb = decode_image(encode(pal, "PNG", transparency=0))
    assert rgb[0, 0].tolist() == [10, 20, 30] and rgb[0, 3].tolist() == [255, 255, 255]
    cmyk = decode_image(encode(Image.new("CMYK", (3, 3), (0, 0, 0, 0)), "JPEG"))
    assert cmyk.shape == (3, 3, 3) and cmyk.min() > 240


def test_truncated_images_raise_invalid_input() -> None:
    noisy = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    for fmt in ("PNG", "JPEG"):
        data = encode(Image.fromarray(noisy), fmt)
        with pytest.raises(InvalidInputError, match="corrupt or truncated"):
            decode_image(data[: len(data) * 2 // 3])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_random_and_empty_bytes_raise_invalid_input() -> None:
    with pytest.raises(InvalidInputError, match="PNG, JPEG"):
        decode_image(np.random.default_rng(0).bytes(1000))
    with pytest.raises(InvalidInputError, match="empty"):
        decode_image(b"")


def test_too_many_pixels_raise_image_too_large() -> None:
    data = encode(Image.new("RGB", (100, 100)), "PNG")
    with pytest.raises(ImageTooLargeError) as info:
        decode_image(data, max_pixels=5000)
    assert info.value.code == "image_too_large"
    assert isinstance(info.value, InvalidInputError)
    assert info.value.details == {"width": 100, "height": 100, "max_pixels": 5000}
    assert decode_image(data, max_pixels=10_000).shape == (100, 100, 3)


def test_decompression_bomb_header_raises_image_too_large() -> None:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)  # 10^10 gray pixels
    data = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 100))
        + chunk(b"IEND", b"")
    )
    with pytest.raises(ImageTooLargeError):
        decode_image(data)
