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
  re-raise; the sweep indexes those records and stops. Cells not started get no record;
* :meth:`Launcher.run_pairs` runs the paired rounds of cells it ran, where they ran (both
  artifacts side by side in one process); the default runs them on this machine.

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
import queue
import resource
import signal
import subprocess
import sys
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from edgequant.results.record import ResultRecord
from edgequant.sweep.plan import Cell

if TYPE_CHECKING:
    from edgequant.sweep.pairs import OnPaired, Pair


@dataclass(kw_only=True)
class Finished:
    """One cell's result as the launcher learned it: its record, wall and child CPU seconds.

    Example:
        >>> from edgequant.sweep import parse_experiment
        >>> from edgequant.sweep.records import now, parent_record
        >>> cell = parse_experiment("models: [digits_cnn]").cells()[0]
        >>> Finished(cell=cell, record=parent_record(cell, "na", "why", now()), seconds=0.0).seconds
        0.0
    """

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

    def run_pairs(
        self,
        pairs: Sequence[Pair],
        runs_dir: Path,
        on_paired: OnPaired,
        command: Sequence[str] | None = None,
    ) -> None:
        """Run the paired rounds of ``pairs`` (cells this launcher ran) where their cells ran;
        ``on_paired`` once per pair, in the caller's thread. Pairs of ``local`` run here, one
        fresh process per model/backend (:func:`edgequant.sweep.pairs.run_pairs`; ``command``
        replaces its worker command); the others go to :meth:`run_device_pairs`."""
        from edgequant.sweep.pairs import run_pairs

        remote = [p for p in pairs if not p.other.is_local]
        if remote:
            self.run_device_pairs(remote, runs_dir, on_paired)
        here = [p for p in pairs if p.other.is_local]
        if here:
            run_pairs(here, runs_dir, on_paired, command=command, env=getattr(self, "env", None))

    def run_device_pairs(self, pairs: Sequence[Pair], runs_dir: Path, on_paired: OnPaired) -> None:
        """The pairs of other devices, on their devices: only a launcher of other machines runs
        their cells; here they get ``paired: null`` and why."""
        for p in pairs:
            on_paired(
                p, None, f"not paired: {type(self).__name__} runs nothing on {p.other.device}"
            )


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


def spawn(
    argv: Sequence[str],
    stderr: IO[str] | int,
    env: dict[str, str] | None = None,
    stdout: IO[str] | int = subprocess.PIPE,
) -> subprocess.Popen[str]:
    """Start ``argv`` :func:`guarded`, in its own session (so :func:`kill` takes its whole
    group), with :func:`child_env`; its stdout a pipe unless told otherwise.

    Example:
        >>> proc = spawn([sys.executable, "-c", "print('hi')"], stderr=subprocess.DEVNULL)
        >>> proc.communicate()[0]
        'hi\\n'
    """
    return subprocess.Popen(
        guarded(argv),
        stdout=stdout,
        stderr=stderr,
        text=True,
        env=child_env(env),
        start_new_session=True,
    )


def line_queue(proc: subprocess.Popen[str], name: str = "eq-reader") -> queue.Queue[str | None]:
    """The child's stdout lines as they come, read by a daemon thread; ``None`` once it closed
    its end (it exited or crashed), so the reader can wait with a timeout.

    Example:
        >>> q = line_queue(spawn([sys.executable, "-c", "print(1)"], stderr=subprocess.DEVNULL))
        >>> q.get(timeout=30), q.get(timeout=30)
        ('1\\n', None)
    """
    lines: queue.Queue[str | None] = queue.Queue()

    def _read(stream: Any) -> None:
        if stream is not None:
            for line in stream:
                lines.put(line)
        lines.put(None)

    threading.Thread(target=_read, args=(proc.stdout,), name=name, daemon=True).start()
    return lines


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
    "line_queue",
    "spawn",
]
