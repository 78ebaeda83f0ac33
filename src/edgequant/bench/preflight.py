"""Checks made before a benchmark builds or measures anything, so that no run is lost to a late one.

- the run directory (``-o``) must be a folder that can be written: a benchmark that ran for ten
  minutes must not fail while saving its record;
- an Offline/Server batch must fit in memory: the kernel's OOM killer leaves no record and no
  message, so a batch whose inputs alone exceed the memory available is refused;
- ``--threads`` beyond the cores this process may use is oversubscription: a few times over is
  allowed with a note in the record, far beyond is refused.

Example:
    >>> check_batch_memory("Offline", 100_000, (3, 224, 224), available_bytes=16 * 2**30)
    Traceback (most recent call last):
    ...
    edgequant.errors.ValidationError: --batch-size 100000 needs at least 180.6 GB of memory for one batch of 3x224x224 float32 inputs (3 copies of 60.2 GB), but 17.2 GB is available; use --batch-size 9510 or less
    >>> check_threads(3, cores=2)
    'oversubscribed: --threads 3 on the 2 cores this process may use; the runtime threads compete for cores and the latencies include that'
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

from edgequant.errors import ValidationError

#: copies of one batch of inputs a run holds at once: the batch gathered from the QSL, the
#: warm-up's tiled copy and the runtime's own input buffer (a lower bound: activations come on top)
BATCH_COPIES = 3
#: most runtime threads allowed per usable core; beyond it a run measures the scheduler
MAX_THREADS_PER_CORE = 4
#: scenarios whose batch size is chosen by --batch-size
BATCHED_SCENARIOS = ("Offline", "Server")


def check_utf8_path(path: Path, flag: str = "-o") -> None:
    """Refuse a path with bytes that are not UTF-8: LoadGen (and the record) need text paths.

    Example:
        >>> check_utf8_path(Path("runs/r1")) is None
        True
    """
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(
            f"{flag} {str(path)!r} has bytes that are not UTF-8 (LoadGen's log paths must be "
            "text): choose a folder name in UTF-8"
        ) from None


def check_run_dir(run_dir: Path) -> None:
    """Refuse a run directory that is a file, lies under a file, or cannot be written.

    Example:
        >>> import tempfile
        >>> f = Path(tempfile.mkstemp()[1])
        >>> check_run_dir(f / "run")                           # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        edgequant.errors.ValidationError: -o .../run: ... is a file, not a folder; give a run directory
    """
    check_utf8_path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ValidationError(f"-o {run_dir} is a file, not a folder; give a run directory")
    probe = run_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ValidationError(
            f"-o {run_dir}: {probe} is a file, not a folder; give a run directory"
        )
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValidationError(
            f"-o {run_dir}: {probe} is not writable; choose a run directory you can write"
        )
    record = run_dir / "result.json"
    if record.is_dir():
        raise ValidationError(
            f"-o {run_dir}: {record} is a folder; remove it or choose another run directory"
        )


def available_memory_bytes() -> int | None:
    """Memory this machine can give a new allocation now (psutil's ``available``), else the
    physical memory; None when neither can be read.

    Example:
        >>> available_memory_bytes() > 0
        True
    """
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_batch_memory(
    scenario: str,
    batch_size: int,
    input_shape: Sequence[int],
    *,
    available_bytes: int | None = None,
) -> None:
    """Refuse an Offline/Server ``batch_size`` whose float32 inputs alone cannot fit in memory.

    ``available_bytes`` defaults to :func:`available_memory_bytes`. The estimate is a lower
    bound (:data:`BATCH_COPIES` copies of one batch of inputs), so a batch it lets through may
    still be too big for a large model's activations; one it refuses could never have run.

    Example:
        >>> check_batch_memory("Offline", 64, (3, 224, 224), available_bytes=2**30) is None
        True
    """
    if scenario not in BATCHED_SCENARIOS:
        return
    avail = available_memory_bytes() if available_bytes is None else available_bytes
    if avail is None:
        return
    sample = 4 * math.prod(int(d) for d in input_shape)
    need = BATCH_COPIES * batch_size * sample
    if need <= avail:
        return
    most = max(1, avail // (BATCH_COPIES * sample))
    shape = "x".join(str(d) for d in input_shape)
    raise ValidationError(
        f"--batch-size {batch_size} needs at least {need / 1e9:.1f} GB of memory for one batch "
        f"of {shape} float32 inputs ({BATCH_COPIES} copies of {batch_size * sample / 1e9:.1f} GB), "
        f"but {avail / 1e9:.1f} GB is available; use --batch-size {most} or less"
    )


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), else the CPU profile's logical cores.

    Example:
        >>> usable_cores() >= 1
        True
    """
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        from edgequant.hw.cpu import cpu_profile

        return cpu_profile().logical_cores or os.cpu_count() or 1


def check_threads(threads: int, *, cores: int | None = None) -> str | None:
    """None when ``threads`` fit the usable cores; a note when they oversubscribe them a little;
    :class:`ValidationError` beyond :data:`MAX_THREADS_PER_CORE` per core.

    Example:
        >>> check_threads(10_000, cores=2)
        Traceback (most recent call last):
        ...
        edgequant.errors.ValidationError: --threads 10000 oversubscribes the 2 cores this process may use (at most 8 threads, 4 per core); use --threads 2
    """
    n = usable_cores() if cores is None else cores
    if threads <= n:
        return None
    if threads > MAX_THREADS_PER_CORE * n:
        raise ValidationError(
            f"--threads {threads} oversubscribes the {n} cores this process may use "
            f"(at most {MAX_THREADS_PER_CORE * n} threads, {MAX_THREADS_PER_CORE} per core); "
            f"use --threads {n}"
        )
    return (
        f"oversubscribed: --threads {threads} on the {n} cores this process may use; "
        "the runtime threads compete for cores and the latencies include that"
    )


__all__ = [
    "BATCH_COPIES",
    "MAX_THREADS_PER_CORE",
    "available_memory_bytes",
    "check_batch_memory",
    "check_run_dir",
    "check_threads",
    "check_utf8_path",
    "usable_cores",
]
