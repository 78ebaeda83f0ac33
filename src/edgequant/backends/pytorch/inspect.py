"""What a PyTorch artifact runs: the exported graph's ops and the compiled packages' kernels.

``prepare`` writes ``graph.json`` with the ops of the exported program (``ops``); compiling the
first AOTInductor package adds the kernel counts of its generated C++ (``kernels``). Only those
counts show whether Inductor really lowered each quantized conv to a oneDNN int8 kernel.

Example:
    >>> kernel_notes([{"op_type": "Conv2d", "precision": "int8"}], {"int8_conv": 0}, quantized=True)[1]
    '1 quantized conv(s) were not lowered to int8 kernels by Inductor (dequantize + float conv runs instead)'
"""

from __future__ import annotations

import contextlib
import json
import zipfile
from pathlib import Path
from typing import Any

from edgequant.backends.base import Artifact, InspectReport, OpInfo
from edgequant.backends.pytorch.quantize import count_kernels

GRAPH_NAME = "graph.json"
_KERNEL_KINDS = ("int8_conv", "float_conv", "int8_linear", "float_linear")


def kernel_notes(
    ops: list[dict[str, Any]], kernels: dict[str, int], *, quantized: bool
) -> list[str]:
    """The notes on compiled kernels: their counts, and the quantized convs not lowered to int8.

    ``kernels`` is empty until a package has been compiled: then nothing can be said about
    lowering yet, and the note says so instead of guessing.

    Example:
        >>> kernel_notes([], {}, quantized=True)
        ['no AOTInductor package compiled yet: kernel counts appear after the first run']
    """
    if not kernels:
        return ["no AOTInductor package compiled yet: kernel counts appear after the first run"]
    counts = {k: int(kernels.get(k, 0)) for k in _KERNEL_KINDS}
    notes = [
        "compiled kernels: {int8_conv} int8 conv, {float_conv} float conv, "
        "{int8_linear} int8 linear, {float_linear} float linear".format(**counts)
    ]
    annotated = sum(
        1
        for o in ops
        if "conv" in str(o.get("op_type", "")).lower() and o.get("precision") == "int8"
    )
    if quantized and counts["int8_conv"] < annotated:
        notes.append(
            f"{annotated - counts['int8_conv']} quantized conv(s) were not lowered to int8 "
            "kernels by Inductor (dequantize + float conv runs instead)"
        )
    return notes


def inspect_graph(artifact: Artifact, backend: str) -> InspectReport:
    """The report of a PyTorch artifact from its ``graph.json``.

    Example:
        >>> inspect_graph(art, "pytorch").summary()   # doctest: +SKIP
        '4/4 convs in integer precision'
    """
    graph_path = artifact.directory / GRAPH_NAME
    report = InspectReport(
        artifact=str(artifact.path), backend=backend, scheme=artifact.scheme.name
    )
    try:
        graph = json.loads(graph_path.read_text())
    except (OSError, json.JSONDecodeError):
        report.notes.append(
            f"{graph_path} is missing or unreadable: rebuild the artifact to inspect it"
        )
        return report
    from edgequant.backends.int8_cpu import inspect_note, remedy_reasons

    remedied = remedy_reasons(artifact.metadata)
    ops = graph.get("ops", [])
    for op in ops:
        reason = op.get("reason", "")
        if not str(op["precision"]).startswith("int"):  # kept in float by the CPU-class plan?
            reason = remedied.get(op["name"], reason)
        report.ops.append(
            OpInfo(name=op["name"], op_type=op["op_type"], precision=op["precision"], reason=reason)
        )
    report.notes.extend(
        kernel_notes(ops, graph.get("kernels", {}), quantized=artifact.scheme.weights is not None)
    )
    report.notes.append(f"executes: {artifact.metadata.get('execution', 'unknown')}")
    cpu_note = inspect_note(artifact.metadata)
    if cpu_note:
        report.notes.append(cpu_note)
    return report


def record_kernels(artifact: Artifact, package: Path) -> None:
    """Count the kernels of the first compiled package into graph.json (for ``inspect``)."""
    graph_path = artifact.directory / GRAPH_NAME
    try:
        graph = json.loads(graph_path.read_text())
    except (OSError, json.JSONDecodeError):
        graph = {"ops": []}
    if graph.get("kernels"):
        return  # every package holds the same graph at another batch size: count one
    graph["kernels"] = count_kernels(_wrapper_sources(package))
    with contextlib.suppress(OSError):
        graph_path.write_text(json.dumps(graph, indent=2))


def _wrapper_sources(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as z:
            return [
                z.read(n).decode("utf-8", "replace")
                for n in z.namelist()
                if n.endswith("wrapper.cpp")
            ]
    except (zipfile.BadZipFile, OSError):
        return []


__all__ = ["GRAPH_NAME", "inspect_graph", "kernel_notes", "record_kernels"]
