"""Launchers that run cells on this machine, each cell (or pair) in a fresh process.

Why a fresh process: a runtime that crashes (or leaks, or pins threads) costs one cell, or one
model/backend pair, and cannot disturb the next measurement.

* :class:`ProcessPerCell` runs ``edgequant bench --json`` per cell; a child that exits non-zero
  without a record is recorded ``failed`` with its stderr's last line (``na`` for bench's
  "unsupported" exit code); a cell past its ``timeout_s`` is killed and recorded ``failed``.
* :class:`ProcessPerGroup` runs the cells of one model/backend pair in turn in ONE worker
  (:mod:`edgequant.sweep.worker`), following its JSON-lines protocol: imports are paid once per
  pair; a crash costs the cell in flight plus the rest of the pair (recorded ``failed``).
* :class:`ByIsolation` hands each run of consecutive cells to one of them by ``Cell.isolation``.

Example:
    >>> from edgequant.sweep import parse_experiment
    >>> exp = parse_experiment("models: [digits_cnn]\\nschemes: [fp32]\\nscenarios: [Offline]")
    >>> ByIsolation().run(exp.cells(), Path("runs"), print)   # doctest: +SKIP
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgequant.errors import UnsupportedError
from edgequant.results.record import ResultRecord
from edgequant.sweep.launch import (
    Finished,
    Launcher,
    OnRecord,
    children_cpu_s,
    kill,
    line_queue,
    spawn,
)
from edgequant.sweep.plan import Cell, bench_argv, by_key, cell_task
from edgequant.sweep.records import (
    BENCH_LOG,
    RESULT_FILE,
    bench_record,
    fresh_run_dir,
    last_line,
    now,
    parent_record,
    read_record,
    save_interrupted,
)

GROUPS_DIR = "groups"


def run_cell(
    cell: Cell,
    runs_dir: Path,
    bench_command: Sequence[str] | None = None,
    env: dict[str, str] | None = None,
) -> ResultRecord:
    """Run one cell in a fresh process and return its record (never raises for a bad cell).

    ``KeyboardInterrupt`` kills the child, saves an ``interrupted`` record and propagates.
    """
    run_dir = fresh_run_dir(cell, runs_dir)
    started = now()
    with open(run_dir / BENCH_LOG, "w") as errf:
        proc = spawn(bench_argv(cell, runs_dir, bench_command), errf, env)
        try:
            out, _ = proc.communicate(timeout=cell.timeout_s)
        except subprocess.TimeoutExpired:
            kill(proc)
            why = f"timed out after {cell.timeout_s:g} s (cell_timeout_s)"
            return parent_record(cell, "failed", why, started)
        except BaseException:  # KeyboardInterrupt, SIGTERM: stop the child, keep nothing half-done
            kill(proc)
            save_interrupted(cell, runs_dir, started)
            raise
    return bench_record(cell, out, run_dir, proc.returncode, started)


class _Spawning(Launcher):
    """A launcher of local child processes: ``command`` replaces the default child command (its
    arguments are appended), ``env`` the environment (:func:`~edgequant.sweep.launch.child_env`)."""

    def __init__(
        self, command: Sequence[str] | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.command = command
        self.env = env


class ProcessPerCell(_Spawning):
    """A fresh ``edgequant bench`` per cell (``command`` replaces ``python -m edgequant bench``;
    the cell's flags are appended)."""

    def run(self, cells: Sequence[Cell], runs_dir: Path, on_record: OnRecord) -> None:
        for cell in cells:
            t0, cpu0 = time.perf_counter(), children_cpu_s()
            record = run_cell(cell, runs_dir, self.command, self.env)
            seconds = time.perf_counter() - t0
            on_record(
                Finished(cell=cell, record=record, seconds=seconds, cpu_s=children_cpu_s() - cpu0)
            )


def worker_command(cells_file: Path, *, build: bool = False) -> list[str]:
    """``python -m edgequant.sweep.worker [--build] CELLS.json``: the process of one model/backend
    group (``build``: only build its artifacts)."""
    flag = ["--build"] if build else []
    return [sys.executable, "-m", "edgequant.sweep.worker", *flag, str(cells_file)]


def write_cells_file(cells: Sequence[Cell], runs_dir: Path, name: str) -> Path:
    """``RUNS/groups/NAME``: the cells a worker runs (one :func:`cell_task` each)."""
    groups_dir = runs_dir / GROUPS_DIR
    groups_dir.mkdir(parents=True, exist_ok=True)
    path = groups_dir / name
    path.write_text(json.dumps([cell_task(c, runs_dir) for c in cells], indent=1))
    return path


class _GroupRun:
    """One worker process running one model/backend pair's cells, followed line by line."""

    def __init__(self, cells: Sequence[Cell], runs_dir: Path, on_record: OnRecord) -> None:
        self.runs_dir = runs_dir
        self.on_record = on_record
        self.key = cells[0].process_key
        self.pending = list(cells)
        self.by_id = {c.cell_id: c for c in cells}
        self.current: Cell | None = None
        self.started = now()
        self.t_cell = time.perf_counter()
        self.why: str | None = None

    def follow(self, proc: subprocess.Popen[str]) -> None:
        """Read the worker's events until it ends, a cell times out, or every cell is done."""
        lines = line_queue(proc, "eq-group-reader")  # None: the worker exited (or crashed)
        while self.pending:
            timeout = (self.current or self.pending[0]).timeout_s
            try:
                line = lines.get(timeout=max(0.1, timeout - (time.perf_counter() - self.t_cell)))
            except queue.Empty:
                kill(proc)
                self.why = f"timed out after {timeout:g} s (cell_timeout_s)"
                return
            if line is None:
                return
            self.event(line)

    def event(self, line: str) -> None:
        """One line of the worker's stdout: a protocol event, or noise to ignore."""
        try:
            event = json.loads(line)
            cell = self.by_id[event["cell"]]
        except (json.JSONDecodeError, KeyError, TypeError):
            return
        if event.get("event") == "start":
            self.current, self.t_cell, self.started = cell, time.perf_counter(), now()
        elif event.get("event") == "done" and cell in self.pending:
            self.pending.remove(cell)
            self.current = None
            cpu = event.get("cpu_s")
            self.on_record(
                Finished(
                    cell=cell,
                    record=self.done_record(cell, event),
                    seconds=time.perf_counter() - self.t_cell,
                    cpu_s=None if cpu is None else float(cpu),
                )
            )
            self.t_cell = time.perf_counter()

    def done_record(self, cell: Cell, event: dict[str, Any]) -> ResultRecord:
        """The record of a cell the worker reported done (its own, or one for its error)."""
        error = event.get("error")
        if error:
            status = "na" if event.get("exit_code") == UnsupportedError.exit_code else "failed"
            return parent_record(cell, status, str(error), self.started)
        rec = read_record(self.runs_dir / cell.cell_id / RESULT_FILE)
        if rec is None:
            return parent_record(cell, "failed", "the worker saved no result record", self.started)
        return rec

    def lost(self, code: int | None) -> None:
        """The worker died (or hung) early: the cell in flight and the rest are recorded failed."""
        lost = self.current or self.pending[0]
        why = self.why
        if why is None:
            log = self.runs_dir / lost.cell_id / BENCH_LOG
            group_log = self.runs_dir / GROUPS_DIR / f"{self.key}.log"
            why = last_line(log.read_text(errors="replace") if log.is_file() else "")
            why = why or last_line(group_log.read_text(errors="replace"))
            why = why or f"the worker exited with code {code}"
            if code is not None and code < 0:
                why = f"the worker was killed by signal {-code}; {why}"
        for cell in list(self.pending):
            reason = why
            if cell is not lost:
                reason = f"not run: the {self.key} process ended at {lost.cell_id} ({why})"
            seconds = time.perf_counter() - self.t_cell if cell is lost else 0.0
            record = parent_record(cell, "failed", reason[:500], self.started)
            self.on_record(Finished(cell=cell, record=record, seconds=seconds))


def run_group(
    cells: Sequence[Cell],
    runs_dir: Path,
    *,
    command: Sequence[str] | None = None,
    env: dict[str, str] | None = None,
    on_done: OnRecord,
) -> None:
    """Run ``cells`` (one model, one backend) in turn in ONE fresh worker process.

    ``on_done`` gets each cell's :class:`Finished` as soon as the worker reports it. A worker that
    dies or exceeds a cell's timeout costs the cell in flight and the cells after it (recorded
    ``failed`` with the error line; a resumed sweep re-runs them). ``KeyboardInterrupt`` kills
    the worker, saves the cell in flight as ``interrupted`` and propagates.
    """
    if not cells:
        return
    group = _GroupRun(cells, runs_dir, on_done)
    cells_file = write_cells_file(cells, runs_dir, f"{group.key}.json")
    for c in cells:
        fresh_run_dir(c, runs_dir)
    argv = [*command, str(cells_file)] if command else worker_command(cells_file)
    with open(runs_dir / GROUPS_DIR / f"{group.key}.log", "w") as errf:
        proc = spawn(argv, errf, env)
        try:
            group.follow(proc)
        except BaseException:  # KeyboardInterrupt, SIGTERM: stop the worker, keep nothing half-done
            kill(proc)
            if group.current is not None:
                save_interrupted(group.current, runs_dir, group.started)
            raise
        if group.why is None:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                kill(proc)
    if group.pending:
        group.lost(proc.returncode)


class ProcessPerGroup(_Spawning):
    """One fresh worker per model/backend pair (``command`` replaces the worker command; the
    cells file is appended)."""

    def run(self, cells: Sequence[Cell], runs_dir: Path, on_record: OnRecord) -> None:
        for group in by_key(cells, "process_key").values():
            run_group(group, runs_dir, command=self.command, env=self.env, on_done=on_record)


class ByIsolation(Launcher):
    """Each run of consecutive cells of one ``isolation`` goes to that isolation's launcher."""

    def __init__(
        self,
        *,
        bench_command: Sequence[str] | None = None,
        group_command: Sequence[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.launchers: dict[str, Launcher] = {
            "cell": ProcessPerCell(bench_command, env),
            "backend": ProcessPerGroup(group_command, env),
        }

    def run(self, cells: Sequence[Cell], runs_dir: Path, on_record: OnRecord) -> None:
        batch: list[Cell] = []
        for cell in [*cells, None]:
            if batch and (cell is None or cell.isolation != batch[0].isolation):
                self.launchers[batch[0].isolation].run(batch, runs_dir, on_record)
                batch = []
            if cell is not None:
                batch.append(cell)


__all__ = [
    "BENCH_LOG",
    "ByIsolation",
    "ProcessPerCell",
    "ProcessPerGroup",
    "run_cell",
    "run_group",
    "worker_command",
    "write_cells_file",
]
