"""MLPerf LoadGen harness: QSL, one SUT per scenario, settings, log parsing, accuracy mode.

The artifact comes from the build stage (:mod:`edgequant.build`). Modules read as the run goes:
``config`` (one run, validated) → ``preflight`` (output folder, memory, threads: checked before
anything runs) → ``settings`` (what LoadGen is asked) → ``qsl`` (samples in RAM) → ``sut``
(scenarios driving ``Session.run``) → ``harness`` (warm-up, LoadGen, Ctrl-C) → ``logs`` /
``accuracy`` (LoadGen's own figures) → ``measurement`` (into the record) → ``runner`` (build,
load, measure, save) → ``api`` (``benchmark``); ``evaluate`` is the fp32 reference accuracy.

Example:
    >>> from edgequant.bench import benchmark
    >>> rec = benchmark("digits_cnn", backend="onnxruntime", scheme="w8a8",
    ...                 scenario="SingleStream", data="digits")   # doctest: +SKIP
    >>> rec.latency_ms["p90"]                                      # doctest: +SKIP
"""

from __future__ import annotations

from edgequant.build import lazy_exports

# lazy: importing edgequant.bench stays cheap until a benchmark is configured
__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "config": ("BenchConfig",),
        "runner": ("run_benchmark", "prepare_artifact"),
        "api": ("benchmark",),
        "evaluate": ("evaluate",),
    },
)
