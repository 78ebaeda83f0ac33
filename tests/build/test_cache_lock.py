"""Issue 16: one builder per cache entry (an flock, taken over when its holder dies), stale
temporary folders of a dead builder collected, and a cache that cannot be written degrading to
a warning. Real processes hold the locks; nothing is mocked."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edgequant.backends.base import Artifact
from edgequant.build.cache import EntryLock, get_or_build

pytest.importorskip("onnxruntime")

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}

HOLD = """
import sys, time
from pathlib import Path
from edgequant.build.cache import EntryLock
lock = EntryLock(Path(sys.argv[1]))
lock.acquire()
print("locked", flush=True)
time.sleep(120)
"""

BUILD = """
import sys, time
from pathlib import Path
from edgequant.build.cache import get_or_build
from edgequant.data import open_dataset
from edgequant.models import load_model
m = load_model("digits_cnn")
calib = open_dataset("synthetic:64", m.input_spec)
print("ready", flush=True)
while not Path(sys.argv[2]).exists():  # both builders start within milliseconds
    time.sleep(0.005)
art = get_or_build("onnxruntime", m, "w8a8", calib, cache_dir=sys.argv[1])
print(art.path, flush=True)
"""


def _holder(entry: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(entry)], stdout=subprocess.PIPE, text=True, env=ENV
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_a_build_waits_for_the_holder_and_takes_over_when_it_is_killed(  # type: ignore[no-untyped-def]
    tiny_model, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    entry = get_or_build("onnxruntime", tiny_model, "fp32", cache_dir=tmp_path).directory
    shutil.rmtree(entry)
    holder = _holder(entry)  # an orphaned builder still building this entry
    result: list[Artifact] = []
    worker = threading.Thread(
        target=lambda: result.append(
            get_or_build("onnxruntime", tiny_model, "fp32", cache_dir=tmp_path)
        )
    )
    try:
        worker.start()
        time.sleep(1.5)
        assert worker.is_alive() and not entry.exists()  # waiting, not building beside it
        assert f"waiting for pid {holder.pid}" in capfd.readouterr().err
        os.kill(holder.pid, signal.SIGKILL)  # the kernel drops a dead holder's lock
        worker.join(60)
        assert not worker.is_alive() and result and result[0].directory == entry
    finally:
        holder.kill()
        holder.wait()
        worker.join(60)


def test_two_processes_build_an_entry_once(tmp_path: Path) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", BUILD, str(tmp_path / "cache"), str(tmp_path / "go")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        for _ in range(2)
    ]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    (tmp_path / "go").touch()
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert outs[0][0] == outs[1][0]  # the same artifact
    builds = sum(err.count("building onnxruntime") for _, err in outs)
    assert builds == 1, outs


def test_the_lock_is_released(tmp_path: Path) -> None:
    lock = EntryLock(tmp_path / "e")
    lock.acquire()
    lock.release()
    other = EntryLock(tmp_path / "e")
    other.acquire()
    assert not other.waited
    other.release()


def test_temporary_folders_of_a_dead_builder_of_the_entry_are_collected(  # type: ignore[no-untyped-def]
    tiny_model, tmp_path: Path
) -> None:
    entry = get_or_build("onnxruntime", tiny_model, "fp32", cache_dir=tmp_path).directory
    shutil.rmtree(entry)
    # a builder killed mid-build whose pid was reused by a live process (this one)
    stale = entry.parent / f".tmp-{entry.name}-{os.getpid()}-1"
    stale.mkdir()
    (stale / "model.onnx").write_bytes(b"half written")
    get_or_build("onnxruntime", tiny_model, "fp32", cache_dir=tmp_path)
    assert not stale.exists()


def _unwritable(tmp_path: Path) -> Path:
    """A folder this process cannot create anything in (root ignores modes: use /sys)."""
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        return ro / "cache"
    probe = Path("/sys") / f"edgequant-test-{os.getpid()}"
    try:
        probe.mkdir()
    except OSError:
        return probe
    probe.rmdir()
    pytest.skip("no unwritable folder on this machine")


def test_a_read_only_cache_builds_into_a_temporary_folder(  # type: ignore[no-untyped-def]
    tiny_model, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    root = _unwritable(tmp_path)
    art = get_or_build("onnxruntime", tiny_model, "fp32", cache_dir=root)
    err = capfd.readouterr().err
    assert f"the artifact cache {root} cannot be written" in err and "this run only" in err
    assert not art.path.is_relative_to(root) and Artifact.load(art.directory).path == art.path
