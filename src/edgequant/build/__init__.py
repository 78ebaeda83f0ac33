"""The build stage: model + scheme + calibration -> a cached artifact, ready to run.

Modules read as the build goes: ``calibration`` (which data a static scheme is calibrated on) →
``export`` (torch -> ONNX, for the runtimes that start from ONNX) → ``cache`` (build each
model × weights × scheme × calibration × runtime once; techniques applied) → ``stage`` (the one
``build_artifact`` that does it all, then ``Backend.specialize``) → ``quantize`` (the public
``quantize`` / ``inspect_artifact`` behind ``edgequant quantize`` / ``inspect``).

Example:
    >>> from edgequant.build import quantize, inspect_artifact
    >>> art = quantize("digits_cnn", backend="onnxruntime", scheme="fp16")   # doctest: +SKIP
    >>> inspect_artifact(art).summary()                                      # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, modules: Mapping[str, tuple[str, ...]]
) -> tuple[Callable[[str], Any], list[str]]:
    """A module ``__getattr__`` (PEP 562) that imports ``package.<module>`` when one of its
    names is first used (so that importing the package imports no runtime, no torch), and the
    package's ``__all__``; ``modules`` maps each module to the names it gives.

    Example:
        >>> get, names = lazy_exports("edgequant.build", {"calibration": ("select_calibration",)})
        >>> get("select_calibration").__name__, names
        ('select_calibration', ['select_calibration'])
    """
    where = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name in where:
            return getattr(importlib.import_module(f"{package}.{where[name]}"), name)
        raise AttributeError(name)

    return __getattr__, sorted(where)


__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "stage": ("Built", "build_artifact"),
        "calibration": ("Calibration", "select_calibration"),
        "cache": ("get_or_build", "default_cache_dir"),
        "quantize": ("QuantizeResult", "quantize", "quantize_model", "inspect_artifact"),
    },
)
