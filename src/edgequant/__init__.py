"""edgequant — quantize a CNN once, run it on every edge runtime, measure it the MLPerf way.

The public Python API is the same set of functions the ``edgequant`` command line calls:

* :func:`quantize` — model + scheme + calibration -> a cached, runnable artifact;
* :func:`inspect` — which ops of an artifact run in integer precision, which in float, and why;
* :func:`benchmark` — one MLPerf LoadGen run -> a result record;
* :func:`evaluate` — accuracy of a model on a dataset;
* :func:`sweep` — models × backends × schemes × scenarios into a runs directory;
* :func:`demo` — the embedded default sweep, end to end;
* :func:`report` — HTML / Markdown / CSV report of a runs directory;
* :func:`qat` — quantization-aware training, exported and run by a real runtime;
* :func:`train` — train a zoo architecture on a dataset with train/test splits;
* :func:`lab` — simulated quantization studies (PTQ grid, Winograd, layer sensitivity).

Importing this package is cheap: each name is imported on first use, and no runtime (ONNX
Runtime, OpenVINO, LiteRT, torch) is imported until a backend or model is used.

Example:
    >>> import edgequant
    >>> edgequant.__version__
    '0.1.0'
    >>> "report" in dir(edgequant) and "qat" in edgequant.__all__
    True
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> "module" (the name is that module) or "module:attribute"
_LAZY: dict[str, str] = {
    "quantize": "edgequant.build.quantize:quantize",
    "inspect": "edgequant.build.quantize:inspect_artifact",
    "benchmark": "edgequant.bench.api:benchmark",
    "evaluate": "edgequant.bench.evaluate:evaluate",
    "sweep": "edgequant.sweep",
    "demo": "edgequant.sweep.demo:demo",
    "report": "edgequant.report",
    "qat": "edgequant.studies.qat:qat",
    "train": "edgequant.training:train",
    "lab": "edgequant.studies.pipeline:lab",
    "debug": "edgequant.studies.layer_debug:debug_artifact",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    """Import a public name on first use (PEP 562), so ``import edgequant`` stays light.

    Example:
        >>> import edgequant
        >>> callable(edgequant.qat)
        True
        >>> edgequant.no_such_name
        Traceback (most recent call last):
        ...
        AttributeError: module 'edgequant' has no attribute 'no_such_name'
    """
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'edgequant' has no attribute {name!r}")
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    value = getattr(module, attr) if attr else module
    if attr:  # a sub-package keeps its own attribute binding (set by the import system)
        globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
