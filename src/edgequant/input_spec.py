"""What a model expects at its input: shape, layout, colour order, resize/crop, normalisation.

The contract between a model and its data: ``models/`` declares it (every zoo entry and model
source carries one) and ``data/`` honours it when preprocessing. It sits outside both packages,
so that neither imports the other.

Every zoo model carries its own :class:`InputSpec`, because preprocessing is part of the model
(EfficientNet-Lite was trained with mean 127 / std 128 on 0–255 pixels, torchvision models with
the ImageNet mean/std) and getting it wrong costs ten points of top-1. A user's model gets one
from options (:meth:`InputSpec.from_options`: what ``--input-shape``, ``--layout``, ``--mean``,
``--std``, ``--scale``, ``--resize``, ``--color`` give) or from a model card
(:mod:`edgequant.models.card`).

Example:
    >>> spec = InputSpec.imagenet()
    >>> spec.shape
    (3, 224, 224)
    >>> import numpy as np
    >>> spec.normalize(np.zeros((224, 224, 3), np.uint8)).shape
    (3, 224, 224)
    >>> nhwc = InputSpec.from_options(input_shape="1,160,160,3", layout="NHWC", scale="1/255")
    >>> nhwc.shape, nhwc.tensor_shape, nhwc.std
    ((3, 160, 160), (160, 160, 3), (255.0, 255.0, 255.0))
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from numbers import Integral
from typing import Any

import numpy as np

from edgequant.errors import ValidationError

IMAGENET_MEAN_255 = (123.675, 116.28, 103.53)
IMAGENET_STD_255 = (58.395, 57.12, 57.375)
LAYOUTS = ("NCHW", "NHWC")
COLORS = ("RGB", "BGR", "L")
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "lanczos")
#: the units mean/std may be given in: 0–255 pixels (stored) or 0–1 (torchvision's numbers)
UNITS = ("0-255", "0-1")
_MAX_SIDE = 8192


@dataclass(frozen=True, kw_only=True)
class InputSpec:
    """Input contract of a model.

    ``shape`` is always (C, H, W), whatever the model's ``layout``; ``tensor_shape`` is one
    sample as the model takes it ((H, W, C) for ``NHWC``), and what datasets load. ``mean``/
    ``std`` are in 0–255 pixel units, per channel, in the model's channel order; ``resize`` is the
    shorter side an image is resized to before the centre crop to ``shape[1:]``. ``color`` is
    ``"RGB"``, ``"BGR"`` (channels reversed, as OpenCV/Caffe models take them) or ``"L"``.
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
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise ValidationError(
                f"input shape must be (C, H, W) with positive sizes, got {self.shape}"
            )
        channels = self.shape[0]
        if len(self.mean) != channels or len(self.std) != channels:
            raise ValidationError(
                f"mean/std need {channels} values for shape {self.shape}, got {self.mean} / {self.std}"
            )
        if not all(math.isfinite(v) for v in (*self.mean, *self.std)):
            raise ValidationError(f"mean/std must be finite, got {self.mean} / {self.std}")
        if any(s <= 0 for s in self.std):
            raise ValidationError(f"std must be positive, got {self.std}")
        if self.color not in COLORS:
            raise ValidationError(f"color must be one of {', '.join(COLORS)}, got {self.color!r}")
        if (self.color == "L") != (channels == 1):
            raise ValidationError(
                f"color {self.color} does not fit {channels} channel(s) in shape {self.shape}: "
                "use L for 1 channel, RGB or BGR for 3"
            )
        if channels not in (1, 3):
            raise ValidationError(f"images have 1 or 3 channels, got {channels} in {self.shape}")
        if self.layout not in LAYOUTS:
            raise ValidationError(f"layout must be NCHW or NHWC, got {self.layout!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValidationError(
                f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {self.interpolation!r}"
            )
        if not isinstance(self.resize, Integral) or not 1 <= int(self.resize) <= _MAX_SIDE:
            raise ValidationError(
                f"resize must be a whole number of pixels in 1..{_MAX_SIDE}, got {self.resize!r}"
            )
        if max(self.shape[1:]) > _MAX_SIDE:
            raise ValidationError(f"input height/width must be <= {_MAX_SIDE}, got {self.shape}")

    @classmethod
    def imagenet(cls, size: int = 224, resize: int | None = None) -> InputSpec:
        """The torchvision ImageNet convention: resize to size/0.875, centre crop, mean/std."""
        return cls(shape=(3, size, size), resize=resize or round(size / 0.875))

    @classmethod
    def from_options(cls, base: InputSpec | None = None, **options: Any) -> InputSpec:
        """A spec from user options (strings as typed, or values), over ``base`` (or ImageNet's).

        Options: ``input_shape`` ("1,3,224,224", "3,224,224" or "224x224"; N may be ?, -1 or N),
        ``layout`` (NCHW | NHWC), ``mean``/``std`` ("0.5" for every channel or one per channel,
        fractions like "1/255" allowed), ``scale`` (multiplies 0–255 pixels: mean 0, std 1/scale),
        ``units`` ("0-255" default, or "0-1" for mean/std given on 0–1 pixels), ``resize``
        (shorter side before the crop), ``color`` (RGB | BGR | L), ``interpolation``. Options
        that are None are not given. A shape whose channel count changes drops the base's
        mean/std for 0 / 1 (raw pixels) unless mean/std/scale are given.

        Example:
            >>> s = InputSpec.from_options(input_shape="1,3,96,96", mean="0.5", std="0.25", units="0-1")
            >>> s.shape, s.mean, s.std, s.resize
            ((3, 96, 96), (127.5, 127.5, 127.5), (63.75, 63.75, 63.75), 110)
        """
        return _from_options(base, {k: v for k, v in options.items() if v is not None})

    @property
    def channels(self) -> int:
        return self.shape[0]

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) after the crop."""
        return self.shape[1], self.shape[2]

    @property
    def tensor_shape(self) -> tuple[int, int, int]:
        """One sample as the model takes it: (C, H, W) for NCHW, (H, W, C) for NHWC."""
        c, h, w = self.shape
        return (h, w, c) if self.layout == "NHWC" else (c, h, w)

    @property
    def pil_mode(self) -> str:
        """The Pillow mode images are decoded to (BGR is decoded as RGB, then reversed)."""
        return "L" if self.color == "L" else "RGB"

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """HWC (or HW) uint8/float RGB pixels in 0–255 → one float32 sample in the model's layout.

        Also accepts a batch NHWC. BGR models get the channels reversed before normalising.
        """
        x = np.asarray(pixels, dtype=np.float32)
        if x.ndim == 2:
            x = x[:, :, None]
        if self.color == "BGR":
            x = x[..., ::-1]
        mean = np.asarray(self.mean, np.float32)
        inv_std = 1.0 / np.asarray(self.std, np.float32)
        x = (x - mean) * inv_std
        if self.layout == "NHWC":
            return np.ascontiguousarray(x)
        if x.ndim == 3:
            return np.ascontiguousarray(x.transpose(2, 0, 1))
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))

    def batch_shape(self, batch: int) -> tuple[int, int, int, int]:
        """The (C, H, W) batch shape; see :attr:`tensor_shape` for the model's own layout."""
        return (batch, *self.shape)

    @property
    def identity(self) -> str:
        """Everything that changes the preprocessed samples, for cache keys.

        The NCHW/RGB/bilinear defaults add nothing, so keys made before layout and colour order
        existed stay valid.
        """
        base = f"{self.shape}|{self.mean}|{self.std}|{self.resize}"
        for value, default in (
            (self.layout, "NCHW"),
            (self.color, "RGB"),
            (self.interpolation, "bilinear"),
        ):
            if value != default and not (value == "L" and default == "RGB"):
                base += f"|{value}"
        return base

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("extra", None)
        return d


# --------------------------------------------------------------------------- parsing


def parse_numbers(text: str | float | Sequence[float | str], what: str) -> tuple[float, ...]:
    """``"0.5"``, ``"1,2,3"``, ``"1/255"``, a number or a list of those → floats.

    Example:
        >>> parse_numbers("123.7, 116.3,103.5", "--mean")
        (123.7, 116.3, 103.5)
        >>> parse_numbers("1/255", "--scale")[0] == 1 / 255
        True
    """
    if isinstance(text, str):
        items: list[Any] = [t for t in re.split(r"[,\s]+", text.strip()) if t]
    elif isinstance(text, Sequence):
        items = list(text)
    else:
        items = [text]
    out: list[float] = []
    for item in items:
        try:
            if isinstance(item, str) and "/" in item:
                num, _, den = item.partition("/")
                value = float(num) / float(den)
            elif isinstance(item, bool):
                raise TypeError
            else:
                value = float(item)
        except (TypeError, ValueError, ZeroDivisionError):
            raise ValidationError(
                f"{what}: {item!r} is not a number (give e.g. 0.5, 127.5 or 1/255)"
            ) from None
        if not math.isfinite(value):
            raise ValidationError(f"{what}: {item!r} is not a finite number")
        out.append(value)
    if not out:
        raise ValidationError(f"{what} needs at least one number")
    return tuple(out)


def parse_shape(text: str | Sequence[int | str], layout: str = "NCHW") -> tuple[int, int, int]:
    """An input shape as users write it → (C, H, W).

    4 dims are N,C,H,W (or N,H,W,C for NHWC), the batch may be ``?``/``-1``/``N``/a number; 3 dims
    are one sample in the layout; ``HxW`` (or ``H,W``) keeps 3 channels.

    Example:
        >>> parse_shape("1,3,224,224"), parse_shape("?x160x160x3", "NHWC"), parse_shape("96x128")
        ((3, 224, 224), (3, 160, 160), (3, 96, 128))
    """
    if layout not in LAYOUTS:
        raise ValidationError(f"--layout must be NCHW or NHWC, got {layout!r}")
    if isinstance(text, str):
        body = text.strip().strip("[]()")
        # "1,3,224,224" or "1 3 224 224"; "224x224" only when there is no comma or space
        sep = r"[,\s]+" if re.search(r"[,\s]", body) else r"[x×]"
        items: list[Any] = [t for t in re.split(sep, body) if t]
    else:
        items = list(text)
    if len(items) == 4:
        items = items[1:]  # the batch dimension: whatever it says, edgequant picks it
    dims: list[int] = []
    for item in items:
        try:
            dims.append(int(str(item)))
        except ValueError:
            raise ValidationError(
                f"--input-shape {text!r}: {item!r} is not a whole number "
                "(only the batch dimension may be ?, -1 or N)"
            ) from None
    if len(dims) == 2:
        dims = [3, *dims] if layout == "NCHW" else [*dims, 3]
    if len(dims) != 3:
        raise ValidationError(
            f"--input-shape {text!r} needs N,C,H,W (or C,H,W, or HxW) for one image input; "
            f"got {len(items)} dimension(s)"
        )
    c, h, w = dims if layout == "NCHW" else (dims[2], dims[0], dims[1])
    if min(c, h, w) < 1:
        raise ValidationError(f"--input-shape {text!r}: sizes must be positive")
    if c not in (1, 3):
        other = "NHWC" if layout == "NCHW" else "NCHW"
        raise ValidationError(
            f"--input-shape {text!r} has {c} channels in {layout}; images have 1 or 3 "
            f"(is the layout {other}? pass --layout {other})"
        )
    return (c, h, w)


def _per_channel(values: tuple[float, ...], channels: int, what: str) -> tuple[float, ...]:
    if len(values) == 1:
        return values * channels
    if len(values) != channels:
        want = "1 value" if channels == 1 else f"1 or {channels} values (one per channel)"
        raise ValidationError(f"{what} needs {want}, got {len(values)}")
    return values


def _from_options(base: InputSpec | None, opts: dict[str, Any]) -> InputSpec:
    known = {
        "input_shape",
        "layout",
        "mean",
        "std",
        "scale",
        "units",
        "resize",
        "color",
        "interpolation",
    }
    unknown = sorted(set(opts) - known)
    if unknown:
        raise ValidationError(
            f"unknown input option(s) {unknown}; known: {', '.join(sorted(known))}"
        )
    spec = base or InputSpec.imagenet()
    layout = str(opts.get("layout", spec.layout)).upper()
    shape = parse_shape(opts["input_shape"], layout) if "input_shape" in opts else spec.shape
    c = shape[0]
    units = str(opts.get("units", "0-255"))
    if units not in UNITS:
        raise ValidationError(f"units must be 0-255 or 0-1, got {units!r}")
    if "scale" in opts and ("std" in opts):
        raise ValidationError("give either --scale or --std, not both (scale = 1 / std)")
    mean, std = spec.mean, spec.std
    if c != spec.channels:
        mean, std = (0.0,) * c, (1.0,) * c
    if "scale" in opts:
        (scale,) = _per_channel(parse_numbers(opts["scale"], "--scale"), 1, "--scale")
        if scale <= 0:
            raise ValidationError(f"--scale must be positive, got {scale}")
        std = (1.0 / scale,) * c
        mean = (0.0,) * c
    if "mean" in opts:
        mean = _per_channel(parse_numbers(opts["mean"], "--mean"), c, "--mean")
    if "std" in opts:
        std = _per_channel(parse_numbers(opts["std"], "--std"), c, "--std")
    if units == "0-1":
        mean = tuple(m * 255.0 for m in mean) if "mean" in opts else mean
        std = tuple(s * 255.0 for s in std) if "std" in opts else std
    elif "std" in opts and max(std) < 1.0:
        raise ValidationError(
            f"--std {std} on 0-255 pixels would amplify them; these look like 0-1 values "
            "(torchvision's): add --units 0-1, or give mean/std in 0-255 pixel units"
        )
    color = str(opts.get("color", spec.color if c == spec.channels else ("L" if c == 1 else "RGB")))
    try:
        resize = int(opts["resize"]) if "resize" in opts else None
    except (TypeError, ValueError):
        raise ValidationError(
            f"--resize needs a whole number of pixels, got {opts['resize']!r}"
        ) from None
    if resize is None:
        resize = spec.resize if shape == spec.shape else round(min(shape[1:]) / 0.875)
    return replace(
        spec,
        shape=shape,
        layout=layout,
        mean=mean,
        std=std,
        color=color.upper(),
        resize=resize,
        interpolation=str(opts.get("interpolation", spec.interpolation)).lower(),
    )
