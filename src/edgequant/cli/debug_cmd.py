"""``edgequant debug ARTIFACT --data D``: per-layer SQNR of the runtime's own int8 execution.

Example:
    $ edgequant debug build/mv2-ort-w8a8 --data imagenet:calib --samples 8
    layer  kind  runtime op  runtime dB  sim dB  saturated %
"""

from __future__ import annotations

import argparse
from typing import Any

from edgequant.cli.args import JSON_DOC, Spec, command, flag, from_args, opt

DESCRIPTION = """\
For each quantized conv/linear of an artifact: the SQNR (dB) of the runtime's own int8 output
against fp32 on a few samples, beside the simulator's prediction for that layer (with the integer
arithmetic this CPU gives that runtime) and how often its int16 pair sums saturate. Intermediate
outputs come the way each runtime allows (extra graph outputs, added model outputs, preserved
tensors, the exported program's nodes); layers whose names the runtime does not reveal are
listed as unmatched. The worst 5 layers are saved as layer_debug.json in the artifact directory.
"""

EPILOG = """\
Examples:
  edgequant debug build/mv2 --data imagenet:/data/calib
  edgequant debug build/mv2 --data digits --samples 4 --json
  edgequant debug build/r50.onnx --data synthetic --model resnet50 --top 10
"""


HELP = "per-layer SQNR of an artifact's runtime vs fp32, beside the simulator"

OPTIONS: dict[str, Spec] = {
    "artifact": opt("artifact directory, model file or artifact.json", metavar="ARTIFACT"),
    "--data": opt("samples (calibration data)", required=True, metavar="DATASET"),
    "--samples": opt("samples compared (default 8)", default=8),
    "--calib-size": opt(
        "samples calibrating the simulator (default: the artifact's own count where its weights "
        "were rounded on its calibration data, as w8a8's are; else 64)",
        type=int,
        default=None,
    ),
    "--model": "the fp32 model (default: the zoo model the artifact names)",
    "--weights": "checkpoint for --model",
    "--top": opt("show only the N worst layers", type=int, default=None),
    "--no-save": flag("do not write layer_debug.json"),
    "--json": JSON_DOC,
}


def add_parser(subparsers: Any) -> None:
    command(subparsers, __name__)


def run(args: argparse.Namespace) -> int:
    from edgequant.console import print_json
    from edgequant.studies.layer_debug import debug_artifact

    model = None
    if args.model:
        from edgequant.models.loader import load_model

        model = load_model(args.model, weights=args.weights)
    result = debug_artifact(
        args.artifact,
        args.data,
        model=model,
        **from_args(args, "samples", "calib_size"),
        save=not args.no_save,
    )
    if args.json:
        print_json(result.to_dict())
    else:
        print(result.render(top=args.top))
    return 0
