"""``benchmark``: the Python function behind ``edgequant bench``.

Example:
    >>> import tempfile
    >>> rec = benchmark("digits_cnn", backend="onnxruntime", scheme="fp32",
    ...                 scenario="SingleStream", data="digits", duration_s=0.5,
    ...                 output=tempfile.mkdtemp(), progress=False)
    >>> rec.status, rec.scenario, rec.latency_ms["p90"] > 0
    ('ok', 'SingleStream', True)
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgequant.bench.config import BenchConfig
from edgequant.errors import ValidationError

if TYPE_CHECKING:
    from edgequant.models.base import Model
    from edgequant.results.record import ResultRecord

#: BenchConfig fields that ``benchmark`` takes as its own arguments (``output`` is ``run_dir``)
_OWN = {"model", "backend", "scheme", "scenario", "data", "calib", "accuracy", "threads"}
_OWN |= {"duration_s", "run_dir"}


def benchmark(
    model: str | Path | Model | None,
    *,
    backend: str | None = None,
    scheme: str = "fp32",
    scenario: str = "Offline",
    data: str = "synthetic",
    calib: str | np.ndarray | None = None,
    accuracy: bool = False,
    threads: int | None = None,
    duration_s: float | None = None,
    output: Path | str | None = None,
    **more: Any,
) -> ResultRecord:
    """Benchmark ``model`` on ``backend`` in ``scheme`` under MLPerf LoadGen; return the record.

    The record (``edgequant.result/1``) is also written to ``output/result.json`` with LoadGen's
    logs under ``output/loadgen/``; without ``output`` a fresh temporary folder is used.

    - ``model``: a zoo name, a model file (``.onnx``, ``.pth`` with ``arch=``) or an
      :class:`~edgequant.models.base.Model`;
    - ``scenario``: ``SingleStream``, ``MultiStream``, ``Offline`` or ``Server``;
    - ``data``: the dataset measured (``synthetic``, ``digits``, ``imagenet:DIR``, ``npy:FILE``);
    - ``calib``: calibration data of static schemes, a dataset spec or a float32 NCHW array
      (default: ``data``);
    - ``threads`` (default 2) and ``duration_s`` (default 10) as ``--threads`` / ``--duration``.

    ``more`` takes the other :class:`~edgequant.bench.config.BenchConfig` fields: ``batch_size``,
    ``count``, ``mlperf``, ``target_qps``, ``target_latency_ms``, ``artifact`` (run a prebuilt
    artifact; then ``model`` may be None), ``weights``, ``arch``, ``cache_dir``,
    ``force_rebuild``, ``progress``, ``compliance`` (``"TEST01"`` or ``"TEST04"``: MLPerf's audit
    runs, the verdict in ``record.compliance``), ``roofline`` (False: no roofline figures), …

    Bad input raises before anything runs; how the run went is the record's ``status``
    (``ok``, ``na``, ``failed``, ``interrupted``) and ``valid``.

    Example:
        >>> import tempfile
        >>> rec = benchmark("digits_cnn", backend="onnxruntime", scheme="bf16",
        ...                 output=tempfile.mkdtemp())
        >>> rec.status, rec.valid
        ('na', False)
    """
    from edgequant.bench.runner import run_benchmark
    from edgequant.models.base import Model

    fields = {f.name for f in dataclasses.fields(BenchConfig)} - _OWN
    unknown = sorted(set(more) - fields)
    if unknown:
        raise ValidationError(
            f"benchmark() got unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}"
        )
    model_obj = model if isinstance(model, Model) else None
    array = calib if isinstance(calib, np.ndarray) else None
    name = model_obj.name if model_obj is not None else (None if model is None else str(model))
    given = {"threads": threads, "duration_s": duration_s}  # None: BenchConfig's default
    cfg_args: dict[str, Any] = {
        "model": name,
        "backend": backend,
        "scheme": scheme,
        "scenario": scenario,
        "data": data,
        "calib": None if array is not None else calib,
        "accuracy": accuracy,
        "run_dir": Path(tempfile.mkdtemp(prefix="edgequant-bench-") if output is None else output),
        **{k: v for k, v in given.items() if v is not None},
        **more,
    }
    if array is not None:  # recorded in the run's config: the array itself is not
        cfg_args["extra"] = {**more.get("extra", {}), "calibration": f"array {array.shape}"}
    cfg = BenchConfig(**cfg_args)
    return run_benchmark(cfg, model=model_obj, calibration=array)


__all__ = ["benchmark"]
