"""ONNX Runtime backend: the shared contract plus ORT-specific behaviour."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from edgequant.backends import get_backend
from edgequant.backends.onnxruntime import OnnxRuntimeBackend, int8_choice
from edgequant.errors import ArtifactError, UnsupportedError, ValidationError
from edgequant.input_spec import InputSpec
from edgequant.models.base import Model
from edgequant.quant.scheme import get_scheme
from tests.backends.contract import BackendContract
from tests.helpers import module_model

pytest.importorskip("onnxruntime")


class TestOnnxRuntime(BackendContract):
    backend_name = "onnxruntime"


@pytest.fixture(scope="module")
def ort_backend() -> OnnxRuntimeBackend:
    be = get_backend("onnxruntime")
    assert isinstance(be, OnnxRuntimeBackend)
    return be


def test_int8_layout_follows_cpu_flags() -> None:
    vnni = int8_choice({"avx512f", "avx512_vnni"}, "x86_64")
    assert vnni["activation_type"] == "QUInt8" and vnni["reduce_range"] is False
    old = int8_choice({"avx2"}, "x86_64")
    assert old["activation_type"] == "QUInt8" and old["reduce_range"] is True
    arm = int8_choice({"asimddp"}, "aarch64")
    assert arm["activation_type"] == "QInt8"


def test_w8a8_records_u8s8_choice_and_runs_int8(
    ort_backend, tiny_model, tiny_calibration, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    art = ort_backend.prepare(tiny_model, get_scheme("w8a8"), tiny_calibration, tmp_path)
    meta = art.metadata
    expected = int8_choice()["activation_type"]
    assert meta["quantizer_options"]["activation_type"] == expected
    assert meta["quantizer_options"]["per_channel"] is True
    assert meta["quantizer_options"]["extra_options"]["WeightSymmetric"] is True
    assert meta["quantizer_options"]["extra_options"]["ActivationSymmetric"] is False
    what = {c["what"]: c for c in meta["choices"]}
    assert what["activation_type"]["reason"]
    assert meta["calibration_samples"] == len(tiny_calibration)
    assert meta["executed_precision"] == "int8"
    # after ORT's graph optimizations every conv of the tiny net runs as an integer kernel
    report = ort_backend.inspect(art)
    assert report.summary().startswith("4/4 convs in integer precision"), report.summary()
    assert {o.op_type.split(".")[-1] for o in report.convs} == {"QLinearConv"}


def test_scheme_parameters_reach_the_quantizer(
    ort_backend, tiny_model, tiny_calibration, tmp_path: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    pt = ort_backend.prepare(tiny_model, get_scheme("w8a8-pt"), tiny_calibration, tmp_path / "pt")
    assert pt.metadata["quantizer_options"]["per_channel"] is False
    sym = ort_backend.prepare(
        tiny_model, get_scheme("w8a8-sym"), tiny_calibration, tmp_path / "sym"
    )
    assert sym.metadata["quantizer_options"]["extra_options"]["ActivationSymmetric"] is True
    pct = get_scheme(
        {"base": "w8a8", "name": "w8a8-p", "calibration": {"method": "percentile:99.9"}}
    )
    p = ort_backend.prepare(tiny_model, pct, tiny_calibration, tmp_path / "p")
    assert p.metadata["quantizer_options"]["calibrate_method"] == "Percentile"
    assert p.metadata["quantizer_options"]["extra_options"]["CalibPercentile"] == 99.9
    # ORT's histogram calibrators print; stdout must stay clean for --json
    assert capsys.readouterr().out == ""
    # 30 samples: the calibration batches are equal-sized (ragged batches break histograms)
    ent = get_scheme({"base": "w8a8", "name": "w8a8-e", "calibration": {"method": "entropy"}})
    e = ort_backend.prepare(tiny_model, ent, tiny_calibration[:30], tmp_path / "e")
    assert e.metadata["quantizer_options"]["calibration_batch"] == 6


def test_fp16_reports_what_really_executes(ort_backend, tiny_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    art = ort_backend.prepare(tiny_model, get_scheme("fp16"), None, tmp_path)
    assert art.metadata["weight_bytes"] * 2 == art.metadata["fp32_weight_bytes"]
    # whatever ORT does with fp16 here, the recorded precision is the one inspect sees
    report = ort_backend.inspect(art)
    precisions = {o.precision for o in report.convs}
    assert art.metadata["executed_precision"] in precisions


def test_dynamic_scheme_is_flagged_slow(ort_backend, tiny_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    art = ort_backend.prepare(tiny_model, get_scheme("w8-dyn"), None, tmp_path)
    assert "slower" in art.metadata["warning"]
    assert any("ConvInteger" in o.op_type for o in ort_backend.inspect(art).convs)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda x: np.where(np.arange(x.size).reshape(x.shape) == 5, np.nan, x), "NaN or inf"),
        (lambda x: np.where(np.arange(x.size).reshape(x.shape) == 5, np.inf, x), "NaN or inf"),
        (lambda x: x[:0], "empty"),
        (lambda x: x[:, :, :16, :16], "shape"),
        (lambda x: x[0], "shape"),
    ],
    ids=["nan", "inf", "empty", "wrong-size", "no-batch-dim"],
)
def test_bad_calibration_is_rejected(
    ort_backend, tiny_model, tiny_calibration, tmp_path: Path, mutate, match
) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError, match=match):
        ort_backend.prepare(
            tiny_model, get_scheme("w8a8"), mutate(tiny_calibration.copy()), tmp_path
        )
    assert not (tmp_path / "model.onnx").exists()


def test_missing_calibration_names_the_flag(ort_backend, tiny_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError, match="--calib"):
        ort_backend.prepare(tiny_model, get_scheme("w8a8"), None, tmp_path)


class _Eig(nn.Module):
    """A layer ONNX cannot express (complex eigenvalues)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.eigvals(x[:, 0, :4, :4]).real


def test_converter_rejection_is_one_line(ort_backend, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model = module_model("eig", _Eig(), 4)
    with pytest.raises(UnsupportedError) as err:
        ort_backend.prepare(model, get_scheme("fp32"), None, tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and len(msg) < 400
    assert "eig" in msg and "cannot convert" in msg


def test_unsupported_schemes_give_reasons(ort_backend, tiny_model) -> None:  # type: ignore[no-untyped-def]
    for name in ("bf16", "w4a8"):
        reason = ort_backend.supports(get_scheme(name), tiny_model)
        assert reason and ("ORT" in reason or "ONNX Runtime" in reason), name
    mse = get_scheme({"base": "w8a8", "name": "w8a8-mse", "calibration": {"method": "mse"}})
    assert "mse" in (ort_backend.supports(mse) or "")
    with pytest.raises(UnsupportedError, match="cannot run bf16"):
        ort_backend.check_supported(get_scheme("bf16"))


def test_user_onnx_file_is_used_as_is(
    ort_backend, tiny_model, tiny_calibration, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from edgequant.models.export import export_onnx

    src = export_onnx(tiny_model, tmp_path / "user.onnx")
    user = Model(
        name="user",
        family="onnx",
        input_spec=tiny_model.input_spec,
        num_classes=10,
        onnx_path=src,
        weights_hash="u",
    )
    art = ort_backend.prepare(user, get_scheme("w8a8"), tiny_calibration, tmp_path / "out")
    x = tiny_calibration[:4]
    with ort_backend.load(art, threads=1) as s:
        y = s.run(x)
    with torch.no_grad():
        ref = tiny_model.module(torch.from_numpy(x)).numpy()
    assert (y.argmax(1) == ref.argmax(1)).mean() >= 0.75


def test_corrupt_model_file_fails_to_load_with_artifact_error(
    ort_backend, tiny_model, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    art = ort_backend.prepare(tiny_model, get_scheme("fp32"), None, tmp_path)
    art.path.write_bytes(b"not an onnx model")
    with pytest.raises(ArtifactError, match="rebuild"):
        ort_backend.load(art, threads=1)


def test_threads_must_be_positive(ort_backend, tiny_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    art = ort_backend.prepare(tiny_model, get_scheme("fp32"), None, tmp_path)
    with pytest.raises(ValidationError, match="threads"):
        ort_backend.load(art, threads=0)


def test_wrong_batch_shape_is_a_validation_error(ort_backend, tiny_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    art = ort_backend.prepare(tiny_model, get_scheme("fp32"), None, tmp_path)
    with ort_backend.load(art, threads=1) as s, pytest.raises(ValidationError, match="shape"):
        s.run(np.zeros((2, 3, 16, 16), np.float32))


class _WithTransposedConv(nn.Module):
    """conv → transposed conv → conv: ORT's CPU provider has no int8 ConvTranspose kernel."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, 2, 1)
        self.up = nn.ConvTranspose2d(8, 8, 2, 2)
        self.c2 = nn.Conv2d(8, 8, 3, 1, 1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.c2(torch.relu(self.up(torch.relu(self.c1(x)))))
        return self.fc(y.mean((2, 3)))


def test_inspect_explains_a_float_fallback(ort_backend, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = Model(
        name="up",
        family="test",
        input_spec=InputSpec(shape=(3, 16, 16), resize=16),
        num_classes=4,
        module=_WithTransposedConv().eval(),
    )
    calib = np.random.default_rng(0).standard_normal((8, 3, 16, 16)).astype(np.float32)
    art = ort_backend.prepare(model, get_scheme("w8a8"), calib, tmp_path)
    report = ort_backend.inspect(art)
    assert report.summary().startswith("2/3 convs in integer precision; 1 fall back to float")
    (fallback,) = [o for o in report.convs if o.precision == "fp32"]
    assert fallback.op_type == "ConvTranspose"
    assert "QDQ pair left around float ConvTranspose" in fallback.reason
    assert art.metadata["executed_precision"].startswith("mixed")
    assert any("QuantizeLinear" in n for n in report.notes)
