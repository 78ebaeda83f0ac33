"""``edgequant eval``: the FP32 PyTorch reference accuracy of a model on a labelled dataset.

Example:
    $ edgequant eval --model efficientnet_lite0 --data imagenet:~/imagenet-val --limit 1000
    $ edgequant eval --model digits_cnn --data digits --json
"""

from __future__ import annotations

import argparse
from typing import Any

from edgequant.cli.args import (
    JSON_DOC,
    Spec,
    add_model_arguments,
    command,
    from_args,
    model_argument,
    opt,
)

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


HELP = "FP32 reference accuracy of a model on a labelled dataset"

OPTIONS: dict[str, Spec] = {
    "--model": opt("zoo name, or a .onnx / .pth file", required=True),
    "--data": opt("labelled dataset, KIND[:PATH]", required=True, metavar="DATASET"),
    "--weights": "state_dict (.pth) to load into a zoo architecture",
    "--arch": "zoo architecture of a .pth given as --model",
    "--limit": opt("evaluate a seeded subset of N samples", metavar="N"),
    "--seed": opt("seed of the --limit subset (default 0)", default=0),
    "--batch-size": opt("batch size (default 32)", default=32),
    "--threads": "CPU threads for PyTorch (default: all)",
    "--json": JSON_DOC,
}


def add_parser(subparsers: Any) -> None:
    add_model_arguments(command(subparsers, __name__))


def run(args: argparse.Namespace) -> int:
    from edgequant.bench.evaluate import evaluate
    from edgequant.console import format_table, print_json
    from edgequant.measure.accuracy import interval_text

    model = model_argument(args)
    result = evaluate(
        model,
        args.data,
        weights=None if model is not args.model else args.weights,
        arch=None if model is not args.model else args.arch,
        **from_args(args, "limit", "seed", "batch_size", "threads"),
    )
    if args.json:
        print_json(result)
        return 0
    r = result
    row = [r["model"], r["dataset"], r["samples"], r["top1_pct"]]
    row += [interval_text(r["top1_ci95_pct"]).strip(), r["top5_pct"], r["seconds"]]
    heads = ["model", "dataset", "samples", "top1_%", "top1 95% interval", "top5_%", "seconds"]
    print(format_table([row], heads))
    return 0
