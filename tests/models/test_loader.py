"""load_model: zoo names, checkpoints (torchvision keys, wrappers, legacy keys), ONNX files, errors."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from edgequant.errors import ModelError, ValidationError
from edgequant.models import Model, load_model
from edgequant.models.loader import RANDOM_NOTE, state_dict_hash


@pytest.fixture(scope="module")
def trained_resnet18() -> dict[str, torch.Tensor]:
    """A resnet18 state_dict with non-default weights and BN statistics (as a checkpoint has)."""
    from edgequant.models.resnet import build_resnet18

    torch.manual_seed(123)
    net = build_resnet18()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
    return OrderedDict((k, v.clone()) for k, v in net.state_dict().items())


def _logits(model: Model, x: torch.Tensor) -> torch.Tensor:
    assert model.module is not None
    with torch.no_grad():
        return model.module(x)


def test_zoo_model_is_eval_fp32_with_random_weights_flagged() -> None:
    m = load_model("resnet18")
    assert m.module is not None and not m.module.training
    assert m.weights is None and not m.pretrained
    assert m.info["note"] == RANDOM_NOTE
    assert all(p.dtype == torch.float32 for p in m.module.parameters())
    # seeded: another process (or call) builds the same weights, so cache keys are honest
    assert load_model("resnet18").weights_hash == m.weights_hash
    assert m.key.startswith("resnet18-")


def test_name_is_forgiving_about_case_and_dashes() -> None:
    assert load_model("MobileNet-V2", pretrained=False).name == "mobilenet_v2"


def test_torchvision_state_dict_round_trip(tmp_path: Path, trained_resnet18: dict) -> None:
    path = tmp_path / "resnet18.pth"
    torch.save(trained_resnet18, path)
    m = load_model(path, arch="resnet18")
    assert m.weights == str(path) and m.pretrained
    assert m.weights_hash == state_dict_hash(trained_resnet18)
    # same outputs as the module the checkpoint came from
    from edgequant.models.resnet import build_resnet18

    ref = build_resnet18().eval()
    ref.load_state_dict(trained_resnet18)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = ref(x)
    assert torch.equal(_logits(m, x), expected)
    # --weights with a zoo name is the same thing
    m2 = load_model("resnet18", weights=path)
    assert m2.weights_hash == m.weights_hash


def test_checkpoint_wrappers_prefixes_and_old_bn_keys(
    tmp_path: Path, trained_resnet18: dict
) -> None:
    # DataParallel "module." keys inside a {"state_dict": ...} training checkpoint, saved before
    # BN had num_batches_tracked (torchvision's original checkpoints)
    sd = {f"module.{k}": v for k, v in trained_resnet18.items() if "num_batches_tracked" not in k}
    path = tmp_path / "ckpt.pt"
    torch.save({"epoch": 90, "state_dict": sd, "optimizer": {}}, path)
    m = load_model(path, arch="resnet18")
    x = torch.randn(1, 3, 32, 32)
    direct = tmp_path / "direct.pth"
    torch.save(trained_resnet18, direct)
    assert torch.equal(_logits(m, x), _logits(load_model(direct, arch="resnet18"), x))
    torch.save({"model": trained_resnet18}, tmp_path / "wrapped.pth")
    assert load_model(tmp_path / "wrapped.pth", arch="resnet18").weights_hash == state_dict_hash(
        trained_resnet18
    )


def test_fine_tuned_head_sets_num_classes(tmp_path: Path) -> None:
    from edgequant.models.mobilenet import build_mobilenet_v2

    torch.manual_seed(5)
    net = build_mobilenet_v2(num_classes=10)
    torch.save(net.state_dict(), tmp_path / "mv2_10.pth")
    m = load_model(tmp_path / "mv2_10.pth", arch="mobilenet_v2")
    assert m.num_classes == 10
    assert _logits(m, torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_num_classes_with_pretrained_reinitialises_only_the_head() -> None:
    m = load_model("efficientnet_lite0", num_classes=5)
    assert m.num_classes == 5 and m.pretrained
    assert m.info["reinitialised"] == ["_fc.weight", "_fc.bias"]
    full = load_model("efficientnet_lite0")
    assert m.module is not None and full.module is not None
    assert torch.equal(
        m.module.state_dict()["_conv_head.weight"], full.module.state_dict()["_conv_head.weight"]
    )


def test_densenet_old_torchvision_keys_are_remapped(tmp_path: Path) -> None:
    from edgequant.models.densenet import build_densenet121

    torch.manual_seed(7)
    net = build_densenet121().eval()
    old = {}
    for k, v in net.state_dict().items():
        for part in ("norm1", "norm2", "conv1", "conv2"):
            if "denselayer" in k and f".{part}." in k:
                k = k.replace(f".{part}.", f".{part[:-1]}.{part[-1]}.")
        old[k] = v
    assert "features.denseblock1.denselayer1.norm.1.weight" in old
    torch.save(old, tmp_path / "densenet121-old.pth")
    m = load_model(tmp_path / "densenet121-old.pth", arch="densenet121")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(_logits(m, x), net(x))


# ----------------------------------------------------------------------------- errors


def test_corrupt_weights_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(
        ModelError, match=r"cannot read weights .*broken\.pth.*is it a PyTorch state_dict"
    ):
        load_model(bad, arch="resnet18")


def test_pickled_object_is_refused_not_executed(tmp_path: Path) -> None:
    # weights_only=True: an arbitrary pickled object is an unreadable checkpoint, never run
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"fc.weight": torch.zeros(1)}, "cfg": Path("x")}, path)
    with pytest.raises(ModelError, match="cannot read weights"):
        load_model(path, arch="resnet18")


class _RunsCode:
    """Unpickling this calls a function: the shape of a malicious checkpoint (harmless here)."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("unpickled code ran",))


def test_checkpoint_with_code_is_refused_plainly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # issue 16: the refusal said PyTorch's "this file can still be loaded ... if you trust the
    # source" — advice to turn the safety off. Say plainly that the file holds code and is refused.
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"fc.weight": torch.zeros(1)}, "payload": _RunsCode()}, path)
    with pytest.raises(ModelError) as info:
        load_model(path, arch="resnet18")
    msg = str(info.value)
    assert "evil.pth" in msg and "holds code" in msg and "refuses it" in msg
    assert "it references print" in msg
    assert "trust" not in msg and "weights_only" not in msg and "can still be loaded" not in msg
    assert "\n" not in msg
    assert "unpickled code ran" not in capsys.readouterr().out


def test_not_a_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), path)
    with pytest.raises(ModelError, match="not a state_dict"):
        load_model(path, arch="resnet18")


def test_wrong_keys_are_named(tmp_path: Path, trained_resnet18: dict) -> None:
    sd = dict(trained_resnet18)
    sd.pop("fc.weight")
    sd.pop("fc.bias")
    sd["head.weight"] = torch.zeros(3)
    path = tmp_path / "renamed.pth"
    torch.save(sd, path)
    with pytest.raises(ModelError) as e:
        load_model(path, arch="resnet18")
    msg = str(e.value)
    assert "do not fit resnet18" in msg
    assert "2 missing keys (fc.weight, fc.bias)" in msg
    assert "1 unexpected key (head.weight)" in msg


def test_checkpoint_of_another_architecture(tmp_path: Path, trained_resnet18: dict) -> None:
    path = tmp_path / "r18.pth"
    torch.save(trained_resnet18, path)
    with pytest.raises(ModelError) as e:
        load_model(path, arch="resnet50")
    msg = str(e.value)
    assert "missing keys" in msg and "layer1.0.conv3.weight" in msg
    assert (
        "shape mismatch" in msg and "layer1.0.conv1.weight (64, 64, 3, 3) vs (64, 64, 1, 1)" in msg
    )


def test_pth_without_arch(tmp_path: Path, trained_resnet18: dict) -> None:
    path = tmp_path / "model.pth"
    torch.save(trained_resnet18, path)
    with pytest.raises(ModelError, match="pass --arch"):
        load_model(path)


def test_missing_weights_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        load_model("resnet18", weights=tmp_path / "nope.pth")


def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(ModelError, match=r"unknown model 'resnet5'.*did you mean resnet50"):
        load_model("resnet5")
    with pytest.raises(ModelError, match="did you mean efficientnet_lite"):
        load_model("efficientnet-lite", arch=None)


def test_arch_contradicting_name() -> None:
    with pytest.raises(ValidationError, match="contradicts"):
        load_model("resnet18", arch="vgg16")


# ----------------------------------------------------------------------------- ONNX


def _tiny_onnx(
    path: Path, *, channels: int = 3, size: int = 16, classes: int = 4, batch: int | str = "N"
) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((8, channels, 3, 3)).astype(np.float32), "w")
    fc = numpy_helper.from_array(rng.standard_normal((classes, 8)).astype(np.float32), "fc")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fc"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, channels, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])],
        initializer=[w, fc],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_onnx_model(tmp_path: Path) -> None:
    path = _tiny_onnx(tmp_path / "my_net.onnx", size=20, classes=6)
    m = load_model(path)
    assert m.module is None and m.onnx_path == path.resolve()
    assert m.name == "my_net" and m.family == "onnx"
    assert m.input_spec.shape == (3, 20, 20) and m.num_classes == 6
    assert m.info["preprocessing_assumed"] is True and m.info["dynamic_batch"] is True
    assert m.info["opset"] == 17
    assert len(m.weights_hash) == 40 and m.pretrained


def test_onnx_static_batch_and_grayscale(tmp_path: Path) -> None:
    m = load_model(_tiny_onnx(tmp_path / "g.onnx", channels=1, batch=1))
    assert m.input_spec.shape == (1, 16, 16) and m.input_spec.color == "L"
    assert m.info["dynamic_batch"] is False


def test_corrupt_onnx(tmp_path: Path) -> None:
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07garbage that is not a protobuf \xff\xfe")
    with pytest.raises(ModelError, match=r"cannot read ONNX model .*broken\.onnx"):
        load_model(bad)


def test_empty_onnx_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ModelError, match="ONNX model"):
        load_model(empty)


def test_onnx_with_nhwc_input(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "nhwc",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 224, 224, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 224, 224, 3])],
    )
    path = tmp_path / "nhwc.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(ModelError, match="NCHW"):
        load_model(path)


def test_missing_onnx_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tmp_path / "absent.onnx")
