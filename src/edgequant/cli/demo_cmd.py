"""``edgequant demo``: the embedded default, end to end — a sweep, its report, a summary table.

Example:
    $ edgequant demo                        # 80 cells -> demo-report/report.html
    $ edgequant demo --data imagenet:val/   # ImageNet models' accuracy measured too
    $ edgequant demo --quick                # the plumbing on the digits model, about a minute
"""

from __future__ import annotations

import argparse
from typing import Any

from edgequant.cli.args import (
    CLUSTER_OPTION,
    Spec,
    comma_list,
    command,
    flag,
    from_args,
    opt,
)

DESCRIPTION = """\
Run the embedded demo experiment (edgequant/examples/demo.yaml) and write its report:

  digits_cnn       real data, real accuracy: every scheme on every runtime (Offline + accuracy),
                   fp32/w8a8 latency in SingleStream
  efficientnet_lite0 (pretrained), mobilenet_v2, resnet50
                   fp32 and w8a8 on every runtime, Offline, performance on synthetic
                   inputs (mobilenet_v2 also SingleStream); with --data imagenet:DIR their
                   accuracy too. Without labelled data the report says accuracy was not measured.

One fresh process per model and runtime runs that pair's cells in turn (isolation: backend).
ResNet-50's INT8/FP32 ratio per runtime comes from paired rounds (fp32 and w8a8 loaded side by
side, interleaved 1 s LoadGen runs): the median ratio with its 95% interval.

Everything lands in OUT/runs (resumable: run it again to finish an interrupted demo) and
OUT/report.html; a summary table is printed at the end.
"""


HELP = "the embedded default: sweep + report, end to end"

OPTIONS: dict[str, Spec] = {
    "--output": opt("output folder (default demo-report)", default="demo-report", metavar="OUT"),
    "--data": opt(
        "labelled ImageNet data: also measure the ImageNet models' accuracy",
        metavar="imagenet:DIR",
    ),
    "--quick": flag("digits model only, tiny durations (checks the plumbing in about a minute)"),
    "--force": "re-run cells already recorded",
    "--max-drop": "accuracy budget of the recommendation (top-1 points, default 1.0)",
    "--devices": opt(
        "comma-separated devices to run on (default local = this machine; others: "
        "`edgequant worker --device` names, reached through --cluster)",
        default="local",
        metavar="NAMES",
    ),
    "--cluster": CLUSTER_OPTION,
    "--json": "print the summary as JSON on stdout",
}


def add_parser(subparsers: Any) -> None:
    command(subparsers, __name__)


def run(args: argparse.Namespace) -> int:
    from edgequant.cli.args import interrupted_by_signals
    from edgequant.console import print_json
    from edgequant.report.terminal import counts_line, demo_table
    from edgequant.sweep.demo import demo
    from edgequant.sweep.runner import paired_lines

    with interrupted_by_signals():  # SIGTERM/SIGHUP: the cell in flight stopped, recorded
        result = demo(args.output, **demo_options(args))
    if args.json:
        print_json(result.to_dict())
    else:
        print(demo_table(result.data))
        paired = paired_lines(result.sweep)
        if paired:
            print(
                "\npaired ratios vs fp32 (median of interleaved rounds [95% interval]; >1: faster):"
            )
            print("\n".join(paired))
        print(f"\n{counts_line(result.sweep)} in {result.seconds:.0f} s")
        print(f"report: {result.report}")
    return 0


def demo_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of :func:`edgequant.sweep.demo.demo` that the command line gives;
    ``devices`` and ``cluster`` only when they are not the default (this machine alone).

    Example:
        >>> ns = argparse.Namespace(data=None, quick=True, force=False, max_drop=1.0)
        >>> demo_options(argparse.Namespace(**vars(ns), devices="local", cluster=None))
        {'data': None, 'quick': True, 'force': False, 'max_drop': 1.0}
        >>> opts = demo_options(argparse.Namespace(**vars(ns), devices="local,rpi5", cluster="tcp://h:1"))
        >>> opts["devices"], opts["cluster"]
        (['local', 'rpi5'], 'tcp://h:1')
    """
    from edgequant.sweep.plan import LOCAL_DEVICE

    options = from_args(args, "data", "quick", "force", "max_drop")
    devices = comma_list(args.devices)
    if devices != [LOCAL_DEVICE]:
        options["devices"] = devices
    if args.cluster:
        options["cluster"] = args.cluster
    return options
