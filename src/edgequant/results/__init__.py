"""Result records (``result.json``) and the SQLite results store (``results.db``).

Example:
    >>> from edgequant.results import ResultRecord, ResultStore
"""

from edgequant.results.record import ResultRecord
from edgequant.results.store import ResultStore, rebuild

__all__ = ["ResultRecord", "ResultStore", "rebuild"]
