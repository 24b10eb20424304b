"""Letter classifiers: the seed tutorial's CNN (baseline) and the served CNN."""

from __future__ import annotations

import torch
from torch import nn


class SeedCNN(nn.Module):
    """The seed tutorial's EMNIST CNN: conv 1→16 5x5 pad 2, ReLU, maxpool 2; conv 16→32 5x5
    pad 2, ReLU, maxpool 2; linear to the classes.

    Args:
        num_classes: output classes.
        image_size: input side in pixels (28 in the tutorial); must be divisible by 4.

    Shapes: input float32 (B, 1, S, S) in [0, 1] → logits float32 (B, num_classes).

    Raises:
        ValueError: ``image_size`` not divisible by 4.
    """

    def __init__(self, num_classes: int, image_size: int = 28) -> None:
        super().__init__()
        if image_size % 4:
            raise ValueError(f"image_size must be divisible by 4, got {image_size}")
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Linear(32 * (image_size // 4) ** 2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))  # (B, C)


def _conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class LetterCNN(nn.Module):
    """The served classifier: three VGG-style stages (two 3x3 conv + batch norm + ReLU, then
    max-pool and dropout), global average pooling, a hidden layer with dropout.

    Batch norm: Ioffe & Szegedy 2015; the conv stacks follow the small VGG nets that reach
    ~99.6 % on MNIST and ~95 % on EMNIST letters.

    Args:
        num_classes: output classes.
        channels: channels of the three stages.
        hidden: width of the hidden layer.
        dropout: dropout before the output layer (a quarter of it after each stage).

    Shapes: input float32 (B, 1, S, S) in [0, 1], S >= 8 → logits float32 (B, num_classes).
    """

    def __init__(self, num_classes: int, channels: tuple[int, int, int] = (32, 64, 128),
                 hidden: int = 256, dropout: float = 0.4) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for cout in channels:
            layers += [*_conv_bn(cin, cout), *_conv_bn(cout, cout), nn.MaxPool2d(2),
                       nn.Dropout2d(dropout / 4)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(cin, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
            nn.Dropout(dropout), nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x - 0.5)               # (B, C3, S/8, S/8)
        return self.classifier(x.mean(dim=(2, 3)))  # global average pool → (B, num_classes)


ARCHS: dict[str, type[nn.Module]] = {"seed": SeedCNN, "cnn": LetterCNN}


def build_model(arch: str, **config: object) -> nn.Module:
    """``ARCHS[arch](**config)``.

    Raises:
        ValueError: an unknown architecture.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {sorted(ARCHS)}")
    return ARCHS[arch](**config)
