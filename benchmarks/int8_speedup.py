"""INT8 vs FP32 Offline throughput per runtime, measured side by side.

For each available (non-simulated) backend and each model, builds the ``fp32`` and ``w8a8``
artifacts through the artifact cache (each runtime's own quantizer, synthetic calibration: speed
does not depend on what the calibration images show), loads both with the same thread count and
measures Offline-style throughput (batches issued back to back through ``Session.run_offline``)
in alternating rounds (who goes first alternates), so a neighbour's load hits both alike. Prints
the median images/s of each and the INT8/FP32 ratio as the median of the rounds' ratios with its
95% interval (:class:`edgequant.measure.paired.PairedRatio`, as the sweep's paired rounds); the
header names the CPU and its INT8 class. ``edgequant sweep`` measures the same ratio through
LoadGen (``record.paired``); this is the quick kernel-level check.

Example:
    $ python benchmarks/int8_speedup.py --backends onnxruntime --models resnet50 --seconds 3
    $ python benchmarks/int8_speedup.py --json > speedup.json
    $ python benchmarks/int8_speedup.py --rounds 3 --max-rounds 12   # until ±3% or 12 rounds
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import replace
from typing import Any

import numpy as np

from edgequant.errors import ValidationError
from edgequant.measure.paired import PairedRatio, StoppingRule


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--models", default="resnet50", help="comma-separated zoo names (default resnet50)"
    )
    p.add_argument(
        "--backends", default=None, help="comma-separated backends (default: every available one)"
    )
    p.add_argument(
        "--baseline", default="fp32", help="float scheme to compare against (default fp32)"
    )
    p.add_argument("--scheme", default="w8a8", help="integer scheme (default w8a8)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads per session (default 2)")
    p.add_argument("--batch", type=int, default=8, help="Offline batch size (default 8)")
    p.add_argument(
        "--seconds", type=float, default=3.0, help="seconds per measurement round (default 3)"
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="alternating rounds at least; the median is reported (default 3)",
    )
    p.add_argument(
        "--max-rounds",
        type=int,
        default=None,
        help="go on past --rounds until the ratio's 95%% interval is within ±3%% of its median, "
        "up to this many rounds (default: --rounds, i.e. a fixed count)",
    )
    p.add_argument(
        "--time-cap",
        type=float,
        default=300.0,
        metavar="S",
        help="with --max-rounds: stop adding rounds after S seconds per runtime (default 300)",
    )
    p.add_argument(
        "--calib-size", type=int, default=32, help="synthetic calibration samples (default 32)"
    )
    p.add_argument(
        "--pretrained",
        action="store_true",
        help="use pretrained weights (speed does not need them)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    args = p.parse_args(argv)
    try:  # checked before any build, by the rule the rounds will stop by
        stopping_rule(args)
    except ValidationError as e:
        p.error(f"--rounds/--max-rounds/--time-cap: {e}")
    return args


def throughput(session: Any, batches: list[np.ndarray]) -> tuple[float, float]:
    """(images per wall second, images per CPU second of this process) of one ``run_offline``.

    The second figure is robust to a busy machine: neighbours' work does not count against it
    (runtimes that spin idle threads are charged for spinning, which they also do when alone).
    """
    done = 0

    def on_done(_i: int, out: np.ndarray) -> None:
        nonlocal done
        done += len(out)

    t0, c0 = time.perf_counter(), time.process_time()
    session.run_offline(batches, on_done)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return done / wall, done / max(cpu, 1e-9)


def round_batches(session: Any, distinct: list[np.ndarray], seconds: float) -> list[np.ndarray]:
    """Enough batches to keep ``session`` busy about ``seconds`` (at least 2), after a warm-up."""
    t0 = time.perf_counter()
    session.run_offline(distinct[:2], lambda _i, _o: None)  # warm-up: allocations, kernel choice
    per_batch = (time.perf_counter() - t0) / 2
    n = int(min(256, max(2, seconds / max(per_batch, 1e-6))))
    return [distinct[i % len(distinct)] for i in range(n)]


def stopping_rule(args: argparse.Namespace) -> StoppingRule:
    """``--rounds`` alone: that many rounds. With ``--max-rounds``: at least ``--rounds``, then
    more until the interval's half-width is <= 3% (the sweep's target), the maximum or the cap."""
    most = args.rounds if args.max_rounds is None else args.max_rounds
    return StoppingRule(min_rounds=args.rounds, max_rounds=most, time_cap_s=args.time_cap)


def measure(backend_name: str, model_name: str, args: argparse.Namespace) -> dict[str, Any]:
    from edgequant.backends import get_backend
    from edgequant.build.stage import build_artifact
    from edgequant.data import open_dataset
    from edgequant.models import load_model
    from edgequant.quant.scheme import get_scheme

    be = get_backend(backend_name)
    model = load_model(model_name, pretrained=args.pretrained)
    calib = open_dataset(f"synthetic:{max(args.calib_size, 1)}", model.input_spec)
    schemes = [get_scheme(args.baseline), get_scheme(args.scheme)]
    schemes = [
        s.with_(calibration=replace(s.calibration, samples=args.calib_size)) for s in schemes
    ]
    row: dict[str, Any] = {
        "backend": backend_name,
        "model": model_name,
        "threads": args.threads,
        "batch": args.batch,
    }
    for s in schemes:
        reason = be.supports(s, model)
        if reason is not None:
            return {**row, "status": "na", "reason": f"{s.name}: {reason}"}
    # built and specialized to the batch it is timed at (PyTorch compiles an AOTInductor package
    # per batch size: loaded unspecialized, it would run a batch of 8 as 8 batch-1 calls)
    arts = [
        build_artifact(be, model, s, calib, batch_sizes=[args.batch], check=False).artifact
        for s in schemes
    ]
    sessions = [be.load(a, threads=args.threads) for a in arts]
    try:
        bs = sessions[0].fixed_batch or args.batch
        rng = np.random.default_rng(0)
        x = rng.standard_normal((bs, *model.input_spec.shape)).astype(np.float32)
        # a few distinct batches: no runtime gets to cache a single input
        distinct = [x + np.float32(0.01 * i) for i in range(4)]
        work = [round_batches(sess, distinct, args.seconds) for sess in sessions]
        rates: list[list[float]] = [[], []]
        cpu_rates: list[list[float]] = [[], []]
        rule = stopping_rule(args)
        stopped_by = "fixed"
        t0 = time.perf_counter()
        for r in range(rule.max_rounds):  # alternate, so a neighbour's load hits both alike
            for i in (0, 1) if r % 2 == 0 else (1, 0):
                ips, ips_cpu = throughput(sessions[i], work[i])
                rates[i].append(ips)
                cpu_rates[i].append(ips_cpu)
            if rule.max_rounds > rule.min_rounds:
                so_far = PairedRatio.from_rounds(list(zip(rates[1], rates[0], strict=True)))
                why = rule.verdict(so_far, elapsed_s=time.perf_counter() - t0)
                if why is not None:
                    stopped_by = why
                    break
    finally:
        for sess in sessions:
            sess.close()

    fp, q = (statistics.median(r) for r in rates)
    fp_cpu, q_cpu = (statistics.median(r) for r in cpu_rates)
    paired = PairedRatio.from_rounds(
        list(zip(rates[1], rates[0], strict=True)), stopped_by=stopped_by
    )
    return {
        **row,
        "status": "ok",
        f"{args.baseline}_ips": round(fp, 2),
        f"{args.scheme}_ips": round(q, 2),
        "ratio": round(paired.median, 2),
        "ratio_text": paired.text() + ("" if stopped_by == "fixed" else f" stopped: {stopped_by}"),
        "paired": paired.to_dict(),
        # images per CPU-second: the ratio a quiet machine would show if both scale alike
        "cpu_ratio": round(q_cpu / fp_cpu, 2),
        "rounds": {
            args.baseline: [round(v, 2) for v in rates[0]],
            args.scheme: [round(v, 2) for v in rates[1]],
        },
        "executed_precision": {
            s.name: a.metadata.get("executed_precision") for s, a in zip(schemes, arts)
        },
        "int8_choices": arts[1].metadata.get("choices", []),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from edgequant.backends import backend_names, get_backend
    from edgequant.console import format_table, log, print_json

    if args.backends:
        names = [n.strip() for n in args.backends.split(",") if n.strip()]
    else:
        names = []
        for n in backend_names():
            try:
                be = get_backend(n)
            except ImportError:
                continue
            if not be.simulated and be.available():
                names.append(n)
    rows = []
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        for name in names:
            log(
                f"measuring {name} / {model} ({args.baseline} vs {args.scheme}, {args.threads} threads) ..."
            )
            try:
                rows.append(measure(name, model, args))
            except Exception as e:  # one runtime failing must not hide the others' numbers
                rows.append(
                    {
                        "backend": name,
                        "model": model,
                        "status": "failed",
                        "reason": f"{type(e).__name__}: {e}",
                    }
                )
    from edgequant.hw.cpu import cpu_profile, onednn_int8_class

    cpu = cpu_profile()
    if args.json:
        print_json(
            {
                "benchmark": "int8_speedup",
                "cpu_profile": cpu.to_dict(),
                "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
                "rows": rows,
            }
        )
        return 0
    print(f"CPU: {cpu.model} ({cpu.int8_class}: {cpu.int8_description})")
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA")
    if cap:  # oneDNN (PyTorch, OpenVINO) runs another class's kernels; the others do not
        print(f"ONEDNN_MAX_CPU_ISA={cap}: PyTorch and OpenVINO run {onednn_int8_class()} kernels")
    table = [
        [
            r["backend"],
            r["model"],
            r.get(f"{args.baseline}_ips"),
            r.get(f"{args.scheme}_ips"),
            r.get("ratio_text"),
            r.get("cpu_ratio"),
            r["status"] if r["status"] == "ok" else f"{r['status']}: {r.get('reason')}",
        ]
        for r in rows
    ]
    print(
        format_table(
            table,
            [
                "backend",
                "model",
                f"{args.baseline} img/s",
                f"{args.scheme} img/s",
                f"{args.scheme}/{args.baseline} [95% CI]",
                "per CPU-s",
                "status",
            ],
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
