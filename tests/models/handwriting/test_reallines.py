"""Real line/word images as CRNN training samples: manifest reading, evaluation-image
exclusion, held-out split, and their path through the line synthesizer."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import pytest

from models.handwriting.linesynth import ALPHABET, LineSynthesizer
from models.handwriting.reallines import RealLineBank, excluded_keys, normalize_text


def _write_line(path: Path, text: str, seed: int) -> None:
    """A dark-on-light text image (Hershey font; stands in for a scanned line)."""
    img = np.full((60, 40 + 22 * len(text), 3), 235, np.uint8)
    cv2.putText(img, text, (10, 42), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (20, 20, 20), 2)
    img[...] = np.clip(img.astype(int) + np.random.default_rng(seed).integers(-5, 5, img.shape),
                       0, 255).astype(np.uint8)
    cv2.imwrite(str(path), img)


def _folder(tmp_path: Path, texts: list[str]) -> Path:
    root = tmp_path / "real"
    (root / "img").mkdir(parents=True)
    rows = ["path\ttext\tsource"]
    for i, text in enumerate(texts):
        _write_line(root / "img" / f"{i}.png", text, i)
        rows.append(f"img/{i}.png\t{text}\ttest")
    (root / "manifest.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


def test_normalize_text_keeps_upper_case_letters_and_digits() -> None:
    assert normalize_text("The fake friend, 1st!") == "THEFAKEFRIEND1ST"


def test_bank_drops_evaluation_images_by_md5_and_by_text(tmp_path: Path) -> None:
    texts = [f"line number {i} here" for i in range(6)]
    root = _folder(tmp_path, texts)
    dev = tmp_path / "dev"
    dev.mkdir()
    md5 = hashlib.md5((root / "img" / "1.png").read_bytes()).hexdigest()
    (dev / "labels.tsv").write_text(
        "filename\ttext\tstyle\tsource\tmd5\n"
        f"a.png\tsomething else entirely\tmixed\tx\t{md5}\n"
        "b.png\tLINE NUMBER 3, here\tmixed\tx\t0\n"
        "c.png\there\tmixed\tx\t0\n", encoding="utf-8")
    md5s, keys = excluded_keys([dev / "labels.tsv", tmp_path / "missing.tsv"])
    assert md5 in md5s and "LINENUMBER3HERE" in keys and "HERE" not in keys  # short: no key
    bank = RealLineBank.load(root, ALPHABET, exclude=[dev / "labels.tsv"], split="all")
    assert bank.texts == [t for i, t in enumerate(texts) if i not in (1, 3)]


def test_train_and_val_splits_are_disjoint_and_cover_the_manifest(tmp_path: Path) -> None:
    texts = [f"w{i}" for i in range(45)]
    root = _folder(tmp_path, texts)
    train = RealLineBank.load(root, ALPHABET, split="train", val_every=20)
    val = RealLineBank.load(root, ALPHABET, split="val", val_every=20)
    assert val.texts == ["w19", "w39"]
    assert sorted(train.texts + val.texts) == sorted(texts)


def test_bank_refuses_a_folder_without_manifest_or_usable_rows(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"manifest\.tsv"):
        RealLineBank.load(tmp_path, ALPHABET)
    (tmp_path / "manifest.tsv").write_text("path\ttext\nnone.png\tabc\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no usable sample"):
        RealLineBank.load(tmp_path, ALPHABET, split="all")
    with pytest.raises(ValueError, match="split"):
        RealLineBank.load(tmp_path, ALPHABET, split="test")


def test_ink_is_bright_on_black_and_capped_in_height(tmp_path: Path) -> None:
    root = _folder(tmp_path, ["Hello"])
    bank = RealLineBank.load(root, ALPHABET, split="all")
    bank.max_height = 40
    ink = bank.ink(0)
    assert ink.dtype == np.float32 and ink.shape[0] == 40
    assert float(ink.min()) >= 0.0 and float(ink.max()) <= 1.0
    assert float(ink.mean()) < 0.3  # mostly paper (dark), ink bright


def test_synthesizer_with_real_share_one_returns_real_texts(tmp_path: Path) -> None:
    texts = ["alpha beta", "Gamma 42", "delta!"]
    bank = RealLineBank.load(_folder(tmp_path, texts), ALPHABET, split="all")
    synth = LineSynthesizer(["unused words"], None, _NoFonts(), real=bank, real_share=1.0)
    rng = np.random.default_rng(0)
    for _ in range(6):
        ink, text = synth.sample(rng)
        assert text in texts
        assert ink.shape[0] == 32 and ink.shape[1] >= 32 and ink.dtype == np.float32
        assert float(ink.max()) > 0.5  # the line's ink survived photograph + preprocessing
    with pytest.raises(ValueError, match="real_share"):
        LineSynthesizer(["x"], None, _NoFonts(), real=bank, real_share=1.5)


class _NoFonts:
    """A font bank with one path, never drawn from when real_share is 1."""

    paths: ClassVar[list[Path]] = [Path("unused.ttf")]
