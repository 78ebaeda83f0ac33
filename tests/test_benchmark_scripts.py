"""The benchmark scripts in ``benchmarks/`` time what they say they time."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


def _script(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """``benchmarks/NAME.py`` imported as module ``NAME`` (for this test only)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, mod)
    spec.loader.exec_module(mod)
    return mod


def test_int8_speedup_times_artifacts_specialized_to_its_batch(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Each artifact is specialized to ``--batch`` before it is loaded: PyTorch's AOTInductor
    otherwise loads only a batch-1 package and runs a batch of 8 as 8 calls, so the ratio printed
    as "batch 8" was a batch-1 ratio (ResNet-50 w8a8 84-89 img/s there against 118 at batch 8
    through ``edgequant demo``, Intel Xeon avx512-vnni)."""
    from edgequant.backends import get_backend

    monkeypatch.setenv("EDGEQUANT_CACHE", str(tmp_path / "cache"))
    speedup = _script("int8_speedup", monkeypatch)
    be = type(get_backend("onnxruntime"))
    calls: list[tuple[str, list[int] | None]] = []
    loads: list[str] = []
    real_specialize, real_load = be.specialize, be.load

    def specialize(self: Any, artifact: Any, batch_sizes: Any = None) -> None:
        calls.append((artifact.scheme.name, None if batch_sizes is None else list(batch_sizes)))
        real_specialize(self, artifact, batch_sizes)

    def load(self: Any, artifact: Any, threads: int) -> Any:
        loads.append(artifact.scheme.name)
        assert (artifact.scheme.name, [3]) in calls, "loaded before being specialized"
        return real_load(self, artifact, threads)

    monkeypatch.setattr(be, "specialize", specialize)
    monkeypatch.setattr(be, "load", load)
    args = speedup.parse_args(
        ["--models", "digits_cnn", "--batch", "3", "--rounds", "1", "--seconds", "0.05"]
    )
    row = speedup.measure("onnxruntime", "digits_cnn", args)
    assert row["status"] == "ok" and row["batch"] == 3
    assert sorted(calls) == [("fp32", [3]), ("w8a8", [3])]
    assert sorted(loads) == ["fp32", "w8a8"]
    assert row["fp32_ips"] > 0 and row["w8a8_ips"] > 0
