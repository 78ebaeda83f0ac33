"""``edgequant cluster``: the devices of a fleet, or a scheduler for one.

Example:
    $ edgequant cluster --start-scheduler --port 8786
    $ edgequant cluster --scheduler tcp://10.0.0.2:8786
"""

from __future__ import annotations

import argparse
from typing import Any

from edgequant.cli.args import Spec, command, flag, opt

DESCRIPTION = """\
List the devices connected to a Dask scheduler (their workers, CPU INT8 classes and runtimes),
or start a scheduler here (`--start-scheduler`, the same as `dask scheduler`). Sweeps send cells
to those devices: `edgequant sweep exp.yaml --devices local,rpi5 --cluster tcp://HOST:8786`.
"""


HELP = "list a fleet's devices, or start its scheduler"

OPTIONS: dict[str, Spec] = {
    "--scheduler": opt("the scheduler to ask, tcp://HOST:PORT", metavar="ADDR"),
    "--start-scheduler": flag("run a scheduler here until Ctrl-C"),
    "--host": opt("with --start-scheduler: address to listen on", metavar="IP"),
    "--port": opt("with --start-scheduler: port (default 8786)", type=int, default=8786),
    "--json": "print the device list as JSON",
}


def add_parser(subparsers: Any) -> None:
    command(subparsers, __name__)


def _print_table(rows: list[dict[str, Any]], address: str) -> None:
    if not rows:
        print(f"no edgequant worker is connected to {address}")
        return
    print(f"{'device':<16} {'workers':>7}  {'int8 class':<14} runtimes")
    for row in rows:
        runtimes = ", ".join(f"{k} ({v})" for k, v in row["runtimes"].items())
        classes = "/".join(row["int8_classes"])
        print(f"{row['device']:<16} {len(row['workers']):>7}  {classes:<14} {runtimes}")


def run(args: argparse.Namespace) -> int:
    from edgequant.console import log, print_json
    from edgequant.errors import ValidationError
    from edgequant.sweep.fleet.cluster import connect, device_table, start_scheduler, workers

    if args.start_scheduler:
        start_scheduler(args.host, args.port, lambda a: log(f"scheduler listening at {a}"))
        return 0
    if not args.scheduler:
        raise ValidationError("give --scheduler tcp://HOST:PORT (or --start-scheduler)")
    client = connect(args.scheduler)
    try:
        rows = device_table(workers(client))
    finally:
        client.close()
    if args.json:
        print_json({"scheduler": args.scheduler, "devices": rows})
    else:
        _print_table(rows, args.scheduler)
    return 0
