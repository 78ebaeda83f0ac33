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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgequant.console import log
from edgequant.errors import EdgequantError, UnsupportedError, ValidationError
from edgequant.results.record import ResultRecord
from edgequant.results.store import ResultStore
from edgequant.sweep.experiment import Cell, Experiment

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
    child_env = dict(os.environ if env is None else env)
    # the child must import this very edgequant, installed or not
    src = str(Path(__file__).resolve().parents[2])
    child_env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [child_env.get("PYTHONPATH")])])
    child_env.setdefault("PYTHONUNBUFFERED", "1")
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
) -> SweepSummary:
    """Run every cell of ``experiment`` into ``runs_dir``; see the module docstring.

    Example:
        >>> summary = run_sweep(load_experiment("exp.yaml"), "runs/")   # doctest: +SKIP
        >>> summary.counts                                               # doctest: +SKIP
        {'ok': 8, 'skipped': 0}
    """
    from tqdm import tqdm

    runs = Path(runs_dir)
    cells = experiment.cells()
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
        for i, cell in enumerate(cells, 1):
            bar.set_description(cell.cell_id)
            run_dir = runs / cell.cell_id
            done = None if force else recorded(cell, runs)
            t_cell = time.perf_counter()
            if done is not None:
                if (
                    store.get(cell.cell_id) != done
                ):  # result.json is the truth: keep the index in step
                    store.add(cell.cell_id, done, run_dir)
                outcome = CellOutcome(cell=cell, record=done, skipped=True)
            else:
                command = bench_argv(cell, runs, bench_command)
                why = precheck(cell)
                cpu0 = _children_cpu_s()
                if why is not None:
                    record = _parent_record(cell, "na", why, _now())
                else:
                    try:
                        record = run_cell(cell, runs, bench_command)
                    except KeyboardInterrupt:
                        stopped = _read_record(run_dir / "result.json")
                        if stopped is not None:  # index the interrupted cell, then stop the sweep
                            store.add(cell.cell_id, stopped, run_dir)
                        raise
                seconds = time.perf_counter() - t_cell
                record.extra["sweep"] = {
                    "experiment": experiment.name,
                    "cell": cell.cell_id,
                    "mode": cell.mode,
                    "seconds": round(seconds, 3),
                    # CPU seconds of the child: unlike wall time, this does not grow with load
                    "child_cpu_s": None if why is not None else round(_children_cpu_s() - cpu0, 3),
                    "command": command,
                }
                record.save(run_dir)
                store.add(cell.cell_id, record, run_dir)
                outcome = CellOutcome(cell=cell, record=record, seconds=seconds, command=command)
                note = f": {record.reason}" if record.reason else ""
                log(f"[{i}/{len(cells)}] {cell.cell_id}: {record.status} ({seconds:.1f} s){note}")
            outcomes.append(outcome)
            if on_cell is not None:
                on_cell(outcome)
            bar.update(1)
    summary = SweepSummary(runs_dir=runs, outcomes=outcomes, seconds=time.perf_counter() - t0)
    skipped = summary.counts.get("skipped", 0)
    if skipped:
        log(f"{skipped} cell(s) already recorded in {runs} were skipped (--force re-runs them)")
    return summary


__all__ = [
    "CellOutcome",
    "SweepSummary",
    "bench_argv",
    "default_bench_command",
    "precheck",
    "recorded",
    "run_cell",
    "run_sweep",
]
