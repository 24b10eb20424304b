"""Static word vectors distilled from the pretrained MiniLM, for the from-scratch matchers.

BiMPM and ESIM were published with frozen GloVe vectors (Wang et al. 2017, sec. 4.1; Chen
et al. 2017, sec. 4.1), which we do not have. all-MiniLM-L6-v2 is installed (the
transformer matchers start from it), so this module makes word vectors from it instead:
each word of the training text is encoded on its own and its token states mean-pooled
(the pooling the sentence encoder was trained with), which gives a 384-d vector per word
whose cosines follow the encoder's sense of similarity (Bommasani et al. 2020, "Interpreting
Pretrained Contextualized Representations via Reductions to Static Embeddings", the
single-word "decontextualized" setting). The vectors are reduced to the matcher's
``embed_dim`` by PCA (centred, top components) and scaled to a mean norm of
``sqrt(embed_dim)`` (that of the N(0, 1) rows ``nn.Embedding`` starts the other words
with), then written as a word2vec text file that ``modelzoo train matching
--embeddings FILE`` reads (:func:`models.matching.train.load_vectors`).

    python -m models.matching.minilm_vectors --dataset quora --dim 100 --out quora-minilm100.vec
"""

from __future__ import annotations

import argparse
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import torch

from models.common.paths import data_dir
from models.matching.data import read_pairs, split_path
from models.matching.features import tokenize
from models.matching.transformer import build_encoder, load_tokenizer, mean_pool

log = logging.getLogger(__name__)


def training_words(data: Path, dataset: str, min_count: int = 1) -> list[str]:
    """The distinct tokens (:func:`models.matching.features.tokenize`) of a dataset's
    training split seen at least ``min_count`` times, most frequent first.

    Raises:
        FileNotFoundError: the training file is missing.
    """
    _, pairs = read_pairs(split_path(data, dataset, "train"))
    counts = Counter(t for p in pairs for t in (*tokenize(p.a), *tokenize(p.b)))
    return [w for w, n in counts.most_common() if n >= min_count]


@torch.inference_mode()
def encode_words(words: Sequence[str], batch_size: int = 512,
                 base: Path | None = None) -> torch.Tensor:
    """MiniLM sentence vectors of single words: float32 (len(words), 384).

    Raises:
        models.common.artifacts.ArtifactError: the pretrained MiniLM is not installed.
    """
    tokenizer = load_tokenizer(base)
    encoder = build_encoder(base=base).eval()
    out = []
    for start in range(0, len(words), batch_size):
        chunk = list(words[start:start + batch_size])
        enc = tokenizer(chunk, padding=True, truncation=True, max_length=16,
                        return_tensors="pt")
        hidden = encoder(**enc).last_hidden_state  # (B, L, 384)
        out.append(mean_pool(hidden, enc["attention_mask"]))
    return torch.cat(out) if out else torch.zeros(0, 384)


def reduce(vectors: torch.Tensor, dim: int, scale: float = 1.0) -> torch.Tensor:
    """PCA of ``vectors`` (N, D) float to its top ``dim`` components (centred first), then
    scaled so that the rows' mean L2 norm is ``scale``: float32 (N, dim).

    Raises:
        ValueError: ``dim`` is not in [1, min(N, D)].
    """
    n, d = vectors.shape
    if not 1 <= dim <= min(n, d):
        raise ValueError(f"dim must be in [1, {min(n, d)}], got {dim}")
    x = vectors.float() - vectors.float().mean(0)
    _, _, v = torch.linalg.svd(x, full_matrices=False)  # v: (min(n, d), D)
    y = x @ v[:dim].T
    return y * (scale / y.norm(dim=1).mean().clamp(min=1e-12))


def write_vec(path: Path, words: Sequence[str], vectors: torch.Tensor) -> None:
    """A word2vec text file: ``N D`` header, then ``word v1 .. vD`` per line (6 decimals)."""
    with path.open("w", encoding="utf-8") as f:
        f.write(f"{len(words)} {vectors.shape[1]}\n")
        for word, row in zip(words, vectors.tolist(), strict=True):
            f.write(word + " " + " ".join(f"{v:.6f}" for v in row) + "\n")


def main(argv: Sequence[str] | None = None) -> None:
    """Write the vectors of a dataset's training words (see the module docstring)."""
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--data-dir", type=Path, default=data_dir())
    ap.add_argument("--dataset", default="quora")
    ap.add_argument("--dim", type=int, default=100)
    ap.add_argument("--scale", type=float, default=None,
                    help="mean L2 norm of the written vectors (default: sqrt(dim))")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    words = [w for w in training_words(args.data_dir, args.dataset) if " " not in w]
    scale = args.scale if args.scale is not None else args.dim ** 0.5
    vectors = reduce(encode_words(words), args.dim, scale)
    write_vec(args.out, words, vectors)
    log.info("%d words, %d-d, written to %s", len(words), args.dim, args.out)


if __name__ == "__main__":
    main()
