"""``edgequant inspect ARTIFACT``: what runs in integer precision, what still runs in float, and why.

Example:
    $ edgequant inspect build/r50-ort-w8a8
    48/53 convs in integer precision; 5 fall back to float: 5 × QDQ pair left around float Conv ...
"""

from __future__ import annotations

import argparse
from typing import Any

from edgequant.cli.args import JSON_DOC, Spec, command, flag, opt

DESCRIPTION = """\
Explain an artifact built by `edgequant quantize` (or found in the cache): the runtime's own view
of which convolutions and matrix products execute in integer precision and which fall back to
float, with the reason for each fallback (ONNX Runtime: Q/DQ pairs left around float ops after
graph optimization; OpenVINO: runtime-model execution precisions; LiteRT: float ops in the
flatbuffer; PyTorch: convs left unquantized). This is the "why no speed-up" diagnosis.
"""

EPILOG = """\
Examples:
  edgequant quantize --model resnet50 --backend onnxruntime --scheme w8a8 --calib synthetic -o build/r50
  edgequant inspect build/r50
  edgequant inspect build/r50/artifact.json --json
  edgequant inspect build/r50 --all       # every conv/matmul, not only the float fallbacks
"""


HELP = "which ops run in int8 and which fall back to float, and why"

OPTIONS: dict[str, Spec] = {
    "artifact": opt("artifact directory, model file or artifact.json", metavar="ARTIFACT"),
    "--all": flag("list every op, not only float fallbacks"),
    "--json": JSON_DOC,
}


def add_parser(subparsers: Any) -> None:
    command(subparsers, __name__)


def run(args: argparse.Namespace) -> int:
    from edgequant.backends import Artifact
    from edgequant.build.quantize import inspect_artifact
    from edgequant.console import format_table, print_json

    art = Artifact.load(args.artifact)
    report = inspect_artifact(art)
    if args.json:
        doc = report.to_dict()
        doc["executed_precision"] = art.metadata.get("executed_precision")
        doc["size_bytes"] = art.size_bytes
        print_json(doc)
        return 0
    print(
        f"{art.path} ({art.backend}, {art.scheme.name}, executed precision "
        f"{art.metadata.get('executed_precision', 'unknown')})"
    )
    print(report.summary())
    ops = (
        report.ops
        if args.all
        else [o for o in report.ops if not o.precision.startswith(("int", "i", "u"))]
    )
    if ops:
        title = "all ops:" if args.all else "float fallbacks:"
        print(f"\n{title}")
        print(
            format_table(
                [[o.name, o.op_type, o.precision, o.reason] for o in ops],
                ["op", "type", "precision", "reason"],
            )
        )
    for note in report.notes:
        print(f"note: {note}")
    return 0
