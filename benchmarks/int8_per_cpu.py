"""INT8 per runtime on this CPU class, side by side: accuracy drop, agreement with fp32, speed-up.

For each available (non-simulated) runtime: build the integer scheme (default ``w8a8``) with the
runtime's own quantizer and edgequant's per-CPU-class plan (the layers that saturate int16 pair
sums on this CPU's int8 path get that runtime's remedy, see ``edgequant.backends.int8_cpu``),
score it on held-out images (``--data`` folder split in halves: calibrate on one, score the other,
swap), then measure INT8/FP32 throughput in paired rounds (FP32, INT8, FP32, INT8, ...; median
ratio and its 95% interval from ``edgequant.measure.paired``). The header names the CPU, its INT8
class, the class each runtime's kernels really use and any ``ONEDNN_MAX_CPU_ISA`` cap.

Example:
    $ python benchmarks/int8_per_cpu.py --data imagenet:/work/shared/data/imagenet-dev
    $ ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/int8_per_cpu.py --backends openvino \\
          --data imagenet:/work/shared/data/imagenet-dev --limit 64 --rounds 3 --seconds 2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="efficientnet_lite0", help="zoo name (pretrained weights)")
    p.add_argument("--data", required=True, help="labelled folder, split in halves (imagenet:DIR)")
    p.add_argument("--limit", type=int, help="use only the first N images")
    p.add_argument("--backends", help="comma-separated runtimes (default: every available one)")
    p.add_argument("--scheme", default="w8a8", help="static integer scheme (default w8a8)")
    p.add_argument("--calib-size", type=int, help="calibration samples (default: the scheme's)")
    p.add_argument("--rounds", type=int, default=4, help="paired FP32/INT8 speed rounds")
    p.add_argument("--seconds", type=float, default=5.0, help="seconds per speed measurement")
    p.add_argument("--batch", type=int, default=8, help="batch size of the speed runs")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    return p.parse_args(argv)


def _run(sess: Any, x: np.ndarray, batch: int = 8) -> np.ndarray:
    return np.concatenate([sess.run(x[i : i + batch]) for i in range(0, len(x), batch)])


def _throughput(sess: Any, batch: np.ndarray, seconds: float) -> float:
    """Images per second running ``batch`` repeatedly for about ``seconds`` (one warm-up run)."""
    sess.run(batch)
    n, t0 = 0, time.perf_counter()
    while True:
        sess.run(batch)
        n += len(batch)
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return n / elapsed


def runtime_row(
    name: str,
    model: Any,
    scheme: Any,
    x: np.ndarray,
    ref: np.ndarray,
    labels: np.ndarray,
    args: argparse.Namespace,
    tmp: Path,
) -> dict[str, Any]:
    """Accuracy over the two halves, the plan of the last build, and the paired speed ratio."""
    from edgequant.backends import get_backend
    from edgequant.measure.paired import PairedRatio
    from edgequant.quant.scheme import get_scheme

    be = get_backend(name)
    why = be.unavailable_reason() or be.supports(scheme, model)
    if why:
        return {"backend": name, "status": "n/a", "reason": why}
    n_cal = args.calib_size or scheme.calibration.samples
    half = len(x) // 2
    splits = [
        (np.arange(half), np.arange(half, len(x))),
        (np.arange(half, len(x)), np.arange(half)),
    ]
    out = np.zeros_like(ref)
    art = None
    for i, (cal, score) in enumerate(splits):
        art = be.prepare(model, scheme, x[cal][:n_cal], tmp / f"{name}-int8-{i}")
        be.specialize(art, [args.batch])
        with be.load(art, args.threads) as sess:
            out[score] = _run(sess, x[score])
    assert art is not None
    fp32 = be.prepare(model, get_scheme("fp32"), None, tmp / f"{name}-fp32")
    be.specialize(fp32, [args.batch])
    batch = np.ascontiguousarray(x[: args.batch])
    pairs = []
    with be.load(fp32, args.threads) as s_fp, be.load(art, args.threads) as s_q:
        for _ in range(args.rounds):
            f = _throughput(s_fp, batch, args.seconds)
            q = _throughput(s_q, batch, args.seconds)
            pairs.append((q, f))
    ratio = PairedRatio.from_rounds(pairs)
    plan = art.metadata.get("int8_plan") or {}
    from edgequant.backends.int8_cpu import runtime_int8_class
    from edgequant.measure.accuracy import against_fp32

    return {
        "backend": name,
        "status": "ok",
        "int8_class": plan.get("int8_class") or runtime_int8_class(name),
        "arithmetic": plan.get("arithmetic"),
        "remedied_layers": plan.get("remedied", []),
        "int8_reason": plan.get("reason"),
        **against_fp32(ref, out, labels),
        "int8_fp32_ratio": ratio.to_dict(),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from edgequant.backends import runtime_names
    from edgequant.backends.int8_table import this_cpu
    from edgequant.data import open_dataset
    from edgequant.measure.accuracy import (
        AGAINST_FP32_HEADER,
        AGAINST_FP32_LEGEND,
        against_fp32_columns,
    )
    from edgequant.models import load_model
    from edgequant.quant.scheme import get_scheme

    model = load_model(args.model)
    scheme = get_scheme(args.scheme)
    data = open_dataset(args.data, model.input_spec, split="test", limit=args.limit)
    x = data.load_all().astype(np.float32)
    labels = np.asarray(data.labels)
    assert model.module is not None
    with torch.no_grad():
        ref = np.concatenate(
            [
                model.module.eval()(torch.from_numpy(x[i : i + 32])).numpy()
                for i in range(0, len(x), 32)
            ]
        )
    names = runtime_names(args.backends)
    rows = []
    with tempfile.TemporaryDirectory(prefix="eq-int8cpu-") as tmp:
        for name in names:
            rows.append(runtime_row(name, model, scheme, x, ref, labels, args, Path(tmp)))
            print(f"{name}: done", file=sys.stderr, flush=True)
    doc = {
        "cpu": this_cpu(),
        "model": args.model,
        "scheme": scheme.name,
        "scored_images": len(x),
        "protocol": "halves of --data, swapped",
        "fp32_top1_pct": round(100 * float((ref.argmax(1) == labels).mean()), 2),
        "speed": {
            "rounds": args.rounds,
            "seconds": args.seconds,
            "batch": args.batch,
            "threads": args.threads,
        },
        "results": rows,
    }
    if args.json:
        print(json.dumps(doc, indent=2, default=str))
        return 0
    cpu = doc["cpu"]
    cap = cpu["onednn_max_cpu_isa"] or "none"
    print(f"CPU: {cpu['model']} — INT8 class {cpu['int8_class']}, ONEDNN_MAX_CPU_ISA cap: {cap}")
    print(
        f"{args.model} {scheme.name}: {len(x)} images (halves, swapped); "
        f"fp32 top-1 {doc['fp32_top1_pct']:.2f}%"
    )
    print(f"{'runtime':<12} {'class':<12} {AGAINST_FP32_HEADER} {'INT8/FP32':>18} remedied")
    for r in rows:
        if r["status"] != "ok":
            print(f"{r['backend']:<12} n/a: {r['reason']}")
            continue
        q = r["int8_fp32_ratio"]
        ci = f" [{q['ci95'][0]:.2f}, {q['ci95'][1]:.2f}]" if q.get("ci95") else ""
        print(
            f"{r['backend']:<12} {r['int8_class'] or '-':<12} {against_fp32_columns(r)} "
            f"{q['median']:>6.2f}x{ci:<12} {len(r['remedied_layers'])}"
        )
    print(AGAINST_FP32_LEGEND)
    return 0


if __name__ == "__main__":
    sys.exit(main())
