"""One error hierarchy for the whole package.

The CLI turns every :class:`EdgequantError` into one line on stderr and a non-zero exit code;
``--debug`` shows the traceback. Messages say what is wrong *and* what to do.

Example:
    >>> from edgequant.errors import ValidationError
    >>> try:
    ...     raise ValidationError("threads must be >= 1; pass --threads 1 or more")
    ... except EdgequantError as e:
    ...     print(e)
    threads must be >= 1; pass --threads 1 or more
"""

from __future__ import annotations

import re
from typing import Any

#: exit code -> the error class that owns it (each code is the CLI's answer for one kind of error)
EXIT_CODES: dict[int, str] = {1: "EdgequantError"}


class EdgequantError(Exception):
    """Base class of every error edgequant raises on purpose. ``exit_code`` is the CLI's.

    A subclass that stands for a new kind of error names its code in the class line
    (``class ClusterError(EdgequantError, exit_code=9)``); codes are unique.
    """

    exit_code: int = 1

    def __init_subclass__(cls, *, exit_code: int | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if exit_code is None:
            return
        owner = EXIT_CODES.setdefault(exit_code, cls.__qualname__)
        if owner != cls.__qualname__:
            raise TypeError(f"exit code {exit_code} belongs to {owner}; pick a free one")
        cls.exit_code = exit_code


class ValidationError(EdgequantError, ValueError, exit_code=2):
    """Bad input from the user: a config value, a shape, NaNs in data, a typo in a file."""


class UnsupportedError(EdgequantError, exit_code=3):
    """A backend cannot run a scheme (or a model). The message is the reason shown as "n/a: …"."""


class BackendUnavailableError(EdgequantError, exit_code=4):
    """A runtime is not installed or cannot start here; the message carries the install hint."""


class ModelError(EdgequantError, exit_code=5):
    """A model cannot be built or loaded: unknown name, corrupt file, state_dict mismatch."""


class DatasetError(EdgequantError, exit_code=6):
    """A dataset cannot be read: missing folder, no images, unreadable file, bad val_map.txt."""


class ArtifactError(EdgequantError, exit_code=7):
    """A built artifact is missing, corrupt or truncated."""


class BenchmarkError(EdgequantError, exit_code=8):
    """A benchmark run failed (the runtime raised mid-run, LoadGen refused the settings, ...)."""


def condense_error(exc: BaseException, limit: int = 300) -> str:
    """The most useful single line of a converter's (often multi-page) error message.

    Example:
        >>> condense_error(RuntimeError("Traceback...\\n  blah\\nUnsupported op: Foo\\n"))
        'RuntimeError: Unsupported op: Foo'
    """
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    # converters put the real cause last, after stack dumps and hints; prefer a line naming it
    keywords = re.compile(r"unsupported|not supported|error|cannot|could not|failed|invalid", re.I)
    noise = re.compile(
        r"^(traceback|file \"|\^+$|during handling|the above exception|for more)", re.I
    )
    useful = [ln for ln in lines if not noise.match(ln)]
    pick = next(
        (ln for ln in reversed(useful) if keywords.search(ln)), useful[-1] if useful else ""
    )
    text = f"{type(exc).__name__}: {pick}" if pick else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


__all__ = [
    "EXIT_CODES",
    "ArtifactError",
    "BackendUnavailableError",
    "BenchmarkError",
    "DatasetError",
    "EdgequantError",
    "ModelError",
    "UnsupportedError",
    "ValidationError",
    "condense_error",
]
