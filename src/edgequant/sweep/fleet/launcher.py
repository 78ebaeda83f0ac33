"""The Dask launcher: a sweep's cells of other devices run on their ``edgequant worker``s.

:class:`DaskLauncher` keeps the :class:`~edgequant.sweep.launch.Launcher` contract:

* one Dask task per cell, asking for one unit of the cell's device and runtime resources, so it
  runs only on a worker of that device offering that runtime, one cell per board at a time;
* artifacts of a runtime whose format is portable (the backend's ``portable_artifacts``
  capability: ONNX, OpenVINO IR, ``.tflite``) are built once here, in a fresh process, and
  shipped with their content hash, which the device checks before loading, to the devices
  whose CPU (architecture and INT8 class) is this host's: a runtime's int8 layout is chosen
  for the CPU that builds (ONNX Runtime takes U8S8 on x86 and S8S8 on ARM), so a device of
  another CPU builds its own; machine-specific artifacts (AOTInductor packages) are always
  built on the device by its bench process;
* each cell runs in a fresh ``edgequant bench`` on its device (:mod:`edgequant.sweep.fleet.task`);
  its record streams back as soon as it is done, with the device's environment, the device's
  name in ``record.device`` and LoadGen's logs copied into ``RUNS/<cell-id>/``;
* a cell for a device with no worker connected is ``failed`` (a re-run retries it); a runtime
  the device does not offer is ``na`` with the reason; an ISA the device lacks is the device's
  bench's own ``na`` verdict;
* a device that disappears mid-cell: Dask moves the task to another worker of the same device
  when there is one (``extra.fleet.starts`` counts the tries); otherwise, after
  ``lost_grace_s`` without any such worker, the cell is ``failed`` with the reason and the
  sweep goes on (Dask itself would wait forever for a resource nobody holds);
* Ctrl-C: the workers are told to stop their cells, the cells in flight are ``interrupted``.

Cells of the device ``local`` go to the ``local`` launcher afterwards, on this machine.

Example:
    >>> from edgequant.sweep import run_sweep
    >>> run_sweep("exp.yaml", "runs/", launcher=DaskLauncher("tcp://10.0.0.2:8786"))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgequant.console import log
from edgequant.errors import condense_error
from edgequant.results.record import ResultRecord
from edgequant.sweep.fleet.cluster import (
    CONNECT_TIMEOUT_S,
    WorkerView,
    by_device,
    connect,
    offers,
    submit_to,
    workers,
)
from edgequant.sweep.fleet.names import EVENT_TOPIC
from edgequant.sweep.fleet.ship import pack_artifact, unpack
from edgequant.sweep.fleet.task import run_on_device
from edgequant.sweep.launch import Finished, Launcher, OnRecord, kill, spawn
from edgequant.sweep.plan import LOCAL_DEVICE, Cell, cell_config, cell_task
from edgequant.sweep.records import (
    RESULT_FILE,
    bench_record,
    fresh_run_dir,
    now,
    parent_record,
    save_interrupted,
)

if TYPE_CHECKING:
    from edgequant.sweep.pairs import OnPaired, Pair

FLEET_DIR = "fleet"
#: seconds a cell waits for a worker of its device (with its runtime) before it is failed
LOST_GRACE_S = 30.0


def portable(backend: str) -> bool:
    """True when ``backend``'s artifacts run on any machine with the runtime (build them here)."""
    from edgequant.backends import get_backend

    try:
        be = get_backend(backend)
        return bool(getattr(be, "portable_artifacts", False)) and be.available()
    except Exception:  # unknown here, or broken: the device builds it
        return False


def scheme_text(cell: Cell) -> str | None:
    """The scheme as YAML when it is not a built-in name (a file or a mapping of this host)."""
    spec = cell.scheme.spec
    if isinstance(spec, str) and not spec.endswith((".yaml", ".yml")):
        return None
    import yaml

    return str(yaml.safe_dump(cell.scheme.scheme.to_dict(), sort_keys=False))


class DaskLauncher(Launcher):
    """Runs the cells of other devices on the Dask cluster at ``scheduler``; ``local`` runs the
    ``local`` cells (default: each cell's isolation, as a local sweep). ``build_here`` decides
    which backends' artifacts are built here and shipped (default: their capability)."""

    def __init__(
        self,
        scheduler: str,
        *,
        local: Launcher | None = None,
        lost_grace_s: float = LOST_GRACE_S,
        poll_s: float = 1.0,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        build_here: Callable[[str], bool] | None = None,
    ) -> None:
        self.scheduler = scheduler
        #: backend name -> build its artifacts here and ship them (default: :func:`portable`)
        self.build_here = build_here or portable
        self.local = local
        self.lost_grace_s = lost_grace_s
        self.poll_s = poll_s
        self.connect_timeout_s = connect_timeout_s

    def run(self, cells: Sequence[Cell], runs_dir: Path, on_record: OnRecord) -> None:
        remote = [c for c in cells if not c.is_local]
        here = [c for c in cells if c.is_local]
        if remote:
            client = connect(self.scheduler, self.connect_timeout_s)
            try:
                _FleetRun(self, client, runs_dir, on_record).run(remote)
            finally:
                client.close()
        if here:
            from edgequant.sweep.local import ByIsolation

            def as_local(done: Finished) -> None:
                done.record.device = done.record.device or LOCAL_DEVICE
                on_record(done)

            (self.local or ByIsolation()).run(here, runs_dir, as_local)

    def run_device_pairs(self, pairs: Sequence[Pair], runs_dir: Path, on_paired: OnPaired) -> None:
        """Each device's pairs on that device (:mod:`edgequant.sweep.fleet.pairs`)."""
        from edgequant.sweep.fleet.pairs import run_device_pairs

        run_device_pairs(self, pairs, runs_dir, on_paired)


class _FleetRun:
    """One launcher run on the cluster: verdicts, host builds, tasks, results, lost devices."""

    def __init__(
        self, launcher: DaskLauncher, client: Any, runs_dir: Path, on_record: OnRecord
    ) -> None:
        self.launcher, self.client, self.runs_dir = launcher, client, runs_dir
        self.on_record = on_record
        self.token = uuid.uuid4().hex[:12]
        self.stop_event = f"edgequant-stop-{self.token}"
        self.futures: dict[Any, Cell] = {}
        self.starts: dict[str, list[str]] = {}
        self.started_at: dict[str, str] = {}
        self.missing_since: dict[str, float] = {}
        self.shipped: dict[str, str] = {}

    # --- before anything runs ------------------------------------------------------------------
    def run(self, cells: Sequence[Cell]) -> None:
        fleet = by_device(workers(self.client))
        for device, group in sorted(fleet.items()):
            runtimes = sorted({r for v in group for r in v.runtimes})
            classes = sorted({v.int8_class or "?" for v in group})
            log(
                f"device {device}: {len(group)} worker(s), {'/'.join(classes)}, {', '.join(runtimes)}"
            )
        runnable = []
        for cell in cells:
            verdict = self.verdict(cell, fleet)
            if verdict is None:
                runnable.append(cell)
            else:
                self.record(cell, parent_record(cell, *verdict, now()), 0.0)
        if not runnable:
            return
        artifacts = self.host_builds([c for c in runnable if self.same_cpu(fleet[c.device])])
        self.client.subscribe_topic(EVENT_TOPIC, self.on_event)
        try:
            for cell in runnable:
                self.submit(cell, artifacts.get(cell.cell_id))
            self.follow()
        finally:
            self.client.unsubscribe_topic(EVENT_TOPIC)

    def verdict(self, cell: Cell, fleet: dict[str, list[WorkerView]]) -> tuple[str, str] | None:
        """(status, reason) of a cell that cannot be sent now, else None."""
        group = fleet.get(cell.device)
        if not group:
            return (
                "failed",
                f"no worker of device {cell.device} is connected to {self.launcher.scheduler} "
                f"(run `edgequant worker --scheduler {self.launcher.scheduler} --device "
                f"{cell.device}` there); a re-run of the sweep runs this cell",
            )
        if not offers(group, cell.backend):
            have = sorted({r for v in group for r in v.runtimes}) or ["none reported"]
            return (
                "na",
                f"runtime {cell.backend} is not installed on device {cell.device} "
                f"(it offers {', '.join(have)})",
            )
        return None

    @staticmethod
    def same_cpu(group: Sequence[WorkerView]) -> bool:
        """True when every worker of a device has this host's architecture and INT8 class."""
        from edgequant.hw.cpu import cpu_profile

        here = cpu_profile()
        return all((v.arch, v.int8_class) == (here.arch, here.int8_class) for v in group)

    def host_builds(self, cells: Sequence[Cell]) -> dict[str, tuple[bytes, str, str]]:
        """Build the portable artifacts here in a fresh process; cell id -> (blob, hash, dir)."""
        todo = [c for c in cells if self.launcher.build_here(c.backend)]
        if not todo:
            return {}
        folder = self.runs_dir / FLEET_DIR
        folder.mkdir(parents=True, exist_ok=True)
        cells_file, out_file = folder / "builds.json", folder / "built.json"
        items = []
        for c in todo:
            item = cell_task(c, self.runs_dir)
            item["run_dir"] = str(folder / "builds" / c.cell_id)
            items.append(item)
        cells_file.write_text(json.dumps(items, indent=1))
        out_file.unlink(missing_ok=True)
        log(f"building {len(todo)} portable artifact(s) here to ship to the devices")
        argv = [*_python(), "-m", "edgequant.sweep.fleet.build", str(cells_file), str(out_file)]
        with open(folder / "build.log", "w") as errf:
            proc = spawn(argv, errf, stdout=errf)
            try:
                proc.wait()
            except BaseException:
                kill(proc)
                raise
        built = json.loads(out_file.read_text()) if out_file.is_file() else {}
        packed: dict[str, tuple[bytes, str]] = {}
        out: dict[str, tuple[bytes, str, str]] = {}
        for cell_id, entry in built.items():
            directory = entry.get("dir")
            if directory is None:
                log(f"{cell_id}: not built here ({entry.get('error')}); the device builds it")
                continue
            if directory not in packed:
                packed[directory] = pack_artifact(Path(directory))
            out[cell_id] = (*packed[directory], directory)
        return out

    def submit(self, cell: Cell, artifact: tuple[bytes, str, str] | None) -> None:
        task: dict[str, Any] = {
            "cell": cell.cell_id,
            "sweep": self.token,
            "config": cell_config(cell, self.runs_dir),
            "timeout_s": cell.timeout_s,
            "stop_event": self.stop_event,
            "scheme_text": scheme_text(cell),
        }
        blob = None
        if artifact is not None:
            blob, task["artifact_sha256"], self.shipped[cell.cell_id] = artifact
        key = f"eq-{cell.cell_id}-{self.token}"
        future = submit_to(self.client, cell.device, cell.backend, key, run_on_device, task, blob)
        self.futures[future] = cell

    # --- while the cells run -------------------------------------------------------------------
    def on_event(self, event: Any) -> None:
        """A task's start, announced from its worker (``(time, message)`` from Dask)."""
        msg = event[1] if isinstance(event, tuple | list) and len(event) == 2 else event
        if isinstance(msg, dict) and msg.get("sweep") == self.token and "cell" in msg:
            self.starts.setdefault(str(msg["cell"]), []).append(str(msg.get("worker")))
            self.started_at.setdefault(str(msg["cell"]), now())

    def follow(self) -> None:
        pending = set(self.futures)
        try:
            while pending:
                for future in [f for f in pending if f.done()]:
                    pending.discard(future)
                    self.finish(future)
                if pending:
                    pending -= self.check_lost(pending)
                if pending:
                    time.sleep(self.launcher.poll_s)
        except BaseException:  # Ctrl-C, SIGTERM: stop the devices' cells, keep nothing half-done
            self.stop(pending)
            raise

    def stop(self, pending: set[Any]) -> None:
        try:
            from distributed import Event

            Event(self.stop_event, client=self.client).set()
            self.client.cancel(list(pending), force=True)
        except Exception as e:  # the scheduler is gone already
            log(f"could not tell the devices to stop: {condense_error(e)}")
        for future in pending:
            cell = self.futures[future]
            if cell.cell_id in self.starts:
                save_interrupted(cell, self.runs_dir, self.started_at[cell.cell_id])

    def check_lost(self, pending: set[Any]) -> set[Any]:
        """Fail the cells whose device (with their runtime) has had no worker for too long."""
        fleet = by_device(workers(self.client))
        gone: set[Any] = set()
        t = time.monotonic()
        for future in pending:
            cell = self.futures[future]
            if offers(fleet.get(cell.device, []), cell.backend):
                self.missing_since.pop(cell.cell_id, None)
                continue
            since = self.missing_since.setdefault(cell.cell_id, t)
            if t - since < self.launcher.lost_grace_s:
                continue
            future.cancel()
            gone.add(future)
            tried = self.starts.get(cell.cell_id)
            grace = f"{self.launcher.lost_grace_s:g} s"
            if tried:
                why = (
                    f"device {cell.device} was lost mid-cell (worker {tried[-1]} left the cluster) "
                    f"and no other worker of {cell.device} offering {cell.backend} joined within "
                    f"{grace}; a re-run of the sweep measures it again"
                )
            else:
                why = (
                    f"device {cell.device} left the cluster before this cell started and no "
                    f"worker of it offering {cell.backend} joined within {grace}; a re-run of "
                    "the sweep measures it"
                )
            started = self.started_at.get(cell.cell_id, now())
            self.record(cell, parent_record(cell, "failed", why, started), 0.0)
        return gone

    # --- results -------------------------------------------------------------------------------
    def finish(self, future: Any) -> None:
        cell = self.futures[future]
        started = self.started_at.get(cell.cell_id, now())
        try:
            result = future.result()
        except Exception as e:  # KilledWorker (its workers kept dying), a lost scheduler
            why = f"device {cell.device} could not run the cell: {condense_error(e)}"
            self.record(cell, parent_record(cell, "failed", why, started), 0.0)
            return
        record = self.record_of(cell, result, started)
        self.record(cell, record, float(result.get("seconds") or 0.0), result.get("cpu_s"))

    def record_of(self, cell: Cell, result: dict[str, Any], started: str) -> ResultRecord:
        """The cell's record from what its device sent back (its run folder, its verdict)."""
        run_dir = fresh_run_dir(cell, self.runs_dir)
        unpack(result["files"], run_dir)
        if result.get("error"):
            return parent_record(cell, "failed", f"on {cell.device}: {result['error']}", started)
        stdout = str(result.get("stdout") or "")
        if not stdout.strip() and not (run_dir / RESULT_FILE).is_file():
            if result.get("timed_out"):
                why = f"timed out after {cell.timeout_s:g} s (cell_timeout_s)"
                return parent_record(cell, "failed", why, started)
            if result.get("stopped"):
                return parent_record(cell, "interrupted", "interrupted by the user", started)
        code = result.get("returncode")
        rec = bench_record(cell, stdout, run_dir, code, started, where=f"on {cell.device}: ")
        log_dir = (rec.loadgen or {}).get("log_dir")
        device_dir = str(result.get("device_run_dir"))
        if isinstance(log_dir, str) and log_dir.startswith(device_dir):
            rec.loadgen = dict(rec.loadgen or {}, log_dir=str(run_dir) + log_dir[len(device_dir) :])
        return rec

    def record(self, cell: Cell, record: ResultRecord, seconds: float, cpu_s: Any = None) -> None:
        """Stamp the device on the record and hand it to the sweep (in the caller's thread)."""
        record.device = cell.device
        record.extra["fleet"] = {
            "scheduler": self.launcher.scheduler,
            "starts": self.starts.get(cell.cell_id, []),
            "artifact_built_on": "host" if cell.cell_id in self.shipped else "device",
            "artifact_host_dir": self.shipped.get(cell.cell_id),
        }
        cpu = None if cpu_s is None else float(cpu_s)
        self.on_record(Finished(cell=cell, record=record, seconds=seconds, cpu_s=cpu))


def _python() -> list[str]:
    import sys

    return [sys.executable]


__all__ = ["FLEET_DIR", "LOST_GRACE_S", "DaskLauncher", "portable", "scheme_text"]
