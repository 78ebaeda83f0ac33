"""``edgequant eval``: the FP32 PyTorch reference accuracy of a model on a labelled dataset.

Example:
    $ edgequant eval --model efficientnet_lite0 --data imagenet:~/imagenet-val --limit 1000
    $ edgequant eval --model digits_cnn --data digits --json
"""

from __future__ import annotations

import argparse
from typing import Any

from edgequant.cli.args import add_model_arguments, model_argument

DESCRIPTION = """\
Measure a model's FP32 reference accuracy (top-1 / top-5) with PyTorch (a user's .onnx file runs
with ONNX Runtime), using the model's own preprocessing. This is the baseline every quantized
variant's accuracy drop and agreement are measured against.
"""

EPILOG = """\
Datasets (KIND[:PATH]):
  imagenet:DIR     class sub-folders (class index = sorted folder order, or DIR/synsets.txt),
                   or flat images + MLPerf val_map.txt ('<file> <class index>' per line)
  digits           scikit-learn's bundled digits, test split (450 images)
  npy:FILE.npz     preprocessed samples 'x' (N,C,H,W) with labels 'y'
Examples:
  edgequant eval --model digits_cnn --data digits
  edgequant eval --model resnet50 --weights resnet50.pth --data imagenet:val/ --limit 500 --json
"""


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "eval",
        help="FP32 reference accuracy of a model on a labelled dataset",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="zoo name, or a .onnx / .pth file")
    p.add_argument("--data", required=True, metavar="DATASET", help="labelled dataset, KIND[:PATH]")
    p.add_argument("--weights", help="state_dict (.pth) to load into a zoo architecture")
    p.add_argument("--arch", help="zoo architecture of a .pth given as --model")
    p.add_argument("--limit", type=int, metavar="N", help="evaluate a seeded subset of N samples")
    p.add_argument("--seed", type=int, default=0, help="seed of the --limit subset (default 0)")
    p.add_argument("--batch-size", type=int, default=32, help="batch size (default 32)")
    p.add_argument("--threads", type=int, help="CPU threads for PyTorch (default: all)")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    add_model_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edgequant.bench.evaluate import evaluate
    from edgequant.console import format_table, print_json

    model = model_argument(args)
    result = evaluate(
        model,
        args.data,
        weights=None if model is not args.model else args.weights,
        arch=None if model is not args.model else args.arch,
        limit=args.limit,
        seed=args.seed,
        batch_size=args.batch_size,
        threads=args.threads,
    )
    if args.json:
        print_json(result)
        return 0
    columns = ("model", "dataset", "samples", "top1_pct", "top5_pct", "seconds")
    print(
        format_table(
            [[result[c] for c in columns]],
            ["model", "dataset", "samples", "top1_%", "top5_%", "seconds"],
        )
    )
    return 0
