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

from edgequant.cli.args import add_model_arguments, model_argument

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


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "bench",
        help="MLPerf LoadGen benchmark of one model/backend/scheme/scenario",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", help="zoo name or a .onnx/.pth file (with --arch)")
    p.add_argument("--backend", help="runtime (see `edgequant backends`)")
    p.add_argument("--scheme", default="fp32", help="scheme name or YAML file (default fp32)")
    p.add_argument(
        "--scenario",
        default="Offline",
        help="SingleStream, MultiStream, Offline or Server (default Offline)",
    )
    p.add_argument(
        "--artifact", type=Path, help="run an artifact built by `edgequant quantize` instead"
    )
    p.add_argument("--data", default="synthetic", help="dataset measured (default synthetic)")
    p.add_argument("--calib", help="calibration dataset for static schemes (default: --data)")
    p.add_argument("--accuracy", action="store_true", help="also run LoadGen's accuracy mode")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for the runtime (default 2)")
    p.add_argument(
        "--duration",
        type=float,
        default=10.0,
        metavar="S",
        help="minimum run time in seconds (default 10)",
    )
    p.add_argument(
        "--mlperf", action="store_true", help="official MLPerf edge settings (600 s minimum)"
    )
    p.add_argument(
        "--user-conf", type=Path, metavar="FILE", help="an MLPerf user.conf (its keys win)"
    )
    p.add_argument(
        "--target-qps",
        type=float,
        metavar="Q",
        help="Server arrival rate (default: half the warm-up rate)",
    )
    p.add_argument(
        "--target-latency-ms",
        type=float,
        metavar="L",
        help="Server latency bound (default max(15 ms, 4x warm-up))",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        metavar="B",
        help="Offline/Server batch size (default 8 or the artifact's)",
    )
    p.add_argument(
        "--count",
        type=int,
        metavar="N",
        help="samples to use (default: 256 in RAM for performance, all for accuracy)",
    )
    p.add_argument(
        "--allow-short",
        action="store_true",
        help="run on fewer samples than --count when the dataset is smaller",
    )
    p.add_argument("--weights", help="checkpoint for a zoo architecture")
    p.add_argument("--arch", help="zoo architecture of a .pth --model")
    p.add_argument(
        "--energy-csv", type=Path, metavar="FILE", help="external power meter log (timestamp,watts)"
    )
    _add_evidence_args(p)
    p.add_argument("--force", action="store_true", help="rebuild the artifact even if cached")
    p.add_argument(
        "-o", "--output", type=Path, required=True, metavar="RUN_DIR", help="run directory"
    )
    p.add_argument("--json", action="store_true", help="print the result record as JSON on stdout")
    add_model_arguments(p)
    p.set_defaults(func=run)


def _add_evidence_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--compliance",
        metavar="TEST",
        type=str.upper,
        choices=("TEST01", "TEST04"),
        help="also run an MLPerf compliance test: TEST01 (responses in performance mode equal "
        "accuracy mode) or TEST04 (no speed-up from repeating one sample); exit code 4 if it fails",
    )
    p.add_argument(
        "--no-roofline",
        action="store_true",
        help="do not measure the CPU's roofline (measured once per CPU and cached otherwise)",
    )


def run(args: argparse.Namespace) -> int:
    from edgequant.bench.api import benchmark
    from edgequant.console import print_json
    from edgequant.errors import UnsupportedError
    from edgequant.report.run_summary import run_summary

    rec = benchmark(
        model_argument(args),
        backend=args.backend,
        scheme=args.scheme,
        scenario=args.scenario,
        data=args.data,
        calib=args.calib,
        accuracy=args.accuracy,
        threads=args.threads,
        duration_s=args.duration,
        output=args.output,
        batch_size=args.batch_size,
        count=args.count,
        mlperf=args.mlperf,
        user_conf=args.user_conf,
        target_qps=args.target_qps,
        target_latency_ms=args.target_latency_ms,
        weights=args.weights,
        arch=args.arch,
        artifact=args.artifact,
        allow_short_dataset=args.allow_short,
        energy_csv=args.energy_csv,
        force_rebuild=args.force,
        compliance=args.compliance,
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
