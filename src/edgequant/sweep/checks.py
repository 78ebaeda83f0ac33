"""Cheap checks in the parent, before anything is spawned.

:func:`precheck` finds a cell the backend cannot run (recorded ``na``); :func:`check_inputs`
finds inputs that cannot exist (an unknown zoo model, a missing data file or folder), which a
``--dry-run`` reports instead of listing commands that would fail.

Example:
    >>> from edgequant.sweep import parse_experiment
    >>> check_inputs(parse_experiment("models: [digits_cnn]\\nschemes: [fp32]").cells())
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from edgequant.errors import EdgequantError, UnsupportedError, ValidationError
from edgequant.sweep.plan import Cell


def precheck(cell: Cell) -> str | None:
    """The reason this cell cannot run (→ ``na``) found cheaply in the parent, else None.

    Only the backend's own verdicts count; anything unexpected is left to the child to report.
    """
    from edgequant.backends import get_backend

    try:
        backend = get_backend(cell.backend)
    except ImportError as e:  # the backend's module is not part of this installation
        return f"backend {cell.backend} is not available in this edgequant installation ({e})"
    except ValidationError:
        return None  # an unknown name: the child reports it properly
    try:
        why = backend.unavailable_reason()
        if why is not None:
            return f"backend {cell.backend} unavailable: {why}"
        if cell.model.is_onnx_file and backend.needs_torch_module:
            return (
                f"{cell.backend} builds from the PyTorch model; a user's .onnx file cannot be used"
            )
        return backend.supports(cell.scheme.scheme, None)
    except UnsupportedError as e:
        return str(e)
    except Exception:  # a backend bug must not stop the sweep; the child will show it
        return None


def _model_problem(name: str) -> str | None:
    if Path(name).expanduser().exists():
        return None
    if "/" in name or Path(name).suffix in (".onnx", ".pth", ".pt", ".tflite"):
        return f"model file {name} does not exist"
    from edgequant.models.registry import get_entry

    try:
        get_entry(name)
    except EdgequantError as e:
        return str(e).splitlines()[0]
    return None


def _data_problem(spec: str) -> str | None:
    kind, _, path = spec.partition(":")
    if kind == "imagenet" and not Path(path).expanduser().is_dir():
        return f"data folder {path} (in {spec}) does not exist"
    if kind == "npy" and not Path(path).expanduser().is_file():
        return f"data file {path} (in {spec}) does not exist"
    return None


def check_inputs(cells: Sequence[Cell]) -> None:
    """Raise one :class:`ValidationError` naming every unknown model and missing data path."""
    problems: dict[str, None] = {}
    for cell in cells:
        for problem in (
            _model_problem(cell.model.name),
            None if cell.model.weights is None else _model_problem(cell.model.weights),
            _data_problem(cell.data),
            None if cell.calib is None else _data_problem(cell.calib),
        ):
            if problem is not None:
                problems.setdefault(problem)
    if problems:
        raise ValidationError("; ".join(problems) + " (fix the experiment file)")


__all__ = ["check_inputs", "precheck"]
