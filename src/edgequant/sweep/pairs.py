"""Paired rounds in a sweep: every INT8 (or other) vs FP32 ratio measured as A B A B … rounds.

A sweep's cells measure each configuration once; a ratio of two such runs made minutes apart
mixes the effect with the machine's mood. So, for every **pair** of cells of the same model,
backend and scenario where one is ``fp32`` (the baseline) and the other another scheme, the
sweep runs interleaved rounds of short LoadGen runs of both artifacts in ONE process (both
sessions loaded, who goes first alternates; :mod:`edgequant.sweep.rounds`) and writes the
median ratio with its 95% interval (:class:`~edgequant.measure.paired.PairedRatio`) into the
other cell's record::

    record.paired = {median, ci95, half_width_pct, rounds, method, ratios, stopped_by,
                     baseline: <fp32 cell id>, metric: throughput_ips | latency_p50, ...}

``throughput_ips`` (Offline, Server) is other/fp32; ``latency_p50`` (SingleStream,
MultiStream) is fp32/other: above 1 is faster either way. Rounds are added until the
interval's half-width is ≤ 3% (``stopped_by: half-width``), ``max`` rounds are done
(``max-rounds``) or ``time_cap_s`` of rounds have passed (``time-cap``); never fewer than
``min`` (the time cap is looked at only once ``min`` rounds are done). A pair whose side is not ``ok`` gets ``paired: null`` and ``extra.paired_reason``.

Experiment file (top level or per group; a group's wins)::

    rounds: {min: 3, max: 8, time_cap_s: 120, round_s: 2}   # the defaults, round_s aside
    rounds: false                                           # no paired rounds here

``round_s`` (the LoadGen minimum duration of one side of one round) defaults to the cell's
``duration_s`` split over ``min`` rounds, at least :data:`MIN_ROUND_S`.

Example:
    >>> from edgequant.sweep import parse_experiment
    >>> exp = parse_experiment("models: [digits_cnn]\\nschemes: [w8a8, fp32]\\nscenarios: [Offline]")
    >>> [(p.baseline.scheme.name, p.other.scheme.name, p.metric) for p in find_pairs(exp)]
    [('fp32', 'w8a8', 'throughput_ips')]
    >>> [c.scheme.name for c in pair_order(exp.cells())]
    ['fp32', 'w8a8']
"""

from __future__ import annotations

import json
import math
import queue
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgequant.errors import ValidationError
from edgequant.measure.paired import TARGET_HALF_WIDTH, StoppingRule
from edgequant.sweep.launch import kill, line_queue, spawn
from edgequant.sweep.local import worker_command
from edgequant.sweep.plan import Cell, Experiment, cell_task, process_order

#: the scheme every other scheme of the same model/backend/scenario is compared with
BASELINE_SCHEME = "fp32"
#: why the rounds stopped (:meth:`StoppingRule.verdict`)
STOP_REASONS = ("half-width", "max-rounds", "time-cap")
#: scenarios whose paired metric is the median latency (fp32/other); the rest use throughput
LATENCY_SCENARIOS = ("SingleStream", "MultiStream")
#: the shortest round side (LoadGen minimum duration), in seconds
MIN_ROUND_S = 0.5
ROUNDS_KEYS = ("min", "max", "time_cap_s", "round_s")
#: ``RUNS/pairs/MODEL__BACKEND.json`` (the rounds process's tasks) and ``.log`` (its stderr)
PAIRS_DIR = "pairs"


@dataclass(frozen=True, kw_only=True)
class RoundsSpec:
    """How many paired rounds, how long each, and the time cap.

    Example:
        >>> RoundsSpec.from_value({"min": 3, "max": 5, "round_s": 1}).rule().max_rounds
        5
        >>> RoundsSpec.from_value(False) is None
        True
    """

    min: int = 3
    max: int = 8
    time_cap_s: float = 120.0
    round_s: float | None = None

    def __post_init__(self) -> None:
        if self.round_s is not None and not (math.isfinite(self.round_s) and self.round_s >= 0.05):
            raise ValidationError(f"rounds: round_s must be >= 0.05 seconds, got {self.round_s}")
        self.rule()  # min/max/time cap checked once, where they are read

    def rule(self) -> StoppingRule:
        """The :class:`StoppingRule` these rounds stop by (3% half-width target)."""
        return StoppingRule(
            min_rounds=self.min,
            max_rounds=self.max,
            time_cap_s=self.time_cap_s,
            half_width=TARGET_HALF_WIDTH,
        )

    def seconds(self, duration_s: float) -> float:
        """One side of one round: ``round_s``, or the cell's duration over ``min`` rounds."""
        if self.round_s is not None:
            return self.round_s
        return max(MIN_ROUND_S, duration_s / self.min)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_value(cls, value: Any, where: str = "rounds") -> RoundsSpec | None:
        """From the file's ``rounds:`` value: a mapping, ``false``/``0``/``off`` (none), or a
        number N (exactly N rounds unless the interval is tight first)."""
        if value is None or value is True:
            return cls()
        if value is False or value == 0 or value == "off":
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return cls(min=min(3, value), max=value)
        if not isinstance(value, dict):
            raise ValidationError(
                f"{where}: must be a mapping like {{min: 3, max: 8, time_cap_s: 120}} or false, "
                f"got {value!r}"
            )
        bad = sorted(set(value) - set(ROUNDS_KEYS))
        if bad:
            raise ValidationError(
                f"{where}: unknown key(s) {bad}; rounds takes {', '.join(ROUNDS_KEYS)}"
            )
        kinds: dict[str, Any] = {
            "min": int,
            "max": int,
            "time_cap_s": (int, float),
            "round_s": (int, float),
        }
        for k, v in value.items():
            if isinstance(v, bool) or not isinstance(v, kinds[k]):
                raise ValidationError(f"{where}: '{k}' must be a number, got {v!r}")
        lo = int(value.get("min", cls.min))
        hi = int(value.get("max", max(lo, cls.max)))
        cap = float(value.get("time_cap_s", cls.time_cap_s))
        round_s = value.get("round_s")
        return cls(
            min=lo, max=hi, time_cap_s=cap, round_s=None if round_s is None else float(round_s)
        )


def parse_rounds_arg(text: str) -> RoundsSpec | None:
    """``--rounds`` of ``edgequant sweep``: ``MIN:MAX``, ``N`` (at most N) or ``0`` (none).

    Example:
        >>> parse_rounds_arg("3:6").max, parse_rounds_arg("0")
        (6, None)
    """
    try:
        numbers = [int(x) for x in text.split(":", 1)]
    except ValueError:
        raise ValidationError(f"--rounds must be MIN:MAX, N or 0, got {text!r}") from None
    if len(numbers) == 2:
        return RoundsSpec(min=numbers[0], max=numbers[1])
    return RoundsSpec.from_value(numbers[0], where="--rounds")


@dataclass(frozen=True, kw_only=True)
class Pair:
    """Two cells of one model/backend/scenario: the fp32 baseline and another scheme."""

    baseline: Cell
    other: Cell
    rounds: RoundsSpec

    @property
    def metric(self) -> str:
        return pair_metric(self.other.scenario)

    def task(self, runs_dir: Path) -> dict[str, Any]:
        """What the rounds process needs (JSON-safe): both cells' tasks, the metric, the rounds."""
        return {
            "cell": self.other.cell_id,
            "baseline": cell_task(self.baseline, runs_dir),
            "other": cell_task(self.other, runs_dir),
            "metric": self.metric,
            "rounds": self.rounds.to_dict(),
            "round_s": self.rounds.seconds(self.other.duration_s),
        }


def pair_metric(scenario: str) -> str:
    """``latency_p50`` for SingleStream/MultiStream, ``throughput_ips`` otherwise."""
    return "latency_p50" if scenario in LATENCY_SCENARIOS else "throughput_ips"


def _family(cell: Cell) -> tuple[str, str, str, str]:
    """What the two cells of a pair share: model, backend, scenario and device."""
    return (cell.model.label, cell.backend, cell.scenario, cell.device)


def cell_rounds(
    experiment: Experiment, override: RoundsSpec | bool | None = False
) -> dict[str, RoundsSpec | None]:
    """Each cell id's rounds (its group's ``rounds:``, else the top level's, else the defaults);
    ``override`` (a spec, or None for none) replaces them all; ``False`` keeps the file's."""
    raw = experiment.raw if isinstance(experiment.raw, dict) else {}
    raw_groups = raw.get("groups") if isinstance(raw.get("groups"), list) else None
    top = RoundsSpec.from_value(raw.get("rounds"), "experiment 'rounds'")
    out: dict[str, RoundsSpec | None] = {}
    for i, group in enumerate(experiment.groups):
        spec = top
        entry = raw_groups[i] if raw_groups is not None and i < len(raw_groups) else None
        if isinstance(entry, dict) and "rounds" in entry:
            spec = RoundsSpec.from_value(entry["rounds"], f"experiment groups[{i}] 'rounds'")
        if override is not False:
            spec = override if isinstance(override, RoundsSpec) or override is None else spec
        for cell in group.cells():
            out.setdefault(cell.cell_id, spec)
    return out


def find_pairs(
    experiment: Experiment,
    cells: Sequence[Cell] | None = None,
    override: RoundsSpec | bool | None = False,
) -> list[Pair]:
    """The (fp32, other) pairs among ``cells`` (default: all) that get paired rounds."""
    rounds = cell_rounds(experiment, override)
    cells = experiment.cells() if cells is None else list(cells)
    baselines = {_family(c): c for c in cells if c.scheme.name == BASELINE_SCHEME}
    pairs = []
    for c in cells:
        base = baselines.get(_family(c))
        spec = rounds.get(c.cell_id)
        if base is not None and c is not base and spec is not None:
            pairs.append(Pair(baseline=base, other=c, rounds=spec))
    return pairs


def pair_order(cells: Sequence[Cell]) -> list[Cell]:
    """:func:`process_order`, with each fp32 cell followed at once by the cells paired with it
    (same model, backend and scenario), so that a pair's two runs are back to back."""
    ordered = process_order(cells)
    families: dict[tuple[str, str, str, str], list[Cell]] = {}
    for c in ordered:
        families.setdefault(_family(c), []).append(c)
    out: list[Cell] = []
    done: set[str] = set()
    for c in ordered:
        if c.cell_id in done:
            continue
        family = families[_family(c)]
        base = [x for x in family if x.scheme.name == BASELINE_SCHEME]
        members = [*base, *(x for x in family if x not in base)] if base else [c]
        for x in members:
            if x.cell_id not in done:
                out.append(x)
                done.add(x.cell_id)
    return out


# --- the parent: one rounds process per model/backend, records updated ------------------------
OnPaired = Callable[[Pair, "dict[str, Any] | None", "str | None"], None]


def pairs_command(pairs_file: Path) -> list[str]:
    """``python -m edgequant.sweep.worker --pairs PAIRS.json``."""
    return [*worker_command(pairs_file)[:-1], "--pairs", str(pairs_file)]


def run_pairs(
    pairs: Sequence[Pair],
    runs_dir: Path,
    on_paired: OnPaired,
    *,
    command: Sequence[str] | None = None,
    env: dict[str, str] | None = None,
) -> None:
    """Run the rounds of ``pairs``, one fresh process per model/backend, and report each pair's
    ``paired`` dict (or None and the reason) as it comes. A process that dies or runs past a
    pair's time (its cell timeout) costs the pairs it had left (None, with why).
    ``KeyboardInterrupt`` kills the process and propagates (nothing is recorded)."""
    by_key: dict[str, list[Pair]] = {}
    for p in pairs:
        by_key.setdefault(p.other.pair_key, []).append(p)
    for key, group in by_key.items():
        pairs_dir = runs_dir / PAIRS_DIR
        pairs_dir.mkdir(parents=True, exist_ok=True)
        path = pairs_dir / f"{key}.json"
        path.write_text(json.dumps([p.task(runs_dir) for p in group], indent=1))
        argv = [*command, str(path)] if command else pairs_command(path)
        _follow(group, argv, pairs_dir / f"{key}.log", on_paired, env)


def _follow(
    group: list[Pair], argv: list[str], log_path: Path, on_paired: OnPaired, env: Any
) -> None:
    pending = {p.other.cell_id: p for p in group}
    why: str | None = None
    with open(log_path, "w") as errf:
        proc = spawn(argv, errf, env)
        lines = line_queue(proc, "eq-pairs-reader")
        try:
            t_pair = time.perf_counter()
            while pending:
                limit = max(p.other.timeout_s for p in pending.values())
                try:
                    line = lines.get(timeout=max(0.1, limit - (time.perf_counter() - t_pair)))
                except queue.Empty:
                    kill(proc)
                    why = f"the paired rounds timed out after {limit:g} s (cell_timeout_s)"
                    break
                if line is None:
                    break
                event = paired_event(line)
                if event is not None and event.get("cell") in pending:
                    pair = pending.pop(event["cell"])
                    on_paired(pair, event.get("paired"), event.get("reason"))
                    t_pair = time.perf_counter()
        except BaseException:
            kill(proc)
            raise
        if why is None:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                kill(proc)
    if pending:
        from edgequant.sweep.records import last_line

        why = why or last_line(log_path.read_text(errors="replace"))
        why = why or f"the paired-rounds process exited with code {proc.returncode}"
        for pair in pending.values():
            on_paired(pair, None, f"paired rounds did not finish: {why}"[:500])


def paired_event(line: str) -> dict[str, Any] | None:
    """A rounds process's stdout line as its ``paired`` event, or None (noise)."""
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return None
    return event if isinstance(event, dict) and event.get("event") == "paired" else None


__all__ = [
    "BASELINE_SCHEME",
    "LATENCY_SCENARIOS",
    "MIN_ROUND_S",
    "PAIRS_DIR",
    "STOP_REASONS",
    "Pair",
    "RoundsSpec",
    "cell_rounds",
    "find_pairs",
    "pair_metric",
    "pair_order",
    "paired_event",
    "pairs_command",
    "parse_rounds_arg",
    "run_pairs",
]
