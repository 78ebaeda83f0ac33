"""Checks made before a benchmark builds or measures: run folder, batch memory, threads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgequant.bench.preflight import (
    MAX_THREADS_PER_CORE,
    check_batch_memory,
    check_run_dir,
    check_threads,
    usable_cores,
)
from edgequant.errors import ValidationError


def test_run_dir_that_is_a_file_or_under_one_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "taken"
    f.write_text("x")
    with pytest.raises(ValidationError, match="is a file, not a folder"):
        check_run_dir(f)
    with pytest.raises(ValidationError, match="is a file, not a folder"):
        check_run_dir(f / "deeper" / "run")
    (tmp_path / "run" / "result.json").mkdir(parents=True)
    with pytest.raises(ValidationError, match=r"result\.json is a folder"):
        check_run_dir(tmp_path / "run")
    check_run_dir(tmp_path / "new" / "run")  # absent folders are made later
    assert not (tmp_path / "new").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only folders")
def test_read_only_run_dir_is_refused(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(ValidationError, match="not writable"):
            check_run_dir(ro / "run")
    finally:
        ro.chmod(0o700)


def test_batch_memory_bound() -> None:
    gib = 2**30
    check_batch_memory("Offline", 64, (3, 224, 224), available_bytes=gib)  # 0.35 GB: fits
    check_batch_memory("SingleStream", 10**6, (3, 224, 224), available_bytes=gib)  # not batched
    with pytest.raises(ValidationError, match=r"--batch-size 100000 needs at least 180\.6 GB"):
        check_batch_memory("Offline", 100_000, (3, 224, 224), available_bytes=16 * gib)
    with pytest.raises(ValidationError, match="use --batch-size 594 or less"):
        check_batch_memory("Server", 1000, (3, 224, 224), available_bytes=gib)


def test_threads_beyond_the_cores() -> None:
    assert check_threads(2, cores=2) is None
    note = check_threads(3, cores=2)
    assert note is not None and "2 cores" in note and "oversubscribed" in note
    assert check_threads(MAX_THREADS_PER_CORE * 2, cores=2) is not None
    with pytest.raises(ValidationError, match=r"oversubscribes the 2 cores .* use --threads 2"):
        check_threads(MAX_THREADS_PER_CORE * 2 + 1, cores=2)
    assert usable_cores() == len(os.sched_getaffinity(0))


def test_a_sweep_runs_folder_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    import os

    from edgequant.errors import ValidationError
    from edgequant.sweep import run_sweep

    exp = tmp_path / "e.yaml"
    exp.write_text("models: [digits_cnn]\nbackends: [onnxruntime]\nschemes: [fp32]\n")
    bad = os.fsdecode(os.fsencode(str(tmp_path)) + b"/runs-\xfe")
    with pytest.raises(ValidationError, match="not UTF-8"):
        run_sweep(exp, bad)
