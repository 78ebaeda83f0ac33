"""Characterization sweeps: an experiment file expanded to cells, each run in a fresh process.

The package is the planner (:mod:`~edgequant.sweep.experiment`, :mod:`~edgequant.sweep.plan`),
the launchers (:mod:`~edgequant.sweep.launch` and its implementations in
:mod:`~edgequant.sweep.local` and :mod:`~edgequant.sweep.lanes`), the sweep itself
(:mod:`~edgequant.sweep.runner`) and the demo pipeline (:mod:`~edgequant.sweep.demo`).

The module is callable: ``edgequant.sweep(experiment, output, **opts)`` is :func:`run_sweep`.

Example:
    >>> from edgequant.sweep import parse_experiment
    >>> len(parse_experiment("models: [digits_cnn]\\nschemes: [fp32]\\nscenarios: [Offline]").cells())
    1
    >>> import edgequant.sweep
    >>> edgequant.sweep("exp.yaml", "runs/").counts     # doctest: +SKIP
    {'ok': 8, 'skipped': 0}
"""

import sys
import types
from typing import Any

from edgequant.sweep.experiment import load_experiment, parse_experiment
from edgequant.sweep.launch import Finished, Launcher
from edgequant.sweep.plan import Cell, Experiment
from edgequant.sweep.records import CellOutcome, SweepSummary
from edgequant.sweep.runner import run_sweep


class _CallableModule(types.ModuleType):
    """``edgequant.sweep(...)`` runs :func:`run_sweep`; the submodules import as usual."""

    def __call__(self, *args: Any, **kwargs: Any) -> SweepSummary:
        return run_sweep(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = [
    "Cell",
    "CellOutcome",
    "Experiment",
    "Finished",
    "Launcher",
    "SweepSummary",
    "load_experiment",
    "parse_experiment",
    "run_sweep",
]
