"""CTC decoding on hand-made log-probability matrices, checked against brute force and
torch.nn.CTCLoss."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from models.handwriting.charlm import CharNgramLM
from models.handwriting.ctc import (
    DecodeResult,
    beam_search,
    decode_text,
    greedy_decode,
)

ALPHABET = "_abc"  # class 0 is the blank
EPS = 1e-4  # probability spread over the classes a toy frame does not name


def toy(frames: list[dict[str, float]], alphabet: str = ALPHABET) -> np.ndarray:
    """(T, C) log-probs: each frame's named classes get their probability ('_' = blank);
    the others share what is left (at least EPS each), then rows are normalized."""
    out = np.zeros((len(frames), len(alphabet)))
    for t, named in enumerate(frames):
        rest = [i for i, c in enumerate(alphabet) if c not in named]
        left = max(1.0 - sum(named.values()), EPS * len(rest))
        for i, c in enumerate(alphabet):
            out[t, i] = named.get(c, left / max(len(rest), 1))
    out /= out.sum(axis=1, keepdims=True)
    return np.log(out)


def path(symbols: str, p: float = 0.9, alphabet: str = ALPHABET) -> np.ndarray:
    """One frame per symbol of ``symbols``, that class at probability ``p``."""
    return toy([{s: p} for s in symbols], alphabet)


def brute_force(log_probs: np.ndarray, alphabet: str) -> dict[str, float]:
    """P(labelling) summed over every frame path (C**T of them)."""
    probs = np.exp(log_probs)
    num_frames, num_classes = probs.shape
    out: dict[str, float] = {}
    for p in itertools.product(range(num_classes), repeat=num_frames):
        mass = float(np.prod([probs[t, c] for t, c in enumerate(p)]))
        collapsed = [c for i, c in enumerate(p) if c != 0 and (i == 0 or p[i - 1] != c)]
        key = "".join(alphabet[c] for c in collapsed)
        out[key] = out.get(key, 0.0) + mass
    return out


def ctc_loss(log_probs: np.ndarray, target: str, alphabet: str) -> float:
    """torch's CTC negative log-likelihood of ``target`` (blank 0, no reduction)."""
    lp = torch.from_numpy(log_probs).unsqueeze(1)  # (T, 1, C)
    tgt = torch.tensor([[alphabet.index(c) for c in target]], dtype=torch.long)
    loss = torch.nn.CTCLoss(blank=0, reduction="sum", zero_infinity=False)
    return float(loss(lp, tgt, torch.tensor([lp.shape[0]]), torch.tensor([len(target)])))


# --------------------------------------------------------------------------- greedy / basics


def test_greedy_and_beam_read_a_clean_toy_with_first_frames() -> None:
    lp = path("_cc_a__bb_")
    greedy = greedy_decode(lp)
    assert greedy == [(3, 1), (1, 4), (2, 7)]
    assert decode_text(greedy, ALPHABET) == "cab"
    result = beam_search(lp, ALPHABET, beam_size=8)
    assert isinstance(result, DecodeResult)
    assert result.text == "cab"
    assert result.frames == [1, 4, 7]


def test_blanks_between_symbols_are_dropped() -> None:
    lp = path("__a___b__c__")
    assert decode_text(greedy_decode(lp), ALPHABET) == "abc"
    assert beam_search(lp, ALPHABET).text == "abc"


def test_repeated_letter_without_blank_collapses_to_one() -> None:
    lp = path("aaa")
    assert decode_text(greedy_decode(lp), ALPHABET) == "a"
    assert beam_search(lp, ALPHABET).text == "a"


def test_repeated_letter_with_blank_between_is_kept_twice() -> None:
    lp = path("a_a")
    assert decode_text(greedy_decode(lp), ALPHABET) == "aa"
    result = beam_search(lp, ALPHABET)
    assert result.text == "aa"
    assert result.frames == [0, 2]


def test_frame_is_where_most_of_the_first_emission_mass_lies() -> None:
    # 'a' can first appear at frame 1 (mass 0.3) or, after a blank, at frame 2 (0.7 * 0.9)
    lp = toy([{"_": 0.9}, {"a": 0.3, "_": 0.7}, {"a": 0.9}, {"_": 0.9}])
    assert greedy_decode(lp) == [(1, 2)]
    result = beam_search(lp, ALPHABET)
    assert (result.text, result.frames) == ("a", [2])


def test_torch_tensor_input_gives_the_same_result() -> None:
    lp = path("_b_ca_")
    as_tensor = torch.from_numpy(lp).float()
    assert greedy_decode(as_tensor) == greedy_decode(lp)
    assert beam_search(as_tensor, ALPHABET).text == beam_search(lp, ALPHABET).text == "bca"


def test_non_zero_blank_index_is_respected() -> None:
    alphabet = "ab_"
    lp = path("a_b__b", alphabet=alphabet)
    assert decode_text(greedy_decode(lp, blank=2), alphabet) == "abb"
    assert beam_search(lp, alphabet, blank=2).text == "abb"


def test_empty_input_decodes_to_empty_text() -> None:
    lp = np.zeros((0, 4))
    assert greedy_decode(lp) == []
    result = beam_search(lp, ALPHABET)
    assert (result.text, result.frames, result.score) == ("", [], 0.0)


# --------------------------------------------------------------------------- beam vs greedy


def test_beam_search_finds_the_most_probable_labelling_that_greedy_misses() -> None:
    # Two frames, P(blank) = 0.6, P(a) = 0.4 each: best path "__" (0.36) gives "", but
    # P("a") = 0.4*0.4 + 0.4*0.6 + 0.6*0.4 = 0.64.
    lp = np.log(np.array([[0.6, 0.4], [0.6, 0.4]]))
    assert greedy_decode(lp) == []
    result = beam_search(lp, "_a", beam_size=4)
    assert result.text == "a"
    assert result.score == pytest.approx(math.log(0.64))


def test_beam_search_score_matches_brute_force_and_ctc_loss() -> None:
    rng = np.random.default_rng(3)
    logits = rng.normal(0.0, 1.5, size=(4, 3))
    lp = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)  # (T=4, C=3)
    alphabet = "_ab"
    exact = brute_force(lp, alphabet)
    assert sum(exact.values()) == pytest.approx(1.0)
    for target, p in exact.items():
        if target:  # torch needs a non-empty target here
            assert -ctc_loss(lp, target, alphabet) == pytest.approx(math.log(p), abs=1e-6)
    result = beam_search(lp, alphabet, beam_size=64, prune_log_prob=-math.inf)
    best = max(exact, key=lambda k: exact[k])
    assert result.text == best
    assert result.score == pytest.approx(math.log(exact[best]), abs=1e-9)


def test_single_path_labelling_probability_agrees_with_ctc_loss() -> None:
    # "abab" in 4 frames has exactly one path, so its probability is the product of the
    # four frame probabilities; the beam's best is that labelling here.
    lp = toy([{"a": 0.7}, {"b": 0.7}, {"a": 0.7}, {"b": 0.7}], "_ab")
    single_path = float(lp[0, 1] + lp[1, 2] + lp[2, 1] + lp[3, 2])
    assert -ctc_loss(lp, "abab", "_ab") == pytest.approx(single_path, abs=1e-6)
    result = beam_search(lp, "_ab", beam_size=64, prune_log_prob=-math.inf)
    assert result.text == "abab"
    assert result.score == pytest.approx(single_path, abs=1e-9)


# --------------------------------------------------------------------------- LM fusion

ENGLISH = [
    "the cat sat on the mat", "the dog ran to the park", "he said that the man was there",
    "then they went to the shop", "the end of the day", "she gave them the book",
    "the weather is nice", "there is the house", "the other one", "they thought so",
] * 3


@pytest.fixture(scope="module")
def lm() -> CharNgramLM:
    return CharNgramLM.train(ENGLISH, order=4, min_count=1, alphabet="abcdefghijklmnopqrstuvwxyz ")


WORD_ALPHABET = "_" + "abcdefghijklmnopqrstuvwxyz "


def test_lm_breaks_an_acoustic_near_tie_towards_the_english_word(lm: CharNgramLM) -> None:
    # "t h {o 0.46 | e 0.44}": without the LM "tho" wins, with it "the".
    frames = [{"t": 0.9}, {"_": 0.9}, {"h": 0.9}, {"_": 0.9}, {"o": 0.46, "e": 0.44}, {"_": 0.9}]
    lp = toy(frames, WORD_ALPHABET)
    assert beam_search(lp, WORD_ALPHABET).text == "tho"
    assert beam_search(lp, WORD_ALPHABET, lm=lm, alpha=0.5, beta=0.0).text == "the"


def test_lm_fused_score_is_acoustic_plus_weighted_lm_plus_bonus(lm: CharNgramLM) -> None:
    # 3 letters, 7 frames: at most 3280 prefixes, so a beam of 4096 keeps them all (exact)
    alphabet = "_the"
    lp = path("_t_h_e_", alphabet=alphabet)
    alpha, beta = 0.7, 0.3
    result = beam_search(lp, alphabet, beam_size=4096, lm=lm, alpha=alpha, beta=beta,
                         prune_log_prob=-math.inf)
    assert result.text == "the"
    acoustic = -ctc_loss(lp, "the", alphabet)
    lm_score = (lm.log_prob("", "t") + lm.log_prob("t", "h") + lm.log_prob("th", "e")
                + lm.end_log_prob("the"))
    assert result.score == pytest.approx(acoustic + alpha * lm_score + beta * 3, abs=1e-6)


def test_lm_scores_upper_case_classes_like_lower_case(lm: CharNgramLM) -> None:
    alphabet = "_" + "abcdefghijklmnopqrstuvwxyz ".upper()
    frames = [{"T": 0.9}, {"_": 0.9}, {"H": 0.9}, {"_": 0.9}, {"O": 0.46, "E": 0.44}, {"_": 0.9}]
    assert beam_search(toy(frames, alphabet), alphabet, lm=lm, beta=0.0).text == "THE"


# --------------------------------------------------------------------------- validation


def test_alphabet_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ValueError, match="one character per class"):
        beam_search(path("_a_"), "_ab")


def test_alphabet_with_a_repeated_character_is_refused() -> None:
    with pytest.raises(ValueError, match="repeats a character"):
        beam_search(path("_a_"), "_aab")


def test_logits_instead_of_log_probs_are_refused_with_a_hint() -> None:
    with pytest.raises(ValueError, match="log_softmax"):
        beam_search(np.ones((3, 4)), ALPHABET)


def test_a_batch_or_a_vector_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\(T, C\)"):
        greedy_decode(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"\(T, C\)"):
        beam_search(np.zeros(4), ALPHABET)


def test_blank_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="blank index"):
        greedy_decode(path("_a_"), blank=4)


def test_decode_text_refuses_an_index_outside_the_alphabet() -> None:
    with pytest.raises(ValueError, match="outside the alphabet"):
        decode_text([1, 9], ALPHABET)
