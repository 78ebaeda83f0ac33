"""INT8 accuracy per runtime on an emulated AVX2 CPU: the real kernels of a CPU you do not have.

Each runtime's static int8 artifact is built here as edgequant builds it on an AVX2 machine (the
per-CPU-class plan reads an AVX2 cpuinfo, so the layers whose int16 pair sums saturate get that
runtime's remedy), then run by that runtime's own AVX2 kernels: under qemu-user
(``edgequant.hw.emulate``: MLAS for ONNX Runtime, XNNPACK for LiteRT, and oneDNN) or, for the
oneDNN runtimes (PyTorch, OpenVINO), natively with ``ONEDNN_MAX_CPU_ISA=AVX2`` (``--onednn cap``,
the default: the same kernels, ~100x faster than emulation). Calibrated on one half of ``--data``
and scored on the other (``--halves``: then swapped). Per runtime: top-1 drop, agreement with
fp32, logits SQNR, the remedied layers, and the same artifact on this host's own kernels beside
it. No timing: emulated code runs ~50-150x slower than native, so speed is not measured here.

Example:
    $ python benchmarks/int8_emulated.py --data imagenet:/work/shared/data/imagenet-dev
    $ python benchmarks/int8_emulated.py --data imagenet:DIR --backends onnxruntime --limit 64
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ONEDNN = ("openvino", "pytorch")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="efficientnet_lite0", help="zoo name (pretrained weights)")
    p.add_argument("--data", help="labelled folder, split in halves (imagenet:DIR); required")
    p.add_argument("--limit", type=int, help="use only the first N images")
    p.add_argument("--backends", help="comma-separated runtimes (default: every available one)")
    p.add_argument("--scheme", default="w8a8", help="static integer scheme (default w8a8)")
    p.add_argument("--halves", action="store_true", help="also calibrate on the second half")
    p.add_argument(
        "--onednn",
        choices=("cap", "emulate"),
        default="cap",
        help="run PyTorch/OpenVINO with ONEDNN_MAX_CPU_ISA=AVX2 (default) or under qemu too",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    p.add_argument(
        "--score", nargs=4, metavar=("BACKEND", "ART", "IN", "OUT"), help=argparse.SUPPRESS
    )
    args = p.parse_args(argv)
    if not args.score and not args.data:
        p.error("--data is required (a labelled folder: imagenet:DIR)")
    return args


def score(backend: str, art: str, inputs: str, out: str) -> None:
    """Run artifact ``art`` on ``inputs`` (.npy) in batches of 8; save the outputs to ``out``."""
    from edgequant.backends import get_backend
    from edgequant.backends.artifact import Artifact

    x = np.load(inputs)
    be = get_backend(backend)
    with be.load(Artifact.load(art), 2) as s:
        np.save(out, np.concatenate([s.run(x[i : i + 8]) for i in range(0, len(x), 8)]))


def _scored(backend: str, art: Path, x: Path, tmp: Path, where: str) -> np.ndarray:
    """The artifact's outputs on ``x`` run ``where``: host, cap (oneDNN AVX2) or emulated."""
    from edgequant.hw.emulate import emulator

    out = tmp / f"{art.name}-{where}.npy"
    argv = [sys.executable, __file__, "--score", backend, str(art), str(x), str(out)]
    env = {
        k: v for k, v in os.environ.items() if k not in ("EDGEQUANT_CPUINFO", "ONEDNN_MAX_CPU_ISA")
    }
    if where == "emulated":
        emu = emulator("avx2")
        assert emu is not None
        proc = emu.run(argv, env=env)
    else:
        if where == "cap":
            env["ONEDNN_MAX_CPU_ISA"] = "AVX2"
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{backend} {where}: {proc.stderr.strip().splitlines()[-1:]}")
    return np.load(out)


def _metrics(out: np.ndarray, ref: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Top-1, its drop from fp32, and agreement / SQNR against fp32 (the conversion check's)."""
    from edgequant.models.conversion_check import compare

    close = compare(ref, out)
    return {
        "top1_pct": round(100 * float((out.argmax(1) == labels).mean()), 2),
        "drop_points": round(
            100 * float((ref.argmax(1) == labels).mean() - (out.argmax(1) == labels).mean()), 2
        ),
        "agreement_pct": close["top1_agreement_pct"],
        "logits_sqnr_db": None if np.isinf(close["sqnr_db"]) else close["sqnr_db"],
    }


def runtime_row(
    name: str,
    model: Any,
    scheme: Any,
    x: np.ndarray,
    ref: np.ndarray,
    labels: np.ndarray,
    args: argparse.Namespace,
    tmp: Path,
    cpuinfo: Path,
) -> dict[str, Any]:
    from edgequant.backends import get_backend
    from edgequant.hw.cpu import cpu_profile

    be = get_backend(name)
    why = be.unavailable_reason() or be.supports(scheme, model)
    if why:
        return {"backend": name, "status": "n/a", "reason": why}
    half = len(x) // 2
    splits = [(np.arange(half), np.arange(half, len(x)))]
    if args.halves:
        splits.append((np.arange(half, len(x)), np.arange(half)))
    where = "cap" if name in ONEDNN and args.onednn == "cap" else "emulated"
    avx2, host = np.zeros_like(ref), np.zeros_like(ref)
    scored = np.zeros(len(x), bool)
    plan: dict[str, Any] = {}
    for i, (cal, part) in enumerate(splits):
        os.environ["EDGEQUANT_CPUINFO"] = str(cpuinfo)  # build as on an AVX2 machine
        cpu_profile.cache_clear()
        try:
            art = be.prepare(model, scheme, x[cal], tmp / f"{name}-{i}")
        finally:
            del os.environ["EDGEQUANT_CPUINFO"]
            cpu_profile.cache_clear()
        plan = art.metadata.get("int8_plan") or {}
        np.save(tmp / f"x-{i}.npy", x[part])
        avx2[part] = _scored(name, tmp / f"{name}-{i}", tmp / f"x-{i}.npy", tmp, where)
        host[part] = _scored(name, tmp / f"{name}-{i}", tmp / f"x-{i}.npy", tmp, "host")
        scored[part] = True
        print(f"{name}: split {i + 1}/{len(splits)} done", file=sys.stderr, flush=True)
    return {
        "backend": name,
        "status": "ok",
        "run": {"cap": "ONEDNN_MAX_CPU_ISA=AVX2", "emulated": "qemu-user AVX2"}[where],
        "remedy": plan.get("remedy"),
        "remedied_layers": len(plan.get("remedied", [])),
        "int8_layers": len(plan.get("layers", [])),
        "avx2": _metrics(avx2[scored], ref[scored], labels[scored]),
        "host_kernels": _metrics(host[scored], ref[scored], labels[scored]),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.score:
        score(*args.score)
        return 0
    from edgequant.backends import runtime_names
    from edgequant.backends.int8_table import this_cpu
    from edgequant.data import open_dataset
    from edgequant.hw.emulate import emulation_unavailable, emulator
    from edgequant.models import load_model
    from edgequant.models.reference import reference_logits
    from edgequant.quant.scheme import get_scheme

    emu = emulator("avx2")
    if emu is None:
        print(f"int8_emulated.py: {emulation_unavailable('avx2')}", file=sys.stderr)
        return 2
    model = load_model(args.model)
    scheme = get_scheme(args.scheme)
    data = open_dataset(args.data, model.input_spec, split="test", limit=args.limit)
    x = data.load_all().astype(np.float32)
    labels = np.asarray(data.labels)
    ref = reference_logits(model, data, progress=False)
    names = runtime_names(args.backends)
    rows = []
    with tempfile.TemporaryDirectory(prefix="eq-int8emu-") as tmp:
        cpuinfo = emu.cpuinfo(Path(tmp))
        for name in names:
            try:
                rows.append(
                    runtime_row(name, model, scheme, x, ref, labels, args, Path(tmp), cpuinfo)
                )
            except RuntimeError as e:
                rows.append({"backend": name, "status": "failed", "reason": str(e)})
    scored = len(x) if args.halves else len(x) - len(x) // 2
    doc = {
        "host_cpu": this_cpu(),
        "emulated": f"avx2 (qemu-user {emu.cpu_model}; oneDNN: {args.onednn})",
        "model": args.model,
        "scheme": scheme.name,
        "scored_images": scored,
        "fp32_top1_pct": round(100 * float((ref.argmax(1) == labels).mean()), 2),
        "results": rows,
    }
    if args.json:
        print(json.dumps(doc, indent=2, default=str))
        return 0
    cpu = doc["host_cpu"]
    print(f"host: {cpu['model']} — INT8 class {cpu['int8_class']}; target: {doc['emulated']}")
    print(f"{args.model} {scheme.name}: {scored} images scored; no timing (emulated)")
    print(
        f"{'runtime':<12} {'AVX2 kernels':<24} {'drop':>6} {'agree %':>8} {'SQNR':>6}   "
        f"{'host drop':>9} {'agree %':>8} {'SQNR':>6}  remedied"
    )
    for r in rows:
        if r["status"] != "ok":
            print(f"{r['backend']:<12} {r['status']}: {r['reason']}")
            continue
        a, h = r["avx2"], r["host_kernels"]
        print(
            f"{r['backend']:<12} {r['run']:<24} {a['drop_points']:>6.2f} {a['agreement_pct']:>8.2f} "
            f"{a['logits_sqnr_db'] or 0:>6.1f}   {h['drop_points']:>9.2f} {h['agreement_pct']:>8.2f} "
            f"{h['logits_sqnr_db'] or 0:>6.1f}  {r['remedied_layers']}/{r['int8_layers']} "
            f"{r['remedy'] or ''}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
