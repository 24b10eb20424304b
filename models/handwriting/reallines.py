"""Real handwritten line and word images with transcriptions, as CRNN training samples.

A folder with ``manifest.tsv`` (header ``path<TAB>text[<TAB>source]``; ``path`` relative to
the folder) lists the images. :class:`RealLineBank` reads them as the service reads an upload
(:func:`models.handwriting.preprocess.ink_map`), so :class:`models.handwriting.linesynth.
LineSynthesizer` can put a real line through the same geometry, "photograph" and crop steps
as a composed one: the recognizer then sees real letter shapes, joins and spacing, on the
paper and camera variety of the composed lines.

Evaluation images must never be trained on: :meth:`RealLineBank.load` drops every sample
whose md5 or normalized text matches a row of the ``labels.tsv`` files it is given (the
development pages), and logs how many it dropped.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from models.handwriting.preprocess import ink_map

log = logging.getLogger(__name__)

MANIFEST = "manifest.tsv"


def normalize_text(text: str) -> str:
    """Upper-case letters and digits only (the key texts are compared by)."""
    return re.sub(r"[^A-Z0-9]", "", text.upper())


def excluded_keys(labels: list[Path]) -> tuple[set[str], set[str]]:
    """md5s and normalized texts of the images listed in ``labels.tsv`` files (missing files
    are skipped). Texts shorter than 8 letters/digits are not used as keys (a common word is
    not evidence of the same image)."""
    md5s: set[str] = set()
    texts: set[str] = set()
    for path in labels:
        if not path.is_file():
            continue
        with path.open(encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                if row.get("md5"):
                    md5s.add(row["md5"].strip().lower())
                image = path.parent / row.get("filename", "")
                if image.is_file():
                    md5s.add(hashlib.md5(image.read_bytes()).hexdigest())
                key = normalize_text(row.get("text", ""))
                if len(key) >= 8:
                    texts.add(key)
    return md5s, texts


@dataclass
class RealLineBank:
    """Real (image path, transcription) pairs; images are decoded lazily and cached as
    float32 ink maps (at most ``max_height`` px tall) after first use.

    Args:
        paths: image files.
        texts: their transcriptions, in the recognizer's alphabet.
        max_height: ink maps are downscaled (cv2.INTER_AREA) to at most this many rows.
    """

    paths: list[Path]
    texts: list[str]
    max_height: int = 96
    _cache: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, root: Path, alphabet: str, exclude: list[Path] | None = None,
             split: str = "train", val_every: int = 20) -> RealLineBank:
        """Samples of ``root/manifest.tsv``, minus the development images in ``exclude``.

        Args:
            root: the folder holding ``manifest.tsv`` and the images.
            alphabet: characters kept in texts (others are dropped; a text left empty drops
                its sample).
            exclude: ``labels.tsv`` files of evaluation images (matched by md5 and text).
            split: ``"train"`` (every sample but each ``val_every``-th), ``"val"`` (those),
                or ``"all"``.
            val_every: the held-out share is 1 / ``val_every``, chosen by row order.

        Raises:
            FileNotFoundError: no ``manifest.tsv`` under ``root``.
            ValueError: unknown ``split``, or no usable sample.
        """
        manifest = root / MANIFEST
        if not manifest.is_file():
            raise FileNotFoundError(f"{manifest} not found: a real-lines folder needs a "
                                    "manifest.tsv with columns path, text")
        if split not in ("train", "val", "all"):
            raise ValueError(f"split must be train, val or all, got {split!r}")
        md5s, ex_texts = excluded_keys(exclude or [])
        keep = set(alphabet)
        paths, texts, dropped = [], [], 0
        with manifest.open(encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
        for i, row in enumerate(rows):
            if split == "train" and i % val_every == val_every - 1:
                continue
            if split == "val" and i % val_every != val_every - 1:
                continue
            text = " ".join("".join(c for c in row["text"] if c in keep).split())
            path = root / row["path"]
            if not text or not path.is_file():
                continue
            if normalize_text(text) in ex_texts or (
                    md5s and hashlib.md5(path.read_bytes()).hexdigest() in md5s):
                dropped += 1
                continue
            paths.append(path)
            texts.append(text)
        if not paths:
            raise ValueError(f"{manifest}: no usable sample for split {split!r}")
        log.info("real lines %s (%s): %d samples, %d dropped as evaluation images",
                 root, split, len(paths), dropped)
        return cls(paths, texts)

    def __len__(self) -> int:
        return len(self.paths)

    def ink(self, i: int) -> np.ndarray:
        """Ink map of sample ``i``: float32 (h, w) in [0, 1], ink bright, h <= max_height.

        Raises:
            ValueError: the image cannot be decoded.
        """
        if i not in self._cache:
            gray = cv2.imread(str(self.paths[i]), cv2.IMREAD_GRAYSCALE)
            if gray is None:
                raise ValueError(f"cannot decode {self.paths[i]}")
            ink = ink_map(gray, max_side=4096).ink
            if ink.shape[0] > self.max_height:
                w = max(1, round(ink.shape[1] * self.max_height / ink.shape[0]))
                ink = cv2.resize(ink, (w, self.max_height), interpolation=cv2.INTER_AREA)
            self._cache[i] = ink.astype(np.float32)
        return self._cache[i]

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        """A random sample: (float32 (h, w) ink alpha in [0, 1], text)."""
        i = int(rng.integers(len(self.paths)))
        return self.ink(i), self.texts[i]
