"""Run an experiment's cells, each in a fresh ``edgequant bench`` subprocess, into a runs directory.

Why a subprocess per cell: a runtime that crashes (or leaks, or pins threads) costs one cell and
cannot disturb the next measurement. The parent only decides, spawns, records and indexes:

* a cell whose ``RUNS_DIR/<cell-id>/result.json`` says ``ok`` or ``na`` is skipped (``force``
  re-runs it); ``failed`` and ``interrupted`` cells are retried, so a resumed sweep finishes the job;
* a cell the backend cannot run is recorded ``na`` with the backend's reason before anything is
  spawned (``Backend.supports`` is cheap); the child's own verdict is trusted too;
* a child that exits non-zero without a record is recorded ``failed`` with its stderr's last line;
* Ctrl-C kills the child in flight, records that cell ``interrupted`` and stops: at most that cell
  is lost;
* each record is written to ``result.json`` (the source of truth) and then indexed in
  ``results.db`` in one transaction.

With ``isolation: backend`` the cells of one model/backend pair run in turn in ONE fresh worker
process (:mod:`edgequant.sweep.worker`, which calls ``run_benchmark`` per cell and saves each record
at once): the imports are paid once per pair, runtimes stay apart, and a crash costs the cell in
flight plus the rest of that pair (recorded ``failed`` with the error line, retried on resume).

Artifacts are shared through the artifact cache (``EDGEQUANT_CACHE``), so fp32/w8a8 are built once
per model and backend and found again by the other scenarios' cells.

Example:
    >>> from edgequant.sweep import parse_experiment
    >>> exp = parse_experiment("models: [digits_cnn]\\nschemes: [fp32]\\nscenarios: [Offline]")
    >>> bench_argv(exp.cells()[0], Path("runs"))[3:7]
    ['bench', '--model', 'digits_cnn', '--backend']
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgequant.console import log
from edgequant.errors import EdgequantError, UnsupportedError, ValidationError
from edgequant.results.record import ResultRecord
from edgequant.results.store import ResultStore
from edgequant.sweep.experiment import ISOLATIONS, Cell, Experiment

#: statuses that count as "recorded": a resumed sweep skips these cells
DONE_STATUSES = ("ok", "na")
BENCH_LOG = "bench.log"


@dataclass(kw_only=True)
class CellOutcome:
    """What happened to one cell in this sweep invocation."""

    cell: Cell
    record: ResultRecord | None
    seconds: float = 0.0
    skipped: bool = False
    command: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        if self.record is None:
            return "planned"
        return self.record.status


@dataclass(kw_only=True)
class SweepSummary:
    """The outcome of :func:`run_sweep`: one :class:`CellOutcome` per cell, in order."""

    runs_dir: Path
    outcomes: list[CellOutcome]
    seconds: float
    dry_run: bool = False

    @property
    def counts(self) -> dict[str, int]:
        """Cells per status, plus ``skipped`` (recorded before this invocation)."""
        c = Counter(o.status for o in self.outcomes)
        c["skipped"] = sum(o.skipped for o in self.outcomes)
        return dict(c)

    def to_dict(self) -> dict[str, Any]:
        return {
            "runs_dir": str(self.runs_dir),
            "seconds": round(self.seconds, 2),
            "dry_run": self.dry_run,
            "counts": self.counts,
            "cells": [
                {
                    "cell": o.cell.cell_id,
                    "status": o.status,
                    "skipped": o.skipped,
                    "seconds": round(o.seconds, 2),
                    "reason": None if o.record is None else o.record.reason,
                    "throughput_ips": None if o.record is None else o.record.throughput_ips,
                    "command": o.command,
                }
                for o in self.outcomes
            ],
        }


def default_bench_command() -> list[str]:
    """``python -m edgequant bench``, with the interpreter running this sweep."""
    return [sys.executable, "-m", "edgequant", "bench"]


def bench_argv(cell: Cell, runs_dir: Path, bench_command: Sequence[str] | None = None) -> list[str]:
    """The command line that runs one cell (DESIGN.md's ``edgequant bench`` flags)."""
    argv = list(bench_command or default_bench_command())
    argv += ["--model", cell.model.name]
    if cell.model.arch:
        argv += ["--arch", cell.model.arch]
    if cell.model.weights:
        argv += ["--weights", cell.model.weights]
    argv += ["--backend", cell.backend, "--scheme", _scheme_arg(cell, runs_dir)]
    argv += ["--scenario", cell.scenario, "--data", cell.data]
    if cell.scheme.scheme.needs_calibration:
        argv += ["--calib", cell.calib or cell.data]
    if cell.mode == "accuracy":
        argv.append("--accuracy")
    argv += ["--threads", str(cell.threads), "--duration", f"{cell.duration_s:g}"]
    argv += ["-o", str(runs_dir / cell.cell_id), "--json"]
    return argv


def _scheme_arg(cell: Cell, runs_dir: Path) -> str:
    """A built-in name or YAML file as written; a full dict is written to ``schemes/``."""
    spec = cell.scheme.spec
    if isinstance(spec, str):
        return spec
    return str(runs_dir / "schemes" / _scheme_file(cell.scheme.scheme))


def _scheme_file(scheme: Any) -> str:
    """``NAME-HASH.yaml``: two different dicts may share a name (e.g. w8a8 with fewer samples)."""
    import hashlib

    digest = hashlib.sha1(json.dumps(scheme.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
    return f"{scheme.name}-{digest}.yaml"


def _write_schemes(experiment: Experiment, runs_dir: Path) -> None:
    import yaml

    for g in experiment.groups:
        for ref in g.schemes:
            if isinstance(ref.spec, dict):
                out = runs_dir / "schemes" / _scheme_file(ref.scheme)
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(yaml.safe_dump(ref.scheme.to_dict(), sort_keys=False))


def _process_order(cells: Sequence[Cell]) -> list[Cell]:
    """The cells grouped by process key (first-seen order): one group's cells run back to back."""
    keyed: dict[str, list[Cell]] = {}
    for c in cells:
        keyed.setdefault(c.process_key, []).append(c)
    return [c for group in keyed.values() for c in group]


def precheck(cell: Cell) -> str | None:
    """The reason this cell cannot run (→ ``na``) found cheaply in the parent, else None.

    Only the backend's own verdicts count; anything unexpected is left to the child to report.
    """
    from edgequant.backends.base import get_backend

    try:
        backend = get_backend(cell.backend)
    except ImportError as e:  # the backend's module is not part of this installation
        return f"backend {cell.backend} is not available in this edgequant installation ({e})"
    except ValidationError:
        return None  # an unknown name: the child reports it properly
    try:
        why = backend.unavailable_reason()
        if why is not None:
            return f"backend {cell.backend} unavailable: {why}"
        if cell.model.is_onnx_file and backend.needs_torch_module:
            return (
                f"{cell.backend} builds from the PyTorch model; a user's .onnx file cannot be used"
            )
        return backend.supports(cell.scheme.scheme, None)
    except UnsupportedError as e:
        return str(e)
    except Exception:  # a backend bug must not stop the sweep; the child will show it
        return None


def _children_cpu_s() -> float:
    """User + system CPU seconds of every finished child so far."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _parent_record(cell: Cell, status: str, reason: str, started: str) -> ResultRecord:
    """A record written by the sweep itself (n/a before spawning, a crash, an interrupt)."""
    return ResultRecord(
        model=cell.model.label,
        backend=cell.backend,
        scheme=cell.scheme.name,
        scenario=cell.scenario,
        dataset=cell.data,
        threads=cell.threads,
        batch_size=1,
        status=status,
        reason=reason,
        scheme_detail=cell.scheme.scheme.to_dict(),
        started_at=started,
        finished_at=_now(),
    )


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return ""
    line = lines[-1]
    for prefix in ("edgequant: error: ", "error: "):
        if line.startswith(prefix):
            line = line[len(prefix) :]
    return line[:500]


def _kill(proc: subprocess.Popen[str]) -> None:
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


def run_cell(
    cell: Cell,
    runs_dir: Path,
    bench_command: Sequence[str] | None = None,
    env: dict[str, str] | None = None,
) -> ResultRecord:
    """Run one cell in a fresh process and return its record (never raises for a bad cell).

    ``KeyboardInterrupt`` kills the child, saves an ``interrupted`` record and propagates.
    """
    run_dir = runs_dir / cell.cell_id
    run_dir.mkdir(parents=True, exist_ok=True)
    stale = run_dir / "result.json"
    stale.unlink(
        missing_ok=True
    )  # a previous failed attempt's record must not be mistaken for ours
    argv = bench_argv(cell, runs_dir, bench_command)
    started = _now()
    child_env = _child_env(env)
    with open(run_dir / BENCH_LOG, "w") as errf:
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=errf,
            text=True,
            env=child_env,
            start_new_session=True,
        )
        try:
            out, _ = proc.communicate(timeout=cell.timeout_s)
        except subprocess.TimeoutExpired:
            _kill(proc)
            rec = _parent_record(
                cell, "failed", f"timed out after {cell.timeout_s:g} s (cell_timeout_s)", started
            )
            return rec
        except BaseException:  # KeyboardInterrupt, SIGTERM: stop the child, keep nothing half-done
            _kill(proc)
            _parent_record(cell, "interrupted", "interrupted by the user", started).save(run_dir)
            raise
    err_text = (run_dir / BENCH_LOG).read_text(errors="replace")
    record = _parse_record(out) or _read_record(stale)
    if record is not None:
        # the child's record is its verdict (bench exits 3 for an INVALID run, 3/8 for n/a/failed)
        return record
    if proc.returncode == 0:
        return _parent_record(cell, "failed", "bench printed no result record", started)
    reason = _last_line(err_text) or f"bench exited with code {proc.returncode}"
    if proc.returncode == UnsupportedError.exit_code:
        return _parent_record(cell, "na", reason, started)
    if proc.returncode < 0:
        reason = f"bench was killed by signal {-proc.returncode}; {reason}"
    return _parent_record(cell, "failed", reason, started)


def worker_command(cells_file: Path, *, build: bool = False) -> list[str]:
    """``python -m edgequant.sweep.worker [--build] CELLS.json``: the process of one model/backend
    group (``build``: only build its artifacts)."""
    flag = ["--build"] if build else []
    return [sys.executable, "-m", "edgequant.sweep.worker", *flag, str(cells_file)]


def _worker_cell(cell: Cell, runs_dir: Path) -> dict[str, Any]:
    """What the worker needs to run one cell: the same settings as :func:`bench_argv`."""
    config: dict[str, Any] = {
        "model": cell.model.name,
        "backend": cell.backend,
        "scheme": _scheme_arg(cell, runs_dir),
        "scenario": cell.scenario,
        "data": cell.data,
        "accuracy": cell.mode == "accuracy",
        "threads": cell.threads,
        "duration_s": cell.duration_s,
    }
    if cell.model.arch:
        config["arch"] = cell.model.arch
    if cell.model.weights:
        config["weights"] = cell.model.weights
    if cell.scheme.scheme.needs_calibration:
        config["calib"] = cell.calib or cell.data
    return {"cell": cell.cell_id, "run_dir": str(runs_dir / cell.cell_id), "config": config}


def _child_env(env: dict[str, str] | None) -> dict[str, str]:
    child_env = dict(os.environ if env is None else env)
    # the child must import this very edgequant, installed or not
    src = str(Path(__file__).resolve().parents[2])
    child_env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [child_env.get("PYTHONPATH")])])
    child_env.setdefault("PYTHONUNBUFFERED", "1")
    return child_env


@dataclass(kw_only=True)
class _Done:
    """One group cell's result as the parent learned it."""

    cell: Cell
    record: ResultRecord
    seconds: float
    cpu_s: float | None


def run_group(
    cells: Sequence[Cell],
    runs_dir: Path,
    *,
    command: Sequence[str] | None = None,
    env: dict[str, str] | None = None,
    on_done: Callable[[_Done], None],
) -> None:
    """Run ``cells`` (one model, one backend) in turn in ONE fresh worker process.

    ``on_done`` gets each cell's record as soon as the worker reports it. A worker that dies or
    exceeds a cell's timeout costs the cell in flight and the cells after it (recorded
    ``failed`` with the error line; a resumed sweep re-runs them). ``KeyboardInterrupt`` kills
    the worker, saves the cell in flight as ``interrupted`` and propagates.
    """
    import queue
    import threading

    if not cells:
        return
    key = cells[0].process_key
    groups_dir = runs_dir / "groups"
    groups_dir.mkdir(parents=True, exist_ok=True)
    cells_file = groups_dir / f"{key}.json"
    cells_file.write_text(json.dumps([_worker_cell(c, runs_dir) for c in cells], indent=1))
    for c in cells:  # a previous failed attempt's record must not be mistaken for ours
        (runs_dir / c.cell_id).mkdir(parents=True, exist_ok=True)
        (runs_dir / c.cell_id / "result.json").unlink(missing_ok=True)
    argv = [*command, str(cells_file)] if command else worker_command(cells_file)
    by_id = {c.cell_id: c for c in cells}
    pending = list(cells)
    started = _now()
    current: Cell | None = None
    t_cell = time.perf_counter()
    with open(groups_dir / f"{key}.log", "w") as errf:
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=errf,
            text=True,
            env=_child_env(env),
            start_new_session=True,
        )
        lines: queue.Queue[str | None] = queue.Queue()

        def _read() -> None:
            if proc.stdout is not None:
                for line in proc.stdout:
                    lines.put(line)
            lines.put(None)  # the worker closed its end: it exited (or crashed)

        reader = threading.Thread(target=_read, name="eq-group-reader", daemon=True)
        reader.start()
        why: str | None = None
        try:
            while pending:
                timeout = (current or pending[0]).timeout_s
                try:
                    line = lines.get(timeout=max(0.1, timeout - (time.perf_counter() - t_cell)))
                except queue.Empty:
                    _kill(proc)
                    why = f"timed out after {timeout:g} s (cell_timeout_s)"
                    break
                if line is None:
                    break
                try:
                    event = json.loads(line)
                    cell = by_id[event["cell"]]
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # not the protocol: ignore
                if event.get("event") == "start":
                    current, t_cell, started = cell, time.perf_counter(), _now()
                elif event.get("event") == "done" and cell in pending:
                    pending.remove(cell)
                    current = None
                    rec = _group_record(cell, runs_dir, event, started)
                    cpu = event.get("cpu_s")
                    on_done(
                        _Done(
                            cell=cell,
                            record=rec,
                            seconds=time.perf_counter() - t_cell,
                            cpu_s=None if cpu is None else float(cpu),
                        )
                    )
                    t_cell = time.perf_counter()
        except BaseException:  # KeyboardInterrupt, SIGTERM: stop the worker, keep nothing half-done
            _kill(proc)
            if current is not None:
                rec = _parent_record(current, "interrupted", "interrupted by the user", started)
                rec.save(runs_dir / current.cell_id)
            raise
        if why is None:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                _kill(proc)
    if not pending:
        return
    # the worker died (or hung) before finishing: the cell in flight and the rest are lost
    code = proc.returncode
    lost = current or pending[0]
    if why is None:
        log_text = (
            (runs_dir / lost.cell_id / BENCH_LOG).read_text(errors="replace")
            if (runs_dir / lost.cell_id / BENCH_LOG).is_file()
            else ""
        )
        why = _last_line(log_text) or _last_line(
            (groups_dir / f"{key}.log").read_text(errors="replace")
        )
        why = why or f"the worker exited with code {code}"
        if code is not None and code < 0:
            why = f"the worker was killed by signal {-code}; {why}"
    for cell in list(pending):
        reason = (
            why if cell is lost else f"not run: the {key} process ended at {lost.cell_id} ({why})"
        )
        on_done(
            _Done(
                cell=cell,
                record=_parent_record(cell, "failed", reason[:500], started),
                seconds=time.perf_counter() - t_cell if cell is lost else 0.0,
                cpu_s=None,
            )
        )


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

    Each pair runs ``python -m edgequant.sweep.worker --build`` in its own process (runtimes
    stay apart) and logs to ``groups/PAIR.build.log``. A failed build is not recorded here: the
    measuring pass runs that cell and records what goes wrong. Returns each pair's exit code.
    ``KeyboardInterrupt`` stops every build and propagates (nothing is recorded).

    Example:
        >>> build_ahead(cells, Path("runs"), jobs=2)   # doctest: +SKIP
        {'resnet50__pytorch': 0, 'resnet50__openvino': 0}
    """
    pairs: dict[str, list[Cell]] = {}
    for c in cells:
        pairs.setdefault(c.pair_key, []).append(c)
    groups_dir = runs_dir / "groups"
    groups_dir.mkdir(parents=True, exist_ok=True)
    # PyTorch's AOTInductor builds take several times the others' and load the machine alike
    # (g++ on one core, Inductor on the other): one at a time, beside the other runtimes' builds
    # (measured: two at once made the demo's build phase slower, not faster)
    heavy = [kv for kv in pairs.items() if kv[1][0].backend == "pytorch"]
    light = [kv for kv in pairs.items() if kv[1][0].backend != "pytorch"]
    running: dict[str, tuple[subprocess.Popen[str], float, Any]] = {}
    codes: dict[str, int] = {}

    def next_pair() -> tuple[str, list[Cell]]:
        heavy_running = any(pairs[k][0].backend == "pytorch" for k in running)
        if heavy and (not heavy_running or not light):
            return heavy.pop(0)
        return light.pop(0)

    try:
        while heavy or light or running:
            while (heavy or light) and len(running) < jobs:
                key, group = next_pair()
                cells_file = groups_dir / f"{key}.build.json"
                cells_file.write_text(
                    json.dumps([_worker_cell(c, runs_dir) for c in group], indent=1)
                )
                argv = (
                    [*command, "--build", str(cells_file)]
                    if command
                    else worker_command(cells_file, build=True)
                )
                log_f = open(groups_dir / f"{key}.build.log", "w")  # noqa: SIM115 (closed below)
                proc = subprocess.Popen(
                    argv,
                    stdout=log_f,
                    stderr=subprocess.STDOUT,
                    text=True,
                    env=_child_env(env),
                    start_new_session=True,
                )
                deadline = time.perf_counter() + sum(c.timeout_s for c in group)
                running[key] = (proc, deadline, log_f)
            for key, (proc, deadline, log_f) in list(running.items()):
                code = proc.poll()
                if code is None and time.perf_counter() > deadline:
                    _kill(proc)
                    code = proc.returncode if proc.returncode is not None else -9
                if code is not None:
                    log_f.close()
                    del running[key]
                    codes[key] = code
                    if on_done is not None:
                        on_done(key, code)
            time.sleep(0.2)
    except BaseException:  # KeyboardInterrupt, SIGTERM: stop every build
        for proc, _, log_f in running.values():
            _kill(proc)
            log_f.close()
        raise
    return codes


def _group_record(cell: Cell, runs_dir: Path, event: dict[str, Any], started: str) -> ResultRecord:
    """The record of a cell the worker reported done (its own, or one for its error)."""
    error = event.get("error")
    if error:
        status = "na" if event.get("exit_code") == UnsupportedError.exit_code else "failed"
        return _parent_record(cell, status, str(error), started)
    rec = _read_record(runs_dir / cell.cell_id / "result.json")
    if rec is None:
        return _parent_record(cell, "failed", "the worker saved no result record", started)
    return rec


def _parse_record(stdout: str) -> ResultRecord | None:
    text = stdout.strip()
    if not text:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        # be lenient about stray lines before the document; the JSON is the last thing printed
        start = text.find("{")
        try:
            data = json.loads(text[start:]) if start >= 0 else None
        except json.JSONDecodeError:
            return None
    if not isinstance(data, dict) or "model" not in data:
        return None
    try:
        return ResultRecord.from_dict(data)
    except (EdgequantError, TypeError):
        return None


def _read_record(path: Path) -> ResultRecord | None:
    if not path.is_file():
        return None
    try:
        return ResultRecord.load(path)
    except ValidationError:
        return None


def recorded(cell: Cell, runs_dir: Path) -> ResultRecord | None:
    """The cell's saved record when it is done (ok/na), else None (never run, failed, corrupt)."""
    rec = _read_record(runs_dir / cell.cell_id / "result.json")
    return rec if rec is not None and rec.status in DONE_STATUSES else None


def run_sweep(
    experiment: Experiment,
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
) -> SweepSummary:
    """Run every cell of ``experiment`` into ``runs_dir``; see the module docstring.

    ``isolation`` (``cell`` or ``backend``) overrides the experiment's; ``group_command``
    replaces the worker command of ``backend`` isolation (the cells file is appended);
    ``build_jobs`` overrides the experiment's: above 1, the artifacts of the cells still to run
    are built that many model/backend pairs at a time before anything is measured
    (:func:`build_ahead`).

    Example:
        >>> summary = run_sweep(load_experiment("exp.yaml"), "runs/")   # doctest: +SKIP
        >>> summary.counts                                               # doctest: +SKIP
        {'ok': 8, 'skipped': 0}
    """
    from tqdm import tqdm

    runs = Path(runs_dir)
    cells = experiment.cells()
    if isolation is not None:
        if isolation not in ISOLATIONS:
            raise ValidationError(f"isolation must be cell or backend, got {isolation!r}")
        cells = [replace(c, isolation=isolation) for c in cells]
    t0 = time.perf_counter()
    outcomes: list[CellOutcome] = []
    if dry_run:
        for cell in cells:
            done = None if force else recorded(cell, runs)
            why = None if done else precheck(cell)
            rec = done or (None if why is None else _parent_record(cell, "na", why, _now()))
            outcomes.append(
                CellOutcome(
                    cell=cell,
                    record=rec,
                    skipped=done is not None,
                    command=bench_argv(cell, runs, bench_command),
                )
            )
        return SweepSummary(
            runs_dir=runs, outcomes=outcomes, seconds=time.perf_counter() - t0, dry_run=True
        )

    runs.mkdir(parents=True, exist_ok=True)
    _write_schemes(experiment, runs)
    if experiment.text is not None:  # what was run, comments included, for the report
        (runs / "experiment.yaml").write_text(experiment.text)
    if show_progress is None:
        show_progress = sys.stderr.isatty()
    position = {c.cell_id: i for i, c in enumerate(cells)}
    with (
        ResultStore(runs) as store,
        tqdm(
            total=len(cells),
            file=sys.stderr,
            disable=not show_progress,
            dynamic_ncols=True,
            unit="cell",
            leave=False,
        ) as bar,
    ):

        def finish(cell: Cell, record: ResultRecord, seconds: float, cpu_s: float | None) -> None:
            """Save and index one cell's new record; report it."""
            command = bench_argv(cell, runs, bench_command)
            record.extra["sweep"] = {
                "experiment": experiment.name,
                "cell": cell.cell_id,
                "mode": cell.mode,
                "isolation": cell.isolation,
                "seconds": round(seconds, 3),
                # CPU seconds of the child: unlike wall time, this does not grow with load
                "child_cpu_s": None if cpu_s is None else round(cpu_s, 3),
                "command": command,
            }
            record.save(runs / cell.cell_id)
            store.add(cell.cell_id, record, runs / cell.cell_id)
            outcome = CellOutcome(cell=cell, record=record, seconds=seconds, command=command)
            outcomes.append(outcome)
            note = f": {record.reason}" if record.reason else ""
            log(
                f"[{len(outcomes)}/{len(cells)}] {cell.cell_id}: {record.status} ({seconds:.1f} s){note}"
            )
            if on_cell is not None:
                on_cell(outcome)
            bar.update(1)

        def index_interrupted(batch: list[Cell]) -> None:
            for c in batch:
                stopped = _read_record(runs / c.cell_id / "result.json")
                if stopped is not None and stopped.status == "interrupted":
                    store.add(c.cell_id, stopped, runs / c.cell_id)

        def flush(batch: list[Cell]) -> None:
            """Run the pending cells of one process key: one bench, or one group worker."""
            if not batch:
                return
            if batch[0].isolation == "cell":
                for cell in batch:
                    t_cell, cpu0 = time.perf_counter(), _children_cpu_s()
                    bar.set_description(cell.cell_id)
                    try:
                        record = run_cell(cell, runs, bench_command)
                    except KeyboardInterrupt:  # index the interrupted cell, then stop the sweep
                        index_interrupted([cell])
                        raise
                    seconds = time.perf_counter() - t_cell
                    finish(cell, record, seconds, _children_cpu_s() - cpu0)
            else:
                bar.set_description(batch[0].process_key)
                try:
                    run_group(
                        batch,
                        runs,
                        command=group_command,
                        on_done=lambda d: finish(d.cell, d.record, d.seconds, d.cpu_s),
                    )
                except KeyboardInterrupt:
                    index_interrupted(batch)
                    raise
            batch.clear()

        to_run: list[Cell] = []
        for cell in _process_order(cells):
            done = None if force else recorded(cell, runs)
            if done is not None:
                if store.get(cell.cell_id) != done:  # result.json is the truth: keep the index
                    store.add(cell.cell_id, done, runs / cell.cell_id)
                outcome = CellOutcome(cell=cell, record=done, skipped=True)
                outcomes.append(outcome)
                if on_cell is not None:
                    on_cell(outcome)
                bar.update(1)
                continue
            why = precheck(cell)
            if why is not None:
                finish(cell, _parent_record(cell, "na", why, _now()), 0.0, None)
                continue
            to_run.append(cell)
        jobs = experiment.build_jobs if build_jobs is None else build_jobs
        if jobs < 1:
            raise ValidationError(f"build jobs must be >= 1, got {jobs}")
        if jobs > 1 and to_run:
            n_pairs = len({c.pair_key for c in to_run})
            log(f"building artifacts: {n_pairs} model/backend pairs, {jobs} at a time")
            bar.set_description(f"building ({jobs} at a time)")
            t_build = time.perf_counter()
            built = build_ahead(
                to_run,
                runs,
                jobs,
                command=group_command,
                on_done=lambda key, code: log(
                    f"built {key}" + ("" if code == 0 else f" (some builds failed, exit {code})")
                ),
            )
            log(
                f"builds done in {time.perf_counter() - t_build:.0f} s "
                f"({sum(1 for c in built.values() if c == 0)}/{len(built)} pairs clean); measuring"
            )
        batch: list[Cell] = []
        for cell in to_run:
            if batch and batch[0].process_key != cell.process_key:
                flush(batch)
            batch.append(cell)
        flush(batch)
    outcomes.sort(key=lambda o: position[o.cell.cell_id])
    summary = SweepSummary(runs_dir=runs, outcomes=outcomes, seconds=time.perf_counter() - t0)
    skipped = summary.counts.get("skipped", 0)
    if skipped:
        log(f"{skipped} cell(s) already recorded in {runs} were skipped (--force re-runs them)")
    return summary


__all__ = [
    "CellOutcome",
    "SweepSummary",
    "bench_argv",
    "build_ahead",
    "default_bench_command",
    "precheck",
    "recorded",
    "run_cell",
    "run_group",
    "run_sweep",
    "worker_command",
]
