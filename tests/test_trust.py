"""Issue 16 trust items: nothing executable is loaded from a foreign artifact, tampered or
corrupt artifacts are named, cache entries are locked while built, a read-only cache degrades.

Every bad input is built here: a real malicious pickle (it would create a file if it ran), a
same-size overwrite of real weights, garbage ``artifact.json`` files, an unwritable cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgequant.backends import get_backend
from edgequant.backends.artifact import HASHES_KEY, Artifact, file_sha256, require_trusted
from edgequant.errors import ArtifactError
from edgequant.quant.scheme import get_scheme

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def own_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's own per-user config folder (the signing key lives there)."""
    cfg = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(cfg))
    return cfg


class _Payload:
    """Unpickling this calls ``open(marker, "w")``: the file appears only if the pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def _sim_artifact(tiny_model, where: Path) -> Artifact:  # type: ignore[no-untyped-def]
    return get_backend("sim").prepare(tiny_model, get_scheme("fp32"), None, where)


def _plant_payload(art_dir: Path, marker: Path, *, fix_hashes: bool) -> None:
    """Replace model.pt by a pickle that runs code; optionally rewrite the recorded hash too,
    as an attacker who copies a folder can."""
    import torch

    model_pt = art_dir / "model.pt"
    torch.save(_Payload(marker), model_pt)
    if fix_hashes:
        meta_path = art_dir / "artifact.json"
        meta = json.loads(meta_path.read_text())
        meta[HASHES_KEY]["model.pt"] = file_sha256(model_pt)
        meta["size_bytes"] = sum(
            p.stat().st_size for p in art_dir.iterdir() if p.name != "artifact.json"
        )
        meta_path.write_text(json.dumps(meta))


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgequant", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "src"), **env},
        timeout=300,
    )


# --- 1. code execution from an artifact folder -------------------------------------------------
def test_a_sim_artifact_built_here_loads(tiny_model, tmp_path: Path, own_key: Path) -> None:  # type: ignore[no-untyped-def]
    art = _sim_artifact(tiny_model, tmp_path / "a")
    loaded = Artifact.load(art.directory)
    require_trusted(loaded, "a pickle")
    with get_backend("sim").load(loaded, threads=1) as sess:
        assert sess.run(__import__("numpy").zeros((1, 3, 32, 32), "float32")).shape == (1, 10)
    assert (own_key / "edgequant" / "artifact-key").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("fix_hashes", [True, False])
def test_a_malicious_pickle_in_an_artifact_never_runs(  # type: ignore[no-untyped-def]
    tiny_model, tmp_path: Path, own_key: Path, fix_hashes: bool
) -> None:
    art = _sim_artifact(tiny_model, tmp_path / "a")
    marker = tmp_path / "pwned"
    _plant_payload(art.directory, marker, fix_hashes=fix_hashes)
    be = get_backend("sim")
    with pytest.raises(ArtifactError, match=r"not built by this user|modified after"):
        be.load(Artifact.load(art.directory, verify=False), threads=1)
    with pytest.raises(ArtifactError):
        be.inspect(Artifact.load(art.directory, verify=False))
    assert not marker.exists()


def test_a_copied_artifact_is_refused_by_the_cli(tmp_path: Path, own_key: Path) -> None:
    """`inspect DIR` and `bench --artifact DIR` on a copied folder whose pickle runs code:
    one line, no traceback, and the payload never ran."""
    from edgequant.models import load_model

    art = _sim_artifact(load_model("digits_cnn"), tmp_path / "built")
    copied = tmp_path / "copied"
    shutil.copytree(art.directory, copied)
    marker = tmp_path / "pwned"
    _plant_payload(copied, marker, fix_hashes=True)
    env = {"XDG_CONFIG_HOME": str(own_key), "EDGEQUANT_CACHE": str(tmp_path / "cache")}
    for args in (
        ("inspect", str(copied)),
        ("bench", "--artifact", str(copied), "--duration", "0.2", "-o", str(tmp_path / "r")),
    ):
        proc = _cli(*args, env=env)
        assert proc.returncode != 0, args
        assert "Traceback" not in proc.stderr
        assert "not built by this user on this machine" in proc.stderr, proc.stderr
        assert not marker.exists(), args


def test_another_users_artifact_is_refused(tiny_model, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "alice"))
    art = _sim_artifact(tiny_model, tmp_path / "a")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "mallory"))
    with pytest.raises(ArtifactError, match="not built by this user on this machine"):
        get_backend("sim").load(Artifact.load(art.directory), threads=1)


def test_an_unwritable_key_folder_degrades_to_a_process_key(  # type: ignore[no-untyped-def]
    tiny_model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    import edgequant.backends.artifact as artifact_module

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(blocker))
    monkeypatch.setattr(artifact_module, "_PROCESS_KEY", None)
    art = _sim_artifact(tiny_model, tmp_path / "a")  # the build does not fail
    assert "cannot write the artifact signing key" in capfd.readouterr().err
    with get_backend("sim").load(Artifact.load(art.directory), threads=1):
        pass


# --- 3. integrity: hashes recorded at build time, corrupt artifact.json -----------------------
def _overwrite_weights(model_file: Path) -> None:
    """Same-size overwrite of the largest initializer's bytes: the ONNX file still loads."""
    import onnx

    proto = onnx.load(str(model_file))
    init = max(proto.graph.initializer, key=lambda t: len(t.raw_data))
    data = model_file.read_bytes()
    at = data.find(init.raw_data)
    assert at > 0 and len(init.raw_data) >= 64
    model_file.write_bytes(data[:at] + bytes(len(init.raw_data)) + data[at + len(init.raw_data) :])


def test_file_hashes_are_recorded_at_build_time(tiny_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    art = _sim_artifact(tiny_model, tmp_path / "a")
    hashes = Artifact.load(art.directory).metadata[HASHES_KEY]
    assert set(hashes) == {"model.pt", "qparams.json"}
    assert hashes["model.pt"] == hashlib.sha256(art.path.read_bytes()).hexdigest()


def test_a_modified_user_folder_is_named(tiny_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("onnxruntime")
    from edgequant.build.cache import get_or_build

    cached = get_or_build("onnxruntime", tiny_model, "fp32", cache_dir=tmp_path / "c")
    folder = tmp_path / "mine"
    shutil.copytree(cached.directory, folder)
    _overwrite_weights(folder / cached.path.name)
    with pytest.raises(ArtifactError) as err:
        Artifact.load(folder)
    msg = str(err.value)
    assert f"artifact {folder} was modified after it was built ({cached.path.name})" in msg
    assert "edgequant quantize" in msg


def test_a_same_size_overwrite_in_the_cache_is_rebuilt(  # type: ignore[no-untyped-def]
    tiny_model, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("onnxruntime")
    from edgequant.build.cache import get_or_build

    a = get_or_build("onnxruntime", tiny_model, "fp32", cache_dir=tmp_path)
    good = a.path.read_bytes()
    _overwrite_weights(a.path)
    assert a.path.stat().st_size == len(good) and a.path.read_bytes() != good
    capsys.readouterr()
    b = get_or_build("onnxruntime", tiny_model, "fp32", cache_dir=tmp_path)
    assert "unusable" in capsys.readouterr().err
    assert b.path.read_bytes() == good


@pytest.mark.parametrize(
    "content",
    [
        b"\xff\xfe\x00garbage\x80",
        b"[1, 2, 3]",
        b'"text"',
        b"{not json",
        b'{"scheme": 3, "file": 4}',
    ],
    ids=["binary", "list", "string", "syntax", "types"],
)
def test_a_corrupt_artifact_json_is_an_artifact_error(  # type: ignore[no-untyped-def]
    tiny_model, tmp_path: Path, content: bytes
) -> None:
    art = _sim_artifact(tiny_model, tmp_path / "a")
    (art.directory / "artifact.json").write_bytes(content)
    with pytest.raises(ArtifactError, match=r"is corrupt .*rebuild it with `edgequant quantize`"):
        Artifact.load(art.directory)


@pytest.mark.parametrize("content", [b"\xff\xfe\x00\x80", b"[1, 2]"], ids=["binary", "list"])
def test_inspect_and_bench_name_a_corrupt_artifact_json(  # type: ignore[no-untyped-def]
    tiny_model, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes
) -> None:
    from edgequant.cli import main

    art = _sim_artifact(tiny_model, tmp_path / "a")
    (art.directory / "artifact.json").write_bytes(content)
    for args in (
        ["inspect", str(art.directory)],
        ["bench", "--artifact", str(art.directory), "-o", str(tmp_path / "r")],
    ):
        capsys.readouterr()
        assert main(args) != 0
        err = capsys.readouterr().err
        assert "is corrupt" in err and "unexpected" not in err, err
        assert len(err.strip().splitlines()) == 1, err


def test_an_artifact_json_pointing_outside_its_folder_is_refused(
    tiny_model, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    art = _sim_artifact(tiny_model, tmp_path / "a")
    meta_path = art.directory / "artifact.json"
    meta = json.loads(meta_path.read_text())
    (tmp_path / "elsewhere.pt").write_bytes(art.path.read_bytes())
    meta["file"] = "../elsewhere.pt"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="outside its folder"):
        Artifact.load(art.directory)


# --- 4. ONNX external data is carried into the cache -------------------------------------------
def _external_data_model(tiny_model, folder: Path) -> Path:  # type: ignore[no-untyped-def]
    """The tiny net as an ``.onnx`` whose weights live in ``net.onnx.data`` beside it."""
    import onnx
    import torch

    folder.mkdir()
    plain = folder / "plain.onnx"
    torch.onnx.export(
        tiny_model.module,
        torch.zeros(1, 3, 32, 32),
        str(plain),
        dynamo=False,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
    )
    proto = onnx.load(str(plain))
    plain.unlink()
    onnx.save(
        proto,
        str(folder / "net.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="net.onnx.data",
        size_threshold=0,
    )
    return folder / "net.onnx"


@pytest.mark.parametrize("scheme", ["fp32", "w8a8"])
def test_an_artifact_from_external_data_loads_after_the_source_is_deleted(  # type: ignore[no-untyped-def]
    tiny_model, tmp_path: Path, scheme: str
) -> None:
    pytest.importorskip("onnxruntime")
    import numpy as np

    from edgequant.build.cache import get_or_build
    from edgequant.data import open_dataset
    from edgequant.models import load_model

    source = _external_data_model(tiny_model, tmp_path / "src")
    model = load_model(str(source))
    calib = open_dataset("synthetic:16", model.input_spec)
    built = get_or_build("onnxruntime", model, scheme, calib, cache_dir=tmp_path / "c")
    shutil.rmtree(source.parent)
    art = get_or_build("onnxruntime", model, scheme, calib, cache_dir=tmp_path / "c")
    assert art.path == built.path  # a cache hit, checked by loading it
    with get_backend("onnxruntime").load(Artifact.load(art.directory), threads=1) as sess:
        assert sess.run(np.zeros((2, 3, 32, 32), np.float32)).shape == (2, 10)


def test_editing_only_the_external_data_changes_the_cache_key(tiny_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("onnxruntime")
    from edgequant.models import load_model

    source = _external_data_model(tiny_model, tmp_path / "src")
    before = load_model(str(source)).key
    data = source.with_name("net.onnx.data")
    raw = bytearray(data.read_bytes())
    raw[-8:] = bytes(8)
    data.write_bytes(bytes(raw))
    assert load_model(str(source)).key != before


# --- 6. fault injection: one round of the benchmark script ------------------------------------
@pytest.mark.slow
def test_one_round_of_fault_injection_passes(tmp_path: Path) -> None:
    """A real sweep killed at a random point, resumed: nothing lost, duplicated or left."""
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "fault_injection.py"),
            "--rounds",
            "1",
            "--seed",
            "11",
            "--keep",
            str(tmp_path / "faults"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1/1 rounds passed" in proc.stdout
