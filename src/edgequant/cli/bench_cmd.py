"""``edgequant bench``: quantize (cached), run MLPerf LoadGen, write ``RUN_DIR/result.json``.

Example:
    $ edgequant bench --model mobilenet_v2 --backend openvino --scheme w8a8 --scenario Offline -o runs/mv2
    $ edgequant bench --model digits_cnn --backend onnxruntime --scheme w8a8 --scenario SingleStream \\
          --data digits --accuracy -o runs/digits --json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from edgequant.cli.args import (
    Spec,
    add_model_arguments,
    command,
    flag,
    from_args,
    interrupted_by_signals,
    model_argument,
    opt,
)

DESCRIPTION = """\
Benchmark one model x backend x scheme in one MLPerf scenario with the real MLPerf LoadGen.

The artifact is built with the runtime's own quantizer (cached), warmed up, then LoadGen runs
the scenario; its own logs (kept in RUN_DIR/loadgen/) give the latencies, the throughput and
whether the run is VALID. --accuracy adds LoadGen's accuracy mode over the whole dataset.
"""

EPILOG = """\
Scenarios and their metric:
  SingleStream  one sample per query, the next issued when the last finishes; p90 latency
  MultiStream   8 samples per query, back to back; p99 query latency (p90 in quick mode)
  Offline       every sample issued at once, in batches; throughput (samples/s)
  Server        one-sample queries at Poisson arrivals (--target-qps) within a latency bound
                (--target-latency-ms); throughput, valid only if the bound holds at p99 (p90 quick)

Quick mode (default) runs about --duration seconds with LoadGen's early stopping; --mlperf
applies the official edge rules (600 s minimum, MultiStream 662 queries, official percentiles).

Every run records whether the machine was quiet (CPU used by other processes, hypervisor steal,
clock drops, thermal throttling: a noisy run is flagged, never silently averaged) and the GOP/s
it reached against this CPU's measured FP32/INT8 roofline.

--compliance TEST01|TEST04 adds MLPerf's audit runs (TEST01: an accuracy-mode reference and a
performance run that logs a sample of responses; TEST04: every query the same sample) and
verifies them as MLCommons' scripts do; exit code 4 when the verdict fails.

Datasets: synthetic (default; performance only), digits, imagenet:DIR, npy:FILE. Static schemes
are calibrated on --calib (default: --data; synthetic calibration is flagged in the record).

Examples:
  edgequant bench --model resnet50 --backend openvino --scheme w8a8 --scenario Offline -o runs/r50
  edgequant bench --model digits_cnn --backend onnxruntime --scheme w8a8 --scenario SingleStream \\
      --data digits --accuracy -o runs/digits
  edgequant bench --artifact build/mv2-ov-w8a8 --scenario Server --target-qps 200 -o runs/srv
"""


HELP = "MLPerf LoadGen benchmark of one model/backend/scheme/scenario"

OPTIONS: dict[str, Spec] = {
    "--model": "zoo name or a .onnx/.pth file (with --arch)",
    "--backend": "runtime (see `edgequant backends`)",
    "--scheme": opt("scheme name or YAML file (default fp32)", default="fp32"),
    "--scenario": opt(
        "SingleStream, MultiStream, Offline or Server (default Offline)", default="Offline"
    ),
    "--artifact": opt("run an artifact built by `edgequant quantize` instead", type=Path),
    "--data": opt("dataset measured (default synthetic)", default="synthetic"),
    "--calib": "calibration dataset for static schemes (default: --data)",
    "--accuracy": "also run LoadGen's accuracy mode",
    "--threads": opt("CPU threads for the runtime (default 2)", default=2),
    "--duration": opt(
        "minimum run time in seconds (default 10)", type=float, default=10.0, metavar="S"
    ),
    "--mlperf": flag("official MLPerf edge settings (600 s minimum)"),
    "--user-conf": opt("an MLPerf user.conf (its keys win)", type=Path, metavar="FILE"),
    "--target-qps": opt(
        "Server arrival rate (default: half the warm-up rate)", type=float, metavar="Q"
    ),
    "--target-latency-ms": opt(
        "Server latency bound (default max(15 ms, 4x warm-up))", type=float, metavar="L"
    ),
    "--batch-size": opt("Offline/Server batch size (default 8 or the artifact's)", metavar="B"),
    "--count": opt(
        "samples to use (default: 256 in RAM for performance, all for accuracy)",
        type=int,
        metavar="N",
    ),
    "--allow-short": flag("run on fewer samples than --count when the dataset is smaller"),
    "--weights": "checkpoint for a zoo architecture",
    "--arch": "zoo architecture of a .pth --model",
    "--energy-csv": opt("external power meter log (timestamp,watts)", type=Path, metavar="FILE"),
    "--compliance": opt(
        "also run an MLPerf compliance test: TEST01 (responses in performance mode equal "
        "accuracy mode) or TEST04 (no speed-up from repeating one sample); exit code 4 if it fails",
        metavar="TEST",
        type=str.upper,
        choices=("TEST01", "TEST04"),
    ),
    "--no-roofline": flag(
        "do not measure the CPU's roofline (measured once per CPU and cached otherwise)"
    ),
    "--force": "rebuild the artifact even if cached",
    "--output": opt("run directory", type=Path, required=True, metavar="RUN_DIR"),
    "--json": "print the result record as JSON on stdout",
}


def add_parser(subparsers: Any) -> None:
    add_model_arguments(command(subparsers, __name__))


def run(args: argparse.Namespace) -> int:
    # SIGTERM/SIGHUP (a sweep's kill, `timeout`, a closed terminal) stop the run like Ctrl-C:
    # killed on the spot it would leave its children (compile workers) running and no record
    with interrupted_by_signals():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from edgequant.bench.api import benchmark
    from edgequant.console import print_json
    from edgequant.errors import UnsupportedError
    from edgequant.report.run_summary import run_summary

    rec = benchmark(
        model_argument(args),
        **from_args(args, "backend", "scheme", "scenario", "data", "calib", "accuracy", "threads"),
        **from_args(args, "output", "batch_size", "count", "mlperf", "user_conf", "target_qps"),
        **from_args(args, "target_latency_ms", "weights", "arch", "artifact", "energy_csv"),
        **from_args(args, "compliance", duration_s="duration", force_rebuild="force"),
        allow_short_dataset=args.allow_short,
        roofline=not args.no_roofline,
    )
    if args.json:
        print_json(rec.to_dict())
    else:
        print(run_summary(rec))
    if rec.status == "na":
        raise UnsupportedError(
            f"{rec.backend} cannot run {rec.scheme}: {rec.reason} (recorded in {args.output}/result.json)"
        )
    if rec.status == "failed":
        from edgequant.errors import BenchmarkError

        raise BenchmarkError(f"run failed: {rec.reason} (recorded in {args.output}/result.json)")
    if rec.status == "interrupted":
        # LoadGen may still be running its schedule on its own thread (Server keeps to its
        # clock; it cannot be aborted), and the interpreter would wait for it or crash tearing
        # it down: leave at once, the record is saved and printed already
        import os

        print("edgequant: interrupted (LoadGen logs are partial)", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(130)
    if rec.compliance is not None and not rec.compliance.get("passed"):
        print(f"edgequant: {rec.compliance.get('summary')}", file=sys.stderr)
        return 4
    return 0 if rec.valid else 3
