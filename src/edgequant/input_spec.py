"""What a model expects at its input: shape, colour mode, resize/crop, normalisation.

The contract between a model and its data: ``models/`` declares it (every zoo entry and model
source carries one) and ``data/`` honours it when preprocessing. It sits outside both packages,
so that neither imports the other.

Every zoo model carries its own :class:`InputSpec`, because preprocessing is part of the model
(EfficientNet-Lite was trained with mean 127 / std 128 on 0–255 pixels, torchvision models with
the ImageNet mean/std) and getting it wrong costs ten points of top-1.

Example:
    >>> spec = InputSpec.imagenet()
    >>> spec.shape
    (3, 224, 224)
    >>> import numpy as np
    >>> spec.normalize(np.zeros((224, 224, 3), np.uint8)).shape
    (3, 224, 224)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from edgequant.errors import ValidationError

IMAGENET_MEAN_255 = (123.675, 116.28, 103.53)
IMAGENET_STD_255 = (58.395, 57.12, 57.375)


@dataclass(frozen=True, kw_only=True)
class InputSpec:
    """Input contract of a model.

    ``mean``/``std`` are in 0–255 pixel units, per channel; ``resize`` is the shorter side an
    image is resized to before the centre crop to ``shape[1:]``. ``color`` is ``"RGB"`` or ``"L"``.
    """

    shape: tuple[int, int, int]
    mean: tuple[float, ...] = IMAGENET_MEAN_255
    std: tuple[float, ...] = IMAGENET_STD_255
    resize: int = 256
    color: str = "RGB"
    interpolation: str = "bilinear"
    layout: str = "NCHW"
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        channels = self.shape[0]
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise ValidationError(
                f"input shape must be (C, H, W) with positive sizes, got {self.shape}"
            )
        if len(self.mean) != channels or len(self.std) != channels:
            raise ValidationError(
                f"mean/std need {channels} values for shape {self.shape}, got {self.mean} / {self.std}"
            )
        if any(s <= 0 for s in self.std):
            raise ValidationError(f"std must be positive, got {self.std}")
        if self.color not in ("RGB", "L"):
            raise ValidationError(f"color must be RGB or L, got {self.color!r}")

    @classmethod
    def imagenet(cls, size: int = 224, resize: int | None = None) -> InputSpec:
        """The torchvision ImageNet convention: resize to size/0.875, centre crop, mean/std."""
        return cls(shape=(3, size, size), resize=resize or round(size / 0.875))

    @property
    def channels(self) -> int:
        return self.shape[0]

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) after the crop."""
        return self.shape[1], self.shape[2]

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """HWC (or HW) uint8/float pixels in 0–255 → CHW float32, normalised.

        Also accepts a batch NHWC → NCHW.
        """
        x = np.asarray(pixels, dtype=np.float32)
        if x.ndim == 2:
            x = x[:, :, None]
        mean = np.asarray(self.mean, np.float32)
        inv_std = 1.0 / np.asarray(self.std, np.float32)
        x = (x - mean) * inv_std
        if x.ndim == 3:
            return np.ascontiguousarray(x.transpose(2, 0, 1))
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))

    def batch_shape(self, batch: int) -> tuple[int, int, int, int]:
        return (batch, *self.shape)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("extra", None)
        return d
