"""Letter loaders: label sets, the shared npz archives, EMNIST IDX files (tiny ones we write)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from models.handwriting.augment import AugmentConfig, augment_batch, prepare_batch
from models.handwriting.data import (
    SETS_64,
    LabelSet,
    load_emnist,
    load_npz_set,
    load_sets,
    read_idx,
)
from models.handwriting.model import LetterCNN, SeedCNN, build_model
from tests.conftest import require_data


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += b"".join(struct.pack(">I", d) for d in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


def test_letters_label_set_folds_case_and_drops_digits() -> None:
    labels = LabelSet.named("letters")
    out = labels.targets(np.array([ord("A"), ord("a"), ord("z"), ord("7"), ord("Z")]))
    assert out.tolist() == [0, 0, 25, -1, 25]


def test_alnum_label_set_keeps_digits_first() -> None:
    labels = LabelSet.named("alnum")
    assert labels.targets(np.array([ord("0"), ord("9"), ord("b")])).tolist() == [0, 9, 11]


def test_unknown_label_set_is_refused() -> None:
    with pytest.raises(ValueError, match="letters"):
        LabelSet.named("greek")


@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_round_trips_shape_and_values(tmp_path: Path, compress: bool) -> None:
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "x.idx", array, compress)
    assert np.array_equal(read_idx(tmp_path / "x.idx"), array)


def test_read_idx_rejects_a_truncated_file(tmp_path: Path) -> None:
    write_idx(tmp_path / "x.idx", np.zeros((4, 5, 5), dtype=np.uint8), compress=False)
    (tmp_path / "x.idx").write_bytes((tmp_path / "x.idx").read_bytes()[:-7])
    with pytest.raises(ValueError, match="header says"):
        read_idx(tmp_path / "x.idx")


def test_read_idx_rejects_other_files(tmp_path: Path) -> None:
    (tmp_path / "x.idx").write_bytes(b"<html>not found</html>")
    with pytest.raises(ValueError, match="magic"):
        read_idx(tmp_path / "x.idx")


def test_emnist_loader_transposes_images_upright_and_maps_letters(tmp_path: Path) -> None:
    # An upright "L": a vertical bar on the left and a foot at the bottom.
    upright = np.zeros((28, 28), dtype=np.uint8)
    upright[4:24, 6:9] = 255
    upright[21:24, 6:20] = 255
    stored = np.stack([upright.T, upright.T])  # EMNIST stores images transposed
    write_idx(tmp_path / "images.gz", stored, compress=True)
    write_idx(tmp_path / "labels.gz", np.array([12, 1], dtype=np.uint8), compress=True)
    (tmp_path / "mapping.txt").write_text("1 65 97\r\n12 76 108\r\n", encoding="ascii")
    data = load_emnist(tmp_path / "images.gz", tmp_path / "labels.gz", tmp_path / "mapping.txt",
                       size=28)
    assert data.codepoints.tolist() == [ord("L"), ord("A")]
    assert np.array_equal(data.images[0], upright)
    assert data.source.tolist() == ["emnist", "emnist"]


def test_emnist_loader_rejects_labels_outside_the_mapping(tmp_path: Path) -> None:
    write_idx(tmp_path / "images", np.zeros((1, 28, 28), dtype=np.uint8), compress=False)
    write_idx(tmp_path / "labels", np.array([30], dtype=np.uint8), compress=False)
    (tmp_path / "mapping.txt").write_text("1 65 97\n", encoding="ascii")
    with pytest.raises(ValueError, match="not in mapping"):
        load_emnist(tmp_path / "images", tmp_path / "labels", tmp_path / "mapping.txt")


def test_npz_loader_selects_the_split_and_resizes(tmp_path: Path) -> None:
    images = np.zeros((4, 16, 8), dtype=np.uint8)
    images[:, 4:12, 3:5] = 255
    np.savez(tmp_path / "tiny.npz", images=images, labels=np.array([97, 98, 99, 100]),
             writer=np.array([1, 1, 2, 2]), split=np.array([0, 1, 0, 1], dtype=np.uint8))
    test = load_npz_set(tmp_path / "tiny.npz", split=1, size=32)
    assert test.images.shape == (2, 32, 32)
    assert test.codepoints.tolist() == [98, 100]
    assert test.images[:, 16, 16].min() > 128      # the bar stays centred
    assert test.images[:, :, :4].max() == 0        # padding to a square is black


def test_real_sets_have_every_letter_in_train_and_test() -> None:
    root = require_data("handwriting")
    labels = LabelSet.named("letters")
    for split in (0, 1):
        data = load_sets(root, SETS_64, split, labels)
        counts = np.bincount(labels.targets(data.codepoints), minlength=26)
        assert counts.min() > 0, f"split {split} lacks a letter"
        assert data.images.shape[1:] == (64, 64)


def test_chars74k_test_writers_never_train() -> None:
    path = require_data("handwriting", "chars74k-hnd.npz")
    train, test = load_npz_set(path, split=0), load_npz_set(path, split=1)
    assert not set(train.writer.tolist()) & set(test.writer.tolist())


def test_augmentation_is_reproducible_and_stays_in_range() -> None:
    x = torch.zeros(8, 1, 64, 64)
    x[:, :, 16:48, 28:36] = 1.0
    a = augment_batch(x, 32, AugmentConfig(), torch.Generator().manual_seed(3))
    b = augment_batch(x, 32, AugmentConfig(), torch.Generator().manual_seed(3))
    c = augment_batch(x, 32, AugmentConfig(), torch.Generator().manual_seed(4))
    assert a.shape == (8, 1, 32, 32)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1
    assert (a.flatten(1).max(1).values > 0.3).all()  # the stroke survives every transform


def test_prepare_batch_matches_area_downsampling() -> None:
    images = torch.zeros(1, 64, 64, dtype=torch.uint8)
    images[0, :2, :2] = 255
    x = prepare_batch(images, 32)
    assert x.shape == (1, 1, 32, 32)
    assert x[0, 0, 0, 0] == pytest.approx(1.0) and x[0, 0, 1:, 1:].max() == 0


@pytest.mark.parametrize(("arch", "config", "size"), [
    ("seed", {"num_classes": 26, "image_size": 28}, 28),
    ("cnn", {"num_classes": 36}, 32),
])
def test_models_map_images_to_class_logits(arch: str, config: dict, size: int) -> None:
    model = build_model(arch, **config).eval()
    assert isinstance(model, SeedCNN | LetterCNN)
    assert model(torch.rand(3, 1, size, size)).shape == (3, config["num_classes"])


def test_seed_cnn_refuses_sizes_its_linear_layer_cannot_take() -> None:
    with pytest.raises(ValueError, match="divisible by 4"):
        SeedCNN(26, image_size=30)
