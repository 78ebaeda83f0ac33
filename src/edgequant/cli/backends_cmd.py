"""``edgequant backends``: each runtime, whether it is available here (or why not), its versions,
which built-in schemes it can run (or why not), and what each does for INT8 on each CPU class.

Example:
    $ edgequant backends
    $ edgequant backends --json | jq '.backends[] | {name, available}'
"""

from __future__ import annotations

import argparse
from typing import Any

from edgequant.cli.args import JSON_DOC, Spec, command

DESCRIPTION = """\
List the runtimes edgequant knows: available here or why not (with the install command), the
runtime and quantizer versions, and for every built-in scheme whether that runtime can execute it
("n/a: reason" where it cannot; reports show the same reason). Then, per CPU INT8 class (AVX2,
AVX-512, VNNI, AMX, ARM), what each runtime does for a static INT8 scheme and why, with this
CPU's class marked.
"""

EPILOG = """\
Examples:
  edgequant backends               # a table of backends x schemes, then the reasons
  edgequant backends --json        # one JSON document: {"backends": [...], "int8_per_cpu": {...}}
"""


HELP = "runtimes: availability, versions, supported schemes"

OPTIONS: dict[str, Spec] = {"--json": JSON_DOC}


def add_parser(subparsers: Any) -> None:
    command(subparsers, __name__)


def describe_backend(name: str) -> dict[str, Any]:
    """Availability, versions and per-scheme support of one backend, as a JSON-able dict.

    Example:
        >>> from edgequant.backends import backend_names
        >>> sorted(describe_backend(backend_names()[0]))[:2]
        ['available', 'description']
    """
    from edgequant.backends import get_backend
    from edgequant.quant.scheme import get_scheme, scheme_names

    info: dict[str, Any] = {
        "name": name,
        "available": False,
        "reason": None,
        "versions": {},
        "schemes": {},
    }
    try:
        be = get_backend(name)
    except ImportError as e:  # the backend module itself is not part of this build
        info["reason"] = f"backend module not installed ({e.name})"
        return info
    info.update(description=be.description, simulated=be.simulated, install_hint=be.install_hint)
    try:
        reason = be.unavailable_reason()
    except Exception as e:  # a broken runtime install must not break the listing
        reason = f"{type(e).__name__}: {e}"
    info["available"], info["reason"] = reason is None, reason
    if reason is None:
        try:
            info["versions"] = be.versions()
        except Exception as e:
            info["versions"] = {"error": f"{type(e).__name__}: {e}"}
    for s in scheme_names():
        try:
            why = be.supports(get_scheme(s))
        except Exception as e:
            why = f"{type(e).__name__}: {e}"
        info["schemes"][s] = {"supported": why is None, "reason": why}
    return info


def run(args: argparse.Namespace) -> int:
    from edgequant.backends import backend_names
    from edgequant.console import format_table, print_json
    from edgequant.quant.scheme import scheme_names

    rows = [describe_backend(n) for n in backend_names()]
    if args.json:
        print_json({"backends": rows, "int8_per_cpu": int8_per_cpu()})
        return 0
    schemes = scheme_names()
    table = []
    for r in rows:
        versions = ", ".join(f"{k} {v}" for k, v in r["versions"].items()) or "-"
        cells = ["yes" if r["schemes"].get(s, {}).get("supported") else "n/a" for s in schemes]
        table.append([r["name"], "yes" if r["available"] else "no", *cells, versions])
    print(format_table(table, ["backend", "available", *schemes, "versions"]))
    for r in rows:
        lines = []
        if not r["available"]:
            lines.append(f"  not available: {r['reason']}")
        if r.get("simulated"):
            lines.append("  simulated: accuracy studies only, its speed is not representative")
        lines += [
            f"  {s}: n/a: {v['reason']}" for s, v in r["schemes"].items() if not v["supported"]
        ]
        if lines:
            print(f"\n{r['name']}:")
            print("\n".join(lines))
    print_int8_table(int8_per_cpu())
    return 0


def int8_per_cpu() -> dict[str, Any]:
    """This CPU, and per runtime and INT8 class the static INT8 configuration and its reason.

    Example:
        >>> d = int8_per_cpu()
        >>> sorted(d), "avx2" in d["classes"]
        (['classes', 'run_here', 'table', 'this_cpu'], True)
    """
    from edgequant.backends.int8_table import INT8_RUNTIMES, class_table, this_cpu
    from edgequant.hw.cpu import INT8_CLASSES
    from edgequant.hw.emulate import run_here

    classes = [c for c in INT8_CLASSES if c != "other"]
    return {
        "this_cpu": this_cpu(),
        "classes": classes,
        "table": class_table(INT8_RUNTIMES),
        "run_here": {c: run_here(c) for c in classes},
    }


def print_int8_table(d: dict[str, Any]) -> None:
    """The INT8 table: rows runtimes, columns CPU classes (``*`` = the class each gets here)."""
    from edgequant.console import format_table

    cpu = d["this_cpu"]
    cap = f", ONEDNN_MAX_CPU_ISA={cpu['onednn_max_cpu_isa']}" if cpu["onednn_max_cpu_isa"] else ""
    print(f"\nINT8 per CPU class (this CPU: {cpu['model']}, {cpu['int8_class']}{cap}):")
    rows = []
    for rt, cells in d["table"].items():
        here = cpu["runtime_class"].get(rt)
        rows.append([rt] + [("* " if c == here else "") + cells[c]["config"] for c in d["classes"]])
    print(format_table(rows, ["runtime", *d["classes"]]))
    print("\nwhy, on this CPU:")
    for rt, cells in d["table"].items():
        here = cpu["runtime_class"].get(rt)
        if here in cells:
            print(f"  {rt} ({here}): {cells[here]['reason']}")
    print("\nthe real kernels of each class, run on this machine:")
    for cls, how in d.get("run_here", {}).items():
        print(f"  {cls}: {how}")
