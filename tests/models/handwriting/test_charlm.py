"""The character n-gram LM: normalization, proper distributions, files, corpora."""

from __future__ import annotations

import gzip
import math
import random
import re
import string
from pathlib import Path

import numpy as np
import pytest

from models.handwriting.charlm import (
    DEFAULT_ALPHABET,
    CharNgramLM,
    detokenize,
    english_corpus,
    ptb_lines,
    wikiqa_lines,
)
from tests.conftest import require_data

ALPHABET = string.ascii_lowercase + " .,'"

TRAIN = [
    "The cat sat on the mat and looked at the door.",
    "A dog ran across the park to find the ball.",
    "She said that the weather would be nice tomorrow.",
    "They went to the market in the morning to buy bread.",
    "He thought about the question for a long time.",
    "The children were playing in the garden near the house.",
    "We have not seen them since the end of the summer.",
    "There is a small shop at the corner of the street.",
    "The man in the blue shirt is reading a newspaper.",
    "Two women are walking along the river with their dogs.",
    "It was the best of times, it was the worst of times.",
    "Most of the people in the room were talking quietly.",
    "The company said its profits rose in the third quarter.",
    "The young boy is climbing a tree in the yard.",
    "A group of people are standing outside the building.",
    "I would like to know what they think of the plan.",
] * 2
HELD_OUT = [
    "The girl and her mother are sitting on the bench in the park.",
    "They said that the house at the end of the street was for sale.",
    "A man is walking his dog along the road in the morning.",
]


@pytest.fixture(scope="module")
def lm() -> CharNgramLM:
    return CharNgramLM.train(TRAIN, order=5, min_count=1, alphabet=ALPHABET)


CONTEXTS = ["", "t", "th", "the ", "the cat sat on the m", "zzqx", "  ", "'"]


# --------------------------------------------------------------------------- distributions


@pytest.mark.parametrize("context", CONTEXTS)
def test_next_char_and_end_probabilities_sum_to_one(lm: CharNgramLM, context: str) -> None:
    total = sum(math.exp(lm.log_prob(context, c)) for c in lm.vocab)
    total += math.exp(lm.end_log_prob(context))
    assert total == pytest.approx(1.0, abs=1e-9)


def test_every_character_has_positive_probability_even_unseen(lm: CharNgramLM) -> None:
    assert "z" not in " ".join(TRAIN).lower()  # never seen in training
    for context in CONTEXTS:
        assert np.isfinite(lm.next_log_probs(context)).all()
    assert lm.log_prob("the ", "z") > -math.inf


def test_frequent_continuations_get_most_of_the_mass(lm: CharNgramLM) -> None:
    assert lm.log_prob("in t", "h") > math.log(0.5)
    assert lm.log_prob("in th", "e") > lm.log_prob("in th", "o")
    assert lm.end_log_prob("in the garden near the house.") > lm.end_log_prob("in the")


def test_lower_order_uses_continuation_counts() -> None:
    # 'a' is frequent but only ever follows 'x'; 'b' is rarer but follows five letters.
    # Kneser-Ney backs off to how many contexts a letter follows, so after 'z' (seen only
    # before the end of a line) 'b' is the likelier one; raw unigram counts would say 'a'.
    lines = ["xa"] * 20 + ["cb", "db", "eb", "fb", "gb", "z"]
    lm = CharNgramLM.train(lines, order=2, min_count=1, alphabet="abcdefgxz")
    assert lm.log_prob("z", "b") > lm.log_prob("z", "a")


def test_vocab_is_lower_cased_and_includes_a_space() -> None:
    lm = CharNgramLM.train(["AB ab"], order=2, alphabet="ABab")
    assert lm.vocab == "ab "


def test_lookups_are_case_insensitive(lm: CharNgramLM) -> None:
    assert lm.log_prob("THE CAT SAT ON THE M", "A") == lm.log_prob("the cat sat on the m", "a")
    assert lm.end_log_prob("THE END.") == lm.end_log_prob("the end.")


def test_training_is_case_insensitive(lm: CharNgramLM) -> None:
    upper = CharNgramLM.train([t.upper() for t in TRAIN], order=5, min_count=1,
                              alphabet=ALPHABET.upper())
    for context in CONTEXTS:
        np.testing.assert_array_equal(upper.next_log_probs(context), lm.next_log_probs(context))


def test_text_is_normalized_like_training_text(lm: CharNgramLM) -> None:
    assert lm.normalize("  Hello,  WORLD!!  (42) ") == "hello, world"
    # characters outside the alphabet are scored as the space they become
    assert lm.log_prob("the", "!") == lm.log_prob("the", " ")
    assert lm.log_prob("the cat!!", "s") == lm.log_prob("the cat ", "s")


def test_a_run_of_spaces_is_unlikely(lm: CharNgramLM) -> None:
    assert lm.log_prob("the ", " ") < math.log(0.01)


def test_perplexity_on_english_is_lower_than_on_shuffled_characters(lm: CharNgramLM) -> None:
    rng = random.Random(0)
    shuffled = ["".join(rng.sample(s, len(s))) for s in HELD_OUT]
    english = lm.perplexity(HELD_OUT)
    assert 1.0 < english < 0.5 * lm.perplexity(shuffled)


def test_more_pruning_keeps_fewer_ngrams_and_proper_distributions() -> None:
    full = CharNgramLM.train(TRAIN, order=5, min_count=1, alphabet=ALPHABET)
    pruned = CharNgramLM.train(TRAIN, order=5, min_count=3, alphabet=ALPHABET)
    assert sum(map(len, pruned._tables)) < sum(map(len, full._tables))
    for context in CONTEXTS:
        assert np.exp(pruned.next_log_probs(context)).sum() == pytest.approx(1.0, abs=1e-9)


# --------------------------------------------------------------------------- files


def test_save_and_load_give_identical_log_probs(lm: CharNgramLM, tmp_path: Path) -> None:
    lm.save(tmp_path / "lm.npz")
    again = CharNgramLM.load(tmp_path / "lm.npz")
    assert (again.vocab, again.order, again.min_count) == (lm.vocab, lm.order, lm.min_count)
    for context in [*CONTEXTS, *HELD_OUT]:
        np.testing.assert_array_equal(again.next_log_probs(context), lm.next_log_probs(context))


def test_saved_file_holds_no_pickled_objects(lm: CharNgramLM, tmp_path: Path) -> None:
    lm.save(tmp_path / "lm.npz")
    with np.load(tmp_path / "lm.npz", allow_pickle=False) as z:
        assert all(z[name].dtype != object for name in z.files)


def test_loading_a_different_npz_is_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="missing entry"):
        CharNgramLM.load(tmp_path / "other.npz")


def test_bad_training_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="order"):
        CharNgramLM.train(TRAIN, order=0, alphabet=ALPHABET)
    with pytest.raises(ValueError, match="no training text"):
        CharNgramLM.train(["!!!", "   "], alphabet=ALPHABET)


# --------------------------------------------------------------------------- corpora


def _wikiqa(path: Path) -> Path:
    (path / "wikiqa").mkdir()
    path = path / "wikiqa" / "WikiQA-train.tsv"
    path.write_text(
        "QuestionID\tQuestion\tDocumentID\tDocumentTitle\tSentenceID\tSentence\tLabel\n"
        "Q1\thow are glacier caves formed?\tD1\tGlacier cave\tD1-0\t"
        "A cave on Perito Moreno Glacier .\t0\n"
        "Q1\thow are glacier caves formed?\tD1\tGlacier cave\tD1-1\t"
        "The UMBC ( 1966 ) campus 's lawn , mostly .\t1\n", encoding="utf-8")
    return path


def test_english_corpus_reads_only_the_training_files(tmp_path: Path) -> None:
    (tmp_path / "ptb").mkdir()
    (tmp_path / "ptb" / "ptb.train.txt").write_text(
        " the <unk> rose N % \n <unk> \n mr. smith said \n")
    (tmp_path / "multi30k").mkdir()
    with gzip.open(tmp_path / "multi30k" / "train.en.gz", "wt") as f:
        f.write("Two dogs play.\nA man sings.\n")
    _wikiqa(tmp_path)
    corpus = english_corpus(tmp_path)
    assert corpus[1:] == ["mr. smith said", "Two dogs play.", "A man sings.",
                          "how are glacier caves formed?", "A cave on Perito Moreno Glacier.",
                          "The UMBC (1966) campus's lawn, mostly."]
    assert re.fullmatch(r"the rose \d+(\.\d{1,2})? %", corpus[0])  # N became a number
    assert english_corpus(tmp_path, ("multi30k",)) == ["Two dogs play.", "A man sings."]
    with pytest.raises(ValueError, match="unknown LM corpora"):
        english_corpus(tmp_path, ("ptb", "wikipedia"))
    (tmp_path / "wikiqa" / "WikiQA-train.tsv").unlink()
    with pytest.raises(FileNotFoundError):
        english_corpus(tmp_path)


def test_wikiqa_lines_are_detokenized_once_each(tmp_path: Path) -> None:
    path = _wikiqa(tmp_path)
    lines = wikiqa_lines(path)
    assert lines.count("how are glacier caves formed?") == 1  # the question repeats per row
    assert "The UMBC (1966) campus's lawn, mostly." in lines
    assert detokenize("I do n't know , really !") == "I don't know, really!"
    assert detokenize("a - b [ x ] 5 % .") == "a - b [x] 5%."
    path.write_text("id\ttext\nq\thello\n", encoding="utf-8")
    with pytest.raises(ValueError, match="Question and Sentence"):
        wikiqa_lines(path)


def test_ptb_numbers_are_varied_repeatable_digits(tmp_path: Path) -> None:
    path = tmp_path / "ptb.txt"
    path.write_text(" rose N % to N from N \n" * 200)
    lines = ptb_lines(path)
    assert lines == ptb_lines(path)  # seeded
    numbers = [w for line in lines for w in line.split() if w[0].isdigit()]
    assert len(numbers) == 600
    assert all(re.fullmatch(r"(0|[1-9]\d{0,3})(\.\d{1,2})?", n) for n in numbers)
    assert set("".join(numbers)) >= set("0123456789.")  # every digit occurs, some decimals
    assert {len(n.split(".")[0]) for n in numbers} == {1, 2, 3, 4}
    assert ptb_lines(path, number_seed=None)[0] == "rose 1 % to 1 from 1"


def test_real_english_text_scores_well_and_shuffled_text_badly() -> None:
    require_data("ptb", "ptb.train.txt")
    require_data("multi30k", "train.en.gz")
    texts = english_corpus(require_data())[:4000]
    lm = CharNgramLM.train(texts, order=5, min_count=2, alphabet=DEFAULT_ALPHABET)
    valid = ptb_lines(require_data("ptb", "ptb.valid.txt"))[:100]
    rng = random.Random(0)
    shuffled = ["".join(rng.sample(s, len(s))) for s in valid]
    english = lm.perplexity(valid)
    assert english < 6.0
    assert lm.perplexity(shuffled) > 3 * english


@pytest.mark.slow
def test_full_english_model_fits_the_size_budget(tmp_path: Path) -> None:
    require_data("ptb", "ptb.train.txt")
    require_data("multi30k", "train.en.gz")
    require_data("wikiqa", "WikiQA-train.tsv")
    lm = CharNgramLM.train(english_corpus(require_data()), order=7, min_count=3,
                           alphabet=DEFAULT_ALPHABET)
    lm.save(tmp_path / "lm.npz")
    assert (tmp_path / "lm.npz").stat().st_size <= 2_000_000


def test_cli_default_is_the_line_recognizers_alphabet(tmp_path: Path) -> None:
    from models.handwriting.charlm import main
    from models.handwriting.linesynth import ALPHABET as CRNN_ALPHABET

    (tmp_path / "ptb").mkdir()
    (tmp_path / "ptb" / "ptb.train.txt").write_text(" the cat sat \n a dog ran N times \n" * 20)
    (tmp_path / "ptb" / "ptb.valid.txt").write_text(" the dog sat \n")
    (tmp_path / "multi30k").mkdir()
    with gzip.open(tmp_path / "multi30k" / "train.en.gz", "wt") as f:
        f.write("Two dogs play.\n" * 10)
    _wikiqa(tmp_path)
    main(["--data-dir", str(tmp_path), "--out", str(tmp_path / "crnn.npz"), "--order", "3",
          "--min-count", "1"])
    main(["--data-dir", str(tmp_path), "--out", str(tmp_path / "default.npz"), "--order", "3",
          "--min-count", "1", "--alphabet", "default"])
    crnn, default = (CharNgramLM.load(tmp_path / f"{n}.npz") for n in ("crnn", "default"))
    texts = english_corpus(tmp_path)
    assert crnn.vocab == CharNgramLM.train(texts, 3, 1, alphabet=CRNN_ALPHABET).vocab
    assert default.vocab == CharNgramLM.train(texts, 3, 1, alphabet=DEFAULT_ALPHABET).vocab
    assert crnn.vocab != default.vocab  # same characters, the CRNN's order


def test_wikiqa_text_shares_no_six_word_run_with_a_dev_label() -> None:
    """The README's leak check: the LM's WikiQA text never contains 6 words in a row of a
    real development image's transcription (benchmarks/handwriting_dev_sources.tsv and
    handwriting-pages), so the dev figures do not reward memorized text."""
    import csv

    from benchmarks.handwriting_dev_set import read_sources

    wikiqa = require_data("wikiqa", "WikiQA-train.tsv")
    pages = require_data("handwriting-pages", "labels.tsv")

    def words(text: str) -> list[str]:
        return re.sub(r"[^a-z0-9 ]", " ", text.lower()).split()

    corpus = " | ".join(" ".join(words(line)) for line in wikiqa_lines(wikiqa))
    with pages.open(encoding="utf-8") as f:
        labels = [row["text"] for row in csv.DictReader(f, delimiter="\t",
                                                        quoting=csv.QUOTE_NONE)]
    labels += [row["text"] for row in read_sources()]
    assert len(labels) == 60
    runs = [" ".join(w[i:i + 6]) for w in map(words, labels) for i in range(len(w) - 5)]
    assert runs and not [run for run in runs if run in corpus]
