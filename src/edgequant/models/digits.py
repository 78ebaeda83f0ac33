"""``digits_cnn``: a small CNN for scikit-learn's digits, with trained weights shipped in the package.

Conv-BN-ReLU stem, a strided conv, a depthwise-separable block (so BN folding and cross-layer
equalization have something to do) and a linear classifier; 1×32×32 input in [-1, 1].

The shipped weights (``models/weights/digits_cnn.pt``) were made by exactly::

    edgequant train --model digits_cnn --data digits --epochs 20 --seed 0 \\
        -o src/edgequant/models/weights/digits_cnn.pt

Example:
    >>> from edgequant.models import load_model
    >>> m = load_model("digits_cnn")
    >>> m.num_classes, m.pretrained
    (10, True)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgequant.input_spec import InputSpec
from edgequant.models.registry import ZooEntry, register

WEIGHTS = Path(__file__).parent / "weights" / "digits_cnn.pt"
INPUT_SPEC = InputSpec(shape=(1, 32, 32), mean=(127.5,), std=(127.5,), resize=32, color="L")


def build_digits_cnn(num_classes: int = 10) -> Any:
    """The architecture with random weights."""
    import torch
    import torch.nn as nn

    class DigitsCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(1, 16, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(16)
            self.relu1 = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(32)
            self.relu2 = nn.ReLU(inplace=True)
            self.dw = nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False)
            self.bn3 = nn.BatchNorm2d(32)
            self.relu3 = nn.ReLU(inplace=True)
            self.pw = nn.Conv2d(32, 64, 1, bias=False)
            self.bn4 = nn.BatchNorm2d(64)
            self.relu4 = nn.ReLU(inplace=True)
            self.conv5 = nn.Conv2d(64, 64, 3, stride=2, padding=1, bias=False)
            self.bn5 = nn.BatchNorm2d(64)
            self.relu5 = nn.ReLU(inplace=True)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(64, num_classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.relu1(self.bn1(self.conv1(x)))
            x = self.relu2(self.bn2(self.conv2(x)))
            x = self.relu3(self.bn3(self.dw(x)))
            x = self.relu4(self.bn4(self.pw(x)))
            x = self.relu5(self.bn5(self.conv5(x)))
            return self.fc(torch.flatten(self.pool(x), 1))

    return DigitsCNN()


def _pretrained() -> dict[str, Any] | None:
    if not WEIGHTS.is_file():
        return None
    import torch

    return torch.load(WEIGHTS, map_location="cpu", weights_only=True)


ENTRY = register(
    ZooEntry(
        name="digits_cnn",
        family="digits",
        build=build_digits_cnn,
        input_spec=INPUT_SPEC,
        num_classes=10,
        description="small CNN for scikit-learn's 8x8 digits (upsampled to 32x32); trained weights shipped",
        pretrained=_pretrained,
        pretrained_source="shipped with edgequant (edgequant train --model digits_cnn --data digits)",
    )
)
