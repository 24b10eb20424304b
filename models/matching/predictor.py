"""Serving-side text-pair matching: several trained matchers, each text pair → probability.

The artifact folder ``artifacts/matching/`` holds one sub-folder per trained model
(``<arch>-<dataset>``: ``model.safetensors`` in float16, ``config.json``, ``vocab.json``,
``card.json``), optionally ensemble sub-folders (``ensemble.json`` naming member model
folders of the same dataset, and ``card.json``; no weights of their own: see
:class:`EnsembleMatcher`), and an index ``card.json`` naming the default model for pair
scoring (best Quora dev accuracy) and for ranking (best WikiQA dev MAP), ensembles included.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from models.common.artifacts import CARD, CONFIG, ArtifactError, load_artifact, read_json
from models.common.errors import InvalidInputError, UnknownItemError
from models.common.quantize import apply_saved_int8
from models.matching.features import Featurizer, Vocab, tokenize
from models.matching.model import build_model
from models.matching.transformer import (
    TRANSFORMER_ARCHS,
    TransformerMatcher,
    load_tokenizer,
    load_transformer,
)

log = logging.getLogger(__name__)

VOCAB_FILE = "vocab.json"
ENSEMBLE_FILE = "ensemble.json"
ENSEMBLE_ARCH = "ensemble"
Use = Literal["match", "rank"]
DATASET_OF_USE: dict[str, str] = {"match": "quora", "rank": "wikiqa"}


def quantize_matcher(model: nn.Module) -> nn.Module:
    """int8 dynamic quantization of every ``nn.Linear`` and ``nn.LSTM`` (CPU only; embeddings
    and convolutions stay float32)."""
    quantized: nn.Module = torch.ao.quantization.quantize_dynamic(
        model, {nn.Linear, nn.LSTM}, dtype=torch.qint8)
    return quantized


@dataclass
class Matcher:
    """One loaded matching model.

    Attributes:
        name: the served name (``esim-quora``, ...).
        model: the network, eval mode; ``model(batch)`` gives ``(B,)`` logits.
        featurizer: its vocabulary and trigram hashing.
        config: ``config.json`` (``arch``, ``model``, ``featurizer``, ``dataset``,
            ``threshold``).
        card: the model's ``card.json``.
    """

    name: str
    model: nn.Module
    featurizer: Featurizer
    config: dict[str, Any]
    card: dict[str, Any]

    @property
    def threshold(self) -> float:
        """Decision threshold on the probability, tuned for accuracy on the dev split."""
        return float(self.config.get("threshold", 0.5))

    @torch.inference_mode()
    def probabilities(self, pairs: Sequence[tuple[list[str], list[str]]], device: torch.device,
                      batch_size: int = 64) -> list[float]:
        """Match probabilities of token-list pairs, in input order (length-sorted batches)."""
        out = [0.0] * len(pairs)
        order = sorted(range(len(pairs)), key=lambda i: (len(pairs[i][0]), len(pairs[i][1])))
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            batch = self.featurizer.batch([pairs[i] for i in chunk]).to(device)
            probs = torch.sigmoid(self.model(batch).float()).tolist()
            for i, p in zip(chunk, probs, strict=True):
                out[i] = p
        return out


def mean_probabilities(per_member: Sequence[Sequence[float]]) -> list[float]:
    """Unweighted mean over members: ``(M, N)`` probabilities → ``(N,)``, summed in member order.

    Raises:
        ValueError: no member, or members with different numbers of pairs.
    """
    if not per_member:
        raise ValueError("an ensemble needs at least one member")
    return [sum(ps) / len(ps) for ps in zip(*per_member, strict=True)]


@dataclass
class EnsembleMatcher:
    """A served model whose match probability is the mean of its members' probabilities
    (model averaging / ensembling of probabilities: Dietterich 2000, "Ensemble Methods in
    Machine Learning"; models built differently make partly independent errors, which an
    unweighted average of their probabilities partly cancels).

    It has the interface of :class:`Matcher` (``name``, ``threshold``, ``config``, ``card``,
    ``probabilities``) but no network of its own: ``model`` is ``None``, the members are the
    predictor's own loaded model folders (not loaded twice; int8 quantization and CUDA casts
    apply to them as served models).

    Attributes:
        name: the served name, its folder's (``ensemble-quora``, ...).
        members: the member matchers, all trained on ``config["dataset"]``.
        config: ``ensemble.json``: ``arch`` (``"ensemble"``), ``members`` (folder names),
            ``dataset``, ``threshold`` (tuned for accuracy on dev for Quora, F1 for WikiQA,
            on the averaged probability).
        card: the ensemble's ``card.json`` (dev metrics of the average, ``members``).
    """

    name: str
    members: list[Matcher | TransformerMatcher]
    config: dict[str, Any]
    card: dict[str, Any]

    @property
    def model(self) -> None:
        """No network of its own (``models.common.predictor.predictor_modules`` skips it)."""
        return None

    @property
    def threshold(self) -> float:
        """Decision threshold on the averaged probability, tuned on the dev split."""
        return float(self.config.get("threshold", 0.5))

    def member_probabilities(self, pairs: Sequence[tuple[list[str], list[str]]],
                             device: torch.device, batch_size: int = 64) -> list[list[float]]:
        """``(M, N)``: each member's match probabilities of the token-list pairs, in order."""
        return [m.probabilities(pairs, device, batch_size) for m in self.members]

    def probabilities(self, pairs: Sequence[tuple[list[str], list[str]]], device: torch.device,
                      batch_size: int = 64) -> list[float]:
        """``(N,)`` mean of the members' match probabilities, in input order."""
        return mean_probabilities(self.member_probabilities(pairs, device, batch_size))


ServedMatcher = Matcher | TransformerMatcher | EnsembleMatcher


@dataclass
class MatchResult:
    """Scores of text pairs from one model: ``scores[i]`` is the probability that pair i
    matches; ``labels[i]`` is ``scores[i] >= threshold``."""

    model: str
    scores: list[float]
    threshold: float
    labels: list[bool] = field(init=False)

    def __post_init__(self) -> None:
        self.labels = [s >= self.threshold for s in self.scores]


@dataclass
class RankedCandidate:
    """One candidate in a ranking: its position in the request, its text and its score."""

    index: int
    text: str
    score: float


def load_matcher(directory: Path, device: torch.device,
                 quantize: bool) -> Matcher | TransformerMatcher:
    """Rebuild one model folder (float16 weights → float32; a ``minilm-*`` folder: its LoRA
    adapters and head on the installed all-MiniLM-L6-v2, merged).

    Raises:
        ArtifactError: files missing, weights that do not fit ``config.json``, or a
            ``minilm-*`` folder without the pretrained MiniLM installed.
    """
    tensors, config, card = load_artifact(directory)
    if config.get("arch") in TRANSFORMER_ARCHS:
        try:
            net = load_transformer(tensors, config)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise ArtifactError(f"{directory}: weights do not fit config.json: {exc}") from exc
        if quantize:
            net = quantize_matcher(net)
        return TransformerMatcher(directory.name, net.to(device), load_tokenizer(), config,
                                  card)
    try:
        model = build_model(config["arch"], **config["model"])
        model.load_state_dict({k: v.float() if v.is_floating_point() else v
                               for k, v in tensors.items()})
        vocab = Vocab(read_json(directory / VOCAB_FILE))
        featurizer = Featurizer(vocab, **config["featurizer"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ArtifactError(f"{directory}: weights do not fit config.json: {exc}") from exc
    model.eval()
    if quantize:
        model = quantize_matcher(model)
        apply_saved_int8(model, directory)  # <model>/int8/ from 'modelzoo quantize', if any
    return Matcher(directory.name, model.to(device), featurizer, config, card)


def load_ensemble(directory: Path,
                  models: Mapping[str, Matcher | TransformerMatcher]) -> EnsembleMatcher:
    """Rebuild one ensemble folder over the already loaded model folders it names.

    Args:
        directory: the folder holding ``ensemble.json`` and ``card.json``.
        models: the loaded model folders of the same artifact folder, by name.

    Raises:
        ArtifactError: a malformed ``ensemble.json``, a member that is not a loaded model
            folder (missing, or itself an ensemble; the message names it), or members
            trained on another dataset than the ensemble's.
    """
    config, card = read_json(directory / ENSEMBLE_FILE), read_json(directory / CARD)
    where = directory / ENSEMBLE_FILE
    names = config.get("members") if isinstance(config, dict) else None
    if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
        raise ArtifactError(f"{where}: 'members' must be a non-empty list of model folder "
                            "names; rebuild it with 'modelzoo ensemble matching --members ...'")
    missing = [n for n in names if n not in models]
    if missing:
        raise ArtifactError(
            f"ensemble {directory.name}: member {', '.join(missing)} is not a model folder "
            f"(<arch>-<dataset>/{CONFIG}) of {directory.parent}; model folders: "
            f"{', '.join(sorted(models)) or 'none'}. Restore the member or rebuild the "
            "ensemble with 'modelzoo ensemble matching --members ...'")
    dataset = config.get("dataset")
    other = {n: models[n].config.get("dataset") for n in names
             if models[n].config.get("dataset") != dataset}
    if other:
        raise ArtifactError(f"ensemble {directory.name} is for {dataset!r} but its members "
                            f"{other} were trained on another dataset")
    try:
        threshold = float(config["threshold"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{where}: 'threshold' must be a number") from exc
    config = {**config, "arch": ENSEMBLE_ARCH, "threshold": threshold}
    return EnsembleMatcher(directory.name, [models[n] for n in names], config, card)


class MatchingPredictor:
    """Scores text pairs (duplicate questions) and ranks candidates (answer selection).

    Args:
        matchers: the loaded models and ensembles by name.
        card: the index ``card.json`` (``default_match``, ``default_rank``).
        device: where the models run.
        quantized: int8 dynamic quantization applied.
    """

    task = "matching"

    def __init__(self, matchers: Mapping[str, ServedMatcher], card: dict[str, Any],
                 device: torch.device, quantized: bool) -> None:
        if not matchers:
            raise ArtifactError("no matching model to serve")
        self.matchers: dict[str, ServedMatcher] = dict(matchers)
        self.card, self.device, self.quantized = card, device, quantized
        self.defaults: dict[str, str] = {use: self._default(use) for use in ("match", "rank")}

    @classmethod
    def load(cls, artifact_dir: Path, device: torch.device | str = "cpu",
             quantize: bool = False) -> MatchingPredictor:
        """Load every model sub-folder of ``artifact_dir`` (those holding ``config.json``),
        then every ensemble sub-folder (``ensemble.json``) over them.

        Raises:
            ArtifactError: no model folder, a folder that cannot be loaded, or an ensemble
                whose member is not among the model folders.
        """
        device = torch.device("cpu") if quantize else torch.device(device)
        card = read_json(artifact_dir / CARD) if (artifact_dir / CARD).is_file() else {}
        folders = sorted(p for p in artifact_dir.iterdir() if (p / CONFIG).is_file())
        if not folders:
            raise ArtifactError(f"{artifact_dir} holds no model folder (<arch>-<dataset>/"
                                f"{CONFIG}); train one with 'modelzoo train matching'")
        models = {p.name: load_matcher(p, device, quantize) for p in folders}
        ensembles = sorted(p for p in artifact_dir.iterdir()
                           if (p / ENSEMBLE_FILE).is_file() and not (p / CONFIG).is_file())
        matchers: dict[str, ServedMatcher] = dict(models)
        matchers |= {p.name: load_ensemble(p, models) for p in ensembles}
        return cls(matchers, card, device, quantize)

    def warmup(self) -> None:
        """One pair scored by each served model, run once at startup by the service."""
        for matcher in self.matchers.values():
            matcher.probabilities([(["what"], ["what"])], self.device)

    def _default(self, use: Use) -> str:
        named = self.card.get(f"default_{use}")
        if named in self.matchers:
            return str(named)
        dataset = DATASET_OF_USE[use]
        same = [m for m in self.matchers.values() if m.config.get("dataset") == dataset]
        pool = same or list(self.matchers.values())
        key = "accuracy" if dataset == "quora" else "map"
        return max(pool, key=lambda m: m.card.get("metrics", {}).get(key, 0.0)).name

    def resolve(self, model: str | None, use: Use) -> ServedMatcher:
        """The matcher named ``model``, or the default for ``use``.

        Raises:
            UnknownItemError: no served model has that name (the message lists them).
        """
        name = self.defaults[use] if model is None else model
        if name not in self.matchers:
            raise UnknownItemError(f"unknown model {name!r}; served models: "
                                   f"{', '.join(sorted(self.matchers))}",
                                   details={"models": sorted(self.matchers)})
        return self.matchers[name]

    def models_info(self) -> list[dict[str, Any]]:
        """Each served model: name, arch (``ensemble`` for an ensemble), dataset, threshold,
        dev metrics, parameter count (an ensemble: its members' total), the uses (``match`` /
        ``rank``) it is the default for, and an ensemble's ``members`` (``None`` otherwise)."""
        return [{
            "name": name, "arch": m.config["arch"], "dataset": m.config.get("dataset"),
            "threshold": m.threshold, "metrics": m.card.get("metrics", {}),
            "params": m.card.get("params"),
            "default_for": [use for use, d in self.defaults.items() if d == name],
            "members": ([x.name for x in m.members] if isinstance(m, EnsembleMatcher)
                        else None),
        } for name, m in sorted(self.matchers.items())]

    @staticmethod
    def _tokens(text: str, where: str) -> list[str]:
        tokens = tokenize(text)
        if not tokens:
            raise InvalidInputError(f"{where} is empty or only whitespace; send some text",
                                    details={"field": where})
        return tokens

    def score_pairs(self, pairs: Sequence[tuple[str, str]], model: str | None = None,
                    batch_size: int = 64) -> MatchResult:
        """Probability that each ``(text_a, text_b)`` matches (duplicate questions), in order.

        Raises:
            UnknownItemError: unknown ``model``.
            InvalidInputError: a text has no tokens.
        """
        matcher = self.resolve(model, "match")
        one = len(pairs) == 1
        tokens = [(self._tokens(a, "text_a" if one else f"pairs[{i}].text_a"),
                   self._tokens(b, "text_b" if one else f"pairs[{i}].text_b"))
                  for i, (a, b) in enumerate(pairs)]
        scores = matcher.probabilities(tokens, self.device, batch_size)
        return MatchResult(matcher.name, scores, matcher.threshold)

    def rank(self, query: str, candidates: Sequence[str], model: str | None = None,
             top_k: int | None = None, batch_size: int = 64) -> tuple[str, list[RankedCandidate]]:
        """Candidates sorted by the probability that they answer / match ``query`` (ties keep
        request order), cut to ``top_k``.

        Returns:
            ``(model name, ranked candidates)``.

        Raises:
            UnknownItemError: unknown ``model``.
            InvalidInputError: the query or a candidate has no tokens.
        """
        matcher = self.resolve(model, "rank")
        q = self._tokens(query, "query")
        pairs = [(q, self._tokens(c, f"candidates[{i}]")) for i, c in enumerate(candidates)]
        scores = matcher.probabilities(pairs, self.device, batch_size)
        ranked = sorted(range(len(candidates)), key=lambda i: -scores[i])
        if top_k is not None:
            ranked = ranked[:top_k]
        return matcher.name, [RankedCandidate(i, candidates[i], scores[i]) for i in ranked]
