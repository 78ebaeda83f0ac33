"""``edgequant qat``: quantization-aware training, exported as ONNX QDQ and run by a real runtime.

Example:
    $ edgequant qat --model digits_cnn --scheme w4a8 --data digits --epochs 3 -o runs/qat-w4a8 --json
"""

from __future__ import annotations

import argparse
import time
from typing import Any

DESCRIPTION = """\
Quantization-aware training (Krishnamoorthi's recipe): fake quantization with the straight-through
estimator, batch norm folded into the conv weights while training, BN statistics frozen after N
steps and activation ranges after M steps, optional distillation from the fp32 model (then
unlabeled images suffice). The result is exported as an ONNX QDQ model (learned scales and
zero-points; per-channel weights) that ONNX Runtime / OpenVINO execute in INT8, and evaluated on
the dataset's test split by that runtime. The PTQ accuracy of the same scheme is reported beside
it. Writes DIR/model.onnx, DIR/artifact.json and DIR/result.json.
"""

EPILOG = """\
Examples:
  edgequant qat --model digits_cnn --scheme w4a8 --data digits -o runs/qat-w4a8
  edgequant qat --model digits_cnn --scheme w8a8 --data digits --epochs 1 --json -o runs/qat-w8a8
  edgequant qat --model mobilenet_v2 --scheme w4a8 --data imagenet:~/imgs --distill -o runs/mv2-qat
"""


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "qat",
        help="quantization-aware training, exported to ONNX QDQ and run by a runtime",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="zoo name or model file")
    p.add_argument(
        "--weights", help="a .pth checkpoint for the model (instead of its pretrained weights)"
    )
    p.add_argument("--arch", help="architecture (zoo name) of a .pth --model")
    p.add_argument(
        "--scheme", required=True, help="scheme name or YAML (static, integer weights), e.g. w4a8"
    )
    p.add_argument(
        "--data", required=True, help="training data KIND[:PATH]; accuracy on its test split"
    )
    p.add_argument("--eval-data", help="evaluation data (default: --data, split test)")
    p.add_argument("--epochs", type=int, help="training epochs (default: the scheme's qat or 3)")
    p.add_argument("--lr", type=float, help="Adam learning rate (default 1e-3)")
    p.add_argument("--batch-size", type=int, default=32, help="training batch size (default 32)")
    p.add_argument(
        "--freeze-bn-after", type=int, help="steps before BN statistics freeze (default 200)"
    )
    p.add_argument(
        "--freeze-observers-after",
        type=int,
        help="steps before activation ranges freeze (default 300)",
    )
    p.add_argument(
        "--distill",
        action="store_true",
        help="learn from the fp32 model's outputs (no labels needed)",
    )
    p.add_argument(
        "--backend",
        default="onnxruntime",
        choices=["onnxruntime", "openvino"],
        help="runtime that runs the exported model (default onnxruntime)",
    )
    p.add_argument(
        "--int4-storage",
        action="store_true",
        help="store <=4-bit weights as ONNX int4 (opset 21; ORT then runs those convs in float)",
    )
    p.add_argument("--threads", type=int, default=2, help="runtime threads (default 2)")
    p.add_argument("--limit", type=int, help="use at most this many training samples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", required=True, help="output directory")
    p.add_argument(
        "--json", action="store_true", help="print the result record as one JSON document"
    )
    p.set_defaults(func=run)


def _accuracy(logits: Any, labels: Any, ref: Any) -> dict[str, Any]:
    from edgequant.measure.accuracy import agreement_pct, topk_accuracy

    out: dict[str, Any] = {
        "samples": len(logits),
        "top1_pct": None,
        "top5_pct": None,
        "agreement_with_fp32_pct": agreement_pct(logits, ref),
    }
    if labels is not None:
        out["top1_pct"] = topk_accuracy(logits, labels, 1)
        out["top5_pct"] = topk_accuracy(logits, labels, min(5, logits.shape[1]))
    return out


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np
    import torch

    from edgequant.backends.base import Artifact
    from edgequant.console import format_table, log, print_json
    from edgequant.data import calibration_samples, open_dataset
    from edgequant.errors import ValidationError
    from edgequant.models.loader import load_model
    from edgequant.quant.qat import run_qat
    from edgequant.quant.qat_export import check_exportable, export_qdq, int8_ops, run_onnx
    from edgequant.quant.scheme import QATConfig, get_scheme
    from edgequant.quant.simulate import quantize_module, weight_bytes
    from edgequant.results.record import ResultRecord

    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if args.epochs is not None and args.epochs < 0:
        raise ValidationError("--epochs must be >= 0")
    scheme = get_scheme(args.scheme)
    if not scheme.is_static or scheme.weights is None:
        raise ValidationError(
            f"QAT needs a static integer scheme (e.g. w8a8, w4a8); {scheme.name} is not"
        )
    base = scheme.qat or QATConfig(lr=1e-3)
    cfg = QATConfig(
        epochs=base.epochs if args.epochs is None else args.epochs,
        lr=args.lr if args.lr is not None else base.lr,
        batch_size=args.batch_size,
        freeze_bn_after_steps=args.freeze_bn_after
        if args.freeze_bn_after is not None
        else base.freeze_bn_after_steps,
        freeze_observers_after_steps=args.freeze_observers_after
        if args.freeze_observers_after is not None
        else base.freeze_observers_after_steps,
        distill=args.distill or base.distill,
    )
    model = load_model(args.model, weights=args.weights, arch=args.arch)
    if model.module is None:
        raise ValidationError("QAT needs a PyTorch model; an .onnx file cannot be trained")
    torch.set_num_threads(max(1, args.threads))
    train = open_dataset(
        args.data, model.input_spec, split="train", limit=args.limit, seed=args.seed
    )
    test = open_dataset(args.eval_data or args.data, model.input_spec, split="test")
    calib = calibration_samples(train, min(scheme.calibration.samples, len(train)), seed=args.seed)
    x_test, y_test = test.load_all(), test.labels

    def sim_logits(module: Any) -> np.ndarray:
        with torch.no_grad():
            return np.concatenate(
                [
                    module(torch.from_numpy(x_test[i : i + 128])).numpy()
                    for i in range(0, len(x_test), 128)
                ]
            )

    ref = sim_logits(model.module.eval())
    log(f"PTQ {scheme.name} (simulated) ...")
    ptq = quantize_module(model.module, scheme, calib)
    ptq_acc = _accuracy(sim_logits(ptq), y_test, ref)
    log(f"QAT {scheme.name}: {cfg.epochs} epochs on {train.spec} ({len(train)} samples) ...")
    result = run_qat(
        model.module, scheme, train, config=cfg, calibration=calib, seed=args.seed, progress=True
    )
    check_exportable(result.module)
    sim_acc = _accuracy(sim_logits(result.module), y_test, ref)
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = export_qdq(
        result.module, model.input_spec, out_dir / "model.onnx", int4_storage=args.int4_storage
    )
    rt_logits = run_onnx(onnx_path, x_test, backend=args.backend, threads=args.threads)
    rt_acc = _accuracy(rt_logits, y_test, ref)
    fp32_acc = _accuracy(ref, y_test, ref)
    qat_scheme = scheme.with_(name=f"{scheme.name}-qat", qat=cfg)
    ops = int8_ops(onnx_path) if args.backend == "onnxruntime" else {}
    art = Artifact(
        path=onnx_path,
        backend=args.backend,
        model=model.name,
        scheme=qat_scheme,
        metadata={
            "executed_precision": "int8 (QDQ)" if ops.get("QLinearConv") else "QDQ",
            "weight_bytes": weight_bytes(result.module),
            "format": "onnx-qdq",
            "producer": "edgequant qat",
            "optimized_ops": ops,
            "qat": result.config | {"steps": result.steps, "seconds": round(result.seconds, 1)},
        },
    )
    art.save_metadata()
    record = ResultRecord(
        model=model.name,
        backend=args.backend,
        scheme=qat_scheme.name,
        scenario="Accuracy",
        dataset=test.spec,
        threads=args.threads,
        batch_size=64,
        accuracy=rt_acc,
        artifact=str(onnx_path),
        size_bytes=art.size_bytes,
        weight_bytes=art.metadata["weight_bytes"],
        simulated=False,
        scheme_detail=qat_scheme.to_dict(),
        artifact_metadata=art.metadata,
        started_at=started,
        finished_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        extra={
            "fp32": fp32_acc,
            "ptq_sim": ptq_acc,
            "qat_sim": sim_acc,
            "runtime_vs_sim_top1_points": None
            if rt_acc["top1_pct"] is None
            else round(rt_acc["top1_pct"] - sim_acc["top1_pct"], 3),
        },
    )
    record.save(out_dir)
    if args.json:
        print_json(record.to_dict())
    else:
        rows = [
            ["fp32 (PyTorch)", fp32_acc["top1_pct"], 100.0],
            [f"{scheme.name} PTQ (sim)", ptq_acc["top1_pct"], ptq_acc["agreement_with_fp32_pct"]],
            [f"{scheme.name} QAT (sim)", sim_acc["top1_pct"], sim_acc["agreement_with_fp32_pct"]],
            [
                f"{scheme.name} QAT ({args.backend})",
                rt_acc["top1_pct"],
                rt_acc["agreement_with_fp32_pct"],
            ],
        ]
        print(format_table(rows, ["model", "top1_pct", "agreement_pct"]))
        print(f"artifact: {onnx_path} ({art.size_bytes} bytes); result: {out_dir / 'result.json'}")
    return 0
