"""Five deep text-matching models over a :class:`~models.matching.features.MatchBatch`.

- :class:`DSSM`: Huang et al. 2013, "Learning deep structured semantic models for web search
  using clickthrough data" (representation-based: letter-trigram bag → MLP → cosine).
- :class:`MVLSTM`: Wan et al. AAAI 2016, "A Deep Architecture for Semantic Matching with
  Multiple Positional Sentence Representations" (BiLSTM → interaction matrix → k-max pooling).
- :class:`MatchPyramid`: Pang et al. AAAI 2016, "Text Matching as Image Recognition"
  (matching matrix → 2-D convolution → dynamic pooling).
- :class:`ESIM`: Chen et al. ACL 2017, "Enhanced LSTM for Natural Language Inference"
  (BiLSTM encoding → soft alignment → enhancement → composition BiLSTM → pooling).
- :class:`BiMPM`: Wang, Hamza & Florian IJCAI 2017, "Bilateral Multi-Perspective Matching for
  Natural Language Sentences" (context BiLSTM → four multi-perspective matching strategies
  both ways → aggregation BiLSTM → MLP).

Every model maps a batch to ``(B,)`` float32 logits; ``sigmoid(logit)`` is the probability
that the pair matches. Padding never changes a score: LSTMs run on packed sequences and every
pooling, softmax and convolution region is masked to the true lengths. Constructors take only
JSON values, so ``build_model(arch, **config)`` rebuilds a model from ``config.json``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.matching.features import PAD, UNK, MatchBatch

ARCHS = ("dssm", "mvlstm", "matchpyramid", "esim", "bimpm")
INTERACTIONS = ("indicator", "dot", "cosine")


def _mask(ids: torch.Tensor) -> torch.Tensor:
    """``(B, L)`` bool, True on real tokens."""
    return ids != PAD


def _neg(x: torch.Tensor) -> float:
    """The most negative finite value of ``x``'s dtype (stands in for -inf before a mask)."""
    return torch.finfo(x.dtype).min


def run_packed(lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Run a ``batch_first`` LSTM on the first ``lengths[i]`` steps of each row.

    Args:
        x: ``(B, L, E)`` float inputs.
        lengths: ``(B,)`` int64 true lengths (>= 1).

    Returns:
        ``(B, L, H)`` outputs (``H`` = 2 × hidden for a BiLSTM), zeros on padding.
    """
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True,
                                               enforce_sorted=False)
    out, _ = lstm(packed)
    out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
    return out


class Embedder(nn.Module):
    """Token vectors: word embedding + summed letter-trigram embeddings (+ exact-match flag).

    The trigram part is fastText-style subword information (Bojanowski et al. 2017) over the
    DSSM word hashing, so an out-of-vocabulary word (``UNK``) still carries signal. The
    exact-match flag is concatenated as one extra channel with its raw 0/1 value (it is not
    dropped out). Padding positions give zero vectors. Word rows start at PyTorch's N(0, 1),
    trigram rows at N(0, 0.1²) since a token sums up to ``MAX_TRIGRAMS`` of them.

    Args:
        vocab_size: word ids ``0..vocab_size-1`` (0 = PAD, its row stays zero).
        embed_dim: ``E``, size of the word and trigram embeddings.
        n_buckets: letter-trigram hash space (id 0 = padding).
        use_trigrams: add the trigram embeddings.
        use_exact_match: append the exact-match flag channel.
        dropout: dropout on the word + trigram vector.

    Attributes:
        word: the ``nn.Embedding``; copy pretrained vectors into its rows.
        output_dim: ``E + 1`` with the exact-match channel, else ``E``.
    """

    def __init__(self, vocab_size: int, embed_dim: int, n_buckets: int,
                 use_trigrams: bool = True, use_exact_match: bool = True,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.word = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD)
        self.trigram = (nn.EmbeddingBag(n_buckets, embed_dim, mode="sum", padding_idx=0)
                        if use_trigrams else None)
        if self.trigram is not None:
            nn.init.normal_(self.trigram.weight, std=0.1)
            with torch.no_grad():
                self.trigram.weight[0].zero_()
        self.use_exact_match = use_exact_match
        self.dropout = nn.Dropout(dropout)
        self.output_dim = embed_dim + int(use_exact_match)

    def forward(self, ids: torch.Tensor, tri: torch.Tensor, em: torch.Tensor) -> torch.Tensor:
        """``ids (B, L)`` int64, ``tri (B, L, MAX_TRIGRAMS)`` int64, ``em (B, L)`` float32
        → ``(B, L, output_dim)`` float32."""
        x = self.word(ids)                                               # (B, L, E)
        if self.trigram is not None:
            bags = self.trigram(tri.reshape(-1, tri.size(-1)))           # (B*L, E)
            x = x + bags.view_as(x)
        x = self.dropout(x)
        if self.use_exact_match:
            x = torch.cat([x, em.unsqueeze(-1).to(x.dtype)], dim=-1)     # (B, L, E+1)
        return x


# --------------------------------------------------------------------------- DSSM


class DSSM(nn.Module):
    """Deep Structured Semantic Model (Huang et al. 2013), scored pointwise.

    Each text is the bag (count vector) of the letter trigrams of all its tokens; the first
    dense layer on that vector is an ``EmbeddingBag`` in sum mode (plus a bias), then two
    more tanh layers give a semantic vector. ``logit = scale · cos(a, b) + bias`` with a
    learnable scale and bias (the paper instead takes a softmax over documents of
    ``γ · cos``). Word ids and exact-match flags are not used.

    Args:
        vocab_size: unused (kept so every architecture takes the same base config).
        n_buckets: letter-trigram hash space, the input dimension of the count vector.
        hidden: size of the two hidden layers (300 in the paper).
        out_dim: size of the semantic vector (128 in the paper).
        dropout: dropout after each hidden layer.
    """

    def __init__(self, vocab_size: int, n_buckets: int, hidden: int = 300,
                 out_dim: int = 128, dropout: float = 0.1) -> None:
        super().__init__()
        self.trigram = nn.EmbeddingBag(n_buckets, hidden, mode="sum", padding_idx=0)
        nn.init.xavier_uniform_(self.trigram.weight)  # the paper's uniform ±sqrt(6/(in+out))
        with torch.no_grad():
            self.trigram.weight[0].zero_()
        self.bias1 = nn.Parameter(torch.zeros(hidden))
        self.mlp = nn.Sequential(
            nn.Tanh(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.Tanh(), nn.Dropout(dropout),
            nn.Linear(hidden, out_dim), nn.Tanh(),
        )
        self.scale = nn.Parameter(torch.tensor(5.0))
        self.bias = nn.Parameter(torch.tensor(-2.5))

    def encode(self, tri: torch.Tensor) -> torch.Tensor:
        """``tri (B, L, MAX_TRIGRAMS)`` int64 → ``(B, out_dim)`` float32 semantic vectors."""
        bag = tri.reshape(tri.size(0), -1)                      # (B, L*MAX_TRIGRAMS)
        return self.mlp(self.trigram(bag) + self.bias1)         # (B, out_dim)

    def forward(self, batch: MatchBatch) -> torch.Tensor:
        """``(B,)`` float32 logits."""
        cos = F.cosine_similarity(self.encode(batch.a_tri), self.encode(batch.b_tri), dim=-1)
        return self.scale * cos + self.bias


# --------------------------------------------------------------------------- MV-LSTM


def kmax_pooling(matrix: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` largest valid cells of each interaction matrix, in descending order.

    Args:
        matrix: ``(B, La, Lb)`` float scores.
        mask: ``(B, La, Lb)`` bool, True on valid cells (both tokens real).
        k: number of values kept.

    Returns:
        ``(B, k)``: the largest valid values, descending, then 0.0 in the places left over
        when a row has fewer than ``k`` valid cells.
    """
    flat = matrix.flatten(1).masked_fill(~mask.flatten(1), _neg(matrix))  # (B, La*Lb)
    top, idx = flat.topk(min(k, flat.size(1)), dim=1)                     # (B, k')
    top = torch.where(mask.flatten(1).gather(1, idx), top, torch.zeros_like(top))
    return F.pad(top, (0, k - top.size(1)))                               # (B, k)


class MVLSTM(nn.Module):
    """MV-LSTM (Wan et al. 2016): positional BiLSTM representations, their interaction
    matrix, k-max pooling over it and an MLP.

    Args:
        vocab_size, n_buckets: see :class:`Embedder`.
        embed_dim: word/trigram embedding size.
        hidden: LSTM state size per direction (100).
        k: number of strongest interactions kept (10).
        interaction: ``"cosine"`` or ``"dot"`` between positional representations.
        mlp_hidden: hidden size of the scoring MLP.
        use_trigrams, use_exact_match: :class:`Embedder` inputs.
        dropout: on embeddings and in the MLP.
    """

    def __init__(self, vocab_size: int, n_buckets: int, embed_dim: int = 100,
                 hidden: int = 100, k: int = 10, interaction: str = "cosine",
                 mlp_hidden: int = 64, use_trigrams: bool = True,
                 use_exact_match: bool = True, dropout: float = 0.2) -> None:
        super().__init__()
        if interaction not in ("cosine", "dot"):
            raise ValueError(f"interaction must be 'cosine' or 'dot'; got {interaction!r}")
        self.k, self.interaction = k, interaction
        self.embed = Embedder(vocab_size, embed_dim, n_buckets, use_trigrams,
                              use_exact_match, dropout)
        self.lstm = nn.LSTM(self.embed.output_dim, hidden, batch_first=True,
                            bidirectional=True)
        self.mlp = nn.Sequential(nn.Linear(k, mlp_hidden), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(mlp_hidden, 1))

    def forward(self, batch: MatchBatch) -> torch.Tensor:
        """``(B,)`` float32 logits."""
        a = run_packed(self.lstm, self.embed(batch.a_ids, batch.a_tri, batch.a_em),
                       batch.a_len)                                      # (B, La, 2H)
        b = run_packed(self.lstm, self.embed(batch.b_ids, batch.b_tri, batch.b_em),
                       batch.b_len)                                      # (B, Lb, 2H)
        scores = matching_matrix(a, b, self.interaction)                 # (B, La, Lb)
        mask = _mask(batch.a_ids).unsqueeze(2) & _mask(batch.b_ids).unsqueeze(1)
        return self.mlp(kmax_pooling(scores, mask, self.k)).squeeze(-1)  # (B,)


# --------------------------------------------------------------------------- MatchPyramid


def matching_matrix(a: torch.Tensor, b: torch.Tensor, kind: str,
                    a_ids: torch.Tensor | None = None,
                    b_ids: torch.Tensor | None = None) -> torch.Tensor:
    """Word-by-word similarity of two texts (the matching matrix of Pang et al. 2016).

    Args:
        a: ``(B, La, D)`` float token vectors.
        b: ``(B, Lb, D)`` float token vectors.
        kind: ``"indicator"`` (1.0 where the token ids are equal, needs ``a_ids``/``b_ids``;
            PAD and UNK never match, since an unknown token's identity is lost),
            ``"dot"`` (``a · b``) or ``"cosine"`` (``cos(a, b)``, 0 for a zero vector).
        a_ids, b_ids: ``(B, La)`` / ``(B, Lb)`` int64 token ids, for ``"indicator"``.

    Returns:
        ``(B, La, Lb)`` float.

    Raises:
        ValueError: an unknown ``kind``, or ``"indicator"`` without ids.
    """
    if kind == "indicator":
        if a_ids is None or b_ids is None:
            raise ValueError("the indicator matching matrix needs a_ids and b_ids")
        known = (a_ids != PAD) & (a_ids != UNK)                              # (B, La)
        equal = a_ids.unsqueeze(2) == b_ids.unsqueeze(1)                     # (B, La, Lb)
        return (equal & known.unsqueeze(2)).to(a.dtype)
    if kind == "dot":
        return torch.bmm(a, b.transpose(1, 2))
    if kind == "cosine":
        return torch.bmm(F.normalize(a, dim=-1, eps=1e-8),
                         F.normalize(b, dim=-1, eps=1e-8).transpose(1, 2))
    raise ValueError(f"unknown matching matrix kind {kind!r}; choose one of {INTERACTIONS}")


class MatchPyramid(nn.Module):
    """MatchPyramid (Pang et al. 2016): the matching matrix read as an image.

    Matching matrix → Conv2d → ReLU → dynamic pooling of each example's true ``(la, lb)``
    region to a fixed ``(psize_a, psize_b)`` grid → MLP. The region outside the true
    lengths is zeroed before and after the convolution, so a score does not depend on how
    far the batch is padded. The exact-match flag is not used (the indicator matrix is the
    paper's own exact-match signal); with ``matching="indicator"`` the embeddings get no
    gradient.

    Args:
        vocab_size, n_buckets: see :class:`Embedder`.
        embed_dim: word/trigram embedding size.
        matching: matching-matrix kind, see :func:`matching_matrix` (``"dot"``, the
            paper's best).
        channels: convolution kernels (8).
        kernel_size: odd convolution size (3), padded to keep the matrix size.
        psize_a, psize_b: dynamic-pooling grid (5 × 10).
        mlp_hidden: hidden size of the scoring MLP.
        use_trigrams: :class:`Embedder` input.
        dropout: on embeddings and in the MLP.
    """

    def __init__(self, vocab_size: int, n_buckets: int, embed_dim: int = 100,
                 matching: str = "dot", channels: int = 8, kernel_size: int = 3,
                 psize_a: int = 5, psize_b: int = 10, mlp_hidden: int = 64,
                 use_trigrams: bool = True, dropout: float = 0.2) -> None:
        super().__init__()
        if matching not in INTERACTIONS:
            raise ValueError(f"matching must be one of {INTERACTIONS}; got {matching!r}")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd to keep the matrix size; got "
                             f"{kernel_size}")
        self.matching, self.psize = matching, (psize_a, psize_b)
        self.embed = Embedder(vocab_size, embed_dim, n_buckets, use_trigrams,
                              use_exact_match=False, dropout=dropout)
        self.conv = nn.Conv2d(1, channels, kernel_size, padding=kernel_size // 2)
        self.mlp = nn.Sequential(nn.Linear(channels * psize_a * psize_b, mlp_hidden),
                                 nn.ReLU(), nn.Dropout(dropout), nn.Linear(mlp_hidden, 1))

    def dynamic_pool(self, x: torch.Tensor, a_len: torch.Tensor,
                     b_len: torch.Tensor) -> torch.Tensor:
        """Max-pool each example's ``(la, lb)`` region of ``x (B, C, La, Lb)`` to
        ``(B, C, psize_a, psize_b)`` (regions smaller than the grid repeat cells)."""
        return torch.stack([F.adaptive_max_pool2d(x[i, :, :la, :lb], self.psize)
                            for i, (la, lb) in enumerate(zip(a_len.tolist(), b_len.tolist(),
                                                             strict=True))])

    def forward(self, batch: MatchBatch) -> torch.Tensor:
        """``(B,)`` float32 logits."""
        a = self.embed(batch.a_ids, batch.a_tri, batch.a_em)                  # (B, La, E)
        b = self.embed(batch.b_ids, batch.b_tri, batch.b_em)                  # (B, Lb, E)
        mask = (_mask(batch.a_ids).unsqueeze(2)
                & _mask(batch.b_ids).unsqueeze(1)).unsqueeze(1)               # (B, 1, La, Lb)
        m = matching_matrix(a, b, self.matching, batch.a_ids, batch.b_ids)    # (B, La, Lb)
        x = m.unsqueeze(1).masked_fill(~mask, 0.0)                            # (B, 1, La, Lb)
        x = F.relu(self.conv(x)).masked_fill(~mask, 0.0)                      # (B, C, La, Lb)
        x = self.dynamic_pool(x, batch.a_len, batch.b_len)                    # (B, C, 5, 10)
        return self.mlp(x.flatten(1)).squeeze(-1)                             # (B,)


# --------------------------------------------------------------------------- ESIM


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dim of ``scores`` with zero weight where ``mask`` (broadcast to
    ``scores``) is False; every row needs at least one True."""
    return scores.masked_fill(~mask, _neg(scores)).softmax(dim=-1)


def masked_mean_max(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x (B, L, H)``, ``mask (B, L)`` bool → ``(B, 2H)``: ``[mean; max]`` over real steps."""
    m = mask.unsqueeze(-1)                                                # (B, L, 1)
    mean = (x * m).sum(1) / m.sum(1).clamp_min(1)                         # (B, H)
    return torch.cat([mean, x.masked_fill(~m, _neg(x)).amax(1)], dim=-1)  # (B, 2H)


class ESIM(nn.Module):
    """Enhanced Sequential Inference Model (Chen et al. 2017), the sequential (BiLSTM)
    variant, with one logit instead of three NLI classes.

    Input encoding (BiLSTM) → soft alignment ``e = a bᵀ`` with masked softmax both ways →
    enhancement ``m = [a; ã; a − ã; a ⊙ ã]`` → ReLU projection to ``hidden`` → composition
    BiLSTM → masked mean and max pooling → ``v = [mean_a; max_a; mean_b; max_b]`` → tanh MLP.
    The model is not symmetric in ``a``/``b``; train with swapped pairs for symmetric tasks.

    Args:
        vocab_size, n_buckets: see :class:`Embedder`.
        embed_dim: word/trigram embedding size (200).
        hidden: LSTM state size per direction, projection and MLP size (150).
        use_trigrams, use_exact_match: :class:`Embedder` inputs.
        dropout: on embeddings, the projection and the MLP (0.3).
    """

    def __init__(self, vocab_size: int, n_buckets: int, embed_dim: int = 200,
                 hidden: int = 150, use_trigrams: bool = True, use_exact_match: bool = True,
                 dropout: float = 0.3) -> None:
        super().__init__()
        self.embed = Embedder(vocab_size, embed_dim, n_buckets, use_trigrams,
                              use_exact_match, dropout)
        self.encoder = nn.LSTM(self.embed.output_dim, hidden, batch_first=True,
                               bidirectional=True)
        self.projection = nn.Sequential(nn.Linear(8 * hidden, hidden), nn.ReLU(),
                                        nn.Dropout(dropout))
        self.composition = nn.LSTM(hidden, hidden, batch_first=True, bidirectional=True)
        self.mlp = nn.Sequential(nn.Dropout(dropout), nn.Linear(8 * hidden, hidden), nn.Tanh(),
                                 nn.Dropout(dropout), nn.Linear(hidden, 1))

    def compose(self, x: torch.Tensor, aligned: torch.Tensor, lengths: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        """Enhance, project, compose and pool one side: ``x``, ``aligned (B, L, 2H)`` →
        ``(B, 4H)``."""
        m = torch.cat([x, aligned, x - aligned, x * aligned], dim=-1)          # (B, L, 8H)
        v = run_packed(self.composition, self.projection(m), lengths)          # (B, L, 2H)
        return masked_mean_max(v, mask)                                        # (B, 4H)

    def forward(self, batch: MatchBatch) -> torch.Tensor:
        """``(B,)`` float32 logits."""
        a_mask, b_mask = _mask(batch.a_ids), _mask(batch.b_ids)                # (B, La), (B, Lb)
        a = run_packed(self.encoder, self.embed(batch.a_ids, batch.a_tri, batch.a_em),
                       batch.a_len)                                            # (B, La, 2H)
        b = run_packed(self.encoder, self.embed(batch.b_ids, batch.b_tri, batch.b_em),
                       batch.b_len)                                            # (B, Lb, 2H)
        e = torch.bmm(a, b.transpose(1, 2))                                    # (B, La, Lb)
        a_aligned = masked_softmax(e, b_mask.unsqueeze(1)) @ b                 # (B, La, 2H)
        b_aligned = masked_softmax(e.transpose(1, 2), a_mask.unsqueeze(1)) @ a  # (B, Lb, 2H)
        v = torch.cat([self.compose(a, a_aligned, batch.a_len, a_mask),
                       self.compose(b, b_aligned, batch.b_len, b_mask)], dim=-1)  # (B, 8H)
        return self.mlp(v).squeeze(-1)                                         # (B,)


# --------------------------------------------------------------------------- BiMPM


_NORM_EPS = 1e-12  # as F.normalize: each norm is clamped to at least this


def _perspective_norms(x: torch.Tensor, weight_sq: torch.Tensor) -> torch.Tensor:
    """``‖w_k ∘ x_i‖`` for every perspective: ``(B, L, H)`` and ``(P, H)`` squared weights →
    ``(B, L, P)``, clamped to at least :data:`_NORM_EPS` (a zero gradient there, so padding
    positions never divide by zero)."""
    return ((x * x) @ weight_sq.t()).clamp(min=_NORM_EPS ** 2).sqrt()


def perspective_cosine(a: torch.Tensor, b: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Multi-perspective cosine ``f_m`` of BiMPM (Wang et al. 2017, eq. 3) between every
    position of ``a`` and every position of ``b``.

    ``cos(w_k ∘ a_i, w_k ∘ b_j) = Σ_h w_kh² a_ih b_jh / (‖w_k ∘ a_i‖ ‖w_k ∘ b_j‖)``: the
    numerator is one batched product with only the shorter text weighted (``(B, P, L, H)``
    for ``L = min(La, Lb)``), the norms are ``(x ∘ x) · (w ∘ w)ᵀ``; the same values as
    normalising ``w_k ∘ a_i`` and ``w_k ∘ b_j`` first, in a fraction of the memory traffic.

    Args:
        a: ``(B, La, H)``; b: ``(B, Lb, H)``; weight: ``(P, H)``, one row per perspective.

    Returns:
        ``(B, P, La, Lb)``: ``cos(w_k ∘ a_i, w_k ∘ b_j)`` (0 where a vector is zero, e.g. padding).
    """
    weight_sq = weight * weight                                            # (P, H)
    if a.size(1) <= b.size(1):
        dot = (a.unsqueeze(1) * weight_sq[None, :, None, :]) @ b.unsqueeze(1).transpose(-1, -2)
    else:
        dot = a.unsqueeze(1) @ (b.unsqueeze(1) * weight_sq[None, :, None, :]).transpose(-1, -2)
    norm_a = _perspective_norms(a, weight_sq).transpose(1, 2).unsqueeze(-1)   # (B, P, La, 1)
    norm_b = _perspective_norms(b, weight_sq).transpose(1, 2).unsqueeze(-2)   # (B, P, 1, Lb)
    return dot / (norm_a * norm_b)


def paired_perspective_cosine(a: torch.Tensor, b: torch.Tensor,
                              weight: torch.Tensor) -> torch.Tensor:
    """``f_m`` between ``a_i`` and ``b_i`` at each position: ``(B, L, H)`` twice and ``(P, H)``
    → ``(B, L, P)``, as ``((a ∘ b) · (w ∘ w)ᵀ) / (‖w ∘ a‖ ‖w ∘ b‖)`` (no ``(B, L, P, H)``
    tensor)."""
    weight_sq = weight * weight
    return ((a * b) @ weight_sq.t()) / (_perspective_norms(a, weight_sq)
                                        * _perspective_norms(b, weight_sq))


class Highway(nn.Module):
    """One highway layer (Srivastava, Greff & Schmidhuber 2015) as the BiMPM authors' code
    uses it (``layer_utils.highway_layer``): ``g · tanh(W x + b) + (1 − g) · x`` with the
    gate ``g = sigmoid(W_g x + b_g)``, on the last axis.

    Args:
        dim: ``D``, the input and output size.

    Shapes: ``(..., D)`` float → ``(..., D)``.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.transform = nn.Linear(dim, dim)
        self.gate = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., D)`` → ``(..., D)``."""
        g = torch.sigmoid(self.gate(x))
        return g * torch.tanh(self.transform(x)) + (1.0 - g) * x


class BiMPM(nn.Module):
    """Bilateral Multi-Perspective Matching (Wang, Hamza & Florian, IJCAI 2017).

    Word representation (our :class:`Embedder`: word + letter-trigram vectors stand in for the
    paper's character-composed LSTM vectors) → context BiLSTM → matching of each time step of
    one text against all of the other, both ways (P→Q and Q→P), with four strategies, each
    in the forward and the backward direction, ``perspectives`` cosines each: full (against
    the other text's last forward / first backward state), max-pooling (max over the other
    text's positions), attentive (against the cosine-weighted mean of the other text) and
    max-attentive (against the other text's most similar position) → aggregation BiLSTM over
    each text's ``8 · perspectives`` matching vectors → its final states of both directions,
    both texts → two-layer tanh MLP → one logit (the paper: softmax over classes).

    Args:
        vocab_size, n_buckets: see :class:`Embedder`.
        embed_dim: word/trigram embedding size (100).
        hidden: context LSTM size per direction (100 in the paper).
        perspectives: ``P``, cosines per strategy and direction (20 in the paper).
        agg_hidden: aggregation LSTM size per direction (100).
        use_trigrams, use_exact_match: :class:`Embedder` inputs.
        dropout: on embeddings, the matching vectors and the MLP (0.1 in the paper).
        highway: a :class:`Highway` layer on the word representations, on the matching
            vectors and on the aggregated vector, as the authors' released Quora
            configuration does (``with_highway``, ``with_match_highway``,
            ``with_aggregation_highway``; not in the paper's text). Off: the paper's model.
    """

    def __init__(self, vocab_size: int, n_buckets: int, embed_dim: int = 100,
                 hidden: int = 100, perspectives: int = 20, agg_hidden: int = 100,
                 use_trigrams: bool = True, use_exact_match: bool = True,
                 dropout: float = 0.1, highway: bool = False) -> None:
        super().__init__()
        self.embed = Embedder(vocab_size, embed_dim, n_buckets, use_trigrams,
                              use_exact_match, dropout)
        self.hidden = hidden
        self.context = nn.LSTM(self.embed.output_dim, hidden, batch_first=True,
                               bidirectional=True)
        # 4 strategies x 2 directions, (P, H) each; rows start near 1 (plain cosine)
        self.weights = nn.Parameter(torch.empty(8, perspectives, hidden).uniform_(0.5, 1.5))
        self.aggregation = nn.LSTM(8 * perspectives, agg_hidden, batch_first=True,
                                   bidirectional=True)
        self.dropout = nn.Dropout(dropout)
        self.mlp = nn.Sequential(nn.Linear(4 * agg_hidden, agg_hidden), nn.Tanh(),
                                 nn.Dropout(dropout), nn.Linear(agg_hidden, 1))
        self.highway = highway
        if highway:
            self.word_highway = Highway(self.embed.output_dim)
            self.match_highway = Highway(8 * perspectives)
            self.aggregation_highway = Highway(4 * agg_hidden)

    def _represent(self, ids: torch.Tensor, tri: torch.Tensor, em: torch.Tensor
                   ) -> torch.Tensor:
        """Word representations ``(B, L, E')`` of one side, through the highway if any."""
        x = self.embed(ids, tri, em)
        return self.word_highway(x) if self.highway else x

    @staticmethod
    def _last(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``(B, L, H)`` → ``(B, H)``: the state at position ``lengths - 1``."""
        return x[torch.arange(x.size(0), device=x.device), lengths - 1]

    def _match(self, p: torch.Tensor, q: torch.Tensor, q_len: torch.Tensor,
               q_mask: torch.Tensor) -> torch.Tensor:
        """Matching vectors of each position of ``p`` against ``q``: context states
        ``(B, Lp, 2H)`` / ``(B, Lq, 2H)`` → ``(B, Lp, 8P)``."""
        h, out = self.hidden, []
        for d, (ps, qs) in enumerate(((p[..., :h], q[..., :h]), (p[..., h:], q[..., h:]))):
            w = self.weights[4 * d:4 * d + 4]
            q_edge = self._last(qs, q_len) if d == 0 else qs[:, 0]             # (B, H)
            full = paired_perspective_cosine(ps, q_edge.unsqueeze(1).expand_as(ps), w[0])
            pair = perspective_cosine(ps, qs, w[1])                            # (B, P, Lp, Lq)
            pair = pair.masked_fill(~q_mask[:, None, None, :], _neg(pair))
            max_pool = pair.max(-1).values.transpose(1, 2)                     # (B, Lp, P)
            cos = F.normalize(ps, dim=-1) @ F.normalize(qs, dim=-1).transpose(1, 2)
            cos = cos.masked_fill(~q_mask[:, None, :], 0.0)                    # (B, Lp, Lq)
            mean = (cos @ qs) / cos.sum(-1, keepdim=True).clamp(min=1e-6)      # (B, Lp, H)
            attentive = paired_perspective_cosine(ps, mean, w[2])
            best = cos.masked_fill(~q_mask[:, None, :], _neg(cos)).argmax(-1)  # (B, Lp)
            q_best = torch.gather(qs, 1, best.unsqueeze(-1).expand_as(ps))
            max_attentive = paired_perspective_cosine(ps, q_best, w[3])
            out += [full, max_pool, attentive, max_attentive]
        return torch.cat(out, dim=-1)

    def _aggregate(self, m: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``(B, L, 8P)`` → ``(B, 2 · agg_hidden)``: last forward and first backward state."""
        if self.highway:
            m = self.match_highway(m)
        v = run_packed(self.aggregation, self.dropout(m), lengths)
        k = v.size(-1) // 2
        return torch.cat([self._last(v[..., :k], lengths), v[:, 0, k:]], dim=-1)

    def forward(self, batch: MatchBatch) -> torch.Tensor:
        """``(B,)`` float32 logits."""
        a_mask, b_mask = _mask(batch.a_ids), _mask(batch.b_ids)
        a_len, b_len = batch.a_len, batch.b_len
        a = run_packed(self.context, self._represent(batch.a_ids, batch.a_tri, batch.a_em),
                       a_len)
        b = run_packed(self.context, self._represent(batch.b_ids, batch.b_tri, batch.b_em),
                       b_len)
        v = torch.cat([self._aggregate(self._match(a, b, b_len, b_mask), a_len),
                       self._aggregate(self._match(b, a, a_len, a_mask), b_len)], dim=-1)
        if self.highway:
            v = self.aggregation_highway(v)
        return self.mlp(self.dropout(v)).squeeze(-1).float()


_CLASSES: dict[str, type[nn.Module]] = {
    "dssm": DSSM, "mvlstm": MVLSTM, "matchpyramid": MatchPyramid, "esim": ESIM,
    "bimpm": BiMPM}


def build_model(arch: str, **config: object) -> nn.Module:
    """``Model(**config)`` for ``arch`` in :data:`ARCHS`.

    Raises:
        ValueError: an unknown architecture.
    """
    if arch not in _CLASSES:
        raise ValueError(f"unknown arch {arch!r}; choose one of {ARCHS}")
    return _CLASSES[arch](**config)

