"""The device fleet: one sweep across many machines, on a Dask distributed cluster.

Three commands (docs/fleet.md has the whole set-up, Raspberry Pi and Jetson included)::

    edgequant cluster --start-scheduler --port 8786          # or: dask scheduler
    edgequant worker --scheduler tcp://HOST:8786 --device rpi5  # on each device
    edgequant sweep exp.yaml --devices local,rpi5 --cluster tcp://HOST:8786 -o runs/

* :mod:`~edgequant.sweep.fleet.names`: the Dask resource names of a device, a CPU class, a runtime;
* :mod:`~edgequant.sweep.fleet.worker`: ``edgequant worker`` (one task slot, resources, what it offers);
* :mod:`~edgequant.sweep.fleet.cluster`: connecting, listing the devices, starting a scheduler;
* :mod:`~edgequant.sweep.fleet.ship`: artifacts packed with a content hash the device checks;
* :mod:`~edgequant.sweep.fleet.task`: what runs on the device (a fresh ``edgequant bench`` per cell);
* :mod:`~edgequant.sweep.fleet.launcher`: :class:`~edgequant.sweep.fleet.launcher.DaskLauncher`, the
  :class:`~edgequant.sweep.launch.Launcher` of a fleet.

Nothing here imports Dask until a cluster is used, so local sweeps need no Dask at all.

Example:
    >>> from edgequant.sweep.fleet.names import device_resource
    >>> device_resource("rpi5")
    'device-rpi5'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from edgequant.errors import ValidationError

if TYPE_CHECKING:
    from edgequant.sweep.launch import Launcher
    from edgequant.sweep.plan import Cell


def choose_launcher(cells: Sequence[Cell], cluster: str | None, local: Launcher) -> Launcher:
    """``local`` when every cell is local and no cluster is named, else a Dask launcher that
    runs the local cells through ``local`` and the others on their devices.

    Example:
        >>> from edgequant.sweep import parse_experiment
        >>> from edgequant.sweep.local import ByIsolation
        >>> cells = parse_experiment("models: [digits_cnn]").cells()
        >>> type(choose_launcher(cells, None, ByIsolation())).__name__
        'ByIsolation'
    """
    remote = sorted({c.device for c in cells if not c.is_local})
    if cluster is None and not remote:
        return local
    if cluster is None:
        raise ValidationError(
            f"device(s) {', '.join(remote)} need a cluster: pass --cluster tcp://HOST:8786 "
            "(the scheduler the `edgequant worker`s joined), or use --devices local"
        )
    from edgequant.sweep.fleet.launcher import DaskLauncher

    return DaskLauncher(cluster, local=local)


__all__ = ["choose_launcher"]
