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


class EdgequantError(Exception):
    """Base class of every error edgequant raises on purpose. ``exit_code`` is the CLI's."""

    exit_code: int = 1


class ValidationError(EdgequantError, ValueError):
    """Bad input from the user: a config value, a shape, NaNs in data, a typo in a file."""

    exit_code = 2


class UnsupportedError(EdgequantError):
    """A backend cannot run a scheme (or a model). The message is the reason shown as "n/a: …"."""

    exit_code = 3


class BackendUnavailableError(EdgequantError):
    """A runtime is not installed or cannot start here; the message carries the install hint."""

    exit_code = 4


class ModelError(EdgequantError):
    """A model cannot be built or loaded: unknown name, corrupt file, state_dict mismatch."""

    exit_code = 5


class DatasetError(EdgequantError):
    """A dataset cannot be read: missing folder, no images, unreadable file, bad val_map.txt."""

    exit_code = 6


class ArtifactError(EdgequantError):
    """A built artifact is missing, corrupt or truncated."""

    exit_code = 7


class BenchmarkError(EdgequantError):
    """A benchmark run failed (the runtime raised mid-run, LoadGen refused the settings, ...)."""

    exit_code = 8


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
