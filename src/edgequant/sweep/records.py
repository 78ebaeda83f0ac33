"""What a sweep learns about its cells: records it writes itself, records it reads back, and the
outcome of one invocation (:class:`SweepSummary`).

Example:
    >>> from edgequant.sweep import parse_experiment
    >>> cell = parse_experiment("models: [digits_cnn]\\nschemes: [fp32]\\nscenarios: [Offline]").cells()[0]
    >>> parent_record(cell, "na", "not here", now()).status
    'na'
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgequant.errors import EdgequantError, UnsupportedError, ValidationError
from edgequant.results.record import ResultRecord
from edgequant.sweep.plan import Cell

#: statuses that count as "recorded": a resumed sweep skips these cells
DONE_STATUSES = ("ok", "na")
RESULT_FILE = "result.json"
#: a cell's bench stderr, in its run folder
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
    """The outcome of ``run_sweep``: one :class:`CellOutcome` per cell, in order."""

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

    @property
    def all_failed(self) -> bool:
        """True when cells ran and none of them is ok or n/a (every one failed or was cut)."""
        return bool(self.outcomes) and all(
            o.status not in (*DONE_STATUSES, "planned") for o in self.outcomes
        )

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
                    "paired": None if o.record is None else o.record.paired,
                    "command": o.command,
                }
                for o in self.outcomes
            ],
        }


def now() -> str:
    """The current UTC time as the records write it."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def parent_record(cell: Cell, status: str, reason: str, started: str) -> ResultRecord:
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
        finished_at=now(),
    )


def last_line(text: str) -> str:
    """The last non-empty line of a child's stderr, without the CLI's ``error:`` prefix."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return ""
    line = lines[-1]
    for prefix in ("edgequant: error: ", "error: "):
        if line.startswith(prefix):
            line = line[len(prefix) :]
    return line[:500]


def parse_record(stdout: str) -> ResultRecord | None:
    """The record ``edgequant bench --json`` printed, or None."""
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


def read_record(path: Path) -> ResultRecord | None:
    """The record saved at ``path`` (a ``result.json``), or None when absent or unreadable."""
    if not path.is_file():
        return None
    try:
        return ResultRecord.load(path)
    except (ValidationError, TypeError, ValueError, AttributeError):  # `{}`, `[]`, binary
        return None


def recorded(cell: Cell, runs_dir: Path) -> ResultRecord | None:
    """The cell's saved record when it is done (ok/na), else None (never run, failed, corrupt)."""
    rec = read_record(runs_dir / cell.cell_id / RESULT_FILE)
    return rec if rec is not None and rec.status in DONE_STATUSES else None


def fresh_run_dir(cell: Cell, runs_dir: Path) -> Path:
    """The cell's folder, without a previous attempt's record (it must not pass for ours)."""
    run_dir = runs_dir / cell.cell_id
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RESULT_FILE).unlink(missing_ok=True)
    return run_dir


def bench_record(
    cell: Cell, stdout: str, run_dir: Path, returncode: int | None, started: str, where: str = ""
) -> ResultRecord:
    """The record of a finished ``edgequant bench --json`` child of ``cell``: the one it printed
    (or saved in ``run_dir``), else ``na``/``failed`` from its exit code and the last line of
    ``run_dir/bench.log``; ``where`` (e.g. ``"on rpi5: "``) prefixes a failure's reason.

    Example:
        >>> from edgequant.sweep import parse_experiment
        >>> cell = parse_experiment("models: [digits_cnn]").cells()[0]
        >>> bench_record(cell, "", Path("/nonexistent"), 0, now()).reason
        'bench printed no result record'
    """
    record = parse_record(stdout) or read_record(run_dir / RESULT_FILE)
    if record is not None:
        # the child's record is its verdict (bench exits 3 for an INVALID run, 3/8 for n/a/failed)
        return record
    if returncode == 0:
        return parent_record(cell, "failed", "bench printed no result record", started)
    log = run_dir / BENCH_LOG
    reason = last_line(log.read_text(errors="replace") if log.is_file() else "")
    reason = reason or f"bench exited with code {returncode}"
    if returncode == UnsupportedError.exit_code:
        return parent_record(cell, "na", reason, started)
    if returncode is not None and returncode < 0:
        reason = f"bench was killed by signal {-returncode}; {reason}"
    return parent_record(cell, "failed", where + reason, started)


def save_interrupted(cell: Cell, runs_dir: Path, started: str) -> None:
    """Mark the cell in flight as ``interrupted`` (a resumed sweep runs it again)."""
    parent_record(cell, "interrupted", "interrupted by the user", started).save(
        runs_dir / cell.cell_id
    )


__all__ = [
    "BENCH_LOG",
    "DONE_STATUSES",
    "CellOutcome",
    "SweepSummary",
    "bench_record",
    "fresh_run_dir",
    "last_line",
    "now",
    "parent_record",
    "parse_record",
    "read_record",
    "recorded",
    "save_interrupted",
]
