"""ResNet-18 and ResNet-50 (v1.5, stride in the 3x3 conv), torchvision ``state_dict`` keys.

Unlike torchvision, each block owns one ReLU module per use (``relu1``, ``relu2`` …; they have
no parameters, so checkpoint keys are unchanged): PyTorch PT2E fails with "Input partition has
more than one output node" on a ReLU module called twice. So a torchvision checkpoint
(``resnet50-*.pth``) loads with ``--weights`` and every quantizer sees every conv.

Example:
    >>> import torch
    >>> net = build_resnet18(num_classes=10).eval()
    >>> tuple(net(torch.zeros(2, 3, 64, 64)).shape)
    (2, 10)
"""

from __future__ import annotations

import torch
import torch.nn as nn

from edgequant.models.layers import torchvision_init
from edgequant.models.registry import register_imagenet


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


def _downsample(cin: int, cout: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(_conv1x1(cin, cout, stride), nn.BatchNorm2d(cout))


class _Residual(nn.Module):
    """A chain of ``conv{i} → bn{i} → relu{i}`` with the last ReLU after the residual add.

    Registration order (``conv1 bn1 relu1 … downsample relu{n}``) and so the keys and the
    seeded initialisation match torchvision's blocks.
    """

    expansion = 1

    def __init__(self, convs: list[nn.Conv2d], downsample: nn.Sequential | None) -> None:
        super().__init__()
        self.depth = len(convs)
        for i, conv in enumerate(convs, 1):
            self.add_module(f"conv{i}", conv)
            self.add_module(f"bn{i}", nn.BatchNorm2d(conv.out_channels))
            if i < self.depth:
                self.add_module(f"relu{i}", nn.ReLU())
        self.downsample = downsample
        self.add_module(f"relu{self.depth}", nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = x
        for i in range(1, self.depth + 1):
            out = getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(out))
            if i < self.depth:
                out = getattr(self, f"relu{i}")(out)
        return getattr(self, f"relu{self.depth}")(out + identity)


class BasicBlock(_Residual):
    """Two 3x3 convs + identity (ResNet-18/34)."""

    expansion = 1

    def __init__(self, cin: int, width: int, stride: int = 1) -> None:
        convs = [_conv3x3(cin, width, stride), _conv3x3(width, width)]
        super().__init__(convs, _downsample(cin, width, stride))


class Bottleneck(_Residual):
    """1x1 reduce → 3x3 (strided, v1.5) → 1x1 expand ×4, + identity (ResNet-50/101/152)."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1) -> None:
        cout = width * self.expansion
        convs = [_conv1x1(cin, width), _conv3x3(width, width, stride), _conv1x1(width, cout)]
        super().__init__(convs, _downsample(cin, cout, stride))


class ResNet(nn.Module):
    """ResNet with torchvision's module names (``conv1 bn1 layer1..4 fc``).

    Example:
        >>> sum(p.numel() for p in ResNet(BasicBlock, (2, 2, 2, 2)).parameters())
        11689512
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: tuple[int, ...],
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        cin = 64
        stages: list[nn.Sequential] = []
        for i, n in enumerate(layers):
            width = 64 * 2**i
            blocks: list[nn.Module] = []
            for j in range(n):
                blocks.append(block(cin, width, stride=2 if (i > 0 and j == 0) else 1))
                cin = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        torchvision_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def build_resnet18(num_classes: int = 1000) -> ResNet:
    """ResNet-18 with random weights (torchvision keys)."""
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes)


def build_resnet50(num_classes: int = 1000) -> ResNet:
    """ResNet-50 v1.5 with random weights (torchvision keys)."""
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes)


register_imagenet(
    "resnet",
    ("resnet18", build_resnet18, "ResNet-18, torchvision state_dict keys", (11.69, 1.82)),
    ("resnet50", build_resnet50, "ResNet-50 v1.5, torchvision state_dict keys", (25.56, 4.09)),
)
