"""Hypothesis properties of every tokenizer / normaliser applied to user text.

Covers the matching features (:mod:`models.matching.features`), the translation clean-up and
SentencePiece tokenizer (:mod:`models.translation.data`, on the committed ``spm.model``), and
the word lookups of the LM and word2vec predictors (on the committed vocabularies). Each
property says in a comment which bug it would catch.

Texts come from ``st.text()`` (every Unicode category but lone surrogates: the service already
answers 422 to a JSON string holding one, before any tokenizer sees it) and from a strategy of
awkward characters (emoji, control and format characters, RTL scripts, combining marks,
compatibility forms, exotic whitespace, very long words). Runs are derandomized and bounded
so CI sees the same examples every time.
"""

from __future__ import annotations

import itertools
import unicodedata
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from models.common.errors import UnknownItemError
from models.lm.data import Dictionary
from models.lm.model import RNNLM
from models.lm.predictor import LMPredictor
from models.matching.features import (
    MAX_TRIGRAMS,
    PAD,
    SPECIALS,
    Featurizer,
    Vocab,
    letter_trigrams,
    normalize,
    tokenize,
    trigram_ids,
)
from models.translation.data import EOS, SOS, Tokenizer, clean
from models.translation.data import PAD as SPM_PAD
from models.word2vec.predictor import Word2VecPredictor
from models.word2vec.vectors import WordVectors
from models.word2vec.vocab import Vocab as W2VVocab

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"

FAST = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FEW = settings(FAST, max_examples=60)

# --------------------------------------------------------------------------- strategies

AWKWARD = (
    "😀👍🏽👨‍👩‍👧🇩🇪"  # emoji, skin tone, ZWJ sequence, flag
    "\x00\x01\x07\x1b\x7f\x85\u200b\u200c\u200d\u200e\u200f\u202e\u2066\ufeff"  # controls/format
    "שלום مرحبا"  # RTL
    "\u0301\u0308\u0307\u0327"  # combining marks
    "ﬁﬀ½²ℌ①⑴Ｋ\u212a\u2126ǅİıßẞſΣς"  # compatibility forms, odd casing
    " \t\n\r\x0b\x0c\xa0\u1680\u2000\u2003\u2028\u2029\u3000"  # whitespace
    "'’‘`\"-()[]{}"  # quotes and brackets
    "aZ9"
)
awkward_text = st.text(alphabet=AWKWARD, max_size=60)
long_word = st.builds(lambda c, n: c * n, st.sampled_from("aé😀ßİ-"), st.integers(200, 3000))
any_text = st.one_of(st.text(max_size=120), awkward_text, long_word)
ASCII_WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
                     min_size=1, max_size=10)
CASINGS: list[Callable[[str], str]] = [str, str.upper, str.title, str.capitalize, str.swapcase]


def recased(words: list[str]) -> st.SearchStrategy[str]:
    """A vocabulary word in one of several casings."""
    return st.builds(lambda w, f: f(w), st.sampled_from(words), st.sampled_from(CASINGS))


def whitespace_joined(parts: st.SearchStrategy[list[str]]) -> st.SearchStrategy[str]:
    """Words joined (and surrounded) by runs of assorted whitespace."""
    space = st.text(alphabet=" \t\n\xa0\u3000\u2003", min_size=1, max_size=3)
    return st.builds(
        lambda ws, seps: seps[0] + "".join(w + s for w, s in zip(ws, seps[1:], strict=False)),
        parts, st.lists(space, min_size=30, max_size=30))


# --------------------------------------------------------------------------- matching


@FAST
@given(any_text)
def test_tokens_are_nonempty_and_hold_no_whitespace(text: str) -> None:
    # Catches: a token regex that lets whitespace (e.g. U+00A0, U+3000, U+2028) into a token,
    # or yields empty matches (``\w*``); either breaks the vocabulary lookup and trigrams.
    for tok in tokenize(text):
        assert tok
        assert not any(c.isspace() for c in tok), tok


@FAST
@given(any_text)
def test_tokenize_is_stable_under_rejoining(text: str) -> None:
    # Catches: normalisation that is not idempotent (NFKC/lower-casing/escape order), e.g. a
    # step that only fires on the second pass, so text re-sent from our own tokens (or a
    # cached tokenization) would give different features.
    tokens = tokenize(text)
    assert tokenize(" ".join(tokens)) == tokens
    for tok in tokens:  # every token is a fixed point on its own
        assert tokenize(tok) == [tok]


ascii_piece = st.one_of(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 '.,?!",
            max_size=8),
    st.sampled_from(["n't", "N'T", "n'T", "'s", "'", "``", "''", "?"]))


@FAST
@given(st.lists(ascii_piece, max_size=10), st.sampled_from(["", " "]))
def test_tokenize_ignores_case_of_ascii_text(parts: list[str], sep: str) -> None:
    # Catches: a rule applied before lower-casing that only knows one case, e.g. the ``n't``
    # rule: "DON'T" gave ``don ' t`` while "don't" gave ``do not`` (fixed: IGNORECASE).
    # ('-' is left out: the CoreNLP escapes -LRB- etc. are upper-case by definition.)
    text = sep.join(parts)
    assert tokenize(text.upper()) == tokenize(text.lower()) == tokenize(text)


_ESCAPED = {"(": "-LRB-", ")": "-RRB-", "[": "-LSB-", "]": "-RSB-", "{": "-LCB-",
            "}": "-RCB-"}


@st.composite
def raw_and_corenlp(draw: st.DrawFn) -> tuple[str, str]:
    """The same sentence raw and as CoreNLP writes it (brackets, quotes, n't split off)."""
    raw: list[str] = []
    ptb: list[str] = []
    for _ in range(draw(st.integers(1, 6))):
        word = draw(ASCII_WORD)
        kind = draw(st.sampled_from(["plain", "bracket", "quote", "not", "'s"]))
        if kind == "bracket":
            left, right = draw(st.sampled_from([("(", ")"), ("[", "]"), ("{", "}")]))
            raw.append(f"{left}{word}{right}")
            ptb.append(f"{_ESCAPED[left]} {word} {_ESCAPED[right]}")
        elif kind == "quote":
            raw.append(f'"{word}"')
            ptb.append(f"`` {word} ''")
        elif kind == "not":  # CoreNLP keeps the case: "DON'T" -> "DO N'T"
            neg = draw(st.sampled_from(["n't", "N'T", "n’t"]))
            raw.append(f"{word}{neg}")
            ptb.append(f"{word} {neg}")
        elif kind == "'s":
            raw.append(f"{word}'s")
            ptb.append(f"{word} 's")
        else:
            raw.append(word)
            ptb.append(word)
    return " ".join(raw), " ".join(ptb)


@FAST
@given(raw_and_corenlp())
def test_corenlp_escaped_and_raw_spellings_agree(pair: tuple[str, str]) -> None:
    # Catches: a missing or wrongly ordered PTB un-escape (-LRB-, ``, ''), or an n't rule that
    # handles only one spelling/case: the Quora dev split (CoreNLP) would then be featurized
    # differently from the raw training text and from user requests.
    raw, corenlp = pair
    assert tokenize(raw) == tokenize(corenlp)
    assert "n't" not in normalize(raw) and "n't" not in normalize(corenlp)


tokens_st = st.one_of(
    ASCII_WORD.map(str.lower),
    st.text(min_size=1, max_size=30).filter(lambda t: not any(c.isspace() for c in t)),
)


@FAST
@given(tokens_st)
def test_letter_trigrams_spell_the_marked_token(token: str) -> None:
    # Catches: off-by-one windows (lost first/last trigram, a missing '#' boundary).
    grams = letter_trigrams(token)
    assert len(grams) == len(token)
    assert all(len(g) == 3 for g in grams)
    assert "".join(g[0] for g in grams) + grams[-1][1:] == f"#{token}#"


@FAST
@given(tokens_st, st.integers(2, 2**20))
def test_trigram_ids_are_in_range_counted_and_deterministic(token: str, n_buckets: int) -> None:
    # Catches: id 0 (padding) or n_buckets produced by the hashing, the MAX_TRIGRAMS cut
    # dropped or off by one, and a hash that changes between calls (the LRU cache hiding it:
    # the uncached function is compared too).
    ids = trigram_ids(token, n_buckets)
    assert len(ids) == min(len(token), MAX_TRIGRAMS)
    assert all(1 <= i < n_buckets for i in ids)
    assert trigram_ids.__wrapped__(token, n_buckets) == ids
    expected = tuple(zlib.crc32(g.encode("utf-8")) % (n_buckets - 1) + 1
                     for g in letter_trigrams(token)[:MAX_TRIGRAMS])
    assert ids == expected


def test_trigram_ids_are_pinned_across_processes() -> None:
    # Catches: a switch to Python's salted ``hash`` or another hash: trained trigram
    # embeddings would silently no longer match the ids the server computes.
    assert trigram_ids("good", 2**14) == (11252, 1508, 6378, 2003)
    assert trigram_ids("a", 2**14) == (14701,)


POOL = ["what", "is", "the", "best", "way", "to", "learn", "python", "?", "'", "a", "b"]
VOCAB = Vocab([*SPECIALS, *POOL[:8]])  # "?", "'", "a", "b" and the rest are unknown
pool_text = st.lists(st.one_of(st.sampled_from([*POOL, "zebra", "-LRB-", "Don't"]),
                               st.text(max_size=8)), min_size=1, max_size=25).map(" ".join)


@FEW
@given(st.lists(st.tuples(pool_text, pool_text), min_size=1, max_size=5),
       st.integers(1, 20), st.sampled_from([2, 97, 2**14]))
def test_featurizer_pads_consistently(texts: list[tuple[str, str]], max_len: int,
                                      n_buckets: int) -> None:
    # Catches: lengths that disagree with the token counts (PAD inside a text, wrong cut),
    # trigram or exact-match values leaking into padding, exact-match flags computed against
    # the wrong side / the uncut text / by substring, and a row that depends on the other
    # rows of the batch (padding to the longest must not change it).
    pairs = [(tokenize(a), tokenize(b)) for a, b in texts]
    assume(all(a and b for a, b in pairs))
    feat = Featurizer(VOCAB, n_buckets=n_buckets, max_len=max_len)
    batch = feat.batch(pairs)
    assert batch.a_ids.dtype == batch.a_tri.dtype == torch.long
    assert batch.a_em.dtype == torch.float32
    sides = ((batch.a_ids, batch.a_tri, batch.a_em, batch.a_len),
             (batch.b_ids, batch.b_tri, batch.b_em, batch.b_len))
    for r, pair in enumerate(pairs):
        alone = feat.batch([pair])
        cut = [toks[:max_len] for toks in pair]
        for side, (ids, tri, em, lengths) in enumerate(sides):
            toks, other = cut[side], set(cut[1 - side])
            n = len(toks)
            assert int(lengths[r]) == n == min(len(pair[side]), max_len)
            assert ids[r, :n].tolist() == VOCAB.ids(toks)
            assert (ids[r, n:] == PAD).all() and (tri[r, n:] == 0).all()
            assert (em[r, n:] == 0).all()
            assert em[r, :n].tolist() == [float(t in other) for t in toks]
            for c, tok in enumerate(toks):
                grams = trigram_ids(tok, n_buckets)
                assert tri[r, c].tolist() == [*grams, *[0] * (MAX_TRIGRAMS - len(grams))]
            one = (alone.a_ids, alone.a_tri, alone.a_em) if side == 0 else (
                alone.b_ids, alone.b_tri, alone.b_em)
            assert torch.equal(one[0][0], ids[r, :n]) and torch.equal(one[1][0], tri[r, :n])
            assert torch.equal(one[2][0], em[r, :n])


# --------------------------------------------------------------------------- translation


@FAST
@given(any_text)
def test_clean_is_idempotent_nfc_and_single_spaced(text: str) -> None:
    # Catches: whitespace left at the ends, runs not collapsed (TAB, NBSP, U+3000, U+2028),
    # normalising before/after in the wrong order (a result that is not NFC or changes when
    # cleaned again), and clean-up that drops or alters non-space characters.
    out = clean(text)
    assert clean(out) == out
    assert out == out.strip() and "  " not in out
    assert all(c == " " or not c.isspace() for c in out)
    assert unicodedata.is_normalized("NFC", out)
    nfc = unicodedata.normalize("NFC", text)
    assert out.replace(" ", "") == "".join(c for c in nfc if not c.isspace())


@pytest.fixture(scope="module")
def spm_tokenizer() -> Tokenizer:
    path = ARTIFACTS / "translation" / "spm.model"
    if not path.is_file():
        pytest.skip(f"{path} is missing (the committed translation tokenizer)")
    return Tokenizer(path)


@pytest.fixture(scope="module")
def covered(spm_tokenizer: Tokenizer) -> str:
    """Every character of some vocabulary piece (``▁`` aside): 99 characters, ASCII letters,
    digits, most ASCII punctuation, German umlauts and ß, a few accents and typographic quotes.
    Each of them is also a piece of its own (character_coverage=1.0)."""
    sp = spm_tokenizer.sp
    chars = {c for i in range(spm_tokenizer.vocab_size)
             if not (sp.is_unknown(i) or sp.is_control(i)) for c in sp.id_to_piece(i)}
    return "".join(sorted(chars - {"▁"}))


@FAST
@given(st.lists(any_text, min_size=1, max_size=4))
def test_spm_encode_never_fails_and_ids_are_in_vocab(spm_tokenizer: Tokenizer,
                                                     texts: list[str]) -> None:
    # Catches: a crash (500) on emoji/control/RTL/very long input, ids outside the embedding
    # table, specials (<pad>, <s>, </s>) slipped into a source, encoding that depends on
    # the other texts of the batch, and clean() not being applied before encoding.
    ids = spm_tokenizer.encode(texts)
    assert len(ids) == len(texts)
    for text, row in zip(texts, ids, strict=True):
        assert all(0 <= i < spm_tokenizer.vocab_size for i in row)
        assert not {SPM_PAD, SOS, EOS} & set(row)
        assert spm_tokenizer.encode([text]) == [row]
        assert spm_tokenizer.encode([clean(text)]) == [row]
        if clean(text) == "":
            assert row == []
        # (not conversely: SentencePiece's normaliser deletes some characters that are not
        # whitespace, e.g. U+200B or U+0001, so such a text encodes to []; the predictor
        # answers "" for a source with no pieces, see TranslationPredictor.translate.)


@FAST
@given(st.data())
def test_spm_round_trips_text_of_covered_characters(spm_tokenizer: Tokenizer, covered: str,
                                                    data: st.DataObject) -> None:
    # Property: a text whose characters are all covered (any whitespace in between or around)
    # decodes back to exactly clean(text). Catches a lossy normaliser (NFKC folding of a
    # covered character), lost/extra spaces, or pieces dropped by decode (e.g. ids > EOS
    # filtered with the wrong bound).
    words = data.draw(st.lists(st.text(alphabet=covered, min_size=1, max_size=15),
                               min_size=1, max_size=12))
    text = data.draw(whitespace_joined(st.just(words)))
    (row,) = spm_tokenizer.encode([text])
    assert 1 not in row  # no <unk> for covered characters
    assert spm_tokenizer.decode([row]) == [clean(text)]


@FAST
@given(any_text)
def test_spm_decode_of_arbitrary_text_keeps_only_covered_characters(
        spm_tokenizer: Tokenizer, covered: str, text: str) -> None:
    # Property: decoding never fails and yields only covered characters and spaces (unknown
    # characters are dropped, SentencePiece's NFKC may fold e.g. 'ﬁ' into 'fi'). It does NOT
    # promise clean() output: "a 😀 b" decodes to "a  b" (the <unk> between two spaces goes).
    # Catches: the '<unk>' piece (' ⁇ ') or '▁' leaking into translations.
    (row,) = spm_tokenizer.encode([text])
    (out,) = spm_tokenizer.decode([row])
    assert set(out) <= set(covered) | {" "}
    # specials around the ids are dropped by decode
    assert spm_tokenizer.decode([[SOS, *row, EOS, SPM_PAD, SPM_PAD]]) == [out]


# --------------------------------------------------------------------------- LM


@pytest.fixture(scope="module")
def lm_predictor() -> LMPredictor:
    folder = ARTIFACTS / "lm"
    if not (folder / "vocab.json").is_file():
        pytest.skip(f"{folder / 'vocab.json'} is missing (the committed LM vocabulary)")
    dictionary = Dictionary.load(folder)
    model = RNNLM(len(dictionary), embed_size=2, hidden_size=2)  # only encode() is used
    return LMPredictor(model, dictionary, {}, torch.device("cpu"), quantized=False)


@pytest.fixture(scope="module")
def lm_words(lm_predictor: LMPredictor) -> list[str]:
    return list(lm_predictor.dictionary.idx2word)


@FAST
@given(st.data())
def test_lm_encode_never_fails_and_maps_each_word(lm_predictor: LMPredictor,
                                                  lm_words: list[str],
                                                  data: st.DataObject) -> None:
    # Catches: a crash on odd input, ids outside the vocabulary, a word count that differs
    # from the prompt-word limit of the route (``len(prompt.split())``), a known word sent
    # as <unk>, or an unknown word not reported (the API returns ``unknown_words``).
    text = data.draw(st.one_of(any_text, whitespace_joined(
        st.lists(st.one_of(recased(lm_words), st.text(max_size=6)), max_size=12))))
    w2i = lm_predictor.dictionary.word2idx
    ids, unknown = lm_predictor.encode(text)
    words = text.split()
    assert len(ids) == len(words)
    assert all(0 <= i < len(lm_words) for i in ids)
    expected_unknown = []
    for word, i in zip(words, ids, strict=True):
        known = word if word in w2i else word.lower()
        if known in w2i:
            assert lm_words[i] == known
        else:
            assert i == w2i["<unk>"]
            expected_unknown.append(known)
    assert unknown == expected_unknown


@FAST
@given(st.data())
def test_lm_canonical_form_is_idempotent_and_case_insensitive(
        lm_predictor: LMPredictor, lm_words: list[str], data: st.DataObject) -> None:
    # Catches: canonical words that do not encode to themselves (a vocabulary word holding
    # whitespace, <unk> missing from the vocabulary), and lower-casing dropped (PTB is
    # lower-case: "The" must be "the" unless "The" is a word of its own).
    text = data.draw(st.one_of(any_text, whitespace_joined(
        st.lists(recased(lm_words), max_size=12))))
    ids, _ = lm_predictor.encode(text)
    canonical = " ".join(lm_words[i] for i in ids)
    assert lm_predictor.encode(canonical) == (ids, [])
    word = data.draw(st.sampled_from(lm_words))
    variant = data.draw(st.sampled_from(CASINGS))(word)
    if variant not in lm_predictor.dictionary.word2idx and variant.lower() == word:
        assert lm_predictor.encode(variant) == ([lm_predictor.dictionary.word2idx[word]], [])


# --------------------------------------------------------------------------- word2vec


@pytest.fixture(scope="module")
def w2v_predictor() -> Word2VecPredictor:
    folder = ARTIFACTS / "word2vec"
    if not (folder / "vocab.json").is_file():
        pytest.skip(f"{folder / 'vocab.json'} is missing (the committed word2vec vocabulary)")
    vocab = W2VVocab.load(folder)
    vectors = torch.randn(len(vocab), 4, generator=torch.Generator().manual_seed(0))
    return Word2VecPredictor(WordVectors(vocab, vectors), {"arch": "skipgram"})


def w2v_word(tokens: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(recased(tokens), any_text, st.sampled_from(["<unk>", "<UNK>", "N", "n"]))


@FAST
@given(st.data())
def test_w2v_canonical_is_in_vocab_idempotent_and_case_insensitive(
        w2v_predictor: Word2VecPredictor, data: st.DataObject) -> None:
    # Catches: resolve() raising something other than UnknownItemError (a 500) on odd text,
    # a canonical form outside the vocabulary or not its own canonical form, and lookups
    # that ignore the lower-case fallback or prefer it over an exact match ("N").
    tokens = w2v_predictor.vocab.tokens
    word = data.draw(w2v_word(tokens))
    try:
        canon = w2v_predictor.canonical(word)
    except UnknownItemError:
        assert word not in w2v_predictor.vocab and word.lower() not in w2v_predictor.vocab
        return
    assert canon in w2v_predictor.vocab
    assert canon == (word if word in w2v_predictor.vocab else word.lower())
    assert w2v_predictor.canonical(canon) == canon
    assert tokens[w2v_predictor.resolve(word)] == canon


@FEW
@given(st.data())
def test_w2v_request_paths_agree_on_unknown_words(w2v_predictor: Word2VecPredictor,
                                                  data: st.DataObject) -> None:
    # Catches: neighbors / similarity / analogy re-implementing the lookup differently from
    # resolve() (each has its own inline ``index.get(w, index.get(w.lower()))``), so a word
    # could be a 404 on one endpoint and known on another.
    tokens = w2v_predictor.vocab.tokens
    words = data.draw(st.lists(w2v_word(tokens), min_size=3, max_size=6))

    def known(w: str) -> bool:
        try:
            w2v_predictor.resolve(w)
        except UnknownItemError:
            return False
        return True

    found = w2v_predictor.neighbors(words, 1)
    assert [r is not None for r in found] == [known(w) for w in words]
    pairs = list(itertools.pairwise(words))
    for (a, b), (cos, unknown) in zip(pairs, w2v_predictor.similarity(pairs), strict=True):
        assert unknown == [w for w in (a, b) if not known(w)]
        assert (cos is None) == bool(unknown)
    a, b, c = words[:3]
    missing = [w for w in (a, b, c) if not known(w)]
    try:
        w2v_predictor.analogy(a, b, c, 1)
        assert not missing
    except UnknownItemError as exc:
        assert exc.details == {"unknown": missing}
