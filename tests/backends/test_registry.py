"""The backend registry: names, aliases, suggestions, third-party registration, TensorRT here."""

from __future__ import annotations

import pytest

from edgequant.backends import backend_names, get_backend, register_backend
from edgequant.backends.base import Backend
from edgequant.errors import BackendUnavailableError, ValidationError
from edgequant.quant.scheme import get_scheme


def test_builtin_names() -> None:
    names = backend_names()
    for n in ("pytorch", "onnxruntime", "openvino", "litert", "tensorrt", "sim"):
        assert n in names


@pytest.mark.parametrize(
    ("alias", "name"),
    [
        ("ort", "onnxruntime"),
        ("ORT", "onnxruntime"),
        ("onnxruntime", "onnxruntime"),
        ("trt", "tensorrt"),
    ],
)
def test_aliases(alias: str, name: str) -> None:
    assert get_backend(alias).name == name
    assert get_backend(alias) is get_backend(name)  # one instance per backend


def test_unknown_backend_suggests() -> None:
    with pytest.raises(ValidationError, match="did you mean onnxruntime"):
        get_backend("onnxruntim")
    with pytest.raises(ValidationError, match="known: "):
        get_backend("zzzz")


def test_register_third_party_backend() -> None:
    class Dummy(Backend):
        name = "dummy-test"

        def unavailable_reason(self) -> str | None:
            return "dummy runtime is not installed (pip install dummy)"

        def versions(self) -> dict[str, str]:
            return {}

        def supports(self, scheme, model=None):  # type: ignore[no-untyped-def]
            return None

        def _convert(self, build):  # type: ignore[no-untyped-def]
            raise NotImplementedError

        def _save(self, build, quantized):  # type: ignore[no-untyped-def]
            raise NotImplementedError

        def load(self, artifact, threads):  # type: ignore[no-untyped-def]
            raise NotImplementedError

    register_backend(Dummy)
    be = get_backend("dummy-test")
    assert "dummy-test" in backend_names()
    with pytest.raises(BackendUnavailableError, match="pip install dummy"):
        be.require()


def test_tensorrt_says_why_not_here() -> None:
    be = get_backend("tensorrt")
    reason = be.unavailable_reason()
    if reason is None:
        pytest.skip("a TensorRT-capable GPU is present")
    assert "GPU" in reason or "pip install" in reason
    with pytest.raises(BackendUnavailableError, match="not available"):
        be.require()
    # capability answers do not need the runtime
    assert be.supports(get_scheme("w8a8-sym")) is None
    assert "symmetric" in (be.supports(get_scheme("w8a8")) or "")
    assert be.versions()  # says "not installed" rather than failing
