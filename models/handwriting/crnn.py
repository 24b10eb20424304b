"""CRNN line recognizer: convolutional features → BiLSTM → per-column character distribution.

Shi, Bai & Yao 2015, "An end-to-end trainable neural network for image-based sequence
recognition and its application to scene text recognition" (arXiv:1507.05717), trained with
CTC (Graves et al. 2006, "Connectionist temporal classification", ICML; ``torch.nn.CTCLoss``).
Sized for CPU serving: a VGG-style stack that halves the height five times and the width
twice (one output column per 4 input columns), then two bidirectional LSTM layers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class CRNNConfig:
    """Constructor arguments of :class:`CRNN` (stored in the artifact's ``config.json``).

    Attributes:
        num_classes: output classes including the CTC blank (index 0).
        height: input height in pixels (must be 32).
        channels: convolution widths of the five stages.
        hidden: LSTM hidden size per direction.
        layers: stacked BiLSTM layers.
        dropout: dropout before the output layer and between LSTM layers.
    """

    num_classes: int
    height: int = 32
    channels: tuple[int, ...] = (16, 32, 64, 96, 128)
    hidden: int = 128
    layers: int = 2
    dropout: float = 0.2

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict (tuples as lists)."""
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d


def _block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True)]


class CRNN(nn.Module):
    """Line image → per-column log-probabilities over ``num_classes`` (blank = 0).

    Input: float32 (B, 1, 32, W), ink bright on black in [0, 1]. Output: float32
    (T, B, num_classes) log-softmax with ``T = W // 4`` (the layout ``nn.CTCLoss`` takes).

    Raises:
        ValueError: (at construction) a height other than 32 or not five channel widths.
    """

    def __init__(self, num_classes: int, height: int = 32,
                 channels: tuple[int, ...] | list[int] = (16, 32, 64, 96, 128),
                 hidden: int = 128, layers: int = 2, dropout: float = 0.2) -> None:
        super().__init__()
        if height != 32 or len(channels) != 5:
            raise ValueError(f"CRNN takes 32-px lines and 5 channel widths, got height={height}"
                             f", channels={list(channels)}")
        c1, c2, c3, c4, c5 = channels
        self.config = CRNNConfig(num_classes, height, tuple(channels), hidden, layers, dropout)
        self.features = nn.Sequential(
            *_block(1, c1), nn.MaxPool2d(2, 2),                  # (B, c1, 16, W/2)
            *_block(c1, c2), nn.MaxPool2d(2, 2),                 # (B, c2, 8, W/4)
            *_block(c2, c3), *_block(c3, c3), nn.MaxPool2d((2, 1)),  # (B, c3, 4, W/4)
            *_block(c3, c4), nn.MaxPool2d((2, 1)),               # (B, c4, 2, W/4)
            *_block(c4, c5), nn.MaxPool2d((2, 1)),               # (B, c5, 1, W/4)
        )
        self.rnn = nn.LSTM(c5, hidden, num_layers=layers, bidirectional=True,
                           dropout=dropout if layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * hidden, num_classes)

    @staticmethod
    def output_length(width: int | torch.Tensor) -> int | torch.Tensor:
        """Output columns T for an input of ``width`` pixels (``width // 4``)."""
        return width // 4

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Args:
            x: float32 (B, 1, 32, W); lines narrower than W are zero-padded on the right.
            lengths: int64 (B,) output columns of each line (``width_i // 4``); the LSTM then
                runs over each line's own columns only (packed), so padding changes nothing.
        """
        f = self.features(x)                        # (B, C, 1, T)
        f = f.squeeze(2).permute(2, 0, 1)           # (T, B, C)
        if lengths is None:
            h, _ = self.rnn(f)                      # (T, B, 2H)
        else:
            packed = nn.utils.rnn.pack_padded_sequence(
                f, lengths.clamp(min=1, max=f.shape[0]).cpu(), enforce_sorted=False)
            out, _ = self.rnn(packed)
            h, _ = nn.utils.rnn.pad_packed_sequence(out, total_length=f.shape[0])
        return self.head(self.dropout(h)).float().log_softmax(-1)  # (T, B, K)
