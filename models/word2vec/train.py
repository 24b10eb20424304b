"""Train skip-gram or CBOW word2vec on PTB and write ``artifacts/word2vec`` (CBOW:
``artifacts/word2vec/cbow``, a variant the served predictor also loads).

Recipe: d2l.ai "Pretraining word2vec" (skip-gram, negative sampling, masked sigmoid BCE,
summed over the batch; the tutorial uses dense Adam lr 0.002) on the vectorised pipeline of
:mod:`models.word2vec.data`, with word2vec.c's linear learning-rate decay and
initialisation (Mikolov et al. 2013). Skip-gram's defaults (:data:`RECIPES`) measured best
on PTB over five seeds: plain SGD (word2vec.c's optimiser) lr 1.25 on batches of 2048
centers with the fused step (:mod:`models.word2vec.fused`) -- higher WordSim-353 and MEN
means than lazy Adam (``SparseAdam``) lr 0.005 on batches of 512, in 40% of its time (see
README). ``arch="cbow"`` trains CBOW (Mikolov et al. 2013a) on the same pipeline
(subsampling, dynamic windows, negative sampler) with lazy Adam.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tqdm import tqdm

from models.common.artifacts import git_commit, save_artifact
from models.common.checkpoint import load_checkpoint, save_checkpoint
from models.common.config import training_record
from models.common.device import hardware_summary, resolve_device
from models.common.malloc import keep_freed_memory
from models.common.manifest import MANIFEST, write_manifest
from models.common.paths import artifacts_dir, data_dir
from models.common.prefetch import prefetch
from models.common.seeding import seed_everything
from models.word2vec.data import (
    CBOWEpoch,
    Corpus,
    NegativeSampler,
    SkipGramEpoch,
    WindowedEpoch,
    epoch_loader,
    keep_probabilities,
    read_ptb,
    subsample,
)
from models.word2vec.evaluate import evaluate_vectors, probe_neighbors
from models.word2vec.fused import fused_step, sparse_skipgram_batch
from models.word2vec.model import CBOW, SkipGram, masked_sigmoid_bce
from models.word2vec.vectors import WordVectors
from models.word2vec.vocab import Vocab

log = logging.getLogger(__name__)

Arch = Literal["skipgram", "cbow"]
MODELS: dict[str, type[SkipGram | CBOW]] = {"skipgram": SkipGram, "cbow": CBOW}
EPOCHS: dict[str, type[WindowedEpoch]] = {"skipgram": SkipGramEpoch, "cbow": CBOWEpoch}
DESCRIPTIONS = {
    "skipgram": "Skip-gram word2vec with negative sampling and subsampling "
    "(Mikolov et al. 2013), center vectors served for cosine queries.",
    "cbow": "CBOW word2vec (mean of the window's context vectors predicts the center) with "
    "negative sampling and subsampling (Mikolov et al. 2013a), input (context) vectors "
    "served for cosine queries.",
}


# Each architecture's default optimiser, learning rate and batch size (centers per batch).
# Skip-gram: best WordSim-353 and MEN means over seeds 0-4 (README); SGD at lr >= 1.5
# diverges on batches of 2048. CBOW: the committed cbow artifact's settings.
OPTIMIZERS = ("sgd", "sparse_adam", "adam")
RECIPES: dict[str, dict[str, Any]] = {
    "skipgram": {"optimizer": "sgd", "lr": 1.25, "batch_size": 2048},
    "cbow": {"optimizer": "sparse_adam", "lr": 0.005, "batch_size": 512},
}


@dataclass
class TrainConfig:
    """Every knob of a word2vec training run (all have CLI flags).

    The defaults are skip-gram's recipe; :meth:`for_arch` gives another architecture's.
    """

    arch: Arch = "skipgram"
    train_file: Path = field(default_factory=lambda: data_dir() / "ptb" / "ptb.train.txt")
    out_dir: Path = field(default_factory=lambda: artifacts_dir() / "word2vec")
    checkpoint_dir: Path = Path("runs/word2vec")
    wordsim_dir: Path | None = field(default_factory=lambda: data_dir() / "wordsim")
    embed_size: int = 100
    min_count: int = 5
    subsample_t: float = 1e-4
    max_window_size: int = 5
    num_noise_words: int = 5
    batch_size: int = 2048
    lr: float = 1.25
    lr_schedule: Literal["constant", "linear"] = "linear"
    optimizer: Literal["adam", "sparse_adam", "sgd"] = "sgd"
    engine: Literal["auto", "fused", "autograd"] = "auto"
    epochs: int = 20
    seed: int = 0
    bf16: bool = False
    device: str = "cpu"
    checkpoint_every: int = 2000
    resume: bool = False
    max_steps: int | None = None
    command: str = "modelzoo train word2vec"

    @classmethod
    def for_arch(cls, arch: str, **overrides: Any) -> TrainConfig:
        """``arch``'s recipe (:data:`RECIPES`) with ``overrides`` on top.

        Raises:
            ValueError: ``arch`` is not ``skipgram`` or ``cbow``.
        """
        if arch not in RECIPES:
            raise ValueError(f"unknown arch {arch!r}; choose one of {sorted(RECIPES)}")
        return cls(arch=arch, **(RECIPES[arch] | overrides))  # type: ignore[arg-type]


def subsampling_stats(
    corpus: Corpus, vocab: Vocab, keep_prob: np.ndarray, seed: int, words: tuple[str, ...]
) -> dict[str, Any]:
    """Token counts before/after one subsampling draw, overall and for ``words``."""
    kept = subsample(corpus, keep_prob, np.random.default_rng(seed))
    before = np.bincount(corpus.tokens, minlength=len(vocab))
    after = np.bincount(kept.tokens, minlength=len(vocab))
    per_word = {
        w: {"before": int(before[vocab.index[w]]), "after": int(after[vocab.index[w]])}
        for w in words
        if w in vocab
    }
    return {"tokens_before": len(corpus), "tokens_after": len(kept), "words": per_word}


def _build_optimizer(model: SkipGram | CBOW, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam (the tutorial's), lazy Adam on sparse gradients, or plain SGD (word2vec.c's).

    Raises:
        ValueError: ``cfg.optimizer`` is none of ``sgd``, ``sparse_adam``, ``adam``.
    """
    if cfg.optimizer == "sparse_adam":
        return torch.optim.SparseAdam(list(model.parameters()), lr=cfg.lr)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose one of "
                     f"{', '.join(OPTIMIZERS)}")


def resolve_engine(cfg: TrainConfig) -> Literal["fused", "autograd"]:
    """Which training step runs: ``fused`` (:mod:`models.word2vec.fused`, the same
    gradients and update without autograd) or ``autograd`` (model + loss +
    ``backward()`` + the torch optimizer).

    ``auto`` takes the fused step wherever it applies: skip-gram, ``sparse_adam`` or
    ``sgd``, float32 (no ``bf16``), CPU.

    Raises:
        ValueError: ``engine="fused"`` with a configuration it does not cover.
    """
    reasons = [why for bad, why in (
        (cfg.arch != "skipgram", f"arch {cfg.arch!r} (skip-gram only)"),
        (cfg.optimizer not in ("sparse_adam", "sgd"),
         f"optimizer {cfg.optimizer!r} (sparse_adam or sgd only)"),
        (cfg.bf16, "bf16 autocast (float32 only)"),
        (resolve_device(cfg.device).type != "cpu", f"device {cfg.device!r} (CPU only)"),
    ) if bad]
    if cfg.engine == "autograd" or (cfg.engine == "auto" and reasons):
        return "autograd"
    if cfg.engine == "fused" and reasons:
        raise ValueError("the fused step does not support " + "; ".join(reasons)
                         + ": use --engine autograd")
    return "fused"


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train, evaluate and write the artifact; return the model card.

    Checkpoints go to ``cfg.checkpoint_dir/last.pt`` every ``cfg.checkpoint_every`` steps
    and at each epoch end; ``cfg.resume`` continues from there (same result as an
    uninterrupted run: every random draw derives from ``(seed, epoch)``).

    Raises:
        FileNotFoundError: the training file does not exist.
        FloatingPointError: the loss became NaN or infinite (the learning rate is too
            high); training stops at that step and writes no artifact.
    """
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    sentences = read_ptb(cfg.train_file)
    vocab = Vocab.build(sentences, cfg.min_count)
    corpus = Corpus.from_sentences(sentences, vocab)
    counts = vocab.counts_array()
    keep_prob = keep_probabilities(counts, cfg.subsample_t)
    sampler = NegativeSampler(counts)
    stats = subsampling_stats(corpus, vocab, keep_prob, cfg.seed, ("the", "join"))
    words = stats["words"]
    log.info(
        "vocab %d words, %d tokens; one subsampling draw keeps %d (%.1f%%); 'the' %s; 'join' %s",
        len(vocab), len(corpus), stats["tokens_after"],
        100 * stats["tokens_after"] / max(len(corpus), 1),
        "{before} -> {after}".format(**words["the"]) if "the" in words else "absent",
        "{before} -> {after}".format(**words["join"]) if "join" in words else "absent",
    )

    if cfg.arch not in MODELS:
        raise ValueError(f"unknown arch {cfg.arch!r}; choose one of {sorted(MODELS)}")
    engine = resolve_engine(cfg)
    log.info("training step: %s", engine)
    if engine == "fused":  # its row updates allocate the same few-MB tensors every step
        keep_freed_memory()
    model = MODELS[cfg.arch](len(vocab), cfg.embed_size, sparse=cfg.optimizer != "adam")
    model.to(device)
    optimizer = _build_optimizer(model, cfg)
    ckpt_path = cfg.checkpoint_dir / "last.pt"
    start_epoch, start_step, global_step, elapsed = 0, 0, 0, 0.0
    state = load_checkpoint(ckpt_path) if cfg.resume else None
    if state is not None:
        if state.get("arch", "skipgram") != cfg.arch:
            raise ValueError(f"{ckpt_path} is a {state.get('arch', 'skipgram')} checkpoint, not "
                             f"{cfg.arch}: resume with the same --arch or another "
                             "--checkpoint-dir")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, start_step = state["epoch"], state["step"]
        global_step, elapsed = state["global_step"], state["elapsed"]
        log.info("resumed from %s at epoch %d step %d", ckpt_path, start_epoch, start_step)

    def checkpoint(epoch: int, step: int) -> None:
        save_checkpoint(ckpt_path, {
            "arch": cfg.arch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "epoch": epoch,
            "step": step, "global_step": global_step, "elapsed": elapsed + time.perf_counter() - t0,
        })

    t0 = time.perf_counter()
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if cfg.bf16 else contextlib.nullcontext()
    )
    done = False
    for epoch in range(start_epoch, cfg.epochs):
        dataset = EPOCHS[cfg.arch](
            corpus, keep_prob, sampler, max_window_size=cfg.max_window_size,
            num_noise_words=cfg.num_noise_words, seed=cfg.seed, epoch=epoch,
        )
        skip = start_step if epoch == start_epoch else 0
        loader = epoch_loader(dataset, cfg.batch_size, skip)
        epoch_steps = skip + len(loader)
        running, n = 0.0, 0
        # The autograd step overlaps batch preparation with a thread. The fused step is
        # short enough that the thread costs more than it hides (the two contend for the
        # GIL between many small NumPy/torch calls): measured per PTB epoch at batch 2048,
        # 1.75 s in line vs 2.13 s with the thread and 3.29 s with a DataLoader worker.
        items = (map(sparse_skipgram_batch, loader) if engine == "fused"
                 else prefetch(loader))
        bar = tqdm(items, total=len(loader), desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   leave=False, mininterval=2)
        for step, batch in enumerate(bar, start=skip):
            if cfg.lr_schedule == "linear":  # word2vec.c: decay linearly towards 0
                progress = (epoch + step / epoch_steps) / cfg.epochs
                for group in optimizer.param_groups:
                    group["lr"] = cfg.lr * max(1e-4, 1.0 - progress)
            if engine == "fused":
                assert isinstance(model, SkipGram)
                batch_loss, rows = fused_step(model, optimizer, batch), len(batch)
            else:
                with autocast:
                    logits, label, mask = forward_batch(model, batch, device)
                # Sum over the batch of per-row masked means, as the tutorial's l.sum().
                loss = masked_sigmoid_bce(logits, label, mask).sum()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                batch_loss, rows = loss.item(), len(label)
            if not math.isfinite(batch_loss):  # the weights are no use from here on
                raise FloatingPointError(
                    f"the training loss became {batch_loss} at epoch {epoch + 1}, step "
                    f"{step + 1}: the learning rate is too high for this optimizer and batch "
                    f"size (lr {cfg.lr}, {cfg.optimizer}, batch {cfg.batch_size}; skip-gram "
                    "SGD diverges from lr 1.5 on batches of 2048): lower --lr; no artifact "
                    "was written")
            global_step += 1
            running, n = running + batch_loss / rows, n + 1
            if cfg.checkpoint_every and global_step % cfg.checkpoint_every == 0:
                checkpoint(epoch, step + 1)
            if cfg.max_steps is not None and global_step >= cfg.max_steps:
                done = True
                break
        log.info("epoch %d: mean loss %.4f over %d steps", epoch + 1, running / max(n, 1), n)
        if done:
            break
        checkpoint(epoch + 1, 0)
    wall = elapsed + time.perf_counter() - t0
    return write_artifact(model, vocab, replace(cfg, engine=engine), stats, wall, global_step)


def forward_batch(
    model: SkipGram | CBOW, batch: tuple[torch.Tensor, ...], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits ``(B, L)``, labels and loss mask of one batch of either architecture.

    Skip-gram batches are ``(centers, contexts_negatives, masks, labels)``; CBOW batches are
    ``(contexts, context_mask, center_negatives, labels)`` (see :mod:`models.word2vec.data`).
    """
    first, second, third, label = (t.to(device) for t in batch)
    if isinstance(model, CBOW):
        logits = model(first, second, third)  # (B, 1, 1+K)
        mask = torch.ones_like(label)
    else:
        logits = model(first, second)  # (B, 1, L)
        mask = third
    return logits.reshape(label.shape), label, mask


def write_artifact(
    model: SkipGram | CBOW,
    vocab: Vocab,
    cfg: TrainConfig,
    stats: dict[str, Any],
    wall_time_s: float,
    steps: int,
) -> dict[str, Any]:
    """Evaluate the served vectors and save them (float16) with vocab, config and card.

    Skip-gram serves its center table, CBOW its context (input) table. When ``out_dir``
    sits inside another word2vec artifact with a manifest (CBOW's default,
    ``artifacts/word2vec/cbow``), that manifest is rewritten too, so the service still
    loads the folder.
    """
    served = getattr(model, model.served).weight.detach().cpu()
    vectors = WordVectors(vocab, served.half().float())  # score exactly what is served
    metrics: dict[str, Any] = {}
    if cfg.wordsim_dir is not None and cfg.wordsim_dir.is_dir():
        metrics = evaluate_vectors(vectors, cfg.wordsim_dir)
    card = {
        "task": "word2vec",
        "name": f"{cfg.arch}-ptb",
        "arch": cfg.arch,
        "description": DESCRIPTIONS[cfg.arch],
        "dataset": {"name": "Penn Treebank (Mikolov LM version)", "split": "train",
                    "file": cfg.train_file.name},
        "metrics": metrics,
        "metrics_command": "modelzoo evaluate word2vec",
        "probe_neighbors": probe_neighbors(vectors),
        "subsampling": stats,
        "training": {
            **training_record(cfg, ("out_dir", "checkpoint_dir", "wordsim_dir", "resume",
                                   "train_file")),
            "steps": steps,
            "wall_time_s": round(wall_time_s, 1),
            "hardware": hardware_summary(),
        },
        "params": {"trained": 2 * len(vocab) * cfg.embed_size,
                   "served": len(vocab) * cfg.embed_size},
        "weights_dtype": "float16",
        "vocab_size": len(vocab),
        "git_commit": git_commit(),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    config: dict[str, Any] = {"vocab_size": len(vocab), "embed_size": cfg.embed_size}
    if cfg.arch != "skipgram":  # the committed skip-gram config predates these keys
        config |= {"arch": cfg.arch, "served": model.served}
    save_artifact(cfg.out_dir, {model.served: served.half()}, config, card)
    vocab.save(cfg.out_dir)
    write_manifest(cfg.out_dir)
    parent = cfg.out_dir.resolve().parent
    if (parent / MANIFEST).is_file() and (parent / "vocab.json").is_file():
        write_manifest(parent)
        log.info("rewrote %s to cover %s", parent / MANIFEST, cfg.out_dir)
    return card
