"""Hidden worker of ``isolation: backend``: one fresh process runs a group of cells in turn.

``python -m edgequant.sweep.worker CELLS.json`` reads a list of cells, all of one model and one
backend, and calls :func:`edgequant.bench.run_benchmark` for each. Why: a fresh ``edgequant bench``
per cell pays the interpreter, torch, the runtime and LoadGen imports (≥ 4 s of CPU) every time;
a group pays them once, while runtimes stay isolated from each other (one process per
model/backend pair).

Each cell's record is saved by ``run_benchmark`` to ``RUN_DIR/result.json`` the moment it is done.
The parent follows progress through JSON lines on the process's original stdout (everything the
runtimes print goes to stderr instead, so it cannot corrupt the protocol)::

    {"event": "start", "cell": ID}
    {"event": "done", "cell": ID, "seconds": S, "cpu_s": C, "error": null | LINE, "exit_code": N}

``error`` is set when ``run_benchmark`` raised (bad input found before anything ran); ``cpu_s`` is
this process's user + system CPU during the cell (the first cell also carries the start-up).
Stderr goes to each cell's ``bench.log`` while that cell runs.

``--build`` only builds each cell's artifact (:func:`edgequant.bench.runner.prepare_artifact`)
and measures nothing: the sweep's ``build_jobs`` runs several of these at once before measuring.
A cell whose build fails is reported on stderr and left to the measuring pass, which records it.

``--pairs`` runs the paired rounds of a pairs file (:mod:`edgequant.sweep.pairs`): each pair's two
artifacts loaded side by side in this one process, rounds A B B A … of LoadGen runs
(:func:`edgequant.sweep.rounds.run_pair_tasks`), one ``{"event": "paired", ...}`` line per pair.

Example (the file is written by :func:`edgequant.sweep.local.write_cells_file`)::

    $ python -m edgequant.sweep.worker runs/groups/digits_cnn__BACKEND.json
    $ python -m edgequant.sweep.worker --build runs/groups/digits_cnn__BACKEND.build.json
    $ python -m edgequant.sweep.worker --pairs runs/pairs/digits_cnn__BACKEND.json
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import IO, Any

BENCH_LOG = "bench.log"


def _cpu_s() -> float:
    """CPU seconds of this process (all its threads) and of its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _emit(channel: IO[str], event: dict[str, Any]) -> None:
    channel.write(json.dumps(event) + "\n")
    channel.flush()


def _bench_config(item: dict[str, Any]) -> Any:
    """The ``BenchConfig`` of one cell of the cells file (quiet: the parent shows progress).

    ``item["config"]`` is :func:`edgequant.sweep.plan.cell_config`: ``BenchConfig``'s own
    keyword arguments, so there is no second list of the fields a cell may set.
    """
    from edgequant.bench.runner import BenchConfig

    config = {**item["config"], "run_dir": Path(item["run_dir"]), "progress": False}
    return BenchConfig(**config)


def _redirect_stderr(path: Path) -> None:
    """Point fd 2 (Python's and the native runtimes' stderr) at ``path``."""
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 2)
    os.close(fd)


def run_cells(cells: list[dict[str, Any]], channel: IO[str], cpu_at_start: float = 0.0) -> int:
    """Run each cell (``{"cell": ID, "run_dir": DIR, "config": {...}}``) and report on ``channel``.

    Returns the number of cells whose ``run_benchmark`` raised.
    """
    from edgequant.bench.runner import run_benchmark
    from edgequant.errors import EdgequantError

    errors = 0
    cpu_prev = cpu_at_start
    for item in cells:
        run_dir = Path(item["run_dir"])
        run_dir.mkdir(parents=True, exist_ok=True)
        _redirect_stderr(run_dir / BENCH_LOG)
        _emit(channel, {"event": "start", "cell": item["cell"]})
        t0 = time.perf_counter()
        error: str | None = None
        code: int | None = None
        try:
            run_benchmark(_bench_config(item))
        except EdgequantError as e:  # bad input, found before anything ran (like bench's exit)
            error, code = str(e).strip().splitlines()[0][:500], e.exit_code
        except Exception as e:  # one cell's bug must not cost the group
            lines = str(e).strip().splitlines()
            error, code = f"{type(e).__name__}: {lines[0][:400] if lines else ''}", 1
        if error is not None:
            errors += 1
            print(f"edgequant: error: {error}", file=sys.stderr, flush=True)
        cpu_now = _cpu_s()
        _emit(
            channel,
            {
                "event": "done",
                "cell": item["cell"],
                "seconds": round(time.perf_counter() - t0, 3),
                "cpu_s": round(cpu_now - cpu_prev, 3),
                "error": error,
                "exit_code": code,
            },
        )
        cpu_prev = cpu_now
    return errors


def build_cells(cells: list[dict[str, Any]]) -> int:
    """Build each cell's artifact; returns how many builds failed (each said on stderr)."""
    from edgequant.bench.runner import prepare_artifact

    failed = 0
    for item in cells:
        t0 = time.perf_counter()
        try:
            prepare_artifact(_bench_config(item))
            print(f"built {item['cell']} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
        except Exception as e:  # the measuring pass runs the cell again and records the error
            failed += 1
            lines = str(e).strip().splitlines()
            print(f"build of {item['cell']} failed: {lines[0] if lines else e!r}", file=sys.stderr)
    return failed


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m edgequant.sweep.worker [--build | --pairs] CELLS.json``."""
    args = sys.argv[1:] if argv is None else argv
    mode = args[0] if args and args[0] in ("--build", "--pairs") else None
    args = args[1:] if mode else args
    if len(args) != 1:
        print(
            "usage: python -m edgequant.sweep.worker [--build | --pairs] CELLS.json",
            file=sys.stderr,
        )
        return 2
    cells = json.loads(Path(args[0]).read_text())
    if mode == "--build":
        return 1 if build_cells(cells) else 0
    # the protocol keeps the real stdout; anything else printing to fd 1 lands on stderr
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    if mode == "--pairs":
        from edgequant.sweep.rounds import run_pair_tasks

        return 1 if run_pair_tasks(cells, channel) == len(cells) and cells else 0
    # the interpreter's start-up counts against the group (charged to its first cell)
    return 1 if run_cells(cells, channel, cpu_at_start=0.0) == len(cells) and cells else 0


if __name__ == "__main__":
    sys.exit(main())
