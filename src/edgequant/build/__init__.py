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
from typing import Any

_EXPORTS = {
    "Built": "stage",
    "build_artifact": "stage",
    "Calibration": "calibration",
    "select_calibration": "calibration",
    "get_or_build": "cache",
    "default_cache_dir": "cache",
    "QuantizeResult": "quantize",
    "quantize": "quantize",
    "quantize_model": "quantize",
    "inspect_artifact": "quantize",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    # lazy: importing edgequant.build imports no runtime, no torch, until a build is asked for
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"edgequant.build.{_EXPORTS[name]}"), name)
    raise AttributeError(name)
