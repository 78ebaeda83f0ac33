"""The image input of a model read from a file: its (C, H, W) and the input spec over it.

Every file format (ONNX, ``.pt2``, ``.tflite``, OpenVINO IR) states its input dims with some of
them dynamic; :func:`image_chw` checks them against ``--input-shape`` and fills the dynamic ones,
:func:`image_spec` puts the ImageNet preprocessing over them unless the options say otherwise.

Example:
    >>> image_chw("model m.onnx", ["N", 3, -1, -1], "NCHW", {"input_shape": "1,3,96,128"})
    (3, 96, 128)
    >>> spec, assumed = image_spec("model m.onnx", (3, 96, 128), "NCHW", {"input_shape": "96x128"})
    >>> spec.shape, spec.resize, assumed
    ((3, 96, 128), 110, True)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from edgequant.errors import ModelError, ValidationError
from edgequant.input_spec import IMAGENET_MEAN_255, IMAGENET_STD_255, InputSpec, parse_shape

#: options that say how pixels are normalised: with none of them the ImageNet numbers are assumed
NORMALISATION = ("mean", "std", "scale")


def given_chw(where: str, options: Mapping[str, Any], layout: str) -> tuple[int, int, int] | None:
    """(C, H, W) of the ``input_shape`` option, None when it is not given.

    Example:
        >>> given_chw("model m", {"input_shape": "1,64,64,3"}, "NHWC"), given_chw("model m", {}, "NCHW")
        ((3, 64, 64), None)
    """
    given = options.get("input_shape")
    if given is None:
        return None
    try:
        return parse_shape(given, layout)
    except ValidationError as e:
        raise ModelError(f"{where}: {e}") from None


def image_chw(
    where: str,
    dims: Sequence[int | str],
    layout: str,
    options: Mapping[str, Any],
    *,
    what: str = "the input",
) -> tuple[int, int, int]:
    """(C, H, W) of a 4-D input in ``layout``; a dim that is not a positive int is dynamic.

    Static dims must agree with ``input_shape``, dynamic ones are taken from it; errors name
    ``where`` and ``what`` (``"input 'x'"``).

    Example:
        >>> image_chw("model m", [1, 224, 224, 3], "NHWC", {})
        (3, 224, 224)
    """
    subject = f"{where}: {what}"
    if len(dims) != 4:
        raise ModelError(
            f"{subject} has shape {list(dims)} (rank {len(dims)}); edgequant needs one 4-D image "
            f"input ({layout}; NHWC with --layout NHWC)"
        )
    sample = list(dims[1:]) if layout == "NCHW" else [dims[3], dims[1], dims[2]]
    want = given_chw(where, options, layout)
    out: list[int] = []
    for axis, (have, label) in enumerate(zip(sample, "CHW", strict=True)):
        if isinstance(have, int) and have >= 1:
            if want is not None and want[axis] != have:
                raise ModelError(
                    f"{subject} has {label} = {have} (shape {list(dims)}), but the given input "
                    f"shape says {want[axis]}; drop or fix --input-shape"
                )
            out.append(have)
        elif want is not None:
            out.append(want[axis])
        else:
            raise ModelError(
                f"{subject} has dynamic {label} (shape {list(dims)}); give it with --input-shape: "
                "edgequant needs static C, H, W (the batch may be dynamic), as --input-shape "
                "N,C,H,W or in a model card beside the file"
            )
    c, h, w = out
    if c not in (1, 3):
        hint = (
            "; it looks NHWC: pass --layout NHWC" if layout == "NCHW" and dims[3] in (1, 3) else ""
        )
        raise ModelError(
            f"{subject} has {c} channels at dim {1 if layout == 'NCHW' else 3} (shape "
            f"{list(dims)}); edgequant needs {layout} images with 1 or 3 channels{hint}"
        )
    return c, h, w


def image_spec(
    where: str, chw: tuple[int, int, int], layout: str, options: Mapping[str, Any]
) -> tuple[InputSpec, bool]:
    """The input spec over (C, H, W), and whether its preprocessing is assumed (ImageNet's).

    The options (``mean``, ``std``, ``resize`` …, as :meth:`InputSpec.from_options`) override
    the assumed numbers; ``input_shape`` and ``layout`` are already in ``chw`` and ``layout``.

    Example:
        >>> spec, assumed = image_spec("model m", (1, 28, 28), "NCHW", {"mean": "0", "std": "255"})
        >>> spec.color, spec.mean, assumed
        ('L', (0.0,), False)
    """
    c, h, w = chw
    assumed = InputSpec(
        shape=chw,
        mean=IMAGENET_MEAN_255 if c == 3 else (127.5,),
        std=IMAGENET_STD_255 if c == 3 else (127.5,),
        resize=round(min(h, w) / 0.875),
        color="RGB" if c == 3 else "L",
        layout=layout,
    )
    opts = {k: v for k, v in options.items() if k not in ("input_shape", "layout")}
    try:
        spec = InputSpec.from_options(assumed, **opts)
    except ValidationError as e:
        raise ModelError(f"{where}: {e}") from None
    return spec, not any(k in opts for k in NORMALISATION)
