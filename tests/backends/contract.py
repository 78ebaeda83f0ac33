"""The backend contract test class. Every backend's test module subclasses it (as NNCF does).

Subclasses set ``backend_name`` and, where a runtime is legitimately looser, the thresholds.
A missing runtime skips the class with its reason (CI installs all of them, so there it runs).
Adding a runtime is one package under ``edgequant/backends/`` plus one subclass of this class.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from edgequant.backends import get_backend
from edgequant.backends.base import Artifact, Backend
from edgequant.errors import (
    BackendUnavailableError,
    EdgequantError,
    UnsupportedError,
    ValidationError,
)
from edgequant.hw.cpu import cpu_profile
from edgequant.quant.scheme import get_scheme, scheme_names
from tests.helpers import tiny_inputs


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(-1).astype(np.float64), b.reshape(-1).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


class BackendContract:
    """Shared checks: every supported scheme builds, loads, runs, agrees with fp32, shrinks."""

    backend_name: ClassVar[str]
    #: minimum cosine similarity of logits vs the fp32 PyTorch reference, per scheme prefix
    min_cosine: ClassVar[dict[str, float]] = {
        "fp32": 0.9999,
        "fp16": 0.999,
        "bf16": 0.99,
        "w8": 0.98,
        "w4": 0.85,
    }
    min_top1_agreement: ClassVar[dict[str, float]] = {
        "fp32": 1.0,
        "fp16": 0.95,
        "bf16": 0.85,
        "w8": 0.80,
        "w4": 0.5,
    }
    #: quantized-weight artifacts must be at least this much smaller than fp32
    min_size_ratio: ClassVar[float] = 3.0

    @pytest.fixture(scope="class")
    def backend(self) -> Backend:
        be = get_backend(self.backend_name)
        reason = be.unavailable_reason()
        if reason is not None:
            pytest.skip(f"{self.backend_name} unavailable: {reason}")
        return be

    @pytest.fixture(scope="class")
    def built(
        self, backend: Backend, tiny_model, tiny_calibration, tmp_path_factory
    ) -> dict[str, Artifact]:  # type: ignore[no-untyped-def]
        out: dict[str, Artifact] = {}
        for name in scheme_names():
            scheme = get_scheme(name)
            if backend.supports(scheme, tiny_model) is not None:
                continue
            d = tmp_path_factory.mktemp(f"{self.backend_name}-{name}")
            calib = tiny_calibration if scheme.needs_calibration else None
            out[name] = backend.prepare(tiny_model, scheme, calib, d)
        return out

    @pytest.fixture(scope="class")
    def reference(self, tiny_model) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
        import torch

        x = tiny_inputs(tiny_model, 16, seed=7)
        with torch.no_grad():
            y = tiny_model.module(torch.from_numpy(x)).numpy()
        return x, y

    def test_identity(self, backend: Backend) -> None:
        assert backend.name == self.backend_name
        versions = backend.versions()
        assert versions and all(isinstance(v, str) and v for v in versions.values())

    def test_fp32_supported(self, backend: Backend, tiny_model) -> None:  # type: ignore[no-untyped-def]
        assert backend.supports(get_scheme("fp32"), tiny_model) is None

    def test_runtime_scheme_names_ranges_the_runtime_honours(self, backend: Backend) -> None:
        """What the rounding techniques learn on: ``default`` resolved to the range kind the
        runtime computes (one it accepts when asked by name); everything else as written."""
        w8a8 = get_scheme("w8a8")
        ranged = backend.runtime_scheme(w8a8)
        assert (ranged.weights, ranged.activations) == (w8a8.weights, w8a8.activations)
        if backend.default_ranges is None:
            assert ranged.calibration == w8a8.calibration
        else:
            assert ranged.calibration.method == backend.default_ranges
            assert backend.supports(ranged) == backend.supports(w8a8)
        explicit = get_scheme("w8a8-ada")
        assert backend.runtime_scheme(explicit).calibration == explicit.calibration

    def test_every_supported_scheme_runs_and_agrees(
        self, backend: Backend, built, reference
    ) -> None:  # type: ignore[no-untyped-def]
        x, y_ref = reference
        assert "fp32" in built
        for name, art in built.items():
            with backend.load(art, threads=1) as sess:
                y = sess.run(x)
            assert y.shape == y_ref.shape, name
            assert y.dtype == np.float32, name
            assert np.isfinite(y).all(), name
            key = next(k for k in self.min_cosine if name.startswith(k))
            cos = cosine(y, y_ref)
            agree = float((y.argmax(1) == y_ref.argmax(1)).mean())
            assert cos >= self.min_cosine[key], f"{name}: cosine {cos:.5f}"
            assert agree >= self.min_top1_agreement[key], f"{name}: top-1 agreement {agree:.2f}"

    def test_batch_sizes(self, backend: Backend, built, reference) -> None:  # type: ignore[no-untyped-def]
        x, _ = reference
        with backend.load(built["fp32"], threads=2) as sess:
            if sess.fixed_batch is not None:
                pytest.skip("artifact has a fixed batch size")
            one = sess.run(x[:1])
            many = sess.run(x[:5])
        np.testing.assert_allclose(one[0], many[0], rtol=1e-3, atol=1e-4)

    def test_run_offline_matches_run(self, backend: Backend, built, reference) -> None:  # type: ignore[no-untyped-def]
        x, _ = reference
        got: dict[int, np.ndarray] = {}
        with backend.load(built["fp32"], threads=2) as sess:
            bs = sess.fixed_batch or 4
            batches = [x[i : i + bs] for i in range(0, len(x) - bs + 1, bs)]
            sess.run_offline(batches, lambda i, out: got.__setitem__(i, out.copy()))
            direct = [sess.run(b) for b in batches]
        assert sorted(got) == list(range(len(batches)))
        for i, d in enumerate(direct):
            np.testing.assert_allclose(got[i], d, rtol=1e-4, atol=1e-4)

    def test_run_sample_matches_run(self, backend: Backend, built, reference) -> None:  # type: ignore[no-untyped-def]
        """The SingleStream path: prepared samples run by row give ``run``'s logits, a new
        set of samples replaces the old, and None releases them."""
        x, _ = reference
        name = "w8a8" if "w8a8" in built else "fp32"
        with backend.load(built[name], threads=2) as sess:
            if sess.fixed_batch not in (None, 1):
                pytest.skip("artifact has a fixed batch size above one")
            sess.prepare_samples(np.ascontiguousarray(x[:6]))
            rows = [sess.run_sample(r) for r in (3, 0, 5, 3)]
            direct = [sess.run(x[r : r + 1]) for r in (3, 0, 5, 3)]
            sess.prepare_samples(np.ascontiguousarray(x[6:9]))
            again, seven = sess.run_sample(1), sess.run(x[7:8])
            sess.prepare_samples(None)
            with pytest.raises(EdgequantError, match="no samples are loaded"):
                sess.run_sample(0)
        for got, want in zip(rows, direct, strict=True):
            assert got.shape == want.shape == (1, want.shape[1])
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(again, seven, rtol=1e-5, atol=1e-5)

    def test_quantized_weights_are_smaller(self, built) -> None:  # type: ignore[no-untyped-def]
        fp32 = built["fp32"].size_bytes
        int_weight = [n for n in built if n.startswith("w")]
        if not int_weight:
            pytest.skip("backend supports no integer-weight scheme")
        for name in int_weight:
            # the tiny net's weights are a small part of the file: compare weight bytes when given
            a = built[name]
            if "weight_bytes" in a.metadata and "weight_bytes" in built["fp32"].metadata:
                ratio = built["fp32"].metadata["weight_bytes"] / max(1, a.metadata["weight_bytes"])
            else:
                ratio = fp32 / max(1, a.size_bytes)
            assert ratio >= self.min_size_ratio, f"{name}: only {ratio:.2f}x smaller"

    def test_metadata_written(self, built) -> None:  # type: ignore[no-untyped-def]
        for name, art in built.items():
            loaded = Artifact.load(art.directory)
            assert loaded.scheme.name == name
            assert loaded.backend == self.backend_name
            assert "executed_precision" in loaded.metadata, name
            assert loaded.metadata["inspect_summary"], name
            # the CPU the artifact was built on, from the one CPU profile (edgequant.hw.cpu)
            assert loaded.metadata["cpu_profile"] == cpu_profile().to_dict(), name

    @pytest.mark.parametrize(
        ("shape", "fill", "match"),
        [
            ((4, 3, 32, 32), np.nan, "NaN"),
            ((4, 3, 16, 16), 0.0, "shape"),
            ((0, 3, 32, 32), 0.0, "empty"),
        ],
        ids=["nan", "wrong-shape", "empty"],
    )
    def test_bad_calibration_is_rejected(
        self, backend: Backend, tiny_model, tmp_path: Path, shape, fill, match
    ) -> None:  # type: ignore[no-untyped-def]
        calib = np.full(shape, fill, np.float32)
        static = [s for s in ("w8a8", "w8a8-sym") if backend.supports(get_scheme(s)) is None]
        if not static:
            pytest.skip(f"{self.backend_name} runs no static int8 scheme")
        with pytest.raises(ValidationError, match=match):
            backend.prepare(tiny_model, get_scheme(static[0]), calib, tmp_path / "out")
        assert not (tmp_path / "out").exists(), "calibration is checked before any work"

    def test_unsupported_scheme_raises(self, backend: Backend, tiny_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
        weird = get_scheme(
            {
                "name": "w3a5",
                "weights": {"bits": 3, "granularity": "channel"},
                "activations": {"bits": 5, "symmetric": False},
            }
        )
        reason = backend.supports(weird, tiny_model)
        if reason is None:
            pytest.skip(f"{self.backend_name} runs any bit width")
        assert isinstance(reason, str) and reason
        with pytest.raises(UnsupportedError):
            backend.check_supported(weird, tiny_model)

    def test_per_layer_bits_are_built_or_refused(
        self, backend: Backend, tiny_model, tiny_calibration, tmp_path: Path
    ) -> None:  # type: ignore[no-untyped-def]
        # the same width everywhere is no mix: whatever runs w8a8 runs it
        same = get_scheme({"base": "w8a8", "name": "w8a8-l8", "layer_bits": {"last": 8}})
        assert backend.supports(same, tiny_model) == backend.supports(
            get_scheme("w8a8"), tiny_model
        )
        mixed = get_scheme(
            {"base": "w4a8", "name": "w4a8-fl8", "layer_bits": {"first": 8, "last": 8}}
        )
        reason = backend.supports(mixed, tiny_model)
        if reason is not None:
            assert "bit" in reason, reason  # the width it lacks, not a generic refusal
            return
        art = backend.prepare(tiny_model, mixed, tiny_calibration, tmp_path / "out")
        assert len(art.metadata["layer_bits"]) == 2, art.metadata.get("layer_bits")

    def test_inspect(self, backend: Backend, built) -> None:  # type: ignore[no-untyped-def]
        quantized = [n for n in ("w8a8", "w8-dyn", "w8-only") if n in built]
        if not quantized:
            pytest.skip("no quantized artifact")
        report = backend.inspect(built[quantized[0]])
        assert report.ops, "inspect found no ops"
        assert "convs" in report.summary() or "no convolutions" not in report.summary()


def assert_unavailable_raises(backend: Backend) -> None:
    """A backend whose runtime is missing must raise BackendUnavailableError with a hint; an
    installed one must pass ``require()`` and name a version for each of its packages."""
    if backend.unavailable_reason() is None:
        backend.require()
        versions = backend.versions()
        assert versions, f"{backend.name} is available but reports no versions"
        for package, v in versions.items():
            assert isinstance(v, str) and v and v != "not installed", (package, v)
        return
    with pytest.raises(BackendUnavailableError, match=r"pip install|not available"):
        backend.require()
