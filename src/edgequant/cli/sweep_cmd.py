"""``edgequant sweep``: run an experiment's matrix, one fresh process per cell (or per
model/backend pair with ``--isolation backend``), resumably.

Example:
    $ edgequant sweep experiment.yaml -o runs/
    $ edgequant sweep experiment.yaml -o runs/ --dry-run     # what would run, nothing executed
    $ edgequant sweep experiment.yaml -o runs/ --isolation backend   # faster: one process per pair
"""

from __future__ import annotations

import argparse
from typing import Any

from edgequant.cli.args import (
    CLUSTER_OPTION,
    Spec,
    command,
    flag,
    from_args,
    opt,
)

DESCRIPTION = """\
Run models x backends x schemes x scenarios (plus accuracy runs when asked) from an experiment
file. Each cell is one `edgequant bench` in a fresh process: a crash costs that cell only.
Results land in RUNS_DIR/<cell>/result.json and are indexed in RUNS_DIR/results.db.

Resumable: cells already recorded (ok or n/a) are skipped, failed/interrupted ones are retried;
--force re-runs everything. Ctrl-C loses at most the cell in flight. One sweep at a time per
RUNS_DIR (a second one is refused); the exit status is 1 when every cell failed.

--isolation backend (or `isolation: backend` in the file) runs all cells of one model on one
backend in turn in one fresh process: runtimes stay apart, the start-up (imports, several
seconds of CPU) is paid once per pair instead of once per cell; a crash then costs the rest of
that pair's cells (recorded failed, re-run when the sweep is resumed).

Paired rounds: for every fp32 cell and each other scheme's cell of the same model, backend and
scenario, the cells run back to back and then both artifacts are loaded in one process and
measured in interleaved rounds (A B B A ..., short LoadGen runs); the other cell's record gets
`paired`: the median INT8/FP32 (or other/fp32) ratio with its 95% interval and why the rounds
stopped (half-width <= 3%, max rounds or the time cap). `rounds:` in the file (top level or per
group) or --rounds MIN:MAX sets how many; --rounds 0 turns them off.

--build-jobs N (or `build_jobs: N`) builds the artifacts first, N model/backend pairs at a time
(builds are mostly single-threaded: two at a time nearly halve them on 2 cores), then measures
one cell at a time on the idle machine.
"""

EPILOG = """\
Experiment file (YAML):
  models: [mobilenet_v2, resnet50]        # zoo names or model files ({name: f.pth, arch: resnet18})
  backends: [NAME, ...]                   # `edgequant backends` lists them (aliases too)
  schemes: [fp32, w8a8]                   # names, or full scheme mappings
  scenarios: [SingleStream, Offline]
  data: synthetic                         # or digits, imagenet:DIR, npy:FILE
  calib: synthetic                        # calibration set for static schemes (default: data)
  accuracy: false                         # true: also LoadGen's accuracy mode (Offline cell)
  threads: 2
  duration_s: 10
  isolation: cell                         # or backend: one process per model/backend pair
  build_jobs: 1                           # >1: build N pairs' artifacts at once, then measure
  rounds: {min: 3, max: 8, time_cap_s: 120}   # paired fp32/other rounds (round_s: one side's
                                          # LoadGen seconds, default duration_s/min); false: off
  groups: [...]                           # optional sub-matrices overriding any key above

Then: edgequant report RUNS_DIR -o report.html
"""


HELP = "run an experiment matrix (resumable), one process per cell"

OPTIONS: dict[str, Spec] = {
    "experiment": opt("the experiment file", metavar="EXPERIMENT.yaml"),
    "--output": opt("runs directory", required=True, metavar="RUNS_DIR"),
    "--force": "re-run cells already recorded",
    "--dry-run": flag("list the cells and commands; run nothing"),
    "--isolation": opt(
        "a fresh process per cell, or per model/backend pair (default: the file's, else cell)",
        choices=("cell", "backend"),
    ),
    "--build-jobs": opt(
        "build artifacts N model/backend pairs at a time before measuring "
        "(default: the file's build_jobs, else 1 = build inside each cell)",
        type=int,
        metavar="N",
    ),
    "--devices": opt(
        "run on these devices (local = this machine, others: `edgequant worker --device` "
        "names); replaces the file's devices",
        metavar="A,B",
    ),
    "--cluster": CLUSTER_OPTION,
    "--rounds": opt(
        "paired fp32/other rounds per pair: MIN:MAX, N (3..N) or 0 for none "
        "(default: the file's rounds:, else 3:8 within 120 s)",
        metavar="MIN:MAX",
    ),
    "--json": "print the sweep summary as JSON on stdout",
}


def add_parser(subparsers: Any) -> None:
    command(subparsers, __name__)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from edgequant.cli.args import interrupted_by_signals
    from edgequant.console import log, print_json
    from edgequant.report.terminal import counts_line, sweep_table
    from edgequant.sweep.experiment import load_experiment, with_devices
    from edgequant.sweep.runner import paired_lines, plan_pairs, run_sweep

    experiment = load_experiment(args.experiment)
    if args.devices:
        experiment = with_devices(experiment, [d.strip() for d in args.devices.split(",")])
    runs = Path(args.output)
    shared = from_args(args, "force", "isolation", "rounds")
    if args.dry_run:
        summary = run_sweep(experiment, runs, dry_run=True, **shared)
        if args.json:
            print_json(summary.to_dict())
        else:
            _print_dry_run(
                summary, plan_pairs(experiment, [o.cell for o in summary.outcomes], args.rounds)
            )
        return 0
    plan_pairs(experiment, experiment.cells(), args.rounds)  # bad rounds: refused before the start
    log(f"sweep {experiment.name}: {len(experiment.cells())} cell(s) into {runs}")
    with interrupted_by_signals():  # SIGTERM/SIGHUP: the cell in flight stopped, recorded
        summary = run_sweep(experiment, runs, **shared, **from_args(args, "build_jobs", "cluster"))
    if args.json:
        print_json(summary.to_dict())
    else:
        print(sweep_table(summary))
        paired = paired_lines(summary)
        if paired:
            print("\npaired ratios (median of rounds, 95% interval; >1: faster than fp32):")
            print("\n".join(paired))
        print(
            f"\n{counts_line(summary)} in {summary.seconds:.1f} s; results in {runs / 'results.db'}"
        )
        print(f"next: edgequant report {runs} -o {runs / 'report.html'}")
    if summary.all_failed:
        log(f"every cell failed: see each cell's bench.log in {runs}")
        return 1
    return 0


def _print_dry_run(summary: Any, pairs: Any) -> None:
    """What ``--dry-run`` prints: each cell's command (or why it is skipped), then the pairs."""
    for o in summary.outcomes:
        if o.skipped:
            print(f"{o.cell.cell_id}: already recorded ({o.status}), skipped")
        elif o.record is not None:
            print(f"{o.cell.cell_id}: n/a: {o.record.reason}")
        else:
            print(f"{o.cell.cell_id}: {' '.join(o.command)}")
    for pair in pairs:
        r = pair.rounds
        print(
            f"paired: {pair.other.cell_id} vs {pair.baseline.scheme.name}, "
            f"{r.min}-{r.max} rounds of {r.seconds(pair.other.duration_s):g} s "
            f"(at most {r.time_cap_s:g} s)"
        )
    print(f"{len(summary.outcomes)} cell(s), {len(pairs)} pair(s); nothing was run (--dry-run)")
