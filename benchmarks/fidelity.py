"""Fidelity of ``edgequant bench`` against OpenVINO's own ``benchmark_app``, on the same artifacts.

For ResNet-50 and MobileNetV2 (random weights are fine: speed does not depend on them), fp32
and w8a8, built once by the OpenVINO backend, this runs alternately, each in a fresh process:

- ``edgequant bench --artifact DIR --scenario Offline``  vs  ``benchmark_app -hint throughput``
- ``edgequant bench --artifact DIR --scenario SingleStream``  vs  ``benchmark_app -hint latency``

with the same threads and precision for both (``-load_config`` carries
``{"CPU": {"INFERENCE_NUM_THREADS": "2", "INFERENCE_PRECISION_HINT": <artifact's hint>}}``,
since ``-nthreads`` is refused together with ``-hint``), and prints the median over the rounds
of each round's ratio with its 95% interval (:class:`edgequant.measure.paired.PairedRatio`, the
machinery of the sweep's paired rounds: the two runs of a round are back to back; who goes first
alternates). The header names the CPU (model, INT8 class). The verdict is the median's; the
interval says how far to trust it (``--rounds 6`` or more gives a distribution-free interval).
benchmark_app's latency is OpenVINO's own request latency; edgequant's is LoadGen's, from
issuing the query to its completion, Python call included. Bars: Offline throughput >= 95% of benchmark_app's (goal 98%); SingleStream
p50 <= 1.05x benchmark_app's median latency (goal 1.03x).

Usage:
    .venv/bin/python benchmarks/fidelity.py                     # all four artifacts, 10 s runs
    .venv/bin/python benchmarks/fidelity.py --models mobilenet_v2 --schemes w8a8 --seconds 5
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

OFFLINE_BAR, OFFLINE_GOAL = 0.95, 0.98
LATENCY_BAR, LATENCY_GOAL = 1.05, 1.03


def build_artifacts(
    models: list[str], schemes: list[str], calib_count: int
) -> dict[tuple[str, str], Path]:
    """OpenVINO artifacts (cached) for every model x scheme; static schemes on synthetic data."""
    from edgequant.backends import get_backend
    from edgequant.build.cache import get_or_build
    from edgequant.data import open_dataset
    from edgequant.models.loader import load_model
    from edgequant.quant.scheme import get_scheme

    backend = get_backend("openvino")
    out: dict[tuple[str, str], Path] = {}
    for name in models:
        model = load_model(name, pretrained=False)
        calib = open_dataset(f"synthetic:{calib_count}", model.input_spec, split="train")
        for s in schemes:
            scheme = get_scheme(s)
            art = get_or_build(backend, model, scheme, calib if scheme.needs_calibration else None)
            out[(name, s)] = art.path
            print(f"artifact {name} {s}: {art.path}", file=sys.stderr)
    return out


def run_bench(
    art: Path, scenario: str, seconds: float, threads: int, batch: int, work: Path
) -> float:
    """Offline: samples/s; SingleStream: p50 latency in ms (LoadGen's figures)."""
    run_dir = Path(tempfile.mkdtemp(dir=work, prefix=f"bench-{scenario}-"))
    cmd = [
        sys.executable,
        "-m",
        "edgequant",
        "bench",
        "--artifact",
        str(art.parent),
        "--scenario",
        scenario,
        "--duration",
        str(seconds),
        "--threads",
        str(threads),
        "--batch-size",
        str(batch),
        "-o",
        str(run_dir),
        "--json",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    try:
        rec = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise SystemExit(
            f"edgequant bench failed ({proc.returncode}): {proc.stderr.strip()[-800:]}"
        ) from None
    if not rec["loadgen"]["valid"]:
        print(f"  warning: bench {scenario} INVALID: {rec['loadgen']['reasons']}", file=sys.stderr)
    shutil.rmtree(run_dir, ignore_errors=True)
    return (
        float(rec["throughput_ips"]) if scenario == "Offline" else float(rec["latency_ms"]["p50"])
    )


def run_app(
    art: Path, scenario: str, seconds: float, threads: int, batch: int, work: Path
) -> float:
    """benchmark_app's Throughput (FPS) for -hint throughput, its Median latency (ms) for latency."""
    meta = json.loads((art.parent / "artifact.json").read_text())
    cfg = work / "ov_config.json"
    cpu = {"INFERENCE_NUM_THREADS": str(threads)}
    if meta.get("inference_precision_hint"):
        cpu["INFERENCE_PRECISION_HINT"] = str(meta["inference_precision_hint"])
    cfg.write_text(json.dumps({"CPU": cpu}))
    offline = scenario == "Offline"
    n = batch if offline else 1
    exe = shutil.which("benchmark_app") or str(Path(sys.executable).parent / "benchmark_app")
    cmd = [
        exe,
        "-m",
        str(art),
        "-d",
        "CPU",
        "-hint",
        "throughput" if offline else "latency",
        "-load_config",
        str(cfg),
        "-t",
        str(int(seconds)),
        "-data_shape",
        f"[{n},3,224,224]",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    text = proc.stdout + proc.stderr
    key = r"Throughput:\s+([\d.]+)\s*FPS" if offline else r"Median:\s+([\d.]+)\s*ms"
    m = re.search(key, text)
    if m is None:
        raise SystemExit(f"benchmark_app failed ({proc.returncode}): {text.strip()[-800:]}")
    return float(m.group(1))


def verdict(scenario: str, ratio: float) -> str:
    """``goal``, ``bar`` or ``FAIL`` for a median ratio (throughput up, latency down)."""
    if scenario == "Offline":
        return "goal" if ratio >= OFFLINE_GOAL else "bar" if ratio >= OFFLINE_BAR else "FAIL"
    return "goal" if ratio <= LATENCY_GOAL else "bar" if ratio <= LATENCY_BAR else "FAIL"


def header() -> str:
    """The CPU this ran on: model, INT8 class, cores."""
    from edgequant.hw.cpu import cpu_profile

    cpu = cpu_profile()
    cores = f"{cpu.physical_cores or '?'} physical / {cpu.logical_cores or '?'} logical cores"
    return f"CPU: {cpu.model} ({cpu.int8_class}: {cpu.int8_description}; {cores})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--models", nargs="+", default=["resnet50", "mobilenet_v2"])
    p.add_argument("--schemes", nargs="+", default=["fp32", "w8a8"])
    p.add_argument("--scenarios", nargs="+", default=["Offline", "SingleStream"])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds per comparison")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=1, help="Offline batch size for both tools")
    p.add_argument("--calib", type=int, default=64, help="synthetic calibration samples for w8a8")
    p.add_argument("--json", type=Path, help="also write the measurements here")
    args = p.parse_args(argv)

    from edgequant.measure.paired import PairedRatio

    print(header(), flush=True)
    arts = build_artifacts(args.models, args.schemes, args.calib)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="eq-fidelity-") as tmp:
        work = Path(tmp)
        for (model, scheme), art in arts.items():
            for scenario in args.scenarios:
                ours: list[float] = []
                theirs: list[float] = []
                for r in range(args.rounds):
                    # alternate who goes first, so drift in the machine's load hits both alike
                    order = (run_bench, run_app) if r % 2 == 0 else (run_app, run_bench)
                    for fn in order:
                        v = fn(art, scenario, args.seconds, args.threads, args.batch, work)
                        (ours if fn is run_bench else theirs).append(v)
                a, b = statistics.median(ours), statistics.median(theirs)
                # the median of the per-round ratios: each pair ran back to back, so a load
                # spike on this shared machine that hits one round does not move the result
                paired = PairedRatio.from_rounds(list(zip(ours, theirs, strict=True)))
                row = {
                    "model": model,
                    "scheme": scheme,
                    "scenario": scenario,
                    "metric": "samples/s" if scenario == "Offline" else "p50 ms",
                    "edgequant": ours,
                    "benchmark_app": theirs,
                    "ratio": paired.median,
                    "paired": paired.to_dict(),
                    "verdict": verdict(scenario, paired.median),
                }
                rows.append(row)
                print(
                    f"{model:13s} {scheme:5s} {scenario:12s} edgequant {a:9.2f}  benchmark_app {b:9.2f}  "
                    f"ratio {paired.text(3)}  {row['verdict']}",
                    flush=True,
                )
    print(
        "\nvalues: medians over the rounds; ratio: median of the rounds' ratios "
        "[95% interval] (rounds)"
    )
    print("Offline: ratio = edgequant / benchmark_app throughput (bar >= 0.95, goal >= 0.98)")
    print(
        "SingleStream: ratio = edgequant p50 / benchmark_app median latency (bar <= 1.05, goal <= 1.03)"
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0 if all(r["verdict"] != "FAIL" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
