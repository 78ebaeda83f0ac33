"""``edgequant results``: export a runs directory's results database (CSV, Markdown, JSON).

Example:
    $ edgequant results runs/ --format csv > results.csv
    $ edgequant results runs/ --rebuild --format md --status ok
"""

from __future__ import annotations

import argparse
from typing import Any

from edgequant.cli.args import Spec, command, flag, opt

DESCRIPTION = """\
Export the runs recorded in RUNS_DIR/results.db, one row per run: model, backend, scheme,
scenario, status and reason, throughput, latency percentiles, accuracy, size, energy, LoadGen
validity (--format json adds each full result record). --rebuild re-indexes the database from
the run directories' result.json files, which are the source of truth.
"""


HELP = "export recorded runs as CSV, Markdown or JSON"

#: the columns rows can be filtered on, one --COLUMN option each
FILTERS = ("model", "backend", "scheme", "scenario", "status")

OPTIONS: dict[str, Spec] = {
    "runs_dir": opt("runs directory (holds results.db)", metavar="RUNS_DIR"),
    "--format": opt(
        "output format (default: a plain table)",
        choices=("table", "csv", "md", "json"),
        default="table",
    ),
    "--output": opt("write to FILE instead of stdout", metavar="FILE"),
    "--rebuild": flag("re-index results.db from */result.json first"),
    **{f"--{col}": f"only rows with this {col}" for col in FILTERS},
    "--json": "same as --format json",
}


def add_parser(subparsers: Any) -> None:
    command(subparsers, __name__)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from edgequant.console import format_table, log
    from edgequant.errors import ValidationError
    from edgequant.report.export import export_rows
    from edgequant.results.store import DB_NAME, ResultStore, rebuild

    runs = Path(args.runs_dir)
    if not runs.is_dir():
        raise ValidationError(f"runs directory {runs} does not exist")
    if args.rebuild or not (runs / DB_NAME).exists():
        n = rebuild(runs)
        log(f"indexed {n} run(s) from {runs}/*/result.json into {runs / DB_NAME}")
    where = {
        c: getattr(args, c)
        for c in ("model", "backend", "scheme", "scenario", "status")
        if getattr(args, c)
    }
    with ResultStore(runs, create=False) as store:
        rows = store.rows(**where)
    fmt = "json" if args.json else args.format
    if fmt == "table":
        cols = [
            "run_id",
            "status",
            "throughput_ips",
            "latency_p50_ms",
            "latency_p99_ms",
            "top1_pct",
            "size_bytes",
            "reason",
        ]
        text = format_table([[r[c] for c in cols] for r in rows], cols) + "\n"
    else:
        text = export_rows(rows, fmt)
    if args.output:
        try:
            Path(args.output).write_text(text)
        except OSError as e:
            raise ValidationError(f"cannot write {args.output}: {e.strerror or e}") from None
        log(f"wrote {len(rows)} row(s) to {args.output}")
    else:
        print(text, end="")
    return 0
