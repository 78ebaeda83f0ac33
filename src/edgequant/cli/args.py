"""The model and input-spec arguments ``quantize``, ``bench`` and ``eval`` share.

``--input-shape``, ``--layout``, ``--mean``/``--std`` (or ``--scale``), ``--units``,
``--resize``, ``--color``, ``--interpolation`` and ``--model-card`` say how to feed a model that
is not from the zoo; they become ``load_model(..., input_options=..., card=...)``.

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser()
    >>> add_model_arguments(p)
    >>> input_options(p.parse_args(["--input-shape", "1,3,48,192", "--scale", "1/255"]))
    {'input_shape': '1,3,48,192', 'scale': '1/255'}
"""

from __future__ import annotations

import argparse
from typing import Any

#: option name on the command line -> input_options key (values are passed as typed)
INPUT_OPTIONS = {
    "input_shape": "input shape N,C,H,W (or C,H,W; H x W for a fixed C); fills dynamic dims",
    "layout": "NCHW (default) or NHWC, the model's input layout",
    "mean": "per-channel mean to subtract: one number or one per channel (0-255 units)",
    "std": "per-channel std to divide by (0-255 units; see --units)",
    "scale": "multiply 0-255 pixels by this instead of --mean/--std (e.g. 1/255)",
    "units": "units of --mean/--std: 0-255 (default) or 0-1",
    "resize": "shorter side images are resized to before the centre crop",
    "color": "RGB (default), BGR or L: the channel order the model takes",
    "interpolation": "resize interpolation: bilinear (default), bicubic, nearest, ...",
}


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """Add the input-spec options and ``--model-card`` to a subcommand's parser."""
    g = p.add_argument_group("model input (for models outside the zoo)")
    for key, text in INPUT_OPTIONS.items():
        flag = "--" + key.replace("_", "-")
        g.add_argument(flag, dest=key, metavar=key.split("_")[-1].upper(), help=text)
    g.add_argument(
        "--model-card",
        metavar="FILE",
        help="YAML model card with the input spec (default: one found beside the model file)",
    )


def input_options(args: argparse.Namespace) -> dict[str, Any]:
    """The input options given on the command line (those left out are not in the mapping)."""
    return {k: getattr(args, k) for k in INPUT_OPTIONS if getattr(args, k, None) is not None}


def model_argument(args: argparse.Namespace) -> Any:
    """``args.model`` as it is (a name or path the command loads itself), or the loaded
    :class:`~edgequant.models.base.Model` when input options or a model card were given.

    Example:
        >>> model_argument(argparse.Namespace(model="digits_cnn"))
        'digits_cnn'
    """
    opts = input_options(args)
    card = getattr(args, "model_card", None)
    if not opts and card is None:
        return args.model
    from edgequant.build.quantize import resolve_model

    return resolve_model(
        args.model,
        weights=getattr(args, "weights", None),
        arch=getattr(args, "arch", None),
        pretrained=not getattr(args, "random_weights", False),
        input_options=opts,
        card=card,
    )


__all__ = ["INPUT_OPTIONS", "add_model_arguments", "input_options", "model_argument"]
