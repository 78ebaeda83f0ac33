"""MLPerf LoadGen harness: QSL, one SUT per scenario, settings, log parsing, accuracy mode.

Modules read as the run goes: ``settings`` (what LoadGen is asked) → ``qsl`` (samples in RAM)
→ ``sut`` (scenarios driving ``Session.run``) → ``harness`` (warm-up, LoadGen, Ctrl-C) →
``logs`` / ``accuracy`` (LoadGen's own figures) → ``runner`` (the result record).

Example:
    >>> from edgequant.bench import BenchConfig, run_benchmark
    >>> cfg = BenchConfig(model="digits_cnn", backend="onnxruntime", scheme="w8a8",
    ...                   scenario="SingleStream", data="digits")   # doctest: +SKIP
    >>> run_benchmark(cfg).latency_ms["p90"]                         # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

__all__ = ["BenchConfig", "run_benchmark"]


def __getattr__(name: str) -> Any:
    # lazy: importing edgequant.bench stays cheap until a benchmark is configured
    if name in __all__:
        from edgequant.bench import runner

        return getattr(runner, name)
    raise AttributeError(name)
