"""``edgequant debug ARTIFACT --data D``: per-layer SQNR of the runtime's own int8 execution.

Example:
    $ edgequant debug build/mv2-ort-w8a8 --data imagenet:calib --samples 8
    layer  kind  runtime op  runtime dB  sim dB  saturated %
"""

from __future__ import annotations

import argparse
from typing import Any

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


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "debug",
        help="per-layer SQNR of an artifact's runtime vs fp32, beside the simulator",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "artifact", metavar="ARTIFACT", help="artifact directory, model file or artifact.json"
    )
    p.add_argument("--data", required=True, metavar="DATASET", help="samples (calibration data)")
    p.add_argument("--samples", type=int, default=8, help="samples compared (default 8)")
    p.add_argument(
        "--calib-size", type=int, default=64, help="samples calibrating the simulator (default 64)"
    )
    p.add_argument("--model", help="the fp32 model (default: the zoo model the artifact names)")
    p.add_argument("--weights", help="checkpoint for --model")
    p.add_argument("--top", type=int, default=None, help="show only the N worst layers")
    p.add_argument("--no-save", action="store_true", help="do not write layer_debug.json")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    p.set_defaults(func=run)


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
        samples=args.samples,
        calib_size=args.calib_size,
        save=not args.no_save,
    )
    if args.json:
        print_json(result.to_dict())
    else:
        print(result.render(top=args.top))
    return 0
