"""``edgequant eval``: the FP32 PyTorch reference accuracy of a model on a labelled dataset.

Example:
    $ edgequant eval --model efficientnet_lite0 --data imagenet:~/imagenet-val --limit 1000
    $ edgequant eval --model digits_cnn --data digits --json
"""

from __future__ import annotations

import argparse
import time
from typing import Any

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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from edgequant.console import format_table, log, print_json
    from edgequant.data import open_dataset
    from edgequant.errors import ValidationError
    from edgequant.measure.accuracy import topk_accuracy
    from edgequant.models import load_model
    from edgequant.models.reference import reference_logits

    if args.batch_size < 1:
        raise ValidationError("--batch-size must be >= 1")
    model = load_model(args.model, weights=args.weights, arch=args.arch)
    ds = open_dataset(args.data, model.input_spec, split="test", limit=args.limit, seed=args.seed)
    if not ds.has_labels or ds.labels is None:
        raise ValidationError(
            f"{args.data} has no labels; eval needs labelled data (imagenet:DIR, digits, npy with y)"
        )
    t0 = time.perf_counter()
    logits = reference_logits(model, ds, batch_size=args.batch_size, threads=args.threads)
    seconds = time.perf_counter() - t0
    labels = np.asarray(ds.labels)
    if labels.max() >= logits.shape[1]:
        raise ValidationError(
            f"label {int(labels.max())} is out of range for {model.name}'s {logits.shape[1]} classes; "
            "check the dataset's class indices"
        )
    result = {
        "model": model.name,
        "weights": model.weights,
        "dataset": ds.spec,
        "samples": len(ds),
        "top1_pct": round(topk_accuracy(logits, labels, 1), 4),
        "top5_pct": round(topk_accuracy(logits, labels, 5), 4),
        "backend": "pytorch" if model.module is not None else "onnxruntime",
        "scheme": "fp32",
        "seconds": round(seconds, 3),
    }
    if not model.pretrained:
        log(f"warning: {model.name} has random weights (no --weights): its accuracy means nothing")
    if args.json:
        print_json(result)
    else:
        print(
            format_table(
                [
                    [
                        result["model"],
                        result["dataset"],
                        result["samples"],
                        result["top1_pct"],
                        result["top5_pct"],
                        result["seconds"],
                    ]
                ],
                ["model", "dataset", "samples", "top1_%", "top5_%", "seconds"],
            )
        )
    return 0
