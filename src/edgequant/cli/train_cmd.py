"""``edgequant train``: train a zoo model on a dataset with a train split (the digits CNN).

Example:
    $ edgequant train --model digits_cnn --data digits -o digits_cnn.pt
    $ edgequant eval --model digits_cnn --weights digits_cnn.pt --data digits
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DESCRIPTION = """\
Train a zoo architecture from scratch on a dataset that has a train/test split (today: digits),
seeded and reproducible, and save its state_dict. The digits CNN shipped with edgequant was made
by `edgequant train --model digits_cnn --data digits --epochs 20 --seed 0`.
"""


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a small model (e.g. the digits CNN) and save its weights",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", default="digits_cnn", help="zoo architecture (default digits_cnn)")
    p.add_argument(
        "--data", default="digits", metavar="DATASET", help="dataset with splits (default digits)"
    )
    p.add_argument("--epochs", type=int, default=20, help="epochs (default 20)")
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default 3e-3)")
    p.add_argument("--batch-size", type=int, default=64, help="batch size (default 64)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    p.add_argument(
        "-o", "--output", type=Path, help="where to save the state_dict (default MODEL.pt)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edgequant.console import print_json
    from edgequant.training import train

    result = train(
        args.model,
        data=args.data,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        seed=args.seed,
        threads=args.threads,
        output=args.output,
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
