"""Matching data: readers, normalisation, featurization and metrics on hand-made inputs."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from models.matching.data import (
    WIKIQA_HEADER,
    accuracy_f1,
    best_threshold,
    map_mrr,
    read_pairs,
)
from models.matching.features import UNK, Featurizer, Vocab, tokenize


def test_corenlp_and_raw_spellings_give_the_same_tokens() -> None:
    raw = "Don't you know what's (this) \"thing\"?"
    corenlp = "Do n't you know what 's -LRB- this -RRB- `` thing '' ?"
    assert tokenize(raw) == tokenize(corenlp)
    assert tokenize(raw)[:2] == ["do", "not"]


def test_quora_reader_plain_and_gzip(tmp_path: Path) -> None:
    text = "1\tHow do I learn?\tHow can I learn?\t7\n0\tWhat is x?\tWho is y?\tqqp-3\n"
    plain, packed = tmp_path / "p.tsv", tmp_path / "p.tsv.gz"
    plain.write_text(text, encoding="utf-8")
    with gzip.open(packed, "wt", encoding="utf-8") as f:
        f.write(text)
    for path in (plain, packed):
        fmt, pairs = read_pairs(path)
        assert fmt == "quora"
        assert [(p.a, p.b, p.label) for p in pairs] == [
            ("How do I learn?", "How can I learn?", 1), ("What is x?", "Who is y?", 0)]


def test_wikiqa_reader_strips_crlf_and_groups(tmp_path: Path) -> None:
    rows = [WIKIQA_HEADER, "Q1\tq one\tD1\tT\tD1-0\ts zero\t0", "Q1\tq one\tD1\tT\tD1-1\ts one\t1"]
    path = tmp_path / "w.tsv"
    path.write_bytes(("\r\n".join(rows) + "\r\n").encode())
    fmt, pairs = read_pairs(path)
    assert fmt == "wikiqa"
    assert [(p.group, p.b, p.label) for p in pairs] == [("Q1", "s zero", 0), ("Q1", "s one", 1)]


def test_reader_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text("1\ta\tb\n2\ta\tb\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.tsv:2: label must be 0 or 1"):
        read_pairs(path)


def test_map_mrr_hand_checked() -> None:
    # q1: ranking 0.9(neg) 0.8(pos) 0.1(pos) -> AP = (1/2 + 2/3) / 2, RR = 1/2
    # q2: all negative -> not scored; q3: pos first -> AP = RR = 1
    groups = ["q1", "q1", "q1", "q2", "q2", "q3", "q3"]
    scores = np.array([0.9, 0.8, 0.1, 0.5, 0.4, 0.7, 0.2])
    labels = np.array([0, 1, 1, 0, 0, 1, 0])
    m, r, n = map_mrr(groups, scores, labels)
    assert n == 2
    assert m == pytest.approx(((1 / 2 + 2 / 3) / 2 + 1) / 2)
    assert r == pytest.approx((1 / 2 + 1) / 2)


def test_accuracy_f1_and_threshold() -> None:
    scores = np.array([0.9, 0.7, 0.4, 0.2])
    labels = np.array([1, 1, 1, 0])
    acc, f1 = accuracy_f1(scores, labels, 0.5)
    assert acc == pytest.approx(0.75)
    assert f1 == pytest.approx(2 * 2 / (2 + 3))
    t = best_threshold(scores, labels, "accuracy")
    assert accuracy_f1(scores, labels, t)[0] == 1.0
    with pytest.raises(ValueError, match="objective"):
        best_threshold(scores, labels, "auc")


def test_featurizer_pads_flags_exact_matches_and_maps_unknowns() -> None:
    vocab = Vocab.build([["a", "b", "c"]], min_count=1)
    batch = Featurizer(vocab, n_buckets=64).batch([(["a", "b"], ["b", "zz", "c"]),
                                                   (["a"], ["c"])])
    assert batch.a_ids.shape == (2, 2) and batch.b_ids.shape == (2, 3)
    assert batch.a_len.tolist() == [2, 1] and batch.b_len.tolist() == [3, 1]
    assert batch.b_ids[0, 1] == UNK  # "zz" unseen
    assert batch.a_em.tolist() == [[0.0, 1.0], [0.0, 0.0]]
    assert batch.b_em.tolist() == [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    assert int(batch.a_tri.max()) < 64 and int(batch.a_tri[1, 1].max()) == 0  # padding
    with pytest.raises(ValueError, match="without tokens"):
        Featurizer(vocab).batch([([], ["a"])])
