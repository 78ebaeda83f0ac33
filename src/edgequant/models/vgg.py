"""VGG-16 and VGG-19 (no batch norm), torchvision ``state_dict`` keys (``features.N``, ``classifier.N``).

Each ReLU and pooling layer is its own module (as in torchvision); the 7x7 adaptive average
pool lets small inputs (32x32) run for quick tests.

Example:
    >>> net = build_vgg16(num_classes=10)
    >>> net.classifier[6].out_features
    10
"""

from __future__ import annotations

import torch
import torch.nn as nn

from edgequant.models.layers import torchvision_init
from edgequant.models.registry import register_imagenet

#: conv width of each of VGG's five stages (every stage ends in a 2x2 max pool)
STAGE_WIDTHS = (64, 128, 256, 512, 512)


def vgg_cfg(convs_per_stage: tuple[int, ...]) -> tuple[int | str, ...]:
    """Conv widths per layer, ``"M"`` = 2x2 max pool, from the number of convs in each stage.

    Example (configuration A of Simonyan & Zisserman, VGG-11):
        >>> vgg_cfg((1, 1, 2, 2, 2))
        (64, 'M', 128, 'M', 256, 256, 'M', 512, 512, 'M', 512, 512, 'M')
    """
    cfg: list[int | str] = []
    for n, width in zip(convs_per_stage, STAGE_WIDTHS):
        cfg += [*[width] * n, "M"]
    return tuple(cfg)


# configurations D and E of Simonyan & Zisserman
CFG_16 = vgg_cfg((2, 2, 3, 3, 3))
CFG_19 = vgg_cfg((2, 2, 4, 4, 4))


class VGG(nn.Module):
    """VGG with torchvision's layout: ``features`` (conv/relu/pool), 7x7 avgpool, 3-layer classifier."""

    def __init__(
        self, cfg: tuple[int | str, ...], num_classes: int = 1000, dropout: float = 0.5
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, stride=2))
            else:
                cout = int(v)
                layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU()]
                cin = cout
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )
        torchvision_init(self, linear="normal")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def build_vgg16(num_classes: int = 1000) -> VGG:
    """VGG-16 with random weights (torchvision keys)."""
    return VGG(CFG_16, num_classes)


def build_vgg19(num_classes: int = 1000) -> VGG:
    """VGG-19 with random weights (torchvision keys)."""
    return VGG(CFG_19, num_classes)


register_imagenet(
    "vgg",
    ("vgg16", build_vgg16, "VGG-16 (no BN), torchvision state_dict keys", (138.36, 15.47)),
    ("vgg19", build_vgg19, "VGG-19 (no BN), torchvision state_dict keys", (143.67, 19.63)),
)
