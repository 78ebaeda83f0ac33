"""The build stage and its public functions: calibration rules, quantize(), inspect_artifact()."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgequant.build.calibration import SYNTHETIC_CALIBRATION_NOTE, select_calibration
from edgequant.build.quantize import inspect_artifact, quantize, quantize_model
from edgequant.build.stage import build_artifact
from edgequant.errors import UnsupportedError, ValidationError
from edgequant.quant.scheme import CalibrationConfig, get_scheme

pytest.importorskip("onnxruntime")


def test_calibration_rules(tiny_model, tiny_calibration) -> None:  # type: ignore[no-untyped-def]
    w8a8, fp32 = get_scheme("w8a8"), get_scheme("fp32")
    with pytest.raises(ValidationError, match="needs calibration data: pass --calib DATASET"):
        select_calibration(w8a8, tiny_model, None)
    # a static scheme falls back to the caller's default (bench: the data measured) ...
    chosen = select_calibration(w8a8, tiny_model, None, default="synthetic:4")
    assert chosen.source is not None and getattr(chosen.source, "kind", None) == "synthetic"
    assert chosen.notes == [SYNTHETIC_CALIBRATION_NOTE] and not chosen.ignored
    # ... but what the user gave wins, and an array is used as it is
    chosen = select_calibration(w8a8, tiny_model, tiny_calibration, default="synthetic:4")
    assert chosen.source is tiny_calibration and chosen.notes == []
    # a scheme that needs no calibration gets none, and says it ignored what it was given
    none = select_calibration(fp32, tiny_model, "synthetic:4")
    assert none.source is None and none.ignored
    assert not select_calibration(fp32, tiny_model, None).ignored


def test_calibration_datasets_open_on_the_train_split() -> None:
    from edgequant.models import load_model

    chosen = select_calibration(get_scheme("w8a8"), load_model("digits_cnn"), "digits")
    assert getattr(chosen.source, "spec", None) == "digits:train"


def test_quantize_with_an_array_and_an_output_dir(
    tiny_model, tiny_calibration, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "art"
    art = quantize(
        tiny_model,
        backend="onnxruntime",
        scheme="w8a8",
        calibration=tiny_calibration,
        cache_dir=tmp_path / "cache",
        output=out,
        progress=False,
    )
    assert art.directory == out and art.scheme.name == "w8a8"
    assert art.metadata["calibration_samples"] == len(tiny_calibration)
    report = inspect_artifact(out)
    assert report.scheme == "w8a8" and report.convs
    # w8a8's GPTQ rounding is said first: the weights the runtime quantized were already on grid
    assert report.notes[0] == (
        "before quantizing: bn_fold, gptq, bias_correction (weights already on the runtime's grid)"
    )
    assert inspect_artifact(art).summary() == report.summary()
    # a second call is a cache hit, copied over the previous artifact in the output
    again = quantize_model(
        tiny_model,
        backend="onnxruntime",
        scheme="w8a8",
        calibration=tiny_calibration,
        cache_dir=tmp_path / "cache",
        output=out,
        progress=False,
    )
    assert again.cached.metadata["cache_key"] == art.metadata["cache_key"]
    assert again.to_dict()["cached_at"] != str(out)


def test_quantize_refuses_a_bad_output_before_building(tiny_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    cache = tmp_path / "cache"
    with pytest.raises(ValidationError, match="holds no artifact"):
        quantize(tiny_model, backend="onnxruntime", scheme="fp32", cache_dir=cache, output=busy)
    assert not cache.exists()  # nothing was built
    assert (busy / "notes.txt").read_text() == "mine"


def test_quantize_input_errors(tiny_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError, match="needs calibration data"):
        quantize(tiny_model, backend="onnxruntime", scheme="w8a8", cache_dir=tmp_path)
    with pytest.raises(ValidationError, match="unknown option"):
        quantize(tiny_model, backend="onnxruntime", scheme="fp32", calib="digits")
    with pytest.raises(ValidationError, match="zoo name, a model file or an edgequant Model"):
        quantize(42, backend="onnxruntime", scheme="fp32")  # type: ignore[arg-type]
    with pytest.raises(UnsupportedError, match="bf16"):
        build_artifact("onnxruntime", tiny_model, "bf16", cache_dir=tmp_path)
    assert not (tmp_path / "onnxruntime").exists()


def test_build_artifact_notes_synthetic_calibration(tiny_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    scheme = get_scheme("w8a8").with_(calibration=CalibrationConfig(samples=4))
    built = build_artifact(
        "onnxruntime",
        tiny_model,
        scheme,
        default_calibration="synthetic:8",
        batch_sizes=[1, 8],
        cache_dir=tmp_path,
        progress=False,
    )
    assert built.notes == [SYNTHETIC_CALIBRATION_NOTE]
    assert built.artifact.metadata["calibration_samples"] == 4


def test_quantize_cli_without_calibration_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgequant.cli import main

    rc = main(
        [
            "quantize",
            "--model",
            "digits_cnn",
            "--backend",
            "onnxruntime",
            "--scheme",
            "w8a8",
            "-o",
            str(tmp_path / "a"),
            "--cache-dir",
            str(tmp_path / "c"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0
    assert "scheme w8a8 needs calibration data: pass --calib DATASET" in err
    rc = main(
        [
            "quantize",
            "--model",
            "digits_cnn",
            "--backend",
            "onnxruntime",
            "--scheme",
            "fp32",
            "--calib",
            "digits",
            "-o",
            str(tmp_path / "a"),
            "--cache-dir",
            str(tmp_path / "c"),
            "--json",
        ]
    )
    captured = capsys.readouterr()
    assert rc == 0 and "fp32 needs no calibration; --calib ignored" in captured.err
    assert Path(json.loads(captured.out)["directory"]) == tmp_path / "a"


def test_inspect_cli_over_inspect_artifact(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgequant.cli import main

    x = np.random.default_rng(0).standard_normal((8, 1, 32, 32)).astype(np.float32)
    art = quantize(
        "digits_cnn",
        backend="onnxruntime",
        scheme="w8a8",
        calibration=x,
        cache_dir=tmp_path,
        output=tmp_path / "a",
        progress=False,
    )
    rc = main(["inspect", str(art.directory), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and doc["summary"] == inspect_artifact(art).summary()
