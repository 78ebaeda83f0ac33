"""One small real sweep shared by the sweep, report and browser tests (run once per session).

digits_cnn (real digits data) x ONNX Runtime x fp32/w8a8/w4a8 x SingleStream/Offline, 0.5 s
LoadGen runs, accuracy on the Offline cells. w4a8 is n/a on ONNX Runtime (no int4 Conv kernel):
the sweep records it without spawning anything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXPERIMENT = """\
name: tiny
models: [digits_cnn]
backends: [onnxruntime]
schemes: [fp32, w8a8, w4a8]
scenarios: [SingleStream, Offline]
data: digits
calib: digits
accuracy: true
threads: 2
duration_s: 0.5
"""


@dataclass(frozen=True)
class SweepRun:
    runs_dir: Path
    experiment: Path
    summary: dict[str, Any]
    seconds: float


_CACHE: dict[str, SweepRun] = {}


def sweep_cli(experiment: Path, runs: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """``edgequant sweep EXPERIMENT -o RUNS --json`` in a fresh interpreter."""
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "edgequant",
            "sweep",
            str(experiment),
            "-o",
            str(runs),
            "--json",
            *extra,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def real_sweep() -> SweepRun:
    """Run the tiny sweep once (through the CLI) and return where it landed."""
    if "run" not in _CACHE:
        root = Path(tempfile.mkdtemp(prefix="eq-sweep-"))
        exp = root / "tiny.yaml"
        exp.write_text(EXPERIMENT)
        t0 = time.perf_counter()
        proc = sweep_cli(exp, root / "runs")
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"tiny sweep failed ({proc.returncode}): {proc.stderr[-2000:]}")
        _CACHE["run"] = SweepRun(
            runs_dir=root / "runs", experiment=exp, summary=json.loads(proc.stdout), seconds=seconds
        )
    return _CACHE["run"]
