"""``edgequant qat``: quantization-aware training, exported as ONNX QDQ and run by a real runtime.

Example:
    $ edgequant qat --model digits_cnn --scheme w4a8 --data digits --epochs 3 -o runs/qat-w4a8 --json
"""

from __future__ import annotations

import argparse
from typing import Any

from edgequant.cli.args import MODEL_FILE_OPTIONS, Spec, command, flag, from_args, opt

DESCRIPTION = """\
Quantization-aware training (Krishnamoorthi's recipe): fake quantization with the straight-through
estimator, batch norm folded into the conv weights while training, BN statistics frozen after N
steps and activation ranges after M steps, optional distillation from the fp32 model (then
unlabeled images suffice). The result is exported as an ONNX QDQ model (learned scales and
zero-points; per-channel weights) that ONNX Runtime / OpenVINO execute in INT8, and evaluated on
the dataset's test split by that runtime. The PTQ accuracy of the same scheme is reported beside
it, with round-to-nearest and with AdaRound's learnt rounding. Writes DIR/model.onnx, DIR/artifact.json and DIR/result.json.
"""

EPILOG = """\
Examples:
  edgequant qat --model digits_cnn --scheme w4a8 --data digits -o runs/qat-w4a8
  edgequant qat --model digits_cnn --scheme w8a8 --data digits --epochs 1 --json -o runs/qat-w8a8
  edgequant qat --model mobilenet_v2 --scheme w4a8 --data imagenet:~/imgs --distill -o runs/mv2-qat
"""


HELP = "quantization-aware training, exported to ONNX QDQ and run by a runtime"

OPTIONS: dict[str, Spec] = {
    **MODEL_FILE_OPTIONS,
    "--weights": "a .pth checkpoint for the model (instead of its pretrained weights)",
    "--scheme": opt("scheme name or YAML (static, integer weights), e.g. w4a8", required=True),
    "--data": opt("training data KIND[:PATH]; accuracy on its test split", required=True),
    "--eval-data": "evaluation data (default: --data, split test)",
    "--epochs": "training epochs (default: the scheme's qat or 3)",
    "--lr": "Adam learning rate (default 1e-3)",
    "--batch-size": opt("training batch size (default 32)", default=32),
    "--freeze-bn-after": opt("steps before BN statistics freeze (default 200)", type=int),
    "--freeze-observers-after": opt(
        "steps before activation ranges freeze (default 300)", type=int
    ),
    "--distill": flag("learn from the fp32 model's outputs (no labels needed)"),
    "--no-ptq-adaround": flag(
        "skip the PTQ + AdaRound row (learnt rounding on the calibration data: the best PTQ, "
        "minutes on an ImageNet model)"
    ),
    "--backend": "runtime that runs the exported model (default: the first registered runtime "
    "that loads ONNX files as they are; `edgequant backends` lists them)",
    "--int4-storage": flag(
        "store <=4-bit weights as ONNX int4 (opset 21; ORT then runs those convs in float)"
    ),
    "--threads": opt("runtime threads (default 2)", default=2),
    "--limit": "use at most this many training samples",
    "--seed": opt(default=0),
    "--output": opt("output directory", required=True),
    "--json": "print the result record as one JSON document",
}


def add_parser(subparsers: Any) -> None:
    command(subparsers, __name__)


def run(args: argparse.Namespace) -> int:
    from edgequant.console import format_table, print_json
    from edgequant.studies.qat import QATOptions, qat

    options = QATOptions(
        **from_args(args, "lr", "batch_size", "freeze_bn_after", "freeze_observers_after"),
        distill=args.distill,
        ptq_adaround=not args.no_ptq_adaround,
    )
    record = qat(
        args.model,
        **from_args(args, "scheme", "data", "output", "epochs", "backend", "eval_data"),
        **from_args(args, "weights", "arch", "int4_storage", "threads", "limit", "seed"),
        options=options,
    )
    if args.json:
        print_json(record.to_dict())
        return 0
    name = record.scheme.removesuffix("-qat")
    acc, extra = record.accuracy or {}, record.extra
    rows = [
        ["fp32 (PyTorch)", extra["fp32"]["top1_pct"], 100.0],
        [
            f"{name} PTQ (simulated)",
            extra["ptq_sim"]["top1_pct"],
            extra["ptq_sim"]["agreement_with_fp32_pct"],
        ],
        *(
            [
                [
                    f"{name} PTQ + AdaRound (simulated)",
                    extra["ptq_adaround_sim"]["top1_pct"],
                    extra["ptq_adaround_sim"]["agreement_with_fp32_pct"],
                ]
            ]
            if extra.get("ptq_adaround_sim")
            else []
        ),
        [
            f"{name} QAT (simulated)",
            extra["qat_sim"]["top1_pct"],
            extra["qat_sim"]["agreement_with_fp32_pct"],
        ],
        [f"{name} QAT ({record.backend})", acc.get("top1_pct"), acc.get("agreement_with_fp32_pct")],
    ]
    print(format_table(rows, ["model", "top1_pct", "agreement_pct"]))
    print(
        f"artifact: {record.artifact} ({record.size_bytes} bytes); "
        f"result: {args.output}/result.json"
    )
    return 0
