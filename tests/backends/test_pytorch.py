"""The PyTorch backend: the shared contract plus AOTInductor packaging, PT2E mapping and inspect.

Every artifact is compiled once per scheme by the class-scoped ``built`` fixture of the contract
(AOTInductor compiles cost ~20-40 s each here); the specific tests below reuse those artifacts.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from edgequant.backends import get_backend
from edgequant.backends.artifact import HASHES_KEY
from edgequant.backends.base import Artifact, Backend
from edgequant.backends.pytorch import GRAPH_NAME, PROGRAM_NAME, PyTorchBackend, PyTorchSession
from edgequant.backends.pytorch.inspect import kernel_notes
from edgequant.backends.pytorch.quantize import count_kernels, quantize_pt2e, tensor_bytes
from edgequant.errors import ArtifactError, ModelError, UnsupportedError, ValidationError
from edgequant.models.base import Model
from edgequant.models.sources import load_pt2
from edgequant.quant.scheme import get_scheme
from tests.backends.contract import BackendContract, assert_unavailable_raises
from tests.helpers import tiny_inputs


class TestPyTorch(BackendContract):
    backend_name = "pytorch"

    def test_schemes_supported_on_cnn(self, backend: Backend, tiny_model: Model) -> None:
        for name in ("fp32", "fp16", "bf16", "w8a8", "w8a8-pt", "w8a8-sym"):
            assert backend.supports(get_scheme(name), tiny_model) is None, name
        for name, word in (
            ("w8-dyn", "Linear"),
            ("w8-only", "Linear"),
            ("w4-only", "Linear"),
            ("w4a8", "int8"),
        ):
            reason = backend.supports(get_scheme(name), tiny_model)
            assert reason and word in reason, (name, reason)
            with pytest.raises(UnsupportedError):
                backend.check_supported(get_scheme(name), tiny_model)

    def test_packages_compiled_once_per_batch_size_and_loaded_without_recompiling(
        self, backend: Backend, built: dict[str, Artifact], reference: tuple[np.ndarray, np.ndarray]
    ) -> None:
        x, _ = reference
        for name, art in built.items():
            assert art.path.name == PROGRAM_NAME, name
            assert art.metadata["loads_without_recompiling"] is True
            backend.specialize(art, [1, 8])
            packages = PyTorchBackend.packages(art)
            assert sorted(packages) == [1, 8], name
            stamps = {b: p.stat().st_mtime_ns for b, p in packages.items()}
            backend.specialize(art, [8, 1])  # already there: nothing is compiled again
            assert {
                b: p.stat().st_mtime_ns for b, p in PyTorchBackend.packages(art).items()
            } == stamps
            loaded = Artifact.load(art.directory)
            with backend.load(loaded, threads=1) as sess:
                assert isinstance(sess, PyTorchSession)
                # the runners are the compiled packages themselves, not torch.compile'd modules
                assert sorted(sess._runners) == [1, 8]
                assert {type(r).__name__ for r in sess._runners.values()} == {"AOTICompiledModel"}
                assert sess.run(x[:2]).shape == (2, 10)

    def test_executed_precision(self, backend: Backend, built: dict[str, Artifact]) -> None:
        expected = {
            "fp32": "f32",
            "fp16": "f16",
            "bf16": "bf16",
            "w8a8": "i8",
            "w8a8-pt": "i8",
            "w8a8-sym": "i8",
        }
        for name, precision in expected.items():
            assert built[name].metadata["executed_precision"] == precision, name
            with backend.load(built[name], threads=1) as sess:
                assert sess.executed_precision == precision
        assert "not eager" in built["fp32"].metadata["execution"]

    def test_weight_bytes_shrink(self, built: dict[str, Artifact]) -> None:
        fp32 = built["fp32"].metadata["weight_bytes"]
        assert built["bf16"].metadata["weight_bytes"] < 0.55 * fp32
        assert built["w8a8"].metadata["weight_bytes"] < fp32 / 3
        # the saved program holds the graph's int8 weights only, not the fp32 ones convert_pt2e
        # keeps beside them (ResNet-50's program was 130 MB instead of 28)
        import torchao.quantization.pt2e  # noqa: F401  (registers the quantized ops)

        program = torch.export.load(str(built["w8a8"].path))
        saved = [*program.state_dict.values(), *program.constants.values()]
        held = tensor_bytes([t for t in saved if isinstance(t, torch.Tensor)])
        assert held <= 1.05 * built["w8a8"].metadata["weight_bytes"]

    def test_inspect_counts_quantized_convs(
        self, backend: Backend, built: dict[str, Artifact]
    ) -> None:
        for art in built.values():
            backend.specialize(art, [1])  # kernel counts come from a compiled package
        for name in ("w8a8", "w8a8-pt", "w8a8-sym"):
            report = backend.inspect(built[name])
            convs = report.convs
            assert len(convs) == 4, name  # conv1, depthwise, pointwise, conv3
            assert all(o.precision == "int8" for o in convs), name
            assert report.summary().startswith("4/4 convs in integer precision")
            graph = json.loads((built[name].directory / GRAPH_NAME).read_text())
            # what Inductor really emitted: one oneDNN int8 kernel per conv, none left in float
            assert graph["kernels"]["int8_conv"] == 4, name
            assert graph["kernels"]["float_conv"] == 0, name
        fp32 = backend.inspect(built["fp32"])
        assert all(o.precision == "fp32" for o in fp32.convs)
        assert (
            json.loads((built["fp32"].directory / GRAPH_NAME).read_text())["kernels"]["float_conv"]
            == 4
        )
        assert {o.op_type for o in fp32.convs} >= {"Conv", "DepthwiseConv"}
        for name in ("w8a8", "w8a8-pt", "w8a8-sym", "fp32"):
            # every quantized conv was lowered: no "not lowered" note on a compiled package
            notes = backend.inspect(built[name]).notes
            assert any(n.startswith("compiled kernels: ") for n in notes), name
            assert not any("not lowered" in n for n in notes), (name, notes)

    def test_inspect_names_convs_a_compiled_package_left_in_float(
        self, backend: Backend, built: dict[str, Artifact], tmp_path: Path
    ) -> None:
        import shutil

        art = built["w8a8"]
        backend.specialize(art, [1])
        copy = tmp_path / "art"
        shutil.copytree(art.directory, copy)
        graph = json.loads((copy / GRAPH_NAME).read_text())
        # the counts of a package where Inductor lowered 3 of the 4 quantized convs
        graph["kernels"].update(int8_conv=3, float_conv=1)
        (copy / GRAPH_NAME).write_text(json.dumps(graph))
        notes = backend.inspect(Artifact.load(copy)).notes
        assert any(
            "1 quantized conv(s) were not lowered to int8 kernels by Inductor" in n for n in notes
        ), notes

    def test_threads_are_set_on_run(
        self, backend: Backend, built: dict[str, Artifact], reference: tuple[np.ndarray, np.ndarray]
    ) -> None:
        before = torch.get_num_threads()
        try:
            with backend.load(built["w8a8"], threads=1) as sess:
                torch.set_num_threads(2)
                sess.run(reference[0][:1])
                assert torch.get_num_threads() == 1
        finally:
            torch.set_num_threads(before)

    def test_batches_run_as_chunks_of_compiled_sizes(
        self,
        backend: Backend,
        built: dict[str, Artifact],
        reference: tuple[np.ndarray, np.ndarray],
        tmp_path: Path,
    ) -> None:
        x, _ = reference
        backend.specialize(built["w8a8"], [1, 8])
        with backend.load(built["w8a8"], threads=1) as sess:
            eleven = sess.run(x[:11])  # 8 + 1 + 1 + 1
            parts = np.concatenate(
                [sess.run(x[:8]), *(sess.run(x[i : i + 1]) for i in range(8, 11))]
            )
        np.testing.assert_allclose(eleven, parts, rtol=1e-5, atol=1e-5)
        # only batch 8 compiled (an Offline-only artifact): the tail of 3 is padded to 8
        only8 = tmp_path / "only8"
        shutil.copytree(built["w8a8"].directory, only8)
        _drop_package(only8, "model-b1.pt2")
        with backend.load(Artifact.load(only8), threads=1) as sess:
            assert sorted(sess._runners) == [8]
            padded = sess.run(x[:11])
        np.testing.assert_allclose(padded, eleven, rtol=1e-5, atol=1e-5)

    def test_packages_are_signed_and_a_tampered_one_is_refused(
        self,
        backend: Backend,
        built: dict[str, Artifact],
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """program.pt2 and the AOTInductor packages are code: loaded only when signed here."""
        backend.specialize(built["fp32"], [1])
        meta = json.loads((built["fp32"].directory / "artifact.json").read_text())
        assert {PROGRAM_NAME, "model-b1.pt2"} <= set(meta[HASHES_KEY]), meta[HASHES_KEY]
        clean = tmp_path / "clean"
        shutil.copytree(built["fp32"].directory, clean)
        with backend.load(Artifact.load(clean), threads=1):
            pass  # a copy made by this user on this machine loads

        tampered = tmp_path / "tampered"
        shutil.copytree(clean, tampered)
        art = Artifact.load(tampered)  # read before the package is changed under it
        pkg = tampered / "model-b1.pt2"
        data = bytearray(pkg.read_bytes())
        data[len(data) // 2] ^= 0xFF  # same size: only the hash can tell
        pkg.write_bytes(bytes(data))
        for loaded in (art, Artifact.load(tampered, verify=False)):
            with pytest.raises(ArtifactError) as err:
                backend.load(loaded, threads=1)
            assert "modified after it was built (model-b1.pt2)" in str(err.value)
            assert "\n" not in str(err.value)

        planted = tmp_path / "planted"  # a package nobody signed, beside a signed artifact
        shutil.copytree(clean, planted)
        shutil.copy(planted / "model-b1.pt2", planted / "model-b2.pt2")
        with pytest.raises(ArtifactError, match=r"model-b2\.pt2, which was not signed") as err:
            backend.load(Artifact.load(planted), threads=1)
        assert "\n" not in str(err.value)

        # built under another user's key: refused before anything is loaded or compiled
        monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "other-user"))
        for action in (
            lambda: backend.load(Artifact.load(clean), threads=1),
            lambda: backend.specialize(Artifact.load(clean), [2]),
        ):
            with pytest.raises(ArtifactError, match="not built by this user") as err:
                action()
            assert "\n" not in str(err.value)
        assert not (clean / "model-b2.pt2").exists()

    def test_run_rejects_wrong_shape(self, backend: Backend, built: dict[str, Artifact]) -> None:
        with (
            backend.load(built["fp32"], threads=1) as sess,
            pytest.raises(ValidationError, match="shape"),
        ):
            sess.run(np.zeros((1, 3, 16, 16), np.float32))

    def test_corrupt_package_is_an_artifact_error(
        self, backend: Backend, built: dict[str, Artifact], tmp_path: Path
    ) -> None:
        copy = tmp_path / "broken"
        backend.specialize(built["fp32"], [1])
        shutil.copytree(built["fp32"].directory, copy)
        pkg = copy / "model-b1.pt2"
        pkg.write_bytes(
            pkg.read_bytes()[: pkg.stat().st_size // 3]
        )  # truncated download / disk full
        with pytest.raises(ArtifactError, match="rebuild"):
            backend.load(Artifact.load(copy), threads=1)
        empty = tmp_path / "empty"
        empty.mkdir()
        missing = Artifact(
            path=empty / PROGRAM_NAME,
            backend="pytorch",
            model="m",
            scheme=get_scheme("fp32"),
            metadata={"input_shape": [3, 8, 8]},
        )
        with pytest.raises(ArtifactError, match="rebuild"):
            backend.load(missing, threads=1)


# --- fast checks that build no package ------------------------------------------------------
@pytest.fixture(scope="module")
def backend() -> Backend:
    be = get_backend("pytorch")
    if not be.available():
        pytest.skip(f"pytorch unavailable: {be.unavailable_reason()}")
    return be


def test_unavailable_contract(backend: Backend) -> None:
    assert_unavailable_raises(backend)
    assert backend.versions().keys() >= {"torch", "torchao"}


def test_missing_calibration(backend: Backend, tiny_model: Model, tmp_path: Path) -> None:
    # NaN / wrong shape / empty calibration: the shared contract tests them
    with pytest.raises(ValidationError, match="empty"):
        backend.prepare(tiny_model, get_scheme("w8a8"), None, tmp_path)


def test_uncompiled_int8_artifact_claims_no_unlowered_convs(
    backend: Backend, tiny_model: Model, tiny_calibration: np.ndarray, tmp_path: Path
) -> None:
    art = backend.prepare(tiny_model, get_scheme("w8a8"), tiny_calibration, tmp_path)
    assert not PyTorchBackend.packages(art)
    notes = backend.inspect(art).notes
    assert any("no AOTInductor package compiled yet" in n for n in notes), notes
    # without kernel counts nothing is known about lowering: no "not lowered" claim
    assert not any("not lowered" in n for n in notes), notes
    assert art.metadata["cpu_profile"]["int8_class"]
    assert art.metadata["quantizer"]["bias_correction"]


def test_kernel_notes_on_fixed_counts() -> None:
    ops = [{"op_type": t, "precision": "int8"} for t in ("Conv", "DepthwiseConv", "Linear")]
    assert kernel_notes(ops, {}, quantized=True) == [
        "no AOTInductor package compiled yet: kernel counts appear after the first run"
    ]
    lowered = kernel_notes(ops, {"int8_conv": 2, "int8_linear": 1}, quantized=True)
    assert lowered == ["compiled kernels: 2 int8 conv, 0 float conv, 1 int8 linear, 0 float linear"]
    short = kernel_notes(ops, {"int8_conv": 1, "float_conv": 1}, quantized=True)
    assert short[1].startswith("1 quantized conv(s) were not lowered")
    assert len(kernel_notes(ops, {"float_conv": 2}, quantized=False)) == 1


def test_unsupported_scheme_fails_before_work(
    backend: Backend, tiny_model: Model, tmp_path: Path
) -> None:
    with pytest.raises(UnsupportedError, match="w4a8"):
        backend.prepare(tiny_model, get_scheme("w4a8"), tiny_inputs(tiny_model, 4), tmp_path)
    assert not (tmp_path / PROGRAM_NAME).exists()
    onnx_only = Model(
        name="user",
        family="onnx",
        input_spec=tiny_model.input_spec,
        num_classes=10,
        onnx_path=tmp_path / "m.onnx",
    )
    assert "ONNX" in (backend.supports(get_scheme("fp32"), onnx_only) or "")


def test_custom_calibration_methods(backend: Backend, tiny_model: Model) -> None:
    assert (
        backend.supports(
            get_scheme({"base": "w8a8", "name": "w8a8-mm", "calibration": {"method": "minmax"}}),
            tiny_model,
        )
        is None
    )
    reason = backend.supports(
        get_scheme({"base": "w8a8", "name": "w8a8-ent", "calibration": {"method": "entropy"}}),
        tiny_model,
    )
    assert reason and "observer" in reason


class _DataDependent(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # control flow on values: torch.export rejects it
            return x.mean((2, 3))
        return x.amax((2, 3))


def test_export_rejection_is_one_line_model_error(
    backend: Backend, tiny_model: Model, tmp_path: Path
) -> None:
    bad = Model(
        name="datadep",
        family="test",
        input_spec=tiny_model.input_spec,
        num_classes=3,
        module=_DataDependent().eval(),
    )
    with pytest.raises(ModelError, match="could not export") as err:
        backend.prepare(bad, get_scheme("fp32"), None, tmp_path)
    assert "\n" not in str(err.value)


def test_scheme_mapping_numerics(tiny_model: Model, tiny_calibration: np.ndarray) -> None:
    """w8a8-pt shares one weight scale per conv; w8a8-sym activations have the zero point 127."""
    assert tiny_model.module is not None
    example = torch.from_numpy(tiny_calibration[:2])
    dyn = ({0: torch.export.Dim("batch", min=1, max=64)},)
    per_tensor, opts = quantize_pt2e(
        tiny_model.module, get_scheme("w8a8-pt"), tiny_calibration, example, dyn
    )
    assert opts["calibration_samples"] == len(tiny_calibration)
    scales = [t for k, t in per_tensor.named_buffers() if k.startswith("_scale")]
    assert scales and all(torch.all(s == s[0]) for s in scales)
    per_channel, _ = quantize_pt2e(
        tiny_model.module, get_scheme("w8a8"), tiny_calibration, example, dyn
    )
    pc_scales = [t for k, t in per_channel.named_buffers() if k.startswith("_scale")]
    assert any(not torch.all(s == s[0]) for s in pc_scales)
    sym, sym_opts = quantize_pt2e(
        tiny_model.module, get_scheme("w8a8-sym"), tiny_calibration, example, dyn
    )
    act_zps = {
        int(n.args[2])
        for n in sym.graph.nodes
        if n.op == "call_function" and str(n.target).endswith("quantize_per_tensor.default")
    }
    assert act_zps == {127}
    assert "-127..127" in sym_opts["activation_encoding"]


def test_count_kernels_and_bytes() -> None:
    src = (
        "aoti_torch_cpu__qconv_pointwise_tensor(buf0); aoti_torch_cpu__qconv2d_pointwise_binary_tensor(b);"
        " aoti_torch_cpu_convolution(x); aoti_torch_cpu__qlinear_pointwise_tensor(y);"
    )
    assert count_kernels([src]) == {
        "int8_conv": 2,
        "int8_linear": 1,
        "float_conv": 1,
        "float_linear": 0,
    }
    t = torch.zeros(8, dtype=torch.int8)
    assert tensor_bytes([t, t, torch.zeros(3)]) == 8 + 12


def _drop_package(directory: Path, name: str) -> None:
    """Leave the artifact as if ``name`` had never been compiled (unlisted, re-signed here)."""
    art = Artifact.load(directory)
    (directory / name).unlink()
    art.metadata["extra_files"] = [n for n in art.metadata.get("extra_files", []) if n != name]
    art.save_metadata()


class _SmallNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.c2(torch.relu(self.c1(x))))
        return self.fc(x.mean((2, 3)))


def test_pt2_source_w8a8_quantizes_the_programs_convs(backend: Backend, tmp_path: Path) -> None:
    """A .pt2 program's convs get int8 kernels like a zoo model's (through the wrapper: 0/2)."""
    torch.manual_seed(0)
    net = _SmallNet().eval()
    path = tmp_path / "net.pt2"
    dyn = ({0: torch.export.Dim("batch", min=1, max=64)},)
    program = torch.export.export(net, (torch.zeros(2, 3, 16, 16),), dynamic_shapes=dyn)
    torch.export.save(program, path)
    rng = np.random.default_rng(3)
    calib = rng.standard_normal((32, 3, 16, 16)).astype(np.float32)
    art = backend.prepare(load_pt2(path), get_scheme("w8a8"), calib, tmp_path / "art")
    convs = backend.inspect(art).convs
    assert [c.precision for c in convs] == ["int8", "int8"], convs
    x = rng.standard_normal((4, 3, 16, 16)).astype(np.float32)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    with backend.load(art, threads=1) as sess:
        out = sess.run(x)
    notes = backend.inspect(art).notes
    assert any(n.startswith("compiled kernels: 2 int8 conv, 0 float conv") for n in notes), notes
    cos = (out * ref).sum(1) / (np.linalg.norm(out, axis=1) * np.linalg.norm(ref, axis=1))
    assert cos.min() > 0.99, cos
    assert np.abs(out - ref).max() < 0.1 * np.abs(ref).max()


class _FlattenNet(_SmallNet):
    """``view(x.size(0), -1)``: exported at batch 1 the program holds ``[1, -1]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.c2(torch.relu(self.c1(x))))
        return self.fc(x.mean(3).view(x.size(0), -1)[:, :8])


def test_static_batch_pt2_w8a8_is_re_exported_with_a_dynamic_batch(
    backend: Backend, tmp_path: Path
) -> None:
    """torch.export's default (a static batch of 1) quantizes on PyTorch and serves batch 4."""
    torch.manual_seed(0)
    net = _FlattenNet().eval()
    path = tmp_path / "static.pt2"
    torch.export.save(torch.export.export(net, (torch.zeros(1, 3, 16, 16),)), path)
    rng = np.random.default_rng(4)
    calib = rng.standard_normal((16, 3, 16, 16)).astype(np.float32)
    art = backend.prepare(load_pt2(path), get_scheme("w8a8"), calib, tmp_path / "art")
    assert [c.precision for c in backend.inspect(art).convs] == ["int8", "int8"]
    x = rng.standard_normal((4, 3, 16, 16)).astype(np.float32)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    with backend.load(art, threads=1) as sess:
        out = sess.run(x)
    assert out.shape == ref.shape == (4, 5)
    assert np.abs(out - ref).max() < 0.1 * np.abs(ref).max()


class _BakedBatchNet(_SmallNet):
    """A reshape whose first size is not the batch (``[2 * b, -1]``): nothing can free it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.c2(torch.relu(self.c1(x))))
        return self.fc(x.reshape(2, -1).mean(1, keepdim=True).expand(2, 8))


def test_static_batch_pt2_that_holds_its_batch_says_how_to_export_it(tmp_path: Path) -> None:
    """A program still tied to its exported batch cannot be re-exported: one clear line."""
    path = tmp_path / "static.pt2"
    net = _BakedBatchNet().eval()
    torch.export.save(torch.export.export(net, (torch.zeros(1, 3, 16, 16),)), path)
    calib = np.random.default_rng(4).standard_normal((4, 3, 16, 16)).astype(np.float32)
    dyn = ({0: torch.export.Dim("batch", min=1, max=64)},)
    module = load_pt2(path).module
    assert module is not None
    with pytest.raises(UnsupportedError, match=r"static batch of 1.*Dim") as err:
        quantize_pt2e(module, get_scheme("w8a8"), calib, torch.from_numpy(calib[:2]), dyn)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("scheme", ["fp32", "w8a8"])
def test_static_batch_pt2_that_holds_its_batch_fails_the_build_in_one_line(
    backend: Backend, scheme: str, tmp_path: Path
) -> None:
    """Through the backend, fp32 and w8a8 alike: the export advice, not torch's trace dump."""
    path = tmp_path / "static.pt2"
    torch.export.save(
        torch.export.export(_BakedBatchNet().eval(), (torch.zeros(1, 3, 16, 16),)), path
    )
    calib = np.random.default_rng(4).standard_normal((4, 3, 16, 16)).astype(np.float32)
    with pytest.raises(UnsupportedError, match=r"static batch of 1.*dynamic_shapes") as err:
        backend.prepare(load_pt2(path), get_scheme(scheme), calib, tmp_path / "art")
    assert "\n" not in str(err.value)
