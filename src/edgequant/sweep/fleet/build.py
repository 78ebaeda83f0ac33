"""Hidden helper: build portable artifacts on the submitting host, in a fresh process.

``python -m edgequant.sweep.fleet.build CELLS.json OUT.json`` builds (or finds in the cache) each
cell's artifact with :func:`edgequant.bench.runner.prepare_artifact` and writes
``{CELL_ID: {"dir": ARTIFACT_DIR} | {"error": LINE}}`` to ``OUT.json``. A fresh process keeps
the runtimes out of the sweep's own process, as the local launchers do.

Example::

    $ python -m edgequant.sweep.fleet.build runs/fleet/builds.json runs/fleet/built.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def build_all(cells: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """Each cell's artifact folder, or the one-line reason it could not be built."""
    from edgequant.bench.runner import BenchConfig, prepare_artifact
    from edgequant.errors import condense_error

    out: dict[str, dict[str, str]] = {}
    for item in cells:
        config = {**item["config"], "run_dir": Path(item["run_dir"]), "progress": False}
        try:
            artifact = prepare_artifact(BenchConfig(**config))
        except Exception as e:  # the device builds it instead, and reports what goes wrong
            out[item["cell"]] = {"error": condense_error(e)}
            continue
        if artifact is None:
            out[item["cell"]] = {"error": "the runtime cannot run this scheme here"}
        else:
            out[item["cell"]] = {"dir": str(artifact.directory)}
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m edgequant.sweep.fleet.build CELLS.json OUT.json``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m edgequant.sweep.fleet.build CELLS.json OUT.json", file=sys.stderr)
        return 2
    cells = json.loads(Path(args[0]).read_text())
    Path(args[1]).write_text(json.dumps(build_all(cells), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
