"""AlexNet with torchvision's layer layout (``features``, ``avgpool``, ``classifier``), 3x224x224 by default.

Layers are module-form in named blocks so LRP sees every one and ``named_modules()`` names are
stable (``features.0`` ... ``classifier.6``). ``in_channels`` lets grayscale cases use it.
"""

import torch
import torch.nn as nn

from .registry import register_model

__all__ = ["AlexNet", "alexnet"]


class AlexNet(nn.Module):
    """torchvision's AlexNet, with a configurable number of input channels."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=False),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=False),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=False),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=False),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=False),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(inplace=False),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=False),
            nn.Linear(4096, num_classes),
        )
        self.flatten = nn.Flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = self.flatten(x)
        return self.classifier(x)


@register_model("alexnet")
def alexnet(*, in_channels: int = 3, num_classes: int = 1000, dropout: float = 0.5, image_size: int = 224) -> AlexNet:
    """AlexNet for ``in_channels`` x ``image_size`` x ``image_size`` inputs (``image_size`` >= 63)."""
    if image_size < 63:
        raise ValueError(f"alexnet needs images of at least 63 px, got {image_size}; use alexnet-small")
    return AlexNet(in_channels=in_channels, num_classes=num_classes, dropout=dropout)
