"""``edgequant train``: train a zoo model on a dataset with a train split (the digits CNN).

Example:
    $ edgequant train --model digits_cnn --data digits -o digits_cnn.pt
    $ edgequant eval --model digits_cnn --weights digits_cnn.pt --data digits
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edgequant.cli.args import JSON_DOC, Spec, command, from_args, opt

DESCRIPTION = """\
Train a zoo architecture from scratch on a dataset that has a train/test split (today: digits),
seeded and reproducible, and save its state_dict. The digits CNN shipped with edgequant was made
by `edgequant train --model digits_cnn --data digits --epochs 20 --seed 0`.
"""


HELP = "train a small model (e.g. the digits CNN) and save its weights"

OPTIONS: dict[str, Spec] = {
    "--model": opt("zoo architecture (default digits_cnn)", default="digits_cnn"),
    "--data": opt("dataset with splits (default digits)", default="digits", metavar="DATASET"),
    "--epochs": opt("epochs (default 20)", default=20),
    "--lr": opt("peak learning rate (default 3e-3)", default=3e-3),
    "--batch-size": opt("batch size (default 64)", default=64),
    "--seed": opt("seed (default 0)", default=0),
    "--threads": opt("CPU threads (default 2)", default=2),
    "--output": opt("where to save the state_dict (default MODEL.pt)", type=Path),
    "--json": JSON_DOC,
}


def add_parser(subparsers: Any) -> None:
    command(subparsers, __name__)


def run(args: argparse.Namespace) -> int:
    from edgequant.console import print_json
    from edgequant.training import train

    result = train(
        args.model,
        **from_args(args, "data", "epochs", "lr", "batch_size", "seed", "threads", "output"),
    )
    if args.json:
        print_json(result)
    else:
        print(
            f"{result['model']}: test top-1 {result['test_top1_pct']:.2f}% on "
            f"{result['test_samples']} images after {result['epochs']} epochs "
            f"({result['seconds']:.1f} s); weights saved to {result['weights']}"
        )
    return 0
