"""OpenVINO backend: the shared contract plus what is OpenVINO-specific (executed precision, NNCF
options, runtime-model inspection, the AsyncInferQueue path, n/a reasons, bad input).

The tiny model is converted once per process (the backend memoises converted models by weights),
so building every supported scheme costs one conversion plus fast NNCF runs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from edgequant.backends.base import Artifact, Backend
from edgequant.errors import (
    ArtifactError,
    EdgequantError,
    ModelError,
    UnsupportedError,
    ValidationError,
)
from edgequant.models.base import Model
from edgequant.quant.scheme import get_scheme
from tests.backends.contract import BackendContract, assert_unavailable_raises, cosine
from tests.helpers import TwoOutputs, module_model

pytest.importorskip("openvino")
pytest.importorskip("nncf")


def _capabilities(backend: Backend) -> list[str]:
    return list(backend.core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))  # type: ignore[attr-defined]


class TestOpenVino(BackendContract):
    backend_name = "openvino"

    # --- precision actually executed -----------------------------------------------------------
    def test_fp32_executes_f32_not_bf16(self, backend: Backend, built, reference) -> None:  # type: ignore[no-untyped-def]
        art = built["fp32"]
        assert art.metadata["executed_precision"] == "f32"
        assert art.metadata["inference_precision_hint"] == "f32"
        assert set(art.metadata["runtime_precisions"]["Convolution"]) == {"f32"}
        x, y_ref = reference
        with backend.load(art, threads=1) as sess:
            assert sess.executed_precision == "f32"
            y = sess.run(x)
        # bf16 would be off by ~1e-2 relative; true fp32 matches PyTorch to rounding
        np.testing.assert_allclose(y, y_ref, rtol=1e-3, atol=1e-4)

    def test_bf16_scheme_executes_bf16(self, backend: Backend, built, reference) -> None:  # type: ignore[no-untyped-def]
        if "BF16" not in _capabilities(backend):
            pytest.skip("this CPU has no bf16 compute")
        art = built["bf16"]
        assert art.metadata["executed_precision"] == "bf16"
        x, y_ref = reference
        with backend.load(art, threads=1) as sess:
            assert sess.executed_precision == "bf16"
            y = sess.run(x)
        assert not np.allclose(y, y_ref, rtol=1e-5, atol=1e-6), "bf16 gave fp32-exact numbers"
        assert cosine(y, y_ref) > 0.99

    def test_fp16_stores_half_weights_and_records_what_runs(self, backend: Backend, built) -> None:  # type: ignore[no-untyped-def]
        fp16, fp32 = built["fp16"].metadata, built["fp32"].metadata
        assert fp16["weight_bytes"] * 2 == fp32["weight_bytes"]
        want = "f16" if "FP16" in _capabilities(backend) else "f32"
        assert fp16["executed_precision"] == want
        if want == "f32":
            assert "no FP16 compute" in fp16["note"]

    # --- NNCF options ----------------------------------------------------------------------------
    def test_scheme_parameters_reach_nncf(self, built) -> None:  # type: ignore[no-untyped-def]
        q = {n: built[n].metadata["quantizer"] for n in ("w8a8", "w8a8-pt", "w8a8-sym")}
        assert q["w8a8"]["preset"] == "mixed" and q["w8a8"]["weights_per_channel"] is True
        assert q["w8a8-pt"]["weights_per_channel"] is False
        assert q["w8a8-sym"]["preset"] == "performance"
        # per-tensor weights carry one scale per conv instead of one per output channel
        assert built["w8a8-pt"].metadata["weight_bytes"] < built["w8a8"].metadata["weight_bytes"]
        assert built["w8a8"].metadata["calibration_samples"] == 32
        assert built["w8-only"].metadata["quantizer"]["mode"] == "int8_sym"

    def test_activations_are_quantized_per_tensor(self, backend: Backend, tmp_path: Path) -> None:
        # NNCF's CPU default quantizes a depthwise conv's input per channel when nothing else
        # reads it (an inverted-residual block); that cost 12 dB of SQNR on EfficientNet-Lite0,
        # so every activation range must be one scalar
        import openvino as ov

        torch.manual_seed(0)
        net = nn.Sequential(
            nn.Conv2d(3, 16, 1),
            nn.ReLU6(),
            nn.Conv2d(16, 16, 3, padding=1, groups=16),
            nn.ReLU6(),
            nn.Conv2d(16, 8, 1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        m = module_model("ir-block", net, 8)
        calib = np.random.default_rng(0).normal(size=(16, 3, 8, 8)).astype(np.float32)
        art = backend.prepare(m, get_scheme("w8a8"), calib, tmp_path / "a")
        ir = ov.Core().read_model(str(art.path))
        fqs = [op for op in ir.get_ordered_ops() if op.get_type_name() == "FakeQuantize"]
        consumers = {
            t.get_node().get_type_name() for fq in fqs for t in fq.output(0).get_target_inputs()
        }
        assert "GroupConvolution" in consumers, "the depthwise conv's input is not quantized"
        for fq in fqs:
            low = fq.input_value(1).get_node()
            assert low.get_type_name() == "Constant" and low.get_data().size == 1, (
                fq.get_friendly_name()
            )
        assert "MINMAX" in art.metadata["quantizer"]["range_estimator"]

    def test_overflow_fix_follows_cpu_flags(self, built) -> None:  # type: ignore[no-untyped-def]
        from edgequant.backends.int8_cpu import runtime_int8_class
        from edgequant.hw.cpu import PAIR_SATURATING

        # the blanket "first_layer_only" is gone: with the module, the layers that saturate on
        # oneDNN's pmaddubsw path are left in f32 and the overflow fix is off everywhere
        q = built["w8a8"].metadata["quantizer"]
        assert q["overflow_fix"] == "disable"
        assert q["cpu_choice_reason"]
        plan = built["w8a8"].metadata["int8_plan"]
        assert plan["int8_class"] == runtime_int8_class("openvino")
        assert q["ignored_layers"] == plan["remedied"]
        if plan["int8_class"] not in PAIR_SATURATING:
            assert plan["remedied"] == [] and plan["arithmetic"] == "exact"

    def test_overflow_fix_choice_is_valid_for_nncf_on_any_cpu(self) -> None:
        from nncf.quantization.advanced_parameters import OverflowFix

        from edgequant.backends.openvino.config import cpu_int8_choice

        old = cpu_int8_choice(["FP32", "INT8"], {"avx2", "avx512f"})
        new = cpu_int8_choice(["FP32", "INT8"], {"avx2", "avx512f", "avx512_vnni"})
        assert OverflowFix(old["overflow_fix"]) is OverflowFix.FIRST_LAYER
        assert OverflowFix(new["overflow_fix"]) is OverflowFix.DISABLE
        assert "VNNI" in old["reason"] and "avx512_vnni" in new["reason"]

    def test_mse_calibration_is_mapped(
        self, backend: Backend, tiny_model, tiny_calibration, reference, tmp_path: Path
    ) -> None:  # type: ignore[no-untyped-def]
        s = get_scheme(
            {
                "name": "w8a8-mse",
                "base": "w8a8",
                "calibration": {"method": "mse", "samples": 16},
            }
        )
        art = backend.prepare(tiny_model, s, tiny_calibration, tmp_path)
        q = art.metadata["quantizer"]
        assert q["range_estimator"].startswith("HISTOGRAM")
        assert q["subset_size"] == 16
        x, y_ref = reference
        with backend.load(art, threads=1) as sess:
            assert cosine(sess.run(x), y_ref) > 0.98

    def test_nncf_progress_stays_off_stdout(
        self,
        backend: Backend,
        tiny_model,
        tiny_calibration,
        tmp_path: Path,
        capfd: pytest.CaptureFixture[str],
    ) -> None:  # type: ignore[no-untyped-def]
        # `--json` commands print one document on stdout; NNCF draws its bars there by default
        s = get_scheme({"name": "w8a8-8", "base": "w8a8", "calibration": {"samples": 8}})
        backend.prepare(tiny_model, s, tiny_calibration, tmp_path)
        assert capfd.readouterr().out == ""

    # --- inspect ---------------------------------------------------------------------------------
    def test_inspect_reports_int8_convs_for_w8a8(self, backend: Backend, built) -> None:  # type: ignore[no-untyped-def]
        report = backend.inspect(built["w8a8"])
        assert report.summary() == "4/4 convs in integer precision"
        assert {c.op_type for c in report.convs} == {"Convolution", "DepthwiseConvolution"}
        assert any("executed precision i8" in n for n in report.notes)
        assert built["w8a8"].metadata["executed_precision"] == "i8"

    def test_inspect_explains_float_convs(self, backend: Backend, built) -> None:  # type: ignore[no-untyped-def]
        w8 = backend.inspect(built["w8-only"]).summary()
        assert w8.startswith(
            "0/4 convs in integer precision; 4 fall back to float: 4 × weight-only"
        )
        fp16 = backend.inspect(built["fp16"]).summary()
        assert "float scheme" in fp16

    # --- the throughput path -----------------------------------------------------------------------
    def test_run_offline_matches_run_for_int8(self, backend: Backend, built, reference) -> None:  # type: ignore[no-untyped-def]
        x, _ = reference
        batches = [x[i : i + 2] * (1 + i / 8) for i in range(0, len(x), 2)]  # all different
        got: dict[int, np.ndarray] = {}
        with backend.load(built["w8a8"], threads=2) as sess:
            sess.run_offline(batches, lambda i, out: got.__setitem__(i, out))
            direct = [sess.run(b) for b in batches]
        assert sorted(got) == list(range(len(batches)))
        for i, d in enumerate(direct):
            assert got[i].dtype == np.float32
            np.testing.assert_allclose(got[i], d, rtol=1e-5, atol=1e-5)

    def test_run_from_two_threads(self, backend: Backend, built, reference) -> None:  # type: ignore[no-untyped-def]
        from concurrent.futures import ThreadPoolExecutor

        x, _ = reference
        with backend.load(built["w8a8"], threads=1) as sess:
            want = [sess.run(x[i : i + 1]) for i in range(8)]
            with ThreadPoolExecutor(2) as pool:
                got = list(pool.map(lambda i: sess.run(x[i : i + 1]), range(8)))
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w)

    def test_each_run_returns_its_own_output(self, backend: Backend, built, reference) -> None:  # type: ignore[no-untyped-def]
        # batch 1 and 8 run on static compiles whose output buffer the session reads through a
        # view kept from the first run: every later run must still return its own logits
        x, ref = reference
        with backend.load(built["fp32"], threads=1) as sess:
            singles = [sess.run(x[i : i + 1]) for i in range(8)]
            first = singles[0].copy()
            batched = sess.run(x[:8])
            odd = sess.run(x[:3])  # the free-batch model
        np.testing.assert_array_equal(singles[0], first)  # returned arrays are copies
        for i in range(8):
            np.testing.assert_allclose(singles[i][0], ref[i], rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(batched[i], ref[i], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(odd, ref[:3], rtol=1e-4, atol=1e-4)
        assert not np.allclose(singles[0], singles[1])

    def test_run_offline_reports_callback_errors(self, backend: Backend, built, reference) -> None:  # type: ignore[no-untyped-def]
        x, _ = reference

        def boom(i: int, out: np.ndarray) -> None:
            raise RuntimeError("consumer failed")

        with (
            backend.load(built["fp32"], threads=1) as sess,
            pytest.raises(EdgequantError, match="consumer failed"),
        ):
            sess.run_offline([x[:2], x[2:4]], boom)

    # --- a user's ONNX file ----------------------------------------------------------------------
    def test_onnx_model_converts_with_dynamic_batch(
        self, backend: Backend, tiny_model, reference, tmp_path: Path
    ) -> None:  # type: ignore[no-untyped-def]
        x, y_ref = reference
        path = tmp_path / "tiny.onnx"
        torch.onnx.export(
            tiny_model.module,
            (torch.from_numpy(x[:1]),),
            str(path),
            dynamo=False,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
        )
        m = Model(
            name="user",
            family="onnx",
            input_spec=tiny_model.input_spec,
            num_classes=10,
            onnx_path=path,
        )
        assert backend.supports(get_scheme("fp32"), m) is None
        art = backend.prepare(m, get_scheme("fp32"), None, tmp_path / "art")
        assert art.metadata["converter"]["source"] == "onnx"
        with backend.load(art, threads=1) as sess:
            assert sess.fixed_batch is None
            np.testing.assert_allclose(sess.run(x[:3]), y_ref[:3], rtol=1e-3, atol=1e-4)

    # --- n/a and bad input -------------------------------------------------------------------------
    @pytest.mark.parametrize(
        "scheme, words",
        [
            ("w8-dyn", "FullyConnected"),
            ("w4a8", "4-bit-weight"),
            ("w4-only", "convolutions"),
            ({"name": "w8a8-ent", "base": "w8a8", "calibration": {"method": "entropy"}}, "entropy"),
            (
                {"name": "w8a8-p", "base": "w8a8", "calibration": {"method": "percentile:99.99"}},
                "quantile",
            ),
        ],
    )
    def test_na_schemes_say_why(self, backend: Backend, tiny_model, scheme, words) -> None:  # type: ignore[no-untyped-def]
        s = get_scheme(scheme)
        reason = backend.supports(s, tiny_model)
        assert reason is not None and words in reason
        with pytest.raises(UnsupportedError, match=words):
            backend.check_supported(s, tiny_model)

    def test_w4_only_runs_on_a_matmul_model(self, backend: Backend, tmp_path: Path) -> None:
        torch.manual_seed(0)
        net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 256), nn.ReLU(), nn.Linear(256, 10))
        m = module_model("mlp", net, 10)
        art = backend.prepare(m, get_scheme("w4-only"), None, tmp_path)
        stored = art.metadata["quantizer"]["weights_stored_as"]
        assert stored.get("i4 MatMul") == 2, stored
        x = np.random.default_rng(0).standard_normal((8, 3, 8, 8)).astype(np.float32)
        with torch.no_grad():
            ref = net(torch.from_numpy(x)).numpy()
        with backend.load(art, threads=1) as sess:
            assert cosine(sess.run(x), ref) > 0.95

    def test_missing_calibration_is_rejected(
        self, backend: Backend, tiny_model, tmp_path: Path
    ) -> None:  # type: ignore[no-untyped-def]
        # NaN / wrong shape / empty calibration: the shared contract tests them
        with pytest.raises(ValidationError, match="calibration"):
            backend.prepare(tiny_model, get_scheme("w8a8"), None, tmp_path)

    def test_converter_rejection_is_one_line_model_error(
        self, backend: Backend, tmp_path: Path
    ) -> None:
        class Unconvertible(nn.Module):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return torch.histc(x, bins=4)  # no OpenVINO conversion rule for aten::histc

        m = module_model("unconvertible", Unconvertible(), 3)
        with pytest.raises(ModelError, match="OpenVINO cannot convert unconvertible") as info:
            backend.prepare(m, get_scheme("fp32"), None, tmp_path)
        assert "\n" not in str(info.value) and len(str(info.value)) < 400
        assert "aten::histc" in str(info.value)

    @pytest.mark.parametrize("damage", ["truncate-bin", "garbage-xml"])
    def test_corrupt_artifact_is_an_artifact_error(
        self, backend: Backend, built, tmp_path: Path, damage: str
    ) -> None:  # type: ignore[no-untyped-def]
        src = built["w8a8"]
        xml, binf = tmp_path / "model.xml", tmp_path / "model.bin"
        xml.write_bytes(src.path.read_bytes())
        binf.write_bytes(src.path.with_suffix(".bin").read_bytes())
        if damage == "truncate-bin":
            binf.write_bytes(binf.read_bytes()[:100])
        else:
            xml.write_text("<net><layers>")
        art = Artifact(
            path=xml,
            backend="openvino",
            model=src.model,
            scheme=src.scheme,
            metadata=dict(src.metadata, extra_files=[str(binf)]),
        )
        with pytest.raises(ArtifactError), backend.load(art, threads=1) as sess:
            sess.run(np.zeros((1, 3, 32, 32), np.float32))

    def test_size_counts_the_bin_after_the_artifact_moves(self, built, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
        import shutil

        src = built["fp32"]
        moved = Path(shutil.copytree(src.directory, tmp_path / "moved"))
        art = Artifact.load(moved)
        want = (moved / "model.xml").stat().st_size + (moved / "model.bin").stat().st_size
        assert art.metadata["ir_size_bytes"] == want
        assert art.size_bytes == want

    def test_wrong_input_shape_is_a_validation_error(self, backend: Backend, built) -> None:  # type: ignore[no-untyped-def]
        with (
            backend.load(built["fp32"], threads=1) as sess,
            pytest.raises(ValidationError, match="shape"),
        ):
            sess.run(np.zeros((2, 3, 16, 16), np.float32))

    def test_missing_runtime_raises_with_install_hint(self, backend: Backend) -> None:
        assert_unavailable_raises(backend)  # available here: require() must not raise
        backend.require()
        # a fresh interpreter in which `import openvino` fails, as on a machine without it
        code = (
            "import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'openvino':\n"
            "            raise ModuleNotFoundError(f'No module named {name!r}')\n"
            "sys.meta_path.insert(0, Block())\n"
            "from edgequant.backends import get_backend\n"
            "from edgequant.errors import BackendUnavailableError\n"
            "be = get_backend('openvino')\n"
            "try:\n"
            "    be.require()\n"
            "except BackendUnavailableError as e:\n"
            "    print('raised:', e)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stderr
        assert "raised: backend 'openvino' is not available" in out.stdout
        assert "pip install openvino nncf" in out.stdout


def test_onnx_model_with_two_outputs_runs_its_first(tmp_path: Path) -> None:
    from edgequant.backends import get_backend

    torch.manual_seed(0)
    net = TwoOutputs().eval()
    x = np.random.default_rng(1).standard_normal((3, 3, 8, 8)).astype(np.float32)
    path = tmp_path / "two.onnx"
    torch.onnx.export(
        net,
        (torch.from_numpy(x[:1]),),
        str(path),
        dynamo=False,
        input_names=["x"],
        output_names=["scores", "peaks"],
        dynamic_axes={"x": {0: "n"}, "scores": {0: "n"}, "peaks": {0: "n"}},
    )
    spec = module_model("two", net, 5).input_spec
    m = Model(name="two", family="onnx", input_spec=spec, num_classes=5, onnx_path=path)
    be = get_backend("openvino")
    art = be.prepare(m, get_scheme("fp32"), None, tmp_path / "art")
    assert art.metadata["converter"]["outputs"] == ["scores", "peaks"]
    assert art.metadata["converter"]["output_measured"] == "scores"
    with torch.no_grad():
        want = net(torch.from_numpy(x))[0].numpy()
    with be.load(art, threads=1) as sess:
        assert sess.fixed_batch is None
        np.testing.assert_allclose(sess.run(x), want, rtol=1e-4, atol=1e-5)
