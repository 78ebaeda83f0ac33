"""Bring your own model: a user's own ``nn.Module`` as ``pkg.mod:factory`` and as ``.pt2``.

The test writes a tiny package with a factory (a small conv net) into a temporary folder, puts it
on ``sys.path``, and exports the same net as a ``torch.export`` program. Each runtime that takes a
PyTorch module quantizes it in fp32 and w8a8 from both forms (:func:`edgequant.quantize`) and runs
a short Offline LoadGen benchmark of the artifact: the record is ok, it carries the conversion
check, and a w8a8 artifact runs its convs in int8 where the runtime reports it.

AOTInductor compiles dominate: the default tier builds PyTorch w8a8 from the ``.pt2`` program
(the form whose convs were left in float before), the ``slow`` tier from the factory as well.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import edgequant
from edgequant.backends import backend_names, get_backend
from tests.helpers import TinyNet, make_tiny_model

pytest.importorskip("mlperf_loadgen")
torch = pytest.importorskip("torch")

PACKAGE = "eq_byom_user_nets"
NETS = textwrap.dedent(
    '''
    """A user's own model, as a package the user writes."""
    import torch


    class SmallNet(torch.nn.Module):
        input_shape = (3, 16, 16)

        def __init__(self) -> None:
            super().__init__()
            self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.bn = torch.nn.BatchNorm2d(8)
            self.body = torch.nn.Conv2d(8, 16, 3, stride=2, padding=1)
            self.head = torch.nn.Linear(16, 6)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = torch.relu(self.bn(self.stem(x)))
            x = torch.relu(self.body(x))
            return self.head(x.mean((2, 3)))


    def build() -> SmallNet:
        torch.manual_seed(0)
        net = SmallNet()
        with torch.no_grad():  # batch-norm statistics that are not the identity
            net.bn.running_mean.uniform_(-0.2, 0.2)
            net.bn.running_var.uniform_(0.5, 1.5)
        return net.eval()
    '''
)

#: the runtimes that take a PyTorch module, canonical names from the registry
RUNTIMES = [n for n in ("onnxruntime", "openvino", "litert", "pytorch") if n in backend_names()]
_HEAVY = {("pytorch", "w8a8", "factory")}  # AOTInductor compiles: slow tier only


def _cases() -> list[Any]:
    out = []
    for runtime in RUNTIMES:
        for scheme in ("fp32", "w8a8"):  # fp32 first: w8a8's conversion check reuses it
            for form in ("factory", "pt2"):
                marks = [pytest.mark.slow] if (runtime, scheme, form) in _HEAVY else []
                out.append(
                    pytest.param(
                        runtime, scheme, form, marks=marks, id=f"{runtime}-{scheme}-{form}"
                    )
                )
    return out


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """``{"factory": "pkg.nets:build", "pt2": "/.../small.pt2"}`` over the same user net."""
    root = tmp_path_factory.mktemp("byom-user")
    (root / PACKAGE).mkdir()
    (root / PACKAGE / "__init__.py").write_text("")
    (root / PACKAGE / "nets.py").write_text(NETS)
    sys.path.insert(0, str(root))
    try:
        net = importlib.import_module(f"{PACKAGE}.nets").build()
        pt2 = root / "small.pt2"
        dyn = ({0: torch.export.Dim("batch", min=1, max=64)},)
        with torch.no_grad():
            program = torch.export.export(net, (torch.zeros(2, 3, 16, 16),), dynamic_shapes=dyn)
        torch.export.save(program, pt2)
        yield {"factory": f"{PACKAGE}.nets:build", "pt2": str(pt2)}
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


@pytest.fixture(scope="module")
def calibration() -> np.ndarray:
    return np.random.default_rng(5).standard_normal((32, 3, 16, 16)).astype(np.float32)


def _int8_share(report: Any) -> tuple[int, int]:
    convs = report.convs
    return sum(1 for c in convs if c.precision.startswith(("int", "i8", "u8"))), len(convs)


@pytest.mark.parametrize(("runtime", "scheme", "form"), _cases())
def test_user_module_quantizes_and_benches(
    runtime: str,
    scheme: str,
    form: str,
    sources: dict[str, str],
    calibration: np.ndarray,
    tmp_path: Path,
) -> None:
    be = get_backend(runtime)
    if not be.available():
        pytest.skip(f"{runtime} unavailable: {be.unavailable_reason()}")
    art = edgequant.quantize(
        sources[form], backend=runtime, scheme=scheme, calibration=calibration, progress=False
    )
    source = art.model_source
    assert source is not None and source["format"] == form, source
    check = source["check"]
    assert check["faithful"] is True, check  # the runtime's fp32 artifact matches the net
    assert check["cosine_min"] > 0.999, check
    if scheme == "w8a8":
        int8, total = _int8_share(art.inspect())
        assert total == 2 and int8 == total, art.inspect().summary()
    x = calibration[:4]
    ref = importlib.import_module(f"{PACKAGE}.nets").build()(torch.from_numpy(x)).detach()
    out = art.run(x)
    cos = (out * ref.numpy()).sum(1) / (
        np.linalg.norm(out, axis=1) * np.linalg.norm(ref.numpy(), axis=1)
    )
    assert cos.min() > (0.999 if scheme == "fp32" else 0.98), cos
    art.close()

    rec = art.benchmark(
        scenario="Offline",
        duration_s=0.2,
        threads=1,
        output=tmp_path / "run",
        warmup_s=0.05,
        idle_s=0.0,
        roofline=False,
    )
    assert rec.status == "ok", rec.reason
    assert rec.backend == runtime and rec.scheme == scheme and rec.scenario == "Offline"
    recorded = rec.model_source or (rec.artifact_metadata or {}).get("model_source")
    assert recorded is not None and recorded["check"]["faithful"] is True, recorded
    if scheme == "w8a8":  # the record says what the runtime reported when it was built
        summary = (rec.artifact_metadata or {}).get("inspect_summary", "")
        assert summary.startswith("2/2 convs in integer precision"), summary


#: the runtimes that quantize a fixed-batch ``.pt2`` in w8a8 (PyTorch re-exports it with a
#: dynamic batch once the loader has freed the batch of its reshapes)
FIXED_BATCH_RUNTIMES = [
    n for n in ("pytorch", "onnxruntime", "openvino", "litert") if n in backend_names()
]


class _ViewNet(TinyNet):
    """TinyNet flattening with ``x.view(x.size(0), -1)``: exported at batch 1, ``[1, -1]``."""

    def forward(self, x: Any) -> Any:
        x = self.relu1(self.bn1(self.conv1(x)))
        x = x + self.bn3(self.pw(self.relu2(self.bn2(self.dw(x)))))
        x = self.pool(self.relu3(self.conv3(x)))
        return self.fc(x.view(x.size(0), -1))


def _fixed_batch_pt2(root: Path, flatten: str) -> tuple[str, Any]:
    """A conv / BN / depthwise / ReLU / pool / linear net exported at a fixed batch of 1 (no
    ``dynamic_shapes``), and the eager net."""
    net = make_tiny_model(seed=3).module
    assert net is not None
    if flatten == "view":
        view = _ViewNet()
        view.load_state_dict(net.state_dict())
        net = view.eval()
    path = root / f"fixed-{flatten}.pt2"
    with torch.no_grad():
        torch.export.save(torch.export.export(net, (torch.zeros(1, 3, 32, 32),)), path)
    return str(path), net


@pytest.mark.parametrize("flatten", ["flatten", "view"])
@pytest.mark.parametrize("runtime", FIXED_BATCH_RUNTIMES)
def test_fixed_batch_pt2_quantizes_w8a8_with_bias_correction(
    runtime: str, flatten: str, tmp_path: Path
) -> None:
    """Issue 14: bias correction traced the ``.pt2`` wrapper and ran it at the calibration batch
    size; a program exported at batch 1 failed w8a8 where edgequant corrects the biases itself.
    The same for w8a8's GPTQ rounding (its passes run whole batches of the exported size).
    ``view``: the program bakes batch 1 into a reshape; the artifact still serves batch 3."""
    be = get_backend(runtime)
    if not be.available():
        pytest.skip(f"{runtime} unavailable: {be.unavailable_reason()}")
    path, net = _fixed_batch_pt2(tmp_path, flatten)
    rng = np.random.default_rng(11)
    calibration = rng.standard_normal((48, 3, 32, 32)).astype(np.float32)
    art = edgequant.quantize(
        path, backend=runtime, scheme="w8a8", calibration=calibration, progress=False
    )
    int8, total = _int8_share(art.inspect())
    assert total == 4 and int8 == total, art.inspect().summary()
    meta = art.metadata  # w8a8's GPTQ rounding and bias correction ran on the fixed batch
    assert meta["techniques_applied"] == ["bn_fold", "gptq", "bias_correction"], meta
    note = meta.get("bias_correction") or meta["quantizer"]["bias_correction"]
    assert note.startswith(("already applied to the model", "BiasCorrection")), note
    x = rng.standard_normal((3, 3, 32, 32)).astype(np.float32)  # 3: not the exported batch
    ref = net(torch.from_numpy(x)).detach().numpy()
    out = art.run(x)
    assert out.shape == ref.shape
    cos = (out * ref).sum(1) / (np.linalg.norm(out, axis=1) * np.linalg.norm(ref, axis=1))
    assert cos.min() >= 0.99, cos
    art.close()
