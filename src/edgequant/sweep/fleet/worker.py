"""``edgequant worker``: this machine joins a fleet as one device.

A worker is a real Dask worker with ONE task slot (one benchmark per board at a time) holding
one unit of each of its resources (:mod:`~edgequant.sweep.fleet.names`): its device name, its CPU's
INT8 class (:func:`edgequant.hw.cpu.cpu_profile`) and each runtime it offers. It tells the
scheduler what it is through Dask's ``startup_information`` (shown by ``edgequant cluster``):
device, CPU, INT8 class and the runtimes with their versions. ``runtimes`` restricts the offer
(a Pi may offer two runtimes only, and tests pose as different devices with it).

Dask's memory manager is off (``memory_limit=0``): a benchmark's memory is its own business,
and a worker must never pause or spill in the middle of a measurement.

Example:
    >>> info = describe(device="bench-x86", runtimes=["sim"])
    >>> info["device"], sorted(info["runtimes"]), "int8_class" in info
    ('bench-x86', ['sim'], True)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import signal
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgequant.errors import BackendUnavailableError, ValidationError
from edgequant.sweep.fleet.names import INFO_KEY, cpu_resource, device_resource, runtime_resource

#: how long a worker waits for an unreachable scheduler before it gives up (seconds)
DEATH_TIMEOUT_S = 120.0

#: set by :func:`run_worker` in the worker's process; read by the cells' tasks
_STATE: dict[str, Any] = {}


def offered_runtimes(only: Sequence[str] | None = None) -> dict[str, str]:
    """Runtime name -> version string of every runtime available here (or of ``only``).

    A runtime named in ``only`` that is not available here is an error saying why.
    """
    from edgequant.backends import backend_names, canonical_name, get_backend

    names = backend_names() if only is None else [canonical_name(n) for n in only]
    out: dict[str, str] = {}
    for name in names:
        if name not in backend_names():
            raise ValidationError(
                f"unknown runtime {name!r} in --runtimes; known: {', '.join(backend_names())}"
            )
        backend = get_backend(name)
        why = backend.unavailable_reason()
        if why is not None:
            if only is not None:
                raise BackendUnavailableError(f"--runtimes names {name}, not available here: {why}")
            continue
        try:
            versions = backend.versions()
        except Exception:  # a version we cannot read does not make the runtime unusable
            versions = {}
        out[name] = ", ".join(f"{k} {v}" for k, v in versions.items()) or "?"
    return out


def describe(
    *, device: str, runtimes: Sequence[str] | None = None, work_dir: Path | None = None
) -> dict[str, Any]:
    """What this worker tells the scheduler about itself (JSON-safe)."""
    from edgequant import __version__
    from edgequant.hw.cpu import cpu_profile

    profile = cpu_profile()
    return {
        "device": device,
        "host": socket.gethostname(),
        "cpu": profile.model,
        "arch": profile.arch,
        "int8_class": profile.int8_class,
        "cores": profile.logical_cores,
        "runtimes": offered_runtimes(runtimes),
        "edgequant": __version__,
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "work_dir": str(work_dir or default_work_dir()),
    }


def default_work_dir() -> Path:
    """Where a worker keeps received artifacts and cells in flight: ``CACHE/fleet``."""
    from edgequant.build.cache import default_cache_dir

    return default_cache_dir() / "fleet"


def work_dir() -> Path:
    """This worker's folder (the default when the process is a plain ``dask worker``)."""
    return Path(_STATE.get("work_dir") or default_work_dir())


def resources_of(info: dict[str, Any]) -> dict[str, float]:
    """The Dask resources of a worker described by :func:`describe`."""
    out = {device_resource(info["device"]): 1.0, cpu_resource(info["int8_class"]): 1.0}
    out.update({runtime_resource(r): 1.0 for r in info["runtimes"]})
    return out


async def _serve(scheduler: str, info: dict[str, Any], host: str | None) -> None:
    from distributed import Worker

    name = f"{info['device']}@{info['host']}:{os.getpid()}"
    worker = Worker(
        scheduler,
        nthreads=1,
        name=name,
        resources=resources_of(info),
        memory_limit=0,
        startup_information={INFO_KEY: lambda _w: info},
        local_directory=str(Path(info["work_dir"]) / "dask"),
        host=host,
        dashboard=False,
        death_timeout=DEATH_TIMEOUT_S,
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(worker.close()))
    await worker
    await worker.finished()


def run_worker(
    scheduler: str,
    device: str,
    *,
    runtimes: Sequence[str] | None = None,
    work_dir: Path | None = None,
    host: str | None = None,
) -> dict[str, Any]:
    """Join ``scheduler`` as device ``device`` and serve cells until stopped (SIGTERM, Ctrl-C).

    Returns the description it registered with.

    Example:
        >>> run_worker("tcp://10.0.0.2:8786", "rpi5", runtimes=["onnxruntime"])  # doctest: +SKIP
    """
    from edgequant.sweep.experiment import check_device_name

    check_device_name(device)
    if device == "local":
        raise ValidationError("'local' means the submitting machine: give the worker another name")
    info = describe(device=device, runtimes=runtimes, work_dir=work_dir)
    if not info["runtimes"]:
        raise BackendUnavailableError(
            "no runtime is available here: install one (see `edgequant backends`) before joining"
        )
    Path(info["work_dir"]).mkdir(parents=True, exist_ok=True)
    _STATE.update(work_dir=info["work_dir"], device=device)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(scheduler, info, host))
    return info


__all__ = [
    "DEATH_TIMEOUT_S",
    "default_work_dir",
    "describe",
    "offered_runtimes",
    "resources_of",
    "run_worker",
    "work_dir",
]
