"""``edgequant lab``: accuracy studies in the fake-quant simulator, written as result records.

Example:
    $ edgequant lab ptq --model digits_cnn --data digits --schemes w8a8,w4a8 \\
        --calibrators minmax,percentile:99.99,mse,entropy --techniques none,cle,cle+bias_correction -o runs/
    $ edgequant lab winograd --model digits_cnn --data digits -o runs/
    $ edgequant lab sensitivity --model digits_cnn --data digits --scheme w4a8 --keep-float 0,1,2 -o runs/
"""

from __future__ import annotations

import argparse
from typing import Any

from edgequant.cli.args import (
    JSON_DOC,
    MODEL_FILE_OPTIONS,
    Spec,
    comma_list,
    command,
    from_args,
    opt,
)

DESCRIPTION = """\
Quantization studies in edgequant's fake-quant simulator backend (any bit width,
granularity, calibrator and technique; accuracy only — its speed is not representative).
Every configuration becomes a result record in RUNS_DIR/<run>/result.json, so
`edgequant report RUNS_DIR` shows the studies beside the runtime benchmarks.

Studies:
  ptq          schemes x calibrators (minmax, percentile:P, mse, entropy) x techniques
               (bn_fold, cle, bias_correction; combine with +, "none" for plain)
  winograd     direct INT8 conv vs INT8 Winograd F(2x2,3x3) (INT4 weights, INT6 inputs)
  sensitivity  per-layer SQNR / accuracy when one layer is quantized; K most sensitive in float
               (and, below 8 weight bits, at 8 bits: the scheme's layer_bits)

Schemes: built-in names (w8a8, w4a8, w4-only, ...), YAML files, or the lab shorthand
wN[aM][-pt|-bK], e.g. w4-b32 (4-bit weights in blocks of 32), w3a8, w6a8-pt.
"""

EPILOG = """\
Examples:
  edgequant lab ptq --model digits_cnn --data digits --schemes w8a8,w4a8,w4-only,w4-b8 -o runs/lab
  edgequant lab ptq --model mobilenet_v2 --data imagenet:~/val --calib imagenet:~/calib \\
      --schemes w8a8 --calibrators mse --techniques none,cle+bias_correction -o runs/lab
  edgequant lab winograd --model digits_cnn --data digits -o runs/lab
  edgequant lab sensitivity --model digits_cnn --data digits --scheme w4a8 --keep-float 0,1,2 -o runs/lab
"""


HELP = "quantization studies in the simulator (PTQ, Winograd, sensitivity)"

#: the options every study takes
OPTIONS: dict[str, Spec] = {
    **MODEL_FILE_OPTIONS,
    "--data": opt("evaluation data KIND[:PATH] (test split)", required=True),
    "--calib": "calibration data (default: --data, train split)",
    "--calib-samples": opt("calibration samples (default 200)", default=200),
    "--limit": "evaluate on at most this many samples",
    "--threads": opt(default=2),
    "--output": opt("runs directory (one sub-folder per configuration)", required=True),
    "--json": JSON_DOC,
}

#: study -> its line in ``edgequant lab --help`` and its own options
STUDIES: dict[str, tuple[str, dict[str, Spec]]] = {
    "ptq": (
        "schemes x calibrators x techniques",
        {
            "--schemes": opt("comma-separated schemes (default w8a8)", default="w8a8"),
            "--calibrators": opt(
                "comma-separated activation calibrators",
                default="minmax,percentile:99.99,mse,entropy",
            ),
            "--techniques": opt(
                "comma-separated technique sets, + within a set, e.g. none,cle,cle+bias_correction",
                default="none",
            ),
        },
    ),
    "winograd": (
        "direct INT8 vs INT8 Winograd F(2x2,3x3)",
        {"--scheme": opt("the direct-convolution scheme (default w8a8)", default="w8a8")},
    ),
    "sensitivity": (
        "per-layer sensitivity and mixed precision",
        {
            "--scheme": opt("scheme to probe (default w4a8)", default="w4a8"),
            "--keep-float": opt(
                "K values: keep the K most sensitive layers in float (and, for a scheme "
                "below 8 weight bits, at 8 bits)",
                default="0,1,2,3",
            ),
        },
    ),
}


def add_parser(subparsers: Any) -> None:
    p = command(subparsers, __name__, OPTIONS=None, run=None)
    sub = p.add_subparsers(dest="study", metavar="STUDY", required=True)
    for name, (help_text, options) in STUDIES.items():
        command(sub, __name__, name, HELP=help_text, EPILOG=None, OPTIONS=OPTIONS | options)


def _ints(text: str) -> list[int]:
    from edgequant.errors import ValidationError

    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValidationError(f"expected comma-separated integers, got {text!r}") from None
    if any(v < 0 for v in vals):
        raise ValidationError(f"values must be >= 0, got {text!r}")
    return vals


def run(args: argparse.Namespace) -> int:
    from edgequant.console import print_json
    from edgequant.studies.pipeline import lab

    study = {}
    if args.study == "ptq":
        study = {
            "schemes": comma_list(args.schemes),
            "calibrators": comma_list(args.calibrators),
            "techniques": args.techniques.split(","),
        }
    elif args.study == "winograd":
        study = {"scheme": args.scheme}
    else:
        study = {"scheme": args.scheme, "keep_float": _ints(args.keep_float)}
    out = lab(
        args.study,
        args.model,
        **from_args(args, "data", "output", "calib", "calib_samples", "limit", "threads"),
        **from_args(args, "weights", "arch"),
        **study,
    )
    if args.json:
        print_json(out.to_dict())
        return 0
    _print(out)
    return 0


def _print(out: Any) -> None:
    from edgequant.console import format_table

    if out.layers is not None:
        cols = ["name", "kind", "params", "sqnr_db", "agreement_pct", "top1_pct"]
        rows = [[r[c] if c != "sqnr_db" else round(r[c], 2) for c in cols] for r in out.layers]
        print(format_table(rows, ["layer", *cols[1:]]))
        print()
    rows = [
        [
            r.scheme,
            (r.accuracy or {}).get("top1_pct"),
            (r.accuracy or {}).get("agreement_with_fp32_pct"),
            r.weight_bytes,
        ]
        for r in out.records
    ]
    print(
        format_table(
            rows, ["configuration (simulated)", "top1_pct", "agreement_pct", "weight_bytes"]
        )
    )
    for r in out.records:
        if "winograd" in r.extra:
            w = r.extra["winograd"]
            print(
                f"winograd: {w['layers']} 3x3 stride-1 convs, {w['direct_mults']} -> "
                f"{w['winograd_mults']} multiplies per image ({w['reduction']}x fewer)"
            )
    print(
        f"{len(out.records)} result records in {out.runs_dir} (simulated; "
        f"`edgequant report {out.runs_dir}`)"
    )
