"""Calibration observers choose sensible ranges on known distributions."""

from __future__ import annotations

import pytest
import torch

from edgequant.errors import ValidationError
from edgequant.quant.fake_quant import fake_quant
from edgequant.quant.observers import make_observer, resolve_method
from edgequant.quant.scheme import TensorQuant

A8 = TensorQuant(bits=8, symmetric=False)
S8 = TensorQuant(bits=8, symmetric=True)


def _heavy_tailed(n: int = 200_000) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, generator=g)
    x[:10] = 60.0  # a few outliers (0.005 %) that stretch min/max
    return x


def _mse(x: torch.Tensor, method: str, tq: TensorQuant) -> float:
    """Quantization MSE on the bulk of the distribution (the outliers excluded)."""
    obs = make_observer(method)
    for chunk in x.split(50_000):
        obs.update(chunk)
    s, z = obs.qparams(tq)
    bulk = x[10:]
    return float(((fake_quant(bulk, s, z, tq.qmin, tq.qmax) - bulk) ** 2).mean())


def test_minmax_is_exact_extremes() -> None:
    obs = make_observer("minmax")
    obs.update(torch.tensor([-1.0, 2.0]))
    obs.update(torch.tensor([3.0]))
    assert obs.range(A8) == (-1.0, 3.0)


@pytest.mark.parametrize("method", ["percentile:99.99", "entropy"])
def test_clipping_observers_beat_minmax_on_outliers(method: str) -> None:
    x = _heavy_tailed()
    assert _mse(x, method, S8) < 0.5 * _mse(x, "minmax", S8)


def test_mse_observer_minimises_total_error() -> None:
    torch.manual_seed(0)
    x = torch.distributions.StudentT(4.0).sample((100_000,))
    errs = {}
    for method in ("minmax", "percentile:99.9", "mse"):
        obs = make_observer(method)
        obs.update(x)
        s, z = obs.qparams(S8)
        errs[method] = float(((fake_quant(x, s, z, S8.qmin, S8.qmax) - x) ** 2).mean())
    assert errs["mse"] <= 1.05 * min(errs.values())
    assert errs["mse"] < errs["minmax"]


def test_entropy_on_relu_output_uses_unsigned_range() -> None:
    x = torch.relu(_heavy_tailed())
    obs = make_observer("entropy")
    obs.update(x)
    lo, hi = obs.range(A8)
    assert lo == 0.0 and 2.0 < hi < 60.0


def test_percentile_asymmetric() -> None:
    obs = make_observer("percentile:99")
    obs.update(torch.linspace(0, 100, 10001))
    lo, hi = obs.range(A8)
    assert abs(lo - 1.0) < 0.05 and abs(hi - 99.0) < 0.05


def test_default_resolution_and_errors() -> None:
    assert resolve_method("default", for_weights=True) == "minmax"
    assert resolve_method("default") in ("mse", "entropy", "minmax") or resolve_method(
        "default"
    ).startswith("percentile")
    with pytest.raises(ValidationError):
        make_observer("median")
    with pytest.raises(ValidationError, match="empty"):
        make_observer("mse").range(A8)


def test_entropy_ignores_the_relu_zero_spike() -> None:
    # half the values are exact zeros (ReLU); the threshold must still cover the bulk
    x = torch.relu(torch.randn(100_000, generator=torch.Generator().manual_seed(1)))
    obs = make_observer("entropy")
    obs.update(x)
    lo, hi = obs.range(A8)
    assert lo == 0.0 and 2.5 < hi <= float(x.max())
