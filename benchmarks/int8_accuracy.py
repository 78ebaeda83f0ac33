"""INT8 vs FP32 accuracy per runtime, side by side: top-1 drop, agreement and logits SQNR.

For each available (non-simulated) backend, builds the integer scheme (default ``w8a8``) with
that runtime's own quantizer and edgequant's defaults, calibrated on one labelled set, and scores
it on another: top-1 of fp32 (eager PyTorch) and of the artifact, the drop, the share of images
whose top-1 class agrees with fp32, and the logits' signal-to-quantization-noise ratio against
fp32 (a continuous measure: on a few images, agreement moves by whole images, SQNR does not).
This is the issue's held-out check: ``--calib`` and ``--data`` should be disjoint (e.g. 200 and
800 ImageNet validation images). With ``--halves``, one folder is split in two: calibrate on one
half, score the other, then swap, so every image is scored once by a model that never saw it.

Example:
    $ python benchmarks/int8_accuracy.py --model efficientnet_lite0 \\
          --calib imagenet:/data/val-200 --data imagenet:/data/val-800
    $ python benchmarks/int8_accuracy.py --data imagenet:shared/data/imagenet-dev --halves
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="efficientnet_lite0", help="zoo name (pretrained weights)")
    p.add_argument("--data", required=True, help="labelled set to score, e.g. imagenet:DIR")
    p.add_argument("--calib", help="calibration set (disjoint from --data), e.g. imagenet:DIR")
    p.add_argument(
        "--halves",
        action="store_true",
        help="no --calib: calibrate on one half of --data, score the other, then swap",
    )
    p.add_argument(
        "--augment",
        type=int,
        default=0,
        metavar="K",
        help="score (and calibrate on) K random crops/flips of every image instead of the image: "
        "a finer-grained proxy when only a few labelled images exist (default 0: off)",
    )
    p.add_argument(
        "--crop-scale",
        type=float,
        default=0.6,
        metavar="S",
        help="with --augment: smallest crop side as a share of the image (default 0.6; 0.85 "
        "stays closer to a validation centre crop)",
    )
    p.add_argument("--backends", help="comma-separated backends (default: every available one)")
    p.add_argument("--scheme", default="w8a8", help="integer scheme (default w8a8)")
    p.add_argument("--calib-size", type=int, help="calibration samples (default: the scheme's)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    args = p.parse_args(argv)
    if not args.calib and not args.halves:
        p.error("give --calib DATASET (disjoint from --data), or --halves")
    return args


def augment(
    x: np.ndarray, labels: np.ndarray, k: int, seed: int = 0, min_scale: float = 0.6
) -> tuple[np.ndarray, np.ndarray]:
    """``k`` variants of every image (:func:`edgequant.data.augment.crops_and_flips`: a random
    crop of ``min_scale``-100% of the side, resized back, and a coin-flip horizontal flip; image
    ``i``'s variants are rows ``i*k .. i*k+k-1``) and their labels.

    Small crops (0.6) are harder than a validation centre crop: more images sit near a tie
    between two classes, so agreement with fp32 reads lower than on held-out centre crops."""
    from edgequant.data.augment import crops_and_flips

    return crops_and_flips(x, k, seed, min_scale), np.repeat(labels, k)


def _logits(
    backend: Any, model: Any, scheme: Any, calib: np.ndarray, x: np.ndarray, threads: int
) -> np.ndarray:
    with tempfile.TemporaryDirectory(prefix="eq-acc-") as tmp:
        art = backend.prepare(model, scheme, calib, Path(tmp))
        backend.specialize(art, [8])
        with backend.load(art, threads) as sess:
            return np.concatenate([sess.run(x[i : i + 8]) for i in range(0, len(x), 8)])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from edgequant.backends.base import get_backend, runtime_names
    from edgequant.data import calibration_samples, open_dataset
    from edgequant.measure.accuracy import (
        AGAINST_FP32_HEADER,
        AGAINST_FP32_LEGEND,
        against_fp32,
        against_fp32_columns,
    )
    from edgequant.models import load_model
    from edgequant.quant.scheme import get_scheme

    model = load_model(args.model)
    scheme = get_scheme(args.scheme)
    n_cal = args.calib_size or scheme.calibration.samples
    data = open_dataset(args.data, model.input_spec, split="test")
    x = data.load_all().astype(np.float32)
    labels = np.asarray(data.labels)
    if args.augment > 0:
        if not args.halves:
            raise SystemExit("--augment needs --halves (the crops of one image must not be split)")
        x, labels = augment(x, labels, args.augment, min_scale=args.crop_scale)
    if args.halves:
        half = len(x) // 2
        splits = [
            (np.arange(half), np.arange(half, len(x))),
            (np.arange(half, len(x)), np.arange(half)),
        ]
        calib_sets = [x[c][:n_cal] for c, _ in splits]
    else:
        cal = calibration_samples(open_dataset(args.calib, model.input_spec, split="train"), n_cal)
        splits, calib_sets = [(np.arange(0), np.arange(len(x)))], [cal]
    assert model.module is not None
    with torch.no_grad():
        ref = np.concatenate(
            [
                model.module.eval()(torch.from_numpy(x[i : i + 32])).numpy()
                for i in range(0, len(x), 32)
            ]
        )
    fp32_top1 = 100 * float((ref.argmax(1) == labels).mean())
    names = runtime_names(args.backends)
    rows = []
    for name in names:
        be = get_backend(name)
        why = be.unavailable_reason() or be.supports(scheme, model)
        if why:
            rows.append({"backend": name, "status": "n/a", "reason": why})
            continue
        out = np.zeros_like(ref)
        for (_, score), cal in zip(splits, calib_sets, strict=True):
            out[score] = _logits(be, model, scheme, cal, x[score], args.threads)
        rows.append({"backend": name, "status": "ok", **against_fp32(ref, out, labels)})
        print(f"{name}: done", file=sys.stderr, flush=True)
    doc = {
        "model": args.model,
        "scheme": scheme.name,
        "scored_images": len(x),
        "calibration_samples": len(calib_sets[0]),
        "protocol": "halves, swapped" if args.halves else f"calibrated on {args.calib}",
        "results": rows,
    }
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(
        f"{args.model} {scheme.name}: {len(x)} scored images, {doc['calibration_samples']} "
        f"calibration samples ({doc['protocol']})"
    )
    print(f"{'runtime':<12} {'top-1 %':>8} {AGAINST_FP32_HEADER}")
    for r in rows:
        if r["status"] != "ok":
            print(f"{r['backend']:<12} n/a: {r['reason']}")
            continue
        print(f"{r['backend']:<12} {r['top1_pct']:>8.2f} {against_fp32_columns(r)}")
    print(f"fp32 (eager PyTorch) top-1: {fp32_top1:.2f}%")
    print(AGAINST_FP32_LEGEND)
    return 0


if __name__ == "__main__":
    sys.exit(main())
