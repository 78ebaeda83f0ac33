"""w4a8 in the simulator with plain rounding and with AdaRound: top-1, drop, agreement, SQNR.

EfficientNet-Lite0 (pretrained) by default. The labelled folder is split in two halves:
calibrate (and learn the rounding) on one, score the other, then swap, so every image is scored
once by a model that never saw it (the proxy of ``benchmarks/int8_accuracy.py --halves``).
``--augment K`` calibrates on, and scores, K random crops/flips of every image (finer-grained
figures when only a few hundred labelled images exist). Rows: fp32 (eager PyTorch), the
scheme with round-to-nearest weights, with ``bias_correction``, and with ``adaround`` (the
technique, at ``--iterations`` per layer; its inputs come from the scheme's simulator, with
activations quantized, each layer is reconstructed through its fused ReLU/ReLU6 and its bias
then shifted by the mean output error, unless ``--float-inputs`` / ``--no-activation`` /
``--no-bias-shift``). Accuracy only: no timing.

``--pool-rows``, ``--pool-floats`` and ``--augment-images`` override the rows AdaRound samples
per layer and the crops/flips it adds to the calibration images (default: the library's,
``adaround.settled``; ``--augment-images 0`` learns on the originals only).

``--layer-bits first=8,last=8`` keeps those layers' weights at 8 bits (the scheme's
``layer_bits``), as the AdaRound and BRECQ papers keep the stem and the classifier.
``--method gptq`` / ``--method brecq`` put GPTQ's one-pass rounding or block reconstruction
(:mod:`edgequant.quant.brecq`) in that row instead of layer-wise AdaRound.

Example:
    $ python benchmarks/adaround_w4a8.py --data imagenet:/work/shared/data/imagenet-dev
    $ python benchmarks/adaround_w4a8.py --data imagenet:DIR --augment 4 --iterations 300 --json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="efficientnet_lite0", help="zoo name (pretrained weights)")
    p.add_argument(
        "--data", required=True, help="labelled set, e.g. imagenet:DIR (split in halves)"
    )
    p.add_argument("--scheme", default="w4a8", help="integer scheme (default w4a8)")
    p.add_argument(
        "--layer-bits",
        default="",
        metavar="SEL=BITS,...",
        help="per-layer weight bits added to the scheme, e.g. first=8,last=8 (selectors first, "
        "last, depthwise or a module-name glob; see the scheme's layer_bits)",
    )
    p.add_argument("--augment", type=int, default=0, metavar="K", help="K crops/flips per image")
    p.add_argument("--iterations", type=int, default=300, help="AdaRound steps per layer")
    p.add_argument("--max-images", type=int, default=256, help="AdaRound calibration images")
    p.add_argument("--batch-rows", type=int, default=512, help="AdaRound rows per step")
    p.add_argument(
        "--pool-rows",
        type=int,
        help="AdaRound sampled rows kept per layer (default: the library's, by method)",
    )
    p.add_argument(
        "--pool-floats", type=int, help="cap on a layer's pool in floats (rows x row length)"
    )
    p.add_argument(
        "--augment-images",
        type=int,
        help="AdaRound learns on random crops/flips of the calibration images up to this many "
        "images (default: the library's, 400 for adaround; 0: the originals only)",
    )
    p.add_argument("--lr", type=float, default=3e-2, help="AdaRound Adam learning rate")
    p.add_argument("--reg", type=float, default=0.1, help="AdaRound regulariser weight λ")
    p.add_argument(
        "--float-inputs",
        action="store_true",
        help="AdaRound inputs from the float model (default: activations quantized as the scheme)",
    )
    p.add_argument(
        "--no-activation",
        action="store_true",
        help="reconstruct the layer output before its ReLU/ReLU6 (default: through it)",
    )
    p.add_argument(
        "--no-bias-shift",
        action="store_true",
        help="keep the biases (default: shift each by its channel's mean error after rounding)",
    )
    p.add_argument(
        "--method",
        choices=("adaround", "gptq", "brecq"),
        default="adaround",
        help="the adaround row's rounding: learnt per layer (AdaRound), GPTQ's error feedback, or learnt per block (BRECQ)",
    )
    p.add_argument(
        "--clip-search",
        choices=("on", "off"),
        help="narrow channels' weight ranges where the output error says so (default: on with "
        "adaround at 4 bits or fewer, off otherwise)",
    )
    p.add_argument(
        "--variants",
        default="nearest,bias_correction,adaround",
        help="comma-separated rows to compute (default: all three)",
    )
    p.add_argument(
        "--half",
        type=int,
        choices=(0, 1),
        help="compute only this half's scores and save them under --pieces (one process a half)",
    )
    p.add_argument("--pieces", type=Path, help="folder of per-half results (--half / --merge)")
    p.add_argument("--tag", default="", help="with --half: the row's name (default: variant)")
    p.add_argument("--merge", action="store_true", help="the table from the pieces in --pieces")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    return p.parse_args(argv)


def _batched(module: Any, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return np.concatenate(
            [module(torch.from_numpy(x[i : i + 32])).numpy() for i in range(0, len(x), 32)]
        )


def _sqnr(ref: np.ndarray, approx: np.ndarray) -> float:
    noise = float(((ref - approx) ** 2).sum())
    return float("inf") if noise == 0 else 10 * float(np.log10((ref**2).sum() / noise))


def _variant_logits(
    model: Any,
    scheme: Any,
    variant: str,
    calib: np.ndarray,
    x: np.ndarray,
    args: Any,
) -> tuple[np.ndarray, dict[str, Any]]:
    from edgequant.quant.adaround import AdaRoundConfig, adaround_module
    from edgequant.quant.bn_fold import fold_batchnorm
    from edgequant.quant.simulate import quantize_module
    from edgequant.quant.transforms import apply_techniques

    extra: dict[str, Any] = {}
    t0 = time.perf_counter()
    if variant == "adaround":
        folded, _ = fold_batchnorm(model.module)
        cfg = AdaRoundConfig(
            iterations=args.iterations,
            max_images=args.max_images,
            batch_rows=args.batch_rows,
            pool_rows=args.pool_rows,
            pool_floats=args.pool_floats,
            augment_images=args.augment_images,
            lr=args.lr,
            reg=args.reg,
            quant_inputs=not args.float_inputs,
            through_activation=not args.no_activation,
            correct_bias=not args.no_bias_shift,
            clip_search=None if args.clip_search is None else args.clip_search == "on",
            method=args.method,
        )
        module, stats = adaround_module(folded, scheme, calib, config=cfg)
        extra["layers"] = len(stats)
        extra["kept_nearest"] = sum(s.kept_nearest for s in stats)
        extra["mse_ratio_median"] = round(
            float(np.median([s.mse_adaround / max(s.mse_nearest, 1e-20) for s in stats])), 3
        )
    elif variant == "bias_correction":
        module = apply_techniques(
            model, scheme.with_(techniques=("bias_correction",)), calib
        ).module
    else:
        module = model.module
    extra["transform_s"] = round(time.perf_counter() - t0, 1)  # progress only, not a benchmark
    sim = quantize_module(module, scheme, calib)
    return _batched(sim, x), extra


def _table(pieces: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], float]:
    """Rows (top-1, drop, agreement, SQNR) from the two halves' pieces of each row (logits,
    fp32 logits, labels) and the fp32 top-1."""
    names = list(dict.fromkeys(p["rounding"] for p in pieces))
    rows, fp32_top1 = [], 0.0
    for name in names:
        mine = [p for p in pieces if p["rounding"] == name]
        out, ref, labels = (
            np.concatenate([p[k] for p in mine]) for k in ("logits", "ref", "labels")
        )
        if len(mine) != 2:
            raise SystemExit(f"{name}: {len(mine)} of 2 halves; compute the missing --half")
        fp32_top1 = 100 * float((ref.argmax(1) == labels).mean())
        top1 = 100 * float((out.argmax(1) == labels).mean())
        rows.append(
            {
                "rounding": name,
                "top1_pct": round(top1, 2),
                "drop_points": round(fp32_top1 - top1, 2),
                "agreement_pct": round(100 * float((out.argmax(1) == ref.argmax(1)).mean()), 2),
                "logits_sqnr_db": round(_sqnr(ref, out), 2),
                "details": [p["extra"] for p in mine],
            }
        )
    return rows, fp32_top1


def _load_pieces(folder: Path) -> list[dict[str, Any]]:
    pieces = []
    for f in sorted(folder.glob("*-h[01].npz")):
        z = np.load(f)
        pieces.append(
            {
                "rounding": f.stem[:-3],
                **{k: z[k] for k in ("logits", "ref", "labels")},
                "extra": json.loads(str(z["extra"])),
            }
        )
    return pieces


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.merge:
        pieces = _load_pieces(args.pieces)
        rows, fp32_top1 = _table(pieces)
        print(json.dumps({"fp32_top1_pct": round(fp32_top1, 2), "results": rows}, indent=2))
        return 0
    import torch

    from edgequant.data import open_dataset
    from edgequant.hw.cpu import cpu_profile
    from edgequant.models import load_model
    from edgequant.quant.scheme import get_scheme

    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    scheme = get_scheme(args.scheme)
    if args.layer_bits:
        pairs = [item.split("=", 1) for item in args.layer_bits.split(",")]
        scheme = get_scheme(
            {
                **scheme.to_dict(),
                "name": f"{scheme.name}-mixed",
                "layer_bits": {sel: int(bits) for sel, bits in pairs},
            }
        )
    data = open_dataset(args.data, model.input_spec, split="test")
    x = data.load_all().astype(np.float32)
    labels = np.asarray(data.labels)
    if args.augment > 0:
        from int8_accuracy import augment  # the proxy's own crops/flips

        x, labels = augment(x, labels, args.augment)
    half = len(x) // 2
    splits = [
        (np.arange(half), np.arange(half, len(x))),
        (np.arange(half, len(x)), np.arange(half)),
    ]
    todo = splits if args.half is None else [splits[1 - args.half]]  # --half K: score half K
    ref = _batched(model.module.eval(), x[np.concatenate([s for _, s in todo])])
    ref_all = np.zeros((len(x), ref.shape[1]), np.float32)
    ref_all[np.concatenate([s for _, s in todo])] = ref
    pieces = []
    for variant in args.variants.split(","):
        out, extras = np.zeros_like(ref_all), []
        for cal, score in todo:
            out[score], extra = _variant_logits(model, scheme, variant, x[cal], x[score], args)
            extras.append(extra)
            pieces.append(
                {
                    "rounding": args.tag or variant,
                    "score": score,
                    "logits": out[score],
                    "ref": ref_all[score],
                    "labels": labels[score],
                    "extra": extra,
                }
            )
        print(f"{args.tag or variant}: {extras}", file=sys.stderr, flush=True)
    if args.half is not None:
        args.pieces.mkdir(parents=True, exist_ok=True)
        for pc in pieces:
            np.savez(
                args.pieces / f"{pc['rounding']}-h{args.half}.npz",
                **{k: v for k, v in pc.items() if k not in ("extra", "rounding")},
                extra=json.dumps(pc["extra"]),
            )
        return 0
    rows, fp32_top1 = _table(pieces)
    cpu = cpu_profile()
    doc = {
        "model": args.model,
        "scheme": scheme.name,
        "layer_bits": dict(scheme.layer_bits),
        "cpu": cpu.model,
        "int8_class": cpu.int8_class,
        "scored_images": len(x),
        "protocol": "halves, swapped" + (f", {args.augment} crops/flips" if args.augment else ""),
        "adaround": {
            "iterations": args.iterations,
            "max_images": args.max_images,
            "batch_rows": args.batch_rows,
            "pool_rows": args.pool_rows,
            "pool_floats": args.pool_floats,
            "augment_images": args.augment_images,
            "lr": args.lr,
            "reg": args.reg,
            "quant_inputs": not args.float_inputs,
            "through_activation": not args.no_activation,
            "bias_shift": not args.no_bias_shift,
            "clip_search": args.clip_search or "default",
            "method": args.method,
        },
        "fp32_top1_pct": round(fp32_top1, 2),
        "results": rows,
    }
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"{args.model} {scheme.name} in the simulator, {len(x)} scored ({doc['protocol']})")
    print(f"CPU: {doc['cpu']} ({doc['int8_class']})")
    print(f"{'rounding':<16} {'top-1 %':>8} {'drop':>6} {'agree %':>8} {'SQNR dB':>8}")
    print(f"{'fp32':<16} {fp32_top1:>8.2f}")
    for r in rows:
        print(
            f"{r['rounding']:<16} {r['top1_pct']:>8.2f} {r['drop_points']:>6.2f} "
            f"{r['agreement_pct']:>8.2f} {r['logits_sqnr_db']:>8.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
