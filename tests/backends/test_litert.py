"""LiteRT backend: the shared contract plus what is LiteRT-specific (int8 I/O, inspect, n/a reasons).

The tiny model is converted once per process (the backend keeps converted float models in
memory), so building every supported scheme costs one conversion plus fast quantizer runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

from edgequant.backends import get_backend
from edgequant.backends.base import Artifact, Backend
from edgequant.backends.litert.config import build_recipe, check_recipe
from edgequant.backends.litert.session import TensorCodec
from edgequant.errors import ArtifactError, ModelError, UnsupportedError, ValidationError
from edgequant.models.base import Model
from edgequant.quant.scheme import get_scheme
from tests.backends.contract import BackendContract, assert_unavailable_raises
from tests.helpers import TwoOutputs, module_model, tiny_inputs

pytest.importorskip("ai_edge_litert")


class TestLiteRt(BackendContract):
    backend_name = "litert"

    # --- int8 I/O ------------------------------------------------------------------------------
    def test_static_int8_artifact_has_int8_input_float_output_and_session_is_float(
        self, backend: Backend, built, reference
    ) -> None:  # type: ignore[no-untyped-def]
        from ai_edge_litert.interpreter import Interpreter

        art = built["w8a8"]
        assert art.metadata["input_dtype"] == "int8"
        # the op writing the graph output runs float (int8 weights dequantized): logits are
        # not rounded to 8 bits, as OpenVINO and PT2E return them
        assert art.metadata["output_dtype"] == "fp32"
        x, _ = reference
        with backend.load(art, threads=1) as sess:
            got = sess.run(x[:1])
        assert got.dtype == np.float32
        # the same computation by hand: quantize with the input's scale/zero-point, run
        it = Interpreter(model_path=str(art.path))
        it.allocate_tensors()
        (inp,), (out,) = it.get_input_details(), it.get_output_details()
        assert out["dtype"] == np.float32
        s_in, z_in = inp["quantization"]
        q = np.clip(np.rint(x[:1] / s_in) + z_in, -128, 127).astype(np.int8)
        it.set_tensor(inp["index"], q)
        it.invoke()
        np.testing.assert_allclose(got, it.get_tensor(out["index"]), rtol=0, atol=1e-6)
        assert art.metadata["executed_precision"] == "i8"

    def test_float_io_for_weight_only_and_dynamic(self, built) -> None:  # type: ignore[no-untyped-def]
        for name in ("fp32", "w8-only", "w8-dyn"):
            assert built[name].metadata["input_dtype"] == "fp32", name
        assert built["w8-only"].metadata["weight_bytes_by_dtype"].get("int8", 0) > 0

    def test_int8_batches_of_any_size(self, backend: Backend, built, reference) -> None:  # type: ignore[no-untyped-def]
        x, _ = reference
        with backend.load(built["w8a8"], threads=2) as sess:
            one = sess.run(x[:1])
            many = sess.run(x[:6])
            again = sess.run(x[:1])
        np.testing.assert_array_equal(one[0], many[0])
        np.testing.assert_array_equal(one, again)

    # --- inspect -------------------------------------------------------------------------------
    def test_inspect_shows_int8_convs_for_w8a8(self, backend: Backend, built) -> None:  # type: ignore[no-untyped-def]
        report = backend.inspect(built["w8a8"])
        convs = report.convs
        assert len(convs) == 4  # conv1, depthwise, pointwise, conv3 of TinyNet
        assert all(c.precision == "int8" for c in convs), [vars(c) for c in convs]
        assert report.summary() == "4/4 convs in integer precision"
        assert {c.op_type for c in convs} == {"CONV_2D", "DEPTHWISE_CONV_2D"}

    def test_inspect_explains_float_convs(self, backend: Backend, built) -> None:  # type: ignore[no-untyped-def]
        summary = backend.inspect(built["w8-only"]).summary()
        assert summary.startswith("0/4 convs in integer precision; 4 fall back to float")
        assert "DEQUANTIZE feeds it" in summary
        fp32 = backend.inspect(built["fp32"]).summary()
        assert "float input tensor" in fp32

    def test_int4_weights_are_packed_and_depthwise_keeps_int8(
        self, backend: Backend, built
    ) -> None:  # type: ignore[no-untyped-def]
        if "w4a8" not in built:
            pytest.skip("w4a8 not supported here")
        by_dtype = built["w4a8"].metadata["weight_bytes_by_dtype"]
        assert by_dtype.get("int4", 0) > 0 and by_dtype.get("int8", 0) > 0
        precisions = {c.op_type: c.precision for c in backend.inspect(built["w4a8"]).convs}
        assert precisions["CONV_2D"] == "int8xint4"
        assert precisions["DEPTHWISE_CONV_2D"] == "int8"

    def test_layer_bits_reach_the_recipe(
        self, backend: Backend, tiny_model, tiny_calibration, tmp_path: Path
    ) -> None:  # type: ignore[no-untyped-def]
        fl8 = {"base": "w4a8", "name": "w4a8-fl8", "layer_bits": {"first": 8, "last": 8}}
        art = backend.prepare(tiny_model, get_scheme(fl8), tiny_calibration, tmp_path / "a")
        convs = [o for o in backend.inspect(art).ops if o.op_type == "CONV_2D"]
        assert [o.precision for o in convs] == ["int8", "int8xint4", "int8xint4"]
        fc = [o for o in backend.inspect(art).ops if o.op_type == "FULLY_CONNECTED"]
        assert "int8 weights" in fc[0].reason  # the float-output classifier, at 8 bits
        assert backend.supports(get_scheme({"base": "w4a8", "layer_bits": {"depthwise": 4}}))
        # module names reach the ops they were converted to (litert-torch names ops by path)
        by_name = get_scheme({"base": "w4a8", "name": "w4a8-pw8", "layer_bits": {"p?": 8}})
        art = backend.prepare(tiny_model, by_name, tiny_calibration, tmp_path / "b")
        convs = [o for o in backend.inspect(art).ops if o.op_type == "CONV_2D"]
        assert [o.precision for o in convs] == ["int8xint4", "int8", "int8xint4"]
        assert len(art.metadata["layer_bits"]) == 1

    def test_rounding_targets_the_bits_litert_uses(
        self, backend: Backend, tiny_model, tiny_calibration
    ) -> None:  # type: ignore[no-untyped-def]
        assert backend.runtime_scheme(get_scheme("w8a8")).layer_bits == ()
        scheme = get_scheme({"base": "w4a8", "name": "w4a8-gptq", "techniques": ["gptq"]})
        assert backend.runtime_scheme(scheme).layer_bits == (("depthwise", 8),)
        handed = backend._techniques(tiny_model, scheme, tiny_calibration[:16], None)
        for name, qmax in (("dw", 127), ("pw", 7)):  # LiteRT's int8 depthwise, int4 pointwise
            w = handed.module.get_submodule(name).weight.detach().flatten(1)
            levels = w / (w.abs().amax(1, keepdim=True) / qmax)
            assert torch.allclose(levels, levels.round(), atol=1e-4), name
            assert int(levels.abs().max().round()) == qmax, name

    # --- n/a and bad input ---------------------------------------------------------------------
    def test_bf16_is_na_with_reason(self, backend: Backend, tiny_model) -> None:  # type: ignore[no-untyped-def]
        reason = backend.supports(get_scheme("bf16"), tiny_model)
        assert reason is not None and "bfloat16" in reason
        with pytest.raises(UnsupportedError, match="bfloat16"):
            backend.check_supported(get_scheme("bf16"), tiny_model)

    def test_onnx_model_is_na(self, backend: Backend, tiny_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
        onnx_only = Model(
            name="user",
            family="onnx",
            input_spec=tiny_model.input_spec,
            num_classes=10,
            onnx_path=tmp_path / "m.onnx",
        )
        reason = backend.supports(get_scheme("fp32"), onnx_only)
        assert reason is not None and "PyTorch model" in reason, reason
        with pytest.raises(UnsupportedError):
            backend.prepare(onnx_only, get_scheme("fp32"), None, tmp_path)

    def test_scheme_parameters_reach_the_recipe(self) -> None:
        pt = build_recipe(get_scheme("w8a8-pt"))[0]["op_config"]
        assert pt["weight_tensor_config"]["granularity"] == "TENSORWISE"
        assert pt["activation_tensor_config"]["symmetric"] is False
        sym = build_recipe(get_scheme("w8a8-sym"))[0]["op_config"]
        assert sym["activation_tensor_config"]["symmetric"] is True
        dyn = build_recipe(get_scheme("w8-dyn"))[0]["op_config"]
        assert "activation_tensor_config" not in dyn and dyn["compute_precision"] == "INTEGER"
        # asymmetric int8 weights with int8 activations: the quantizer's own policy refuses
        asym = get_scheme(
            {
                "name": "w8a8-asymw",
                "weights": {"bits": 8, "symmetric": False, "granularity": "channel"},
                "activations": {"bits": 8, "symmetric": False},
            }
        )
        assert check_recipe(asym) is not None

    def test_winograd_is_na_but_model_techniques_are_fine(
        self, backend: Backend, tiny_model
    ) -> None:  # type: ignore[no-untyped-def]
        wino = get_scheme({"name": "w8a8-wino", "base": "w8a8", "techniques": ["winograd"]})
        assert "Winograd" in (backend.supports(wino, tiny_model) or "")
        cle = get_scheme({"name": "w8a8-cle", "base": "w8a8", "techniques": ["bn_fold", "cle"]})
        assert backend.supports(cle, tiny_model) is None

    def test_unsupported_calibration_method_is_na(self, backend: Backend, tiny_model) -> None:  # type: ignore[no-untyped-def]
        s = get_scheme({"name": "w8a8-ent", "base": "w8a8", "calibration": {"method": "entropy"}})
        reason = backend.supports(s, tiny_model)
        assert reason is not None and "entropy" in reason

    def test_missing_calibration_is_rejected(
        self, backend: Backend, tiny_model, tmp_path: Path
    ) -> None:  # type: ignore[no-untyped-def]
        # NaN / wrong shape / empty calibration: the shared contract tests them
        with pytest.raises(ValidationError, match="calibration"):
            backend.prepare(tiny_model, get_scheme("w8a8"), None, tmp_path)

    def test_converter_rejection_is_one_line_model_error(
        self, backend: Backend, tmp_path: Path
    ) -> None:
        class Unexportable(nn.Module):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return torch.from_numpy(x.numpy() * 2)  # leaves the graph: torch.export refuses

        m = module_model("unexportable", Unexportable(), 10)
        with pytest.raises(ModelError, match="litert-torch could not convert unexportable") as info:
            backend.prepare(m, get_scheme("fp32"), None, tmp_path)
        assert "\n" not in str(info.value) and len(str(info.value)) < 400

    def test_truncated_artifact_is_an_artifact_error(
        self, backend: Backend, built, tmp_path: Path
    ) -> None:  # type: ignore[no-untyped-def]
        src = built["w8a8"]
        bad = tmp_path / "model.tflite"
        bad.write_bytes(src.path.read_bytes()[:200])
        art = Artifact(
            path=bad,
            backend="litert",
            model=src.model,
            scheme=src.scheme,
            metadata=dict(src.metadata),
        )
        with pytest.raises(ArtifactError):
            backend.load(art, threads=1)
        with pytest.raises(ArtifactError):
            backend.inspect(art)

    def test_wrong_input_shape_is_a_validation_error(self, backend: Backend, built) -> None:  # type: ignore[no-untyped-def]
        with (
            backend.load(built["fp32"], threads=1) as sess,
            pytest.raises(ValidationError, match="shape"),
        ):
            sess.run(np.zeros((2, 3, 16, 16), np.float32))

    def test_closed_session_says_so(self, backend: Backend, built, reference) -> None:  # type: ignore[no-untyped-def]
        sess = backend.load(built["fp32"], threads=1)
        sess.close()
        with pytest.raises(ValidationError, match="closed"):
            sess.run(reference[0][:1])

    def test_metadata_records_recipe_and_calibration(self, built, tiny_calibration) -> None:  # type: ignore[no-untyped-def]
        meta = Artifact.load(built["w8a8"].directory).metadata
        assert meta["quantizer"]["recipe"][0]["algorithm_key"] == "min_max_uniform_quantize"
        assert meta["quantizer"]["calibration"]["samples"] == len(tiny_calibration)
        assert meta["weight_bytes"] > 0 and meta["versions"]["ai-edge-litert"]
        assert meta["fp32_weight_bytes"] >= 3 * meta["weight_bytes"]
        assert meta["inspect_summary"] == "4/4 convs in integer precision"
        assert any(c["what"] == "kernels" and "QS8" in c["choice"] for c in meta["choices"])


def test_missing_runtime_contract() -> None:
    be = get_backend("litert")
    assert_unavailable_raises(be)
    if be.available():  # installed: each of the three distributions is found by its pip name
        assert set(be.versions()) == {"ai-edge-litert", "litert-torch", "ai-edge-quantizer"}


class _FlattenNet(nn.Module):
    """Flattens a spatial map: the converted RESHAPE bakes in batch 1."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).reshape(x.shape[0], -1))


def test_model_with_batch_baked_in_runs_any_batch_one_by_one(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = _FlattenNet()
    m = module_model("flatten", net, 10)
    be = get_backend("litert")
    art = be.prepare(m, get_scheme("fp32"), None, tmp_path)
    x = tiny_inputs(m, 3, seed=5)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    with be.load(art, threads=1) as sess:
        got = sess.run(x)
        fixed = sess.fixed_batch
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # litert-torch 0.10 lowers this flatten to RESHAPE [1, 256]: the session must loop
    assert art.metadata["batch_resizable"] is False
    assert fixed == 1


def test_calibration_samples_are_capped_by_scheme(tiny_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    be = get_backend("litert")
    s = get_scheme(
        {"name": "w8a8-few", "base": "w8a8", "calibration": {"method": "minmax", "samples": 5}}
    )
    art = be.prepare(tiny_model, s, tiny_inputs(tiny_model, 12, seed=3), tmp_path)
    cal = art.metadata["quantizer"]["calibration"]
    assert cal["samples"] == 5 and cal["requested"] == "minmax"


@settings(max_examples=200, deadline=None)
@given(
    scale=st.floats(1e-4, 10.0),
    zero=st.integers(-128, 127),
    values=st.lists(st.floats(-1.0, 1.0), min_size=1, max_size=64),
)
def test_int8_codec_round_trip(scale: float, zero: int, values: list[float]) -> None:
    codec = TensorCodec({"dtype": np.int8, "quantization": (scale, zero)})
    s = np.float32(scale)
    lo, hi = (-128 - zero) * s, (127 - zero) * s  # the representable float range
    x = (np.asarray(values, np.float32) * np.float32(300.0) * s).astype(np.float32)
    q = codec.encode(x)
    assert q.dtype == np.int8
    back = codec.decode(q)
    assert back.dtype == np.float32
    inside = (x >= lo) & (x <= hi)
    # inside the range: within half a step; outside: saturated to the nearest end
    np.testing.assert_array_less(
        np.abs(back[inside] - x[inside]), s * 0.5 + 1e-6 * (1 + np.abs(x[inside]))
    )
    np.testing.assert_allclose(back[x > hi], hi, rtol=1e-6)
    np.testing.assert_allclose(back[x < lo], lo, rtol=1e-6)


def test_float_codec_is_identity() -> None:
    codec = TensorCodec({"dtype": np.float32, "quantization": (0.0, 0)})
    x = np.linspace(-3, 3, 7, dtype=np.float32)
    np.testing.assert_array_equal(codec.decode(codec.encode(x)), x)


class _TwoHeads(nn.Module):
    """Two heads flattened to ``[1, -1, 4]`` and concatenated, as BlazeFace's anchors are."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(3, 4, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.a(x).reshape(1, -1, 4), self.b(x).reshape(1, -1, 4)], dim=1)


def _reshape_to_minus_one(src: Path, dst: Path) -> None:
    """Rewrite every RESHAPE's constant ``[1, n, c]`` target to ``[1, -1, c]`` (TF's own
    spelling): the interpreter then resizes the graph to batch 2 without complaint, but folds the
    batch into the anchors axis, and the CONCAT interleaves the samples."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as fb

    model = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(src.read_bytes(), 0))
    sg = model.subgraphs[0]
    patched = 0
    for op in sg.operators:
        code = model.operatorCodes[op.opcodeIndex]
        if max(code.builtinCode, code.deprecatedBuiltinCode) != fb.BuiltinOperator.RESHAPE:
            continue
        buf = model.buffers[sg.tensors[op.inputs[1]].buffer]
        shape = np.frombuffer(bytes(buf.data), np.int32).copy()
        if len(shape) == 3 and shape[0] == 1:
            shape[1] = -1
            buf.data = list(shape.tobytes())
            patched += 1
    assert patched >= 2
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    dst.write_bytes(bytes(builder.Output()))


def test_reshape_that_folds_the_batch_is_not_resized(tmp_path: Path) -> None:
    from ai_edge_litert.interpreter import Interpreter

    from edgequant.models.loader import load_model

    torch.manual_seed(0)
    be = get_backend("litert")
    built = be.prepare(
        module_model("heads", _TwoHeads(), 80 * 4), get_scheme("fp32"), None, tmp_path / "a"
    )
    user = tmp_path / "heads.tflite"
    _reshape_to_minus_one(built.path, user)
    x = np.random.default_rng(3).standard_normal((3, 3, 8, 8)).astype(np.float32)
    ref = Interpreter(model_path=str(user))
    ref.allocate_tensors()
    want = []
    for sample in x:
        ref.set_tensor(ref.get_input_details()[0]["index"], sample[None])
        ref.invoke()
        want.append(ref.get_tensor(ref.get_output_details()[0]["index"]).reshape(1, -1))
    art = be.prepare(load_model(user), get_scheme("fp32"), None, tmp_path / "b")
    assert art.metadata["batch_resizable"] is False
    for resizable in (art.metadata["batch_resizable"], None):  # None: the session finds out
        from edgequant.backends.litert.session import LiteRtSession

        with LiteRtSession(art.path, 1, batch_resizable=resizable) as sess:
            np.testing.assert_allclose(sess.run(x), np.concatenate(want), rtol=1e-5, atol=1e-6)
            assert sess.fixed_batch == 1


def test_model_with_two_outputs_returns_its_first(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = TwoOutputs().eval()
    be = get_backend("litert")
    art = be.prepare(module_model("two", net, 5), get_scheme("fp32"), None, tmp_path)
    assert len(art.metadata["outputs"]) == 2
    x = np.random.default_rng(2).standard_normal((3, 3, 8, 8)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x))[0].numpy()
    with be.load(art, threads=1) as sess:
        np.testing.assert_allclose(sess.run(x), want, rtol=1e-4, atol=1e-5)
