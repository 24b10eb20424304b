"""Train gensim's Word2Vec and ours on PTB in one process; print wall times and quality.

Same settings for both: skip-gram (``--archs cbow``: CBOW, gensim ``sg=0``; or both),
negative=5, window=5, sample=1e-4, min_count=5, vector_size=100, the same epochs; gensim
uses ``workers=--threads`` (2, this machine's cores) and torch as many threads. Both are
scored by the same code (:func:`models.word2vec.evaluate.evaluate_vectors`).

    python benchmarks/word2vec_vs_gensim.py --epochs 20 [--with-autograd] [--with-adam]
        [--archs skipgram,cbow] [--seed N]

Ours trains each architecture's default recipe (:data:`models.word2vec.train.RECIPES`).
``--with-autograd`` also trains skip-gram's recipe with the autograd step (model +
``backward()`` + ``SGD`` on sparse gradients) instead of the fused one
(:mod:`models.word2vec.fused`), the baseline of the fused step's speed-up. ``--with-adam``
also trains skip-gram with lazy Adam (``SparseAdam``, lr 0.005, batches of 512 centers),
the previous default.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

from models.common.paths import data_dir
from models.word2vec.data import read_ptb
from models.word2vec.evaluate import evaluate_vectors
from models.word2vec.predictor import Word2VecPredictor
from models.word2vec.train import TrainConfig, train
from models.word2vec.vectors import WordVectors
from models.word2vec.vocab import Vocab


def run_gensim(train_file: Path, epochs: int, seed: int, sg: int = 1,
               workers: int = 2) -> tuple[float, WordVectors]:
    from gensim.models import Word2Vec

    sentences = read_ptb(train_file)
    start = time.perf_counter()
    model = Word2Vec(sentences, sg=sg, negative=5, window=5, sample=1e-4, min_count=5,
                     vector_size=100, workers=workers, epochs=epochs, seed=seed)
    wall = time.perf_counter() - start
    kv = model.wv
    vocab = Vocab(list(kv.index_to_key), [int(kv.get_vecattr(w, "count")) for w in kv.index_to_key])
    return wall, WordVectors(vocab, torch.from_numpy(kv.vectors.copy()))


def run_ours(
    train_file: Path, epochs: int, seed: int, arch: str = "skipgram", **overrides: Any
) -> tuple[float, WordVectors]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig.for_arch(
            arch, train_file=train_file, out_dir=Path(tmp) / "w2v",
            checkpoint_dir=Path(tmp) / "ckpt", wordsim_dir=None, epochs=epochs, seed=seed,
            checkpoint_every=0, **overrides)
        start = time.perf_counter()
        train(cfg)
        wall = time.perf_counter() - start
        return wall, Word2VecPredictor.load(cfg.out_dir).vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=data_dir())
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--with-autograd", action="store_true",
                        help="also train the served recipe with the autograd step")
    parser.add_argument("--with-adam", action="store_true",
                        help="also train skip-gram with SparseAdam lr 0.005, batch 512")
    parser.add_argument("--archs", default="skipgram",
                        help="comma list of skipgram, cbow (gensim sg=1 / sg=0)")
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads and gensim workers")
    args = parser.parse_args()
    train_file = args.data_dir / "ptb" / "ptb.train.txt"
    wordsim = args.data_dir / "wordsim"
    torch.set_num_threads(args.threads)
    archs = args.archs.split(",")
    if not archs or set(archs) - {"skipgram", "cbow"}:
        parser.error(f"--archs takes skipgram and/or cbow, got {args.archs!r}")

    runners: dict[str, Callable[[Path, int, int], tuple[float, WordVectors]]] = {}
    if "skipgram" in archs:
        runners["gensim"] = partial(run_gensim, workers=args.threads)
        runners["modelzoo"] = run_ours  # the served recipe, fused step
        if args.with_autograd:
            runners["modelzoo-autograd"] = partial(run_ours, engine="autograd")
        if args.with_adam:  # the previous default: lazy Adam on smaller batches
            runners["modelzoo-adam"] = partial(run_ours, optimizer="sparse_adam", lr=0.005,
                                               batch_size=512)
    if "cbow" in archs:
        runners["gensim-cbow"] = partial(run_gensim, sg=0, workers=args.threads)
        runners["modelzoo-cbow"] = partial(run_ours, arch="cbow")
    rows = {}
    for name, runner in runners.items():
        wall, vectors = runner(train_file, args.epochs, args.seed)
        rows[name] = {"wall_s": round(wall, 1), **{
            k: round(v.get("spearman", v.get("accuracy", float("nan"))), 4)
            for k, v in evaluate_vectors(vectors, wordsim).items()
        }}
    print(f"PTB train, {args.epochs} epochs, {'+'.join(archs)} K=5 window=5 t=1e-4 "
          f"min_count=5 d=100, {args.threads} thread(s)")
    print(f"{'system':<18}{'wall s':>8}{'x gensim':>9}{'WS353':>8}{'SimLex':>8}{'MEN':>8}"
          f"{'analogy':>9}")
    for name, r in rows.items():
        gensim = "gensim-cbow" if name.endswith("cbow") else "gensim"
        r["ratio"] = round(r["wall_s"] / rows[gensim]["wall_s"], 2)
        print(f"{name:<18}{r['wall_s']:>8}{r['ratio']:>9}{r['wordsim353']:>8}"
              f"{r['simlex999']:>8}{r['men']:>8}{r['google_analogy']:>9}")
    ratios = {n: rows[n]["ratio"] for n in ("modelzoo", "modelzoo-adam", "modelzoo-cbow")
              if n in rows}
    if "modelzoo-autograd" in rows:
        speedup = rows["modelzoo-autograd"]["wall_s"] / rows["modelzoo"]["wall_s"]
        print(f"fused step speed-up: autograd / fused wall time = {speedup:.2f}x")
    for name, ratio in ratios.items():
        print(f"wall-time ratio {name} / gensim = {ratio:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"epochs": args.epochs, "threads": args.threads,
                                         "rows": rows, "ratios": ratios}, indent=2) + "\n")


if __name__ == "__main__":
    main()
