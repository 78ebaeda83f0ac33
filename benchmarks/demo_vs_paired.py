"""The demo's ResNet-50 INT8/FP32 ratio per runtime next to a long paired measurement of the same artifacts.

Issue 13's first bar: in one session on one machine, each runtime's demo ratio (3-5 paired
1 s rounds, ``edgequant demo``) must be within 7% of a 5-round paired measurement with 10 s
LoadGen runs of the same artifacts. This reads the demo's records (``DEMO/runs``; ``--run-demo``
runs the demo first), then, per runtime, loads the demo's fp32 and w8a8 artifacts (found in the
artifact cache by the same keys) side by side in one fresh process and measures the long rounds
through the same machinery (``python -m edgequant.sweep.worker --pairs``: interleaved LoadGen
Offline runs, who goes first alternating, median ratio with its 95% interval). It prints both
ratios with their intervals, the difference, and whether the demo's is within 7%. The header
names the CPU (model, INT8 class, cores).

Usage:
    .venv/bin/python benchmarks/demo_vs_paired.py --demo demo-report            # 5 x 10 s per runtime
    .venv/bin/python benchmarks/demo_vs_paired.py --run-demo --demo demo-report
    .venv/bin/python benchmarks/demo_vs_paired.py --demo /tmp/q --model digits_cnn --seconds 0.5 --rounds 3
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

TOLERANCE = 0.07
#: the cell fields a long round needs (the rest of a record's config is the bench's defaults)
CONFIG_KEYS = ("model", "arch", "weights", "backend", "scheme", "scenario", "data", "calib")
CONFIG_KEYS += ("threads", "duration_s", "batch_size", "count")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--demo", type=Path, default=Path("demo-report"), help="the demo's output")
    p.add_argument("--run-demo", action="store_true", help="run `edgequant demo` into it first")
    p.add_argument("--model", default="resnet50", help="model of the pairs (default resnet50)")
    p.add_argument("--scheme", default="w8a8", help="the INT8 scheme's name (default w8a8)")
    p.add_argument("--scenario", default="Offline", help="scenario of the pairs (default Offline)")
    p.add_argument("--seconds", type=float, default=10.0, help="LoadGen seconds per side/round")
    p.add_argument("--rounds", type=int, default=5, help="paired rounds (default 5)")
    p.add_argument("--work", type=Path, help="where the long rounds' LoadGen logs go")
    p.add_argument("--json", type=Path, help="also write the rows here")
    p.add_argument(
        "--backends", help="comma-separated runtimes to measure (default: all the demo ran)"
    )
    return p.parse_args(argv)


def demo_pairs(runs: Path, model: str, scheme: str, scenario: str) -> list[dict[str, Any]]:
    """Per runtime: the demo's fp32 and ``scheme`` records of ``model``/``scenario``."""
    from edgequant.results.record import ResultRecord

    rows = []
    for other_dir in sorted(runs.glob(f"{model}__*__{scheme}__{scenario}")):
        backend = other_dir.name.split("__")[1]
        base_dir = runs / f"{model}__{backend}__fp32__{scenario}"
        if not (other_dir / "result.json").is_file() or not (base_dir / "result.json").is_file():
            continue
        other, base = ResultRecord.load(other_dir), ResultRecord.load(base_dir)
        rows.append({"backend": backend, "base": base, "other": other})
    return rows


def side(rec: Any, cell: str, work: Path) -> dict[str, Any]:
    """A rounds task's side from a demo record (its cell's bench settings, logs under ``work``)."""
    cfg = rec.extra.get("config", {})
    config = {k: cfg[k] for k in CONFIG_KEYS if cfg.get(k) is not None}
    if str(config.get("scheme", "")).endswith((".yaml", ".yml")):
        # a scheme the experiment gave as a mapping: the record holds it in full
        import yaml

        path = work / f"{cell}.scheme.yaml"
        path.write_text(yaml.safe_dump(rec.scheme_detail, sort_keys=False))
        config["scheme"] = str(path)
    config["run_dir"] = str(work / cell)
    return {"cell": cell, "run_dir": config["run_dir"], "config": config}


def demo_ratio(base: Any, other: Any) -> dict[str, Any]:
    """The demo's ratio: its paired rounds, else the two single runs (no interval)."""
    if other.paired:
        return dict(other.paired)
    if base.status == "ok" and other.status == "ok" and base.throughput_ips:
        ratio = (other.throughput_ips or 0.0) / base.throughput_ips
        return {"median": ratio, "ci95": None, "rounds": 1, "stopped_by": "single runs"}
    return {"median": None, "ci95": None, "rounds": 0, "stopped_by": other.status}


def long_pair(row: dict[str, Any], args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The long paired measurement of one runtime's artifacts, in a fresh process."""
    base_id, other_id = (Path(row[k].extra["config"]["run_dir"]).name for k in ("base", "other"))
    task = {
        "cell": other_id,
        "baseline": side(row["base"], base_id, work),
        "other": side(row["other"], other_id, work),
        "metric": "throughput_ips" if args.scenario in ("Offline", "Server") else "latency_p50",
        "rounds": {"min": args.rounds, "max": args.rounds, "time_cap_s": 1e9, "round_s": None},
        "round_s": args.seconds,
    }
    tasks = work / f"{row['backend']}.pairs.json"
    tasks.write_text(json.dumps([task]))
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "edgequant.sweep.worker", "--pairs", str(tasks)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in proc.stdout.splitlines():
        event = json.loads(line) if line.startswith("{") else {}
        if event.get("event") == "paired":
            if event["paired"] is None:
                return {"median": None, "ci95": None, "error": event["reason"]}
            return dict(event["paired"])
    tail = proc.stderr.strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
    return {"median": None, "ci95": None, "error": tail[0]}


def text(p: dict[str, Any]) -> str:
    if p.get("median") is None:
        return f"- ({p.get('error') or p.get('stopped_by')})"
    ci = p.get("ci95")
    interval = f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""
    return f"{p['median']:.2f}×{interval} ({p.get('rounds')} r, {p.get('stopped_by')})"


def header() -> str:
    from edgequant.hw.cpu import cpu_profile

    cpu = cpu_profile()
    cores = f"{cpu.physical_cores or '?'} physical / {cpu.logical_cores or '?'} logical cores"
    return f"CPU: {cpu.model} ({cpu.int8_class}: {cpu.int8_description}; {cores})"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.run_demo:
        from edgequant.sweep.demo import demo

        demo(args.demo)
    rows = demo_pairs(args.demo / "runs", args.model, args.scheme, args.scenario)
    if args.backends:
        rows = [r for r in rows if r["backend"] in args.backends.split(",")]
    if not rows:
        print(f"no {args.model} fp32/{args.scheme} {args.scenario} records in {args.demo}/runs")
        return 2
    print(header())
    print(
        f"{args.model} {args.scheme}/fp32 {args.scenario}: the demo's ratio vs {args.rounds} "
        f"paired rounds of {args.seconds:g} s, same artifacts (within {TOLERANCE:.0%}?)\n"
    )
    out = []
    with tempfile.TemporaryDirectory(prefix="eq-demo-vs-paired-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for row in rows:
            short = demo_ratio(row["base"], row["other"])
            long = long_pair(row, args, work)
            same = long.get("artifacts", {}).get(args.scheme) in (None, row["other"].artifact)
            diff = None
            if short.get("median") and long.get("median"):
                diff = short["median"] / long["median"] - 1
            verdict = "-" if diff is None else ("yes" if abs(diff) <= TOLERANCE else "NO")
            out.append({"backend": row["backend"], "demo": short, "long": long, "diff": diff})
            print(
                f"{row['backend']:12s} demo {text(short):34s} long {text(long):34s} "
                f"diff {'-' if diff is None else f'{100 * diff:+.1f}%':>7s}  within: {verdict}"
                + ("" if same else "  (warning: not the demo's artifact)"),
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str))
    ok = all(r["diff"] is not None and abs(r["diff"]) <= TOLERANCE for r in out)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
