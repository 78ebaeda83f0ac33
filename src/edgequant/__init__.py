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
* :func:`lab` — simulated quantization studies (PTQ grid, Winograd, layer sensitivity);
* :func:`load_model` — a zoo name, a model file (``.onnx``, ``.pt2``, ``.tflite``, IR ``.xml``,
  ``.pth``) or ``package.module:factory`` as a :class:`~edgequant.models.base.Model`;
* :func:`to_rows` / :func:`to_frame` — result records as flat rows / a pandas DataFrame.

``quantize`` takes a ``torch.nn.Module`` as it is (no file to write) and returns an artifact
you can ``.run(x)``, ``.inspect()`` and ``.benchmark(scenario=...)``; see ``docs/byom.md``.

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
    "load_model": "edgequant.models.loader:load_model",
}

__all__ = ["__version__", *_LAZY, "to_frame", "to_rows"]


def to_rows(records: Any) -> list[dict[str, Any]]:
    """Result records (``ResultRecord`` objects or their dicts) as flat rows for a table.

    Nested fields become dotted columns (``latency_ms.p90``, ``accuracy.top1_pct``,
    ``model_source.check.cosine_min``); a 95% interval becomes two (``accuracy.drop_ci95_pts.low``
    and ``.high``); other lists and the bulky ``environment``, ``artifact_metadata`` and ``extra``
    fields are left out.

    Example:
        >>> from edgequant.results.record import ResultRecord
        >>> r = ResultRecord(model="m", backend="b", scheme="w8a8", scenario="Offline",
        ...                  dataset="synthetic", threads=2, batch_size=8,
        ...                  latency_ms={"p90": 1.5})
        >>> row = to_rows([r])[0]
        >>> row["scheme"], row["latency_ms.p90"]
        ('w8a8', 1.5)
        >>> r.accuracy = {"top1_pct": 88.5, "drop_ci95_pts": [-0.4, 1.6]}
        >>> to_rows([r])[0]["accuracy.drop_ci95_pts.high"]
        1.6
    """
    skip = {"environment", "artifact_metadata", "extra", "scheme_detail"}
    out = []
    for rec in [records] if hasattr(records, "to_dict") or isinstance(records, dict) else records:
        data = rec.to_dict() if hasattr(rec, "to_dict") else dict(rec)
        row: dict[str, Any] = {}
        _flatten("", {k: v for k, v in data.items() if k not in skip}, row)
        out.append(row)
    return out


def _flatten(prefix: str, value: Any, row: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, row)
    elif not isinstance(value, list | tuple):
        row[prefix] = value
    elif "ci95" in prefix.rsplit(".", 1)[-1] and len(value) == 2:
        row[f"{prefix}.low"], row[f"{prefix}.high"] = value


def to_frame(records: Any) -> Any:
    """:func:`to_rows` as a ``pandas.DataFrame`` (needs pandas: ``pip install pandas``).

    Example:
        >>> to_frame(records).groupby("backend")["throughput_ips"].max()   # doctest: +SKIP
    """
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("to_frame needs pandas: pip install pandas (or use to_rows)") from None
    return pd.DataFrame(to_rows(records))


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
