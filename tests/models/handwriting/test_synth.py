"""Metrics (CER, word accuracy) and the synthetic multi-letter evaluation images."""

from __future__ import annotations

import json
import string
from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.handwriting.metrics import character_error_rate, edit_distance, word_accuracy
from models.handwriting.synth import (
    WORDS,
    LetterPool,
    SynthImage,
    compose,
    load_letter_pool,
    make_eval_set,
    random_text,
)
from tests.conftest import require_data

# ------------------------------------------------------------------------------ metrics


def test_cer_of_identical_texts_is_zero() -> None:
    assert character_error_rate(["HELLO WORLD", "A\nB"], ["HELLO WORLD", "A\nB"]) == 0.0


def test_cer_one_substitution_in_ten_chars_is_a_tenth() -> None:
    assert character_error_rate(["ABCDEFGHIX"], ["ABCDEFGHIJ"]) == pytest.approx(0.1)


def test_cer_counts_insertions_and_deletions() -> None:
    assert character_error_rate(["ABXC"], ["ABC"]) == pytest.approx(1 / 3)
    assert character_error_rate(["AC"], ["ABC"]) == pytest.approx(1 / 3)
    assert character_error_rate([""], ["ABC"]) == pytest.approx(1.0)
    assert character_error_rate(["ABCABC"], ["ABC"]) == pytest.approx(1.0)


def test_cer_counts_spaces_and_newlines() -> None:
    assert character_error_rate(["HELLOWORLD"], ["HELLO WORLD"]) == pytest.approx(1 / 11)
    assert character_error_rate(["AB CD"], ["AB\nCD"]) == pytest.approx(1 / 5)


def test_cer_is_pooled_over_the_corpus_not_averaged_per_text() -> None:
    # 1 error over 10 reference characters; a mean of per-text rates would give 0.5
    assert character_error_rate(["X", "BCDEFGHIJ"], ["A", "BCDEFGHIJ"]) == pytest.approx(0.1)


def test_cer_rejects_mismatched_lengths_and_empty_references() -> None:
    with pytest.raises(ValueError, match="hypotheses"):
        character_error_rate(["A"], ["A", "B"])
    with pytest.raises(ValueError, match="no characters"):
        character_error_rate(["A", ""], ["", ""])


def test_edit_distance_examples() -> None:
    assert edit_distance("KITTEN", "SITTING") == 3
    assert edit_distance("", "AB") == 2
    assert edit_distance("A B", "A\nB") == 1


def test_word_accuracy_compares_words_by_position_per_line() -> None:
    assert word_accuracy(["THE CAT"], ["THE CAT"]) == 1.0
    assert word_accuracy(["THE CAR"], ["THE CAT"]) == pytest.approx(0.5)
    assert word_accuracy(["THE"], ["THE CAT"]) == pytest.approx(0.5)          # missing word
    assert word_accuracy(["THECAT SAT"], ["THE CAT SAT"]) == 0.0              # merge shifts
    assert word_accuracy(["A B\nC"], ["A B\nC D"]) == pytest.approx(3 / 4)
    assert word_accuracy(["A B"], ["A B\nC D"]) == pytest.approx(2 / 4)       # missing line
    assert word_accuracy(["A  B  EXTRA\n\nMORE"], ["A B"]) == 1.0              # extras ignored
    assert word_accuracy(["GO", "UP NOW"], ["GO", "UP TOO"]) == pytest.approx(2 / 3)


def test_word_accuracy_rejects_mismatched_lengths_and_no_words() -> None:
    with pytest.raises(ValueError, match="hypotheses"):
        word_accuracy(["A", "B"], ["A"])
    with pytest.raises(ValueError, match="no words"):
        word_accuracy(["A"], [" \n "])


@given(st.lists(st.text(alphabet="AB \n", min_size=1, max_size=12), min_size=1, max_size=4),
       st.lists(st.text(alphabet="AB \n", max_size=12), min_size=4, max_size=4))
def test_metrics_bounds(refs: list[str], hyps: list[str]) -> None:
    hyps = hyps[:len(refs)]
    assert character_error_rate(refs, refs) == 0.0
    cer = character_error_rate(hyps, refs)
    assert cer >= 0.0
    assert cer <= max(len(h) for h in [*hyps, *refs]) * len(refs) / sum(map(len, refs))
    if any(r.split() for r in refs):
        assert word_accuracy(refs, refs) == 1.0
        assert 0.0 <= word_accuracy(hyps, refs) <= 1.0


# ----------------------------------------------------------------- a fake letter pool


def _shape(k: int, lower: bool = False) -> np.ndarray:
    """A 64x64 uint8 letter stand-in: one connected thick shape, different per ``k``."""
    img = np.zeros((64, 64), np.uint8)
    half_w = 10 + (k * 7) % 18  # varied aspect ratios
    if lower:
        cv2.circle(img, (32, 32), 20, 255, -1)
    elif k % 3 == 0:
        cv2.rectangle(img, (32 - half_w, 6), (32 + half_w, 57), 255, 6)
    elif k % 3 == 1:
        cv2.ellipse(img, (32, 32), (half_w, 26), 0, 0, 360, 255, 6)
    else:
        pts = np.array([[32, 6], [32 - half_w, 57], [32 + half_w, 57]], np.int32)
        cv2.fillPoly(img, [pts], 255)
    return cv2.GaussianBlur(img, (3, 3), 0)


def _write_fake_archive(path: Path) -> dict[str, np.ndarray]:
    """An archive in the shared format: A-Z, a-z and 0-9, two images each, one per split.
    Train images (split 0) carry a marker pixel so a test can tell them apart."""
    labels = np.array([c for c in [*range(65, 91), *range(97, 123), *range(48, 58)]
                       for _ in range(2)], np.int32)
    split = np.tile(np.array([0, 1], np.uint8), len(labels) // 2)
    images = np.stack([_shape(int(c) % 26, lower=c >= 97) for c in labels])
    images[split == 0, 0, 0] = 7
    arrays = {"images": images, "labels": labels, "writer": np.full(len(labels), -1, np.int32),
              "split": split}
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return arrays


@pytest.fixture(scope="module")
def fake_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("handwriting")
    _write_fake_archive(folder / "fake.npz")
    return folder


@pytest.fixture(scope="module")
def pool(fake_dir: Path) -> LetterPool:
    return load_letter_pool(fake_dir, sources=("fake",))


def _separations(boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    """(N, N) empty pixels between boxes along the freer axis (diagonal: +inf)."""
    b = np.array(boxes, float)
    x0, y0, x1, y1 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    sep = np.maximum.reduce([x0[None] - x1[:, None], x0[:, None] - x1[None],
                             y0[None] - y1[:, None], y0[:, None] - y1[None]])
    np.fill_diagonal(sep, np.inf)
    return sep


def _line_boxes(sample: SynthImage) -> list[list[tuple[int, int, int, int]]]:
    """The boxes grouped by the text's lines."""
    out, i = [], 0
    for line in sample.text.split("\n"):
        n = sum(c != " " for c in line)
        out.append(sample.boxes[i:i + n])
        i += n
    return out


# ------------------------------------------------------------------------------ pool


def test_fake_pool_keeps_only_test_split_letters_keyed_upper(pool: LetterPool) -> None:
    assert sorted(pool) == list(string.ascii_uppercase)
    for letters in pool.values():
        assert len(letters) == 2  # one upper-case, one lower-case test image; digits skipped
        assert sorted(p.upper for p in letters) == [False, True]
        assert all(p.image[0, 0] != 7 and p.index % 2 == 1 for p in letters)


def test_pool_rejects_missing_and_non_64px_archives(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nothere\.npz"):
        load_letter_pool(tmp_path, sources=("nothere",))
    np.savez(tmp_path / "tiny.npz", images=np.zeros((2, 16, 8), np.uint8),
             labels=np.array([97, 98], np.int32), split=np.array([1, 1], np.uint8))
    with pytest.raises(ValueError, match="16, 8"):
        load_letter_pool(tmp_path, sources=("tiny",))


# --------------------------------------------------------------------------- compose


def test_same_seed_gives_the_same_image_and_another_seed_does_not(pool: LetterPool) -> None:
    a = compose(pool, np.random.default_rng(5), "realistic")
    b = compose(pool, np.random.default_rng(5), "realistic")
    c = compose(pool, np.random.default_rng(6), "realistic")
    assert a.jpeg == b.jpeg and a.text == b.text and a.boxes == b.boxes
    assert np.array_equal(a.image, b.image)
    assert a.jpeg != c.jpeg


@pytest.mark.parametrize("difficulty", ["clean", "realistic"])
def test_image_is_rgb_uint8_decoded_from_its_jpeg(pool: LetterPool, difficulty: str) -> None:
    sample = compose(pool, np.random.default_rng(0), difficulty)
    assert sample.image.dtype == np.uint8
    assert sample.image.ndim == 3 and sample.image.shape[2] == 3
    assert sample.jpeg[:2] == b"\xff\xd8"
    decoded = cv2.imdecode(np.frombuffer(sample.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None
    assert np.array_equal(decoded[..., ::-1], sample.image)


def test_random_text_is_one_to_three_lines_of_one_to_four_listed_words() -> None:
    assert 150 <= len(WORDS) == len(set(WORDS))
    assert all(2 <= len(w) <= 8 and w.isalpha() and w.isupper() for w in WORDS)
    assert set("".join(WORDS)) == set(string.ascii_uppercase)
    for seed in range(30):
        lines = random_text(np.random.default_rng(seed)).split("\n")
        assert 1 <= len(lines) <= 3
        assert all(1 <= len(line.split(" ")) <= 4 for line in lines)
        assert all(w in WORDS for line in lines for w in line.split(" "))


@pytest.mark.parametrize("difficulty", ["clean", "realistic"])
def test_boxes_one_per_letter_inside_the_image_and_apart(pool: LetterPool,
                                                         difficulty: str) -> None:
    for seed in range(8):
        sample = compose(pool, np.random.default_rng(seed), difficulty)
        assert len(sample.boxes) == sum(c not in " \n" for c in sample.text)
        h, w = sample.image.shape[:2]
        for x, y, bw, bh in sample.boxes:
            assert x >= 0 and y >= 0 and bw > 0 and bh > 0 and x + bw <= w and y + bh <= h
        assert _separations(sample.boxes).min() >= 3, seed


@pytest.mark.parametrize("difficulty", ["clean", "realistic"])
def test_letters_are_separate_connected_components(pool: LetterPool, difficulty: str) -> None:
    # The fake letters are one blob each, so touching letters would merge components.
    sample = compose(pool, np.random.default_rng(3), difficulty, text="BOX OF\nTHE QUIZ")
    gray = cv2.cvtColor(sample.image, cv2.COLOR_RGB2GRAY)
    background = cv2.GaussianBlur(gray, (0, 0), 25).astype(np.int16)
    ink = (background - gray.astype(np.int16) > 40).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    big = stats[1:n][stats[1:n, cv2.CC_STAT_AREA] > 30]
    assert len(big) == len(sample.boxes) == 12
    # every component lies inside exactly one letter box
    for left, top, width, height, _ in big:
        inside = [bx - 2 <= left and by - 2 <= top and left + width <= bx + bw + 2
                  and top + height <= by + bh + 2 for bx, by, bw, bh in sample.boxes]
        assert sum(inside) == 1


def test_boxes_run_left_to_right_and_lines_top_to_bottom(pool: LetterPool) -> None:
    for seed in range(6):
        clean = compose(pool, np.random.default_rng(seed), "clean",
                        text="ONE TWO\nSIX\nTEN AND MORE")
        lines = _line_boxes(clean)
        for line in lines:
            assert all(a[0] + a[2] < b[0] for a, b in pairwise(line))
        for upper, lower in pairwise(lines):
            assert max(y + h for _, y, _, h in upper) < min(y for _, y, _, _ in lower)
        tilted = compose(pool, np.random.default_rng(seed), "realistic",
                         text="ONE TWO\nSIX\nTEN AND MORE")
        centres = [np.mean([y + h / 2 for _, y, _, h in line]) for line in _line_boxes(tilted)]
        assert centres == sorted(centres)


@pytest.mark.parametrize("difficulty", ["clean", "realistic"])
def test_ink_is_darker_than_the_paper(pool: LetterPool, difficulty: str) -> None:
    for seed in range(4):
        sample = compose(pool, np.random.default_rng(seed), difficulty)
        gray = cv2.cvtColor(sample.image, cv2.COLOR_RGB2GRAY).astype(np.float64)
        border = np.concatenate([gray[:4].ravel(), gray[-4:].ravel(),
                                 gray[:, :4].ravel(), gray[:, -4:].ravel()])
        in_boxes = [gray[y:y + h, x:x + w] for x, y, w, h in sample.boxes]
        if difficulty == "clean":
            assert border.mean() > np.mean([b.mean() for b in in_boxes]) + 20
            assert border.mean() > 150  # light paper
        for box in in_boxes:  # locally: the darkest ink is well below the box's paper
            assert np.percentile(box, 5) < 0.75 * np.percentile(box, 95)


def test_clean_and_realistic_share_text_but_differ_in_the_photo(pool: LetterPool) -> None:
    paper_std: dict[str, list[float]] = {"clean": [], "realistic": []}
    for seed in range(3):
        clean = compose(pool, np.random.default_rng(seed), "clean")
        real = compose(pool, np.random.default_rng(seed), "realistic")
        assert clean.text == real.text
        assert clean.image.shape != real.image.shape or not np.array_equal(clean.image,
                                                                           real.image)
        for name, sample in (("clean", clean), ("realistic", real)):
            gray = cv2.cvtColor(sample.image, cv2.COLOR_RGB2GRAY).astype(np.float64)
            paper = np.ones(gray.shape, bool)
            for x, y, w, h in sample.boxes:
                paper[max(0, y - 4):y + h + 4, max(0, x - 4):x + w + 4] = False
            paper_std[name].append(float(gray[paper].std()))
    assert np.mean(paper_std["realistic"]) > 2 * np.mean(paper_std["clean"])


def test_given_text_is_rendered_and_normalised(pool: LetterPool) -> None:
    sample = compose(pool, np.random.default_rng(0), "clean", text="  hi  there\n\nyou ")
    assert sample.text == "HI THERE\nYOU"
    assert len(sample.boxes) == 10


def test_mixed_case_reports_the_case_drawn(pool: LetterPool) -> None:
    texts = [compose(pool, np.random.default_rng(s), "clean", case="mixed",
                     text="GOOD DAY TO YOU ALL").text for s in range(6)]
    assert all(t.upper() == "GOOD DAY TO YOU ALL" for t in texts)
    assert any(any(c.islower() for c in t) for t in texts)
    upper = compose(pool, np.random.default_rng(0), "clean", case="upper",
                    text="GOOD DAY TO YOU ALL")
    assert upper.text == "GOOD DAY TO YOU ALL"


def test_bad_arguments_are_rejected(pool: LetterPool) -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="letters A-Z"):
        compose(pool, rng, text="ROOM 101")
    with pytest.raises(ValueError, match="no letters"):
        compose(pool, rng, text=" \n ")
    with pytest.raises(ValueError, match="difficulty"):
        compose(pool, rng, "blurry")
    with pytest.raises(ValueError, match="case"):
        compose(pool, rng, case="lower")
    no_upper_q = {k: [p for p in v if k != "Q" or not p.upper] for k, v in pool.items()}
    with pytest.raises(ValueError, match="'Q'"):
        compose(no_upper_q, rng, text="QUIZ")


# ---------------------------------------------------------------------------- eval set


def test_make_eval_set_writes_images_labels_and_readme(fake_dir: Path, tmp_path: Path) -> None:
    out = make_eval_set(tmp_path / "a", 3, seed=11, difficulty="realistic", data_dir=fake_dir,
                        sources=("fake",))
    assert out == tmp_path / "a" / "realistic"
    records = [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines()]
    assert [r["file"] for r in records] == ["0000.jpg", "0001.jpg", "0002.jpg"]
    for r in records:
        image = cv2.imread(str(out / r["file"]))
        assert image is not None
        assert len(r["boxes"]) == sum(c not in " \n" for c in r["text"])
        assert all(len(b) == 4 for b in r["boxes"])
    readme = (out / "README.md").read_text()
    assert "seed=11" in readme and "test split only" in readme and "fake" in readme

    again = make_eval_set(tmp_path / "b", 2, seed=11, difficulty="realistic", data_dir=fake_dir,
                          sources=("fake",))
    for name in ("0000.jpg", "0001.jpg"):  # deterministic, and a prefix of a larger set
        assert (again / name).read_bytes() == (out / name).read_bytes()
    with pytest.raises(FileExistsError, match="overwrite"):
        make_eval_set(tmp_path / "a", 1, seed=0, difficulty="realistic", data_dir=fake_dir,
                      sources=("fake",))
    make_eval_set(tmp_path / "a", 1, seed=0, difficulty="realistic", data_dir=fake_dir,
                  sources=("fake",), overwrite=True)
    assert sorted(p.name for p in out.glob("*.jpg")) == ["0000.jpg"]


# --------------------------------------------------------------------------- real data


def test_real_pool_has_every_letter_from_the_test_split_only() -> None:
    folder = require_data("handwriting")
    pool = load_letter_pool(folder)
    assert sorted(pool) == list(string.ascii_uppercase)
    assert all(any(p.upper for p in pool[c]) for c in string.ascii_uppercase)
    by_source: dict[str, list[int]] = {}
    for letters in pool.values():
        for p in letters:
            assert p.image.shape == (64, 64) and p.image.dtype == np.uint8
            by_source.setdefault(p.source, []).append(p.index)
    for name, indices in by_source.items():
        with np.load(folder / f"{name}.npz", allow_pickle=False) as d:
            labels, split = d["labels"], d["split"]
        letters = ((labels >= 65) & (labels <= 90)) | ((labels >= 97) & (labels <= 122))
        assert len(indices) == int((letters & (split == 1)).sum()), name
        assert (split[indices] == 1).all(), name
    assert "kassel-ocr-letters" not in by_source
    sample = compose(pool, np.random.default_rng(0), "realistic")
    assert len(sample.boxes) == sum(c not in " \n" for c in sample.text)
