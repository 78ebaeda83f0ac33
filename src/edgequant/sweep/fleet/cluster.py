"""The cluster seen from the submitting host: connect, list the devices, start a scheduler.

Example:
    >>> view = WorkerView.from_info("tcp://10.0.0.5:40000", {
    ...     "resources": {"device-rpi5": 1, "cpu-arm-dotprod": 1, "runtime-litert": 1}})
    >>> view.device, view.int8_class, sorted(view.runtimes)
    ('rpi5', 'arm-dotprod', ['litert'])
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from edgequant.errors import EdgequantError, condense_error
from edgequant.sweep.fleet.names import (
    CPU_PREFIX,
    DEVICE_PREFIX,
    INFO_KEY,
    RUNTIME_PREFIX,
    device_resource,
    runtime_resource,
)

#: seconds to wait for the scheduler when connecting
CONNECT_TIMEOUT_S = 20.0
DEFAULT_PORT = 8786


class ClusterError(EdgequantError):
    """The scheduler cannot be reached, or the cluster cannot do what was asked."""

    exit_code = 9


@dataclass(frozen=True, kw_only=True)
class WorkerView:
    """One worker as the scheduler knows it: its device, CPU class and runtimes."""

    address: str
    device: str | None
    int8_class: str | None = None
    runtimes: dict[str, str] = field(default_factory=dict)
    cpu: str = ""
    arch: str = ""
    name: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_info(cls, address: str, worker: dict[str, Any]) -> WorkerView:
        """From ``scheduler_info()["workers"][address]`` (an ``edgequant worker``'s description,
        or only the resources of a plain ``dask worker --resources device-NAME=1``)."""
        info = worker.get(INFO_KEY) or {}
        res = worker.get("resources") or {}

        def named(prefix: str) -> list[str]:
            return [k[len(prefix) :] for k in res if k.startswith(prefix)]

        devices = named(DEVICE_PREFIX)
        classes = named(CPU_PREFIX)
        runtimes = info.get("runtimes") or dict.fromkeys(named(RUNTIME_PREFIX), "?")
        return cls(
            address=address,
            device=info.get("device") or (devices[0] if devices else None),
            int8_class=info.get("int8_class") or (classes[0] if classes else None),
            runtimes=dict(runtimes),
            cpu=str(info.get("cpu", "")),
            arch=str(info.get("arch", "")),
            name=str(worker.get("name", "")),
            info=dict(info),
        )

    def to_dict(self) -> dict[str, Any]:
        """Every field but ``info`` (the raw description), for ``edgequant cluster --json``."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "info"}


def offers(group: list[WorkerView], runtime: str) -> bool:
    """True when a worker of ``group`` (one device's) offers ``runtime``."""
    return any(runtime in v.runtimes for v in group)


def submit_to(
    client: Any, device: str, runtime: str, key: str, fn: Callable[..., Any], *args: Any
) -> Any:
    """``client.submit(fn, *args)`` to a worker of ``device`` offering ``runtime``: the task
    holds one unit of each resource, so a board runs one measurement at a time.

    Example:
        >>> submit_to(client, "rpi5", "RUNTIME", "eq-cell-1", run_on_device, task)  # doctest: +SKIP
        <Future: pending, key: eq-cell-1>
    """
    resources = {device_resource(device): 1, runtime_resource(runtime): 1}
    return client.submit(fn, *args, key=key, resources=resources, pure=False)


def connect(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> Any:
    """A Dask ``Client`` of the scheduler at ``address`` (one clear error when unreachable)."""
    try:
        from distributed import Client
    except ImportError:
        raise ClusterError(
            "a cluster needs Dask: pip install 'dask[distributed]>=2024.1' (or edgequant[fleet])"
        ) from None
    try:
        return Client(address, timeout=timeout_s, set_as_default=False)
    except (OSError, TimeoutError) as e:
        raise ClusterError(
            f"cannot reach the Dask scheduler at {address} ({condense_error(e)}); start one with "
            "`edgequant cluster --start-scheduler` or `dask scheduler`"
        ) from None


def workers(client: Any) -> list[WorkerView]:
    """Every worker the scheduler knows, those without a device included (device None)."""
    try:
        info = client.scheduler_info(n_workers=-1)  # recent Dask lists 5 workers unless asked
    except TypeError:  # older Dask: every worker, and no such argument
        info = client.scheduler_info()
    return [WorkerView.from_info(a, w) for a, w in sorted(info.get("workers", {}).items())]


def by_device(views: list[WorkerView]) -> dict[str, list[WorkerView]]:
    """The fleet's workers grouped by device name (workers without one left out)."""
    out: dict[str, list[WorkerView]] = {}
    for v in views:
        if v.device is not None:
            out.setdefault(v.device, []).append(v)
    return out


def device_table(views: list[WorkerView]) -> list[dict[str, Any]]:
    """One row per device: its workers, CPU classes and runtimes (what ``edgequant cluster``
    prints).

    Example:
        >>> v = WorkerView(address="tcp://a:1", device="pi", int8_class="arm-neon",
        ...                runtimes={"litert": "1.0"})
        >>> device_table([v])[0]["runtimes"]
        {'litert': '1.0'}
    """
    rows = []
    for device, group in sorted(by_device(views).items()):
        runtimes: dict[str, str] = {}
        for v in group:
            runtimes.update(v.runtimes)
        rows.append(
            {
                "device": device,
                "workers": [v.address for v in group],
                "int8_classes": sorted({v.int8_class or "?" for v in group}),
                "cpus": sorted({v.cpu for v in group if v.cpu}),
                "runtimes": dict(sorted(runtimes.items())),
            }
        )
    return rows


async def _serve_scheduler(host: str | None, port: int, on_ready: Any) -> None:
    from distributed import Scheduler

    scheduler = Scheduler(host=host, port=port, dashboard=False)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(scheduler.close()))
    await scheduler
    on_ready(scheduler.address)
    await scheduler.finished()


def start_scheduler(
    host: str | None = None, port: int = DEFAULT_PORT, on_ready: Any = None
) -> None:
    """Run a Dask scheduler here until stopped (SIGTERM, Ctrl-C); ``on_ready(address)`` once
    it listens. The same as ``dask scheduler --host HOST --port PORT``, without the dashboard.

    Example:
        >>> start_scheduler("0.0.0.0", 8786, print)   # doctest: +SKIP
        tcp://10.0.0.2:8786
    """
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise ClusterError(
            "a scheduler needs Dask: pip install 'dask[distributed]>=2024.1'"
        ) from None
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_scheduler(host, port, on_ready or (lambda _a: None)))


__all__ = [
    "CONNECT_TIMEOUT_S",
    "DEFAULT_PORT",
    "ClusterError",
    "WorkerView",
    "by_device",
    "connect",
    "device_table",
    "offers",
    "start_scheduler",
    "submit_to",
    "workers",
]
