"""The fleet's parts that need no cluster: shipping with a content hash, worker descriptions,
resource names, choosing the launcher, refusing what cannot work."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from edgequant.errors import ArtifactError, ValidationError
from edgequant.sweep import parse_experiment
from edgequant.sweep.fleet import choose_launcher
from edgequant.sweep.fleet.cluster import WorkerView, by_device, device_table
from edgequant.sweep.fleet.ship import pack, pack_artifact, tree_hash, unpack, unpack_checked
from edgequant.sweep.local import ByIsolation


def _artifact(tmp_path: Path) -> Path:
    d = tmp_path / "art"
    (d / "sub").mkdir(parents=True)
    (d / "model.onnx").write_bytes(b"\x08\x01model-bytes")
    (d / "artifact.json").write_text('{"backend": "x"}')
    (d / "sub" / "w.bin").write_bytes(bytes(range(256)))
    return d


def test_an_artifact_arrives_intact_and_is_checked(tmp_path: Path) -> None:
    src = _artifact(tmp_path)
    blob, digest = pack_artifact(src)
    out = unpack_checked(blob, digest, tmp_path / "device" / digest[:20])
    assert tree_hash(out) == digest == tree_hash(src)
    assert (out / "sub" / "w.bin").read_bytes() == bytes(range(256))
    # a checked copy is used again; a damaged one is replaced by the checked blob
    (out / "model.onnx").write_bytes(b"tampered")
    again = unpack_checked(blob, digest, out)
    assert (again / "model.onnx").read_bytes() == b"\x08\x01model-bytes"


def test_a_damaged_artifact_is_refused_before_loading(tmp_path: Path) -> None:
    src = _artifact(tmp_path)
    _, digest = pack_artifact(src)
    (src / "model.onnx").write_bytes(b"something else")
    other = pack(src)
    dest = tmp_path / "device" / "a"
    with pytest.raises(ArtifactError, match="content hash"):
        unpack_checked(other, digest, dest)
    assert not dest.exists() and not list(dest.parent.glob(".a.*"))  # nothing half-unpacked left


def test_a_run_folder_comes_back_without_huge_files(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "loadgen").mkdir(parents=True)
    (run / "result.json").write_text("{}")
    (run / "loadgen" / "trace.json").write_bytes(b"x" * 2000)
    back = unpack(pack(run, max_file_bytes=1000), tmp_path / "back")
    assert (back / "result.json").is_file() and not (back / "loadgen" / "trace.json").exists()


def test_unpack_refuses_paths_outside_the_folder(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("../evil.txt")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    with pytest.raises(tarfile.TarError):
        unpack(buf.getvalue(), tmp_path / "in")
    assert not (tmp_path / "evil.txt").exists()


def test_a_device_refuses_a_damaged_artifact_without_running_anything(tmp_path: Path) -> None:
    from edgequant.sweep.fleet.task import run_on_device

    blob, digest = pack_artifact(_artifact(tmp_path))
    task = {
        "cell": "m__b__fp32__Offline__dev",
        "sweep": "t0",
        "config": {"scenario": "Offline", "data": "digits", "run_dir": "ignored"},
        "timeout_s": 60.0,
        "artifact_sha256": "0" * 64,
    }
    out = run_on_device(task, blob)
    assert "content hash" in str(out["error"]) and "stdout" not in out
    assert digest[:12] in str(out["error"])
    with tarfile.open(fileobj=io.BytesIO(out["files"]), mode="r:gz") as tar:
        assert tar.getnames() == []


def test_a_plain_dask_worker_is_known_by_its_resources() -> None:
    view = WorkerView.from_info(
        "tcp://10.0.0.5:4000",
        {"name": "w", "resources": {"device-pi4": 1, "cpu-arm-neon": 1, "runtime-rt1": 1}},
    )
    assert (view.device, view.int8_class, list(view.runtimes)) == ("pi4", "arm-neon", ["rt1"])
    nameless = WorkerView.from_info("tcp://10.0.0.6:4000", {"resources": {}})
    assert by_device([view, nameless]) == {"pi4": [view]}
    assert device_table([view])[0]["workers"] == ["tcp://10.0.0.5:4000"]


def test_a_worker_describes_this_machine() -> None:
    from edgequant.backends import backend_names, get_backend
    from edgequant.hw.cpu import cpu_profile
    from edgequant.sweep.fleet.worker import describe, resources_of

    here = [n for n in backend_names() if get_backend(n).available()]
    info = describe(device="bench-1", runtimes=here[:1])
    assert list(info["runtimes"]) == here[:1]
    assert info["int8_class"] == cpu_profile().int8_class
    res = resources_of(info)
    assert res == {
        "device-bench-1": 1.0,
        f"cpu-{info['int8_class']}": 1.0,
        f"runtime-{here[0]}": 1.0,
    }


def test_a_worker_refuses_unknown_runtimes_and_the_name_local() -> None:
    from edgequant.sweep.fleet.worker import offered_runtimes, run_worker

    with pytest.raises(ValidationError, match="unknown runtime"):
        offered_runtimes(["no-such-runtime"])
    with pytest.raises(ValidationError, match="submitting machine"):
        run_worker("tcp://127.0.0.1:1", "local")
    with pytest.raises(ValidationError, match="not valid"):
        run_worker("tcp://127.0.0.1:1", "rpi 5")


def test_local_sweeps_need_no_cluster_and_others_say_what_is_missing() -> None:
    local = ByIsolation()
    cells = parse_experiment("models: [digits_cnn]\nschemes: [fp32]").cells()
    assert choose_launcher(cells, None, local) is local
    remote = parse_experiment("models: [digits_cnn]\nschemes: [fp32]\ndevices: [pi5]").cells()
    with pytest.raises(ValidationError, match=r"pi5 need a cluster: pass --cluster"):
        choose_launcher(remote, None, local)
    assert type(choose_launcher(remote, "tcp://127.0.0.1:1", local)).__name__ == "DaskLauncher"


def test_an_unreachable_scheduler_is_one_clear_error(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    from edgequant.sweep.fleet.cluster import ClusterError, connect
    from tests.sweep.fleet.processes import free_port

    with pytest.raises(ClusterError, match="cannot reach the Dask scheduler"):
        connect(f"tcp://127.0.0.1:{free_port()}", timeout_s=2)


def test_schemes_other_than_names_travel_as_text() -> None:
    from edgequant.sweep.fleet.launcher import scheme_text

    exp = parse_experiment(
        "models: [digits_cnn]\nschemes: [fp32, {base: w8a8, name: w8a8-16, "
        "calibration: {samples: 16}}]\nscenarios: [Offline]\ndevices: [pi5]"
    )
    named, custom = exp.cells()
    assert scheme_text(named) is None
    assert "w8a8-16" in str(scheme_text(custom))


def test_artifacts_are_shipped_only_to_devices_of_this_cpu() -> None:
    from edgequant.hw.cpu import cpu_profile
    from edgequant.sweep.fleet.launcher import _FleetRun

    here = cpu_profile()
    twin = WorkerView(address="a", device="d", arch=here.arch, int8_class=here.int8_class)
    other_arch = "aarch64" if here.arch != "aarch64" else "x86_64"
    other = WorkerView(address="b", device="d", arch=other_arch, int8_class="arm-dotprod")
    assert _FleetRun.same_cpu([twin])
    assert not _FleetRun.same_cpu([twin, other])
