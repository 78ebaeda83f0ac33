"""Real processes, no mocks: a Dask scheduler and two ``edgequant worker``s posing as two
devices with different runtimes; sweeps across both; a worker killed by SIGKILL mid-cell."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from edgequant.results.store import ResultStore
from edgequant.sweep import parse_experiment, run_sweep
from edgequant.sweep.fleet.launcher import DaskLauncher
from tests.sweep.fleet.processes import SRC, Fleet

pytestmark = pytest.mark.slow

ORT, SIM = "onnxruntime", "sim"


def _experiment(devices: list[str], backends: list[str], duration_s: float) -> str:
    return (
        f"models: [digits_cnn]\nbackends: [{', '.join(backends)}]\nschemes: [fp32]\n"
        f"scenarios: [Offline]\ndata: digits\nduration_s: {duration_s}\n"
        f"devices: [{', '.join(devices)}]\n"
    )


def _devices_in_db(runs: Path) -> dict[str, tuple[str | None, str]]:
    with ResultStore(runs, create=False) as store:
        return {rid: (rec.device, rec.status) for rid, rec in store.records()}


def test_a_sweep_runs_across_two_devices(fleet: Fleet, tmp_path: Path) -> None:
    fleet.start_worker("wa", "dev-a", [ORT, SIM])
    fleet.start_worker("wb", "dev-b", [ORT])
    fleet.wait_for({"dev-a": 1, "dev-b": 1})
    listed = subprocess.run(
        [sys.executable, "-m", "edgequant", "cluster", "--scheduler", fleet.address, "--json"],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": SRC, "PATH": ""},
        timeout=60,
    )
    rows = {r["device"]: r for r in json.loads(listed.stdout)["devices"]}
    assert sorted(rows["dev-a"]["runtimes"]) == sorted([ORT, SIM])
    assert list(rows["dev-b"]["runtimes"]) == [ORT]

    exp = parse_experiment(_experiment(["dev-a", "dev-b"], [ORT, SIM], 0.5))
    runs = tmp_path / "runs"
    launcher = DaskLauncher(fleet.address, build_here=lambda b: b == ORT)
    summary = run_sweep(exp, runs, launcher=launcher, show_progress=False)

    by_id = {o.cell.cell_id: o for o in summary.outcomes}
    assert set(_devices_in_db(runs)) == set(by_id)
    for cell_id, (device, status) in _devices_in_db(runs).items():
        assert device == by_id[cell_id].cell.device
        expected = "na" if (device, by_id[cell_id].cell.backend) == ("dev-b", SIM) else "ok"
        assert status == expected, by_id[cell_id].record.reason
    na = by_id[f"digits_cnn__{SIM}__fp32__Offline__dev-b"].record
    assert f"runtime {SIM} is not installed on device dev-b" in str(na.reason)
    shipped = by_id[f"digits_cnn__{ORT}__fp32__Offline__dev-b"].record
    assert shipped.extra["fleet"]["artifact_built_on"] == "host"
    assert shipped.throughput_ips and shipped.environment.get("cpu")
    assert (runs / f"digits_cnn__{ORT}__fp32__Offline__dev-b" / "loadgen").is_dir()
    # the device checked the hash of what it loaded, from its own folder of received artifacts
    assert str(fleet.work_dir("wb")) in str(shipped.artifact)


def _kill_when_started(fleet: Fleet, name: str, cell_id: str, out: dict[str, float]) -> None:
    deadline = time.monotonic() + 120
    runs = fleet.work_dir(name) / "runs"
    while time.monotonic() < deadline:
        if any((d / cell_id / "bench.log").is_file() for d in runs.glob("*")):
            time.sleep(2.0)  # well into the cell: the bench child is importing or measuring
            fleet.kill(name)
            out["killed_at"] = time.monotonic()
            return
        time.sleep(0.2)


def test_a_device_killed_mid_cell_costs_that_cell_only(fleet: Fleet, tmp_path: Path) -> None:
    fleet.start_worker("wa", "dev-a", [ORT])
    fleet.start_worker("wb", "dev-b", [ORT])
    fleet.wait_for({"dev-a": 1, "dev-b": 1})
    exp = parse_experiment(_experiment(["dev-a", "dev-b"], [ORT], 8.0))
    runs = tmp_path / "runs"
    victim = f"digits_cnn__{ORT}__fp32__Offline__dev-b"
    killed: dict[str, float] = {}
    killer = threading.Thread(target=_kill_when_started, args=(fleet, "wb", victim, killed))
    killer.start()
    launcher = DaskLauncher(fleet.address, lost_grace_s=3.0)
    summary = run_sweep(exp, runs, launcher=launcher, show_progress=False)
    killer.join()
    assert "killed_at" in killed
    status = {o.cell.cell_id: o.record for o in summary.outcomes}
    assert status[f"digits_cnn__{ORT}__fp32__Offline__dev-a"].status == "ok"
    lost = status[victim]
    assert lost.status == "failed" and lost.device == "dev-b"
    assert "lost mid-cell" in str(lost.reason)

    # the device comes back: the re-run measures only the lost cell
    fleet.start_worker("wb2", "dev-b", [ORT])
    fleet.wait_for({"dev-b": 1})
    again = run_sweep(exp, runs, launcher=DaskLauncher(fleet.address), show_progress=False)
    assert again.counts.get("skipped") == 1
    assert {cid: st for cid, (_, st) in _devices_in_db(runs).items()} == {c: "ok" for c in status}
    with sqlite3.connect(runs / "results.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
