"""The planner: an experiment's matrices expanded to cells, and ONE way to serialise a cell.

A :class:`Cell` is one run of the matrix (model × backend × scheme × scenario, or an accuracy
run). :func:`cell_config` turns it into the keyword arguments of ``edgequant.bench``'s
``BenchConfig``: that one JSON-safe mapping is what every launcher ships, whether as the
command line of a fresh ``edgequant bench`` (:func:`bench_argv`), a line of a group worker's
cells file (:func:`cell_task`) or, later, a task sent to another machine.

Example:
    >>> from edgequant.sweep import parse_experiment
    >>> cell = parse_experiment("models: [digits_cnn]\\nschemes: [fp32]\\nscenarios: [Offline]").cells()[0]
    >>> sorted(cell_config(cell, Path("runs")))[:4]
    ['accuracy', 'backend', 'data', 'duration_s']
    >>> bench_argv(cell, Path("runs"))[3:5]
    ['bench', '--model']
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edgequant.errors import ValidationError
from edgequant.quant.scheme import Scheme

#: ``cell``: a fresh process per cell (the default); ``backend``: one per model/backend pair
ISOLATIONS = ("cell", "backend")
SCHEMES_DIR = "schemes"
#: the device name of this machine (no cluster needed); its cells keep their old ids
LOCAL_DEVICE = "local"


@dataclass(frozen=True, kw_only=True)
class ModelRef:
    """A model of the matrix: a zoo name or a file (``arch`` for a ``.pth``; ``weights`` a file)."""

    name: str
    arch: str | None = None
    weights: str | None = None

    @property
    def label(self) -> str:
        """Short name used in cell ids: the zoo name, or the file's stem."""
        if "/" in self.name or self.name.endswith((".onnx", ".pth", ".pt", ".tflite")):
            return Path(self.name).stem
        return self.name

    @property
    def is_onnx_file(self) -> bool:
        return self.name.endswith(".onnx")


@dataclass(frozen=True, kw_only=True)
class SchemeRef:
    """A scheme of the matrix: the parsed :class:`Scheme` and how the file wrote it."""

    scheme: Scheme
    spec: str | dict[str, Any]

    @property
    def name(self) -> str:
        return self.scheme.name

    @property
    def builtin(self) -> bool:
        return isinstance(self.spec, str)


@dataclass(frozen=True, kw_only=True)
class Cell:
    """One run of the matrix: model × backend × scheme × scenario (or an accuracy run).

    ``mode`` is ``performance`` (a LoadGen performance run in ``scenario``) or ``accuracy``
    (the performance run followed by LoadGen's accuracy mode over the test split: ``bench
    --accuracy``). With ``accuracy: true`` one scenario per configuration (Offline when listed)
    carries the accuracy run; with ``scenarios: []`` the configuration gets one Offline cell.
    """

    model: ModelRef
    backend: str
    scheme: SchemeRef
    scenario: str
    mode: str
    data: str
    calib: str | None
    threads: int
    duration_s: float
    timeout_s: float
    isolation: str = "cell"
    #: where the cell runs: ``local`` or the name of an ``edgequant worker --device``
    device: str = LOCAL_DEVICE

    @property
    def is_local(self) -> bool:
        """True when the cell runs on this machine (no cluster)."""
        return self.device == LOCAL_DEVICE

    @property
    def process_key(self) -> str:
        """Cells sharing this key share one process: the cell itself, or its model and backend."""
        return self.pair_key if self.isolation == "backend" else self.cell_id

    @property
    def pair_key(self) -> str:
        """``model__backend`` (``__device`` appended off this machine): the cells whose
        artifacts one build process makes."""
        key = f"{self.model.label}__{self.backend}"
        return key if self.is_local else f"{key}__{self.device}"

    @property
    def cell_id(self) -> str:
        """Directory name of the run: ``model__backend__scheme__scenario``, with ``__DEVICE``
        appended for a cell of another device (a ``local`` cell keeps the old id, so existing
        runs folders resume)."""
        parts = [self.model.label, self.backend, self.scheme.name, self.scenario]
        if not self.is_local:
            parts.append(self.device)
        return "__".join(re.sub(r"[^A-Za-z0-9_.+-]", "-", p) for p in parts)


#: the :class:`Group` fields each of its cells copies as they are
GROUP_CELL_FIELDS = ("data", "calib", "threads", "duration_s", "isolation")


@dataclass(frozen=True, kw_only=True)
class Group:
    """One fully-resolved matrix (the top level, or one entry of ``groups``)."""

    models: tuple[ModelRef, ...]
    backends: tuple[str, ...]
    schemes: tuple[SchemeRef, ...]
    scenarios: tuple[str, ...]
    data: str
    calib: str | None
    accuracy: bool
    threads: int
    duration_s: float
    cell_timeout_s: float | None
    isolation: str = "cell"
    #: the devices the matrix runs on (``local``: this machine)
    devices: tuple[str, ...] = (LOCAL_DEVICE,)

    def cells(self) -> list[Cell]:
        """This matrix's cells; accuracy rides on one scenario's cell (Offline when listed)."""
        scenarios = list(self.scenarios) or ["Offline"]
        acc_on = "Offline" if "Offline" in scenarios else scenarios[0]
        timeout = self.cell_timeout_s or max(600.0, 30 * self.duration_s)
        # what every cell of the matrix shares with it
        shared = {k: getattr(self, k) for k in GROUP_CELL_FIELDS}
        return [
            Cell(
                model=m,
                backend=b,
                scheme=s,
                scenario=scenario,
                mode="accuracy" if self.accuracy and scenario == acc_on else "performance",
                timeout_s=timeout,
                device=d,
                **shared,
            )
            for m in self.models
            for b in self.backends
            for s in self.schemes
            for scenario in scenarios
            for d in self.devices
        ]


@dataclass(frozen=True, kw_only=True)
class Experiment:
    """A parsed experiment: one or more matrices. :meth:`cells` expands them, duplicates dropped."""

    name: str
    groups: tuple[Group, ...]
    description: str = ""
    #: artifact builds run this many model/backend pairs at a time before measuring (1: inline)
    build_jobs: int = 1
    source: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    #: the file's text as written (comments kept), copied into the runs directory
    text: str | None = None

    def cells(self) -> list[Cell]:
        """Every cell, grouped so that one model/backend/scheme's cells run back to back (the
        artifact is built by the first and found in the cache by the others)."""
        out: dict[str, Cell] = {}
        for g in self.groups:
            for cell in g.cells():
                out.setdefault(cell.cell_id, cell)
        return list(out.values())

    def scheme_refs(self) -> list[SchemeRef]:
        """Distinct schemes of all groups, in first-seen order."""
        out: dict[str, SchemeRef] = {}
        for g in self.groups:
            for s in g.schemes:
                out.setdefault(s.name, s)
        return list(out.values())


# --- one serialisation of a cell ----------------------------------------------------------------
def scheme_file(scheme: Scheme) -> str:
    """``NAME-HASH.yaml``: two different dicts may share a name (e.g. w8a8 with fewer samples)."""
    digest = hashlib.sha1(json.dumps(scheme.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
    return f"{scheme.name}-{digest}.yaml"


def scheme_arg(cell: Cell, runs_dir: Path) -> str:
    """A built-in name or YAML file as written; a full dict is written to ``schemes/``."""
    spec = cell.scheme.spec
    if isinstance(spec, str):
        return spec
    return str(runs_dir / SCHEMES_DIR / scheme_file(cell.scheme.scheme))


def write_schemes(experiment: Experiment, runs_dir: Path) -> None:
    """Write every scheme the file gave as a mapping to ``RUNS/schemes/`` (cells refer to it)."""
    import yaml

    for ref in (s for g in experiment.groups for s in g.schemes):
        if isinstance(ref.spec, dict):
            out = runs_dir / SCHEMES_DIR / scheme_file(ref.scheme)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(yaml.safe_dump(ref.scheme.to_dict(), sort_keys=False))


def cell_config(cell: Cell, runs_dir: Path) -> dict[str, Any]:
    """The cell as ``BenchConfig`` keyword arguments (JSON-safe; ``run_dir`` included).

    The one description of a cell: the bench command line, a worker's cells file and any other
    launcher's task are all made from it.
    """
    config: dict[str, Any] = {"model": cell.model.name}
    if cell.model.arch:
        config["arch"] = cell.model.arch
    if cell.model.weights:
        config["weights"] = cell.model.weights
    config.update(
        backend=cell.backend,
        scheme=scheme_arg(cell, runs_dir),
        scenario=cell.scenario,
        data=cell.data,
    )
    if cell.scheme.scheme.needs_calibration:
        config["calib"] = cell.calib or cell.data
    config.update(
        accuracy=cell.mode == "accuracy",
        threads=cell.threads,
        duration_s=cell.duration_s,
        run_dir=str(runs_dir / cell.cell_id),
    )
    return config


#: ``BenchConfig`` field -> ``edgequant bench`` flag, in command-line order
_FLAGS = {
    "model": "--model",
    "arch": "--arch",
    "weights": "--weights",
    "artifact": "--artifact",
    "backend": "--backend",
    "scheme": "--scheme",
    "scenario": "--scenario",
    "data": "--data",
    "calib": "--calib",
    "accuracy": "--accuracy",
    "threads": "--threads",
    "duration_s": "--duration",
    "run_dir": "-o",
}


def config_argv(config: dict[str, Any]) -> list[str]:
    """``edgequant bench`` flags for a :func:`cell_config` mapping (plus ``--json``)."""
    unknown = set(config) - set(_FLAGS)
    if unknown:
        raise KeyError(f"no bench flag for {sorted(unknown)}")
    argv: list[str] = []
    for key, flag in _FLAGS.items():
        value = config.get(key)
        if value is None or value is False:
            continue
        if value is True:
            argv.append(flag)
        elif isinstance(value, float):
            argv += [flag, f"{value:g}"]
        else:
            argv += [flag, str(value)]
    return [*argv, "--json"]


def default_bench_command() -> list[str]:
    """``python -m edgequant bench``, with the interpreter running this sweep."""
    return [sys.executable, "-m", "edgequant", "bench"]


def bench_argv(cell: Cell, runs_dir: Path, bench_command: Sequence[str] | None = None) -> list[str]:
    """The command line that runs one cell (DESIGN.md's ``edgequant bench`` flags)."""
    command = list(bench_command or default_bench_command())
    return command + config_argv(cell_config(cell, runs_dir))


def cell_task(cell: Cell, runs_dir: Path) -> dict[str, Any]:
    """One entry of a worker's cells file: ``{"cell": ID, "run_dir": DIR, "config": {...}}``
    (plus ``"device": NAME`` for a cell of another device)."""
    config = cell_config(cell, runs_dir)
    task = {"cell": cell.cell_id, "run_dir": config["run_dir"], "config": config}
    if not cell.is_local:
        task["device"] = cell.device
    return task


def process_order(cells: Sequence[Cell]) -> list[Cell]:
    """The cells grouped by process key (first-seen order): one group's cells run back to back."""
    keyed: dict[str, list[Cell]] = {}
    for c in cells:
        keyed.setdefault(c.process_key, []).append(c)
    return [c for group in keyed.values() for c in group]


def by_key(cells: Sequence[Cell], key: str) -> dict[str, list[Cell]]:
    """Consecutive-or-not cells bucketed by an attribute (``process_key`` or ``pair_key``)."""
    out: dict[str, list[Cell]] = {}
    for c in cells:
        out.setdefault(getattr(c, key), []).append(c)
    return out


#: what a device name may look like (it becomes part of cell ids and Dask resource names)
DEVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def check_device_name(name: str) -> str:
    """``name`` when it can name a device (letters, digits, ``_.-``), else a ValidationError.

    Example:
        >>> check_device_name("rpi5")
        'rpi5'
    """
    if not DEVICE_NAME.match(name):
        raise ValidationError(
            f"device name {name!r} is not valid: use letters, digits, '_', '.' or '-' "
            "(e.g. rpi5, jetson-orin)"
        )
    return name


def with_devices(experiment: Experiment, devices: list[str] | tuple[str, ...]) -> Experiment:
    """The experiment with every group's ``devices`` replaced (``edgequant sweep --devices``).

    Example:
        >>> from edgequant.sweep.experiment import parse_experiment
        >>> exp = parse_experiment("models: [digits_cnn]\\nschemes: [fp32]\\nscenarios: [Offline]")
        >>> [c.cell_id for c in with_devices(exp, ["local", "rpi5"]).cells()]
        ['digits_cnn__onnxruntime__fp32__Offline', 'digits_cnn__onnxruntime__fp32__Offline__rpi5']
    """
    names = tuple(dict.fromkeys(check_device_name(d) for d in devices))
    if not names:
        raise ValidationError("--devices needs at least one device name (e.g. local)")
    return replace(experiment, groups=tuple(replace(g, devices=names) for g in experiment.groups))


__all__ = [
    "ISOLATIONS",
    "LOCAL_DEVICE",
    "Cell",
    "Experiment",
    "Group",
    "ModelRef",
    "SchemeRef",
    "bench_argv",
    "by_key",
    "cell_config",
    "cell_task",
    "check_device_name",
    "config_argv",
    "default_bench_command",
    "process_order",
    "scheme_arg",
    "with_devices",
    "write_schemes",
]
