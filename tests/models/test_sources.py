"""Model sources beyond the zoo, with tiny models the tests build: .pt2, module:factory,
.tflite (float, NHWC, several outputs), OpenVINO IR, old-opset and dense-output ONNX, and the
bad-model messages (two inputs, wrong rank, missing .bin, pickles, files that are not what their
suffix says)."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from edgequant.errors import ModelError
from edgequant.models import load_model


class Net(nn.Module):
    def __init__(self, classes: int = 5, nhwc: bool = False, two_out: bool = False) -> None:
        super().__init__()
        self.nhwc, self.two_out = nhwc, two_out
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.nhwc:
            x = x.permute(0, 3, 1, 2)
        y = self.fc(torch.relu(self.conv(x)).mean((2, 3)))
        return (y, y.sum(1, keepdim=True)) if self.two_out else y


class TwoInputs(nn.Module):
    def forward(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return (x * m).mean((2, 3))


def _pt2(tmp_path: Path, module: nn.Module, *example: torch.Tensor, name: str = "net") -> Path:
    torch.manual_seed(0)
    path = tmp_path / f"{name}.pt2"
    torch.export.save(torch.export.export(module.eval(), tuple(example)), str(path))
    return path


# --------------------------------------------------------------------------- .pt2


def test_pt2_loads_as_a_torch_model_with_the_programs_shape(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = Net().eval()
    path = _pt2(tmp_path, net, torch.zeros(1, 3, 12, 12))
    m = load_model(path)
    assert (m.source_format, m.input_spec.shape, m.num_classes) == ("pt2", (3, 12, 12), 5)
    x = torch.randn(2, 3, 12, 12)
    assert m.module is not None
    torch.testing.assert_close(m.module(x), net(x))
    assert m.info["preprocessing_assumed"] is True


class BnViewNet(nn.Module):
    """conv → BN → ReLU → pool → ``view(x.size(0), -1)`` → linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 2 * 2, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(torch.relu(self.bn(self.conv(x))), 2)
        return self.fc(x.view(x.size(0), -1))


@pytest.mark.parametrize("batch", [1, 2])
def test_static_batch_pt2_has_nn_layers_traces_and_runs_any_batch(
    tmp_path: Path, batch: int
) -> None:
    """A program exported at a fixed batch (no dynamic_shapes): its aten conv / BN / linear are
    nn modules (BN folding and bias correction need them), torch.fx traces the wrapper, and a
    batch of 5 runs (in chunks of the exported batch, padded) like the eager net."""
    from edgequant.quant.bn_fold import fold_batchnorm
    from edgequant.quant.graph import trace

    torch.manual_seed(0)
    net = BnViewNet().eval()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-0.2, 0.2)
        net.bn.running_var.uniform_(0.5, 1.5)
    m = load_model(_pt2(tmp_path, net, torch.zeros(batch, 3, 8, 8)))
    module = m.module
    assert module is not None
    kinds = {type(c).__name__ for _, c in module.named_modules()}
    assert {"Conv2d", "BatchNorm2d", "Linear"} <= kinds, kinds
    trace(module)
    x = torch.randn(5, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(module(x), net(x))
        folded, pairs = fold_batchnorm(module)
        assert pairs == [("program.conv", "program.bn")]
        torch.testing.assert_close(folded(x), net(x), atol=1e-5, rtol=1e-5)
    if batch == 1:  # the view baked [1, -1]: the program itself now serves another batch
        assert tuple(module.program(x).shape) == (5, 5)  # type: ignore[operator]


def test_pt2_two_inputs_and_wrong_rank_are_named(tmp_path: Path) -> None:
    two = _pt2(tmp_path, TwoInputs(), torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4), name="two")
    with pytest.raises(ModelError, match=r"takes 2 inputs; edgequant runs models with one image"):
        load_model(two)
    flat = _pt2(tmp_path, nn.Linear(6, 2), torch.zeros(1, 6), name="flat")
    with pytest.raises(ModelError, match=r"shape \[1, 6\] \(rank 2\).*one 4-D image input"):
        load_model(flat)


def test_a_pickle_named_pt2_is_refused_without_running_it(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt2"
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ModelError, match=r"looks like a Python pickle.*not a .pt2 program"):
        load_model(path)
    text = tmp_path / "notes.pt2"
    text.write_text("hello")
    with pytest.raises(ModelError, match=r"cannot read program .*notes.pt2"):
        load_model(text)


# --------------------------------------------------------------------------- module:factory


@pytest.fixture
def factory_pkg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "eq_user_nets.py").write_text(
        "import torch.nn as nn\n"
        "def build():\n"
        "    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),"
        " nn.Linear(4, 7))\n"
        "def not_a_module():\n"
        "    return 42\n"
        "def broken():\n"
        "    raise RuntimeError('no GPU found')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("eq_user_nets", None)


def test_factory_entry_point_with_and_without_weights(factory_pkg: Path) -> None:
    m = load_model("eq_user_nets:build", input_options={"input_shape": "1,3,16,16"})
    assert (m.source_format, m.num_classes, m.input_spec.shape) == ("factory", 7, (3, 16, 16))
    assert m.module is not None
    state = {k: torch.full_like(v, 0.5) for k, v in m.module.state_dict().items()}
    weights = factory_pkg / "w.pth"
    torch.save(state, weights)
    w = load_model("eq_user_nets:build", weights=weights, input_options={"input_shape": "3,16,16"})
    assert w.module is not None and float(w.module[0].weight.mean()) == 0.5
    assert w.weights_hash != m.weights_hash and w.key != m.key


def test_factory_errors_are_one_line_each(factory_pkg: Path) -> None:
    with pytest.raises(ModelError, match=r"returned a int, not a torch.nn.Module"):
        load_model("eq_user_nets:not_a_module")
    with pytest.raises(ModelError, match=r"calling broken\(\) failed: .*no GPU found"):
        load_model("eq_user_nets:broken")
    with pytest.raises(ModelError, match=r"has no attribute 'nope'"):
        load_model("eq_user_nets:nope")
    with pytest.raises(ModelError, match=r"cannot import eq_missing_pkg"):
        load_model("eq_missing_pkg.nets:build")


# --------------------------------------------------------------------------- .tflite


def _tflite(tmp_path: Path, module: nn.Module, shape: tuple[int, ...], name: str) -> Path:
    litert_torch = pytest.importorskip("litert_torch")
    torch.manual_seed(0)
    edge = litert_torch.convert(module.eval(), (torch.zeros(shape),))
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(bytes(edge.model_content()))
    return path


@pytest.fixture(scope="module")
def tflite_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("tflite")
    _tflite(d, Net(nhwc=True), (1, 10, 10, 3), "nhwc")
    _tflite(d, Net(nhwc=True, two_out=True), (1, 10, 10, 3), "two_out")
    return d


def test_float_tflite_nhwc_is_read_from_the_file(tflite_dir: Path) -> None:
    m = load_model(tflite_dir / "nhwc.tflite")
    assert (m.source_format, m.input_spec.layout, m.input_spec.shape) == (
        ".tflite",
        "NHWC",
        (3, 10, 10),
    )
    assert m.module is None and m.source_path is not None and m.num_classes == 5
    assert m.info["quantized"] is False


def test_several_output_tflite_keeps_the_first(
    tflite_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGEQUANT_CACHE", str(tmp_path))
    from ai_edge_litert.interpreter import Interpreter

    m = load_model(tflite_dir / "two_out.tflite")
    assert len(m.info["outputs_dropped"]) == 1
    it = Interpreter(model_path=str(m.source_path))
    assert len(it.get_output_details()) == 1 and it.get_signature_list()
    orig = Interpreter(model_path=str(tflite_dir / "two_out.tflite"))
    x = np.random.default_rng(0).standard_normal((1, 10, 10, 3)).astype(np.float32)
    outs = []
    for interp in (orig, it):
        interp.allocate_tensors()
        interp.set_tensor(interp.get_input_details()[0]["index"], x)
        interp.invoke()
        outs.append(interp.get_tensor(interp.get_output_details()[0]["index"]))
    np.testing.assert_array_equal(*outs)


def test_files_that_are_not_what_their_suffix_says(tmp_path: Path) -> None:
    fake = tmp_path / "model.tflite"
    fake.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(ModelError, match=r"cannot read TFLite model .* looks like a Python pickle"):
        load_model(fake)
    xml = tmp_path / "model.xml"
    xml.write_bytes(b"PK\x03\x04 zip")
    with pytest.raises(ModelError, match=r"cannot read IR model .* looks like a zip archive"):
        load_model(xml)


# --------------------------------------------------------------------------- OpenVINO IR


def test_ir_with_and_without_its_bin(tmp_path: Path) -> None:
    ov = pytest.importorskip("openvino")
    torch.manual_seed(0)
    ir = ov.convert_model(Net().eval(), example_input=torch.zeros(1, 3, 8, 8))
    xml = tmp_path / "net.xml"
    ov.save_model(ir, str(xml))
    with pytest.raises(
        ModelError, match=r"dynamic H \(shape \[-1, 3, -1, -1\]\); give it with --input-shape"
    ):
        load_model(xml)
    m = load_model(xml, input_options={"input_shape": "1,3,8,8"})
    assert (m.source_format, m.input_spec.shape, m.num_classes) == ("ir", (3, 8, 8), 5)
    xml.with_suffix(".bin").unlink()
    with pytest.raises(ModelError, match=r"keeps its weights in net.bin, which is not in"):
        load_model(xml)


# --------------------------------------------------------------------------- ONNX


def _onnx(path: Path, opset: int, out_dims: list[object]) -> Path:
    from onnx import TensorProto, helper, numpy_helper, save

    w = numpy_helper.from_array(
        np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32), "w"
    )
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_dims)],
        initializer=[w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    save(model, str(path))
    return path


def test_old_opset_is_upgraded_and_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("EDGEQUANT_CACHE", str(tmp_path / "cache"))
    src = _onnx(tmp_path / "old.onnx", 11, ["n", 4, "h", "w"])
    m = load_model(src, input_options={"input_shape": "1,3,16,16"})
    up = m.info["onnx_upgraded_from"]
    assert (up["opset"], up["to"], m.info["opset"]) == (11, 13, 13)
    assert up["check"]["cosine_min"] > 0.99999 and up["check"]["max_abs_error"] < 1e-5
    import onnx

    assert Path(m.onnx_path).is_file() and onnx.load(str(m.onnx_path)).opset_import[0].version == 13
    # a dense output sized by the input: probed at the given shape
    assert m.info["output_shape"] == [4, 16, 16] and m.num_classes == 16
    assert Path(str(src)).read_bytes()  # the user's file is untouched
