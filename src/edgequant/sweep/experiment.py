"""The experiment file of ``edgequant sweep``: parse, validate (with line numbers), expand to cells.

The format (DESIGN.md), every key optional except ``models``::

    models: [mobilenet_v2, resnet50]          # zoo names or model files (.onnx, or .pth + arch)
    backends: [...]                           # names from `edgequant backends` (or aliases)
    schemes: [fp32, w8a8]                     # names from the table, or full scheme dicts
    scenarios: [SingleStream, Offline]
    data: synthetic                           # or imagenet:DIR, digits, npy:FILE
    calib: synthetic                          # calibration set for static schemes
    accuracy: false                           # also run LoadGen's accuracy mode
    devices: [local]                          # `edgequant worker --device` names (a Dask cluster)
    threads: 2
    duration_s: 10

``devices`` is an axis like ``models`` and ``backends``: ``local`` (the default) is this machine,
any other name is the device of an ``edgequant worker`` connected to the sweep's cluster
(``edgequant sweep --cluster tcp://HOST:8786``, see docs/fleet.md). A ``local`` cell keeps its
old id, another device's cell id ends in ``__DEVICE``.

A model may also be a mapping ``{name: my.pth, arch: resnet18}``. ``groups:`` holds a list of
sub-experiments that inherit every top-level key and override some (the demo uses it to run every
scheme on the small model but only fp32/w8a8 on the big ones). ``cell_timeout_s`` bounds one cell.

``isolation: cell`` (the default) runs each cell in a fresh ``edgequant bench`` process.
``isolation: backend`` runs all cells of one model on one backend in turn in one fresh process:
runtimes stay apart, the start-up (imports, ≥ 4 s of CPU) is paid once per pair, and a crash
costs the rest of that pair's cells (recorded failed, re-run by a resumed sweep).

``build_jobs: N`` (top level only; default 1) builds the artifacts of the cells still to run
before anything is measured, N model/backend pairs at a time, each in its own process: builds
are mostly single-threaded (converters, quantizers, Inductor's C++ compiles), so on a 2-core
machine two at a time nearly halve the build time. Measurements still run one at a time,
afterwards, on an otherwise idle machine.

A typo'd key is an error naming the key and its line; so is a bad value (an unknown scheme,
backend or scenario). A file that is not UTF-8, nests deeper than :data:`MAX_DEPTH` or expands
(through YAML aliases) to more than :data:`MAX_NODES` values is refused with one line.

Example:
    >>> exp = parse_experiment('''
    ... models: [digits_cnn]
    ... schemes: [fp32, w8a8]
    ... scenarios: [SingleStream, Offline]
    ... data: digits
    ... ''')
    >>> [(c.scheme.name, c.scenario) for c in exp.cells()][:2]
    [('fp32', 'SingleStream'), ('fp32', 'Offline')]
    >>> parse_experiment("models: [m]\\nbackend: [x]\\n")
    Traceback (most recent call last):
    ...
    edgequant.errors.ValidationError: experiment line 2: unknown key 'backend' (did you mean 'backends'?); known keys: accuracy, backends, build_jobs, calib, cell_timeout_s, data, description, devices, duration_s, groups, isolation, models, name, rounds, scenarios, schemes, threads
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, NoReturn

from edgequant.errors import ValidationError
from edgequant.quant.scheme import get_scheme
from edgequant.sweep.plan import (
    DEVICE_NAME,
    ISOLATIONS,
    LOCAL_DEVICE,
    Cell,
    Experiment,
    Group,
    ModelRef,
    SchemeRef,
    check_device_name,
    with_devices,
)

SCENARIOS = ("SingleStream", "MultiStream", "Offline", "Server")
#: dataset kinds (``KIND[:PATH]``), as ``edgequant bench --data`` takes them
DATA_KINDS = ("imagenet", "digits", "synthetic", "npy")
#: the deepest nesting of an experiment file (the format itself needs about 6 levels)
MAX_DEPTH = 64
#: the most values a file may hold once its YAML aliases are expanded (a bomb is refused)
MAX_NODES = 100_000
#: keys a (sub-)experiment may hold; ``groups`` only at the top level
KEYS = (
    "name",
    "description",
    "models",
    "backends",
    "schemes",
    "scenarios",
    "data",
    "calib",
    "accuracy",
    "threads",
    "duration_s",
    "cell_timeout_s",
    "isolation",
    "devices",
    "build_jobs",
    "rounds",  # paired rounds (edgequant.sweep.pairs reads and checks it)
    "groups",
)
MODEL_KEYS = ("name", "arch", "weights")
DEFAULTS: dict[str, Any] = {
    "backends": None,  # the registry's default backend: see _default_backends
    "schemes": ["fp32", "w8a8"],
    "scenarios": ["SingleStream", "Offline"],
    "data": "synthetic",
    "calib": None,
    "accuracy": False,
    "threads": 2,
    "duration_s": 10.0,
    "cell_timeout_s": None,
    "isolation": "cell",
    "devices": [LOCAL_DEVICE],
}


# --- parsing ------------------------------------------------------------------------------------
def load_experiment(path: Path | str) -> Experiment:
    """Read and validate an experiment file; relative model/data paths are taken from its folder."""
    p = Path(path)
    if p.is_dir():
        raise ValidationError(
            f"{p} is a folder, not an experiment file: give the YAML file (e.g. {p}/experiment.yaml)"
        )
    if not p.is_file():
        raise ValidationError(f"experiment file {p} does not exist")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ValidationError(f"cannot read experiment file {p}: {e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValidationError(
            f"{p} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}): "
            "save the experiment file as UTF-8"
        ) from None
    return parse_experiment(text, source=str(p), base_dir=p.parent)


def _compose(text: str, where: str) -> Any:
    """The YAML node tree of ``text``, refused when invalid, too deep or too large."""
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ValidationError(f"{where}{line}: not valid YAML: {problem}") from None
    except RecursionError:
        raise ValidationError(
            f"{where}: nested too deeply to be an experiment file (at most {MAX_DEPTH} levels)"
        ) from None
    if root is not None:
        _check_size(root, where)
    return root


def _check_size(root: Any, where: str) -> None:
    """Refuse a tree nested deeper than MAX_DEPTH or holding more than MAX_NODES values once
    its aliases are expanded (an alias bomb), without expanding anything."""
    sizes: dict[int, int] = {}

    def size(node: Any, depth: int) -> int:
        if depth > MAX_DEPTH:
            line = node.start_mark.line + 1
            raise ValidationError(
                f"{where} line {line}: nested too deeply to be an experiment file "
                f"(at most {MAX_DEPTH} levels)"
            )
        if id(node) in sizes:
            return sizes[id(node)]
        total = 1
        if isinstance(node.value, list):
            for child in node.value:
                parts = child if isinstance(child, tuple) else (child,)
                total += sum(size(part, depth + 1) for part in parts)
                if total > MAX_NODES:
                    break
        sizes[id(node)] = total
        if total > MAX_NODES:
            raise ValidationError(
                f"{where}: too large once its YAML aliases are expanded (more than {MAX_NODES} "
                "values): an experiment file needs no such aliases"
            )
        return total

    size(root, 0)


def parse_experiment(
    text: str, *, source: str | None = None, base_dir: Path | None = None
) -> Experiment:
    """Parse experiment YAML text. Errors name the file, the line and the key."""
    import yaml

    where = source or "experiment"
    root = _compose(text, where)
    if root is None or not isinstance(root, yaml.MappingNode):
        raise ValidationError(
            f"{where}: an experiment file must be a mapping with at least 'models:'"
        )
    parser = _Parser(where, base_dir)
    top = parser.mapping(root, allow_groups=True)
    groups_node = top.pop("groups", None)
    name = str(top.pop("name", (None, None))[0] or (Path(source).stem if source else "experiment"))
    description = str(top.pop("description", (None, None))[0] or "")
    jobs_v, jobs_n = top.pop("build_jobs", (1, root))
    if isinstance(jobs_v, bool) or not isinstance(jobs_v, int) or jobs_v < 1:
        parser.fail(jobs_n, f"'build_jobs' must be an integer >= 1, got {jobs_v!r}")
    groups: list[Group] = []
    if groups_node is None:
        groups.append(parser.group(top, root))
    else:
        gnode = groups_node[1]
        if not isinstance(gnode, yaml.SequenceNode) or not gnode.value:
            parser.fail(gnode, "'groups' must be a non-empty list of sub-experiments")
        groups += [parser.sub_group(top, item) for item in gnode.value]
    return Experiment(
        name=name,
        description=description,
        groups=tuple(groups),
        source=source,
        raw=parser.value(root),
        build_jobs=int(jobs_v),
        text=text,
    )


def _default_backends() -> list[str]:
    """The registry's default backend (the portable one every installation has)."""
    from edgequant import backends

    default = getattr(backends, "default_backend", None)
    if callable(default):
        return [str(default())]
    # the registry lists the built-in backends in a fixed order; the portable default is second
    return [backends.backend_names()[1]]


class _Parser:
    """Validates nodes; every error carries the node's line."""

    def __init__(self, where: str, base_dir: Path | None) -> None:
        self.where = where
        self.base_dir = base_dir

    def fail(self, node: Any, msg: str) -> NoReturn:
        line = node.start_mark.line + 1 if node is not None else None
        at = f" line {line}" if line else ""
        raise ValidationError(f"{self.where}{at}: {msg}")

    @staticmethod
    def value(node: Any) -> Any:
        import yaml

        loader = yaml.SafeLoader("")
        try:
            return loader.construct_object(node, deep=True)
        finally:
            loader.dispose()

    def mapping(self, node: Any, *, allow_groups: bool) -> dict[str, tuple[Any, Any]]:
        """key -> (python value, value node); unknown or repeated keys fail with their line."""
        out: dict[str, tuple[Any, Any]] = {}
        known = KEYS if allow_groups else tuple(k for k in KEYS if k != "groups")
        for knode, vnode in node.value:
            key = str(self.value(knode))
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.fail(
                    knode, f"unknown key {key!r}{hint}; known keys: {', '.join(sorted(known))}"
                )
            if key in out:
                self.fail(knode, f"key {key!r} appears twice")
            out[key] = (self.value(vnode), vnode)
        return out

    def sub_group(self, base: dict[str, tuple[Any, Any]], item: Any) -> Group:
        """One entry of ``groups:``: the top-level keys overridden by the entry's."""
        import yaml

        if not isinstance(item, yaml.MappingNode):
            self.fail(item, "each entry of 'groups' must be a mapping")
        sub = self.mapping(item, allow_groups=False)
        sub.pop("name", None)
        sub.pop("description", None)
        if "build_jobs" in sub:
            self.fail(
                sub["build_jobs"][1],
                "'build_jobs' applies to the whole experiment: set it at the top level",
            )
        return self.group({**base, **sub}, item)

    def group(self, values: dict[str, tuple[Any, Any]], node: Any) -> Group:
        def get(key: str) -> tuple[Any, Any]:
            if key == "backends" and key not in values:
                return _default_backends(), node
            return values.get(key, (DEFAULTS.get(key), node))

        if "models" not in values:
            self.fail(
                node,
                "'models' is missing: list zoo names or model files, e.g. models: [mobilenet_v2]",
            )
        # the list keys, each item checked by its own method (devices: duplicates dropped)
        lists: dict[str, tuple[Any, ...]] = {
            key: tuple(check(v, n) for v, n in self.items(*get(key), key))
            for key, check in (
                ("models", self.model),
                ("backends", self.backend),
                ("schemes", self.scheme),
                ("devices", self.device),
            )
        }
        lists["devices"] = tuple(dict.fromkeys(lists["devices"]))
        accuracy_v, accuracy_n = get("accuracy")
        if not isinstance(accuracy_v, bool):
            self.fail(accuracy_n, f"'accuracy' must be true or false, got {accuracy_v!r}")
        scen_v, scen_n = get("scenarios")
        if scen_v in ([], None) and accuracy_v:
            scenarios: tuple[str, ...] = ()  # accuracy runs only
        else:
            scenarios = tuple(
                self.scenario(v, n) for v, n in self.items(scen_v, scen_n, "scenarios")
            )
        data = self.dataset(*get("data"), "data")
        calib_v, calib_n = get("calib")
        calib = None if calib_v is None else self.dataset(calib_v, calib_n, "calib")
        threads_v, threads_n = get("threads")
        if isinstance(threads_v, bool) or not isinstance(threads_v, int) or threads_v < 1:
            self.fail(threads_n, f"'threads' must be an integer >= 1, got {threads_v!r}")
        dur_v, dur_n = get("duration_s")
        if isinstance(dur_v, bool) or not isinstance(dur_v, int | float) or dur_v <= 0:
            self.fail(dur_n, f"'duration_s' must be a number of seconds > 0, got {dur_v!r}")
        to_v, to_n = get("cell_timeout_s")
        if to_v is not None and (
            isinstance(to_v, bool) or not isinstance(to_v, int | float) or to_v <= 0
        ):
            self.fail(to_n, f"'cell_timeout_s' must be a number of seconds > 0, got {to_v!r}")
        iso_v, iso_n = get("isolation")
        if iso_v not in ISOLATIONS:
            self.fail(iso_n, f"'isolation' must be cell or backend, got {iso_v!r}")
        if accuracy_v and data.split(":", 1)[0] == "synthetic":
            self.fail(
                accuracy_n,
                "accuracy: true needs labelled data (data: digits or imagenet:DIR), not synthetic",
            )
        return Group(
            **lists,
            scenarios=scenarios,
            data=data,
            calib=calib,
            accuracy=accuracy_v,
            threads=int(threads_v),
            duration_s=float(dur_v),
            cell_timeout_s=None if to_v is None else float(to_v),
            isolation=str(iso_v),
        )

    def device(self, value: Any, node: Any) -> str:
        if not isinstance(value, str) or not DEVICE_NAME.match(value):
            self.fail(
                node, f"a device must be a name like local, rpi5 or jetson-orin, got {value!r}"
            )
        return str(value)

    def items(self, value: Any, node: Any, key: str) -> list[tuple[Any, Any]]:
        """A list value as (item, item node) pairs; a lone scalar counts as a one-item list."""
        import yaml

        if isinstance(node, yaml.SequenceNode):
            if not node.value:
                self.fail(node, f"'{key}' must not be empty")
            return [(self.value(n), n) for n in node.value]
        if value is None:
            self.fail(node, f"'{key}' must not be empty")
        if isinstance(value, list):  # a default
            return [(v, node) for v in value]
        return [(value, node)]

    def model(self, value: Any, node: Any) -> ModelRef:
        if isinstance(value, str):
            return ModelRef(name=self.path_or_name(value))
        if isinstance(value, dict):
            bad = [k for k in value if k not in MODEL_KEYS]
            if bad:
                self.fail(
                    node,
                    f"unknown model key(s) {bad}; a model mapping takes {', '.join(MODEL_KEYS)}",
                )
            if not isinstance(value.get("name"), str):
                self.fail(node, "a model mapping needs 'name' (a zoo name or a model file)")
            return ModelRef(
                name=self.path_or_name(value["name"]),
                arch=value.get("arch"),
                weights=None
                if value.get("weights") is None
                else self.path_or_name(str(value["weights"])),
            )
        self.fail(node, f"a model must be a name or a mapping, got {value!r}")

    def path_or_name(self, text: str) -> str:
        """Resolve a relative file path against the experiment's folder when it exists there."""
        if self.base_dir is not None and ("/" in text or "." in Path(text).name):
            candidate = self.base_dir / text
            if candidate.exists():
                return str(candidate.resolve())
        return text

    def backend(self, value: Any, node: Any) -> str:
        from edgequant.backends import backend_names, canonical_name

        name = canonical_name(str(value))
        known = backend_names()
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self.fail(node, f"unknown backend {value!r}{hint}; known: {', '.join(known)}")
        return name

    def scheme(self, value: Any, node: Any) -> SchemeRef:
        if not isinstance(value, str | dict):
            self.fail(node, f"a scheme must be a name or a mapping, got {value!r}")
        spec: str | dict[str, Any] = value
        if isinstance(value, str) and value.endswith((".yaml", ".yml")):
            spec = self.path_or_name(value)
        try:
            scheme = get_scheme(spec)
        except ValidationError as e:
            self.fail(node, str(e))
        return SchemeRef(scheme=scheme, spec=spec)

    def scenario(self, value: Any, node: Any) -> str:
        by_lower = {s.lower(): s for s in SCENARIOS}
        name = by_lower.get(str(value).lower())
        if name is None:
            self.fail(
                node, f"unknown scenario {value!r}; MLPerf scenarios are {', '.join(SCENARIOS)}"
            )
        return str(name)

    def dataset(self, value: Any, node: Any, key: str) -> str:
        """``KIND[:PATH]`` as ``edgequant bench --data`` takes it; a relative path is taken from
        the experiment's folder when it exists there."""
        if not isinstance(value, str) or not value:
            self.fail(
                node,
                f"'{key}' must be a dataset name like synthetic, digits, imagenet:DIR or npy:FILE",
            )
        kind, _, path = str(value).partition(":")
        if kind not in DATA_KINDS:
            close = difflib.get_close_matches(kind, DATA_KINDS, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self.fail(
                node,
                f"unknown dataset kind {kind!r} in '{key}'{hint}; "
                "use synthetic, digits, imagenet:DIR or npy:FILE",
            )
        needs = {"imagenet": "a folder: imagenet:DIR", "npy": "a file: npy:FILE.npy"}
        if kind not in needs:
            return str(value)
        if not path:
            self.fail(node, f"'{key}: {kind}' needs {needs[kind]}")
        if self.base_dir is not None and not Path(path).is_absolute():
            candidate = self.base_dir / path
            if candidate.is_dir() if kind == "imagenet" else candidate.is_file():
                path = str(candidate.resolve())
        return f"{kind}:{path}"


__all__ = [
    "DATA_KINDS",
    "ISOLATIONS",
    "SCENARIOS",
    "Cell",
    "Experiment",
    "Group",
    "ModelRef",
    "SchemeRef",
    "check_device_name",
    "load_experiment",
    "parse_experiment",
    "with_devices",
]
