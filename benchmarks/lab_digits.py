"""The digits quantization table: fp32, w8a8 by calibrator, INT4 PTQ vs QAT (run by ONNX Runtime),
INT4 granularities, Winograd — all measured here, written as result records and printed.

    .venv/bin/python benchmarks/lab_digits.py -o runs/lab-digits [--qat-epochs 3]

QAT rows are the exported ONNX QDQ model run by ONNX Runtime (real INT8 kernels); the other
rows are the simulator (backend "sim"; accuracy only).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from edgequant.console import format_table
from edgequant.data import calibration_samples, open_dataset
from edgequant.models.loader import load_model
from edgequant.quant.qat import run_qat
from edgequant.quant.scheme import QATConfig, get_scheme
from edgequant.studies import lab
from edgequant.studies.qat_export import export_qdq, int8_ops, run_onnx


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-o", "--output", default="runs/lab-digits")
    ap.add_argument("--qat-epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    runs = Path(args.output)
    model = load_model("digits_cnn")
    train = open_dataset("digits", model.input_spec, split="train")
    test = open_dataset("digits", model.input_spec, split="test")
    calib = calibration_samples(train, 200)
    ev = lab.Evaluation.from_arrays(model, test.spec, test.load_all(), test.labels)
    recs = [lab.fp32_record(ev, runs)]
    recs += lab.ptq_study(
        ev,
        calib,
        ["w8a8"],
        ["minmax", "percentile:99.99", "mse", "entropy"],
        [[], ["cle", "bias_correction"]],
        runs,
    )
    recs += lab.ptq_study(ev, calib, ["w4a8"], ["mse"], [[], ["cle", "bias_correction"]], runs)
    recs += lab.ptq_study(
        ev, calib, ["w4-pt", "w4-only", "w4-b8"], ["minmax"], [[], ["bias_correction"]], runs
    )
    recs += lab.winograd_study(ev, calib, runs)
    rows = [
        [r.scheme, "sim", r.accuracy["top1_pct"], r.accuracy["agreement_with_fp32_pct"]]
        for r in recs
        if r.accuracy
    ]
    for sname in ("w8a8", "w4a8"):
        t0 = time.perf_counter()
        res = run_qat(
            model.module,
            get_scheme(sname),
            train,
            config=QATConfig(epochs=args.qat_epochs, lr=1e-3),
            calibration=calib,
        )
        out = runs / f"digits_cnn-onnxruntime-{sname}-qat" / "artifact"
        path = export_qdq(res.module, model.input_spec, out / "model.onnx")
        sim = lab.logits(res.module, ev.x)
        ort = run_onnx(path, ev.x, threads=args.threads)
        rec = lab.record(
            ev,
            f"{sname}-qat",
            get_scheme(sname),
            ort,
            runs,
            module=res.module,
            extra={
                "qat_sim_top1_pct": ev.accuracy(sim)["top1_pct"],
                "ort_ops": int8_ops(path),
                "qat_seconds": round(time.perf_counter() - t0, 1),
                "artifact": str(path),
            },
            backend="onnxruntime",
        )
        rows.append(
            [
                f"{sname}-qat (sim)",
                "sim",
                ev.accuracy(sim)["top1_pct"],
                ev.accuracy(sim)["agreement_with_fp32_pct"],
            ]
        )
        rows.append(
            [
                f"{sname}-qat (ORT QDQ)",
                "onnxruntime",
                rec.accuracy["top1_pct"],
                rec.accuracy["agreement_with_fp32_pct"],
            ]
        )  # type: ignore[index]
    print(format_table(rows, ["configuration", "executed by", "top1_pct", "agreement_pct"]))
    wino = next(r for r in recs if "winograd" in r.extra)
    print("winograd:", wino.extra["winograd"])
    print(f"test samples: {len(ev.x)}; records in {runs}")


if __name__ == "__main__":
    main()
