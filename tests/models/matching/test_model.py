"""Matching models: shapes, gradients, hand-checked matching matrices and k-max pooling,
letter-trigram hashing, and scores that do not depend on batch padding."""

from __future__ import annotations

import json
import zlib

import pytest
import torch
import torch.nn.functional as F

from models.matching.features import (
    MAX_TRIGRAMS,
    Featurizer,
    MatchBatch,
    Vocab,
    letter_trigrams,
    tokenize,
    trigram_ids,
)
from models.matching.model import (
    ARCHS,
    MVLSTM,
    Embedder,
    MatchPyramid,
    build_model,
    kmax_pooling,
    matching_matrix,
)

N_BUCKETS = 97
TINY = {
    "dssm": {"hidden": 8, "out_dim": 4},
    "mvlstm": {"embed_dim": 8, "hidden": 4, "k": 5, "mlp_hidden": 8},
    "matchpyramid": {"embed_dim": 8, "channels": 4, "mlp_hidden": 8},
    "esim": {"embed_dim": 8, "hidden": 4},
    "bimpm": {"embed_dim": 8, "hidden": 4, "perspectives": 3, "agg_hidden": 4},
}
PAIRS = [
    (tokenize("How do I learn Python quickly?"), tokenize("What's the best way to learn Python?")),
    (tokenize("is java hard"), tokenize("why is java so hard to learn ?")),
    (tokenize("what is love"), tokenize("what")),
]
VOCAB = Vocab.build([t for pair in PAIRS for t in pair], min_count=1)


def featurize(pairs: list[tuple[list[str], list[str]]]) -> MatchBatch:
    return Featurizer(VOCAB, n_buckets=N_BUCKETS).batch(pairs)


def tiny_model(arch: str, **extra: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(arch, vocab_size=len(VOCAB), n_buckets=N_BUCKETS,
                       **{**TINY[arch], **extra})


def embedding_weights(model: torch.nn.Module) -> list[torch.Tensor]:
    """The word and trigram tables (DSSM has only its trigram layer)."""
    if hasattr(model, "embed"):
        return [model.embed.word.weight, model.embed.trigram.weight]
    return [model.trigram.weight]


@pytest.mark.parametrize("arch", ARCHS)
def test_forward_gives_finite_float_logit_per_pair_and_gradients_reach_embeddings(
        arch: str) -> None:
    model = tiny_model(arch)
    # "rust" and "golang" are not in the vocabulary: UNK ids, trigrams still present
    batch = featurize([*PAIRS, (tokenize("rust or golang ?"), tokenize("learn rust"))])

    logits = model(batch)

    assert logits.shape == (4,)
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    logits.sum().backward()
    for weight in embedding_weights(model):
        assert weight.grad is not None
        assert weight.grad.abs().sum() > 0


def test_indicator_matrix_marks_equal_known_ids_and_never_pad_or_unk() -> None:
    a_ids = torch.tensor([[5, 1, 0]])       # word, UNK, PAD
    b_ids = torch.tensor([[0, 1, 5, 5]])    # PAD, UNK, word, word
    vectors = torch.zeros(1, 3, 2)

    m = matching_matrix(vectors, torch.zeros(1, 4, 2), "indicator", a_ids, b_ids)

    expected = torch.tensor([[[0.0, 0.0, 1.0, 1.0],
                              [0.0, 0.0, 0.0, 0.0],
                              [0.0, 0.0, 0.0, 0.0]]])
    assert torch.equal(m, expected)


def test_dot_and_cosine_matrices_match_hand_computed_values() -> None:
    a = torch.tensor([[[1.0, 0.0], [3.0, 4.0]]])              # (1, 2, 2)
    b = torch.tensor([[[0.0, 2.0], [3.0, 4.0], [0.0, 0.0]]])  # (1, 3, 2); last is a zero vector

    dot = matching_matrix(a, b, "dot")
    cosine = matching_matrix(a, b, "cosine")

    assert torch.allclose(dot, torch.tensor([[[0.0, 3.0, 0.0], [8.0, 25.0, 0.0]]]))
    assert torch.allclose(cosine, torch.tensor([[[0.0, 0.6, 0.0], [0.8, 1.0, 0.0]]]))


def test_matching_matrix_rejects_unknown_kind_and_indicator_without_ids() -> None:
    a = torch.zeros(1, 2, 3)
    with pytest.raises(ValueError, match="unknown matching matrix kind"):
        matching_matrix(a, a, "bilinear")
    with pytest.raises(ValueError, match="needs a_ids and b_ids"):
        matching_matrix(a, a, "indicator")


def test_kmax_pooling_skips_masked_cells_and_pads_with_zero() -> None:
    matrix = torch.tensor([[[1.0, 9.0, 3.0], [4.0, -2.0, 6.0]],    # 9.0 is masked
                           [[-1.0, -5.0, 2.0], [7.0, 8.0, 0.5]]])  # only -1.0 and 0.5 valid
    mask = torch.tensor([[[True, False, True], [True, True, True]],
                         [[True, False, False], [False, False, True]]])

    top = kmax_pooling(matrix, mask, k=3)

    assert torch.equal(top, torch.tensor([[6.0, 4.0, 3.0], [0.5, -1.0, 0.0]]))


def test_kmax_pooling_with_k_above_matrix_size_pads_with_zero() -> None:
    matrix = torch.tensor([[[-3.0, 5.0]]])
    mask = torch.ones(1, 1, 2, dtype=torch.bool)

    assert torch.equal(kmax_pooling(matrix, mask, k=4), torch.tensor([[5.0, -3.0, 0.0, 0.0]]))


def test_letter_trigrams_of_good_are_dssm_word_hashing() -> None:
    assert letter_trigrams("good") == ["#go", "goo", "ood", "od#"]
    assert letter_trigrams("a") == ["#a#"]


def test_trigram_ids_are_stable_crc32_buckets_in_range() -> None:
    ids = trigram_ids("good", 1000)

    assert ids == tuple(zlib.crc32(t.encode()) % 999 + 1 for t in ("#go", "goo", "ood", "od#"))
    assert all(1 <= i < 1000 for i in ids)
    assert len(trigram_ids("internationalization", 1000)) == MAX_TRIGRAMS


def test_embedder_zeroes_padding_and_appends_exact_match_flag() -> None:
    torch.manual_seed(0)
    embed = Embedder(len(VOCAB), 6, N_BUCKETS, dropout=0.0)
    batch = featurize([PAIRS[2], PAIRS[0]])  # row 0: "what is love" padded to 7 tokens

    a = embed(batch.a_ids, batch.a_tri, batch.a_em)

    assert embed.output_dim == 7
    assert a.shape == (2, 7, 7)
    assert a[0, 3:].abs().sum() == 0                 # padding
    assert a[0, :3, -1].tolist() == [1.0, 0.0, 0.0]  # only "what" occurs in row 0's side b


INVARIANCE = [pytest.param(arch, {}, id=arch) for arch in ARCHS] + [
    pytest.param("mvlstm", {"interaction": "dot"}, id="mvlstm-dot"),
    pytest.param("matchpyramid", {"matching": "indicator"}, id="matchpyramid-indicator"),
    pytest.param("matchpyramid", {"matching": "cosine"}, id="matchpyramid-cosine"),
    pytest.param("bimpm", {"highway": True}, id="bimpm-highway"),
]


@pytest.mark.parametrize(("arch", "extra"), INVARIANCE)
@pytest.mark.parametrize("pair", [PAIRS[2], PAIRS[1]], ids=["shorter-than-k", "longer"])
def test_score_of_pair_alone_equals_score_inside_padded_batch(
        arch: str, extra: dict[str, object], pair: tuple[list[str], list[str]]) -> None:
    model = tiny_model(arch, **extra).eval()
    longer_a = (tokenize("how do i learn python quickly , is it hard ?"), ["python"])
    longer_b = (["java"], tokenize("what is the best way to learn python , is it hard ?"))

    with torch.no_grad():
        alone = model(featurize([pair]))
        padded = model(featurize([longer_a, pair, longer_b]))

    assert torch.allclose(padded[1], alone[0], atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_json_config_rebuilds_the_same_model(arch: str) -> None:
    config = {"vocab_size": len(VOCAB), "n_buckets": N_BUCKETS, **TINY[arch]}
    model = tiny_model(arch).eval()
    rebuilt = build_model(arch, **json.loads(json.dumps(config))).eval()
    rebuilt.load_state_dict(model.state_dict())
    batch = featurize(PAIRS)

    with torch.no_grad():
        assert torch.equal(rebuilt(batch), model(batch))


def test_build_model_with_unknown_arch_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown arch 'bert'.*dssm.*mvlstm.*matchpyramid.*esim"):
        build_model("bert", vocab_size=10, n_buckets=10)


def test_invalid_hyper_parameters_are_rejected_with_the_choices() -> None:
    with pytest.raises(ValueError, match="interaction must be"):
        MVLSTM(10, 10, interaction="tensor")
    with pytest.raises(ValueError, match="matching must be one of"):
        MatchPyramid(10, 10, matching="bilinear")
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        MatchPyramid(10, 10, kernel_size=4)


def test_bimpm_perspective_cosines_have_the_strategy_shapes_and_ignore_padding() -> None:
    from models.matching.model import BiMPM, paired_perspective_cosine, perspective_cosine

    a, b, w = torch.randn(2, 5, 4), torch.randn(2, 3, 4), torch.rand(6, 4) + 0.5
    pair = perspective_cosine(a, b, w)
    assert pair.shape == (2, 6, 5, 3)
    by_hand = torch.nn.functional.cosine_similarity(a[1, 2] * w[4], b[1, 0] * w[4], dim=0)
    assert float(pair[1, 4, 2, 0]) == pytest.approx(float(by_hand), abs=1e-5)
    assert paired_perspective_cosine(a, a, w).allclose(torch.ones(2, 5, 6), atol=1e-5)
    model = tiny_model("bimpm").eval()
    assert isinstance(model, BiMPM)
    p, q = torch.randn(1, 4, 8), torch.randn(1, 3, 8)
    q_padded = torch.cat([q, torch.zeros(1, 2, 8)], dim=1)
    full = model._match(p, q, torch.tensor([3]), torch.ones(1, 3, dtype=torch.bool))
    padded = model._match(p, q_padded, torch.tensor([3]),
                          torch.tensor([[True, True, True, False, False]]))
    assert full.shape == (1, 4, 8 * 3)  # 4 strategies x 2 directions x 3 perspectives
    torch.testing.assert_close(full, padded, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(("la", "lb"), [(5, 3), (3, 5)])  # either side is the weighted one
def test_bimpm_cosines_equal_normalising_the_weighted_vectors_first(la: int, lb: int) -> None:
    from models.matching.model import paired_perspective_cosine, perspective_cosine

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, la, 7, generator=g), torch.randn(2, lb, 7, generator=g)
    w = torch.rand(4, 7, generator=g) + 0.5
    a[0, -1] = 0.0  # a padding position: its cosines are 0, not NaN
    aw = F.normalize(a.unsqueeze(1) * w[None, :, None, :], dim=-1)  # (B, P, La, H)
    bw = F.normalize(b.unsqueeze(1) * w[None, :, None, :], dim=-1)
    torch.testing.assert_close(perspective_cosine(a, b, w), aw @ bw.transpose(-1, -2),
                               atol=1e-5, rtol=1e-4)
    n = min(la, lb)
    direct = (F.normalize(a[:, :n].unsqueeze(2) * w, dim=-1)
              * F.normalize(b[:, :n].unsqueeze(2) * w, dim=-1)).sum(-1)
    torch.testing.assert_close(paired_perspective_cosine(a[:, :n], b[:, :n], w), direct,
                               atol=1e-5, rtol=1e-4)
    a.requires_grad_(True)
    (perspective_cosine(a, b, w).sum() + paired_perspective_cosine(a[:, :n], b[:, :n], w)
     .sum()).backward()
    assert a.grad is not None and bool(torch.isfinite(a.grad).all())


def test_highway_gate_mixes_the_transform_with_the_input() -> None:
    from models.matching.model import Highway

    layer = Highway(3)
    x = torch.tensor([[0.5, -1.0, 2.0]])
    with torch.no_grad():
        layer.gate.weight.zero_()
        layer.gate.bias.fill_(-30.0)  # gate shut: the input passes through
        torch.testing.assert_close(layer(x), x)
        layer.gate.bias.fill_(30.0)   # gate open: tanh(W x + b) alone
        torch.testing.assert_close(layer(x), torch.tanh(layer.transform(x)))
        layer.gate.bias.zero_()       # half and half
        torch.testing.assert_close(layer(x), 0.5 * torch.tanh(layer.transform(x)) + 0.5 * x)


def test_bimpm_highway_adds_three_layers_that_train() -> None:
    plain, highway = tiny_model("bimpm"), tiny_model("bimpm", highway=True)
    extra = {k for k, _ in highway.named_parameters()} - {k for k, _ in plain.named_parameters()}
    assert {k.split(".")[0] for k in extra} == {"word_highway", "match_highway",
                                                "aggregation_highway"}
    highway(featurize(PAIRS)).sum().backward()
    for name, weight in highway.named_parameters():
        if name in extra:
            assert weight.grad is not None and weight.grad.abs().sum() > 0, name
