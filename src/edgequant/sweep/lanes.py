"""Build-ahead: build the artifacts of the cells to run, several model/backend pairs at a time,
then hand the cells to another launcher to measure on an otherwise idle machine.

Each pair runs ``python -m edgequant.sweep.worker --build`` in its own process (runtimes stay
apart) and logs to ``groups/PAIR.build.log``. A failed build is not recorded here: the measuring
pass runs that cell and records what goes wrong.

Lanes come from the backends' capabilities: a backend whose ``exclusive_build`` is set (one
build uses every core for long, such as AOTInductor's C++ compiles) builds one pair at a time,
beside the lighter builds of other backends (measured: two such builds at once made the demo's
build phase slower, not faster). When only exclusive builds are left, they fill every lane.

Example:
    >>> from edgequant.sweep.local import ByIsolation
    >>> BuildAhead(ByIsolation(), jobs=2).run(cells, Path("runs"), print)   # doctest: +SKIP
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

from edgequant.console import log
from edgequant.errors import ValidationError
from edgequant.sweep.launch import Launcher, OnRecord, kill, spawn
from edgequant.sweep.local import GROUPS_DIR, worker_command, write_cells_file
from edgequant.sweep.plan import Cell, by_key


def exclusive_build(backend: str) -> bool:
    """The backend's ``exclusive_build`` capability (False when it cannot be asked)."""
    from edgequant.backends import get_backend

    try:
        return bool(get_backend(backend).exclusive_build)
    except Exception:  # an unknown or broken backend: its cells fail in the measuring pass
        return False


class _Lanes:
    """Which pair to build next: exclusive pairs one at a time while lighter ones remain."""

    def __init__(self, pairs: dict[str, list[Cell]]) -> None:
        flags = {key: exclusive_build(group[0].backend) for key, group in pairs.items()}
        self.heavy = [k for k in pairs if flags[k]]
        self.light = [k for k in pairs if not flags[k]]
        self.flags = flags

    def __bool__(self) -> bool:
        return bool(self.heavy or self.light)

    def next(self, running: Sequence[str]) -> str:
        heavy_running = any(self.flags[k] for k in running)
        if self.heavy and (not heavy_running or not self.light):
            return self.heavy.pop(0)
        return self.light.pop(0)


class BuildAhead(Launcher):
    """Build every pair's artifacts ``jobs`` at a time, then run ``measure`` on the cells.

    ``command`` replaces the worker command (``--build CELLS.json`` is appended); ``on_built``
    gets each pair's key and exit code as it finishes.
    """

    def __init__(
        self,
        measure: Launcher,
        jobs: int,
        *,
        command: Sequence[str] | None = None,
        env: dict[str, str] | None = None,
        on_built: Callable[[str, int], None] | None = None,
    ) -> None:
        if jobs < 1:
            raise ValidationError(f"build jobs must be >= 1, got {jobs}")
        self.measure = measure
        self.jobs = jobs
        self.command = command
        self.env = env
        self.on_built = on_built
        self._procs: dict[str, subprocess.Popen[str]] = {}
        self._lock = threading.Lock()
        self._stopping = False

    def run(self, cells: Sequence[Cell], runs_dir: Path, on_record: OnRecord) -> None:
        if cells:
            n_pairs = len({c.pair_key for c in cells})
            log(f"building artifacts: {n_pairs} model/backend pairs, {self.jobs} at a time")
            t0 = time.perf_counter()
            codes = self.build(cells, runs_dir)
            clean = sum(1 for c in codes.values() if c == 0)
            log(
                f"builds done in {time.perf_counter() - t0:.0f} s "
                f"({clean}/{len(codes)} pairs clean); measuring"
            )
        self.measure.run(cells, runs_dir, on_record)

    def build(self, cells: Sequence[Cell], runs_dir: Path) -> dict[str, int]:
        """Build the pairs of ``cells``; returns each pair's exit code. ``KeyboardInterrupt``
        stops every build and propagates (nothing is recorded)."""
        pairs = by_key(cells, "pair_key")
        lanes = _Lanes(pairs)
        codes: dict[str, int] = {}
        running: dict[Future[int], str] = {}
        with ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="eq-build") as pool:
            try:
                while lanes or running:
                    while lanes and len(running) < self.jobs:
                        key = lanes.next(list(running.values()))
                        running[pool.submit(self._build_pair, key, pairs[key], runs_dir)] = key
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        key = running.pop(future)
                        codes[key] = future.result()
                        if self.on_built is not None:
                            self.on_built(key, codes[key])
            except BaseException:  # KeyboardInterrupt, SIGTERM: stop every build
                self._stop_all()
                raise
        return codes

    def _build_pair(self, key: str, group: list[Cell], runs_dir: Path) -> int:
        """One pair's build process, killed past the sum of its cells' timeouts."""
        cells_file = write_cells_file(group, runs_dir, f"{key}.build.json")
        argv = (
            [*self.command, "--build", str(cells_file)]
            if self.command
            else worker_command(cells_file, build=True)
        )
        with open(runs_dir / GROUPS_DIR / f"{key}.build.log", "w") as log_f:
            proc = spawn(argv, subprocess.STDOUT, self.env, stdout=log_f)
            with self._lock:
                self._procs[key] = proc
                stopping = self._stopping
            if stopping:  # started while the sweep was being stopped
                kill(proc)
            try:
                return proc.wait(timeout=sum(c.timeout_s for c in group))
            except subprocess.TimeoutExpired:
                kill(proc)
                return proc.returncode if proc.returncode is not None else -9
            finally:
                with self._lock:
                    self._procs.pop(key, None)

    def _stop_all(self) -> None:
        with self._lock:
            self._stopping = True
            procs = list(self._procs.values())
        for proc in procs:
            kill(proc)


def build_ahead(
    cells: Sequence[Cell],
    runs_dir: Path,
    jobs: int,
    *,
    command: Sequence[str] | None = None,
    env: dict[str, str] | None = None,
    on_done: Callable[[str, int], None] | None = None,
) -> dict[str, int]:
    """Build the artifacts of ``cells``, ``jobs`` model/backend pairs at a time; measure nothing.

    Example:
        >>> build_ahead(cells, Path("runs"), jobs=2)   # doctest: +SKIP
        {'resnet50__BACKEND': 0, 'mobilenet_v2__BACKEND': 0}
    """
    from edgequant.sweep.local import ByIsolation

    builder = BuildAhead(ByIsolation(), jobs, command=command, env=env, on_built=on_done)
    return builder.build(cells, runs_dir)


__all__ = ["BuildAhead", "build_ahead", "exclusive_build"]
