"""Serving-side German→English translation: text → SentencePiece ids → beam search → text."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from models.common.artifacts import ArtifactError, load_artifact
from models.common.errors import InvalidInputError
from models.common.quantize import apply_saved_int8
from models.translation.data import TOKENIZER_FILE, Tokenizer, clean, pad_batch
from models.translation.decode import beam_search, gnmt_length_penalty, greedy_decode
from models.translation.model import Seq2Seq, TransformerNMT, build_model

log = logging.getLogger(__name__)

MAX_SOURCE_TOKENS = 200  # subword pieces kept per source sentence (Multi30k's longest: ~60)


@dataclass
class Translation:
    """One translated sentence.

    Attributes:
        text: the detokenized English output.
        score: ``sum log p / lp``: natural-log probability of the output (``</s>``
            included) divided by the GNMT length penalty ``((5 + |Y|) / 6) ** alpha``
            (``alpha = length_penalty``; 0 gives the plain log-probability). 0.0 for a source
            with no pieces.
        tokens: the output's SentencePiece pieces.
    """

    text: str
    score: float
    tokens: list[str]


def quantize_model(model: Seq2Seq) -> Seq2Seq:
    """int8 dynamic quantization (weights int8, activations quantized on the fly; CPU only).

    LSTM arch: every ``nn.LSTM`` and ``nn.Linear``. Transformer: the decoder's feed-forward
    ``nn.Linear`` layers (attention projections are fused parameters, the output layer is the
    tied embedding). The encoder stays float32: its layers' fused inference fast path reads
    ``linear.weight`` tensors a quantized layer does not have, and it runs once per sentence
    while the decoder runs once per output token.
    """
    if isinstance(model, TransformerNMT):
        model.transformer.decoder = torch.ao.quantization.quantize_dynamic(
            model.transformer.decoder, {nn.Linear}, dtype=torch.qint8)
        return model
    quantized = torch.ao.quantization.quantize_dynamic(model, {nn.LSTM, nn.Linear},
                                                       dtype=torch.qint8)
    return cast(Seq2Seq, quantized)  # a converted deep copy of the same class


class TranslationPredictor:
    """Translates German sentences into English with the trained Multi30k model.

    Args:
        model: an encoder–decoder from :mod:`models.translation.model`, eval mode.
        tokenizer: the artifact's joint SentencePiece model.
        config: the artifact's ``config.json`` (``arch``, ``model``).
        card: the model card.
        device: where the model runs.
        quantized: int8 dynamic quantization applied (see :func:`quantize_model`).
    """

    task = "translation"

    def __init__(self, model: Seq2Seq, tokenizer: Tokenizer, config: dict[str, Any],
                 card: dict[str, Any], device: torch.device, quantized: bool) -> None:
        self.model, self.tokenizer, self.config = model.eval(), tokenizer, config
        self.card, self.device, self.quantized = card, device, quantized

    @classmethod
    def load(cls, artifact_dir: Path, device: torch.device | str = "cpu",
             quantize: bool = False) -> TranslationPredictor:
        """Rebuild ``build_model(arch, **model)`` from float16 safetensors (as float32) and
        the ``spm.model`` tokenizer; int8 dynamic quantization when ``quantize`` (the model
        then stays on CPU).

        Raises:
            ArtifactError: files missing, weights that do not fit the config, or a tokenizer
                whose size differs from the model's vocabulary.
        """
        device = torch.device(device)
        tensors, config, card = load_artifact(artifact_dir)
        try:
            model = build_model(config["arch"], **config["model"])
            model.load_state_dict({k: v.float() if v.is_floating_point() else v
                                   for k, v in tensors.items()})
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise ArtifactError(f"{artifact_dir}: weights do not fit config.json: {exc}") from exc
        spm_path = artifact_dir / TOKENIZER_FILE
        if not spm_path.is_file():
            raise ArtifactError(f"missing {TOKENIZER_FILE} in {artifact_dir}")
        tokenizer = Tokenizer(spm_path)
        if tokenizer.vocab_size != config["model"]["vocab_size"]:
            raise ArtifactError(f"{artifact_dir}: {TOKENIZER_FILE} has {tokenizer.vocab_size} "
                                f"pieces but the model {config['model']['vocab_size']}")
        model.eval()
        if quantize:
            model, device = quantize_model(model), torch.device("cpu")
            apply_saved_int8(model, artifact_dir)  # int8/ from 'modelzoo quantize', if any
        return cls(model.to(device), tokenizer, config, card, device, quantize)

    def warmup(self) -> None:
        """One one-word translation (beam 2, a few steps), run once at startup by the service."""
        self.translate(["Hallo"], beam_size=2, max_length=4)

    def encode(self, texts: list[str], max_source_tokens: int) -> list[list[int]]:
        """Cleaned, tokenized sources, each cut to ``max_source_tokens`` pieces.

        Raises:
            InvalidInputError: a text is empty or only whitespace.
        """
        for i, text in enumerate(texts):
            if not clean(text):
                where = "the text" if len(texts) == 1 else f"text {i}"
                raise InvalidInputError(f"{where} is empty or only whitespace; send a German "
                                        "sentence to translate", details={"index": i})
        ids = self.tokenizer.encode(texts)
        if any(len(row) > max_source_tokens for row in ids):
            log.info("cutting sources longer than %d pieces", max_source_tokens)
        return [row[:max_source_tokens] for row in ids]

    def translate(self, texts: list[str], beam_size: int = 5, max_length: int | None = None,
                  length_penalty: float = 0.6, max_source_tokens: int = MAX_SOURCE_TOKENS,
                  batch_size: int = 32) -> list[Translation]:
        """Translate sentences; results are in the order of ``texts``.

        Sources are sorted by length into mini-batches of ``batch_size`` (less padding),
        decoded with :func:`~models.translation.decode.beam_search` (``beam_size`` 1:
        :func:`~models.translation.decode.greedy_decode`, the same tokens, faster), and put
        back in order. Any non-blank text gets a translation (unknown characters become
        ``<unk>`` pieces); a text with no pieces at all gets ``""``.

        Args:
            texts: German sentences (cleaned: NFC, whitespace runs → one space).
            beam_size: hypotheses per sentence, >= 1.
            max_length: most output pieces per sentence; default ``1.2 * src_len + 10``.
            length_penalty: GNMT ``alpha`` (Wu et al. 2016) used to rank hypotheses.
            max_source_tokens: longer sources are cut to this many pieces.
            batch_size: sentences decoded together.

        Raises:
            InvalidInputError: a text is empty or only whitespace.
            ValueError: ``beam_size`` or ``batch_size`` < 1.
        """
        if beam_size < 1 or batch_size < 1:
            raise ValueError(f"beam_size and batch_size must be >= 1 (got {beam_size}, "
                             f"{batch_size})")
        limit = max_source_tokens
        if isinstance(self.model, TransformerNMT):
            limit = min(limit, int(self.model.pos.pe.size(0)))  # encoder positions
        sources = self.encode(texts, limit)
        results = [Translation("", 0.0, []) for _ in texts]  # kept for sources with no pieces
        order = sorted((i for i in range(len(texts)) if sources[i]),
                       key=lambda i: len(sources[i]))
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            tokens, scores = self._decode([sources[i] for i in chunk], beam_size, max_length,
                                          length_penalty)
            texts_out = self.tokenizer.decode(tokens)
            for i, ids, text, score in zip(chunk, tokens, texts_out, scores, strict=True):
                results[i] = Translation(text, score, [self.tokenizer.sp.id_to_piece(t)
                                                       for t in ids])
        return results

    def _decode(self, sources: list[list[int]], beam_size: int, max_length: int | None,
                length_penalty: float) -> tuple[list[list[int]], list[float]]:
        """Decode non-empty id lists in one batch → (output ids, normalised scores)."""
        src = pad_batch(sources, bos_eos=False).to(self.device)  # (B, S) int64
        if beam_size > 1:
            return beam_search(self.model, src, beam_size, length_penalty, max_len=max_length)
        tokens, raw = greedy_decode(self.model, src, max_len=max_length)
        return tokens, [s / gnmt_length_penalty(len(t) + 1, length_penalty)
                        for t, s in zip(tokens, raw, strict=True)]
