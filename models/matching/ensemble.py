"""Build an ensemble matcher: ``modelzoo ensemble matching --members esim-quora,dssm-quora``.

Model averaging (ensembling of probabilities; Dietterich 2000, "Ensemble Methods in Machine
Learning"): the ensemble's match probability is the unweighted mean of its members'
probabilities (:class:`~models.matching.predictor.EnsembleMatcher`). Building one scores the
dataset's dev split with every member through that served code path, tunes the decision
threshold on the average as training does (:func:`~models.matching.train.dev_metrics`), and
writes ``<root>/<name>/`` with ``ensemble.json`` (members, dataset, threshold) and
``card.json``; no weights are copied. The index card and manifest of ``<root>`` are then
rewritten (:func:`~models.matching.train.write_index`), so the ensemble becomes the default
when its dev metric is the best.

The members are chosen by looking at dev, so dev figures flatter an ensemble more than a
single model. For Quora the card therefore adds a held-out-half accuracy: the threshold is
tuned on a random half of dev and the accuracy measured on the other half (20 random
halvings, both directions; :func:`held_out_half_accuracy`). WikiQA's MAP and MRR use no
threshold; there only the choice of members was made on dev.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.common.artifacts import CARD, CONFIG, git_commit, write_json
from models.common.device import hardware_summary
from models.matching.data import accuracy_f1, best_threshold, read_pairs, split_path
from models.matching.predictor import (
    ENSEMBLE_ARCH,
    ENSEMBLE_FILE,
    EnsembleMatcher,
    Matcher,
    load_matcher,
    mean_probabilities,
)
from models.matching.train import EVAL_SPLITS, dev_metrics, to_examples, write_index
from models.matching.transformer import TransformerMatcher

log = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
HALVINGS = 20
HALVING_SEED = 0
SCORING_BATCH = 128  # as `modelzoo evaluate matching`, so its figures are reproduced exactly
SELECTION_NOTE = ("The members were chosen by comparing dev figures and the threshold is "
                  "tuned on dev, so these dev metrics are optimistic; no test split is "
                  "available here.")


def held_out_half_accuracy(scores: np.ndarray, labels: np.ndarray, halvings: int = HALVINGS,
                           seed: int = HALVING_SEED) -> dict[str, Any]:
    """Accuracy with the threshold tuned on one random half and measured on the other half,
    over ``halvings`` random halvings, each used in both directions (``2 * halvings`` runs).

    Args:
        scores: ``(N,)`` float match probabilities.
        labels: ``(N,)`` 0/1 labels.
        halvings: how many random halvings (``np.random.default_rng(seed)`` permutations).

    Returns:
        ``{"mean", "sd" (sample), "min", "max", "runs", "method"}``; accuracies as fractions.

    Raises:
        ValueError: fewer than 4 scores, shapes that differ, or ``halvings < 1``.
    """
    if len(scores) != len(labels) or len(scores) < 4 or halvings < 1:
        raise ValueError(f"need as many labels as scores (got {len(scores)} and "
                         f"{len(labels)}), at least 4 of them, and halvings >= 1")
    rng = np.random.default_rng(seed)
    accuracies = []
    for _ in range(halvings):
        order = rng.permutation(len(scores))
        halves = order[:len(order) // 2], order[len(order) // 2:]
        for tune, test in (halves, halves[::-1]):
            threshold = best_threshold(scores[tune], labels[tune], "accuracy")
            accuracies.append(accuracy_f1(scores[test], labels[test], threshold)[0])
    values = np.asarray(accuracies)
    return {"mean": float(values.mean()), "sd": float(values.std(ddof=1)),
            "min": float(values.min()), "max": float(values.max()), "runs": len(values),
            "method": (f"threshold tuned for accuracy on a random half of dev, accuracy on "
                       f"the other half; {halvings} random halvings (numpy seed {seed}), "
                       "both directions")}


def _check_members(root: Path, members: Sequence[str]) -> None:
    """Raise ValueError unless ``members`` are >= 2 distinct model folders of ``root``."""
    if len(members) < 2 or len(set(members)) != len(members):
        raise ValueError(f"give at least two distinct members, got {list(members)}")
    models = sorted(p.name for p in root.iterdir() if (p / CONFIG).is_file())
    unknown = [m for m in members if m not in models]
    if unknown:
        raise ValueError(f"{', '.join(unknown)} is not a model folder of {root}; members "
                         f"must be among: {', '.join(models) or 'none'}")


def _check_name(root: Path, name: str) -> None:
    """Raise ValueError unless ``name`` is a safe folder name that is not a trained model's."""
    if not NAME_PATTERN.fullmatch(name):
        raise ValueError(f"name {name!r} must be letters, digits, '.', '_' or '-' (at most "
                         "100, starting with a letter or digit)")
    if (root / name / CONFIG).is_file():
        raise ValueError(f"{root / name} is a trained model folder; pick another name")


def _dataset(members: Sequence[Matcher | TransformerMatcher]) -> str:
    """The dataset all ``members`` were trained on.

    Raises:
        ValueError: members of different datasets.
    """
    datasets = {m.name: m.config.get("dataset") for m in members}
    if len(set(datasets.values())) != 1:
        raise ValueError(f"members must share one dataset, got {datasets}")
    return str(next(iter(datasets.values())))


def build_ensemble(root: Path, members: Sequence[str], data_dir: Path, name: str | None = None,
                   device: torch.device | str = "cpu", command: str = "") -> dict[str, Any]:
    """Score the members' dev split, write ``root/<name>/`` (``ensemble.json``, ``card.json``)
    and refresh ``root``'s index card and manifest.

    Args:
        root: the matching artifact folder holding the member model folders.
        members: member folder names (``<arch>-<dataset>``), all of one dataset.
        data_dir: the folder holding ``quora/`` and ``wikiqa/``.
        name: the ensemble's folder and served name; default ``ensemble-<dataset>``.
        device: where the members score dev (float32; no quantization).
        command: the command line, recorded in the card.

    Returns:
        The ensemble's card.

    Raises:
        ValueError: fewer than two members, an unknown member, members of different
            datasets, or a bad ``name``.
        FileNotFoundError: the dev split is missing.
        models.common.artifacts.ArtifactError: a member folder cannot be loaded.
    """
    _check_members(root, members)
    device = torch.device(device)
    matchers = [load_matcher(root / m, device, quantize=False) for m in members]
    dataset = _dataset(matchers)
    name = name or f"ensemble-{dataset}"
    _check_name(root, name)
    dev_ex = to_examples(read_pairs(split_path(data_dir, dataset, "dev"))[1])
    config: dict[str, Any] = {"arch": ENSEMBLE_ARCH, "members": list(members),
                              "dataset": dataset, "threshold": 0.5}
    ensemble = EnsembleMatcher(name, matchers, config, {})
    started = time.perf_counter()
    per_member = ensemble.member_probabilities([(a, b) for a, b, _, _ in dev_ex], device,
                                               SCORING_BATCH)  # (M, N)
    seconds = time.perf_counter() - started
    probs = np.asarray(mean_probabilities(per_member), dtype=np.float64)  # (N,)
    labels = np.array([e[2] for e in dev_ex])
    metrics = dev_metrics(dataset, probs, dev_ex)
    threshold = round(metrics["threshold"], 6)  # as a model's config.json; figures at it:
    accuracy, f1 = accuracy_f1(probs, labels, threshold)  # evaluate reproduces the card
    metrics |= {"threshold": threshold, "f1": f1} | ({"accuracy": accuracy}
                                                      if dataset == "quora" else {})
    config["threshold"] = threshold
    member_figures: dict[str, Any] = {}
    for matcher, member_probs in zip(matchers, per_member, strict=True):
        scores = np.asarray(member_probs, dtype=np.float64)
        member_figures[matcher.name] = {
            "metrics": {k: round(v, 4) for k, v in dev_metrics(dataset, scores, dev_ex).items()}}
        if dataset == "quora":
            member_figures[matcher.name]["held_out_half_accuracy"] = round(
                held_out_half_accuracy(scores, labels)["mean"], 4)
    card: dict[str, Any] = {
        "task": "matching", "name": name, "arch": ENSEMBLE_ARCH,
        "method": ("mean of the members' match probabilities (model averaging / ensembling "
                   "of probabilities, Dietterich 2000); threshold tuned on the average"),
        "members": list(members),
        "dataset": {"name": dataset, "eval_split": EVAL_SPLITS[dataset],
                    "note": SELECTION_NOTE},
        "metrics": {k: round(v, 4) for k, v in metrics.items()},
        "metrics_command": f"modelzoo evaluate matching --model {name} --file "
                           f"{split_path(Path('$MODELZOO_DATA_DIR'), dataset, 'dev')}",
    }
    if dataset == "quora":
        held_out = held_out_half_accuracy(probs, labels)
        card["held_out_half_accuracy"] = {k: round(v, 4) if isinstance(v, float) else v
                                          for k, v in held_out.items()}
    else:
        card["held_out_half_accuracy"] = None
        card["dataset"]["note"] += (" MAP and MRR use no threshold: only the choice of members "
                                    "was made on dev.")
    card |= {
        "members_on_dev": member_figures,
        "command": command,
        "scoring": {"pairs": len(dev_ex), "seconds": round(seconds, 1), "device": str(device),
                    "hardware": hardware_summary()},
        "params": sum(int(m.card.get("params") or 0) for m in matchers),
        "weights": "none of its own: the members' folders are loaded once and shared",
        "git_commit": git_commit(),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    write_ensemble(root / name, config, card)
    index = write_index(root)
    log.info("%s on %s dev: %s; index defaults: match %s, rank %s", name, dataset,
             card["metrics"], index.get("default_match"), index.get("default_rank"))
    return card


def write_ensemble(directory: Path, config: dict[str, Any], card: dict[str, Any]) -> None:
    """Write (or overwrite) an ensemble folder: ``ensemble.json`` (``arch``, ``members``,
    ``dataset``, ``threshold``) and ``card.json``. The caller refreshes the index card and
    manifest (:func:`~models.matching.train.write_index`).

    Raises:
        ValueError: ``directory`` holds a trained model (``config.json``).
    """
    _check_name(directory.parent, directory.name)
    directory.mkdir(parents=True, exist_ok=True)
    write_json(directory / ENSEMBLE_FILE, config)
    write_json(directory / CARD, card)
