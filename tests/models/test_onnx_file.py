"""A user's ONNX file: external data, several inputs, a file that is not what its suffix says."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from edgequant.errors import ModelError
from edgequant.models import load_model

onnx = pytest.importorskip("onnx")


def _model(n_inputs: int = 1) -> object:
    from onnx import TensorProto, helper, numpy_helper

    fc = numpy_helper.from_array(np.ones((5, 3), np.float32), "fc")
    nodes = [
        helper.make_node("GlobalAveragePool", ["x"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fc"], ["y"], transB=1),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])]
    if n_inputs == 2:
        inputs.append(helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 1, 8, 8]))
    graph = helper.make_graph(
        nodes,
        "g",
        inputs,
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])],
        initializer=[fc],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _external(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "ext.onnx"
    onnx.save(
        _model(), str(path), save_as_external_data=True, location="ext.data", size_threshold=0
    )
    return path


def test_external_data_loads_from_any_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # issue 16: a valid .onnx with its .data file was rejected unless run from its folder
    path = _external(tmp_path / "models")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    m = load_model(path)
    assert m.input_spec.shape == (3, 8, 8) and m.num_classes == 5


def test_external_data_is_part_of_the_weights_hash(tmp_path: Path) -> None:
    # issue 16: changing only the .data file reused a stale artifact (the key hashed the .onnx)
    path = _external(tmp_path / "m")
    before = load_model(path)
    data = tmp_path / "m" / "ext.data"
    raw = bytearray(data.read_bytes())
    raw[0] ^= 0xFF  # same size, other weights
    data.write_bytes(bytes(raw))
    after = load_model(path)
    assert after.weights_hash != before.weights_hash and after.key != before.key


def test_missing_external_data_is_named(tmp_path: Path) -> None:
    path = _external(tmp_path / "m")
    (tmp_path / "m" / "ext.data").unlink()
    with pytest.raises(ModelError, match=r"keeps its weights in ext\.data, which is not in"):
        load_model(path)


def test_two_inputs_are_named(tmp_path: Path) -> None:
    path = tmp_path / "two.onnx"
    onnx.save(_model(n_inputs=2), str(path))
    with pytest.raises(ModelError, match=r"has 2 inputs \('x', 'mask'\); .*one image input"):
        load_model(path)


@pytest.mark.parametrize(
    ("content", "looks"),
    [
        (b"PK\x03\x04" + b"\x00" * 40, "a zip archive"),
        (b"\x1c\x00\x00\x00TFL3" + b"\x00" * 40, "a TFLite model"),
        (pickle.dumps({"a": 1}), "a Python pickle"),
        (b'<?xml version="1.0"?>\n<net name="x">', "XML \\(an OpenVINO IR"),
    ],
)
def test_file_that_is_not_what_its_suffix_says(tmp_path: Path, content: bytes, looks: str) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    with pytest.raises(
        ModelError, match=rf"cannot read ONNX model .*model\.onnx: .*looks like {looks}"
    ):
        load_model(path)
