"""The launcher interface: where and how a sweep's cells run.

A :class:`Launcher` takes the cells still to run and reports each one's record as soon as it is
known; the sweep (:func:`edgequant.sweep.run_sweep`) decides what to run, saves and indexes what
comes back, and shows progress. A launcher is told nothing about results storage, progress bars
or resuming, so another one can run cells elsewhere. Today's implementations
(:mod:`edgequant.sweep.local`, :mod:`edgequant.sweep.lanes`) run them on this machine:

* :class:`~edgequant.sweep.local.ProcessPerCell`: a fresh ``edgequant bench`` per cell;
* :class:`~edgequant.sweep.local.ProcessPerGroup`: one fresh worker per model/backend pair;
* :class:`~edgequant.sweep.local.ByIsolation`: each cell's ``isolation`` picks one of the two;
* :class:`~edgequant.sweep.lanes.BuildAhead`: builds the artifacts first, several pairs at a
  time in lanes chosen from the backends' capabilities, then hands the cells to another launcher.

The contract every launcher keeps (a distributed one, e.g. on Dask, included):

* each cell is described by :func:`edgequant.sweep.plan.cell_task` (JSON-safe ``BenchConfig``
  keyword arguments with the cell's ``run_dir``): ship that, never the :class:`Cell` object;
* ``on_record`` is called once per cell, **in the thread that called** :meth:`Launcher.run`,
  with a :class:`Finished`; the record's ``result.json`` may be absent (the sweep saves it);
* a bad cell never raises: it is a ``failed`` (or ``na``) record with a one-line reason;
* ``KeyboardInterrupt`` (Ctrl-C, SIGTERM via the CLI): stop everything started, save each cell
  in flight as ``interrupted`` in ``RUN_DIR/result.json`` (:func:`records.save_interrupted`), and
  re-raise; the sweep indexes those records and stops. Cells not started get no record.

For a launcher that runs cells on other machines (the device-fleet issue: one Dask task per cell,
routed by worker resources): the task's paths (``run_dir``, a scheme written to
``RUNS/schemes/``) are the submitting host's, so the launcher ships the scheme file's text and
the artifact with it and brings ``result.json`` (and ``loadgen/``) back before calling
``on_record``; the record's environment says which device measured it; a lost device is a
``failed`` record with the reason (or a retry elsewhere), never an exception; cells a device
cannot run are ``na``. Build-ahead (:class:`~edgequant.sweep.lanes.BuildAhead`) wraps any
measuring launcher, so builds on the submitting host come for free.

Example:
    >>> from edgequant.sweep.local import ProcessPerCell
    >>> isinstance(ProcessPerCell(), Launcher)
    True
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgequant.results.record import ResultRecord
from edgequant.sweep.plan import Cell


@dataclass(kw_only=True)
class Finished:
    """One cell's result as the launcher learned it: its record, wall and child CPU seconds."""

    cell: Cell
    record: ResultRecord
    seconds: float
    cpu_s: float | None = None


OnRecord = Callable[[Finished], None]


class Launcher(ABC):
    """Runs cells and reports each one's record (see the module docstring for the contract)."""

    @abstractmethod
    def run(self, cells: Sequence[Cell], runs_dir: Path, on_record: OnRecord) -> None:
        """Run every cell of ``cells`` into ``runs_dir``; ``on_record`` once per cell."""


# --- helpers of the launchers that start local processes ----------------------------------------
def child_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child: this very edgequant importable, unbuffered output."""
    out = dict(os.environ if env is None else env)
    src = str(Path(__file__).resolve().parents[2])
    out["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [out.get("PYTHONPATH")])])
    out.setdefault("PYTHONUNBUFFERED", "1")
    return out


def guarded(argv: Sequence[str]) -> list[str]:
    """``argv`` run through :mod:`edgequant.sweep.guard`: it dies with this process, even by
    ``kill -9``, and takes everything it started with it."""
    return [sys.executable, str(Path(__file__).with_name("guard.py")), "--", *argv]


def kill(proc: subprocess.Popen[str]) -> None:
    """End the child and everything it started (it runs in its own session)."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def children_cpu_s() -> float:
    """User + system CPU seconds of every finished child so far."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


__all__ = [
    "Finished",
    "Launcher",
    "OnRecord",
    "child_env",
    "children_cpu_s",
    "guarded",
    "kill",
]
