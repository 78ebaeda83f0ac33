"""``edgequant worker``: this machine joins a device fleet (a Dask cluster) as one device.

Example:
    $ edgequant worker --scheduler tcp://10.0.0.2:8786 --device rpi5
    $ edgequant worker --scheduler tcp://10.0.0.2:8786 --device rpi5 --runtimes litert,onnxruntime
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DESCRIPTION = """\
Run a Dask worker for edgequant sweeps on this machine: one task slot (one benchmark at a
time), resources for its device name, its CPU's INT8 class and each runtime it offers, and a
description (CPU, INT8 class, runtime versions) that `edgequant cluster` lists. Each cell sent
here runs in a fresh `edgequant bench` process; artifacts built elsewhere are checked against
their content hash before they are loaded. Stop it with Ctrl-C or SIGTERM.
"""


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "worker",
        help="join a device fleet (a Dask cluster) as one device",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--scheduler", required=True, metavar="ADDR", help="the scheduler, e.g. tcp://HOST:8786"
    )
    p.add_argument(
        "--device", required=True, metavar="NAME", help="the device name sweeps use (e.g. rpi5)"
    )
    p.add_argument(
        "--runtimes",
        metavar="A,B",
        help="offer only these runtimes (default: every runtime available here)",
    )
    p.add_argument(
        "--work-dir",
        type=Path,
        metavar="DIR",
        help="received artifacts and cells in flight (default $EDGEQUANT_CACHE/fleet)",
    )
    p.add_argument("--host", metavar="IP", help="address to listen on (default: Dask's choice)")
    p.add_argument("--json", action="store_true", help="print the description it joined with")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edgequant.console import log, print_json
    from edgequant.sweep.fleet.worker import run_worker

    runtimes = None if not args.runtimes else [r.strip() for r in args.runtimes.split(",") if r]
    log(f"joining {args.scheduler} as device {args.device} (Ctrl-C stops)")
    info = run_worker(
        args.scheduler, args.device, runtimes=runtimes, work_dir=args.work_dir, host=args.host
    )
    if args.json:
        print_json(info)
    return 0
