"""LSTM language model: Embedding -> LSTM -> Linear (the seed tutorial's ``RNNLM``), with
the regularisation of Zaremba et al. 2014 (dropout between layers) and optional weight tying
(Press & Wolf 2017; Inan et al. 2017)."""

from __future__ import annotations

import torch
from torch import nn

Hidden = tuple[torch.Tensor, torch.Tensor]


class RNNLM(nn.Module):
    """Word-level LSTM LM.

    Args:
        vocab_size: ``V``.
        embed_size: word vector size ``E`` (128 in the tutorial).
        hidden_size: LSTM state size ``H`` (1024 in the tutorial).
        num_layers: stacked LSTM layers.
        dropout: dropout on the embeddings, between LSTM layers and before the output layer
            (Zaremba et al. 2014); 0 reproduces the tutorial.
        tie_weights: share the input embedding and output weights (needs ``E == H``).

    Raises:
        ValueError: ``tie_weights`` with ``embed_size != hidden_size``.
    """

    def __init__(
        self,
        vocab_size: int,
        embed_size: int = 128,
        hidden_size: int = 1024,
        num_layers: int = 1,
        dropout: float = 0.0,
        tie_weights: bool = False,
    ) -> None:
        super().__init__()
        if tie_weights and embed_size != hidden_size:
            raise ValueError("tie_weights needs embed_size == hidden_size")
        self.num_layers, self.hidden_size = num_layers, hidden_size
        self.embed = nn.Embedding(vocab_size, embed_size)
        self.drop = nn.Dropout(dropout)
        self.lstm = nn.LSTM(embed_size, hidden_size, num_layers, batch_first=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.linear = nn.Linear(hidden_size, vocab_size)
        if tie_weights:
            self.linear.weight = self.embed.weight
        if dropout > 0:  # the tutorial keeps PyTorch's defaults; Zaremba init otherwise
            for p in self.parameters():
                nn.init.uniform_(p, -0.05, 0.05)

    def init_hidden(self, batch_size: int, device: torch.device | str = "cpu") -> Hidden:
        """Zero ``(h, c)``, each ``(num_layers, B, H)`` float32."""
        shape = (self.num_layers, batch_size, self.hidden_size)
        return torch.zeros(shape, device=device), torch.zeros(shape, device=device)

    def forward(self, x: torch.Tensor, hidden: Hidden) -> tuple[torch.Tensor, Hidden]:
        """Next-word logits.

        Args:
            x: ``(B, T)`` int64 word indices.
            hidden: ``(h, c)`` from :meth:`init_hidden` or the previous chunk.

        Returns:
            ``logits (B, T, V)`` and the new ``(h, c)``.
        """
        out, hidden = self.lstm(self.drop(self.embed(x)), hidden)  # (B, T, H)
        return self.linear(self.drop(out)), hidden


def detach(hidden: Hidden) -> Hidden:
    """Cut the graph between BPTT chunks (the tutorial's ``detach(states)``)."""
    return hidden[0].detach(), hidden[1].detach()
