"""``alexnet-small``: AlexNet's layer kinds sized for 32-128 px images, grayscale or RGB.

Five convolutions (5x5 then 3x3) with ReLU, three 2x2 max-pools, an adaptive average pool to
4x4 and AlexNet's three-layer classifier with dropout. Cheap enough to train on a laptop CPU
in minutes on 64x64 eye images, yet deep enough for per-layer heatmaps to differ.
"""

import torch
import torch.nn as nn

from .registry import register_model

__all__ = ["AlexNetSmall", "alexnet_small"]


class AlexNetSmall(nn.Module):
    """AlexNet's layer kinds for small images; ``widths`` are the five convolutions' channels."""

    def __init__(self, in_channels: int = 1, num_classes: int = 8, widths=(16, 32, 48, 48, 32), hidden: int = 128, dropout: float = 0.5):
        super().__init__()
        w1, w2, w3, w4, w5 = widths
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, w1, kernel_size=5, padding=2),
            nn.ReLU(inplace=False),
            nn.MaxPool2d(kernel_size=2),
            nn.Conv2d(w1, w2, kernel_size=3, padding=1),
            nn.ReLU(inplace=False),
            nn.MaxPool2d(kernel_size=2),
            nn.Conv2d(w2, w3, kernel_size=3, padding=1),
            nn.ReLU(inplace=False),
            nn.Conv2d(w3, w4, kernel_size=3, padding=1),
            nn.ReLU(inplace=False),
            nn.Conv2d(w4, w5, kernel_size=3, padding=1),
            nn.ReLU(inplace=False),
            nn.MaxPool2d(kernel_size=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((4, 4))
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(w5 * 16, hidden),
            nn.ReLU(inplace=False),
            nn.Dropout(p=dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=False),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = self.flatten(x)
        return self.classifier(x)


@register_model("alexnet-small")
def alexnet_small(*, in_channels: int = 1, num_classes: int = 8, image_size: int = 64, widths=(16, 32, 48, 48, 32), hidden: int = 128, dropout: float = 0.5) -> AlexNetSmall:
    """``alexnet-small`` for ``in_channels`` x ``image_size`` x ``image_size`` images, 32 <= image_size <= 128."""
    if not 32 <= image_size <= 128:
        raise ValueError(f"alexnet-small takes images of 32 to 128 px, got {image_size}; use alexnet for larger ones")
    return AlexNetSmall(in_channels=in_channels, num_classes=num_classes, widths=tuple(widths), hidden=hidden, dropout=dropout)
