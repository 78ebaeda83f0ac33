"""Drive one LoadGen test: warm up, size LoadGen's schedule, run, survive Ctrl-C, read the logs.

Example:
    >>> out = run_scenario(session, qsl, BenchSettings(scenario="Offline"), run_dir / "loadgen")  # doctest: +SKIP
    >>> out.result.valid, out.result.throughput_ips                                             # doctest: +SKIP
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgequant.backends.base import Session
from edgequant.bench.logs import LoadGenResult, parse_logs
from edgequant.bench.qsl import SampleLibrary
from edgequant.bench.settings import MULTISTREAM_SAMPLES, BenchSettings
from edgequant.bench.sut import BaseSUT, make_sut
from edgequant.console import log
from edgequant.errors import BenchmarkError

#: how long a Ctrl-C waits for LoadGen to wind down before giving up on its summary
INTERRUPT_GRACE_S = 10.0
#: re-runs when LoadGen's schedule, sized from the warm-up, proved too short
MAX_RETRIES = 3


@dataclass(kw_only=True)
class WarmUp:
    """Warm-up estimates that size LoadGen's schedule."""

    latency_s: float  # one query of the scenario: the fastest run
    qps: float  # samples per second on the scenario's path
    runs: int
    seconds: float
    #: the median run once warm (None: not measured); the Server's default load comes from it
    typical_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "latency_ms": self.latency_s * 1e3,
            "samples_per_s": self.qps,
            "runs": self.runs,
            "seconds": self.seconds,
        }
        if self.typical_s is not None:
            out["typical_latency_ms"] = self.typical_s * 1e3
        return out


@dataclass(kw_only=True)
class ScenarioRun:
    """What one LoadGen test produced."""

    result: LoadGenResult
    warmup: WarmUp
    log_dir: Path
    interrupted: bool = False
    #: Ctrl-C and LoadGen did not wind down within the grace time: its thread is still running,
    #: so the process must end with os._exit (tearing LoadGen down under it would crash)
    abandoned: bool = False
    error: BaseException | None = None
    samples_completed: int = 0
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


_LOADGEN: ThreadPoolExecutor | None = None


def _loadgen_thread() -> ThreadPoolExecutor:
    """One long-lived thread that runs LoadGen's tests (LoadGen keeps per-thread state; threads
    that come and go between tests made it crash, see :func:`edgequant.bench.sut._pool`)."""
    global _LOADGEN
    if _LOADGEN is None:
        _LOADGEN = ThreadPoolExecutor(max_workers=1, thread_name_prefix="eq-loadgen")
    return _LOADGEN


def warm_up(
    session: Session, samples: np.ndarray, scenario: str, batch_size: int, *, seconds: float = 1.0
) -> WarmUp:
    """Run the scenario's path until ``seconds`` pass (after two untimed runs); time it.

    The first runs pay for lazy compilation and allocation; the estimates come from the rest.
    """
    t_start = time.perf_counter()
    fixed = session.fixed_batch
    if scenario == "MultiStream":
        n = MULTISTREAM_SAMPLES
    elif scenario == "Offline":
        n = fixed or batch_size
    else:
        n = fixed or 1
    batch = _repeat_to(samples, n)
    if scenario == "Offline":
        best, runs = _offline_rounds(session, batch, seconds)
        return WarmUp(
            latency_s=n / best, qps=best, runs=runs, seconds=time.perf_counter() - t_start
        )
    for _ in range(2):
        session.run(batch)
    if scenario == "Server" and fixed is None:
        # the worker batches whatever has queued up: every size up to batch_size runs once
        # untimed, so that a lazy per-size compile (OpenVINO's static batch-8 model, a new shape
        # in a dynamic one) is not paid in the middle of the run. Measured: MobileNetV2 int8 on
        # OpenVINO had a 300 ms stall mid-run and failed its latency bound without this.
        for k in range(2, batch_size + 1):
            idx = np.arange(k) % len(samples)
            session.run(np.ascontiguousarray(samples[idx]))
    times: list[float] = []
    t0 = time.perf_counter()
    while len(times) < 2000:
        t = time.perf_counter()
        session.run(batch)
        times.append(time.perf_counter() - t)
        elapsed = time.perf_counter() - t0
        if len(times) >= 6 and elapsed >= seconds:
            # stop once the runs have stopped getting faster (lazy compilation, caches), or
            # after 3x the asked time on a machine too noisy to tell
            half = len(times) // 2
            if min(times[half:]) >= 0.9 * min(times[:half]) or elapsed >= 3 * seconds:
                break
    # the fastest run, not the median: LoadGen pre-generates its schedule from this estimate and
    # runs out (INVALID) if the model turns out faster than expected; too many is harmless
    lat = float(np.min(times))
    return WarmUp(
        latency_s=lat,
        qps=n / lat,
        runs=len(times),
        seconds=time.perf_counter() - t_start,
        typical_s=float(np.median(times[len(times) // 2 :])),
    )


def _repeat_to(samples: np.ndarray, n: int) -> np.ndarray:
    """The first ``n`` samples as one contiguous batch, repeating them where there are fewer."""
    reps = int(np.ceil(n / len(samples)))
    return np.ascontiguousarray(np.concatenate([samples] * reps)[:n] if reps > 1 else samples[:n])


def _offline_rounds(session: Session, batch: np.ndarray, seconds: float) -> tuple[float, int]:
    """The throughput path itself: the fastest samples/s over rounds, and the batches run.

    Its first call may compile another executable (OpenVINO compiles a THROUGHPUT-hinted
    model), so it runs once untimed; then rounds that grow until the pipeline's fill and drain
    no longer lower the estimate much. Four batches keep every stream busy (2 cores: 2 streams
    x 2 requests); eight cost ResNet-50 fp32 2.6 s per round here.
    """
    session.run_offline([batch] * 2, lambda i, out: None)
    k = 4
    runs = 0
    best = 0.0  # the fastest round: LoadGen's query must not run out early if speed improves
    t0 = time.perf_counter()
    while True:
        t = time.perf_counter()
        session.run_offline([batch] * k, lambda i, out: None)
        best = max(best, k * len(batch) / (time.perf_counter() - t))
        runs += k
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return best, runs
        if dt < seconds / 4:
            k *= 2


def run_scenario(
    session: Session,
    qsl: SampleLibrary,
    settings: BenchSettings,
    log_dir: Path,
    *,
    accuracy: bool = False,
    batch_size: int = 8,
    warmup: WarmUp | None = None,
    warmup_s: float = 1.0,
    on_start: Any = None,
    retry: bool = True,
    audit_config: Path | None = None,
    respond: bool = False,
) -> ScenarioRun:
    """Warm up (unless given), run LoadGen in ``settings.scenario``, parse its logs.

    LoadGen runs in a helper thread so that the main thread stays responsive to Ctrl-C: on
    KeyboardInterrupt the SUT stops running the model and answers the rest empty, LoadGen winds
    down, and the run comes back with ``interrupted=True`` (never valid).

    LoadGen sizes its schedule from the warm-up; on a busy machine the warm-up can be far off,
    and LoadGen then runs out of queries before the minimum duration (INVALID). With ``retry``
    such a run is repeated once, its schedule sized from LoadGen's own measurement of the first.

    ``audit_config`` is an MLPerf compliance ``audit.config`` handed to LoadGen (see
    :mod:`edgequant.bench.compliance`); without it LoadGen is given a path that cannot exist, so
    a stray ``./audit.config`` in the working directory never turns a normal run into an audit.
    ``respond`` makes the SUT answer every sample with its top-5 in performance mode too, as
    MLPerf's TEST01 needs (LoadGen logs a sample of those answers); accuracy mode always does.
    """
    if warmup is None:
        warmup = _warm_up_in_thread(session, qsl, settings.scenario, batch_size, warmup_s)

    def once(estimate: WarmUp) -> ScenarioRun:
        return _run_once(
            session,
            qsl,
            settings,
            log_dir,
            accuracy,
            batch_size,
            estimate,
            on_start,
            audit_config,
            respond,
        )

    out = once(warmup)
    attempts: list[dict[str, Any]] = []
    while retry and not accuracy and len(attempts) < MAX_RETRIES:
        measured = _resize_estimate(out, settings.scenario)
        if measured is None:
            break
        log("LoadGen's schedule was too short for the measured speed; running again sized from it")
        attempts.append(
            {"reasons": out.result.reasons, "throughput_ips": out.result.throughput_ips}
        )
        out = once(measured)
        out.warmup = warmup
    if attempts:
        out.extra["earlier_attempts"] = attempts
    return out


def _warm_up_in_thread(
    session: Session, qsl: SampleLibrary, scenario: str, batch_size: int, seconds: float
) -> WarmUp:
    """:func:`warm_up` on the QSL's first samples, in a helper thread, as LoadGen and the SUTs
    call the session: some runtimes behave differently on the main thread (PyTorch's OpenMP
    pool was 10x slower there, measured)."""
    samples = qsl.loader(list(range(min(qsl.total, max(batch_size, MULTISTREAM_SAMPLES)))))
    box: list[WarmUp | BaseException] = []

    def warm() -> None:
        try:
            box.append(warm_up(session, samples, scenario, batch_size, seconds=seconds))
        except BaseException as e:  # re-raised below, on the caller's thread
            box.append(e)

    worker = threading.Thread(target=warm, name="eq-warmup", daemon=True)
    worker.start()
    worker.join()
    if isinstance(box[0], BaseException):
        raise box[0]
    return box[0]


def _resize_estimate(out: ScenarioRun, scenario: str) -> WarmUp | None:
    """A new estimate from LoadGen's own measurement when its schedule proved too short (the
    minimum duration not met); None when the run is to stand as it is."""
    r = out.result
    short = "min duration not met" in r.reasons and scenario != "Server"
    if not short or out.interrupted or out.error is not None:
        return None
    lat = r.latency_ms.get("min") or r.latency_ms.get("p50")
    if scenario == "Offline" and r.throughput_ips:
        return WarmUp(latency_s=1.0 / r.throughput_ips, qps=r.throughput_ips, runs=0, seconds=0.0)
    if lat:
        return WarmUp(latency_s=lat / 1000, qps=1000 / lat, runs=0, seconds=0.0)
    return None


def _run_once(
    session: Session,
    qsl: SampleLibrary,
    settings: BenchSettings,
    log_dir: Path,
    accuracy: bool,
    batch_size: int,
    warmup: WarmUp,
    on_start: Any,
    audit_config: Path | None = None,
    respond: bool = False,
) -> ScenarioRun:
    import mlperf_loadgen as lg

    scenario = settings.scenario
    ts = settings.test_settings(
        accuracy=accuracy,
        expected_latency_s=warmup.latency_s,
        expected_qps=warmup.qps,
        samples=qsl.perf_count,
        typical_latency_s=warmup.typical_s,
    )
    log_dir.mkdir(parents=True, exist_ok=True)
    ls = lg.LogSettings()
    ls.log_output.outdir = str(log_dir)
    ls.log_output.copy_summary_to_stdout = False
    ls.enable_trace = False

    sut: BaseSUT = make_sut(
        scenario, session, qsl, accuracy=accuracy or respond, batch_size=batch_size
    )
    sut.construct()
    qsl.construct()
    failure: list[BaseException] = []
    audit = str(audit_config.resolve()) if audit_config is not None else no_audit_path(log_dir)

    interrupted, seconds, finished = _start_test(sut, qsl, ts, ls, audit, on_start, failure)
    if failure:
        raise BenchmarkError(f"LoadGen failed: {failure[0]}")
    return ScenarioRun(
        result=_parse_run(log_dir, scenario, interrupted, sut.error),
        warmup=warmup,
        log_dir=log_dir,
        interrupted=interrupted,
        error=sut.error,
        samples_completed=sut.completed,
        seconds=seconds,
        abandoned=not finished,
    )


def _start_test(
    sut: BaseSUT,
    qsl: SampleLibrary,
    ts: Any,
    ls: Any,
    audit: str,
    on_start: Any,
    failure: list[BaseException],
) -> tuple[bool, float, bool]:
    """LoadGen's test in its thread, the main thread waiting (and taking Ctrl-C); the SUT and
    the QSL released when LoadGen is done. Returns (interrupted, seconds, LoadGen finished)."""
    import mlperf_loadgen as lg

    done = threading.Event()

    def target() -> None:
        try:
            lg.StartTestWithLogSettings(sut.handle, qsl.handle, ts, ls, audit)
        except BaseException as e:  # reported by the main thread
            failure.append(e)
        finally:
            done.set()

    interrupted = False
    if on_start is not None:
        on_start()
    t0 = time.perf_counter()
    future = _loadgen_thread().submit(target)
    try:
        # an Event, not Thread.join: a join interrupted by Ctrl-C may not wait properly afterwards
        while not done.wait(0.1):
            pass
    except KeyboardInterrupt:
        interrupted = True
        sut.stop()
        done.wait(INTERRUPT_GRACE_S)  # a second Ctrl-C here aborts for good
    seconds = time.perf_counter() - t0
    if done.is_set():
        future.result()
        sut.finish()
        qsl.destroy()
    return interrupted, seconds, done.is_set()


def no_audit_path(log_dir: Path) -> str:
    """A path LoadGen will not find an ``audit.config`` at (LoadGen defaults to ``./audit.config``).

    Example:
        >>> import os
        >>> os.path.exists(no_audit_path(Path("/tmp")))
        False
    """
    path = log_dir.resolve() / "no-audit-config" / "none" / "audit.config"
    if path.exists():  # pragma: no cover - only if someone made it on purpose
        raise BenchmarkError(f"{path} exists; remove it, it would turn runs into audit runs")
    return str(path)


def _parse_run(
    log_dir: Path, scenario: str, interrupted: bool, error: BaseException | None
) -> LoadGenResult:
    """LoadGen's verdict from its logs, made invalid (with the reason first) by a Ctrl-C or a
    runtime failure; an interrupted run may have left no summary to parse."""
    try:
        result = parse_logs(log_dir)
    except BenchmarkError:
        if not interrupted:
            raise
        result = LoadGenResult(scenario=scenario, mode="PerformanceOnly", valid=False)
    if interrupted:
        result.valid = False
        result.reasons.insert(0, "interrupted by the user (Ctrl-C); LoadGen's logs are partial")
    if error is not None:
        result.valid = False
        result.reasons.insert(0, f"the runtime failed mid-run: {_one_line(error)}")
    return result


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300]}" if text else type(e).__name__
