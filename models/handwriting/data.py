"""Letter datasets: the shared ``handwriting/*.npz`` archives and EMNIST in its IDX/gzip form.

Every loader returns a :class:`LetterSet` in one convention (the shared data's and EMNIST's):
uint8 images, ink bright (up to 255) on black, upright, one letter centred per image.
Labels are Unicode code points; a :class:`LabelSet` maps them to class indices
(case-insensitive A-Z by default, optionally with digits).
"""

from __future__ import annotations

import gzip
import logging
import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

#: The 64x64 archives in ``handwriting/`` (Kassel's 16x8 letters are loaded only on request).
SETS_64 = (
    "chars74k-hnd", "omniglot-latin", "mohneesh-uppercase-forms", "xxmrphdxx-uppercase-drawn",
    "brianzx-photos36", "photos62-tasnim", "kishieel-uppercase-canvas", "comnist-latin-2017",
)
#: Sets whose test split holds writers never seen in training (SOURCES-handwriting.md).
WRITER_DISJOINT = frozenset({"chars74k-hnd", "omniglot-latin", "kassel-ocr-letters"})


@dataclass(frozen=True)
class LabelSet:
    """The classes a model predicts, as characters; letters are case-insensitive.

    Attributes:
        name: ``"letters"`` (A-Z) or ``"alnum"`` (0-9 then A-Z).
        classes: one character per class index.
    """

    name: str
    classes: tuple[str, ...]

    @classmethod
    def named(cls, name: str) -> LabelSet:
        """Build ``letters`` or ``alnum``.

        Raises:
            ValueError: an unknown name.
        """
        if name == "letters":
            return cls(name, tuple(string.ascii_uppercase))
        if name == "alnum":
            return cls(name, tuple(string.digits + string.ascii_uppercase))
        raise ValueError(f"unknown label set {name!r}; use 'letters' or 'alnum'")

    def targets(self, codepoints: np.ndarray) -> np.ndarray:
        """Class index per code point, case folded to upper; -1 where not in the set.

        Args:
            codepoints: int array (N,) of Unicode code points.

        Returns:
            int64 array (N,).
        """
        lookup = {ord(c): i for i, c in enumerate(self.classes)}
        upper = np.where((codepoints >= 97) & (codepoints <= 122), codepoints - 32, codepoints)
        return np.array([lookup.get(int(c), -1) for c in upper], dtype=np.int64)


@dataclass
class LetterSet:
    """Images with labels and where each came from.

    Attributes:
        images: uint8 (N, S, S), ink bright on black.
        codepoints: int32 (N,) Unicode code points (case kept).
        source: (N,) str, the archive each image came from.
        writer: int32 (N,), -1 where unknown.
    """

    images: np.ndarray
    codepoints: np.ndarray
    source: np.ndarray
    writer: np.ndarray

    def __len__(self) -> int:
        return len(self.codepoints)

    def select(self, keep: np.ndarray) -> LetterSet:
        """The subset where the boolean mask ``keep`` (N,) is true."""
        return LetterSet(self.images[keep], self.codepoints[keep], self.source[keep],
                         self.writer[keep])

    @staticmethod
    def concat(parts: list[LetterSet]) -> LetterSet:
        """Concatenate sets of the same image size.

        Raises:
            ValueError: no parts, or images of different sizes.
        """
        if not parts:
            raise ValueError("nothing to concatenate")
        return LetterSet(np.concatenate([p.images for p in parts]),
                         np.concatenate([p.codepoints for p in parts]),
                         np.concatenate([p.source for p in parts]),
                         np.concatenate([p.writer for p in parts]))


def resize_letters(images: np.ndarray, size: int) -> np.ndarray:
    """Resize uint8 letter images (N, H, W) to (N, size, size) with Pillow LANCZOS,
    as ``SOURCES-handwriting.md`` prescribes for EMNIST-like sizes; non-square images
    (Kassel's 16x8) are first centred on a black square.
    """
    out = np.empty((len(images), size, size), dtype=np.uint8)
    for i, img in enumerate(images):
        h, w = img.shape
        if h != w:
            side = max(h, w)
            square = np.zeros((side, side), dtype=np.uint8)
            square[(side - h) // 2:(side - h) // 2 + h, (side - w) // 2:(side - w) // 2 + w] = img
            img = square
        if img.shape[0] != size:
            img = np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.LANCZOS))
        out[i] = img
    return out


def load_npz_set(path: Path, split: int | None = None, size: int = 64) -> LetterSet:
    """Load one shared archive (``images``, ``labels``, ``writer``, ``split``).

    Args:
        path: the ``.npz`` file (loaded with ``allow_pickle=False``).
        split: 0 = train, 1 = test, None = both.
        size: output side in pixels; images of another size are resized (LANCZOS).

    Raises:
        FileNotFoundError: the archive does not exist.
        KeyError: an expected array is missing.
    """
    with np.load(path, allow_pickle=False) as d:
        keep = np.ones(len(d["labels"]), dtype=bool) if split is None else d["split"] == split
        images, labels, writer = d["images"][keep], d["labels"][keep], d["writer"][keep]
    if images.shape[1:] != (size, size):
        images = resize_letters(images, size)
    name = path.name.removesuffix(".npz")
    return LetterSet(images, labels.astype(np.int32), np.full(len(labels), name),
                     writer.astype(np.int32))


def load_sets(root: Path, names: tuple[str, ...] | list[str], split: int | None,
              label_set: LabelSet, size: int = 64) -> LetterSet:
    """Load and concatenate archives ``root/<name>.npz``, keeping only classes of ``label_set``.

    Raises:
        FileNotFoundError: an archive is missing (the message names the data folder).
    """
    parts = []
    for name in names:
        path = root / f"{name}.npz"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; point --data-dir at the shared "
                                    "handwriting folder (MODELZOO_DATA_DIR/handwriting)")
        part = load_npz_set(path, split, size)
        parts.append(part.select(label_set.targets(part.codepoints) >= 0))
    return LetterSet.concat(parts)


# ---------------------------------------------------------------- EMNIST (IDX, optionally gzip)

IDX_DTYPES: dict[int, str] = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4",
                              0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (LeCun's MNIST format), gzipped or not, into a numpy array.

    Raises:
        ValueError: bad magic number, unknown type code, or a size that does not match.
    """
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(IDX_DTYPES[raw[2]])
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - offset != expected:
        raise ValueError(f"{path}: header says {dims} ({expected} bytes of data), "
                         f"file has {len(raw) - offset}")
    array = np.frombuffer(raw, dtype=dtype, offset=offset).reshape(dims)
    return array.astype(dtype.newbyteorder("="))


def read_emnist_mapping(path: Path) -> dict[int, int]:
    """EMNIST ``*-mapping.txt`` → {label: code point}. Lines are ``label ascii`` or, for the
    letters split, ``label upper lower`` (the upper-case code point is used).
    """
    mapping: dict[int, int] = {}
    for line in path.read_text(encoding="ascii").splitlines():
        fields = line.split()
        if fields:
            mapping[int(fields[0])] = int(fields[1])
    return mapping


def load_emnist(images_path: Path, labels_path: Path, mapping_path: Path,
                size: int = 64) -> LetterSet:
    """Load an EMNIST split from its official IDX files (Cohen et al. 2017).

    EMNIST stores each 28x28 image transposed (column-major from the NIST conversion);
    as the seed tutorial does, each image is transposed back so letters are upright.

    Args:
        images_path: e.g. ``emnist-letters-train-images-idx3-ubyte.gz``.
        labels_path: the matching ``...-labels-idx1-ubyte.gz``.
        mapping_path: the split's ``emnist-<split>-mapping.txt``.
        size: output side (LANCZOS resize from 28).

    Raises:
        ValueError: malformed IDX, image/label counts differ, or a label not in the mapping.
    """
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"EMNIST images {images.shape} and labels {labels.shape} do not match")
    mapping = read_emnist_mapping(mapping_path)
    unknown = set(np.unique(labels).tolist()) - set(mapping)
    if unknown:
        raise ValueError(f"labels {sorted(unknown)[:5]} are not in {mapping_path.name}")
    upright = np.ascontiguousarray(images.transpose(0, 2, 1))
    codepoints = np.array([mapping[int(label)] for label in labels], dtype=np.int32)
    return LetterSet(resize_letters(upright, size), codepoints,
                     np.full(len(labels), "emnist"), np.full(len(labels), -1, dtype=np.int32))
