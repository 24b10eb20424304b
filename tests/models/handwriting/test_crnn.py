"""The CRNN line recognizer: shapes, CTC training on composed lines, and the artifact it
writes being served."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from models.handwriting.crnn import CRNN
from models.handwriting.linereader import LineReader
from models.handwriting.linesynth import (
    ALPHABET,
    LetterBank,
    LineSynthesizer,
    TextSampler,
    crop_to_height,
    render_letters,
)
from models.handwriting.predictor import HandwritingPredictor
from models.handwriting.train_crnn import (
    CRNNTrainConfig,
    collate,
    encode_text,
    load_init_weights,
    train_crnn,
)
from tests.conftest import ARTIFACTS, require_data


def test_crnn_emits_one_log_distribution_per_four_columns() -> None:
    model = CRNN(len(ALPHABET) + 1).eval()
    with torch.no_grad():
        out = model(torch.rand(3, 1, 32, 120))
    assert out.shape == (30, 3, len(ALPHABET) + 1)
    assert torch.allclose(out.exp().sum(-1), torch.ones(30, 3), atol=1e-4)


def test_crnn_refuses_other_heights() -> None:
    with pytest.raises(ValueError, match="32-px"):
        CRNN(10, height=48)


def test_collate_pads_to_a_multiple_of_four_and_counts_targets() -> None:
    lines = [(np.ones((32, 50), np.float32), "Ab"), (np.ones((32, 21), np.float32), "c d")]
    x, lengths, targets, target_lengths, texts = collate(lines, max_width=800)
    assert x.shape == (2, 1, 32, 52)
    assert lengths.tolist() == [12, 5]
    assert target_lengths.tolist() == [2, 3]
    assert targets.tolist() == encode_text("Ab") + encode_text("c d")
    assert float(x[1, 0, :, 21:].abs().sum()) == 0.0  # zero padding
    assert texts == ["Ab", "c d"]


def test_crop_to_height_keeps_the_aspect_ratio() -> None:
    ink = np.zeros((100, 400), np.float32)
    ink[40:60, 50:250] = 1.0
    crop = crop_to_height(ink, 32, pad=0.0)
    assert crop.shape == (32, 320)
    assert crop.dtype == np.float32
    assert crop_to_height(np.zeros((50, 50), np.float32), 32).shape == (32, 32)


def test_composed_lines_are_32_px_ink_maps_with_their_text() -> None:
    root = require_data("handwriting", "chars74k-hnd.npz").parent
    bank = LetterBank.load(root, sources=("chars74k-hnd",))
    synth = LineSynthesizer(["The quick brown fox jumps over the lazy dog."], bank, None)
    rng = np.random.default_rng(0)
    for _ in range(5):
        image, text = synth.sample(rng)
        assert image.shape[0] == 32 and image.shape[1] >= 32
        assert image.dtype == np.float32
        assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
        assert text and set(text) <= set(ALPHABET)
        assert float(image.max()) > 0.5  # ink was drawn


def test_upper_share_sets_how_often_a_line_is_all_capitals() -> None:
    sentences = ["the quick brown fox jumps over the lazy dog again and again"]
    rng = np.random.default_rng(0)

    def capitals(share: float) -> float:
        sampler = TextSampler(sentences, upper_share=share)
        texts = [sampler.sample(rng) for _ in range(400)]
        return float(np.mean([t == t.upper() and any(c.isalpha() for c in t) for t in texts]))

    assert capitals(1.0) == 1.0
    assert capitals(0.0) == 0.0
    assert 0.05 < capitals(0.12) < 0.2


def test_number_share_sets_how_often_a_line_gets_written_numbers() -> None:
    sentences = ["the quick brown fox jumps over the lazy dog again and again"]

    def texts(share: float) -> list[str]:
        rng = np.random.default_rng(0)
        sampler = TextSampler(sentences, number_share=share)
        return [sampler.sample(rng) for _ in range(300)]

    assert all(any(c.isdigit() for c in t) for t in texts(1.0))
    assert not any(any(c.isdigit() for c in t) for t in texts(0.0))
    assert 0.1 < np.mean([any(c.isdigit() for c in t) for t in texts(0.25)]) < 0.4
    assert all(set(t) <= set(ALPHABET) for t in texts(1.0))


def test_written_numbers_zeros_are_as_common_as_other_digits() -> None:
    rng = np.random.default_rng(0)
    digits = "".join(c for _ in range(3000) for c in TextSampler.written_number(rng)
                     if c.isdigit())
    share = digits.count("0") / len(digits)
    assert 0.07 < share < 0.2, share


@pytest.mark.parametrize("share", ["real_share", "upper_share", "apart_share", "number_share"])
def test_shares_outside_zero_to_one_are_refused(share: str) -> None:
    with pytest.raises(ValueError, match=share):
        LineSynthesizer(["a line"], None, None, **{share: 1.5})


def test_letters_written_apart_make_longer_lines_with_the_same_text() -> None:
    root = require_data("handwriting", "chars74k-hnd.npz").parent
    bank = LetterBank.load(root, sources=("chars74k-hnd",))

    def ink_width(apart_share: float) -> float:
        rng = np.random.default_rng(3)
        widths = []
        for _ in range(12):
            alpha, text = render_letters("HELLO WORLD", bank, rng, apart_share=apart_share)
            assert text == "HELLO WORLD"
            cols = np.flatnonzero((alpha > 0.3).any(axis=0))
            cap = np.flatnonzero((alpha > 0.3).any(axis=1))
            widths.append((cols[-1] - cols[0]) / (cap[-1] - cap[0]))  # in line heights
        return float(np.mean(widths))

    assert ink_width(1.0) > 1.1 * ink_width(0.0)  # joined lines (40 %) are never apart


@pytest.mark.slow
def test_training_smoke_run_writes_an_artifact_the_service_reads(tmp_path: Path) -> None:
    data = require_data("handwriting").parent
    require_data("ptb", "ptb.train.txt")
    require_data("wikiqa", "WikiQA-train.tsv")
    out = tmp_path / "handwriting"
    shutil.copytree(ARTIFACTS / "handwriting", out)
    shutil.rmtree(out / "crnn", ignore_errors=True)
    cfg = CRNNTrainConfig(data_dir=data, out_dir=out / "crnn",
                          checkpoint_dir=tmp_path / "ckpt", fonts_dir=tmp_path / "no-fonts",
                          steps=4, max_steps=2, batch_size=4, workers=0, val_lines=50,
                          eval_every=1, checkpoint_every=2, max_width=256)
    card = train_crnn(cfg)
    assert card["training"]["steps"] == 2
    assert (tmp_path / "ckpt" / "last.pt").is_file()
    assert [h["step"] for h in card["history"]] == [1, 2]
    reader = LineReader.load(out / "crnn")
    assert reader.alphabet == ALPHABET
    assert reader.lm is not None and (out / "crnn" / "charlm.npz").is_file()
    assert reader.beam_size == cfg.beam_size and reader.lm_weight == cfg.lm_weight
    predictor = HandwritingPredictor.load(out)
    assert predictor.line_reader is not None
    blank = np.full((64, 256, 3), 230, np.uint8)
    result = predictor.read_lines(blank)
    assert result.pipeline == "lines" and result.text == ""
    # resume continues from the checkpoint (step 2) to the end instead of starting again
    resumed = train_crnn(CRNNTrainConfig(**{**cfg.__dict__, "max_steps": None, "resume": True}))
    assert resumed["training"]["steps"] == 4
    assert [h["step"] for h in resumed["history"]] == [1, 2, 3, 4]


@pytest.mark.slow
def test_fine_tune_starts_from_an_artifact_and_scores_held_out_real_lines(tmp_path: Path
                                                                          ) -> None:
    data = require_data("handwriting").parent
    require_data("ptb", "ptb.train.txt")
    require_data("wikiqa", "WikiQA-train.tsv")
    real = tmp_path / "real"
    real.mkdir()
    rows = ["path\ttext"]
    for i in range(40):
        img = np.full((50, 200), 235, np.uint8)
        cv2.putText(img, f"word {i}", (8, 36), cv2.FONT_HERSHEY_SIMPLEX, 1.0, 20, 2)
        cv2.imwrite(str(real / f"{i}.png"), img)
        rows.append(f"{i}.png\tword {i}")
    (real / "manifest.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    start = CRNN(len(ALPHABET) + 1)
    load_init_weights(start, ARTIFACTS / "handwriting" / "crnn")
    served = LineReader.load(ARTIFACTS / "handwriting" / "crnn").model
    for k, v in served.state_dict().items():
        assert torch.equal(start.state_dict()[k], v.float()), k
    cfg = CRNNTrainConfig(data_dir=data, out_dir=tmp_path / "crnn",
                          checkpoint_dir=tmp_path / "ckpt", fonts_dir=tmp_path / "no-fonts",
                          steps=2, batch_size=4, workers=0, val_lines=50, eval_every=1,
                          max_width=256, real_lines=real, real_share=0.5,
                          init_from=ARTIFACTS / "handwriting" / "crnn")
    card = train_crnn(cfg)
    assert card["training"]["init_from"] == str(cfg.init_from)
    assert {"real_cer", "real_cer_nocase"} <= set(card["history"][0])
    assert 0.0 <= card["metrics"]["real_val_cer_greedy"] <= 1.5
    assert "real line/word images" in card["dataset"]["name"]
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors"):
        load_init_weights(CRNN(len(ALPHABET) + 1), tmp_path)
