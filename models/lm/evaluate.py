"""Perplexity of an LSTM LM on a token stream: exp(mean NLL per token, ``<eos>`` counted)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from models.lm.data import batchify, get_batch
from models.lm.model import RNNLM


@torch.inference_mode()
def perplexity(
    model: RNNLM, ids: torch.Tensor, batch_size: int = 10, seq_length: int = 35,
    device: torch.device | str = "cpu",
) -> float:
    """Per-token perplexity of ``ids (N,)``, state carried across chunks as in training.

    Every predicted token counts once (the first token of each of the ``batch_size``
    streams has no context and is not predicted; the tail that does not fill a stream is
    dropped, as in pytorch/examples).

    Raises:
        ValueError: fewer tokens than ``batch_size``.
    """
    was_training = model.training
    model.eval()
    streams = batchify(ids, batch_size).to(device)
    hidden = model.init_hidden(batch_size, device)
    total_nll, count = 0.0, 0
    for i in range(0, streams.size(1) - 1, seq_length):
        inputs, targets = get_batch(streams, i, seq_length)
        logits, hidden = model(inputs, hidden)
        total_nll += float(F.cross_entropy(logits.float().reshape(-1, logits.size(-1)),
                                           targets.reshape(-1), reduction="sum"))
        count += targets.numel()
    model.train(was_training)
    return math.exp(total_nll / count)
