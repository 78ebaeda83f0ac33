"""Meters: latency statistics, accuracy, size, memory, energy, environment. No runtime imports.

Example:
    >>> from edgequant.measure.latency import Latency
    >>> Latency.from_values([1.0, 2.0, 3.0], unit="ms").p50_ms
    2.0
"""
