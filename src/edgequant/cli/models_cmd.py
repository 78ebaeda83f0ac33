"""``edgequant models``: the model zoo with params and MACs measured by hooks, input specs,
offline pretrained weights, and the published figures with the % difference.

Example:
    $ edgequant models
    $ edgequant models --json | jq '.models[] | {name, params_m, gmac}'
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from edgequant.cli.args import JSON_DOC, Spec, command, opt

if TYPE_CHECKING:
    from edgequant.models.registry import ZooEntry

DESCRIPTION = """\
List the zoo models: family, parameters and multiply-accumulates per image at the model's default
input size (counted by forward hooks on every Conv2d/Linear, not taken from a table), the input
spec (shape, mean/std in 0-255 pixel units, resize before the centre crop), whether pretrained
weights are available offline (and where from), and the published params/GMAC with the %
difference. Models without offline weights run with seeded random weights: fine for speed and
quantization studies, not for accuracy.
"""

EPILOG = """\
Examples:
  edgequant models                      # aligned table
  edgequant models resnet50 vgg16       # only these
  edgequant models --json               # one JSON document: {"models": [...]}

Any zoo model also loads a torchvision-style checkpoint:  --model resnet50 --weights r50.pth
or a checkpoint path with its architecture:               --model r50.pth --arch resnet50
A user's ONNX file is a model too:                         --model my_net.onnx
"""


HELP = "the model zoo: params, MACs, input spec, offline weights"

OPTIONS: dict[str, Spec] = {
    "names": opt("only these zoo models (default: all)", nargs="*", metavar="NAME"),
    "--json": JSON_DOC,
}


def add_parser(subparsers: Any) -> None:
    command(subparsers, __name__)


def _pct(measured: float, published: float) -> float:
    return round(100.0 * (measured - published) / published, 2)


def describe_model(entry: ZooEntry) -> dict[str, Any]:
    """One zoo entry as a JSON-able dict, with params/MACs measured at its default input size.

    The architecture is built on PyTorch's ``meta`` device (shapes only, no weights), which
    makes even VGG-19 cost milliseconds; an architecture that cannot run there is built on CPU.

    Example:
        >>> from edgequant.models import get_entry
        >>> d = describe_model(get_entry("resnet18"))
        >>> d["params_m"], abs(d["diff_pct"]["macs"]) < 2
        (11.69, True)
    """
    import torch

    from edgequant.models.profile import count_params_macs

    try:
        with torch.device("meta"):
            module = entry.build(entry.num_classes)
        params, macs = count_params_macs(module, entry.input_spec.shape)
    except (NotImplementedError, RuntimeError):
        module = entry.build(entry.num_classes)
        params, macs = count_params_macs(module, entry.input_spec.shape)
    spec = entry.input_spec
    has_weights = entry.has_pretrained()
    info: dict[str, Any] = {
        "name": entry.name,
        "family": entry.family,
        "description": entry.description,
        "num_classes": entry.num_classes,
        "params": params,
        "macs": macs,
        "params_m": round(params / 1e6, 2),
        "gmac": round(macs / 1e9, 3),
        "input_spec": spec.to_dict(),
        "pretrained": has_weights,
        "pretrained_source": entry.pretrained_source if has_weights else None,
        "published": None,
        "diff_pct": None,
    }
    if entry.published is not None:
        pub_params, pub_gmac = entry.published
        info["published"] = {"params_m": pub_params, "gmac": pub_gmac}
        info["diff_pct"] = {
            "params": _pct(params / 1e6, pub_params),
            "macs": _pct(macs / 1e9, pub_gmac),
        }
    return info


def _spec_text(spec: dict[str, Any]) -> str:
    from edgequant.input_spec import IMAGENET_MEAN_255, IMAGENET_STD_255

    c, h, w = spec["shape"]
    if tuple(spec["mean"]) == IMAGENET_MEAN_255 and tuple(spec["std"]) == IMAGENET_STD_255:
        norm = "imagenet mean/std"
    else:
        mean = "/".join(dict.fromkeys(f"{v:g}" for v in spec["mean"]))  # "127" for 127/127/127
        std = "/".join(dict.fromkeys(f"{v:g}" for v in spec["std"]))
        norm = f"mean {mean} std {std}"
    return f"{c}x{h}x{w} resize {spec['resize']}, {norm}"


def _source_text(d: dict[str, Any]) -> str:
    if not d["pretrained"]:
        return "no (random init)"
    src = d["pretrained_source"] or ""
    return "yes: " + src.split(" (")[0]


def run(args: argparse.Namespace) -> int:
    from edgequant.console import format_table, print_json
    from edgequant.models.registry import get_entry, list_models

    entries = [get_entry(n) for n in args.names] if args.names else list_models()
    rows = [describe_model(e) for e in entries]
    if args.json:
        print_json({"models": rows})
        return 0
    table = []
    for d in rows:
        pub = d["published"]
        diff = d["diff_pct"]
        table.append(
            [
                d["name"],
                d["family"],
                d["params_m"],
                d["gmac"],
                f"{pub['params_m']:g}M / {pub['gmac']:g}" if pub else "-",
                f"{diff['params']:+.1f}% / {diff['macs']:+.1f}%" if diff else "-",
                _spec_text(d["input_spec"]),
                _source_text(d),
            ]
        )
    headers = ["name", "family", "params_M", "GMAC", "published", "diff", "input", "pretrained"]
    print(format_table(table, headers))
    print("\nMACs per image at the input size shown, counted by hooks on Conv2d/Linear.")
    return 0
