"""Is a measurement through a fleet worker as faithful as a local one?

The same artifact's Offline throughput, measured alternately (who goes first alternates) by

- A: a cell sent to an ``edgequant worker`` on this machine (Dask scheduler + worker started
  here as separate processes; the artifact shipped with its content hash, as a sweep does), and
- B: a local ``edgequant bench --artifact DIR --scenario Offline`` in a fresh process,

with the same bench flags on both sides. Each round's ratio A/B goes into a
:class:`edgequant.measure.paired.PairedRatio`; the worker is faithful when the 95% interval of
the median ratio contains 1.0 (the issue's bar: within its confidence interval of local).

Usage:
    .venv/bin/python benchmarks/fleet_fidelity.py                      # mobilenet_v2 fp32, 10 s
    .venv/bin/python benchmarks/fleet_fidelity.py --model digits_cnn --seconds 0.5 \\
        --min-rounds 3 --max-rounds 3                                  # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _env(cache: Path) -> dict[str, str]:
    env = dict(os.environ, EDGEQUANT_CACHE=str(cache))
    env["PYTHONPATH"] = os.pathsep.join([SRC, *filter(None, [env.get("PYTHONPATH")])])
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_fleet(work: Path, backend: str) -> tuple[str, list[subprocess.Popen[bytes]]]:
    """A scheduler and one worker (device ``here``) as separate processes on 127.0.0.1."""
    address = f"tcp://127.0.0.1:{_free_port()}"
    port = address.rsplit(":", 1)[1]
    eq = [sys.executable, "-m", "edgequant"]
    procs = []
    for name, argv in (
        ("scheduler", [*eq, "cluster", "--start-scheduler", "--host", "127.0.0.1", "--port", port]),
        (
            "worker",
            [
                *eq,
                "worker",
                "--scheduler",
                address,
                "--device",
                "here",
                "--runtimes",
                backend,
                "--host",
                "127.0.0.1",
            ],
        ),
    ):
        log = open(work / f"{name}.log", "wb")  # noqa: SIM115 - lives as long as the process
        procs.append(
            subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_env(work / f"cache-{name}"),
                start_new_session=True,
            )
        )
        time.sleep(3.0)
    return address, procs


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in reversed(procs):
        try:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=15)
        except ProcessLookupError:
            continue
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=15)


def build(model: str, backend: str, scheme: str) -> Path:
    from edgequant.bench.runner import BenchConfig, prepare_artifact

    art = prepare_artifact(
        BenchConfig(
            model=model,
            backend=backend,
            scheme=scheme,
            scenario="Offline",
            data="synthetic",
            progress=False,
        )
    )
    if art is None:
        raise SystemExit(f"{backend} cannot run {scheme}")
    return art.directory


def bench_config(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "scenario": "Offline",
        "data": "synthetic",
        "accuracy": False,
        "threads": args.threads,
        "duration_s": args.seconds,
        "run_dir": "set-per-run",
    }


def local_ips(art: Path, config: dict[str, Any], work: Path) -> float:
    from edgequant.sweep.plan import config_argv

    run_dir = tempfile.mkdtemp(dir=work, prefix="local-")
    argv = [
        sys.executable,
        "-m",
        "edgequant",
        "bench",
        *config_argv({**config, "run_dir": run_dir, "artifact": str(art)}),
    ]
    out = subprocess.run(argv, capture_output=True, text=True, env=_env(work / "cache-local"))
    return _ips(out.stdout, f"the local bench (exit {out.returncode}): {out.stderr[-500:]}")


def _ips(stdout: str, where: str) -> float:
    """The Offline samples/s of a bench's ``--json`` record, or exit saying what failed."""
    try:
        record = json.loads(stdout)
    except json.JSONDecodeError:
        raise SystemExit(f"no result record from {where}") from None
    if record.get("status") != "ok" or not record.get("throughput_ips"):
        raise SystemExit(f"{where} was {record.get('status')}: {record.get('reason')}")
    return float(record["throughput_ips"])


def worker_ips(client: Any, art: Path, config: dict[str, Any], n: int) -> float:
    from edgequant.sweep.fleet.names import device_resource
    from edgequant.sweep.fleet.ship import pack_artifact
    from edgequant.sweep.fleet.task import run_on_device

    blob, digest = pack_artifact(art)
    task = {
        "cell": f"fidelity-{n}",
        "sweep": "fidelity",
        "config": config,
        "timeout_s": 600.0,
        "artifact_sha256": digest,
    }
    result = client.submit(
        run_on_device, task, blob, pure=False, resources={device_resource("here"): 1}
    ).result()
    if result.get("error"):
        raise SystemExit(f"the worker failed: {result['error']}")
    return _ips(result["stdout"], f"the worker's bench (exit {result.get('returncode')})")


def main() -> int:
    from edgequant.measure.paired import PairedRatio, StoppingRule
    from edgequant.sweep.fleet.cluster import connect

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mobilenet_v2")
    ap.add_argument("--backend", default="onnxruntime")
    ap.add_argument("--scheme", default="fp32")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-rounds", type=int, default=6)
    ap.add_argument("--max-rounds", type=int, default=10)
    ap.add_argument("--time-cap", type=float, default=1800.0)
    args = ap.parse_args()
    rule = StoppingRule(
        min_rounds=args.min_rounds, max_rounds=args.max_rounds, time_cap_s=args.time_cap
    )
    work = Path(tempfile.mkdtemp(prefix="eq-fleet-fidelity-"))
    art = build(args.model, args.backend, args.scheme)
    print(f"artifact: {art}", file=sys.stderr)
    address, procs = start_fleet(work, args.backend)
    try:
        client = connect(address, timeout_s=60)
        client.wait_for_workers(1, timeout=120)
        config = bench_config(args)
        pairs: list[tuple[float, float]] = []
        t0 = time.monotonic()
        while True:
            n = len(pairs)
            if n % 2 == 0:
                a = worker_ips(client, art, config, n)
                b = local_ips(art, config, work)
            else:
                b = local_ips(art, config, work)
                a = worker_ips(client, art, config, n)
            pairs.append((a, b))
            ratio = PairedRatio.from_rounds(pairs)
            print(
                f"round {n + 1}: worker {a:.1f} ips, local {b:.1f} ips, ratio {a / b:.3f}",
                file=sys.stderr,
            )
            # never fewer than min rounds (the time cap included): below 3 there is no interval
            stopped = None
            if ratio.rounds >= rule.min_rounds:
                stopped = rule.verdict(ratio, elapsed_s=time.monotonic() - t0)
            if stopped is not None:
                ratio = PairedRatio.from_rounds(pairs, stopped_by=stopped)
                break
        client.close()
    finally:
        stop(procs)
    faithful = ratio.ci_low is not None and ratio.contains(1.0)
    print(
        json.dumps(
            {
                "model": args.model,
                "backend": args.backend,
                "scheme": args.scheme,
                "seconds": args.seconds,
                "worker_over_local": ratio.to_dict(),
                "faithful": faithful,
            },
            indent=2,
        )
    )
    return 0 if faithful or ratio.ci_low is None else 1


if __name__ == "__main__":
    sys.exit(main())
