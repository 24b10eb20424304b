"""Serving-side LSTM LM: sampling (temperature, top-k, nucleus) and scoring."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from models.common.artifacts import ArtifactError, load_artifact
from models.common.quantize import apply_saved_int8, quantize_dynamic_int8
from models.lm.data import EOS, Dictionary
from models.lm.model import RNNLM, Hidden

log = logging.getLogger(__name__)

# (tokens, logprobs, perplexity, unknown_words), as returned by LMPredictor.score
Scored = tuple[list[str], list[float], float, list[str]]


def filter_logits(logits: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """Restrict ``logits (N, V)`` to the ``top_k`` best and/or the nucleus of mass ``top_p``
    (Holtzman et al. 2020); everything else becomes ``-inf``. The best token always stays.
    """
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        drop = cumulative - sorted_logits.softmax(dim=-1) >= top_p  # mass before the token
        drop[..., 0] = False
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


@dataclass
class Step:
    """One generated token for one sample."""

    sample: int
    token: str
    finished: bool


class LMPredictor:
    """Samples and scores text with the trained LSTM LM (word level, PTB vocabulary).

    Prompts and texts are whitespace-tokenised and lowercased as PTB is; unknown words
    become ``<unk>`` and are reported.
    """

    task = "lm"

    def __init__(self, model: RNNLM, dictionary: Dictionary, card: dict[str, Any],
                 device: torch.device, quantized: bool) -> None:
        self.model, self.dictionary, self.card = model.eval(), dictionary, card
        self.device, self.quantized = device, quantized
        self.eos = dictionary.word2idx[EOS]

    @classmethod
    def load(cls, artifact_dir: Path, device: torch.device | str = "cpu",
             quantize: bool = False) -> LMPredictor:
        """Rebuild ``RNNLM(**config)`` from safetensors; int8 dynamic quantization of the
        LSTM and Linear layers when ``quantize`` (CPU only).

        Raises:
            ArtifactError: files missing, or weights that do not fit the config.
        """
        device = torch.device(device)
        tensors, config, card = load_artifact(artifact_dir)
        model = RNNLM(**config)
        missing, unexpected = model.load_state_dict(tensors, strict=False)
        if unexpected or set(missing) - ({"linear.weight"} if config.get("tie_weights") else set()):
            raise ArtifactError(f"weights do not fit config.json: missing {missing}, "
                                f"unexpected {unexpected}")
        model.eval()
        if quantize:  # int8/ written by 'modelzoo quantize lm' is used when present
            model = quantize_dynamic_int8(model)
            apply_saved_int8(model, artifact_dir)
            device = torch.device("cpu")
        return cls(model.to(device), Dictionary.load(artifact_dir), card, device, quantize)

    def warmup(self) -> None:
        """One tiny generation (2 tokens) and one scoring, run once at startup by the service."""
        for _ in self.stream("the", 2, 1.0, None, None, 0, 1, False):
            pass
        self.score_many(["the"])

    def encode(self, text: str) -> tuple[list[int], list[str]]:
        """Word indices of ``text`` (lowercased) and the words that became ``<unk>``."""
        words = [w if w in self.dictionary.word2idx else w.lower() for w in text.split()]
        return self.dictionary.encode(words)

    def _context(self, prompt_ids: list[int], n: int) -> tuple[torch.Tensor, Hidden]:
        """Run ``<eos> + prompt`` through the model for ``n`` samples; last logits (n, V)."""
        ids = torch.tensor([[self.eos, *prompt_ids]] * n, device=self.device)
        hidden = self.model.init_hidden(n, self.device)
        logits, hidden = self.model(ids, hidden)
        return logits[:, -1], hidden

    @torch.inference_mode()
    def stream(self, prompt: str, max_tokens: int, temperature: float, top_k: int | None,
               top_p: float | None, seed: int, num_samples: int,
               stop_at_eos: bool) -> Iterator[Step]:
        """Sample word by word with ``torch.multinomial`` (as the tutorial), yielding each token.

        Same arguments (``seed`` included) give the same tokens.
        """
        generator = torch.Generator(device=self.device).manual_seed(seed)
        prompt_ids, _ = self.encode(prompt)
        logits, hidden = self._context(prompt_ids, num_samples)
        active = torch.ones(num_samples, dtype=torch.bool)
        for _ in range(max_tokens):
            probs = F.softmax(filter_logits(logits.float() / temperature, top_k, top_p), dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator)  # (n, 1)
            for s, idx in enumerate(nxt[:, 0].tolist()):
                if active[s]:
                    done = stop_at_eos and idx == self.eos
                    yield Step(s, self.dictionary.idx2word[idx], done)
                    active[s] = not done
            if not active.any():
                return
            logits, hidden = self.model(nxt, hidden)
            logits = logits[:, -1]

    def score(self, text: str) -> Scored:
        """Log-probability (natural log) of each word of ``text`` and of the final ``<eos>``,
        each given the words before it (from a sentence start).

        Returns:
            ``(tokens, logprobs, perplexity, unknown_words)``; perplexity = exp(-mean logprob).
        """
        return self.score_many([text])[0]

    @torch.inference_mode()
    def score_many(self, texts: list[str]) -> list[Scored]:
        """:meth:`score` of several texts in one LSTM pass (the dynamic batcher's call).

        Inputs are right-padded to the longest text; the LSTM is causal, so each text's
        log-probabilities are those of scoring it alone (up to float rounding).
        """
        if not texts:
            return []
        encoded = [self.encode(text) for text in texts]
        targets = [[*ids, self.eos] for ids, _ in encoded]  # each word, then <eos>
        lengths = [len(t) for t in targets]
        wanted = torch.full((len(texts), max(lengths)), self.eos, dtype=torch.long)  # (B, T)
        for row, ids in enumerate(targets):
            wanted[row, :len(ids)] = torch.tensor(ids)
        wanted = wanted.to(self.device)
        inputs = torch.cat([torch.full_like(wanted[:, :1], self.eos), wanted[:, :-1]], dim=1)
        logits, _ = self.model(inputs, self.model.init_hidden(len(texts), self.device))
        logits = logits.float()  # (B, T, V)
        logp = logits.gather(-1, wanted[..., None])[..., 0] - logits.logsumexp(-1)  # (B, T)
        out = []
        for row, (ids, (_, unknown)) in enumerate(zip(targets, encoded, strict=True)):
            values = logp[row, :len(ids)].tolist()
            tokens = [self.dictionary.idx2word[i] for i in ids]
            out.append((tokens, values, math.exp(-sum(values) / len(values)), unknown))
        return out
