"""Train a letter classifier on the shared handwriting sets (and EMNIST when given).

Two presets: ``baseline`` is the seed tutorial's CNN at 28x28 without augmentation;
``served`` is :class:`~models.handwriting.model.LetterCNN` at 32x32 with photo-like
augmentation, AdamW + one-cycle schedule (Smith & Topin 2019) and label smoothing.
Training uses the train splits only; accuracy on every test split is logged per epoch
for monitoring, and the last epoch's weights are kept (no selection on the test splits).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from models.common.artifacts import git_commit, save_artifact
from models.common.checkpoint import load_checkpoint, save_checkpoint
from models.common.config import preset_values, training_record
from models.common.device import hardware_summary, resolve_device
from models.common.manifest import write_manifest
from models.common.paths import artifacts_dir, data_dir
from models.common.seeding import seed_everything
from models.handwriting.augment import AugmentConfig, augment_batch, prepare_batch
from models.handwriting.data import SETS_64, LabelSet, LetterSet, load_emnist, load_sets
from models.handwriting.evaluate import format_scores, score_sets
from models.handwriting.model import build_model

log = logging.getLogger(__name__)

PRESETS: dict[str, dict[str, Any]] = {
    "baseline": {"arch": "seed", "image_size": 28, "augment": False, "optimizer": "adam",
                 "lr": 1e-3, "weight_decay": 0.0, "label_smoothing": 0.0, "epochs": 10,
                 "batch_size": 64},
    "served": {"arch": "cnn", "image_size": 32, "augment": True, "optimizer": "adamw",
               "lr": 3e-3, "weight_decay": 5e-4, "label_smoothing": 0.1, "epochs": 20,
               "batch_size": 128},
}


@dataclass
class TrainConfig:
    """Every knob of a handwriting training run."""

    data_dir: Path = field(default_factory=lambda: data_dir() / "handwriting")
    out_dir: Path = field(default_factory=lambda: artifacts_dir() / "handwriting")
    checkpoint_dir: Path = Path("runs/handwriting")
    preset: str = "served"
    sets: tuple[str, ...] = SETS_64
    label_set: str = "letters"
    arch: str = "cnn"
    image_size: int = 32
    augment: bool = True
    optimizer: str = "adamw"
    lr: float = 3e-3
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    epochs: int = 20
    batch_size: int = 128
    seed: int = 0
    bf16: bool = False
    device: str = "cpu"
    resume: bool = False
    max_steps: int | None = None
    emnist_images: Path | None = None
    emnist_labels: Path | None = None
    emnist_mapping: Path | None = None
    command: str = ""

    @classmethod
    def from_preset(cls, preset: str, **overrides: Any) -> TrainConfig:
        """The preset's values with non-None ``overrides`` on top.

        Raises:
            ValueError: an unknown preset.
        """
        return cls(preset=preset, **preset_values(PRESETS, preset, overrides))

    def model_config(self, num_classes: int) -> dict[str, Any]:
        """Constructor arguments of the model (written to config.json with ``arch``)."""
        extra = {"image_size": self.image_size} if self.arch == "seed" else {}
        return {"num_classes": num_classes, **extra}


def load_training_data(cfg: TrainConfig, label_set: LabelSet) -> tuple[LetterSet, LetterSet]:
    """(train, test) letter sets at 64x64; EMNIST joins the train side when configured."""
    train = load_sets(cfg.data_dir, cfg.sets, 0, label_set)
    test = load_sets(cfg.data_dir, cfg.sets, 1, label_set)
    if cfg.emnist_images and cfg.emnist_labels and cfg.emnist_mapping:
        emnist = load_emnist(cfg.emnist_images, cfg.emnist_labels, cfg.emnist_mapping)
        emnist = emnist.select(label_set.targets(emnist.codepoints) >= 0)
        train = LetterSet.concat([train, emnist])
    return train, test


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train, checkpoint every epoch (``checkpoint_dir/last.pt``; ``resume`` continues there),
    evaluate per test split, write the artifact (float16 weights) and return the card.

    Raises:
        FileNotFoundError: a dataset archive is missing.
        ValueError: unknown preset, arch or label set.
    """
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    label_set = LabelSet.named(cfg.label_set)
    train_set, test_set = load_training_data(cfg, label_set)
    log.info("train %d letters, test %d, %d classes", len(train_set), len(test_set),
             len(label_set.classes))
    images = torch.from_numpy(train_set.images)                      # (N, 64, 64) uint8
    targets = torch.from_numpy(label_set.targets(train_set.codepoints))  # (N,) int64
    model = build_model(cfg.arch, **cfg.model_config(len(label_set.classes))).to(device)
    opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    optimizer = opt_cls(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = (len(targets) + cfg.batch_size - 1) // cfg.batch_size
    scheduler = (torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr,
                                                     total_steps=cfg.epochs * steps_per_epoch)
                 if cfg.optimizer == "adamw" else None)
    g = torch.Generator().manual_seed(cfg.seed)
    aug = AugmentConfig()
    progress: dict[str, Any] = {"epoch": 0, "global_step": 0, "elapsed": 0.0, "history": []}
    ckpt_path = cfg.checkpoint_dir / "last.pt"
    state = load_checkpoint(ckpt_path) if cfg.resume else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        g.set_state(state["generator"])
        progress = state["progress"]
        log.info("resumed after epoch %d", progress["epoch"])
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if cfg.bf16
                else contextlib.nullcontext())
    t0 = time.perf_counter()
    done = False
    while progress["epoch"] < cfg.epochs and not done:
        model.train()
        order = torch.randperm(len(targets), generator=g)
        total_loss, correct = 0.0, 0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {progress['epoch'] + 1}/{cfg.epochs}",
                   leave=False, mininterval=5)
        for step in bar:
            idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
            x = images[idx].float().div(255).unsqueeze(1)  # (B, 1, 64, 64)
            x = (augment_batch(x, cfg.image_size, aug, g) if cfg.augment
                 else prepare_batch(images[idx], cfg.image_size))
            y = targets[idx].to(device)
            with autocast:
                logits = model(x.to(device))
            loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            total_loss += loss.item() * len(idx)
            correct += int((logits.argmax(-1) == y).sum())
            progress["global_step"] += 1
            if cfg.max_steps is not None and progress["global_step"] >= cfg.max_steps:
                done = True
                break
        scores = {s.name: round(s.accuracy, 4)
                  for s in score_sets(model, test_set, label_set, cfg.image_size, device=device)}
        progress["history"].append({"epoch": progress["epoch"] + 1,
                                    "train_loss": round(total_loss / len(targets), 4),
                                    "train_accuracy": round(correct / len(targets), 4),
                                    "test_accuracy": scores})
        log.info("epoch %d: %s", progress["epoch"] + 1, progress["history"][-1])
        progress["epoch"] += 1
        save_checkpoint(ckpt_path, {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else {},
            "generator": g.get_state(),
            "progress": {**progress, "elapsed": progress["elapsed"] + time.perf_counter() - t0},
        })
    wall = progress["elapsed"] + time.perf_counter() - t0
    return write_artifact(model, cfg, label_set, test_set, progress, wall)


def write_artifact(model: torch.nn.Module, cfg: TrainConfig, label_set: LabelSet,
                   test_set: LetterSet, progress: dict[str, Any], wall_s: float) -> dict[str, Any]:
    """Round the weights to float16, score every test split with exactly those weights,
    and write ``model.safetensors`` + ``config.json`` + ``card.json`` into ``cfg.out_dir``.
    """
    model = model.cpu().eval()
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(t.half().float())
    scores = score_sets(model, test_set, label_set, cfg.image_size)
    log.info("test accuracy (float16 weights):\n%s", format_scores(scores))
    config = {"arch": cfg.arch, "model": cfg.model_config(len(label_set.classes)),
              "image_size": cfg.image_size, "label_set": label_set.name,
              "classes": "".join(label_set.classes)}
    card = {
        "task": "handwriting",
        "name": f"letters-{cfg.arch}-{cfg.preset}",
        "arch": type(model).__name__,
        "labels": f"{label_set.name}: {''.join(label_set.classes)} (case-insensitive)",
        "dataset": {"name": "shared handwriting sets (64x64)", "train_split": "split==0",
                    "eval_split": "split==1", "sets": list(cfg.sets),
                    "emnist": bool(cfg.emnist_images)},
        "metrics": {f"test_accuracy_{s.name}": round(s.accuracy, 4) for s in scores},
        "metrics_command": "modelzoo evaluate handwriting",
        "training_command": cfg.command,
        "history": progress["history"],
        "training": {**training_record(cfg, ("data_dir", "out_dir", "checkpoint_dir", "resume",
                                             "command")),
                     "steps": progress["global_step"], "wall_time_s": round(wall_s, 1),
                     "hardware": hardware_summary()},
        "params": sum(p.numel() for p in model.parameters()),
        "weights_dtype": "float16",
        "git_commit": git_commit(),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    tensors = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    save_artifact(cfg.out_dir, tensors, config, card)
    write_manifest(cfg.out_dir)
    return card

