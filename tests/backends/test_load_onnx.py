"""``Backend.load_onnx``: ONNX files built outside prepare (QAT's QDQ export) run through the
registry; ``studies.qat_export`` picks such a backend without naming one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edgequant.backends import backend_names, get_backend
from edgequant.errors import UnsupportedError
from edgequant.models.base import Model
from edgequant.models.export import export_onnx
from edgequant.studies.qat_export import int8_ops, onnx_backend, run_onnx
from tests.helpers import tiny_inputs


@pytest.fixture(scope="module")
def onnx_file(tiny_model: Model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_onnx(tiny_model, tmp_path_factory.mktemp("onnx") / "tiny.onnx")


@pytest.mark.parametrize("name", backend_names())
def test_load_onnx_runs_the_file_or_says_it_cannot(
    name: str, tiny_model: Model, onnx_file: Path
) -> None:
    be = get_backend(name)
    if not be.loads_onnx:
        with pytest.raises(UnsupportedError, match="ONNX"):
            be.load_onnx(onnx_file, threads=1)
        return
    if not be.available():
        pytest.skip(f"{name} unavailable: {be.unavailable_reason()}")
    x = tiny_inputs(tiny_model, 5, seed=3)
    with torch.no_grad():
        ref = tiny_model.module(torch.from_numpy(x)).numpy()
    with be.load_onnx(onnx_file, threads=1) as sess:
        y = sess.run(x)
    np.testing.assert_allclose(y, ref, rtol=1e-3, atol=1e-4)


def test_qat_export_runs_through_the_registry(tiny_model: Model, onnx_file: Path) -> None:
    be = onnx_backend()
    assert be.loads_onnx and be.available()
    x = tiny_inputs(tiny_model, 3, seed=4)
    np.testing.assert_allclose(
        run_onnx(onnx_file, x, batch_size=2),
        run_onnx(onnx_file, x, backend=be.name),
        rtol=1e-5,
        atol=1e-6,
    )
    ops = int8_ops(onnx_file)
    assert sum(ops.values()) >= 4 and "QLinearConv" not in ops  # a float file: no int8 convs
    with pytest.raises(UnsupportedError, match="loads no ONNX"):
        onnx_backend("sim")
