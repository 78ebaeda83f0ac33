"""The paired rounds themselves, in one process: both artifacts loaded, LoadGen runs A B B A …

:func:`measure_pair` opens the model and data once, loads the baseline's and the other cell's
artifacts (built by their cells, found in the artifact cache) into two sessions with the same
threads, and runs rounds of the bench harness's LoadGen test
(:func:`edgequant.bench.harness.run_scenario`) on each in turn. Who goes first alternates
(round 1: baseline first; round 2: other first; …). Each session warms up once, before its first
round; later rounds reuse that warm-up's estimates. The samples are preprocessed once and held
for every round, so a round times inference only. The whole span is watched by
:class:`~edgequant.measure.noise.NoiseMonitor`. At least ``min`` rounds are always run; only then
may the stopping rule end them (half-width, max rounds, time cap).

:func:`run_pair_tasks` is the ``--pairs`` mode of :mod:`edgequant.sweep.worker`: for each task
of a pairs file (:meth:`edgequant.sweep.pairs.Pair.task`) it prints one JSON line
``{"event": "paired", "cell": ID, "paired": {...} | null, "reason": null | LINE}``.

Example:
    >>> paired = measure_pair(task, log_dir=Path("runs/x/paired"))   # doctest: +SKIP
    >>> paired["median"], paired["ci95"], paired["stopped_by"]          # doctest: +SKIP
    (2.6, [2.5, 2.7], 'half-width')
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

import numpy as np

PAIRED_DIR = "paired"


def _config(item: dict[str, Any]) -> Any:
    from edgequant.bench.runner import BenchConfig

    return BenchConfig(**{**item["config"], "run_dir": Path(item["run_dir"]), "progress": False})


def _held(loader: Callable[[Sequence[int]], np.ndarray]) -> Callable[[Sequence[int]], np.ndarray]:
    """``loader`` remembering its last answer: LoadGen asks for the same samples every round."""
    memo: dict[tuple[int, ...], np.ndarray] = {}

    def load(indices: Sequence[int]) -> np.ndarray:
        key = tuple(int(i) for i in indices)
        if key not in memo:
            memo.clear()
            memo[key] = loader(list(key))
        return memo[key]

    return load


def _value(run: Any, metric: str) -> float:
    """The round's figure: LoadGen's samples/s, or its p50 latency in ms."""
    if run.interrupted:
        raise KeyboardInterrupt
    if run.error is not None:
        reasons = run.result.reasons
        raise RuntimeError(reasons[0] if reasons else f"the runtime failed: {run.error}")
    r = run.result
    value = r.throughput_ips if metric == "throughput_ips" else (r.latency_ms or {}).get("p50")
    if not value or value <= 0:
        raise RuntimeError(f"LoadGen reported no {metric} in {run.log_dir}")
    return float(value)


def measure_pair(task: dict[str, Any], log_dir: Path) -> dict[str, Any]:
    """Run one pair's rounds; the record's ``paired`` dict (raises when a side cannot run)."""
    from edgequant.bench.config import DEFAULT_PERF_SAMPLES
    from edgequant.bench.harness import run_scenario
    from edgequant.bench.qsl import SampleLibrary
    from edgequant.bench.settings import BenchSettings
    from edgequant.data import open_dataset
    from edgequant.measure.noise import NoiseMonitor
    from edgequant.measure.paired import PairedRatio
    from edgequant.models.loader import load_model
    from edgequant.quant.scheme import get_scheme
    from edgequant.sweep.pairs import RoundsSpec

    cfgs = [_config(task["baseline"]), _config(task["other"])]
    metric, round_s = str(task["metric"]), float(task["round_s"])
    rule = RoundsSpec(**task["rounds"]).rule()
    base = cfgs[0]
    model = load_model(str(base.model), weights=base.weights, arch=base.arch)
    data = open_dataset(base.data, model.input_spec, split="test", limit=base.count)
    qsl = SampleLibrary(
        _held(data.load), total=len(data), perf_count=min(len(data), DEFAULT_PERF_SAMPLES)
    )
    settings = BenchSettings(scenario=base.scenario, duration_s=round_s, model_name=model.name)
    names = [get_scheme(c.scheme).name for c in cfgs]  # a scheme may be given as a file
    with ExitStack() as stack:
        sessions, paths = _load_sides(stack, cfgs, model)
        batches = [s.fixed_batch or c.batch for s, c in zip(sessions, cfgs, strict=True)]
        warm: list[Any] = [None, None]
        values: list[list[float]] = [[], []]
        monitor = stack.enter_context(NoiseMonitor())
        t0 = time.perf_counter()
        while True:
            n = len(values[0])
            for side in (0, 1) if n % 2 == 0 else (1, 0):
                run = run_scenario(
                    sessions[side],
                    qsl,
                    settings,
                    log_dir / f"r{n + 1:02d}-{names[side]}",
                    batch_size=batches[side],
                    warmup=warm[side],
                    warmup_s=min(1.0, max(0.25, round_s / 2)),
                )
                warm[side] = warm[side] or run.warmup
                values[side].append(_value(run, metric))
            # above 1 means the other scheme is faster: more samples/s, or a lower p50
            rows = list(zip(values[1], values[0], strict=True))
            if metric != "throughput_ips":
                rows = [(b, a) for a, b in rows]
            ratio = PairedRatio.from_rounds(rows)
            # never fewer than min rounds (the time cap included): below 3 there is no interval
            if ratio.rounds < rule.min_rounds:
                continue
            why = rule.verdict(ratio, elapsed_s=time.perf_counter() - t0)
            if why is not None:
                break
        elapsed = time.perf_counter() - t0
    assert why is not None
    ratio = PairedRatio.from_rounds(rows, stopped_by=why)
    noise = monitor.report.to_dict() if monitor.report is not None else None
    return {
        **ratio.to_dict(),
        "baseline": task["baseline"]["cell"],
        "metric": metric,
        "round_s": round_s,
        "seconds": round(elapsed, 2),
        "values": {names[0]: values[0], names[1]: values[1]},
        "artifacts": {names[0]: paths[0], names[1]: paths[1]},
        "noise": noise,
    }


def _load_sides(stack: ExitStack, cfgs: list[Any], model: Any) -> tuple[list[Any], list[str]]:
    """Both sides' loaded sessions (closed with ``stack``) and artifact paths. A side's artifact
    is its ``artifact`` folder when it came with one (shipped to a device), else its cell's build
    (a cache hit)."""
    from edgequant.backends.artifact import Artifact
    from edgequant.bench.runner import prepare_artifact

    sessions, paths = [], []
    for cfg in cfgs:
        artifact: Artifact | None
        if cfg.artifact is not None:
            artifact = Artifact.load(cfg.artifact)
        else:
            artifact = prepare_artifact(cfg, model=model)
        if artifact is None:
            raise RuntimeError(f"{cfg.backend} cannot run {cfg.scheme} here")
        sessions.append(stack.enter_context(artifact_session(artifact, cfg)))
        paths.append(str(artifact.path))
    return sessions, paths


def artifact_session(artifact: Any, cfg: Any) -> Any:
    """The loaded session of ``artifact`` with ``cfg.threads`` (a context manager)."""
    from edgequant.backends.base import get_backend

    return get_backend(artifact.backend).load(artifact, cfg.threads)


def run_pair_tasks(tasks: list[dict[str, Any]], channel: IO[str]) -> int:
    """Measure each pair of a pairs file and report it on ``channel``; returns how many failed."""
    from edgequant.errors import condense_error

    failed = 0
    for task in tasks:
        log_dir = Path(task["other"]["run_dir"]) / PAIRED_DIR
        paired: dict[str, Any] | None = None
        reason: str | None = None
        t0 = time.perf_counter()
        try:
            paired = measure_pair(task, log_dir)
        except Exception as e:  # one pair's failure must not cost the others
            failed += 1
            reason = f"paired rounds failed: {condense_error(e)}"[:500]
            print(f"edgequant: error: {reason}", file=sys.stderr, flush=True)
        else:
            print(
                f"paired {task['cell']}: {paired['median']:.3f} ({paired['rounds']} rounds, "
                f"{paired['stopped_by']}, {time.perf_counter() - t0:.1f} s)",
                file=sys.stderr,
                flush=True,
            )
        event = {"event": "paired", "cell": task["cell"], "paired": paired, "reason": reason}
        channel.write(json.dumps(event) + "\n")
        channel.flush()
    return failed


__all__ = ["PAIRED_DIR", "artifact_session", "measure_pair", "run_pair_tasks"]
