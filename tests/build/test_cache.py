"""The artifact cache: hits, keys, corrupt entries rebuilt, validation before building."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgequant.backends.base import METADATA_NAME
from edgequant.build.cache import (
    cache_entries,
    cache_key,
    calibration_identity,
    default_cache_dir,
    get_or_build,
)
from edgequant.errors import UnsupportedError, ValidationError
from edgequant.quant.scheme import CalibrationConfig, get_scheme

pytest.importorskip("onnxruntime")


@pytest.fixture
def calib(tiny_model):  # type: ignore[no-untyped-def]
    from edgequant.data import open_dataset

    return open_dataset("synthetic:16", tiny_model.input_spec)


def test_default_dir_follows_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EDGEQUANT_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("EDGEQUANT_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "edgequant"


def test_hit_returns_the_same_artifact_without_rebuilding(
    tiny_model, calib, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    scheme = get_scheme("w8a8").with_(calibration=CalibrationConfig(samples=8))
    a = get_or_build("onnxruntime", tiny_model, scheme, calib, cache_dir=tmp_path)
    mtime = a.path.stat().st_mtime_ns
    b = get_or_build("onnxruntime", tiny_model, scheme, calib, cache_dir=tmp_path)
    assert b.path == a.path and b.path.stat().st_mtime_ns == mtime
    assert b.metadata["calibration_samples"] == 8
    assert b.metadata["calibration_set"] == calibration_identity(calib, 8)
    assert [e["scheme"] for e in cache_entries(tmp_path)] == [scheme.name]
    # no temporary build directories are left behind
    assert not [p for p in (tmp_path / "onnxruntime").iterdir() if p.name.startswith(".tmp-")]
    c = get_or_build("onnxruntime", tiny_model, scheme, calib, cache_dir=tmp_path, force=True)
    assert c.path == a.path and c.path.stat().st_mtime_ns != mtime


def test_key_covers_scheme_calibration_and_weights(tiny_model, calib) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from edgequant.backends import get_backend

    be = get_backend("onnxruntime")
    base = cache_key(be, tiny_model, get_scheme("w8a8"), calibration_identity(calib, 200))
    assert base == cache_key(be, tiny_model, get_scheme("w8a8"), calibration_identity(calib, 200))
    assert base != cache_key(
        be, tiny_model, get_scheme("w8a8-sym"), calibration_identity(calib, 200)
    )
    assert base != cache_key(be, tiny_model, get_scheme("w8a8"), calibration_identity(calib, 100))
    assert base != cache_key(
        be,
        replace(tiny_model, weights_hash="other"),
        get_scheme("w8a8"),
        calibration_identity(calib, 200),
    )
    arr = np.zeros((2, 3, 32, 32), np.float32)
    assert calibration_identity(arr, None) != calibration_identity(arr + 1, None)


def test_key_covers_the_backend_recipe(tiny_model, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    # a backend whose build defaults change bumps its recipe: its cached artifacts are rebuilt
    from edgequant.backends import get_backend

    be = get_backend("onnxruntime")
    before = cache_key(be, tiny_model, get_scheme("fp32"), None)
    monkeypatch.setattr(type(be), "recipe", be.recipe + 1)
    assert cache_key(be, tiny_model, get_scheme("fp32"), None) != before


def test_key_covers_the_ranges_the_runtime_computes(
    tiny_model, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    # the rounding learns on the runtime's kind of activation range: when that changes, a
    # cached artifact whose rounding was learnt on the old one is not reused
    from edgequant.backends import get_backend

    be = get_backend("onnxruntime")
    user = get_scheme({"base": "w8a8", "name": "w8a8-ar", "techniques": ["adaround"]})
    before = cache_key(be, tiny_model, user, "calib")
    monkeypatch.setattr(type(be), "default_ranges", None)
    assert cache_key(be, tiny_model, user, "calib") != before
    fp32 = cache_key(be, tiny_model, get_scheme("fp32"), None)
    monkeypatch.setattr(type(be), "default_ranges", "minmax")
    assert cache_key(be, tiny_model, get_scheme("fp32"), None) == fp32  # no ranges to learn on


def test_key_covers_how_the_library_rounds(tiny_model, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    # a release that learns the rounding differently rebuilds the artifacts built on it
    import edgequant.quant.adaround_cache as cache
    from edgequant.backends import get_backend

    be = get_backend("onnxruntime")
    ada, plain = get_scheme("w8a8-ada"), get_scheme("w8a8")
    before = {s.name: cache_key(be, tiny_model, s, "calib") for s in (ada, plain)}
    monkeypatch.setattr(cache, "FORMAT", cache.FORMAT + 1)
    assert cache_key(be, tiny_model, ada, "calib") != before["w8a8-ada"]
    assert cache_key(be, tiny_model, plain, "calib") == before["w8a8"]


@pytest.mark.parametrize(
    "damage",
    [
        "truncate",
        "garbage-same-size",
        "no-metadata",
        "bad-metadata",
        "binary-metadata",
        "list-metadata",
        "no-model",
    ],
)
def test_corrupt_entry_is_rebuilt(
    tiny_model, tmp_path: Path, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    a = get_or_build("onnxruntime", tiny_model, "fp32", cache_dir=tmp_path)
    size = a.path.stat().st_size
    if damage == "truncate":
        with open(a.path, "r+b") as f:
            f.truncate(size // 3)
    elif damage == "garbage-same-size":
        a.path.write_bytes(b"\0" * size)  # size matches the metadata: only loading finds it
    elif damage == "no-metadata":
        (a.directory / METADATA_NAME).unlink()
    elif damage == "bad-metadata":
        (a.directory / METADATA_NAME).write_text("{not json")
    elif damage == "binary-metadata":
        (a.directory / METADATA_NAME).write_bytes(b"\xff\xfe\x00garbage")
    elif damage == "list-metadata":
        (a.directory / METADATA_NAME).write_text("[1, 2, 3]")
    else:
        a.path.unlink()
    capsys.readouterr()
    b = get_or_build("onnxruntime", tiny_model, "fp32", cache_dir=tmp_path)
    err = capsys.readouterr().err
    assert "unusable" in err and "rebuilding" in err
    assert b.path == a.path and b.path.stat().st_size == size
    assert json.loads((b.directory / METADATA_NAME).read_text())["size_bytes"] == b.size_bytes
    from edgequant.backends import get_backend

    with get_backend("onnxruntime").load(b, threads=1) as s:
        assert s.run(np.zeros((1, 3, 32, 32), np.float32)).shape == (1, 10)


def test_static_scheme_without_calibration(tiny_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError, match="needs calibration data: pass --calib"):
        get_or_build("onnxruntime", tiny_model, "w8a8", None, cache_dir=tmp_path)
    assert not (tmp_path / "onnxruntime").exists()


def test_nan_calibration_array(tiny_model, tiny_calibration, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tiny_calibration.copy()
    bad[3, 0, 0, 0] = np.nan
    with pytest.raises(ValidationError, match="NaN"):
        get_or_build("onnxruntime", tiny_model, "w8a8", bad, cache_dir=tmp_path)


def test_unsupported_scheme_is_refused_before_building(tiny_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UnsupportedError, match="bf16"):
        get_or_build("onnxruntime", tiny_model, "bf16", cache_dir=tmp_path)
    assert not (tmp_path / "onnxruntime").exists()


def test_techniques_are_applied_before_quantizing(
    tiny_model, tiny_calibration, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("edgequant.quant.transforms")
    scheme = get_scheme(
        {"base": "w8a8", "name": "w8a8-cle", "techniques": ["cle"], "calibration": {"samples": 16}}
    )
    art = get_or_build("onnxruntime", tiny_model, scheme, tiny_calibration, cache_dir=tmp_path)
    assert art.metadata["techniques_applied"] == ["bn_fold", "cle"]
    assert art.metadata["weights_hash"] != tiny_model.weights_hash
    plain = get_or_build("onnxruntime", tiny_model, "w8a8", tiny_calibration, cache_dir=tmp_path)
    assert plain.directory != art.directory and plain.metadata["techniques_applied"] == []


def test_absolute_extra_files_do_not_dangle_after_the_rename(
    tiny_model, tiny_calibration, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    """A backend that records extra files by absolute path inside its build directory (the
    simulator's qparams.json) still gets a stable cache entry."""
    from edgequant.backends import get_backend

    be = get_backend("sim")
    if be.unavailable_reason() is not None:
        pytest.skip("sim backend unavailable")
    get_or_build(be, tiny_model, "w8a8", tiny_calibration, cache_dir=tmp_path)
    capsys.readouterr()
    b = get_or_build(be, tiny_model, "w8a8", tiny_calibration, cache_dir=tmp_path)
    assert "rebuilding" not in capsys.readouterr().err
    assert all(not Path(p).is_absolute() for p in b.metadata.get("extra_files", []))


def test_stale_temporary_builds_are_collected(tiny_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import os
    import subprocess
    import sys

    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(gone.stdout)
    folder = tmp_path / "onnxruntime"
    dead = folder / f".tmp-tinynet-fp32-abc-{dead_pid}-123"
    alive = folder / f".tmp-tinynet-fp32-abc-{os.getpid()}-456"
    for d in (dead, alive):
        d.mkdir(parents=True)
        (d / "model.onnx").write_bytes(b"half written")
    get_or_build("onnxruntime", tiny_model, "fp32", cache_dir=tmp_path)
    assert not dead.exists()  # its builder was killed: collected
    assert alive.is_dir()  # a build in progress (this process): left alone


def test_a_cache_that_is_a_file_is_refused_with_advice(
    tiny_model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "cache-file"
    f.write_text("x")
    monkeypatch.setenv("EDGEQUANT_CACHE", str(f))
    with pytest.raises(ValidationError, match=r"is a file; point \$EDGEQUANT_CACHE at a folder"):
        get_or_build("onnxruntime", tiny_model, "fp32")
    with pytest.raises(ValidationError, match="point --cache-dir at a folder"):
        get_or_build("onnxruntime", tiny_model, "fp32", cache_dir=f / "sub")
