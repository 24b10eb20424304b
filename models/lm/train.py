"""Train the LSTM LM on PTB and write ``artifacts/lm``.

Two presets: ``baseline`` is exactly the seed tutorial (Embedding(10000,128) ->
LSTM(128,1024) -> Linear, Adam lr 0.002, clip 0.5, seq 30, batch 20, 5 epochs);
``served`` follows Zaremba et al. 2014 "medium" regularisation with tied weights
(Press & Wolf 2017): 2 layers, dropout 0.5, SGD lr 20 divided by 4 when validation
perplexity stops improving (pytorch/examples word_language_model).

Under ``torchrun --nproc_per_node N`` (see :mod:`models.common.distributed`) the model is
wrapped in DistributedDataParallel and the corpus is cut into ``N * batch_size`` streams,
rank ``r`` training on streams ``r * batch_size .. (r + 1) * batch_size - 1``: each rank
walks its own disjoint ``1/N`` of the text with ``batch_size`` streams (``batch_size`` is
per process; the effective batch is ``N * batch_size``) and an epoch takes ``1/N`` of the
steps. Rank 0 computes validation perplexity, writes checkpoints and the artifact.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

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
from models.lm.data import Corpus, batchify, get_batch
from models.lm.evaluate import perplexity
from models.lm.model import RNNLM, detach

log = logging.getLogger(__name__)

PRESETS: dict[str, dict[str, Any]] = {
    "baseline": {"embed_size": 128, "hidden_size": 1024, "num_layers": 1, "dropout": 0.0,
                 "tie_weights": False, "optimizer": "adam", "lr": 0.002, "clip": 0.5,
                 "seq_length": 30, "batch_size": 20, "epochs": 5},
    "served": {"embed_size": 650, "hidden_size": 650, "num_layers": 2, "dropout": 0.5,
               "tie_weights": True, "optimizer": "sgd", "lr": 20.0, "clip": 0.25,
               "seq_length": 35, "batch_size": 20, "epochs": 40},
}


@dataclass
class TrainConfig:
    """Every knob of an LM training run."""

    train_file: Path = field(default_factory=lambda: data_dir() / "ptb" / "ptb.train.txt")
    valid_file: Path = field(default_factory=lambda: data_dir() / "ptb" / "ptb.valid.txt")
    out_dir: Path = field(default_factory=lambda: artifacts_dir() / "lm")
    checkpoint_dir: Path = Path("runs/lm")
    preset: str = "served"
    embed_size: int = 650
    hidden_size: int = 650
    num_layers: int = 2
    dropout: float = 0.5
    tie_weights: bool = True
    optimizer: Literal["adam", "sgd"] = "sgd"
    lr: float = 20.0
    lr_decay: float = 4.0
    clip: float = 0.25
    seq_length: int = 35
    batch_size: int = 20
    epochs: int = 40
    seed: int = 0
    bf16: bool = False
    device: str = "cpu"
    checkpoint_every: int = 200
    resume: bool = False
    max_steps: int | None = None
    set_lr: float | None = None
    command: str = "modelzoo train lm"

    @classmethod
    def from_preset(cls, preset: str, **overrides: Any) -> TrainConfig:
        """A config from a named preset, with explicit overrides.

        Raises:
            ValueError: unknown preset.
        """
        return cls(preset=preset, **preset_values(PRESETS, preset, overrides))

    def model_config(self, vocab_size: int) -> dict[str, Any]:
        """Constructor arguments of :class:`RNNLM` (what ``config.json`` holds)."""
        return {"vocab_size": vocab_size, "embed_size": self.embed_size,
                "hidden_size": self.hidden_size, "num_layers": self.num_layers,
                "dropout": self.dropout, "tie_weights": self.tie_weights}


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train with truncated BPTT, keep the best validation checkpoint, write the artifact.

    The hidden state is carried across ``seq_length`` chunks and detached between them.
    Checkpoints (model, optimizer, position, best state) go to ``checkpoint_dir/last.pt``
    every ``checkpoint_every`` steps and at each epoch end; ``resume`` continues there.
    Under torchrun each rank trains on its own streams (module docstring); resume with the
    same number of processes.

    Returns:
        The model card (on every rank).

    Raises:
        FileNotFoundError: a data file does not exist.
    """
    with ddp.session(resolve_device(cfg.device)) as device:
        return _train(cfg, device)


def _train(cfg: TrainConfig, device: torch.device) -> dict[str, Any]:
    seed_everything(cfg.seed)
    rank, world = ddp.rank(), ddp.world_size()
    corpus = Corpus.load(cfg.train_file, cfg.valid_file)
    vocab_size = len(corpus.dictionary)
    # (world * B, N') streams; this rank's B rows (all of batchify(train, B) in one process)
    streams = batchify(corpus.train, cfg.batch_size * world)[
        rank * cfg.batch_size:(rank + 1) * cfg.batch_size].to(device)
    model = RNNLM(**{k: v for k, v in cfg.model_config(vocab_size).items()
                     if k != "vocab_size"}, vocab_size=vocab_size).to(device)
    optimizer: torch.optim.Optimizer = (
        torch.optim.Adam(model.parameters(), lr=cfg.lr) if cfg.optimizer == "adam"
        else torch.optim.SGD(model.parameters(), lr=cfg.lr)
    )
    ckpt_path = cfg.checkpoint_dir / "last.pt"
    progress: dict[str, Any] = {"epoch": 0, "step": 0, "global_step": 0, "elapsed": 0.0,
                                "best_ppl": math.inf, "history": []}
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    hidden = model.init_hidden(cfg.batch_size, device)
    state = load_checkpoint(ckpt_path) if cfg.resume else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        best_state, progress = state["best_model"], state["progress"]
        torch.set_rng_state(state["rng"])
        hidden = (state["hidden"][0].to(device), state["hidden"][1].to(device))
        if rank > 0:  # the checkpoint holds rank 0's state; other ranks restart theirs
            hidden = model.init_hidden(cfg.batch_size, device)
    if cfg.set_lr is not None:  # a manual step of the schedule, e.g. when resuming
        for group in optimizer.param_groups:
            group["lr"] = cfg.set_lr
        log.info("resumed at epoch %d step %d", progress["epoch"], progress["step"])
    net = ddp.wrap(model, device)  # DDP for the training passes; `model` for everything else
    if world > 1:  # different dropout masks on each rank
        torch.manual_seed(cfg.seed + 7919 * rank)

    t0 = time.perf_counter()

    def checkpoint() -> None:
        if not ddp.is_main():
            return
        save_checkpoint(ckpt_path, {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "best_model": best_state, "rng": torch.get_rng_state(), "hidden": hidden,
            "progress": {**progress, "elapsed": progress["elapsed"] + time.perf_counter() - t0},
        })

    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if cfg.bf16
                else contextlib.nullcontext())
    starts = list(range(0, streams.size(1) - 1, cfg.seq_length))
    done = False
    while progress["epoch"] < cfg.epochs and not done:
        net.train()
        first = progress["step"]
        if first == 0:
            hidden = model.init_hidden(cfg.batch_size, device)
        bar = tqdm(starts[first:], desc=f"epoch {progress['epoch'] + 1}/{cfg.epochs}",
                   leave=False, mininterval=5, disable=not ddp.is_main())
        seen, id_sum = 0, torch.zeros((), dtype=torch.int64, device=device)
        for i in bar:
            inputs, targets = get_batch(streams, i, cfg.seq_length)
            seen, id_sum = seen + inputs.numel(), id_sum + inputs.sum()
            hidden = detach(hidden)
            with autocast:
                logits, hidden = net(inputs, hidden)
            loss = F.cross_entropy(logits.float().reshape(-1, vocab_size), targets.reshape(-1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            optimizer.step()
            progress["step"] += 1
            progress["global_step"] += 1
            if cfg.checkpoint_every and progress["global_step"] % cfg.checkpoint_every == 0:
                checkpoint()
            if cfg.max_steps is not None and progress["global_step"] >= cfg.max_steps:
                done = True
                break
        log.debug("rank %d/%d epoch %d: trained on %d input tokens (id sum %d)", rank, world,
                  progress["epoch"] + 1, seen, int(id_sum))
        if done:
            break
        # rank 0 validates; every rank takes its number, so all make the same lr decision
        ppl = ddp.broadcast_object(perplexity(model, corpus.valid, device=device)
                                   if ddp.is_main() else math.nan)
        progress["history"].append({"epoch": progress["epoch"] + 1, "valid_ppl": round(ppl, 2),
                                    "lr": optimizer.param_groups[0]["lr"]})
        if ddp.is_main():
            log.info("epoch %d: valid perplexity %.2f", progress["epoch"] + 1, ppl)
        if ppl < progress["best_ppl"]:
            progress["best_ppl"] = ppl
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif cfg.optimizer == "sgd":  # pytorch/examples: anneal when validation stalls
            for group in optimizer.param_groups:
                group["lr"] /= cfg.lr_decay
        progress["epoch"] += 1
        progress["step"] = 0
        checkpoint()
    wall = progress["elapsed"] + time.perf_counter() - t0
    if progress["history"]:
        model.load_state_dict(best_state)
    card = write_artifact(model, corpus, cfg, progress, wall) if ddp.is_main() else None
    return ddp.broadcast_object(card)


def write_artifact(
    model: RNNLM, corpus: Corpus, cfg: TrainConfig, progress: dict[str, Any], wall_s: float
) -> dict[str, Any]:
    """Save the (best) model in float16, vocabulary, config and card into ``cfg.out_dir``.

    The card's perplexity is measured on the float16-rounded weights, i.e. on exactly what
    the service loads (it computes in float32, on CPU; the model is moved there).
    """
    model = model.cpu()
    fp32_ppl = perplexity(model, corpus.valid)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    valid_ppl = perplexity(model, corpus.valid)
    n_params = sum(p.numel() for p in model.parameters())
    card = {
        "task": "lm",
        "name": f"lstm-lm-ptb-{cfg.preset}",
        "arch": f"{cfg.num_layers}-layer LSTM {cfg.hidden_size}"
                + (", tied embeddings" if cfg.tie_weights else ""),
        "dataset": {"name": "Penn Treebank (Mikolov LM version)", "split": "train",
                    "eval_split": "valid", "vocab_size": len(corpus.dictionary)},
        "metrics": {"valid_perplexity": round(valid_ppl, 2),
                    "valid_perplexity_fp32_weights": round(fp32_ppl, 2)},
        "metrics_command": "modelzoo evaluate lm --file ../shared/data/ptb/ptb.valid.txt",
        "history": progress["history"],
        "training": {**training_record(cfg, ("out_dir", "checkpoint_dir", "resume", "train_file",
                                             "valid_file")),
                     "steps": progress["global_step"], "wall_time_s": round(wall_s, 1),
                     "hardware": hardware_summary(),
                     **({"world_size": ddp.world_size()} if ddp.world_size() > 1 else {})},
        "params": n_params,
        "weights_dtype": "float16",
        "git_commit": git_commit(),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    tensors = {k: v.half() for k, v in model.state_dict().items()
               if not (cfg.tie_weights and k == "linear.weight")}
    save_artifact(cfg.out_dir, tensors, cfg.model_config(len(corpus.dictionary)), card)
    corpus.dictionary.save(cfg.out_dir)
    write_manifest(cfg.out_dir)
    return card
