"""``demo(devices=, cluster=)``: the demo on the device fleet (issue 15). ``local`` alone is
today's demo to the letter; other devices get the demo's cells and run on their workers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edgequant.errors import ValidationError
from edgequant.sweep.demo import demo, demo_experiment


@pytest.mark.parametrize("quick", [True, False])
def test_local_alone_is_todays_demo(quick: bool) -> None:
    today = demo_experiment(quick=quick)
    for devices in (None, ["local"], ("local",)):
        exp = demo_experiment(quick=quick, devices=devices)
        assert exp == today
        assert exp.cells() == today.cells()


def test_other_devices_get_every_cell_of_the_demo() -> None:
    today = demo_experiment(quick=True).cells()
    cells = demo_experiment(quick=True, devices=["local", "rpi5", "rpi5"]).cells()
    assert len(cells) == 2 * len(today)
    assert [c for c in cells if c.device == "local"] == today
    pi = [c for c in cells if c.device == "rpi5"]
    assert [c.cell_id for c in pi] == [f"{c.cell_id}__rpi5" for c in today]
    with pytest.raises(ValidationError, match="not valid"):
        demo_experiment(quick=True, devices=["local", "no/slash"])


def test_a_device_without_a_cluster_is_refused_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="need a cluster"):
        demo(tmp_path / "out", quick=True, devices=["rpi5"])
    assert not (tmp_path / "out" / "runs").exists()


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[object]:
    pytest.importorskip("distributed")
    from tests.sweep.fleet.processes import Fleet

    f = Fleet(tmp_path / "fleet")
    f.root.mkdir()
    try:
        f.start_scheduler()
        yield f
    finally:
        f.stop()


@pytest.mark.slow
def test_the_quick_demo_across_this_host_and_a_worker(fleet: object, tmp_path: Path) -> None:
    from edgequant.sweep.fleet.cluster import by_device
    from tests.sweep.fleet.processes import Fleet

    assert isinstance(fleet, Fleet)
    backends = sorted({c.backend for c in demo_experiment(quick=True).cells()})
    fleet.start_worker("wa", "dev-a", backends)
    worker = by_device(fleet.wait_for({"dev-a": 1}))["dev-a"][0].address
    result = demo(tmp_path / "out", quick=True, devices=["local", "dev-a"], cluster=fleet.address)

    outcomes = {o.cell.cell_id: o for o in result.sweep.outcomes}
    assert len(outcomes) == 2 * len(demo_experiment(quick=True).cells())
    for o in outcomes.values():
        assert o.record is not None and o.record.status == "ok", o.record
        assert o.record.device == o.cell.device or (o.cell.is_local and o.record.device is None)
    remote = [o.record for o in outcomes.values() if o.cell.device == "dev-a"]
    assert {r.extra["fleet"]["starts"][0] for r in remote} == {worker}
    # the device's pair was measured there (issue 15), the local one here
    paired = {o.cell.device: o.record.paired for o in outcomes.values() if o.record.paired}
    assert set(paired) == {"local", "dev-a"}
    assert paired["dev-a"]["device"] == "dev-a" and "device" not in paired["local"]
    # the report compares the two devices
    assert result.data.multi_device and result.data.devices == ["local", "dev-a"]
    assert any(line.startswith("device dev-a:") for line in result.data.device_info)
    assert "dev-a" in result.report.read_text()
