"""Uploaded photo or scan → ink map (ink bright on black, float32 in [0, 1]) → binary mask.

The seed tutorial's preprocessing (grayscale, threshold, erode/dilate), made robust to real
photos: illumination is flattened (a large morphological closing estimates the paper, and
the image is divided by it, so shadows do not become ink), the ink polarity is detected
(dark pen on paper or chalk on a board both work), paper texture is blurred away, ruled and
margin lines are removed, and the contrast is normalised.

Conventions match the shared letter datasets (``../shared/data/SOURCES-handwriting.md``):
ink is bright, background is 0.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError
from scipy.ndimage import median_filter

from models.common.errors import InvalidInputError, PredictorError

log = logging.getLogger(__name__)

FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF")  # JPEG opens MPO (many phone photos) too
SEND_INSTEAD = "send a complete PNG, JPEG, WebP, BMP or TIFF file"
INK_FLOOR = 0.2  # ink below this is never a stroke (binarize, crop_letter)


class ImageTooLargeError(InvalidInputError):
    """The image has more pixels than allowed; the service answers 413."""

    code = "image_too_large"


@dataclass(frozen=True)
class InkMap:
    """Ink of one image.

    Attributes:
        ink: float32 (h, w) in [0, 1]; ink bright, paper ~0.
        scale: ink-map pixels per original pixel (<= 1; < 1 when the image was downscaled).
        original_shape: (H, W) of the decoded image, to map boxes back.
    """

    ink: np.ndarray
    scale: float
    original_shape: tuple[int, int]


# --------------------------------------------------------------------------- decoding


def decode_image(data: bytes, max_pixels: int = 40_000_000) -> np.ndarray:
    """Decode uploaded image bytes to RGB uint8 (H, W, 3), upright per its EXIF orientation.

    Alpha is composited onto white; palette, 1-bit, 16-bit, CMYK, LA... become RGB.
    ``ImageFile.LOAD_TRUNCATED_IMAGES`` is left False, so truncated data raise.

    Raises:
        ImageTooLargeError: width × height > ``max_pixels`` (checked before decoding pixels),
            or Pillow's decompression-bomb guard fired.
        InvalidInputError: empty, unreadable, unsupported, corrupt or truncated data.
    """
    if not data:
        raise InvalidInputError(f"the image is empty (0 bytes); {SEND_INSTEAD}")
    try:
        # Pillow's own bomb guard runs inside open(): an error above 2 × MAX_IMAGE_PIXELS, a
        # warning above it. The warning is caught below if a filter turns it into an error;
        # we do not install that filter here (warnings.catch_warnings is not thread-safe,
        # and _check_size already refuses anything above max_pixels before decoding).
        img = Image.open(io.BytesIO(data), formats=FORMATS)
        _check_size(img.size, max_pixels)
        img.load()
        upright = ImageOps.exif_transpose(img)
        rgb = _to_rgb(upright if upright is not None else img)
    except PredictorError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageTooLargeError(
            f"the image is too large to decode safely ({e}); send an image of at most "
            f"{max_pixels} pixels (width × height)",
            details={"max_pixels": max_pixels},
        ) from e
    except UnidentifiedImageError as e:
        raise InvalidInputError(f"the data is not a readable image; {SEND_INSTEAD}") from e
    except MemoryError:
        raise
    except Exception as e:  # decoders raise OSError, SyntaxError, ValueError, struct.error...
        raise InvalidInputError(
            f"the image is corrupt or truncated ({type(e).__name__}: {e}); {SEND_INSTEAD}"
        ) from e
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        log.warning("PIL LOAD_TRUNCATED_IMAGES is True: truncated uploads decode silently")
    return rgb


def _check_size(size: tuple[int, int], max_pixels: int) -> None:
    """Raise ImageTooLargeError when ``width * height > max_pixels``."""
    width, height = size
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"the image is {width}×{height} = {width * height} pixels, more than the limit of "
            f"{max_pixels}; downscale it so that width × height <= {max_pixels} and send it again",
            details={"width": width, "height": height, "max_pixels": max_pixels},
        )


def _to_rgb(img: Image.Image) -> np.ndarray:
    """Any Pillow mode → RGB uint8 (H, W, 3); transparency composited onto white."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        gray = np.asarray(img).astype(np.float64)  # (H, W)
        if img.mode.startswith("I;16"):
            top = 65535.0
        elif img.mode == "F":
            top = 1.0 if gray.size and gray.max() <= 1.0 else 255.0
        else:
            top = 65535.0 if gray.size and gray.max() > 255 else 255.0
        gray8 = np.clip(np.rint(gray * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.repeat(gray8[:, :, None], 3, axis=2)
    if img.mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return np.array(img.convert("RGB"), dtype=np.uint8)


# --------------------------------------------------------------------------- ink map


def ink_map(
    rgb: np.ndarray,
    max_side: int = 1600,
    *,
    blur_sigma: float = 1.0,
    background_frac: float = 1 / 25,
    rule_min_len: float = 0.3,
    rule_max_thickness: int = 8,
    contrast_percentile: float = 99.5,
    min_contrast: float = 0.25,
) -> InkMap:
    """Photo or scan → ink map, ink bright on black.

    Args:
        rgb: uint8 (H, W, 3) RGB or (H, W) gray.
        max_side: the longer side is downscaled (cv2.INTER_AREA) to at most this many pixels.
        blur_sigma: Gaussian sigma (px) against paper texture and sensor noise.
        background_frac: side of the closing that estimates the paper, as a fraction of the
            longer side (strokes thinner than this are removed from the estimate).
        rule_min_len: ruled lines are at least this fraction of the width long (vertical
            margin lines: see ``remove_rules``).
        rule_max_thickness: ... and at most this many pixels thick (at ink > 0.1, i.e.
            including the blur's fringe).
        contrast_percentile: percentile of ink (over pixels with ink > 0.1) mapped to 1.
        min_contrast: that percentile is floored here, so an empty page is not stretched
            until its noise looks like ink.

    Raises:
        ValueError: ``rgb`` is not uint8 (H, W, 3) or (H, W).
    """
    gray = _gray(rgb)  # float32 (H, W), 0..255
    h0, w0 = gray.shape
    scale = min(1.0, max_side / max(h0, w0))
    if scale < 1.0:
        size = (max(1, round(w0 * scale)), max(1, round(h0 * scale)))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    if blur_sigma > 0:
        gray = cv2.GaussianBlur(gray, (0, 0), blur_sigma)
    if light_ink(gray):
        gray = 255.0 - gray
    paper = paper_level(gray, background_frac)
    ink = np.clip(1.0 - gray / np.maximum(paper, 16.0), 0.0, 1.0)  # flat-field: shadows → 0
    ink = remove_rules(ink, min_len=rule_min_len, max_thickness=rule_max_thickness)
    strong = ink[ink > 0.1]
    top = float(np.percentile(strong, contrast_percentile)) if strong.size else 1.0
    ink = np.clip(ink / max(top, min_contrast), 0.0, 1.0).astype(np.float32)
    return InkMap(ink=ink, scale=scale, original_shape=(h0, w0))


def _gray(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) or gray (H, W) → float32 gray (H, W) in 0..255."""
    if rgb.dtype != np.uint8 or rgb.ndim not in (2, 3) or (rgb.ndim == 3 and rgb.shape[2] != 3):
        raise ValueError(f"expected uint8 (H, W, 3) or (H, W), got {rgb.dtype} {rgb.shape}")
    if rgb.ndim == 3:
        rgb = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return rgb.astype(np.float32)


def light_ink(gray: np.ndarray, side: int = 512, min_spread: float = 60.0,
              min_paper_evidence: float = 0.1) -> bool:
    """True when the ink is lighter than its background (chalk on a board, inverted scans).

    The image minus a large median blur (which does not depend on polarity and follows the
    illumination) leaves the strokes: dark strokes give a long negative tail, light strokes a
    positive one. Ties (an empty page) count as dark ink.

    A photo can hold two surfaces: a sheet of paper on a dark, patterned desk or cloth, or
    a dark board on a bright wall. When the blurred background spans at least
    ``min_spread`` grey levels (5th to 95th percentile), the bright surface's inside (its
    mask eroded by the blur's size, so the step at its border is not read as strokes) is
    checked first: dark strokes there, more than light ones and at least
    ``min_paper_evidence`` of the whole image's stroke energy, mean writing on paper, and
    the dark surface's texture is not counted. A board on a wall leaves no strokes inside
    the wall, so the whole-image comparison decides as before.
    """
    small = _shrink(gray, side)
    small8 = np.clip(small, 0, 255).astype(np.uint8)
    k = _odd(max(3, max(small8.shape) // 8))
    background = cv2.medianBlur(small8, k).astype(np.float32)
    residual = small - background
    noise = 1.4826 * float(np.median(np.abs(residual - np.median(residual))))
    t = 3.0 * noise + 4.0
    dark = np.clip(-residual - t, 0, None)
    light = np.clip(residual - t, 0, None)
    dark_sum, light_sum = float(dark.sum()), float(light.sum())
    lo, hi = np.percentile(background, [5, 95])
    if light_sum > dark_sum and hi - lo >= min_spread:
        paper = (background > (lo + hi) / 2).astype(np.uint8)
        inside = cv2.erode(paper, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k))) > 0
        dark_paper, light_paper = float(dark[inside].sum()), float(light[inside].sum())
        if dark_paper > light_paper and dark_paper >= min_paper_evidence * light_sum:
            return False
    return light_sum > dark_sum


def paper_level(gray: np.ndarray, frac: float) -> np.ndarray:
    """Paper brightness under dark ink: float32 (h, w), a closing with a square of side
    ``frac`` × the longer side (at least 15 px) that erases strokes but keeps shadows.
    """
    k = _odd(max(15, round(max(gray.shape) * frac)))
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (k, k))
    return cv2.morphologyEx(gray, cv2.MORPH_CLOSE, kernel, borderType=cv2.BORDER_REPLICATE)


def remove_rules(
    ink: np.ndarray,
    *,
    min_len: float = 0.3,
    min_len_vertical: float = 0.6,
    min_aspect: float = 15.0,
    max_thickness: int = 8,
    threshold: float = 0.1,
    tolerance: int = 5,
    core: float = 0.25,
    keep_margin: int = 3,
) -> np.ndarray:
    """Erase long thin horizontal (ruled) and vertical (margin) lines from an ink map.

    Lines are found on ``ink > threshold``: thickened by ``tolerance`` px across the line
    (so lines tilted by a few degrees stay connected), opened with a segment 1/20 of the
    image long, and kept when a connected piece spans ``min_len`` of the image width
    (``min_len_vertical`` of its height for vertical lines: letter stems in a small image
    can span a third of it), is at most ``max_thickness`` px thick (median over its
    columns) and at least ``min_aspect`` times longer than thick.
    Along each line its centre is traced (per column, smoothed, so tilt and page curl are
    followed) and a band of its own thickness + 2 px each side is erased, except where the
    core (ink > ``core``) runs across the line for more than the line's core thickness +
    ``keep_margin`` px: letter strokes crossing the line, or lying on it, stay.

    Returns:
        float32 (h, w), a copy of ``ink`` without the lines.
    """
    out = ink.copy()
    for axis in (0, 1):  # 0: horizontal lines, 1: vertical lines (on the transpose)
        view = out if axis == 0 else out.T  # a view: writing to it writes to out
        b = (view > threshold).astype(np.uint8)
        cores = (view > core).astype(np.uint8)
        length = min_len if axis == 0 else min_len_vertical
        for box, component in _long_lines(b, length, max_thickness, tolerance, min_aspect):
            _erase_line(view, cores, box, component, keep_margin)
    return out


def _long_lines(
    b: np.ndarray, min_len: float, max_thickness: int, tolerance: int, min_aspect: float = 0.0
) -> list[tuple[tuple[int, int, int, int], np.ndarray]]:
    """Long thin horizontal lines of binary ``b`` (h, w): (x, y, w, h) and bool (h, w)
    mask of each, within its box (thickened by ``tolerance``).
    """
    w = b.shape[1]
    band = cv2.dilate(b, np.ones((tolerance, 1), np.uint8))
    seg = cv2.morphologyEx(band, cv2.MORPH_OPEN, np.ones((1, max(15, w // 20)), np.uint8))
    _, labels, stats, _ = cv2.connectedComponentsWithStats(seg, connectivity=8)
    found = []
    for k in np.flatnonzero(stats[:, cv2.CC_STAT_WIDTH] >= min_len * w):
        if k == 0:
            continue
        x, y, bw, bh = (int(v) for v in stats[k, :4])
        component = labels[y : y + bh, x : x + bw] == k
        columns = component.sum(axis=0)  # (bw,)
        thickness = float(np.median(columns[columns > 0])) - (tolerance - 1)
        if thickness <= max_thickness and bw >= min_aspect * max(thickness, 1.0):
            found.append(((x, y, bw, bh), component))
    return found


def _erase_line(
    view: np.ndarray,
    cores: np.ndarray,
    box: tuple[int, int, int, int],
    component: np.ndarray,
    keep_margin: int,
) -> None:
    """Zero, in place, the band of one horizontal line of ``view`` (see remove_rules)."""
    x, y, bw, bh = box
    on_line = component & (cores[y : y + bh, x : x + bw] > 0)  # (bh, bw)
    count = on_line.sum(axis=0)  # core pixels per column
    if not count.any():
        return
    thickness = float(np.median(count[count > 0]))
    rows = np.arange(bh, dtype=np.float64)[:, None]
    centre = (on_line * rows).sum(axis=0) / np.maximum(count, 1)  # (bw,)
    clean = (count > 0) & (count <= thickness + 2)  # columns without a letter attached
    if clean.sum() < 2:
        return
    cols = np.arange(bw)
    centre = np.interp(cols, cols[clean], centre[clean])
    centre = median_filter(centre, size=min(31, bw), mode="nearest")
    band = np.abs(rows - centre[None, :]) <= thickness / 2 + 2  # (bh, bw)
    run = int(thickness) + keep_margin + 1  # longer core runs across are letter strokes
    top, bottom = max(0, y - run), min(view.shape[0], y + bh + run)
    thick = cv2.morphologyEx(
        cores[top:bottom, x : x + bw], cv2.MORPH_OPEN, np.ones((run, 1), np.uint8)
    )[y - top : y - top + bh]
    erase = band & (thick == 0)
    view[y : y + bh, x : x + bw][erase] = 0.0
    log.debug("erased %d px of a %d px long line", int(erase.sum()), bw)


def _shrink(gray: np.ndarray, side: int) -> np.ndarray:
    """Downscale (INTER_AREA) so that the longer side is at most ``side``."""
    h, w = gray.shape
    f = side / max(h, w)
    if f >= 1.0:
        return gray
    size = (max(1, round(w * f)), max(1, round(h * f)))
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA)


def _odd(k: int) -> int:
    return k if k % 2 else k + 1


# --------------------------------------------------------------------------- binarization


def binarize(
    ink: np.ndarray, *, floor: float = INK_FLOOR, open_size: int = 2, close_size: int = 3
) -> np.ndarray:
    """Ink map float32 (h, w) in [0, 1] → mask uint8 (h, w) in {0, 255}.

    Otsu's threshold, but never below ``floor`` (so an empty page yields no ink); then an
    opening (``open_size`` square; drops 1-px specks) and a closing (``close_size``
    ellipse; reconnects strokes broken by a pixel or two). 0 disables either step.
    """
    ink8 = np.rint(np.clip(ink, 0.0, 1.0) * 255.0).astype(np.uint8)
    otsu, _ = cv2.threshold(ink8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    t = max(float(otsu), floor * 255.0)
    mask: np.ndarray = np.where(ink8 > t, 255, 0).astype(np.uint8)
    if open_size > 1:  # erode then dilate with opposite anchors: an even kernel must not shift
        square = np.ones((open_size, open_size), np.uint8)
        mask = cv2.erode(mask, square, anchor=(0, 0), borderType=cv2.BORDER_REPLICATE)
        mask = cv2.dilate(
            mask,
            square,
            anchor=(open_size - 1, open_size - 1),
            borderType=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
    if close_size > 1:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (close_size, close_size))
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
    return mask
