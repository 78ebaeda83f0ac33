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
    from dataclasses import asdict

    import torch

    from edgequant.console import log, print_json
    from edgequant.data import open_dataset
    from edgequant.data.registry import parse_dataset_spec
    from edgequant.errors import ValidationError
    from edgequant.models import load_model
    from edgequant.models.training import train_classifier

    kind, arg = parse_dataset_spec(args.data)
    if kind != "digits" or arg is not None:
        raise ValidationError(
            f"train needs a dataset with train/test splits; {args.data!r} has none (use digits)"
        )
    if args.epochs < 1:
        raise ValidationError("--epochs must be >= 1")
    torch.set_num_threads(max(1, args.threads))
    model = load_model(args.model, pretrained=False)
    train = open_dataset(args.data, model.input_spec, split="train")
    test = open_dataset(args.data, model.input_spec, split="test")
    log(
        f"training {model.name} on {train.spec} ({len(train)} images), testing on {test.spec} ({len(test)})"
    )
    stats = train_classifier(
        model,
        train,
        test,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    out = args.output or Path(f"{model.name}.pt")
    out.parent.mkdir(parents=True, exist_ok=True)
    if model.module is None:
        raise ValidationError(
            f"{args.model} is not a PyTorch model; only zoo architectures can be trained"
        )
    torch.save(model.module.state_dict(), out)
    result = {"model": model.name, "dataset": args.data, "weights": str(out), **asdict(stats)}
    if args.json:
        print_json(result)
    else:
        print(
            f"{model.name}: test top-1 {stats.test_top1_pct:.2f}% on {stats.test_samples} images "
            f"after {stats.epochs} epochs ({stats.seconds:.1f} s); weights saved to {out}"
        )
    return 0
