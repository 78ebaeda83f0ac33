"""The ``edgequant`` command line. Each sub-command lives in its own ``*_cmd`` module.

Errors become one line on stderr (``edgequant: error: …``) and a non-zero exit code; ``--debug``
shows the traceback. ``--json`` prints exactly one JSON document on stdout; progress and logs go
to stderr.

Example:
    $ edgequant models --json
    $ edgequant bench --model resnet50 --backend openvino --scheme w8a8 --scenario Offline -o runs/r50
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from edgequant import __version__
from edgequant.errors import EdgequantError

#: sub-command modules, in the order ``--help`` lists them
COMMANDS = (
    "demo",
    "models",
    "backends",
    "eval",
    "train",
    "quantize",
    "inspect",
    "debug",
    "bench",
    "qat",
    "lab",
    "sweep",
    "worker",
    "cluster",
    "results",
    "report",
)

EPILOG = """\
Typical use:
  edgequant demo                                   # the embedded default, end to end
  edgequant models                                 # the model zoo
  edgequant backends                               # runtimes here, and the schemes each can run
  edgequant bench --model mobilenet_v2 --backend openvino --scheme w8a8 --scenario Offline -o runs/mv2
  edgequant sweep experiment.yaml -o runs/         # models x backends x schemes x scenarios
  edgequant report runs/ -o report.html

Schemes: fp32 fp16 bf16 w8-only w8-dyn w8a8 w8a8-pt w8a8-sym w4a8 w4-only (or a YAML file).
Datasets: imagenet:DIR (class folders or flat + val_map.txt), digits, synthetic.
Scenarios (MLPerf): SingleStream MultiStream Offline Server.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgequant",
        description="Quantize a CNN once, run it on every edge runtime, measure it the MLPerf way.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edgequant {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"edgequant.cli.{name}_cmd")
        except ModuleNotFoundError as e:
            if e.name == f"edgequant.cli.{name}_cmd":
                continue  # command not built in this installation
            raise
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``edgequant`` script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("EDGEQUANT_DEBUG") == "1"
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help(sys.stderr)
            return 2
        rc = args.func(args)
        return int(rc or 0)
    except EdgequantError as e:
        if debug:
            raise
        print(f"edgequant: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        if debug:
            raise
        print("edgequant: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 141
    except Exception as e:  # an unexpected bug: still one line unless --debug
        if debug:
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        print(
            f"edgequant: error: unexpected {type(e).__name__}: {msg[:300]} (run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
