"""Fine-tune all-MiniLM-L6-v2 with LoRA: ``modelzoo train matching --arch minilm-cross|minilm-bi``.

- ``minilm-cross`` (Quora): a :class:`~models.matching.transformer.CrossEncoder`, binary
  cross-entropy on the pair logit, the two questions of a random half of the pairs swapped
  each epoch (duplicates are symmetric), length-bucketed batches.
- ``minilm-bi`` (WikiQA): a :class:`~models.matching.transformer.BiEncoder` trained with the
  multiple-negatives ranking loss (Henderson et al. 2017, "Efficient Natural Language
  Response Suggestion for Smart Reply", section 4.4; sentence-transformers'
  ``MultipleNegativesRankingLoss``): for each question with a correct answer, softmax over
  ``scale · cos`` with every candidate in the batch, where the batch holds one correct answer
  per question plus up to ``negatives`` wrong candidates of the same question (hard
  negatives: sentences of the same Wikipedia page). After training a logistic regression
  on the dev cosines gives the probability mapping (scale, bias).

AdamW with linear warm-up and decay (the BERT fine-tuning recipe, Devlin et al. 2019),
optional bfloat16 autocast, a resumable checkpoint every ``checkpoint_every`` steps (the
adapter, optimizer and scheduler state and the position in the epoch), dev metrics after
every epoch (the best epoch's adapters are kept).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from models.common.artifacts import ArtifactError, load_artifact, save_artifact
from models.common.checkpoint import load_checkpoint, save_checkpoint
from models.common.device import resolve_device
from models.common.paths import artifacts_dir, data_dir
from models.common.seeding import seed_everything
from models.matching.data import DATASETS, read_pairs, split_path
from models.matching.train import (
    Example,
    batches,
    dev_metrics,
    main_metric,
    model_card,
    to_examples,
    write_index,
)
from models.matching.transformer import (
    BASE_NAME,
    BASE_PIP_NAME,
    BI,
    CROSS,
    TRANSFORMER_ARCHS,
    BiEncoder,
    TransformerMatcher,
    build_transformer,
    encode_texts,
    load_adapters,
    load_tokenizer,
    text_of,
    trainable_state,
)

log = logging.getLogger(__name__)

DEFAULT_DATASET = {CROSS: "quora", BI: "wikiqa"}


@dataclass
class TransformerTrainConfig:
    """Every knob of a MiniLM fine-tuning run."""

    arch: str = CROSS
    dataset: str = "quora"
    data_dir: Path = field(default_factory=data_dir)
    out_root: Path = field(default_factory=lambda: artifacts_dir() / "matching")
    checkpoint_dir: Path = Path("runs/matching")
    lr: float = 5e-4
    batch_size: int = 32
    epochs: int = 2
    warmup: float = 0.06
    weight_decay: float = 0.01
    max_length: int = 128
    pooling: str = "mean"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    negatives: int = 7
    loss_scale: float = 20.0
    clip: float = 1.0
    bf16: bool = True
    seed: int = 0
    device: str = "cpu"
    resume: bool = False
    max_steps: int | None = None
    checkpoint_every: int = 200
    train_limit: int | None = None
    bert_config: dict[str, Any] | None = None
    init_from: Path | None = None
    command: str = ""

    @property
    def name(self) -> str:
        """The served model name, ``<arch>-<dataset>``."""
        return f"{self.arch}-{self.dataset}"

    def model_config(self) -> dict[str, Any]:
        """The ``model`` block of ``config.json``."""
        out: dict[str, Any] = {"pooling": self.pooling, "lora": {
            "r": self.lora_r, "alpha": self.lora_alpha, "dropout": self.lora_dropout}}
        if self.bert_config is not None:
            out["bert_config"] = self.bert_config
        return out


def question_groups(examples: list[Example]) -> list[tuple[str, list[str], list[str]]]:
    """WikiQA examples → ``(question, correct answers, wrong candidates)`` for each question
    with at least one correct answer, texts joined from tokens, in file order."""
    pos: dict[str, list[str]] = defaultdict(list)
    neg: dict[str, list[str]] = defaultdict(list)
    question: dict[str, str] = {}
    for a, b, label, group in examples:
        key = group or text_of(a)
        question[key] = text_of(a)
        (pos if label else neg)[key].append(text_of(b))
    return [(question[k], pos[k], neg[k]) for k in question if pos[k]]


def bi_batches(groups: list[tuple[str, list[str], list[str]]], batch_size: int,
               negatives: int, rng: np.random.Generator) -> list[list[tuple[str, str, list[str]]]]:
    """One epoch of bi-encoder batches: ``batch_size`` questions each, every question with
    one correct answer drawn at random and up to ``negatives`` of its wrong candidates."""
    items = []
    for q, pos, neg in groups:
        answer = pos[int(rng.integers(len(pos)))]
        picked = [neg[i] for i in rng.permutation(len(neg))[:negatives]]
        items.append((q, answer, picked))
    order = rng.permutation(len(items))
    return [[items[i] for i in order[s:s + batch_size]]
            for s in range(0, len(order), batch_size)]


def ranking_loss(model: BiEncoder, enc_q: dict[str, torch.Tensor],
                 enc_c: dict[str, torch.Tensor], scale: float) -> torch.Tensor:
    """Multiple-negatives ranking loss: question ``i``'s correct answer is candidate ``i``
    (the first ``B`` candidates), every other candidate in the batch is a negative.

    Args:
        enc_q: tokenized questions, ``(B, Lq)``.
        enc_c: tokenized candidates, ``(B + N, Lc)``: the ``B`` correct answers first.

    Returns:
        Scalar float32 cross-entropy.
    """
    q = model.embed(enc_q["input_ids"], enc_q["attention_mask"])     # (B, D)
    c = model.embed(enc_c["input_ids"], enc_c["attention_mask"])     # (B + N, D)
    logits = scale * q @ c.T                                         # (B, B + N)
    return F.cross_entropy(logits, torch.arange(q.size(0), device=q.device))


def fit_probability(cosines: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Logistic regression of the label on the cosine (Platt scaling): ``(scale, bias)`` of
    ``sigmoid(scale · cos + bias)``."""
    from sklearn.linear_model import LogisticRegression

    fit = LogisticRegression(C=100.0).fit(cosines.reshape(-1, 1), labels)
    return float(fit.coef_[0, 0]), float(fit.intercept_[0])


def evaluate(model: nn.Module, tokenizer: Any, cfg: TransformerTrainConfig,
             examples: list[Example], device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """``(probabilities, raw scores)`` of ``examples`` (raw = cosine for the bi-encoder,
    logit-free probability for the cross-encoder)."""
    model.eval()
    matcher = TransformerMatcher("eval", model, tokenizer, {"max_length": cfg.max_length}, {})
    pairs = [(a, b) for a, b, _, _ in examples]
    if isinstance(model, BiEncoder):
        texts = sorted({text_of(t) for pair in pairs for t in pair})
        index = {t: i for i, t in enumerate(texts)}
        vectors = matcher.embed(texts, device, 128)
        a = vectors[[index[text_of(x)] for x, _ in pairs]]
        b = vectors[[index[text_of(y)] for _, y in pairs]]
        cos = (a * b).sum(-1)
        return model.probability(cos).numpy().astype(np.float64), cos.numpy().astype(np.float64)
    probs = np.asarray(matcher.probabilities(pairs, device, 128), dtype=np.float64)
    return probs, probs


def load_init_adapters(model: nn.Module, directory: Path, config: dict[str, Any]) -> dict[str, Any]:
    """Start fine-tuning from a trained ``minilm-*`` artifact: copy its LoRA adapters and head
    (``model.safetensors``, float32) into ``model``, which must have been built with the same
    arch and LoRA settings (``config``, this run's ``config.json`` block).

    Returns:
        The artifact's card (for the new card's lineage).

    Raises:
        ArtifactError: files missing, another arch, LoRA settings or BERT config, or tensors
            that are not exactly this model's trainable ones.
    """
    tensors, init_config, card = load_artifact(directory)
    for key in ("arch", "max_length"):
        if init_config.get(key) != config[key]:
            raise ArtifactError(f"{directory}: --init-from needs the same {key} "
                                f"({init_config.get(key)!r} there, {config[key]!r} here)")
    for key in ("pooling", "lora", "bert_config"):
        if init_config.get("model", {}).get(key) != config["model"].get(key):
            raise ArtifactError(f"{directory}: --init-from needs the same model.{key} "
                                f"({init_config.get('model', {}).get(key)!r} there, "
                                f"{config['model'].get(key)!r} here)")
    load_adapters(model, tensors)
    return card


def train_transformer(cfg: TransformerTrainConfig) -> dict[str, Any]:
    """Fine-tune, keep the best epoch on dev, write ``out_root/<arch>-<dataset>/`` (adapter
    and head tensors, config, card) and refresh the index card and manifest.

    Returns:
        The model card.

    Raises:
        ValueError: unknown arch or dataset.
        FileNotFoundError: a data file is missing.
        models.common.artifacts.ArtifactError: the pretrained MiniLM is not installed.
    """
    if cfg.arch not in TRANSFORMER_ARCHS or cfg.dataset not in DATASETS:
        raise ValueError(f"arch must be one of {TRANSFORMER_ARCHS} and dataset one of "
                         f"{DATASETS}")
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    train_ex = to_examples(read_pairs(split_path(cfg.data_dir, cfg.dataset, "train"))[1])
    dev_ex = to_examples(read_pairs(split_path(cfg.data_dir, cfg.dataset, "dev"))[1])
    if cfg.train_limit is not None:
        train_ex = train_ex[:cfg.train_limit]
    config: dict[str, Any] = {"arch": cfg.arch, "model": cfg.model_config(),
                              "dataset": cfg.dataset, "max_length": cfg.max_length}
    tokenizer = load_tokenizer()
    model = build_transformer(config).to(device)
    init_card = (load_init_adapters(model, cfg.init_from, config)
                 if cfg.init_from is not None else None)
    groups = question_groups(train_ex) if cfg.arch == BI else []
    per_epoch = (math.ceil(len(groups) / cfg.batch_size) if cfg.arch == BI
                 else math.ceil(len(train_ex) / cfg.batch_size))
    total = per_epoch * cfg.epochs if cfg.max_steps is None else min(
        cfg.max_steps, per_epoch * cfg.epochs)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = max(1, int(cfg.warmup * total))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup))))
    progress: dict[str, Any] = {"epoch": 0, "batch": 0, "step": 0, "elapsed": 0.0,
                                "history": [], "best": -1.0, "best_epoch": 0}
    best_state = trainable_state(model)
    ckpt = cfg.checkpoint_dir / cfg.name / "last.pt"
    state = load_checkpoint(ckpt) if cfg.resume else None
    if state is not None:
        model.load_state_dict(state["trainable"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        best_state, progress = state["best"], state["progress"]
        log.info("resumed at epoch %d, batch %d (step %d)", progress["epoch"],
                 progress["batch"], progress["step"])
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if cfg.bf16
                else contextlib.nullcontext())
    key = main_metric(cfg.dataset)
    t0 = time.perf_counter()

    def checkpoint() -> None:
        save_checkpoint(ckpt, {"trainable": trainable_state(model),
                               "optimizer": optimizer.state_dict(),
                               "scheduler": scheduler.state_dict(), "best": best_state,
                               "progress": {**progress, "elapsed": progress["elapsed"]
                                            + time.perf_counter() - t0}})

    log.info("%s: %d train examples (%d per epoch in batches), %d dev pairs, %d trainable "
             "of %d parameters", cfg.name, len(train_ex), per_epoch, len(dev_ex),
             sum(p.numel() for p in trainable), sum(p.numel() for p in model.parameters()))
    done = False
    while progress["epoch"] < cfg.epochs and not done:
        model.train()
        rng = np.random.default_rng([cfg.seed, progress["epoch"]])
        if cfg.arch == BI:
            epoch_batches: list[Any] = bi_batches(groups, cfg.batch_size, cfg.negatives, rng)
        else:
            swap = rng.random(len(train_ex)) < 0.5 if cfg.dataset == "quora" else None
            examples = [(b, a, y, g) if swap is not None and swap[i] else (a, b, y, g)
                        for i, (a, b, y, g) in enumerate(train_ex)]
            epoch_batches = batches(examples, cfg.batch_size, rng)
        loss_sum, seen = 0.0, 0
        bar = tqdm(epoch_batches[progress["batch"]:], desc=f"{cfg.name} epoch "
                   f"{progress['epoch'] + 1}", mininterval=10)
        for chunk in bar:
            with autocast:
                if cfg.arch == BI:
                    enc_q = encode_texts(tokenizer, [q for q, _, _ in chunk], None, cfg.max_length,
                                    device)
                    cands = [a for _, a, _ in chunk] + [n for _, _, ns in chunk for n in ns]
                    enc_c = encode_texts(tokenizer, cands, None, cfg.max_length, device)
                    assert isinstance(model, BiEncoder)
                    loss = ranking_loss(model, enc_q, enc_c, cfg.loss_scale)
                else:
                    enc = encode_texts(tokenizer, [text_of(e[0]) for e in chunk],
                                  [text_of(e[1]) for e in chunk], cfg.max_length, device)
                    target = torch.tensor([float(e[2]) for e in chunk], device=device)
                    loss = F.binary_cross_entropy_with_logits(model(**enc), target)
            optimizer.zero_grad(set_to_none=True)
            loss.float().backward()
            nn.utils.clip_grad_norm_(trainable, cfg.clip)
            optimizer.step()
            scheduler.step()
            loss_sum, seen = loss_sum + loss.item() * len(chunk), seen + len(chunk)
            progress["batch"] += 1
            progress["step"] += 1
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", refresh=False)
            if progress["step"] % cfg.checkpoint_every == 0:
                checkpoint()
            if cfg.max_steps is not None and progress["step"] >= cfg.max_steps:
                done = True
                break
        if done and progress["batch"] < len(epoch_batches):  # stopped mid-epoch: resumable
            if not progress["history"]:
                best_state = trainable_state(model)
            checkpoint()
            break
        probs, _ = evaluate(model, tokenizer, cfg, dev_ex, device)
        metrics = dev_metrics(cfg.dataset, probs, dev_ex)
        progress["epoch"] += 1
        progress["batch"] = 0
        progress["history"].append({"epoch": progress["epoch"], "step": progress["step"],
                                    "train_loss": round(loss_sum / max(seen, 1), 4),
                                    **{k: round(v, 4) for k, v in metrics.items()}})
        log.info("%s epoch %d: %s", cfg.name, progress["epoch"], progress["history"][-1])
        if metrics[key] > progress["best"]:
            progress |= {"best": metrics[key], "best_epoch": progress["epoch"]}
            best_state = trainable_state(model)
        checkpoint()
    wall = progress["elapsed"] + time.perf_counter() - t0
    model.load_state_dict(best_state, strict=False)
    probs, raw = evaluate(model, tokenizer, cfg, dev_ex, device)
    if isinstance(model, BiEncoder):
        labels = np.array([e[2] for e in dev_ex])
        model.scale, model.bias = fit_probability(raw, labels)
        config["model"] |= {"scale": round(model.scale, 6), "bias": round(model.bias, 6)}
        probs = model.probability(torch.from_numpy(raw)).numpy().astype(np.float64)
    final = dev_metrics(cfg.dataset, probs, dev_ex)
    config["threshold"] = round(final["threshold"], 6)
    return write_transformer_artifact(model, config, final, cfg, progress, wall, best_state,
                                      init_card)


def write_transformer_artifact(model: nn.Module, config: dict[str, Any],
                               metrics: dict[str, float], cfg: TransformerTrainConfig,
                               progress: dict[str, Any], wall_s: float,
                               tensors: dict[str, torch.Tensor],
                               init_card: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``out_root/<name>/`` (adapter + head tensors in float32, config, card), then
    refresh the index card and manifest of ``out_root``. With ``init_card`` (the card of the
    ``--init-from`` artifact) the card's ``lineage`` keeps that run's command, training
    record, history and metrics, followed by its own lineage."""
    note = ("dev is used to pick the epoch, the threshold"
            + (" and the cosine→probability logistic" if cfg.arch == BI else "")
            + "; no test split is available here")
    card = model_card(model, metrics, cfg, progress, wall_s, note,
                      "float32 (adapters and head only)")
    card |= {"base_model": {"name": BASE_NAME, "package": BASE_PIP_NAME,
                            "method": "LoRA adapters merged into the base weights at load"},
             "trainable_params": sum(v.numel() for v in tensors.values())}
    if init_card is not None:
        card["lineage"] = [{key: init_card.get(key) for key in (
            "training_command", "training", "history", "metrics", "git_commit")},
            *init_card.get("lineage", [])]
    save_artifact(cfg.out_root / cfg.name, tensors, config, card)
    write_index(cfg.out_root)
    return card

