"""DenseNet-121 with torchvision's ``state_dict`` keys and a concat that exports cleanly.

Keys are torchvision's (``features.denseblock1.denselayer1.norm1.weight`` …). Where torchvision
concatenates the whole list of earlier feature maps in every layer (and carries a
memory-efficient checkpointing path), each block here keeps one running tensor and appends the
new features with a two-input ``torch.cat`` — numerically the same, and a plain graph for every
exporter. Old torchvision checkpoints spell ``norm.1`` for ``norm1``;
:meth:`DenseNet.remap_state_dict` renames them as torchvision does.

Example:
    >>> import torch
    >>> net = build_densenet121(num_classes=10).eval()
    >>> tuple(net(torch.zeros(1, 3, 64, 64)).shape)
    (1, 10)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn

from edgequant.models.layers import torchvision_init
from edgequant.models.registry import register_imagenet

# "denselayer1.norm.1.weight" (pre-0.4 checkpoints) -> "denselayer1.norm1.weight"
_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)


class DenseLayer(nn.Module):
    """BN-ReLU-1x1 conv (bottleneck) → BN-ReLU-3x3 conv; returns only the new features."""

    def __init__(self, cin: int, growth_rate: int, bn_size: int) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(cin, bn_size * growth_rate, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.relu1(self.norm1(x)))
        return self.conv2(self.relu2(self.norm2(x)))


class DenseBlock(nn.ModuleDict):
    """``denselayer1..N``; each layer sees the concatenation of the block input and all earlier outputs."""

    def __init__(self, num_layers: int, cin: int, growth_rate: int, bn_size: int) -> None:
        super().__init__()
        for i in range(num_layers):
            self[f"denselayer{i + 1}"] = DenseLayer(cin + i * growth_rate, growth_rate, bn_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.values():
            x = torch.cat([x, layer(x)], 1)
        return x


class Transition(nn.Sequential):
    """BN-ReLU-1x1 conv-2x2 avg pool between blocks (keys ``norm conv``)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.add_module("norm", nn.BatchNorm2d(cin))
        self.add_module("relu", nn.ReLU())
        self.add_module("conv", nn.Conv2d(cin, cout, 1, bias=False))
        self.add_module("pool", nn.AvgPool2d(2, stride=2))


class DenseNet(nn.Module):
    """DenseNet-BC (Huang et al. 2017) with torchvision's module names.

    Example:
        >>> sum(p.numel() for p in DenseNet().parameters())
        7978856
    """

    def __init__(
        self,
        growth_rate: int = 32,
        block_config: tuple[int, ...] = (6, 12, 24, 16),
        num_init_features: int = 64,
        bn_size: int = 4,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        self.features = nn.Sequential()
        self.features.add_module(
            "conv0", nn.Conv2d(3, num_init_features, 7, stride=2, padding=3, bias=False)
        )
        self.features.add_module("norm0", nn.BatchNorm2d(num_init_features))
        self.features.add_module("relu0", nn.ReLU())
        self.features.add_module("pool0", nn.MaxPool2d(3, stride=2, padding=1))
        c = num_init_features
        for i, n in enumerate(block_config):
            self.features.add_module(f"denseblock{i + 1}", DenseBlock(n, c, growth_rate, bn_size))
            c += n * growth_rate
            if i != len(block_config) - 1:
                self.features.add_module(f"transition{i + 1}", Transition(c, c // 2))
                c //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(c))
        self.relu = nn.ReLU()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)
        torchvision_init(self, conv_mode="fan_in", linear="bias")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.features(x))
        return self.classifier(torch.flatten(self.avgpool(x), 1))

    @staticmethod
    def remap_state_dict(state_dict: Mapping[str, Any]) -> dict[str, Any]:
        """Rename old torchvision keys (``norm.1`` → ``norm1``); other keys pass through.

        Example:
            >>> list(DenseNet.remap_state_dict({"features.denseblock1.denselayer1.norm.1.weight": 0}))
            ['features.denseblock1.denselayer1.norm1.weight']
        """
        out: dict[str, Any] = {}
        for key, value in state_dict.items():
            m = _OLD_KEY.match(key)
            out[m.group(1) + m.group(2) if m else key] = value
        return out


def build_densenet121(num_classes: int = 1000) -> DenseNet:
    """DenseNet-121 with random weights (torchvision keys)."""
    return DenseNet(32, (6, 12, 24, 16), 64, num_classes=num_classes)


register_imagenet(
    "densenet",
    (
        "densenet121",
        build_densenet121,
        "DenseNet-121, torchvision state_dict keys (old 'norm.1' keys remapped)",
        (7.98, 2.87),
    ),
)
