"""MobileNet-v1 and MobileNetV2, written so every runtime's quantizer sees every conv.

Every module object is used once in ``forward`` (PT2E rejects a shared activation with "Input
partition has more than one output node"), convs are plain ``nn.Conv2d`` with explicit padding,
and the head uses ``torch.flatten``. MobileNetV2 keeps torchvision's ``state_dict`` keys
(``features.1.conv.0.0.weight`` …) so a torchvision checkpoint loads with ``--weights``;
MobileNet-v1 has no torchvision version and uses the same layout (``features.N.M``,
``classifier.1``).

Example:
    >>> import torch
    >>> net = build_mobilenet_v2(num_classes=10).eval()
    >>> tuple(net(torch.zeros(1, 3, 64, 64)).shape)
    (1, 10)
"""

from __future__ import annotations

import torch
import torch.nn as nn

from edgequant.models.layers import torchvision_init
from edgequant.models.registry import register_imagenet


def _make_divisible(v: float, divisor: int = 8) -> int:
    """Round channels to a multiple of ``divisor`` without dropping more than 10% (torchvision's rule)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def conv_bn_act(
    cin: int,
    cout: int,
    kernel: int,
    stride: int = 1,
    groups: int = 1,
    act: type[nn.Module] | None = nn.ReLU,
) -> nn.Sequential:
    """``Conv2d (no bias, "same" padding) → BatchNorm2d → activation`` as keys ``.0 .1 .2``.

    Example:
        >>> conv_bn_act(3, 8, 3, stride=2)[0].padding
        (1, 1)
    """
    layers: list[nn.Module] = [
        nn.Conv2d(
            cin, cout, kernel, stride=stride, padding=(kernel - 1) // 2, groups=groups, bias=False
        ),
        nn.BatchNorm2d(cout),
    ]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class _MobileNet(nn.Module):
    """What both MobileNets share: ``features``, a global average pool, a dropout + linear head."""

    def _finish(
        self, layers: list[nn.Module], width: int, num_classes: int, dropout: float
    ) -> None:
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, num_classes))
        torchvision_init(self, linear="normal")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


class MobileNetV1(_MobileNet):
    """MobileNet-v1 (Howard et al. 2017), width 1.0: a stem conv and 13 depthwise-separable blocks.

    Each block is ``features.N`` = ``[dw conv, bn, relu, pw conv, bn, relu]``.

    Example:
        >>> MobileNetV1(num_classes=5).classifier[1].out_features
        5
    """

    #: (output channels, stride) of the 13 depthwise-separable blocks
    CFG = (
        (64, 1),
        (128, 2),
        (128, 1),
        (256, 2),
        (256, 1),
        (512, 2),
        (512, 1),
        (512, 1),
        (512, 1),
        (512, 1),
        (512, 1),
        (1024, 2),
        (1024, 1),
    )

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn_act(3, 32, 3, stride=2)]
        cin = 32
        for cout, stride in self.CFG:
            dw = conv_bn_act(cin, cin, 3, stride=stride, groups=cin)
            pw = conv_bn_act(cin, cout, 1)
            layers.append(nn.Sequential(*dw, *pw))
            cin = cout
        self._finish(layers, cin, num_classes, dropout)


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expand → 3x3 depthwise → 1x1 linear project (+ residual).

    Keys follow torchvision: ``conv.0`` (expand, absent when t=1), then dw, project conv, bn.
    """

    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = round(cin * expand_ratio)
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(conv_bn_act(cin, hidden, 1, act=nn.ReLU6))
        layers += [
            conv_bn_act(hidden, hidden, 3, stride=stride, groups=hidden, act=nn.ReLU6),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(_MobileNet):
    """MobileNetV2 (Sandler et al. 2018), width 1.0, torchvision-compatible keys.

    Example:
        >>> sum(p.numel() for p in MobileNetV2().parameters())
        3504872
    """

    #: (expansion t, channels c, repeats n, first stride s), as in the paper's Table 2
    CFG = (
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    )

    def __init__(
        self, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2
    ) -> None:
        super().__init__()
        cin = _make_divisible(32 * width_mult)
        last = _make_divisible(1280 * max(1.0, width_mult))
        layers: list[nn.Module] = [conv_bn_act(3, cin, 3, stride=2, act=nn.ReLU6)]
        for t, c, n, s in self.CFG:
            cout = _make_divisible(c * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        layers.append(conv_bn_act(cin, last, 1, act=nn.ReLU6))
        self._finish(layers, last, num_classes, dropout)


def build_mobilenet_v1(num_classes: int = 1000) -> MobileNetV1:
    """MobileNet-v1 with random weights."""
    return MobileNetV1(num_classes=num_classes)


def build_mobilenet_v2(num_classes: int = 1000) -> MobileNetV2:
    """MobileNetV2 with random weights (torchvision keys)."""
    return MobileNetV2(num_classes=num_classes)


register_imagenet(
    "mobilenet",
    (
        "mobilenet_v1",
        build_mobilenet_v1,
        "MobileNet-v1 1.0 (depthwise-separable convs); no offline weights",
        (4.23, 0.57),
    ),
    (
        "mobilenet_v2",
        build_mobilenet_v2,
        "MobileNetV2 1.0 (inverted residuals), torchvision state_dict keys",
        (3.50, 0.30),
    ),
)
