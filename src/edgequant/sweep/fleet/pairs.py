"""Paired rounds on the devices: a pair of a device's cells is measured on that device.

A pair's two cells ran on one device, so its interleaved A/B rounds must run there too (a ratio
measured on the submitting host says nothing about the Pi). :func:`run_device_pairs` sends one
Dask task per model/backend/device (:func:`edgequant.sweep.fleet.task.pairs_on_device`, routed
by the same device and runtime resources as the cells). It runs the same rounds process as a
local sweep (``python -m edgequant.sweep.worker --pairs``) in the worker's process tree:

* a side whose artifact was built on this host and shipped for its cell
  (``extra.fleet.artifact_host_dir``) gets that artifact shipped again, with its content hash;
  a side built on the device finds its build in the device's artifact cache;
* each pair's ``paired`` result (or ``None`` and the reason) comes back with the LoadGen logs
  of its rounds, unpacked into ``RUNS/<cell-id>/paired/``; the result says which device measured
  it (``device``);
* a device with no worker offering the runtime, a task that fails, times out or whose device is
  lost gives the pairs ``paired: null`` with the reason; Ctrl-C stops the rounds on the device.

Example:
    >>> launcher = DaskLauncher("tcp://10.0.0.2:8786")                           # doctest: +SKIP
    >>> run_device_pairs(launcher, pairs, Path("runs"), print)                  # doctest: +SKIP
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgequant.console import log
from edgequant.errors import condense_error
from edgequant.sweep.fleet.cluster import by_device, connect, offers, submit_to, workers
from edgequant.sweep.fleet.ship import pack_artifact, unpack
from edgequant.sweep.fleet.task import pairs_on_device
from edgequant.sweep.pairs import OnPaired, Pair
from edgequant.sweep.records import RESULT_FILE, last_line, read_record
from edgequant.sweep.rounds import PAIRED_DIR

if TYPE_CHECKING:
    from edgequant.sweep.fleet.launcher import DaskLauncher


def pair_task(
    pairs: Sequence[Pair], runs_dir: Path, token: str
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The device task of one model/backend/device's ``pairs`` and the artifacts it ships
    (content hash -> packed folder): each side's host-built artifact, when its cell shipped one.

    Example:
        >>> from edgequant.sweep import parse_experiment
        >>> from edgequant.sweep.pairs import find_pairs
        >>> exp = parse_experiment("models: [digits_cnn]\\nschemes: [fp32, w8a8]\\n"
        ...                        "scenarios: [Offline]\\ndevices: [pi]")
        >>> task, blobs = pair_task(find_pairs(exp), Path("/nonexistent"), "t0")
        >>> task["key"], len(task["pairs"]), blobs
        ('digits_cnn__onnxruntime__pi', 1, {})
    """
    from edgequant.sweep.fleet.launcher import scheme_text

    blobs: dict[str, bytes] = {}
    items = []
    for pair in pairs:
        item = pair.task(runs_dir)
        for side, cell in (("baseline", pair.baseline), ("other", pair.other)):
            item[side]["scheme_text"] = scheme_text(cell)
            rec = read_record(runs_dir / cell.cell_id / RESULT_FILE)
            built = (rec.extra.get("fleet") or {}).get("artifact_host_dir") if rec else None
            if built and Path(built).is_dir():
                blob, digest = pack_artifact(Path(built))
                blobs[digest] = blob
                item[side]["artifact_sha256"] = digest
        items.append(item)
    key = pairs[0].other.pair_key
    return {
        "key": key,
        "cell": f"pairs:{key}",
        "sweep": token,
        "stop_event": f"edgequant-stop-{token}",
        "timeout_s": sum(p.other.timeout_s for p in pairs),
        "pairs": items,
    }, blobs


def run_device_pairs(
    launcher: DaskLauncher, pairs: Sequence[Pair], runs_dir: Path, on_paired: OnPaired
) -> None:
    """Run each device's ``pairs`` on that device (see the module docstring); ``on_paired`` once
    per pair, in this thread. ``KeyboardInterrupt`` stops the devices' rounds and propagates."""
    if not pairs:
        return
    client = connect(launcher.scheduler, launcher.connect_timeout_s)
    token = uuid.uuid4().hex[:12]
    futures: dict[Any, list[Pair]] = {}
    try:
        fleet = by_device(workers(client))
        by_pair_key: dict[str, list[Pair]] = {}
        for p in pairs:
            by_pair_key.setdefault(p.other.pair_key, []).append(p)
        for key, members in by_pair_key.items():
            cell = members[0].other
            if not offers(fleet.get(cell.device, []), cell.backend):
                why = f"not paired: no worker of device {cell.device} offering {cell.backend}"
                for p in members:
                    on_paired(p, None, f"{why} is connected to {launcher.scheduler}")
                continue
            task, blobs = pair_task(members, runs_dir, token)
            log(f"paired rounds on {cell.device}: {len(members)} pair(s) of {key}")
            future = submit_to(
                client,
                cell.device,
                cell.backend,
                f"eq-pairs-{key}-{token}",
                pairs_on_device,
                task,
                blobs,
            )
            futures[future] = members
        _follow(launcher, client, futures, runs_dir, on_paired, token)
    finally:
        client.close()


def _follow(
    launcher: DaskLauncher,
    client: Any,
    futures: dict[Any, list[Pair]],
    runs_dir: Path,
    on_paired: OnPaired,
    token: str,
) -> None:
    """Wait for the devices' pair tasks; a device gone for ``lost_grace_s`` costs its pairs."""
    pending = set(futures)
    missing: dict[Any, float] = {}
    try:
        while pending:
            for future in [f for f in pending if f.done()]:
                pending.discard(future)
                _finish(future, futures[future], runs_dir, on_paired)
            fleet = by_device(workers(client)) if pending else {}
            for future in list(pending):
                cell = futures[future][0].other
                if offers(fleet.get(cell.device, []), cell.backend):
                    missing.pop(future, None)
                elif time.monotonic() - missing.setdefault(future, time.monotonic()) > (
                    launcher.lost_grace_s
                ):
                    future.cancel()
                    pending.discard(future)
                    why = f"not paired: device {cell.device} was lost during the paired rounds"
                    for p in futures[future]:
                        on_paired(p, None, why)
            if pending:
                time.sleep(launcher.poll_s)
    except BaseException:  # Ctrl-C, SIGTERM: stop the rounds on the devices, record nothing
        try:
            from distributed import Event

            Event(f"edgequant-stop-{token}", client=client).set()
            client.cancel(list(pending), force=True)
        except Exception as e:  # the scheduler is gone already
            log(f"could not tell the devices to stop: {condense_error(e)}")
        raise


def _finish(future: Any, pairs: list[Pair], runs_dir: Path, on_paired: OnPaired) -> None:
    """One task's pairs: their results and round logs, or ``None`` with the reason."""
    device = pairs[0].other.device
    try:
        result = future.result()
    except Exception as e:  # KilledWorker, a lost scheduler
        result = {"error": f"device {device} could not run the rounds: {condense_error(e)}"}
    for cell_id, blob in (result.get("files") or {}).items():
        dest = runs_dir / cell_id / PAIRED_DIR
        shutil.rmtree(dest, ignore_errors=True)
        unpack(blob, dest)
    events = {e.get("cell"): e for e in result.get("events") or []}
    if result.get("error"):
        why = f"paired rounds failed on {device}: {result['error']}"
    elif result.get("timed_out"):
        why = f"the paired rounds on {device} timed out (cell_timeout_s)"
    else:
        tail = last_line(str(result.get("log_tail") or ""))
        why = f"the rounds process on {device} ended early: {tail or result.get('returncode')}"
    for p in pairs:
        event = events.get(p.other.cell_id)
        if event is None:
            on_paired(p, None, why[:500])
            continue
        paired = event.get("paired")
        if isinstance(paired, dict):
            paired = dict(paired, device=device, worker=result.get("worker"))
        on_paired(p, paired, event.get("reason"))


__all__ = ["pair_task", "run_device_pairs"]
