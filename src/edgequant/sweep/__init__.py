"""Characterization sweeps: an experiment file expanded to cells, each run in a fresh process.

Example:
    >>> from edgequant.sweep import parse_experiment
    >>> len(parse_experiment("models: [digits_cnn]\\nschemes: [fp32]\\nscenarios: [Offline]").cells())
    1
"""

from edgequant.sweep.experiment import Cell, Experiment, load_experiment, parse_experiment

__all__ = ["Cell", "Experiment", "load_experiment", "parse_experiment"]
