"""The planner: one description of a cell, build lanes from capabilities, the callable package."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from edgequant.errors import EdgequantError
from edgequant.sweep.experiment import parse_experiment
from edgequant.sweep.plan import bench_argv, cell_config, cell_task

EXP = (
    "models: [{name: digits_cnn, arch: digits_cnn}]\nschemes: [fp32, w8a8]\n"
    "scenarios: [Offline]\ndata: digits\naccuracy: true\nduration_s: 0.5\n"
)


def test_one_description_of_a_cell_feeds_bench_and_the_worker(tmp_path: Path) -> None:
    from edgequant.bench.runner import BenchConfig

    names = {f.name for f in dataclasses.fields(BenchConfig)}
    for cell in parse_experiment(EXP).cells():
        config = cell_config(cell, tmp_path)
        assert set(config) <= names, set(config) - names
        bench = BenchConfig(**config)  # the worker's BenchConfig is exactly this mapping
        assert bench.run_dir == tmp_path / cell.cell_id
        assert cell_task(cell, tmp_path)["config"] == config
        argv = bench_argv(cell, tmp_path, ["bench"])
        # every field is on the command line, once, with the same value
        assert argv[argv.index("--model") + 1] == "digits_cnn"
        assert argv[argv.index("--backend") + 1] == config["backend"]
        assert argv[argv.index("-o") + 1] == config["run_dir"]
        assert ("--calib" in argv) == ("calib" in config) == cell.scheme.scheme.needs_calibration
        assert ("--accuracy" in argv) == config["accuracy"]


def test_build_lanes_come_from_the_backends_capability() -> None:
    from edgequant.backends import backend_names, get_backend
    from edgequant.sweep.lanes import _Lanes, exclusive_build

    flags = {}
    for name in backend_names():
        try:
            flags[name] = get_backend(name).exclusive_build
        except Exception:  # a backend whose module cannot be imported here
            continue
        assert exclusive_build(name) is flags[name]
    heavy = [n for n, f in flags.items() if f]
    light = [n for n, f in flags.items() if not f]
    if not heavy or not light:
        pytest.skip("needs one backend with exclusive builds and one without")
    exp = parse_experiment(
        f"models: [digits_cnn, mobilenet_v2]\nbackends: [{heavy[0]}, {light[0]}]\nschemes: [fp32]\n"
    )
    pairs: dict[str, list] = {}
    for c in exp.cells():
        pairs.setdefault(c.pair_key, []).append(c)
    lanes = _Lanes(pairs)
    first = lanes.next([])
    assert first.endswith(heavy[0])  # the long build starts first
    second = lanes.next([first])
    assert second.endswith(light[0])  # never two exclusive builds while lighter ones remain
    third = lanes.next([first, second])
    assert third.endswith(light[0])
    assert lanes.next([first]).endswith(heavy[0])  # only exclusive ones left: they fill the lanes


def test_the_package_is_callable_and_keeps_its_submodules(tmp_path: Path) -> None:
    import edgequant.sweep
    import edgequant.sweep.runner

    assert callable(edgequant.sweep)
    assert edgequant.sweep.runner.run_sweep is edgequant.sweep.run_sweep
    f = tmp_path / "exp.yaml"
    # w4a8 has no int4 kernels on the default backend: recorded n/a without spawning anything
    f.write_text("# kept as written\nmodels: [digits_cnn]\nschemes: [w4a8]\nscenarios: [Offline]\n")
    summary = edgequant.sweep(f, tmp_path / "runs", show_progress=False)
    assert summary.counts.get("na") == 1, summary.to_dict()
    assert summary.runs_dir == tmp_path / "runs"


def test_the_experiment_file_is_kept_in_the_runs_folder(tmp_path: Path) -> None:
    from edgequant.sweep.experiment import load_experiment
    from edgequant.sweep.runner import run_sweep

    f = tmp_path / "exp.yaml"
    text = "# why this sweep\nmodels: [digits_cnn]\nschemes: [w4a8]\nscenarios: [Offline]\n"
    f.write_text(text)
    run_sweep(load_experiment(f), tmp_path / "runs", show_progress=False)
    assert (tmp_path / "runs" / "experiment.yaml").read_text() == text


def test_a_runs_folder_takes_one_sweep_at_a_time(tmp_path: Path) -> None:
    from edgequant.sweep.lock import RunsLock
    from edgequant.sweep.runner import run_sweep

    runs = tmp_path / "runs"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path\n"
            "from edgequant.sweep.lock import RunsLock\n"
            "with RunsLock(Path(sys.argv[1])):\n"
            "    print('locked', flush=True); time.sleep(120)\n",
            str(runs),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        exp = parse_experiment("models: [digits_cnn]\nschemes: [w4a8]\nscenarios: [Offline]\n")
        with pytest.raises(EdgequantError) as err:
            run_sweep(exp, runs, show_progress=False)
        msg = str(err.value)
        assert len(msg.splitlines()) == 1 and f"pid {holder.pid}" in msg and "in use" in msg
        assert not (runs / "results.db").exists()  # nothing was run or indexed
    finally:
        holder.kill()
        holder.wait()
    # released when its holder dies (even by SIGKILL): the next sweep runs
    with RunsLock(runs):
        pass
    assert run_sweep(exp, runs, show_progress=False).counts.get("na") == 1


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie waiting for its reaper counts as gone
        return f.read().split(") ", 1)[1][0] != "Z"


def test_children_die_with_a_sweep_killed_by_sigkill(tmp_path: Path) -> None:
    import os
    import signal
    import time

    pid_file = tmp_path / "child.pid"
    sleeper = tmp_path / "sleeper.py"
    sleeper.write_text(
        "import os, sys, time\n"
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        "time.sleep(120)\n"
    )
    script = (
        "import sys\nfrom edgequant.sweep.experiment import parse_experiment\n"
        "from edgequant.sweep.runner import run_sweep\n"
        "exp = parse_experiment('models: [digits_cnn]\\nschemes: [fp32]\\nscenarios: [Offline]\\n')\n"
        f"run_sweep(exp, {str(tmp_path / 'runs')!r}, show_progress=False,"
        f" bench_command=[sys.executable, {str(sleeper)!r}])\n"
    )
    sweep = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.is_file() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        child = int(pid_file.read_text())
        assert _alive(child)
        os.kill(sweep.pid, signal.SIGKILL)
        sweep.wait()
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(child), "the bench child outlived its sweep"
    finally:
        sweep.kill()
        sweep.wait()
        if pid_file.is_file() and pid_file.read_text() and _alive(int(pid_file.read_text())):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_a_cell_of_another_device_carries_its_device_in_the_task(tmp_path: Path) -> None:
    exp = parse_experiment(EXP.replace("accuracy: true\n", "") + "devices: [local, rpi5]\n")
    local, remote = exp.cells()[:2]
    assert "device" not in cell_task(local, tmp_path)  # local tasks are as before
    task = cell_task(remote, tmp_path)
    assert task["device"] == "rpi5" and task["run_dir"].endswith("__rpi5")
    assert "device" not in task["config"]  # not a BenchConfig field


def test_a_prebuilt_artifact_is_a_bench_flag(tmp_path: Path) -> None:
    from edgequant.sweep.plan import config_argv

    argv = config_argv({"artifact": str(tmp_path / "a"), "scenario": "Offline", "run_dir": "r"})
    assert argv[:2] == ["--artifact", str(tmp_path / "a")]
