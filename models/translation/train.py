"""Train a German→English model on Multi30k: ``modelzoo train translation --arch ...``.

``lstm`` is the seed tutorial (bentrevett/pytorch-seq2seq part 1): Adam lr 1e-3, gradient
clipping 1, teacher_forcing_ratio 0.5, 10 epochs. ``transformer`` is the served model:
label smoothing 0.1 (Szegedy et al. 2016), Adam (0.9, 0.98) with linear warmup then
inverse-square-root decay (Vaswani et al. 2017), token-bucketed batches, bf16 autocast on
CPU, and the average of the last epochs' weights (checkpoint averaging, Vaswani et al. 2017).

Under ``torchrun --nproc_per_node N`` (see :mod:`models.common.distributed`) the model is
wrapped in DistributedDataParallel; every rank builds the same list of token batches for an
epoch (same seed) and trains on every ``N``-th of them starting at its rank, so ``max_tokens``
is per process and an epoch takes ``1/N`` of the steps. Validation is split the same way and
summed over ranks; rank 0 trains the tokenizer and writes checkpoints and the artifact.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from models.common import distributed as ddp
from models.common.artifacts import git_commit, save_artifact
from models.common.checkpoint import load_checkpoint, save_checkpoint
from models.common.config import preset_values, training_record
from models.common.device import hardware_summary, resolve_device
from models.common.manifest import write_manifest
from models.common.paths import artifacts_dir, data_dir
from models.common.seeding import seed_everything
from models.translation.data import (
    PAD,
    TOKENIZER_FILE,
    Encoded,
    Tokenizer,
    read_pairs,
    split_paths,
    token_batches,
    train_tokenizer,
)
from models.translation.model import Seq2Seq, build_model

log = logging.getLogger(__name__)

PRESETS: dict[str, dict[str, Any]] = {
    "lstm": {"model": {"embed_size": 256, "hidden_size": 512, "num_layers": 2, "dropout": 0.5},
             "lr": 1e-3, "warmup_steps": 0, "clip": 1.0, "label_smoothing": 0.0,
             "teacher_forcing_ratio": 0.5, "epochs": 10, "max_tokens": 2500, "average_last": 1},
    "transformer": {"model": {"d_model": 256, "nhead": 4, "num_encoder_layers": 3,
                              "num_decoder_layers": 3, "dim_feedforward": 1024, "dropout": 0.2},
                    "lr": 1e-3, "warmup_steps": 400, "clip": 1.0, "label_smoothing": 0.1,
                    "teacher_forcing_ratio": 1.0, "epochs": 20, "max_tokens": 4000,
                    "average_last": 5},
}


@dataclass
class TrainConfig:
    """Every knob of a translation training run."""

    data_dir: Path = field(default_factory=lambda: data_dir() / "multi30k")
    out_dir: Path = field(default_factory=lambda: artifacts_dir() / "translation")
    checkpoint_dir: Path = Path("runs/translation")
    arch: str = "transformer"
    model: dict[str, Any] = field(default_factory=dict)
    vocab_size: int = 8000
    lr: float = 1e-3
    warmup_steps: int = 400
    clip: float = 1.0
    label_smoothing: float = 0.1
    teacher_forcing_ratio: float = 1.0
    epochs: int = 20
    max_tokens: int = 4000
    average_last: int = 5
    seed: int = 0
    bf16: bool = False
    device: str = "cpu"
    resume: bool = False
    max_steps: int | None = None
    checkpoint_every: int = 200
    command: str = ""

    @classmethod
    def from_arch(cls, arch: str, **overrides: Any) -> TrainConfig:
        """The arch's preset with non-None ``overrides`` on top.

        Raises:
            ValueError: an unknown arch.
        """
        return cls(arch=arch, **preset_values(PRESETS, arch, overrides))


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to ``cfg.lr`` over ``warmup_steps``, then ``lr * sqrt(warmup / step)``;
    constant ``lr`` without warmup (the tutorial's Adam)."""
    if cfg.warmup_steps <= 0:
        return cfg.lr
    step = max(step, 1)
    return cfg.lr * min(step / cfg.warmup_steps, math.sqrt(cfg.warmup_steps / step))


def prepare(cfg: TrainConfig) -> tuple[Tokenizer, Encoded, Encoded]:
    """Train (or reuse, when resuming) the tokenizer on the train split; encode train and val."""
    train_pairs = read_pairs(*split_paths(cfg.data_dir, "train"))
    val_pairs = read_pairs(*split_paths(cfg.data_dir, "val"))
    spm_path = cfg.checkpoint_dir / TOKENIZER_FILE
    if not (cfg.resume and spm_path.is_file()) and ddp.is_main():
        sentences = [s for pair in train_pairs for s in pair]
        train_tokenizer(sentences, cfg.checkpoint_dir, cfg.vocab_size)
    ddp.barrier()  # under torchrun, the other ranks read the tokenizer rank 0 wrote
    tok = Tokenizer(spm_path)

    def encode(pairs: list[tuple[str, str]]) -> Encoded:
        return Encoded(tok.encode([s for s, _ in pairs]), tok.encode([t for _, t in pairs]))

    return tok, encode(train_pairs), encode(val_pairs)


@torch.inference_mode()
def validation_loss(model: Seq2Seq, data: Encoded, device: torch.device,
                    across_ranks: bool = False) -> float:
    """Mean per-token cross-entropy (nats, no smoothing) with teacher forcing.

    Args:
        across_ranks: under torchrun, each rank scores every ``world_size``-th batch and
            the sums are added over ranks (every rank must call it); else all batches here.
    """
    model.eval()
    total, count = 0.0, 0
    batches = list(token_batches(data, 8000, None))
    for src, tgt in (ddp.shard(batches, drop_last=False) if across_ranks else batches):
        src, tgt = src.to(device), tgt.to(device)
        logits = model.decode(tgt[:, :-1], model.encode(src))
        total += F.cross_entropy(logits.float().flatten(0, 1), tgt[:, 1:].flatten(),
                                 ignore_index=PAD, reduction="sum").item()
        count += int((tgt[:, 1:] != PAD).sum())
    if across_ranks:
        total_all, count_all = ddp.all_reduce_sum([total, count], device)
        return total_all / count_all
    return total / count


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train with checkpoints every ``checkpoint_every`` steps and at each epoch end
    (``checkpoint_dir/last.pt``; ``resume`` continues there), average the last
    ``average_last`` epochs' weights, and write the artifact (float16 weights + tokenizer).

    Under torchrun each rank trains on its share of the batches (module docstring);
    resume with the same number of processes.

    Returns:
        The model card, on every rank (val/test BLEU are added by
        ``modelzoo evaluate translation``).

    Raises:
        FileNotFoundError: a Multi30k file is missing.
    """
    with ddp.session(resolve_device(cfg.device)) as device:
        return _train(cfg, device)


def _train(cfg: TrainConfig, device: torch.device) -> dict[str, Any]:
    seed_everything(cfg.seed)
    rank, world = ddp.rank(), ddp.world_size()
    tok, train_data, val_data = prepare(cfg)
    model = build_model(cfg.arch, vocab_size=tok.vocab_size, **cfg.model).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr_at(1, cfg), betas=(0.9, 0.98),
                                 eps=1e-9)
    progress: dict[str, Any] = {"epoch": 0, "batch": 0, "step": 0, "elapsed": 0.0,
                                "history": []}
    ckpt = cfg.checkpoint_dir / "last.pt"
    state = load_checkpoint(ckpt) if cfg.resume else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        progress = state["progress"]
        log.info("resumed at epoch %d batch %d", progress["epoch"], progress["batch"])
    net = ddp.wrap(model, device)  # DDP for the training passes; `model` for everything else
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if cfg.bf16
                else contextlib.nullcontext())
    t0 = time.perf_counter()

    def save() -> None:
        if not ddp.is_main():
            return
        save_checkpoint(ckpt, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                               "progress": {**progress, "elapsed": progress["elapsed"]
                                            + time.perf_counter() - t0}})

    done = False
    while progress["epoch"] < cfg.epochs and not done:
        net.train()
        # the batch order of an epoch depends only on (seed, epoch): resuming mid-epoch
        # skips exactly the batches already seen; under torchrun every rank builds the same
        # list and takes every world-th batch from its rank on (the whole list in one process)
        rng = np.random.default_rng([cfg.seed, progress["epoch"]])
        all_batches = list(token_batches(train_data, cfg.max_tokens, rng))
        batches = ddp.shard(all_batches)
        torch.manual_seed(cfg.seed * 1000 + progress["epoch"] * 7919 + progress["batch"]
                          + 104729 * rank)
        bar = tqdm(batches[progress["batch"]:], desc=f"epoch {progress['epoch'] + 1}",
                   leave=False, mininterval=10, disable=not ddp.is_main())
        loss_sum, tokens, pairs = 0.0, 0, 0
        src_id_sum = torch.zeros((), dtype=torch.int64, device=device)
        for src, tgt in bar:
            src, tgt = src.to(device), tgt.to(device)
            pairs, src_id_sum = pairs + src.size(0), src_id_sum + src.sum()
            for group in optimizer.param_groups:
                group["lr"] = lr_at(progress["step"] + 1, cfg)
            with autocast:
                logits = net(src, tgt[:, :-1], cfg.teacher_forcing_ratio)
            loss = F.cross_entropy(logits.float().flatten(0, 1), tgt[:, 1:].flatten(),
                                   ignore_index=PAD, label_smoothing=cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            optimizer.step()
            n = int((tgt[:, 1:] != PAD).sum())
            loss_sum, tokens = loss_sum + loss.item() * n, tokens + n
            progress["batch"] += 1
            progress["step"] += 1
            if cfg.checkpoint_every and progress["step"] % cfg.checkpoint_every == 0:
                save()
            if cfg.max_steps is not None and progress["step"] >= cfg.max_steps:
                done = True
                break
        log.debug("rank %d/%d epoch %d: trained on %d of %d batches, %d pairs, %d target "
                  "tokens (source id sum %d)", rank, world, progress["epoch"] + 1,
                  len(batches), len(all_batches), pairs, tokens, int(src_id_sum))
        if done:
            break
        val = validation_loss(model, val_data, device, across_ranks=True)
        loss_all, tokens_all = ddp.all_reduce_sum([loss_sum, tokens], device)
        progress["history"].append({"epoch": progress["epoch"] + 1,
                                    "train_loss": round(loss_all / max(tokens_all, 1), 4),
                                    "val_loss": round(val, 4), "val_ppl": round(math.exp(val), 2),
                                    "lr": optimizer.param_groups[0]["lr"]})
        if ddp.is_main():
            log.info("epoch %d: %s", progress["epoch"] + 1, progress["history"][-1])
            save_checkpoint(cfg.checkpoint_dir / f"epoch{progress['epoch'] + 1:03d}.pt",
                            {"model": model.state_dict()})
        progress["epoch"] += 1
        progress["batch"] = 0
        save()
    wall = progress["elapsed"] + time.perf_counter() - t0
    card = finish(model, tok, val_data, cfg, progress, wall, device) if ddp.is_main() else None
    return ddp.broadcast_object(card)


def finish(model: Seq2Seq, tok: Tokenizer, val_data: Encoded, cfg: TrainConfig,
           progress: dict[str, Any], wall_s: float, device: torch.device) -> dict[str, Any]:
    """Average the last epochs' weights, score them on val and write the artifact
    (rank 0's job under torchrun)."""
    averaged = average_checkpoints(cfg.checkpoint_dir, progress["epoch"], cfg.average_last)
    if averaged is not None:
        model.load_state_dict(averaged)
    card_extra = {"val_loss_final": validation_loss(model, val_data, device)}
    return write_artifact(model, tok, cfg, progress, wall_s, card_extra)


def average_checkpoints(folder: Path, last_epoch: int, k: int) -> dict[str, torch.Tensor] | None:
    """Mean of the weights saved after epochs ``last_epoch - k + 1 .. last_epoch``; None when
    fewer than two of them exist."""
    paths = [folder / f"epoch{e:03d}.pt" for e in range(max(1, last_epoch - k + 1), last_epoch + 1)]
    states = [s["model"] for p in paths if (s := load_checkpoint(p)) is not None]
    if len(states) < 2:
        return None
    log.info("averaging the weights of %d epochs", len(states))
    return {key: (torch.stack([s[key].float() for s in states]).mean(0).to(states[0][key].dtype)
                  if states[0][key].is_floating_point() else states[-1][key])
            for key in states[0]}


def write_artifact(model: torch.nn.Module, tok: Tokenizer, cfg: TrainConfig,
                   progress: dict[str, Any], wall_s: float,
                   extra: dict[str, Any]) -> dict[str, Any]:
    """Write float16 weights, ``config.json``, ``card.json`` and ``spm.model`` to ``out_dir``."""
    model = model.cpu().eval()
    config = {"arch": cfg.arch, "model": {"vocab_size": tok.vocab_size, **cfg.model}}
    card = {
        "task": "translation",
        "name": f"multi30k-de-en-{cfg.arch}",
        "arch": type(model).__name__,
        "dataset": {"name": "Multi30k task 1 (de→en)", "train_split": "train (29,000)",
                    "eval_splits": ["val (1,014)", "test_2016_flickr (1,000)"]},
        "tokenizer": f"SentencePiece unigram, joint de+en, {tok.vocab_size} pieces, train only",
        "metrics": {"val_loss_final": round(extra["val_loss_final"], 4)},
        "metrics_command": "modelzoo evaluate translation --split val|test_2016_flickr",
        "history": progress["history"],
        "training_command": cfg.command,
        "training": {**training_record(cfg, ("data_dir", "out_dir", "checkpoint_dir", "resume",
                                             "command")),
                     "steps": progress["step"], "wall_time_s": round(wall_s, 1),
                     "hardware": hardware_summary(),
                     **({"world_size": ddp.world_size()} if ddp.world_size() > 1 else {})},
        "params": sum(p.numel() for p in model.parameters()),
        "weights_dtype": "float16",
        "git_commit": git_commit(),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    tensors = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    save_artifact(cfg.out_dir, tensors, config, card)
    (cfg.out_dir / TOKENIZER_FILE).write_bytes((cfg.checkpoint_dir / TOKENIZER_FILE).read_bytes())
    write_manifest(cfg.out_dir)
    return card
