"""Does the simulator predict a runtime's INT8 accuracy? Sim vs each runtime, same scheme and data.

    .venv/bin/python benchmarks/lab_sim_vs_runtime.py --model digits_cnn --data digits \\
        --scheme w8a8 --backends onnxruntime,openvino

Each runtime quantizes with its own quantizer (its own calibration choices), so the comparison
is the issue's bar: |sim top-1 − runtime top-1| ≤ 0.5 point.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from edgequant.backends import get_backend
from edgequant.console import format_table
from edgequant.data import calibration_samples, open_dataset
from edgequant.models.loader import load_model
from edgequant.quant.scheme import get_scheme


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="digits_cnn")
    ap.add_argument("--data", default="digits")
    ap.add_argument("--calib", help="calibration data (default: --data, train split)")
    ap.add_argument("--scheme", default="w8a8")
    ap.add_argument("--backends", default="onnxruntime,openvino")
    ap.add_argument("--limit", type=int)
    args = ap.parse_args()
    model = load_model(args.model)
    test = open_dataset(args.data, model.input_spec, split="test", limit=args.limit)
    calib_ds = open_dataset(args.calib or args.data, model.input_spec, split="train")
    calib = calibration_samples(calib_ds, min(200, len(calib_ds)))
    x, y = test.load_all(), test.labels
    scheme = get_scheme(args.scheme)
    rows = []
    ref_top1 = None
    with tempfile.TemporaryDirectory() as tmp:
        for name in ["pytorch-fp32", "sim", *args.backends.split(",")]:
            be = get_backend("sim" if name == "pytorch-fp32" else name)
            s = get_scheme("fp32") if name == "pytorch-fp32" else scheme
            reason = be.unavailable_reason() or be.supports(s, model)
            if reason:
                rows.append([name, s.name, None, None, f"n/a: {reason}"])
                continue
            art = be.prepare(model, s, calib if s.needs_calibration else None, Path(tmp) / name)
            with be.load(art, threads=2) as sess:
                out = np.concatenate([sess.run(x[i : i + 50]) for i in range(0, len(x), 50)])
            top1 = float((out.argmax(1) == y).mean() * 100) if y is not None else None
            if name == "sim":
                ref_top1 = top1
            diff = (
                None
                if top1 is None or ref_top1 is None or name in ("sim", "pytorch-fp32")
                else round(top1 - ref_top1, 2)
            )
            rows.append([name, s.name, top1, diff, art.metadata.get("executed_precision")])
    print(
        format_table(rows, ["executed by", "scheme", "top1_pct", "minus_sim_points", "precision"])
    )
    print(f"{len(x)} samples of {test.spec}")


if __name__ == "__main__":
    main()
