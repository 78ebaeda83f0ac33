"""Terminal output shared by the commands: progress bars on stderr, tables, one JSON document.

Example:
    >>> print(format_table([["a", 1.5], ["bb", 2]], ["name", "value"]))
    name  value
    ----  -----
    a       1.5
    bb        2
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def _bar(disable: bool | None, **options: Any) -> Any:
    """A tqdm bar on stderr, hidden when stderr is not a terminal unless ``disable`` says."""
    from tqdm import tqdm

    if disable is None:
        disable = not sys.stderr.isatty()
    return tqdm(file=sys.stderr, disable=disable, dynamic_ncols=True, leave=False, **options)


def progress(
    iterable: Iterable[T],
    *,
    desc: str = "",
    total: int | None = None,
    unit: str = "it",
    disable: bool | None = None,
) -> Iterator[T]:
    """A tqdm progress bar on stderr (hidden when stderr is not a terminal unless forced)."""
    yield from _bar(disable, iterable=iterable, desc=desc, total=total, unit=unit)


@contextlib.contextmanager
def progress_bar(
    total: int, *, desc: str = "", unit: str = "it", disable: bool | None = None
) -> Iterator[Any]:
    """A tqdm progress bar on stderr advanced by hand (``bar.update()``), for work that is not a
    loop of the caller's (hidden when stderr is not a terminal unless forced).

    Example:
        >>> with progress_bar(2, desc="layers", disable=True) as bar:
        ...     bar.update(2)
    """
    bar = _bar(disable, total=total, desc=desc, unit=unit)
    try:
        yield bar
    finally:
        bar.close()


def log(msg: str) -> None:
    """A progress/log line on stderr (stdout is kept for results and --json)."""
    print(msg, file=sys.stderr, flush=True)


def print_json(obj: Any) -> None:
    """Exactly one JSON document on stdout."""
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
    sys.stdout.flush()


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.0f}"
    return str(v)


def format_table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """Plain aligned text table; numbers right-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [
        all(isinstance(row[i], int | float) or row[i] is None for row in rows) and rows != []
        for i in range(len(headers))
    ]

    def fmt(vals: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w) for v, w, num in zip(vals, widths, numeric)
        ).rstrip()

    lines = [fmt(list(headers)), fmt(["-" * w for w in widths])]
    lines += [fmt(r) for r in cells]
    return "\n".join(lines)
