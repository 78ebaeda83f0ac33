"""The sim backend passes the shared backend contract, and runs what no runtime does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgequant.backends import get_backend
from edgequant.backends.base import Artifact
from edgequant.errors import ArtifactError
from edgequant.models.base import Model
from edgequant.quant.scheme import get_scheme
from tests.backends.contract import BackendContract, cosine
from tests.helpers import tiny_inputs


class TestSimContract(BackendContract):
    backend_name = "sim"


def test_sim_runs_odd_schemes(tiny_model, tiny_calibration, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import torch

    be = get_backend("sim")
    assert be.simulated
    x = tiny_inputs(tiny_model, 8, seed=3)
    with torch.no_grad():
        ref = tiny_model.module(torch.from_numpy(x)).numpy()
    for spec, min_cos in (
        (
            {
                "name": "w3a5",
                "weights": {"bits": 3, "granularity": "channel"},
                "activations": {"bits": 5, "symmetric": False},
            },
            0.8,
        ),
        ({"name": "w4-b8", "weights": {"bits": 4, "granularity": "block:8"}}, 0.95),
        (
            {
                "name": "w16a16",
                "weights": {"bits": 16},
                "activations": {"bits": 16, "symmetric": False},
            },
            0.99999,
        ),
        ({"base": "w8a8", "name": "w8a8-wino", "techniques": ["winograd"]}, 0.9),
    ):
        scheme = get_scheme(spec)
        art = be.prepare(tiny_model, scheme, tiny_calibration, tmp_path / scheme.name)
        with be.load(Artifact.load(art.directory), threads=1) as sess:
            y = sess.run(x)
        assert cosine(y, ref) >= min_cos, scheme.name


def test_sim_rejects_onnx_only_model(tiny_model) -> None:  # type: ignore[no-untyped-def]
    onnx_model = Model(
        name="u",
        family="user",
        input_spec=tiny_model.input_spec,
        num_classes=10,
        onnx_path=Path("u.onnx"),
    )
    assert get_backend("sim").supports(get_scheme("w8a8"), onnx_model)


def test_corrupt_artifact_is_reported(tiny_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    be = get_backend("sim")
    art = be.prepare(tiny_model, get_scheme("fp32"), None, tmp_path)
    art.path.write_bytes(art.path.read_bytes()[:100])
    with pytest.raises(ArtifactError):
        be.load(Artifact.load(tmp_path), threads=1)


def test_static_scheme_needs_calibration(tiny_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from edgequant.errors import ValidationError

    with pytest.raises(ValidationError, match="calibration"):
        get_backend("sim").prepare(tiny_model, get_scheme("w8a8"), None, tmp_path / "out")
    # the check comes before any work: nothing was written
    assert not (tmp_path / "out").exists()


def test_sim_targeting_a_runtime_puts_layers_on_its_bits(
    tiny_model: Model, tiny_calibration, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    be = get_backend("sim")
    plain = be.prepare(tiny_model, get_scheme("w4a8"), tiny_calibration, tmp_path / "a")
    assert "layer_bits" not in plain.metadata  # the scheme as written: every layer at 4 bits
    monkeypatch.setenv("EDGEQUANT_SIM_TARGET", "litert:avx2")
    as_litert = be.prepare(tiny_model, get_scheme("w4a8"), tiny_calibration, tmp_path / "b")
    assert as_litert.metadata["layer_bits"] == {"dw": 8}  # LiteRT has no int4 depthwise kernel
    precisions = {o.name: o.precision for o in be.inspect(as_litert).ops}
    assert precisions["dw"] == "int8" and precisions["pw"] == "int4"
    # ... and calibrates the activations as LiteRT does: min/max, where the sim's default is MSE
    assert (plain.metadata["calibration_method"], as_litert.metadata["calibration_method"]) == (
        "mse",
        "minmax",
    )
    first = {
        a: json.loads((art.path.parent / "qparams.json").read_text())["activations"]
        for a, art in (("mse", plain), ("minmax", as_litert))
    }
    name = next(iter(first["minmax"]))  # the graph input's quantizer: min/max covers every value
    lo, hi = float(tiny_calibration.min()), float(tiny_calibration.max())
    assert first["minmax"][name]["scale"] == pytest.approx((hi - min(lo, 0.0)) / 255, rel=1e-3)
    assert first["mse"] != first["minmax"]
