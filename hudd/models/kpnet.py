"""KPNet, the original tool's keypoint network: one heatmap per keypoint at input resolution.

Input 1x128x128 by default. Six 3x3 convolutions (96, 96, 192, 192, 224, 224 channels, each with
BatchNorm and ReLU), two 2x2 max-pools, then two stride-2 transposed convolutions back to the
input size with one output map per keypoint. A keypoint's prediction is the arg-max of its map
(see :func:`decode_keypoints`). ``width`` scales every channel count (1.0 = the original), so
tests can run a narrow copy on a CPU.
"""

import torch
import torch.nn as nn

from .registry import register_model

__all__ = ["KPNet", "kpnet", "decode_keypoints"]


def _conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel_size=3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=False)]


class KPNet(nn.Module):
    """Keypoint heatmap regressor; ``forward`` returns ``(batch, num_keypoints, H, W)`` maps."""

    def __init__(self, in_channels: int = 1, num_keypoints: int = 27, width: float = 1.0):
        super().__init__()
        c1, c2, c3 = (max(4, round(c * width)) for c in (96, 192, 224))
        self.features = nn.Sequential(
            *_conv_bn_relu(in_channels, c1), *_conv_bn_relu(c1, c1), nn.MaxPool2d(2),
            *_conv_bn_relu(c1, c2), *_conv_bn_relu(c2, c2), nn.MaxPool2d(2),
            *_conv_bn_relu(c2, c3), *_conv_bn_relu(c3, c3),
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(c3, c1, kernel_size=4, stride=2, padding=1),
            nn.ReLU(inplace=False),
            nn.ConvTranspose2d(c1, num_keypoints, kernel_size=4, stride=2, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.features(x))


def decode_keypoints(maps: torch.Tensor) -> torch.Tensor:
    """Arg-max of each map: ``(batch, K, H, W)`` -> ``(batch, K, 2)`` pixel coordinates ``(x, y)``."""
    batch, n_keypoints, height, width = maps.shape
    flat = maps.reshape(batch, n_keypoints, height * width).argmax(dim=-1)
    return torch.stack([flat % width, flat // width], dim=-1).to(torch.float32)


@register_model("kpnet")
def kpnet(*, in_channels: int = 1, num_keypoints: int = 27, image_size: int = 128, width: float = 1.0) -> KPNet:
    """KPNet for ``in_channels`` x ``image_size`` x ``image_size`` images (``image_size`` divisible by 4)."""
    if image_size % 4:
        raise ValueError(f"kpnet needs an image size divisible by 4, got {image_size}")
    return KPNet(in_channels=in_channels, num_keypoints=num_keypoints, width=width)
