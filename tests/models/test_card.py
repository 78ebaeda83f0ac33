"""Model cards and input options for a user's model (issue 14), built on tiny ONNX files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgequant.errors import ModelError
from edgequant.models import load_model
from edgequant.models.card import find_card, read_card

onnx = pytest.importorskip("onnx")


def _onnx(path: Path, dims: list[int | str], classes: int = 5) -> Path:
    """An identity-ish classifier: GlobalAveragePool over the given 4-D input, then Flatten+Gemm."""
    from onnx import TensorProto, helper, numpy_helper

    nhwc = isinstance(dims[-1], int) and dims[-1] in (1, 3) and dims[1] not in (1, 3)
    c = dims[-1] if nhwc else dims[1]
    assert isinstance(c, int)
    fc = numpy_helper.from_array(np.ones((classes, c), np.float32), "fc")
    nodes = []
    src = "x"
    if nhwc:
        nodes.append(helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]))
        src = "t"
    nodes += [
        helper.make_node("GlobalAveragePool", [src], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fc"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [dims[0], classes])],
        initializer=[fc],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)]), str(path))
    return path


def test_dynamic_spatial_dims_need_a_shape_and_take_it_from_the_card(tmp_path: Path) -> None:
    # a third-party export: [-1, 3, '?', '?'] used to stop every backend with no way out
    path = _onnx(tmp_path / "cls.onnx", ["batch", 3, "h", "w"])
    with pytest.raises(
        ModelError, match=r"static C, H, W.*--input-shape N,C,H,W or in a model card"
    ):
        load_model(path)
    m = load_model(path, input_options={"input_shape": "1,3,96,112"})
    assert m.input_spec.shape == (3, 96, 112) and m.info["dynamic_dims_resolved"] == [2, 3]
    (tmp_path / "cls.yaml").write_text(
        "name: third-party-cls\nnum_classes: 5\n"
        "input:\n  shape: [1, 3, 128, 128]\n  mean: [0.5, 0.5, 0.5]\n  std: [0.5, 0.5, 0.5]\n"
        "  units: 0-1\n  color: BGR\n  resize: 146\n"
    )
    m = load_model(path)
    spec = m.input_spec
    assert m.name == "third-party-cls" and m.info["model_card"] == str(tmp_path / "cls.yaml")
    assert spec.shape == (3, 128, 128) and spec.mean == (127.5,) * 3 and spec.color == "BGR"
    assert spec.resize == 146 and m.info["preprocessing_assumed"] is False
    # the command line wins over the card
    m2 = load_model(path, input_options={"input_shape": "1,3,64,64", "color": "RGB"})
    assert m2.input_spec.shape == (3, 64, 64) and m2.input_spec.color == "RGB"
    assert m2.input_spec.mean == (127.5,) * 3
    assert m2.key != m.key  # another input spec builds another artifact


def test_nhwc_onnx_with_layout(tmp_path: Path) -> None:
    path = _onnx(tmp_path / "nhwc.onnx", [1, 32, 32, 3])
    with pytest.raises(ModelError, match=r"NCHW.*--layout NHWC"):
        load_model(path)
    m = load_model(path, input_options={"layout": "NHWC"})
    assert m.input_spec.shape == (3, 32, 32) and m.input_spec.tensor_shape == (32, 32, 3)


def test_shape_contradicting_the_graph(tmp_path: Path) -> None:
    path = _onnx(tmp_path / "s.onnx", [1, 3, 32, 32])
    with pytest.raises(ModelError, match=r"has H = 32 .*says 64; drop or fix --input-shape"):
        load_model(path, input_options={"input_shape": "1,3,64,32"})


def test_card_num_classes_must_match(tmp_path: Path) -> None:
    path = _onnx(tmp_path / "m.onnx", [1, 3, 8, 8], classes=5)
    (tmp_path / "model-card.yaml").write_text("num_classes: 1000\n")
    with pytest.raises(
        ModelError, match=r"model-card\.yaml says num_classes 1000, but m outputs 5"
    ):
        load_model(path)


def test_zoo_model_with_input_options() -> None:
    base = load_model("digits_cnn")
    m = load_model("digits_cnn", input_options={"resize": 40})
    assert m.input_spec.resize == 40 and m.input_spec.shape == base.input_spec.shape
    assert m.key != base.key and m.weights_hash == base.weights_hash
    with pytest.raises(ModelError, match=r"digits_cnn: --mean needs 1 value, got 2"):
        load_model("digits_cnn", input_options={"mean": "1,2"})


def test_find_card_order(tmp_path: Path) -> None:
    model = tmp_path / "net.onnx"
    assert find_card(model) is None
    (tmp_path / "model-card.yaml").write_text("{}\n")
    assert find_card(model) == tmp_path / "model-card.yaml"
    (tmp_path / "net.onnx.yaml").write_text("{}\n")
    assert find_card(model) == tmp_path / "net.onnx.yaml"
    (tmp_path / "net.yaml").write_text("{}\n")
    assert find_card(model) == tmp_path / "net.yaml"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("a: &x [1, 2]\nb: *x\n", r"card\.yaml:1: anchors and aliases"),
        ("description: " + "[" * 20 + "]" * 20 + "\n", "nested more than 8 levels"),
        ("input: [1, 2\n", r"card\.yaml:2: not valid YAML"),
        ("- 1\n- 2\n", "must be a mapping"),
        ("nmae: x\n", r"unknown key\(s\) \['nmae'\]"),
        ("input:\n  mean_: 1\n", r"unknown input key\(s\) \['mean_'\]"),
        ("input: 3\n", "'input' must be a mapping"),
        ("edgequant: model-card/9\n", "is not 'model-card/1'"),
        ("num_classes: 0\n", "num_classes must be a whole number"),
        ("num_classes: yes\n", "num_classes must be a whole number"),
        ("input:\n  shape: 1,3,x,8\n", r"card\.yaml: --input-shape .*'x' is not a whole number"),
        ("input:\n  std: 0.2\n", r"card\.yaml: .*--units 0-1"),
    ],
)
def test_card_errors_name_the_file(tmp_path: Path, text: str, match: str) -> None:
    card = tmp_path / "card.yaml"
    card.write_text(text)
    with pytest.raises(ModelError, match=match):
        read_card(card)


def test_card_alias_bomb_is_refused_fast(tmp_path: Path) -> None:
    # the billion-laughs shape under description: (issue 16 saw 62 s and 3.4 GB from 501 bytes)
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(
            f"{cur}: &{cur} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]"
        )
    card = tmp_path / "bomb.yaml"
    card.write_text("description:\n" + "\n".join("  " + ln for ln in lines) + "\n")
    assert card.stat().st_size < 1000
    with pytest.raises(ModelError, match="anchors and aliases"):
        read_card(card)


def test_card_size_and_encoding(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("description: " + "x" * 70_000 + "\n")
    with pytest.raises(ModelError, match="at most 65536"):
        read_card(big)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"description: caf\xe9\n")
    with pytest.raises(ModelError, match=r"latin\.yaml is not UTF-8 text \(byte 16\)"):
        read_card(latin)
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ModelError, match="does not exist"):
        load_model(_onnx(tmp_path / "n.onnx", [1, 3, 8, 8]), card=missing)
