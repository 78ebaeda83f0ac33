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

from edgequant.input_spec import InputSpec
from edgequant.models.registry import ZooEntry, register

# conv widths per layer, "M" = 2x2 max pool (configurations D and E of Simonyan & Zisserman)
CFG_16: tuple[int | str, ...] = (
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
    "M",
)
CFG_19: tuple[int | str, ...] = (
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
    512,
    "M",
)


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
        # torchvision's initialisation
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def build_vgg16(num_classes: int = 1000) -> VGG:
    """VGG-16 with random weights (torchvision keys)."""
    return VGG(CFG_16, num_classes)


def build_vgg19(num_classes: int = 1000) -> VGG:
    """VGG-19 with random weights (torchvision keys)."""
    return VGG(CFG_19, num_classes)


register(
    ZooEntry(
        name="vgg16",
        family="vgg",
        build=build_vgg16,
        input_spec=InputSpec.imagenet(),
        description="VGG-16 (no BN), torchvision state_dict keys",
        published=(138.36, 15.47),
    )
)
register(
    ZooEntry(
        name="vgg19",
        family="vgg",
        build=build_vgg19,
        input_spec=InputSpec.imagenet(),
        description="VGG-19 (no BN), torchvision state_dict keys",
        published=(143.67, 19.63),
    )
)
