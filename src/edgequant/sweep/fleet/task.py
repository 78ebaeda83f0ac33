"""What runs on the device: one cell in a fresh ``edgequant bench`` process.

:func:`run_on_device` is the function the launcher submits (one Dask task per cell). It:

1. announces the start on the ``edgequant-fleet`` event topic (the sweep learns which cell a
   lost device was measuring);
2. unpacks the artifact built on the submitting host, if one came, refusing it unless its
   content hash is the one the host computed (:func:`edgequant.sweep.fleet.ship.unpack_checked`);
   otherwise the bench process builds the artifact here (machine-specific formats);
3. runs ``edgequant bench --json`` in a fresh process (through the sweep's guard: it dies with
   the worker, even by ``kill -9``), stopped at the cell's timeout or when the sweep asks;
4. returns the child's stdout and exit code and the run folder packed (``result.json``,
   ``bench.log``, LoadGen's logs); the sweep turns that into the cell's record.

Example (the launcher builds ``task``; see :class:`~edgequant.sweep.fleet.launcher.DaskLauncher`)::

    client.submit(run_on_device, task, artifact_blob, resources={"device-rpi5": 1})
"""

from __future__ import annotations

import resource
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from edgequant.sweep.fleet.names import EVENT_TOPIC
from edgequant.sweep.fleet.ship import MAX_RETURNED_FILE_BYTES, pack, unpack_checked
from edgequant.sweep.fleet.worker import work_dir

#: ``BenchConfig`` fields a prebuilt artifact still needs (the rest is in the artifact)
ARTIFACT_KEEPS = ("scenario", "data", "accuracy", "threads", "duration_s", "run_dir")
#: what accuracy mode needs besides: the fp32 model, for the reference
ACCURACY_KEEPS = ("model", "arch", "weights")
#: seconds between two looks at the sweep's stop event while a cell runs
STOP_POLL_S = 2.0


def _worker() -> Any:
    try:
        from distributed import get_worker

        return get_worker()
    except (ImportError, ValueError):  # called outside a worker (a test, a script)
        return None


def _announce(task: dict[str, Any]) -> str | None:
    worker = _worker()
    if worker is None:
        return None
    worker.log_event(
        EVENT_TOPIC,
        {"event": "start", "cell": task["cell"], "worker": worker.address, "sweep": task["sweep"]},
    )
    return str(worker.address)


def _stop_requested(name: str | None) -> bool:
    """True when the sweep set its stop event (Ctrl-C on the submitting host)."""
    if not name or _worker() is None:
        return False
    try:
        from distributed import Event, get_client

        return bool(Event(name, client=get_client()).is_set())
    except Exception:  # the scheduler is busy or gone: keep measuring, the timeout still holds
        return False


def _config(task: dict[str, Any], run_dir: Path, artifact_dir: Path | None) -> dict[str, Any]:
    config = dict(task["config"], run_dir=str(run_dir))
    if task.get("scheme_text") is not None:
        scheme = run_dir.parent / f"{run_dir.name}.scheme.yaml"
        scheme.write_text(task["scheme_text"])
        config["scheme"] = str(scheme)
    if artifact_dir is not None:
        keep = ARTIFACT_KEEPS + (ACCURACY_KEEPS if config.get("accuracy") else ())
        config = {k: v for k, v in config.items() if k in keep}
        config["artifact"] = str(artifact_dir)
    return config


def _run_child(argv: list[str], log: Path, timeout_s: float, stop: str | None) -> dict[str, Any]:
    """Run ``argv`` (stderr into ``log``) until it ends, ``timeout_s`` passes or the sweep asks
    it to stop; its stdout, exit code and which of those ended it."""
    from edgequant.sweep.launch import kill, spawn

    t0 = time.monotonic()
    timed_out = stopped = False
    chunks: list[str] = []
    with open(log, "w") as errf:
        proc = spawn(argv, errf)
        while True:
            try:
                out, _ = proc.communicate(timeout=STOP_POLL_S)
                chunks.append(out or "")
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() - t0 > timeout_s:
                    timed_out = True
                elif _stop_requested(stop):
                    stopped = True
                else:
                    continue
                kill(proc)
                break
    return {
        "stdout": "".join(chunks),
        "returncode": proc.returncode,
        "timed_out": timed_out,
        "stopped": stopped,
    }


def run_on_device(task: dict[str, Any], artifact: bytes | None = None) -> dict[str, Any]:
    """Run one cell here in a fresh ``edgequant bench``; returns what the sweep needs.

    ``task`` is :meth:`DaskLauncher.task_of`'s mapping (the cell's ``BenchConfig`` keyword
    arguments, its id, timeout and, with ``artifact``, the artifact's content hash).
    """
    from edgequant.sweep.plan import config_argv, default_bench_command

    address = _announce(task)
    root = work_dir()
    run_dir = root / "runs" / task["sweep"] / task["cell"]
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    artifact_dir = None
    out: dict[str, Any] = {"worker": address, "device_run_dir": str(run_dir), "error": None}
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    try:
        if artifact is not None:
            digest = str(task["artifact_sha256"])
            artifact_dir = unpack_checked(artifact, digest, root / "artifacts" / digest[:20])
        argv = default_bench_command() + config_argv(_config(task, run_dir, artifact_dir))
        log = run_dir / "bench.log"
        out.update(_run_child(argv, log, float(task["timeout_s"]), task.get("stop_event")))
    except Exception as e:  # a refused artifact, a full disk: the cell fails, the worker stays
        from edgequant.errors import condense_error

        out["error"] = condense_error(e)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    out["seconds"] = time.perf_counter() - t0
    out["cpu_s"] = ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
    out["files"] = pack(run_dir, max_file_bytes=MAX_RETURNED_FILE_BYTES)
    shutil.rmtree(run_dir, ignore_errors=True)
    return out


def pairs_on_device(task: dict[str, Any], artifacts: dict[str, bytes]) -> dict[str, Any]:
    """Run one model/backend's paired rounds here, in a fresh ``python -m edgequant.sweep.worker
    --pairs`` (both artifacts of each pair loaded side by side, rounds interleaved).

    ``task`` is ``{"key", "sweep", "stop_event", "timeout_s", "pairs": [Pair.task(...)]}``
    (:mod:`edgequant.sweep.fleet.pairs`); a side with ``artifact_sha256`` runs the artifact
    shipped in ``artifacts`` (checked against that hash), the others their cell's build from this
    device's artifact cache. Returns the worker's ``paired`` events, its exit, the stderr's last
    line and each pair's ``paired/`` folder (LoadGen's logs of every round) packed.
    """
    import json

    from edgequant.sweep.local import worker_command
    from edgequant.sweep.pairs import paired_event

    root = work_dir()
    folder = root / "pairs" / task["sweep"] / task["key"]
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    out: dict[str, Any] = {"worker": _announce(task), "error": None, "events": [], "files": {}}
    try:
        items = [_pair_here(p, folder, root, artifacts) for p in task["pairs"]]
        pairs_file = folder / "pairs.json"
        pairs_file.write_text(json.dumps(items, indent=1))
        argv = [*worker_command(pairs_file)[:-1], "--pairs", str(pairs_file)]
        log = folder / "pairs.log"
        out.update(_run_child(argv, log, float(task["timeout_s"]), task.get("stop_event")))
        out["events"] = [e for e in map(paired_event, out.pop("stdout").splitlines()) if e]
        out["log_tail"] = log.read_text(errors="replace")[-2000:]
        for item in items:
            paired_dir = Path(item["other"]["run_dir"]) / "paired"
            if paired_dir.is_dir():
                out["files"][item["cell"]] = pack(
                    paired_dir, max_file_bytes=MAX_RETURNED_FILE_BYTES
                )
    except Exception as e:  # a refused artifact, a full disk: these pairs fail, the worker stays
        from edgequant.errors import condense_error

        out["error"] = condense_error(e)
    shutil.rmtree(folder, ignore_errors=True)
    return out


def _pair_here(
    pair: dict[str, Any], folder: Path, root: Path, artifacts: dict[str, bytes]
) -> dict[str, Any]:
    """A pair's task with this device's paths: run folders under ``folder``, shipped artifacts
    unpacked (and checked) under the worker's folder."""
    item = dict(pair)
    for side in ("baseline", "other"):
        cell = pair[side]
        run_dir = folder / cell["cell"]
        run_dir.mkdir(parents=True, exist_ok=True)
        config = _config(cell, run_dir, None)
        digest = cell.get("artifact_sha256")
        if digest:
            config["artifact"] = str(
                unpack_checked(artifacts[digest], digest, root / "artifacts" / digest[:20])
            )
        item[side] = {"cell": cell["cell"], "run_dir": str(run_dir), "config": config}
    return item


__all__ = ["ARTIFACT_KEEPS", "pairs_on_device", "run_on_device"]
