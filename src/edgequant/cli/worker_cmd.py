"""``edgequant worker``: this machine joins a device fleet (a Dask cluster) as one device.

Example:
    $ edgequant worker --scheduler tcp://10.0.0.2:8786 --device rpi5
    $ edgequant worker --scheduler tcp://10.0.0.2:8786 --device rpi5 --runtimes litert,onnxruntime
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edgequant.cli.args import Spec, command, opt

DESCRIPTION = """\
Run a Dask worker for edgequant sweeps on this machine: one task slot (one benchmark at a
time), resources for its device name, its CPU's INT8 class and each runtime it offers, and a
description (CPU, INT8 class, runtime versions) that `edgequant cluster` lists. Each cell sent
here runs in a fresh `edgequant bench` process; artifacts built elsewhere are checked against
their content hash before they are loaded. Stop it with Ctrl-C or SIGTERM.
"""


HELP = "join a device fleet (a Dask cluster) as one device"

OPTIONS: dict[str, Spec] = {
    "--scheduler": opt("the scheduler, e.g. tcp://HOST:8786", required=True, metavar="ADDR"),
    "--device": opt("the device name sweeps use (e.g. rpi5)", required=True, metavar="NAME"),
    "--runtimes": opt(
        "offer only these runtimes (default: every runtime available here)", metavar="A,B"
    ),
    "--work-dir": opt(
        "received artifacts and cells in flight (default $EDGEQUANT_CACHE/fleet)",
        type=Path,
        metavar="DIR",
    ),
    "--host": opt("address to listen on (default: Dask's choice)", metavar="IP"),
    "--json": "print the description it joined with",
}


def add_parser(subparsers: Any) -> None:
    command(subparsers, __name__)


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
