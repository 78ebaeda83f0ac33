"""``edgequant quantize``: build (or fetch from the cache) one artifact and copy it to a directory.

Example:
    $ edgequant quantize --model resnet50 --backend onnxruntime --scheme w8a8 --calib synthetic -o build/r50
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DESCRIPTION = """\
Quantize a model for one runtime with that runtime's own quantizer, and write the artifact
(model file + artifact.json with the scheme, quantizer options, choices made and their reasons,
calibration samples, executed precision, sizes) to -o DIR. Artifacts are cached
($EDGEQUANT_CACHE, default ~/.cache/edgequant) by model, weights, scheme, calibration set and
runtime version; a corrupt cached artifact is rebuilt.
"""

EPILOG = """\
Schemes: fp32 fp16 bf16 w8-only w8-dyn w8a8 w8a8-pt w8a8-sym w4a8 w4-only, or a YAML file.
Static schemes (w8a8*, w4a8) need --calib: imagenet:DIR, digits, synthetic (speed only), npy:FILE.

Examples:
  edgequant quantize --model mobilenet_v2 --backend onnxruntime --scheme w8a8 \\
      --calib imagenet:/data/calib --calib-size 300 -o build/mv2-ort-w8a8
  edgequant quantize --model my.pth --arch resnet18 --backend openvino --scheme fp16 -o build/r18
  edgequant quantize --model model.onnx --backend onnxruntime --scheme w8-only -o build/m --json
  edgequant inspect build/mv2-ort-w8a8
"""


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "quantize",
        help="build a quantized artifact for one runtime",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="zoo name, or a .onnx / .pth file (with --arch)")
    p.add_argument("--backend", required=True, help="runtime (see `edgequant backends`)")
    p.add_argument("--scheme", required=True, help="scheme name or YAML file")
    p.add_argument("--calib", metavar="DATASET", help="calibration data for static schemes")
    p.add_argument(
        "--calib-size",
        type=int,
        metavar="N",
        help="calibration samples (default: the scheme's, 200)",
    )
    p.add_argument("--weights", metavar="FILE", help="a .pth checkpoint for a zoo architecture")
    p.add_argument("--arch", help="zoo architecture of a .pth --model / --weights file")
    p.add_argument("--random-weights", action="store_true", help="do not load pretrained weights")
    p.add_argument(
        "-o", "--output", required=True, metavar="DIR", help="where to write the artifact"
    )
    p.add_argument(
        "--force", action="store_true", help="rebuild even when a cached artifact exists"
    )
    p.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="artifact cache (default $EDGEQUANT_CACHE or ~/.cache/edgequant)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    p.set_defaults(func=run)


def copy_artifact(src_dir: Path, out: Path) -> Path:
    """Copy (hard-link where possible) an artifact directory to ``out``; return ``out``.

    ``out`` may be absent, empty, or a previous artifact (replaced); anything else is refused.

    Example:
        >>> copy_artifact(art.directory, Path("build/r50"))   # doctest: +SKIP
        PosixPath('build/r50')
    """
    import os
    import shutil

    from edgequant.backends.base import METADATA_NAME
    from edgequant.errors import ValidationError

    if out.exists():
        if not out.is_dir():
            raise ValidationError(f"-o {out} is a file; give a directory")
        if any(out.iterdir()):
            if not (out / METADATA_NAME).is_file():
                raise ValidationError(
                    f"-o {out} is a non-empty directory that holds no artifact; choose another"
                )
            shutil.rmtree(out)

    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)  # same file system: no copy of a 100 MB model
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(src_dir, out, copy_function=link_or_copy, dirs_exist_ok=True)
    return out


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from edgequant.backends import Artifact, get_backend
    from edgequant.build.cache import get_or_build
    from edgequant.console import log, print_json
    from edgequant.data import open_dataset
    from edgequant.errors import ValidationError
    from edgequant.models import load_model
    from edgequant.quant.scheme import get_scheme

    backend = get_backend(args.backend)
    scheme = get_scheme(args.scheme)
    if args.calib_size is not None:
        if args.calib_size < 1:
            raise ValidationError(f"--calib-size must be >= 1, got {args.calib_size}")
        scheme = scheme.with_(calibration=replace(scheme.calibration, samples=args.calib_size))
    backend.require()
    model = load_model(
        args.model, weights=args.weights, arch=args.arch, pretrained=not args.random_weights
    )
    backend.check_supported(scheme, model)
    calib = None
    if scheme.needs_calibration:
        if not args.calib:
            raise ValidationError(
                f"scheme {scheme.name} needs calibration data: pass --calib DATASET"
            )
        # calibrate on the training split where the dataset has one: test images stay unseen
        calib = open_dataset(args.calib, model.input_spec, split="train")
        if calib.kind == "synthetic":
            log("note: calibrating on synthetic data: fine for speed, meaningless for accuracy")
    elif args.calib:
        log(f"note: {scheme.name} needs no calibration; --calib ignored")
    art = get_or_build(backend, model, scheme, calib, cache_dir=args.cache_dir, force=args.force)
    backend.specialize(art)  # a deployable artifact: the runtime's default batch sizes compiled
    out = copy_artifact(art.directory, Path(args.output))
    final = Artifact.load(out)
    meta = final.metadata
    fp32_w, w = meta.get("fp32_weight_bytes"), meta.get("weight_bytes")
    reduction = round(fp32_w / w, 2) if fp32_w and w else None
    doc = {
        "artifact": str(final.path),
        "directory": str(out),
        "cached_at": str(art.directory),
        "backend": final.backend,
        "model": model.name,
        "scheme": scheme.name,
        "size_bytes": final.size_bytes,
        "weight_bytes": w,
        "fp32_weight_bytes": fp32_w,
        "weight_reduction_vs_fp32": reduction,
        "executed_precision": meta.get("executed_precision"),
        "calibration_samples": meta.get("calibration_samples"),
        "inspect_summary": meta.get("inspect_summary"),
        "choices": meta.get("choices", []),
    }
    if args.json:
        print_json(doc)
        return 0
    print(f"artifact: {final.path}")
    print(
        f"size: {final.size_bytes / 1e6:.2f} MB on disk"
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
    return 0
