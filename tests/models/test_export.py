"""ONNX export: names, dynamic batch, one file, user files, converter errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edgequant.errors import ModelError
from edgequant.models.base import Model
from edgequant.models.export import (
    INPUT_NAME,
    OUTPUT_NAME,
    condense_error,
    export_onnx,
    onnx_weight_bytes,
)
from tests.helpers import tiny_inputs

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def test_export_names_dynamic_batch_single_file(tiny_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = export_onnx(tiny_model, tmp_path / "m.onnx")
    assert path.is_file() and sorted(p.name for p in tmp_path.iterdir()) == [
        "m.onnx"
    ]  # no external data
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == [INPUT_NAME]
    assert [o.name for o in graph.output] == [OUTPUT_NAME]
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch
    # BatchNorm was folded by the exporter: no BN op is left for the quantizers to trip on
    assert "BatchNormalization" not in {n.op_type for n in graph.node}
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = tiny_inputs(tiny_model, 3, seed=3)
    with torch.no_grad():
        ref = tiny_model.module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(sess.run(None, {INPUT_NAME: x})[0], ref, rtol=1e-4, atol=1e-5)


def test_static_batch(tiny_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = export_onnx(tiny_model, tmp_path / "m.onnx", dynamic_batch=False)
    assert onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1


def test_weight_bytes_counts_initializers(tiny_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = export_onnx(tiny_model, tmp_path / "m.onnx")
    params = sum(p.numel() for p in tiny_model.module.parameters() if p.requires_grad)
    bn_params = sum(
        m.weight.numel() + m.bias.numel()
        for m in tiny_model.module.modules()
        if isinstance(m, torch.nn.BatchNorm2d)
    )
    # BN folds into the conv weights + new conv biases: fp32 bytes between the two counts
    got = onnx_weight_bytes(path)
    assert 4 * (params - bn_params) <= got <= 4 * params
    assert got <= path.stat().st_size


def test_user_onnx_is_copied(tiny_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = export_onnx(tiny_model, tmp_path / "src.onnx")
    user = Model(
        name="u", family="onnx", input_spec=tiny_model.input_spec, num_classes=10, onnx_path=src
    )
    out = export_onnx(user, tmp_path / "sub" / "copy.onnx")
    assert out.read_bytes() == src.read_bytes()


def test_nothing_to_export(tiny_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    empty = Model(name="e", family="x", input_spec=tiny_model.input_spec, num_classes=10)
    with pytest.raises(ModelError, match="neither"):
        export_onnx(empty, tmp_path / "e.onnx")
    missing = Model(
        name="m",
        family="x",
        input_spec=tiny_model.input_spec,
        num_classes=10,
        onnx_path=tmp_path / "nope.onnx",
    )
    with pytest.raises(ModelError, match="does not exist"):
        export_onnx(missing, tmp_path / "m.onnx")


def test_condense_error_picks_the_cause() -> None:
    e = RuntimeError(
        'Traceback (most recent call last):\n  File "x.py", line 3\n    foo()\n'
        "Unsupported operator aten::eig in opset 17\nsee the docs\n"
    )
    assert condense_error(e) == "RuntimeError: Unsupported operator aten::eig in opset 17"
    long = condense_error(ValueError("error " + "x" * 1000))
    assert len(long) <= 300 and "\n" not in long
    assert condense_error(KeyError()) == "KeyError"
