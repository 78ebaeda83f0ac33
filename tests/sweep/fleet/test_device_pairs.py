"""Paired rounds of a device's cells run on that device (issue 15), with real processes: a Dask
scheduler and two ``edgequant worker``s posing as two devices; local pairs stay on this host."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("distributed")

from edgequant.sweep import parse_experiment, run_sweep
from edgequant.sweep.fleet.cluster import by_device
from edgequant.sweep.fleet.launcher import DaskLauncher
from edgequant.sweep.pairs import PAIRS_DIR
from tests.sweep.fleet.processes import Fleet

pytestmark = pytest.mark.slow

ORT = "onnxruntime"


def test_each_devices_pair_is_measured_on_that_device(fleet: Fleet, tmp_path: Path) -> None:
    fleet.start_worker("wa", "dev-a", [ORT])
    fleet.start_worker("wb", "dev-b", [ORT])
    views = by_device(fleet.wait_for({"dev-a": 1, "dev-b": 1}))
    address = {device: group[0].address for device, group in views.items()}
    exp = parse_experiment(
        f"models: [digits_cnn]\nbackends: [{ORT}]\nschemes: [fp32, w8a8]\nscenarios: [Offline]\n"
        "data: digits\nduration_s: 0.3\ndevices: [local, dev-a, dev-b]\n"
        "rounds: {min: 2, max: 2, round_s: 0.2}\n"
    )
    runs = tmp_path / "runs"
    # dev-a's artifacts are built here and shipped (for the cells and again for the rounds)
    launcher = DaskLauncher(fleet.address, build_here=lambda b: b == ORT)
    summary = run_sweep(exp, runs, launcher=launcher, show_progress=False)
    records = {o.cell.cell_id: o.record for o in summary.outcomes}
    assert all(r is not None and r.status == "ok" for r in records.values()), records

    for device, worker in (("dev-a", "wa"), ("dev-b", "wb")):
        cell_id = f"digits_cnn__{ORT}__w8a8__Offline__{device}"
        paired = records[cell_id].paired
        assert paired is not None, records[cell_id].extra.get("paired_reason")
        assert paired["baseline"] == f"digits_cnn__{ORT}__fp32__Offline__{device}"
        assert paired["rounds"] == 2 and paired["median"] > 0
        # measured by that device's worker, on artifacts in that worker's own folders
        assert paired["device"] == device and paired["worker"] == address[device]
        own = str(fleet.root / f"cache-{worker}")
        assert all(str(p).startswith(own) for p in paired["artifacts"].values()), paired
        # each round's LoadGen logs came back into the cell's folder here
        rounds = sorted(p.name for p in (runs / cell_id / "paired").iterdir())
        assert rounds == ["r01-fp32", "r01-w8a8", "r02-fp32", "r02-w8a8"]
        assert not (runs / PAIRS_DIR / f"digits_cnn__{ORT}__{device}.json").exists()

    # the local pair ran as before: on this host, from RUNS/pairs/, with this host's cache
    local = records[f"digits_cnn__{ORT}__w8a8__Offline"].paired
    assert local is not None and local["rounds"] == 2 and "device" not in local
    assert (runs / PAIRS_DIR / f"digits_cnn__{ORT}.json").is_file()
    assert not any(str(p).startswith(str(fleet.root)) for p in local["artifacts"].values())
