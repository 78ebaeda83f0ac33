"""Dask resource names: how a task finds a worker of its device, runtime and CPU class.

An ``edgequant worker`` holds one unit of each of its resources; a cell's task asks for one unit
of its device and one of its runtime, so it runs only there, and never beside another cell on
the same board (the worker also has a single task slot).

Example:
    >>> device_resource("rpi5"), runtime_resource("tflite-like"), cpu_resource("arm-dotprod")
    ('device-rpi5', 'runtime-tflite-like', 'cpu-arm-dotprod')
"""

from __future__ import annotations

DEVICE_PREFIX = "device-"
RUNTIME_PREFIX = "runtime-"
CPU_PREFIX = "cpu-"
#: the key of a worker's description in ``Client.scheduler_info()["workers"][ADDR]``
INFO_KEY = "edgequant"
#: the event topic a cell's task announces its start on (``Worker.log_event``)
EVENT_TOPIC = "edgequant-fleet"


def device_resource(device: str) -> str:
    """The resource a worker of ``device`` holds."""
    return f"{DEVICE_PREFIX}{device}"


def runtime_resource(backend: str) -> str:
    """The resource a worker that offers runtime ``backend`` holds."""
    return f"{RUNTIME_PREFIX}{backend}"


def cpu_resource(int8_class: str) -> str:
    """The resource a worker of INT8 class ``int8_class`` holds."""
    return f"{CPU_PREFIX}{int8_class}"


__all__ = [
    "CPU_PREFIX",
    "DEVICE_PREFIX",
    "EVENT_TOPIC",
    "INFO_KEY",
    "RUNTIME_PREFIX",
    "cpu_resource",
    "device_resource",
    "runtime_resource",
]
