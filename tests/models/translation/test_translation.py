"""Translation data, models, decoding and predictor on tiny synthetic data and tiny models."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models.common.errors import InvalidInputError
from models.translation.data import (
    EOS,
    PAD,
    SOS,
    UNK,
    Encoded,
    Tokenizer,
    clean,
    pad_batch,
    token_batches,
    train_tokenizer,
)
from models.translation.decode import beam_search, gnmt_length_penalty, greedy_decode
from models.translation.model import Seq2Seq, build_model
from models.translation.predictor import TranslationPredictor

SUBJ = {"Mann": "man", "Frau": "woman", "Hund": "dog", "Junge": "boy", "Mädchen": "girl",
        "Kind": "child", "Arbeiter": "worker", "Koch": "cook", "Vogel": "bird",
        "Lehrer": "teacher", "Sänger": "singer", "Fischer": "fisherman"}
VERB = {"fährt": "rides", "sieht": "sees", "trägt": "carries", "wirft": "throws",
        "malt": "paints", "kauft": "buys", "sucht": "looks for", "hält": "holds",
        "repariert": "repairs", "öffnet": "opens", "verkauft": "sells", "fängt": "catches"}
OBJ = {"Fahrrad": "bike", "Ball": "ball", "Hut": "hat", "Baum": "tree", "Boot": "boat",
       "Buch": "book", "Schirm": "umbrella", "Korb": "basket", "Fisch": "fish",
       "Stuhl": "chair", "Kuchen": "cake", "Schlüssel": "key"}
PLACE = {"im Park": "in the park", "am Strand": "on the beach", "in der Küche": "in the kitchen",
         "auf der Straße": "on the street", "im Schnee": "in the snow",
         "vor dem Haus": "in front of the house", "neben einem Zelt": "next to a tent",
         "unter einer Brücke": "under a bridge"}
TINY_VOCAB = 120
TINY = {
    "transformer": {"d_model": 32, "nhead": 2, "num_encoder_layers": 2, "num_decoder_layers": 2,
                    "dim_feedforward": 64, "dropout": 0.0},
    "lstm": {"embed_size": 16, "hidden_size": 32, "num_layers": 2, "dropout": 0.0},
}
A, B, C = 4, 5, 6  # token ids of the hand-made models below


def synthetic_pairs(n: int = 400, seed: int = 0) -> list[tuple[str, str]]:
    """Template German→English sentence pairs ("Ein Mann fährt ein Fahrrad im Park.")."""
    rng = np.random.default_rng(seed)

    def pick(words: dict[str, str]) -> str:
        return list(words)[int(rng.integers(len(words)))]

    pairs = []
    for _ in range(n):
        s, v, o, p = pick(SUBJ), pick(VERB), pick(OBJ), pick(PLACE)
        pairs.append((f"Ein {s} {v} ein {o} {p}.",
                      f"A {SUBJ[s]} {VERB[v]} a {OBJ[o]} {PLACE[p]}."))
    return pairs


def build_tiny_tokenizer(out_dir: Path) -> Path:
    """A joint SentencePiece model (``TINY_VOCAB`` pieces) on the synthetic pairs."""
    return train_tokenizer([s for pair in synthetic_pairs() for s in pair], out_dir, TINY_VOCAB)


def write_tiny_artifact(root: Path, arch: str = "transformer", seed: int = 0) -> Path:
    """``root/translation``: a random tiny model + tiny tokenizer, written by the trainer's
    own ``write_artifact`` (float16 weights, config.json, card.json, spm.model)."""
    from models.translation.train import TrainConfig, write_artifact

    tok_dir = root / "tokenizer"
    tok = Tokenizer(build_tiny_tokenizer(tok_dir))
    torch.manual_seed(seed)
    cfg = TrainConfig.from_arch(arch, model=TINY[arch], out_dir=root / "translation",
                                checkpoint_dir=tok_dir, vocab_size=tok.vocab_size)
    model = build_model(arch, vocab_size=tok.vocab_size, **cfg.model)
    write_artifact(model, tok, cfg, {"history": [], "step": 0}, 0.0, {"val_loss_final": 0.0})
    return root / "translation"


def tiny_model(arch: str, vocab: int = 40, seed: int = 0) -> Seq2Seq:
    torch.manual_seed(seed)
    return build_model(arch, vocab_size=vocab, **TINY[arch]).eval()


def random_sources(lengths: list[int], vocab: int = 40, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return pad_batch([torch.randint(4, vocab, (n,), generator=g).tolist() for n in lengths],
                     bos_eos=False)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    return Tokenizer(build_tiny_tokenizer(tmp_path_factory.mktemp("spm")))


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_artifact(tmp_path_factory.mktemp("tr_artifact"))


# --- data -----------------------------------------------------------------------------------

def test_clean_turns_tabs_nbsp_and_space_runs_into_one_space() -> None:
    assert clean("  Ein\tMann\u00a0fährt   Rad. \n") == "Ein Mann fährt Rad."
    assert clean("Cafe\u0301") == "Café"  # NFC: e + combining acute → é


def test_tokenizer_round_trip_gives_the_cleaned_text(tokenizer: Tokenizer) -> None:
    texts = [de for de, _ in synthetic_pairs(20, seed=3)] + [
        "Ein  Mädchen\tfängt\u00a0einen Fisch am Strand.", "  A dog sees a key. "]
    ids = tokenizer.encode(texts)
    assert tokenizer.vocab_size == TINY_VOCAB
    assert all(row and min(row) > EOS for row in ids)  # no specials, no <unk>
    assert tokenizer.decode(ids) == [clean(t) for t in texts]
    assert tokenizer.decode([[SOS, *ids[0], EOS, PAD]]) == [clean(texts[0])]  # specials dropped


def test_token_batches_cover_each_pair_once_within_max_tokens() -> None:
    rng = np.random.default_rng(0)
    # the first source id names the pair; lengths vary from 1 to 30
    src = [[100 + i, *[7] * int(rng.integers(0, 30))] for i in range(200)]
    tgt = [[8] * int(rng.integers(1, 30)) for _ in range(200)]
    seen: list[int] = []
    for s, t in token_batches(Encoded(src, tgt), max_tokens=120, rng=rng):
        assert s.size(0) == t.size(0)
        assert s.size(0) == 1 or max(s.size(1), t.size(1)) * s.size(0) <= 120
        assert bool((t[:, 0] == SOS).all())
        seen += (s[:, 0] - 100).tolist()
    assert sorted(seen) == list(range(200))


# --- models ---------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["transformer", "lstm"])
def test_teacher_forcing_gives_logits_per_target_position(arch: str) -> None:
    model = tiny_model(arch)
    src, tgt_in = random_sources([5, 3, 7]), random_sources([4, 6, 2], seed=2)
    assert model(src, tgt_in).shape == (3, tgt_in.size(1), 40)
    assert model.decode(tgt_in, model.encode(src)).shape == (3, tgt_in.size(1), 40)


@torch.inference_mode()
def test_transformer_ignores_source_padding() -> None:
    model = tiny_model("transformer")
    short, long = [5, 9, 11], [6, 7, 8, 9, 10, 12, 13, 14]
    alone = model.encode(pad_batch([short], bos_eos=False))
    batched = model.encode(pad_batch([short, long], bos_eos=False))
    assert batched["memory"].shape[1] == len(long)
    torch.testing.assert_close(batched["memory"][0, :3], alone["memory"][0], atol=1e-5,
                               rtol=1e-4)
    tgt_in = torch.tensor([[SOS, 20, 21]])
    one = {k: v[:1] for k, v in batched.items()}
    torch.testing.assert_close(model.decode(tgt_in, one), model.decode(tgt_in, alone),
                               atol=1e-5, rtol=1e-4)


@torch.inference_mode()
def test_lstm_context_ignores_source_padding() -> None:
    model = tiny_model("lstm")
    short, long = [5, 9, 11], [6, 7, 8, 9, 10, 12, 13, 14]
    alone = model.encode(pad_batch([short], bos_eos=False))
    batched = model.encode(pad_batch([short, long], bos_eos=False))
    for key in ("hidden", "cell"):
        torch.testing.assert_close(batched[key][:1], alone[key], atol=1e-6, rtol=1e-5)


# --- decoding -------------------------------------------------------------------------------

class TableModel:
    """A hand-made "model": the next-token distribution is looked up by (source's first id,
    output prefix); unknown prefixes end the sentence. The encoder state is the source id,
    batch in dim 0, so beam search's ``index_select`` applies."""

    def __init__(self, tables: dict[int, dict[tuple[int, ...], dict[int, float]]],
                 vocab: int = 8) -> None:
        self.tables, self.vocab = tables, vocab

    def encode(self, src: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"src": src[:, :1].clone()}  # (B, 1)

    def decode(self, tgt_in: torch.Tensor, enc: dict[str, torch.Tensor],
               last_only: bool = False) -> torch.Tensor:
        logits = torch.zeros(tgt_in.size(0), tgt_in.size(1), self.vocab)  # only [:, -1] used
        for b in range(tgt_in.size(0)):
            table = self.tables[int(enc["src"][b, 0])]
            probs = torch.full((self.vocab,), 1e-9)
            for tok, p in table.get(tuple(tgt_in[b, 1:].tolist()), {EOS: 1.0}).items():
                probs[tok] = p
            logits[b, -1] = probs.log()
        return logits


def _trap(first: int, second: int) -> dict[tuple[int, ...], dict[int, float]]:
    """``first`` is the locally best start (0.6) but leads to at most 0.6·0.4·0.6 = 0.144;
    ``second`` (0.4) is followed by ``</s>`` with 0.95: 0.38 in total."""
    return {(): {first: 0.6, second: 0.4},
            (first,): {first: 0.4, EOS: 0.35, C: 0.25},
            (first, first): {EOS: 0.6, C: 0.4},
            (second,): {EOS: 0.95, C: 0.05}}


TRAP = TableModel({A: _trap(A, B), B: _trap(B, A)})


def test_beam_search_finds_the_more_probable_sequence_greedy_misses() -> None:
    src = torch.tensor([[A], [B]])  # the two sentences mirror each other
    greedy, greedy_scores = greedy_decode(TRAP, src)
    beam, beam_scores = beam_search(TRAP, src, beam_size=2, length_penalty=0.0)
    assert greedy == [[A, A], [B, B]]
    assert beam == [[B], [A]]
    assert greedy_scores == pytest.approx([math.log(0.6 * 0.4 * 0.6)] * 2, rel=1e-5)
    assert beam_scores == pytest.approx([math.log(0.4 * 0.95)] * 2, rel=1e-5)


def test_beam_search_keeps_going_while_weak_beams_end_early() -> None:
    # A A A A </s> has p = 0.9 · 0.98³ · 0.99 ≈ 0.84; the weak starts B and C end at once,
    # so "stop after K finished hypotheses" (fairseq) would return [B] (p 0.05).
    steady = {A: 0.98, EOS: 0.02}
    table = {(): {A: 0.9, B: 0.05, C: 0.05}, (A,): steady, (A, A): steady,
             (A, A, A): steady, (A, A, A, A): {EOS: 0.99, C: 0.01}}
    tokens, scores = beam_search(TableModel({A: table}), torch.tensor([[A]]), beam_size=3,
                                 length_penalty=0.0)
    assert tokens == [[A, A, A, A]]
    assert scores[0] == pytest.approx(math.log(0.9 * 0.98**3 * 0.99), rel=1e-5)


def test_beam_score_is_divided_by_the_gnmt_length_penalty() -> None:
    _, scores = beam_search(TRAP, torch.tensor([[A]]), beam_size=3, length_penalty=0.6)
    lp = ((5 + 2) / 6) ** 0.6  # |Y| = 2: the token and </s>
    assert gnmt_length_penalty(2, 0.6) == pytest.approx(lp)
    assert scores[0] == pytest.approx(math.log(0.4 * 0.95) / lp, rel=1e-5)


@pytest.mark.parametrize("arch", ["transformer", "lstm"])
@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_beam_size_one_equals_greedy(arch: str, alpha: float) -> None:
    model = tiny_model(arch, seed=3)
    src = random_sources([3, 9, 1, 6, 12, 4])
    greedy, greedy_scores = greedy_decode(model, src)
    beam, beam_scores = beam_search(model, src, beam_size=1, length_penalty=alpha)
    assert beam == greedy
    expected = [s / gnmt_length_penalty(len(t) + 1, alpha)
                for t, s in zip(greedy, greedy_scores, strict=True)]
    assert beam_scores == pytest.approx(expected, abs=1e-4)
    assert len({tuple(t) for t in greedy}) > 1  # the sentences really differ


@pytest.mark.parametrize("arch", ["transformer", "lstm"])
def test_batched_beam_search_matches_one_sentence_at_a_time(arch: str) -> None:
    model = tiny_model(arch, seed=4)
    src = random_sources([5, 2, 8, 3])
    together, scores = beam_search(model, src, beam_size=4)
    for i in range(src.size(0)):
        row = src[i:i + 1, : int((src[i] != PAD).sum())]
        alone, alone_score = beam_search(model, row, beam_size=4)
        assert alone[0] == together[i]
        assert alone_score[0] == pytest.approx(scores[i], abs=1e-4)


class NeverEnds:
    """A hand-made model for which ``</s>`` is never among the best three next tokens."""

    def encode(self, src: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"src": src}

    def decode(self, tgt_in: torch.Tensor, enc: dict[str, torch.Tensor],
               last_only: bool = False) -> torch.Tensor:
        probs = torch.full((8,), 1e-9)
        probs[C], probs[A], probs[7], probs[EOS] = 0.5, 0.25, 0.25, 1e-6
        return probs.log().expand(tgt_in.size(0), tgt_in.size(1), 8)


@pytest.mark.parametrize("decoder", ["greedy", "beam"])
def test_output_length_limit_is_a_times_source_plus_b(decoder: str) -> None:
    src = pad_batch([[A], [A, 7, 7, 7], [A, *[7] * 9]], bos_eos=False)  # lengths 1, 4, 10

    def lengths(**limits: float) -> list[int]:
        tokens = (greedy_decode(NeverEnds(), src, **limits) if decoder == "greedy"  # type: ignore[arg-type]
                  else beam_search(NeverEnds(), src, beam_size=3, **limits))[0]  # type: ignore[arg-type]
        return [len(t) for t in tokens]

    assert lengths() == [math.floor(1.2 * n + 10) for n in (1, 4, 10)]  # 11, 14, 22
    assert lengths(max_len_a=0.0, max_len_b=3) == [3, 3, 3]
    assert lengths(max_len=12) == [11, 12, 12]


def test_random_models_stop_within_the_limit() -> None:
    src = random_sources([2, 7, 15])
    for arch in ("transformer", "lstm"):
        model = tiny_model(arch, seed=5)
        for tokens in (greedy_decode(model, src)[0], beam_search(model, src, beam_size=3)[0]):
            assert all(len(t) <= math.floor(1.2 * n + 10)
                       for t, n in zip(tokens, (2, 7, 15), strict=True))
            assert all(PAD not in t and SOS not in t and EOS not in t for t in tokens)


# --- predictor ------------------------------------------------------------------------------

def test_predictor_keeps_the_order_of_a_batch(artifact: Path) -> None:
    predictor = TranslationPredictor.load(artifact)
    texts = ["Ein Mann fährt ein Fahrrad im Park.", "Ein Hund sieht einen Ball.",
             "Ein Koch kauft einen Fisch am Strand unter einer Brücke im Schnee."]
    together = predictor.translate(texts, beam_size=3, batch_size=2)
    alone = [predictor.translate([t], beam_size=3)[0] for t in texts]
    assert [r.text for r in together] == [r.text for r in alone]
    assert [r.score for r in together] == pytest.approx([r.score for r in alone], abs=1e-4)
    assert len({r.text for r in together}) == 3
    assert all(r.score < 0 for r in together)


@pytest.mark.parametrize("text", [
    "A man is riding a bike.", "Zwei 😀 Hunde 🐶!", "1234 5678 90", "!!! ??? ...",
    "Donaudampfschifffahrtsgesellschaftskapitänsmütze" * 10, "x" * 1000, "\u200b",
])
def test_unusual_input_still_gets_a_translation(artifact: Path, text: str) -> None:
    predictor = TranslationPredictor.load(artifact)
    (result,) = predictor.translate([text], beam_size=2, max_source_tokens=50)
    assert isinstance(result.text, str) and math.isfinite(result.score)
    assert len(result.tokens) <= math.floor(1.2 * 50 + 10)


@pytest.mark.parametrize("texts", [[""], ["   \t "], ["Ein Hund.", "\u00a0"]])
def test_blank_text_raises_invalid_input(artifact: Path, texts: list[str]) -> None:
    predictor = TranslationPredictor.load(artifact)
    with pytest.raises(InvalidInputError, match="empty or only whitespace"):
        predictor.translate(texts)


def test_greedy_and_max_length_in_the_predictor(artifact: Path) -> None:
    predictor = TranslationPredictor.load(artifact)
    text = ["Ein Lehrer repariert einen Stuhl vor dem Haus."]
    (greedy,) = predictor.translate(text, beam_size=1)
    (beam1,) = predictor.translate(text, beam_size=1, length_penalty=0.0)
    assert greedy.text == beam1.text
    (short,) = predictor.translate(text, beam_size=4, max_length=3)
    assert len(short.tokens) <= 3


@pytest.mark.parametrize("arch", ["transformer", "lstm"])
def test_int8_predictor_loads_on_cpu_and_translates(tmp_path: Path, arch: str) -> None:
    path = write_tiny_artifact(tmp_path, arch)
    fp32 = TranslationPredictor.load(path)
    int8 = TranslationPredictor.load(path, "cpu", quantize=True)
    assert int8.quantized and int8.device.type == "cpu"
    kinds = {m._get_name() for m in int8.model.modules()}
    assert "DynamicQuantizedLinear" in kinds
    if arch == "lstm":
        assert "DynamicQuantizedLSTM" in kinds
    texts = ["Ein Mann fährt ein Fahrrad.", "Ein Vogel hält einen Korb."]
    out, ref = int8.translate(texts, beam_size=2), fp32.translate(texts, beam_size=2)
    assert len(out) == 2 and all(isinstance(r.text, str) for r in out)
    assert [r.score for r in out] == pytest.approx([r.score for r in ref], abs=1.0)


# --- learning -------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_tiny_transformer_learns_to_translate_a_handful_of_pairs(tokenizer: Tokenizer) -> None:
    torch.manual_seed(0)
    pairs = synthetic_pairs(6, seed=7)
    src = pad_batch(tokenizer.encode([de for de, _ in pairs]), bos_eos=False)
    tgt = pad_batch(tokenizer.encode([en for _, en in pairs]), bos_eos=True)
    model = build_model("transformer", vocab_size=tokenizer.vocab_size, **TINY["transformer"])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(300):
        logits = model(src, tgt[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), tgt[:, 1:].flatten(), ignore_index=PAD)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if loss.item() < 0.01:
            break
    model.eval()
    tokens, _ = beam_search(model, src, beam_size=3)
    assert tokenizer.decode(tokens) == [en for _, en in pairs]
    assert UNK not in {t for row in tokens for t in row}


@pytest.mark.parametrize("arch", ["transformer", "lstm"])
def test_last_only_decoding_equals_the_last_position_of_full_decoding(arch: str) -> None:
    torch.manual_seed(0)
    config = ({"d_model": 16, "nhead": 2, "num_encoder_layers": 1, "num_decoder_layers": 1,
               "dim_feedforward": 32} if arch == "transformer"
              else {"embed_size": 8, "hidden_size": 16, "num_layers": 1, "dropout": 0.0})
    model = build_model(arch, vocab_size=20, **config).eval()
    src = torch.tensor([[5, 6, 7, 0], [8, 9, 10, 11]])
    tgt = torch.tensor([[SOS, 12, 13], [SOS, 14, 15]])
    with torch.inference_mode():
        enc = model.encode(src)
        full, last = model.decode(tgt, enc), model.decode(tgt, enc, last_only=True)
    assert last.shape == (2, 1, 20)
    assert torch.allclose(full[:, -1:], last, atol=1e-5)


def test_cached_step_decoding_equals_full_decoding_through_beam_reordering() -> None:
    """The Transformer's incremental decoding (per-layer prefix cache kept in ``enc``) gives
    the last-position logits of a full decode at every step, also after the rows of ``enc``
    are reordered as beam search does, and the decoders' outputs do not change."""
    torch.manual_seed(0)
    model = build_model("transformer", vocab_size=20, d_model=16, nhead=2,
                        num_encoder_layers=1, num_decoder_layers=2, dim_feedforward=32).eval()
    src = torch.tensor([[5, 6, 7, 0], [8, 9, 10, 11], [12, 13, 0, 0]])
    steps = torch.tensor([[12, 13, 14], [15, 16, 17], [18, 19, 12], [13, 14, 15]])
    with torch.inference_mode():
        enc = model.encode(src)
        ys = torch.full((3, 1), SOS)
        for step, nxt in enumerate(steps):
            cached = model.decode(ys, enc, last_only=True)
            assert "self_0" in enc and enc["self_1"].shape == (3, step + 1, 16)
            full = model.decode(ys, {k: enc[k] for k in ("memory", "src_pad")})
            assert torch.allclose(full[:, -1:], cached, atol=1e-5)
            order = torch.tensor([2, 0, 1]) if step % 2 else torch.tensor([1, 1, 0])
            ys = torch.cat([ys, nxt[:, None]], dim=1).index_select(0, order)
            enc = {k: v.index_select(0, order) for k, v in enc.items()}
