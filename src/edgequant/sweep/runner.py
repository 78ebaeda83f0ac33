"""Run an experiment's cells into a runs directory: decide, launch, record, index.

The sweep itself only decides and records; a :class:`~edgequant.sweep.launch.Launcher` runs the
cells (by default each in a fresh process on this machine, see :mod:`edgequant.sweep.local`):

* a cell whose ``RUNS_DIR/<cell-id>/result.json`` says ``ok`` or ``na`` is skipped (``force``
  re-runs it); ``failed`` and ``interrupted`` cells are retried, so a resumed sweep finishes the job;
* a cell the backend cannot run is recorded ``na`` with the backend's reason before anything is
  spawned (``Backend.supports`` is cheap); the child's own verdict is trusted too;
* Ctrl-C stops the cell in flight, records it ``interrupted`` and stops: at most that cell is lost;
* each record is written to ``result.json`` (the source of truth) and then indexed in
  ``results.db`` in one transaction;
* cells are ordered so that each fp32 cell is followed by the cells paired with it (same
  model, backend and scenario); once the cells are measured, each such pair gets interleaved
  paired rounds and the other cell's record its ``paired`` ratio with a 95% interval
  (:mod:`edgequant.sweep.pairs`; ``rounds:`` in the file, ``rounds=`` here); a pair already
  paired is skipped on resume;
* one sweep at a time per runs folder (:class:`~edgequant.sweep.lock.RunsLock`); the experiment
  file as written is kept as ``RUNS_DIR/experiment.yaml`` for the report.

Artifacts are shared through the artifact cache (``EDGEQUANT_CACHE``), so fp32/w8a8 are built once
per model and backend and found again by the other scenarios' cells.

Example:
    >>> from edgequant.sweep import parse_experiment
    >>> exp = parse_experiment("models: [digits_cnn]\\nschemes: [fp32]\\nscenarios: [Offline]")
    >>> bench_argv(exp.cells()[0], Path("runs"))[3:5]
    ['bench', '--model']
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from edgequant.console import log
from edgequant.errors import ValidationError
from edgequant.results.record import ResultRecord
from edgequant.results.store import ResultStore
from edgequant.sweep.checks import check_inputs, precheck
from edgequant.sweep.experiment import load_experiment
from edgequant.sweep.lanes import BuildAhead, build_ahead
from edgequant.sweep.launch import Finished, Launcher
from edgequant.sweep.local import ByIsolation, run_cell, run_group, worker_command
from edgequant.sweep.lock import RunsLock
from edgequant.sweep.pairs import (
    Pair,
    RoundsSpec,
    find_pairs,
    pair_order,
    parse_rounds_arg,
)
from edgequant.sweep.plan import (
    ISOLATIONS,
    Cell,
    Experiment,
    bench_argv,
    default_bench_command,
    write_schemes,
)
from edgequant.sweep.records import (
    RESULT_FILE,
    CellOutcome,
    SweepSummary,
    now,
    parent_record,
    read_record,
    recorded,
)

EXPERIMENT_COPY = "experiment.yaml"


def plan_cells(experiment: Experiment, isolation: str | None = None) -> list[Cell]:
    """The experiment's cells, ``isolation`` (``cell`` or ``backend``) overriding the file's."""
    cells = experiment.cells()
    if isolation is None:
        return cells
    if isolation not in ISOLATIONS:
        raise ValidationError(f"isolation must be cell or backend, got {isolation!r}")
    return [replace(c, isolation=isolation) for c in cells]


def dry_run_outcomes(
    cells: Sequence[Cell], runs: Path, *, force: bool, bench_command: Sequence[str] | None
) -> list[CellOutcome]:
    """What a sweep would do, cell by cell; runs nothing, writes nothing. Unknown models and
    missing data paths are refused (:func:`check_inputs`)."""
    check_inputs(cells)
    outcomes = []
    for cell in cells:
        done = None if force else recorded(cell, runs)
        why = None if done else precheck(cell)
        rec = done or (None if why is None else parent_record(cell, "na", why, now()))
        command = bench_argv(cell, runs, bench_command)
        outcomes.append(
            CellOutcome(cell=cell, record=rec, skipped=done is not None, command=command)
        )
    return outcomes


def plan_pairs(
    experiment: Experiment, cells: Sequence[Cell], rounds: RoundsSpec | str | None = None
) -> list[Pair]:
    """The pairs of ``cells`` that get paired rounds; ``rounds`` (a spec or ``--rounds`` text)
    replaces the file's ``rounds:`` settings."""
    override: RoundsSpec | bool | None = False
    if rounds is not None:
        override = parse_rounds_arg(rounds) if isinstance(rounds, str) else rounds
    return find_pairs(experiment, cells, override)


class _Sweep:
    """One sweep invocation's bookkeeping: saving, indexing, progress and outcomes."""

    def __init__(
        self,
        experiment: Experiment,
        runs: Path,
        store: ResultStore,
        total: int,
        bar: Any,
        on_cell: Callable[[CellOutcome], None] | None,
        bench_command: Sequence[str] | None,
    ) -> None:
        self.experiment, self.runs, self.store, self.bar = experiment, runs, store, bar
        self.total, self.on_cell, self.bench_command = total, on_cell, bench_command
        self.outcomes: list[CellOutcome] = []

    def report(self, outcome: CellOutcome) -> None:
        self.outcomes.append(outcome)
        if self.on_cell is not None:
            self.on_cell(outcome)
        self.bar.update(1)

    def finish(self, done: Finished) -> None:
        """Save and index one cell's new record; report it."""
        cell, record = done.cell, done.record
        record.device = record.device or cell.device
        command = bench_argv(cell, self.runs, self.bench_command)
        record.extra["sweep"] = {
            "experiment": self.experiment.name,
            "cell": cell.cell_id,
            "mode": cell.mode,
            "isolation": cell.isolation,
            "seconds": round(done.seconds, 3),
            # CPU seconds of the child: unlike wall time, this does not grow with load
            "child_cpu_s": None if done.cpu_s is None else round(done.cpu_s, 3),
            "command": command,
        }
        record.save(self.runs / cell.cell_id)
        self.store.add(cell.cell_id, record, self.runs / cell.cell_id)
        note = f": {record.reason}" if record.reason else ""
        n = len(self.outcomes) + 1
        log(f"[{n}/{self.total}] {cell.cell_id}: {record.status} ({done.seconds:.1f} s){note}")
        self.bar.set_description(cell.cell_id)
        self.report(CellOutcome(cell=cell, record=record, seconds=done.seconds, command=command))

    def triage(self, cells: Sequence[Cell], force: bool) -> list[Cell]:
        """Skip the recorded cells, record the n/a ones; returns the cells to run."""
        to_run: list[Cell] = []
        for cell in pair_order(cells):
            done = None if force else recorded(cell, self.runs)
            if done is not None:
                if self.store.get(cell.cell_id) != done:  # result.json is the truth: keep the index
                    self.store.add(cell.cell_id, done, self.runs / cell.cell_id)
                self.report(CellOutcome(cell=cell, record=done, skipped=True))
                continue
            why = precheck(cell) if cell.is_local else None  # a device checks its own runtimes
            if why is not None:
                self.finish(
                    Finished(cell=cell, record=parent_record(cell, "na", why, now()), seconds=0.0)
                )
                continue
            to_run.append(cell)
        return to_run

    def run(
        self,
        launch: Launcher,
        cells: Sequence[Cell],
        pairs: Sequence[Pair],
        force: bool,
        pairs_command: Sequence[str] | None,
    ) -> None:
        """Triage ``cells``, run the rest through ``launch``, then the pairs' rounds."""
        to_run = self.triage(cells, force)
        try:
            launch.run(to_run, self.runs, self.finish)
        except KeyboardInterrupt:  # index the cells left interrupted, then stop the sweep
            self.index_interrupted(to_run)
            raise
        self.pair_up(pairs, launch, pairs_command)

    def pair_up(
        self, pairs: Sequence[Pair], launch: Launcher, command: Sequence[str] | None
    ) -> None:
        """Paired rounds, where ``launch`` ran the cells, for the pairs whose sides are both ok
        and not yet paired; a pair with a side that is not ok gets ``paired: null`` and why."""
        todo: list[Pair] = []
        for pair in pairs:
            base = read_record(self.runs / pair.baseline.cell_id / RESULT_FILE)
            other = read_record(self.runs / pair.other.cell_id / RESULT_FILE)
            if other is None:
                continue
            if other.status == "ok" and base is not None and base.status == "ok":
                if other.paired is None:
                    todo.append(pair)
                continue
            cell, rec = (pair.other, other) if other.status != "ok" else (pair.baseline, base)
            why = f"not paired: {cell.cell_id} is {'not run' if rec is None else rec.status}"
            if rec is not None and rec.reason:
                why += f" ({rec.reason})"
            self.paired(pair, None, why[:500])
        if todo:
            log(f"paired rounds: {len(todo)} pair(s), each side by side in one process")
            launch.run_pairs(todo, self.runs, self.paired, command)

    def paired(self, pair: Pair, paired: dict[str, Any] | None, reason: str | None) -> None:
        """Write one pair's outcome into the other cell's record (and the index)."""
        cell = pair.other
        rec = read_record(self.runs / cell.cell_id / RESULT_FILE)
        if rec is None or (rec.paired == paired and rec.extra.get("paired_reason") == reason):
            return
        rec.paired = paired
        rec.extra.pop("paired_reason", None)
        if reason is not None:
            rec.extra["paired_reason"] = reason
        rec.save(self.runs / cell.cell_id)
        self.store.add(cell.cell_id, rec, self.runs / cell.cell_id)
        for o in self.outcomes:
            if o.cell.cell_id == cell.cell_id:
                o.record = rec
        if paired is not None:
            log(f"paired {cell.cell_id} vs {pair.baseline.scheme.name}: {paired_text(paired)}")
        elif rec.status == "ok":
            log(f"paired {cell.cell_id}: {reason}")

    def index_interrupted(self, cells: Sequence[Cell]) -> None:
        """Index the records a stopped launcher left ``interrupted``."""
        reported = {o.cell.cell_id for o in self.outcomes}
        for c in cells:
            rec: ResultRecord | None = read_record(self.runs / c.cell_id / RESULT_FILE)
            if c.cell_id not in reported and rec is not None and rec.status == "interrupted":
                self.store.add(c.cell_id, rec, self.runs / c.cell_id)


def default_launcher(
    *,
    jobs: int,
    bench_command: Sequence[str] | None = None,
    group_command: Sequence[str] | None = None,
) -> Launcher:
    """Each cell's isolation on this machine; with ``jobs`` above 1, builds ahead in lanes."""
    measure = ByIsolation(bench_command=bench_command, group_command=group_command)
    if jobs < 1:
        raise ValidationError(f"build jobs must be >= 1, got {jobs}")
    if jobs == 1:
        return measure

    def built(key: str, code: int) -> None:
        log(f"built {key}" + ("" if code == 0 else f" (some builds failed, exit {code})"))

    return BuildAhead(measure, jobs, command=group_command, on_built=built)


def _progress(total: int, show: bool | None) -> Any:
    """The sweep's progress bar on stderr (``show`` None: only on a terminal)."""
    from tqdm import tqdm

    progress = sys.stderr.isatty() if show is None else show
    return tqdm(
        total=total,
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
        unit="cell",
        leave=False,
    )


def run_sweep(
    experiment: Experiment | str | Path,
    runs_dir: Path | str,
    *,
    force: bool = False,
    dry_run: bool = False,
    bench_command: Sequence[str] | None = None,
    show_progress: bool | None = None,
    on_cell: Callable[[CellOutcome], None] | None = None,
    isolation: str | None = None,
    group_command: Sequence[str] | None = None,
    build_jobs: int | None = None,
    launcher: Launcher | None = None,
    cluster: str | None = None,
    rounds: RoundsSpec | str | None = None,
    pairs_command: Sequence[str] | None = None,
) -> SweepSummary:
    """Run every cell of ``experiment`` (an :class:`Experiment` or its YAML file) into
    ``runs_dir``; see the module docstring.

    ``isolation`` (``cell`` or ``backend``) overrides the experiment's; ``bench_command`` and
    ``group_command`` replace the bench and worker commands; ``build_jobs`` overrides the
    experiment's: above 1, the artifacts of the cells still to run are built that many
    model/backend pairs at a time before anything is measured; ``launcher`` replaces all that.
    ``cluster`` (a Dask scheduler, ``tcp://HOST:PORT``) runs the cells of devices other than
    ``local`` there (:class:`edgequant.sweep.fleet.launcher.DaskLauncher`).
    ``rounds`` (a :class:`~edgequant.sweep.pairs.RoundsSpec`, or ``--rounds`` text such as
    ``"3:8"``; ``"0"`` for none) replaces every group's ``rounds:``; ``pairs_command`` replaces
    the paired-rounds worker command (the pairs file is appended).

    Example:
        >>> summary = run_sweep("exp.yaml", "runs/")   # doctest: +SKIP
        >>> summary.counts                             # doctest: +SKIP
        {'ok': 8, 'skipped': 0}
    """
    from edgequant.bench.preflight import check_utf8_path

    exp = experiment if isinstance(experiment, Experiment) else load_experiment(experiment)
    runs = Path(runs_dir)
    check_utf8_path(runs)
    cells = plan_cells(exp, isolation)
    pairs = plan_pairs(exp, cells, rounds)  # a bad 'rounds:' is refused before anything runs
    t0 = time.perf_counter()
    if dry_run:
        outcomes = dry_run_outcomes(cells, runs, force=force, bench_command=bench_command)
        return SweepSummary(
            runs_dir=runs, outcomes=outcomes, seconds=time.perf_counter() - t0, dry_run=True
        )
    launch = launcher
    if launch is None:  # devices other than local run on a Dask cluster (edgequant.sweep.fleet)
        from edgequant.sweep.fleet import choose_launcher

        jobs = exp.build_jobs if build_jobs is None else build_jobs
        local = default_launcher(
            jobs=jobs, bench_command=bench_command, group_command=group_command
        )
        launch = choose_launcher(cells, cluster, local)
    with RunsLock(runs), ResultStore(runs) as store, _progress(len(cells), show_progress) as bar:
        write_schemes(exp, runs)
        if exp.text is not None:  # what was run, comments included, for the report
            (runs / EXPERIMENT_COPY).write_text(exp.text)
        sweep = _Sweep(exp, runs, store, len(cells), bar, on_cell, bench_command)
        sweep.run(launch, cells, pairs, force, pairs_command)
    position = {c.cell_id: i for i, c in enumerate(cells)}
    sweep.outcomes.sort(key=lambda o: position[o.cell.cell_id])
    summary = SweepSummary(runs_dir=runs, outcomes=sweep.outcomes, seconds=time.perf_counter() - t0)
    skipped = summary.counts.get("skipped", 0)
    if skipped:
        log(f"{skipped} cell(s) already recorded in {runs} were skipped (--force re-runs them)")
    return summary


def paired_text(paired: dict[str, Any]) -> str:
    """``2.58× [2.51, 2.66] (6 rounds, half-width)`` from a record's ``paired``.

    Example:
        >>> paired_text({"median": 2.5, "ci95": [2.4, 2.6], "rounds": 4, "stopped_by": "max-rounds"})
        '2.50× [2.40, 2.60] (4 rounds, max-rounds)'
    """
    ci = paired.get("ci95")
    interval = f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else " (no CI)"
    noise = paired.get("noise") or {}
    flag = f"; {noise.get('summary')}" if noise.get("noisy") else ""
    return (
        f"{paired['median']:.2f}×{interval} ({paired['rounds']} rounds, {paired['stopped_by']}"
        f"{flag})"
    )


def paired_lines(summary: SweepSummary) -> list[str]:
    """One line per cell with a ``paired`` ratio (or the reason it has none), for a summary."""
    lines = []
    for o in summary.outcomes:
        rec = o.record
        if rec is None or (rec.paired is None and "paired_reason" not in rec.extra):
            continue
        text = paired_text(rec.paired) if rec.paired else f"none: {rec.extra['paired_reason']}"
        metric = "" if rec.paired is None else f" {rec.paired.get('metric')}"
        lines.append(f"  {o.cell.cell_id}{metric}: {text}")
    return lines


__all__ = [
    "CellOutcome",
    "SweepSummary",
    "bench_argv",
    "build_ahead",
    "default_bench_command",
    "default_launcher",
    "dry_run_outcomes",
    "paired_lines",
    "paired_text",
    "plan_cells",
    "plan_pairs",
    "precheck",
    "recorded",
    "run_cell",
    "run_group",
    "run_sweep",
    "worker_command",
]
