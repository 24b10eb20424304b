"""Train a matching model: ``modelzoo train matching --arch ... --dataset quora|wikiqa``.

One loop for every architecture: binary cross-entropy on the match logit (pointwise, as
MatchZoo's classification task), Adam, length-bucketed mini-batches, gradient clipping,
evaluation on the dev split after each epoch, the learning rate halved when the dev metric
stops improving and early stopping after ``patience`` such epochs (the best epoch's weights
are kept). Quora pairs are symmetric, so each epoch swaps the two questions of a random
half of the pairs (a cheap augmentation for the asymmetric ESIM / MV-LSTM inputs).
With ``ema`` > 0, dev is scored (and the kept weights taken) from an exponential moving
average of the weights, updated after every optimizer step (Polyak & Juditsky 1992; the
``decay`` form of ``torch.optim.swa_utils.get_ema_multi_avg_fn``).
With ``freeze_embeddings``, the pretrained word vectors stay as loaded (BiMPM's setting:
Wang, Hamza & Florian 2017, section 4.1, "we do not update the pre-trained word
embeddings"); the letter-trigram vectors and everything above them still train.
Dev metric: accuracy at the dev-tuned threshold (Quora; the dev split is 50/50 while our
training set is 37% duplicates), MAP over the filtered questions (WikiQA).
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from models.common.artifacts import git_commit, read_json, save_artifact, write_json
from models.common.checkpoint import load_checkpoint, save_checkpoint
from models.common.config import preset_values, training_record
from models.common.device import hardware_summary, resolve_device
from models.common.malloc import keep_freed_memory
from models.common.manifest import write_manifest
from models.common.paths import artifacts_dir, data_dir
from models.common.seeding import seed_everything
from models.matching.data import (
    DATASETS,
    Pair,
    accuracy_f1,
    best_threshold,
    map_mrr,
    read_pairs,
    split_path,
)
from models.matching.features import Featurizer, Vocab, tokenize
from models.matching.model import ARCHS, build_model
from models.matching.predictor import ENSEMBLE_FILE, VOCAB_FILE, Matcher

log = logging.getLogger(__name__)

PRESETS: dict[str, dict[str, Any]] = {
    "dssm": {"model": {}, "lr": 1e-3, "batch_size": 64, "epochs": 8, "bf16": False},
    "mvlstm": {"model": {}, "lr": 1e-3, "batch_size": 64, "epochs": 8, "bf16": False},
    "matchpyramid": {"model": {}, "lr": 1e-3, "batch_size": 64, "epochs": 8, "bf16": False},
    "esim": {"model": {"embed_dim": 128}, "lr": 1e-3, "batch_size": 128, "epochs": 8,
             "bf16": True},
    "bimpm": {"model": {}, "lr": 1e-3, "batch_size": 64, "epochs": 8, "bf16": False},
}

Example = tuple[list[str], list[str], int, str | None]  # tokens a, tokens b, label, group

EVAL_SPLITS: dict[str, str] = {  # what the dev metrics of a card are computed on
    "quora": "quora/dev.tsv.gz (BiMPM partition dev, 10,000 pairs, 50/50)",
    "wikiqa": "wikiqa/WikiQA-dev.tsv (MAP/MRR over the 122 filtered questions)"}


@dataclass
class TrainConfig:
    """Every knob of a matching training run."""

    arch: str = "esim"
    dataset: str = "quora"
    data_dir: Path = field(default_factory=data_dir)
    out_root: Path = field(default_factory=lambda: artifacts_dir() / "matching")
    checkpoint_dir: Path = Path("runs/matching")
    model: dict[str, Any] = field(default_factory=dict)
    embeddings: Path | None = None
    min_count: int = 2
    n_buckets: int = 2 ** 14
    max_len: int = 64
    lr: float = 1e-3
    batch_size: int = 64
    epochs: int = 15
    patience: int = 2
    clip: float = 5.0
    seed: int = 0
    bf16: bool = False
    device: str = "cpu"
    resume: bool = False
    max_steps: int | None = None
    ema: float = 0.0
    freeze_embeddings: bool = False
    command: str = ""

    @classmethod
    def from_arch(cls, arch: str, **overrides: Any) -> TrainConfig:
        """The arch's preset with non-None ``overrides`` on top.

        Raises:
            ValueError: an unknown arch.
        """
        return cls(arch=arch, **preset_values(PRESETS, arch, overrides))

    @property
    def name(self) -> str:
        """The served model name, ``<arch>-<dataset>``."""
        return f"{self.arch}-{self.dataset}"


def to_examples(pairs: list[Pair]) -> list[Example]:
    """Tokenize both sides; pairs with an empty side are dropped (none in the datasets)."""
    out = []
    for p in pairs:
        a, b = tokenize(p.a), tokenize(p.b)
        if a and b:
            out.append((a, b, p.label, p.group))
    return out


def load_vectors(path: Path, vocab: Vocab, dim: int) -> tuple[torch.Tensor, int]:
    """Rows of a word-vector text file (``word v1 ... vD`` per line, optional ``N D`` header:
    word2vec / GloVe / fastText ``.vec``), or of a ``modelzoo train word2vec`` artifact
    folder (its center-word vectors), for the words of ``vocab``.

    Returns:
        ``(vectors (len(vocab), dim) float32 with zeros for missing words, words found)``.

    Raises:
        ValueError: the file's dimension differs from ``dim``.
    """
    if path.is_dir():
        return _artifact_vectors(path, vocab, dim)
    vectors = torch.zeros(len(vocab), dim)
    found = 0
    with path.open(encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f):
            parts = line.rstrip().split(" ")
            if n == 0 and len(parts) == 2:
                continue  # word2vec header
            word, values = parts[0], parts[1:]
            if len(values) != dim:
                raise ValueError(f"{path}:{n + 1}: {len(values)} values but the model's "
                                 f"embed_dim is {dim}; pass a file of {dim}-d vectors")
            idx = vocab.stoi.get(word.lower())
            if idx is not None and idx > 1:
                vectors[idx] = torch.tensor([float(v) for v in values])
                found += 1
    return vectors, found


def _artifact_vectors(directory: Path, vocab: Vocab, dim: int) -> tuple[torch.Tensor, int]:
    """The served vectors of a word2vec artifact folder (center for skip-gram, context for
    CBOW; :func:`models.word2vec.predictor.served_table`)."""
    from models.word2vec.predictor import served_table

    w2v_vocab, table, _ = served_table(directory)
    if table.size(1) != dim:
        raise ValueError(f"{directory} has {table.size(1)}-d vectors but the model's "
                         f"embed_dim is {dim}; train word2vec with --embed-size {dim}")
    vectors, found = torch.zeros(len(vocab), dim), 0
    for row, word in enumerate(w2v_vocab.tokens):
        idx = vocab.stoi.get(word)
        if idx is not None and idx > 1:
            vectors[idx], found = table[row].float(), found + 1
    return vectors, found


def word_embedding(model: nn.Module) -> nn.Embedding | None:
    """The model's word embedding (the ``nn.Embedding`` named ``*.word``), or None (DSSM
    has only letter trigrams)."""
    for name, module in model.named_modules():
        if name.split(".")[-1] == "word" and isinstance(module, nn.Embedding):
            return module
    return None


def init_embeddings(model: nn.Module, path: Path, vocab: Vocab) -> int:
    """Copy pretrained vectors into the model's word embedding (``*.word``); returns the
    number of vocabulary words found.

    Raises:
        ValueError: the model has no word embedding (DSSM uses only letter trigrams).
    """
    module = word_embedding(model)
    if module is None:
        raise ValueError(f"{type(model).__name__} has no word embedding to initialise")
    vectors, found = load_vectors(path, vocab, module.embedding_dim)
    with torch.no_grad():
        rows = vectors.abs().sum(1) > 0
        module.weight[rows] = vectors[rows]
    log.info("initialised %d of %d word vectors from %s", found, len(vocab), path)
    return found


def freeze_word_embeddings(model: nn.Module) -> int:
    """Stop gradient updates of the model's word embedding (``*.word``); returns how many
    weights were frozen (vocabulary × dim). The letter-trigram table stays trainable.

    Raises:
        ValueError: the model has no word embedding (DSSM).
    """
    module = word_embedding(model)
    if module is None:
        raise ValueError(f"{type(model).__name__} has no word embedding to freeze")
    module.weight.requires_grad_(False)
    return module.weight.numel()


def batches(examples: list[Example], batch_size: int,
            rng: np.random.Generator | None) -> list[list[Example]]:
    """Mini-batches of similar lengths: shuffle (when ``rng``), sort chunks of 50 batches by
    length, cut, shuffle the batch order. Without ``rng``: file order."""
    if rng is None:
        return [examples[i:i + batch_size] for i in range(0, len(examples), batch_size)]
    order = rng.permutation(len(examples))
    chunk = batch_size * 50
    out = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start:start + chunk],
                      key=lambda i: (len(examples[i][0]), len(examples[i][1])))
        out += [[examples[i] for i in part[j:j + batch_size]]
                for j in range(0, len(part), batch_size)]
    return [out[i] for i in rng.permutation(len(out))]


@torch.inference_mode()
def predict(model: nn.Module, featurizer: Featurizer, examples: list[Example],
            device: torch.device, batch_size: int = 128) -> np.ndarray:
    """``(N,)`` match probabilities of ``examples`` in order."""
    model.eval()
    matcher = Matcher("eval", model, featurizer, {}, {})
    probs = matcher.probabilities([(a, b) for a, b, _, _ in examples], device, batch_size)
    return np.asarray(probs, dtype=np.float64)


def dev_metrics(dataset: str, probs: np.ndarray, examples: list[Example]) -> dict[str, float]:
    """Quora: accuracy/F1 at the accuracy-maximising threshold and at 0.5; WikiQA: MAP and
    MRR over the filtered questions, plus the F1-maximising threshold."""
    labels = np.array([e[2] for e in examples])
    if dataset == "quora":
        t = best_threshold(probs, labels, "accuracy")
        acc, f1 = accuracy_f1(probs, labels, t)
        acc05, f105 = accuracy_f1(probs, labels, 0.5)
        return {"accuracy": acc, "f1": f1, "threshold": t, "accuracy_at_0.5": acc05,
                "f1_at_0.5": f105}
    m, r, n = map_mrr([e[3] for e in examples], probs, labels)
    t = best_threshold(probs, labels, "f1")
    return {"map": m, "mrr": r, "questions": n, "threshold": t,
            "f1": accuracy_f1(probs, labels, t)[1]}


def main_metric(dataset: str) -> str:
    """The dev metric used for early stopping and the default model."""
    return "accuracy" if dataset == "quora" else "map"


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train, early-stop on dev, and write ``out_root/<arch>-<dataset>/`` plus the index card
    and manifest of ``out_root``.

    Returns:
        The model card.

    Raises:
        ValueError: unknown arch or dataset.
        FileNotFoundError: a data file is missing.
    """
    if cfg.arch not in ARCHS or cfg.dataset not in DATASETS:
        raise ValueError(f"arch must be one of {ARCHS} and dataset one of {DATASETS}")
    if cfg.freeze_embeddings and cfg.embeddings is None:
        raise ValueError("freeze_embeddings keeps pretrained vectors fixed: give embeddings")
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    keep_freed_memory()  # BiMPM/ESIM allocate the same multi-MB tensors every step
    train_ex = to_examples(read_pairs(split_path(cfg.data_dir, cfg.dataset, "train"))[1])
    dev_ex = to_examples(read_pairs(split_path(cfg.data_dir, cfg.dataset, "dev"))[1])
    vocab = Vocab.build((t for a, b, _, _ in train_ex for t in (a, b)), cfg.min_count)
    featurizer = Featurizer(vocab, cfg.n_buckets, cfg.max_len)
    model_cfg = {"vocab_size": len(vocab), "n_buckets": cfg.n_buckets, **cfg.model}
    model = build_model(cfg.arch, **model_cfg).to(device)
    if cfg.embeddings is not None:
        init_embeddings(model, cfg.embeddings, vocab)
    if cfg.freeze_embeddings:
        freeze_word_embeddings(model)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    ema = weight_average(model, cfg.ema)
    scored = ema.module if ema is not None else model  # what dev scores and training keeps
    key = main_metric(cfg.dataset)
    progress: dict[str, Any] = {"epoch": 0, "step": 0, "elapsed": 0.0, "history": [],
                                "best": -1.0, "best_epoch": 0, "bad_epochs": 0}
    best_state = copy.deepcopy(model.state_dict())
    ckpt = cfg.checkpoint_dir / cfg.name / "last.pt"
    state = load_checkpoint(ckpt) if cfg.resume else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        best_state, progress = state["best_model"], state["progress"]
        log.info("resumed after epoch %d", progress["epoch"])
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if cfg.bf16
                else contextlib.nullcontext())
    t0 = time.perf_counter()
    log.info("%s: %d train / %d dev pairs, vocabulary %d, %d parameters", cfg.name,
             len(train_ex), len(dev_ex), len(vocab), sum(p.numel() for p in model.parameters()))
    while progress["epoch"] < cfg.epochs and progress["bad_epochs"] < cfg.patience:
        model.train()
        epoch_rng = np.random.default_rng([cfg.seed, progress["epoch"]])
        examples = train_ex
        if cfg.dataset == "quora":  # duplicates are symmetric: swap a random half
            swap = epoch_rng.random(len(train_ex)) < 0.5
            examples = [(b, a, y, g) if s else (a, b, y, g)
                        for (a, b, y, g), s in zip(train_ex, swap, strict=True)]
        loss_sum, seen = 0.0, 0
        for chunk in tqdm(batches(examples, cfg.batch_size, epoch_rng),
                          desc=f"{cfg.name} epoch {progress['epoch'] + 1}", leave=False,
                          mininterval=10):
            batch = featurizer.batch([(a, b) for a, b, _, _ in chunk]).to(device)
            target = torch.tensor([float(e[2]) for e in chunk], device=device)
            with autocast:
                logits = model(batch)
            loss = F.binary_cross_entropy_with_logits(logits.float(), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            optimizer.step()
            if ema is not None:
                ema.update_parameters(model)
            loss_sum, seen = loss_sum + loss.item() * len(chunk), seen + len(chunk)
            progress["step"] += 1
            if cfg.max_steps is not None and progress["step"] >= cfg.max_steps:
                break
        metrics = dev_metrics(cfg.dataset, predict(scored, featurizer, dev_ex, device), dev_ex)
        progress["epoch"] += 1
        progress["history"].append({"epoch": progress["epoch"],
                                    "train_loss": round(loss_sum / max(seen, 1), 4),
                                    "lr": optimizer.param_groups[0]["lr"],
                                    **{k: round(v, 4) for k, v in metrics.items()}})
        log.info("%s epoch %d: %s", cfg.name, progress["epoch"], progress["history"][-1])
        if metrics[key] > progress["best"]:
            progress |= {"best": metrics[key], "best_epoch": progress["epoch"], "bad_epochs": 0}
            best_state = copy.deepcopy(scored.state_dict())
        else:
            progress["bad_epochs"] += 1
            for group in optimizer.param_groups:
                group["lr"] *= 0.5
        save_checkpoint(ckpt, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                               "best_model": best_state,
                               **({"ema": ema.state_dict()} if ema is not None else {}),
                               "progress": {**progress, "elapsed": progress["elapsed"]
                                            + time.perf_counter() - t0}})
        if cfg.max_steps is not None and progress["step"] >= cfg.max_steps:
            break
    wall = progress["elapsed"] + time.perf_counter() - t0
    model.load_state_dict(best_state)
    probs = predict(model, featurizer, dev_ex, device)
    final = dev_metrics(cfg.dataset, probs, dev_ex)
    return write_artifact(model, vocab, model_cfg, final, cfg, progress, wall)


def weight_average(model: nn.Module, decay: float) -> torch.optim.swa_utils.AveragedModel | None:
    """An exponential moving average of ``model``'s parameters and buffers,
    ``avg <- decay * avg + (1 - decay) * w`` after each ``update_parameters(model)``
    (``torch.optim.swa_utils``), or None for ``decay == 0``.

    Raises:
        ValueError: ``decay`` outside [0, 1).
    """
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"ema decay must be in [0, 1), got {decay}")
    if decay == 0.0:
        return None
    return torch.optim.swa_utils.AveragedModel(
        model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(decay),
        use_buffers=True)


def write_artifact(model: nn.Module, vocab: Vocab, model_cfg: dict[str, Any],
                   metrics: dict[str, float], cfg: TrainConfig, progress: dict[str, Any],
                   wall_s: float) -> dict[str, Any]:
    """Write ``out_root/<name>/`` (float16 weights, config, vocab, card), then refresh the
    index card and the manifest of ``out_root``."""
    model = model.cpu().eval()
    directory = cfg.out_root / cfg.name
    config = {"arch": cfg.arch, "model": model_cfg, "dataset": cfg.dataset,
              "featurizer": {"n_buckets": cfg.n_buckets, "max_len": cfg.max_len},
              "threshold": round(metrics["threshold"], 6)}
    card = model_card(model, metrics, cfg, progress, wall_s,
                      "dev is used for early stopping and for the threshold; no test split "
                      "is available here", "float16")
    tensors = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    save_artifact(directory, tensors, config, card)
    write_json(directory / VOCAB_FILE, vocab.itos)
    write_index(cfg.out_root)
    return card


def model_card(model: nn.Module, metrics: dict[str, float], cfg: Any, progress: dict[str, Any],
               wall_s: float, note: str, weights_dtype: str) -> dict[str, Any]:
    """The ``card.json`` of a matching model folder: dataset and dev split (with ``note`` on
    how dev was used), rounded dev ``metrics``, the command reproducing them, per-epoch
    history, the training run (``cfg``: a :class:`TrainConfig` or a MiniLM fine-tuning
    config), parameter count and weights dtype."""
    return {
        "task": "matching", "name": cfg.name, "arch": type(model).__name__,
        "dataset": {"name": cfg.dataset, "train_split": str(split_path(Path(), cfg.dataset,
                                                                          "train")),
                    "eval_split": EVAL_SPLITS[cfg.dataset], "note": note},
        "metrics": {k: round(v, 4) for k, v in metrics.items()},
        "metrics_command": f"modelzoo evaluate matching --model {cfg.name} --file "
                           f"{split_path(Path('$MODELZOO_DATA_DIR'), cfg.dataset, 'dev')}",
        "history": progress["history"], "best_epoch": progress["best_epoch"],
        "training_command": cfg.command,
        "training": {**training_record(cfg, ("data_dir", "out_root", "checkpoint_dir",
                                             "resume", "command")),
                     "steps": progress["step"], "wall_time_s": round(wall_s, 1),
                     "hardware": hardware_summary()},
        "params": sum(p.numel() for p in model.parameters()),
        "weights_dtype": weights_dtype,
        "git_commit": git_commit(),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def write_index(root: Path) -> dict[str, Any]:
    """(Re)write ``root/card.json`` (every model's and ensemble's dev metrics, an ensemble's
    ``members``; the default for pair scoring is the best Quora accuracy, for ranking the
    best WikiQA MAP, ensembles included) and ``root/manifest.json``."""
    models = {}
    for d in sorted(p for p in root.iterdir()
                    if (p / "config.json").is_file() or (p / ENSEMBLE_FILE).is_file()):
        card = read_json(d / "card.json")
        models[d.name] = {"arch": card["arch"], "dataset": card["dataset"]["name"],
                          "metrics": card["metrics"], "params": card["params"]}
        if "members" in card:
            models[d.name]["members"] = card["members"]
    index: dict[str, Any] = {"task": "matching", "models": models}
    for use, dataset in (("match", "quora"), ("rank", "wikiqa")):
        pool = {n: m for n, m in models.items() if m["dataset"] == dataset}
        if pool:
            metric = main_metric(dataset)
            index[f"default_{use}"] = max(pool, key=lambda n: pool[n]["metrics"][metric])
    defaults = [index[k] for k in ("default_match", "default_rank") if k in index]
    index |= {"name": "-".join(["matching", *defaults]), "git_commit": git_commit()}
    previous = read_json(root / "card.json") if (root / "card.json").is_file() else {}
    if previous.get("models") == models and "quantization" in previous:
        index["quantization"] = previous["quantization"]  # same models: still their figures
    write_json(root / "card.json", index)
    write_manifest(root)
    return index
