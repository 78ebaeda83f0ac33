"""The ``sim`` backend. See :mod:`.backend`.

Example:
    >>> from edgequant.backends.sim import SimBackend
    >>> SimBackend.name
    'sim'
"""

from edgequant.backends.sim.backend import SimBackend, SimSession

__all__ = ["SimBackend", "SimSession"]
