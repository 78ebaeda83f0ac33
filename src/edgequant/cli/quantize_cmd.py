"""``edgequant quantize``: build (or fetch from the cache) one artifact and copy it to a directory.

Example:
    $ edgequant quantize --model resnet50 --backend onnxruntime --scheme w8a8 --calib synthetic -o build/r50
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edgequant.cli.args import (
    JSON_DOC,
    Spec,
    add_model_arguments,
    command,
    flag,
    from_args,
    input_options,
    opt,
)

DESCRIPTION = """\
Quantize a model for one runtime with that runtime's own quantizer, and write the artifact
(model file + artifact.json with the scheme, quantizer options, choices made and their reasons,
calibration samples, executed precision, sizes) to -o DIR. Artifacts are cached
($EDGEQUANT_CACHE, default ~/.cache/edgequant) by model, weights, scheme, calibration set and
runtime version; a corrupt cached artifact is rebuilt.
"""

EPILOG = """\
Schemes: fp32 fp16 bf16 w8-only w8-dyn w8a8 w8a8-pt w8a8-sym w8a8-ada w4a8 w4-only, or a YAML
file. Static schemes (w8a8*, w4a8) need --calib: imagenet:DIR, digits, synthetic (speed only),
npy:FILE. w8a8 rounds its weights by GPTQ on the runtime's grid with real calibration data and a
PyTorch model (seconds to minutes, once; reused by every runtime sharing the grid); an .onnx file
or synthetic calibration gets nearest rounding (artifact.json: techniques_skipped).

Examples:
  edgequant quantize --model mobilenet_v2 --backend onnxruntime --scheme w8a8 \\
      --calib imagenet:/data/calib --calib-size 300 -o build/mv2-ort-w8a8
  edgequant quantize --model my.pth --arch resnet18 --backend openvino --scheme fp16 -o build/r18
  edgequant quantize --model model.onnx --backend onnxruntime --scheme w8-only -o build/m --json
  edgequant inspect build/mv2-ort-w8a8
"""


HELP = "build a quantized artifact for one runtime"

OPTIONS: dict[str, Spec] = {
    "--model": opt(
        "zoo name, a .onnx / .pt2 / .tflite / IR .xml file, a .pth (with --arch), or "
        "package.module:factory",
        required=True,
    ),
    "--backend": opt("runtime (see `edgequant backends`)", required=True),
    "--scheme": opt("scheme name or YAML file", required=True),
    "--calib": opt("calibration data for static schemes", metavar="DATASET"),
    "--calib-size": opt("calibration samples (default: the scheme's, 200)", metavar="N"),
    "--weights": opt("a .pth checkpoint for a zoo architecture", metavar="FILE"),
    "--arch": "zoo architecture of a .pth --model / --weights file",
    "--random-weights": flag("do not load pretrained weights"),
    "--output": opt("where to write the artifact", required=True, metavar="DIR"),
    "--force": "rebuild even when a cached artifact exists",
    "--cache-dir": opt(
        "artifact cache (default $EDGEQUANT_CACHE or ~/.cache/edgequant)", metavar="DIR"
    ),
    "--no-check": flag(
        "skip the numerical check of the conversion (fp32 artifact vs the source model)"
    ),
    "--json": JSON_DOC,
}


def add_parser(subparsers: Any) -> None:
    add_model_arguments(command(subparsers, __name__))


def run(args: argparse.Namespace) -> int:
    from edgequant.build.quantize import quantize_model
    from edgequant.console import log, print_json

    result = quantize_model(
        args.model,
        **from_args(args, "backend", "scheme", "cache_dir", "force", "weights", "arch"),
        calibration=args.calib,
        calibration_samples=args.calib_size,
        output=Path(args.output),
        pretrained=not args.random_weights,
        input_options=input_options(args),
        card=args.model_card,
        check=not args.no_check,
    )
    for note in result.notes:
        log(f"note: {note}")
    doc = result.to_dict()
    if args.json:
        print_json(doc)
        return 0
    meta = result.artifact.metadata
    w, reduction = doc["weight_bytes"], doc["weight_reduction_vs_fp32"]
    print(f"artifact: {doc['artifact']}")
    print(
        f"size: {doc['size_bytes'] / 1e6:.2f} MB on disk"
        + (f"; weights {w / 1e6:.2f} MB" if w else "")
        + (f", {reduction}x smaller than fp32" if reduction else "")
    )
    print(f"executed precision: {meta.get('executed_precision', 'unknown')}")
    if meta.get("inspect_summary"):
        print(f"inspect: {meta['inspect_summary']}")
    for c in meta.get("choices", []):
        print(f"choice: {c.get('what')} = {c.get('choice')} ({c.get('reason')})")
    if meta.get("warning"):
        print(f"warning: {meta['warning']}")
    src = meta.get("model_source") or {}
    check = src.get("check") or {}
    if "cosine_min" in check:
        top1 = check.get("top1_agreement_pct")
        print(
            f"conversion: {src.get('conversion')}; vs {check.get('reference')}: cosine "
            f"{check['cosine_min']}, max error {check['max_abs_error']:.3g}"
            + (f", top-1 agreement {top1}%" if top1 is not None else "")
            + f" ({check.get('data')})"
        )
    return 0
