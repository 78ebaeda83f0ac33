"""The backend contract: one narrow protocol every runtime implements, and one registry.

A backend turns ``(model, scheme, calibration)`` into an :class:`Artifact` on disk with the
runtime's **own** quantizer, and loads an artifact into a :class:`Session` that takes float NCHW
batches and returns float logits, whatever the artifact holds inside.

The runtime library is imported inside the backend module's methods, never at import time, so
``import edgequant`` stays light and a missing runtime is reported, not crashed on.

``prepare`` is written once, here (:meth:`Backend.prepare`): require → check_supported →
:func:`check_calibration` → bias correction where the runtime's quantizer has none → the
runtime's hooks ``_convert`` → ``_quantize`` → ``_save`` → ``_describe`` → ``artifact.json``
(with the CPU profile it was built on). Each runtime is one package, ``backends/<runtime>/``:
``backend.py`` (the class and its hooks) and, as it needs them, ``quantize.py`` (the runtime's
quantizer), ``session.py``, ``inspect.py`` and ``config.py`` (fixed choices, per-CPU ones
included). Adding a runtime = one package, one line in ``_BUILTIN`` below (or
:func:`register_backend`) and one subclass of ``tests/backends/contract.py``'s contract class.

Example:
    >>> from edgequant.backends import get_backend, backend_names
    >>> "onnxruntime" in backend_names()
    True
    >>> be = get_backend("onnxruntime")
    >>> be.supports(get_scheme("w8a8")) is None   # doctest: +SKIP
    True
"""

from __future__ import annotations

import difflib
import importlib
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from edgequant.backends.artifact import METADATA_NAME, Artifact
from edgequant.backends.inspection import InspectReport, OpInfo
from edgequant.errors import (
    ArtifactError,
    BackendUnavailableError,
    BenchmarkError,
    UnsupportedError,
    ValidationError,
)
from edgequant.quant.scheme import Scheme

if TYPE_CHECKING:
    from edgequant.backends.int8_cpu import Int8Plan
    from edgequant.models.base import Model


class Session(ABC):
    """A loaded artifact, ready to run. Float NCHW in, float logits out.

    ``run`` is the latency path (one batch, synchronous). ``run_offline`` is the throughput path
    that Offline/Server scenarios use; the default runs batches one after another, runtimes with a
    better throughput path (OpenVINO's AsyncInferQueue) override it.
    """

    #: the batch size the artifact was built for, or None when any batch size runs
    fixed_batch: int | None = None
    #: precision actually executed, as the runtime reports it (e.g. "f32", "bf16", "i8")
    executed_precision: str | None = None
    #: the samples of :meth:`prepare_samples`
    _samples: np.ndarray | None = None

    @abstractmethod
    def run(self, batch: np.ndarray) -> np.ndarray:
        """Run one float32 NCHW batch; return float32 logits (N, classes)."""

    def run_offline(
        self, batches: Sequence[np.ndarray], on_done: Callable[[int, np.ndarray], None]
    ) -> None:
        """Run many batches as fast as possible; call ``on_done(i, logits)`` once for every
        batch, in any order, from any thread, at the latest before returning (a runtime may
        answer a batch when its request is next reused rather than the moment it finishes).

        Callers keep every batch alive and unchanged until its ``on_done`` has been called, so
        implementations may read the batches without copying them.
        """
        for i, b in enumerate(batches):
            on_done(i, self.run(b))

    def prepare_samples(self, samples: np.ndarray | None) -> None:
        """The samples a benchmark will run one at a time with :meth:`run_sample` (a QSL's
        loaded float32 NCHW array, kept alive and unchanged until the next call), or None when
        they are released. Called when LoadGen loads them, outside the timed queries: a runtime
        that can wrap each sample once for its input (OpenVINO) does it here.

        Example:
            >>> sess.prepare_samples(np.zeros((4, 3, 224, 224), np.float32))   # doctest: +SKIP
            >>> sess.run_sample(2).shape                                       # doctest: +SKIP
            (1, 1000)
        """
        self._samples = samples

    def run_sample(self, row: int) -> np.ndarray:
        """Row ``row`` of the prepared samples as a batch of one: the SingleStream path."""
        samples = self._samples
        if samples is None:
            raise BenchmarkError("run_sample before prepare_samples: no samples are loaded")
        return self.run(samples[row : row + 1])

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release runtime resources."""

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(kw_only=True)
class Build:
    """What :meth:`Backend.prepare` hands its hooks: the inputs, where to write, the metadata.

    ``work_dir`` is a temporary directory inside ``out_dir``, removed once :meth:`Backend._save`
    has returned; ``meta`` becomes the artifact's ``artifact.json``.
    """

    model: Model
    scheme: Scheme
    calibration: np.ndarray | None
    out_dir: Path
    work_dir: Path
    meta: dict[str, Any]
    #: values the hooks hand each other (timers, intermediate results); never saved
    state: dict[str, Any] = field(default_factory=dict)


def check_calibration(
    calibration: np.ndarray | None, model: Model, scheme: Scheme
) -> np.ndarray | None:
    """Calibration samples as contiguous float32 NCHW, checked once for every backend.

    Static schemes need them; whatever is given is checked against the model's input (non-empty,
    right shape, finite) by :func:`edgequant.data.calibration.validate_batch`.

    Example:
        >>> check_calibration(None, model, get_scheme("w8a8"))  # doctest: +SKIP
        Traceback (most recent call last):
        ValidationError: the calibration set is empty: scheme w8a8 is static and needs ...
    """
    from edgequant.data.calibration import validate_batch

    if calibration is None:
        if scheme.is_static:
            raise ValidationError(
                f"the calibration set is empty: scheme {scheme.name} is static and needs "
                "calibration samples (pass --calib DATASET)"
            )
        return None
    x = validate_batch(calibration, model.input_spec, what="calibration data")
    return np.ascontiguousarray(x, dtype=np.float32)


def installed_versions(*dists: str, missing: str | None = None) -> dict[str, str]:
    """The installed version of each pip distribution, what every :meth:`Backend.versions` records.

    Read from the distribution's metadata (nothing imported); a module of that name installed
    without pip metadata (``onnxruntime-gpu``, a system TensorRT) is imported for its
    ``__version__``. One that is not installed is left out, or reported as ``missing``.

    Example:
        >>> installed_versions("numpy")["numpy"] == np.__version__
        True
        >>> installed_versions("no-such-dist-eq", missing="not installed")
        {'no-such-dist-eq': 'not installed'}
    """
    import importlib.util
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str] = {}
    for dist in dists:
        try:
            out[dist] = version(dist)
            continue
        except PackageNotFoundError:
            pass
        module = dist.replace("-", "_")
        found = module.isidentifier() and importlib.util.find_spec(module) is not None
        value = getattr(importlib.import_module(module), "__version__", None) if found else None
        if value is not None or missing is not None:
            out[dist] = str(value if value is not None else missing)
    return out


def mixed_bits_reason(scheme: Scheme, runtime: str) -> str | None:
    """Why a runtime that quantizes every layer's weights at one width cannot take a scheme
    whose ``layer_bits`` mix widths (None when it does not mix them).

    Example:
        >>> from edgequant.quant.scheme import get_scheme
        >>> s = get_scheme({"base": "w4a8", "layer_bits": {"last": 8}})
        >>> mixed_bits_reason(s, "ORT").split(":")[0], mixed_bits_reason(get_scheme("w4a8"), "ORT")
        ('per-layer weight bits (4, 8)', None)
    """
    bits = sorted(scheme.weight_bits_used)
    if len(bits) < 2:
        return None
    return (
        f"per-layer weight bits ({', '.join(map(str, bits))}): {runtime} quantizes every layer's "
        "weights at one width; study mixed widths with the sim backend"
    )


class Backend(ABC):
    """One runtime. Subclasses set the class variables, the availability/capability methods,
    ``load`` and the build hooks ``_convert``/``_quantize``/``_save`` (``prepare`` is shared).

    Example:
        >>> be = get_backend("sim")
        >>> be.name, be.simulated
        ('sim', True)
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    #: pip command that makes the runtime available
    install_hint: ClassVar[str] = ""
    #: True for the fake-quant simulator: its speed is not representative
    simulated: ClassVar[bool] = False
    #: True when prepare() needs the PyTorch module (a user's .onnx file cannot be used)
    needs_torch_module: ClassVar[bool] = True
    #: bump when this backend builds its artifacts differently (a quantizer default changed):
    #: part of the cache key, so only this backend's cached artifacts are rebuilt
    recipe: ClassVar[int] = 1
    #: True when one build uses every core for long (AOTInductor's C++ compiles): a sweep's
    #: build-ahead lanes run one such build at a time, beside the lighter builds of other runtimes
    exclusive_build: ClassVar[bool] = False
    #: True when an artifact built on one machine runs unchanged on another of the same
    #: architecture and INT8 class (ONNX, OpenVINO IR, .tflite files): a fleet sweep builds it
    #: once on the submitting host and ships it; False: each device builds its own (AOTInductor)
    portable_artifacts: ClassVar[bool] = False
    #: True when the runtime's quantizer has no bias correction of its own: prepare() corrects
    #: the float model's biases for the expected weight rounding of static schemes first
    corrects_bias: ClassVar[bool] = False
    #: True when load() runs a plain ONNX file built elsewhere (QAT's QDQ export), see load_onnx
    loads_onnx: ClassVar[bool] = False
    #: the simulator's calibration method for the activation ranges this runtime's quantizer
    #: computes when the scheme says ``default`` (None: what the simulator's ``default`` is), so
    #: the rounding techniques learn, and a sim targeting this runtime predicts, on those ranges
    default_ranges: ClassVar[str | None] = None

    # --- availability ------------------------------------------------------------------------
    @abstractmethod
    def unavailable_reason(self) -> str | None:
        """None when the runtime can be used here, else why not (with the install hint)."""

    def available(self) -> bool:
        return self.unavailable_reason() is None

    def require(self) -> None:
        """Raise :class:`BackendUnavailableError` with the install hint if not available."""
        reason = self.unavailable_reason()
        if reason is not None:
            raise BackendUnavailableError(f"backend {self.name!r} is not available: {reason}")

    @abstractmethod
    def versions(self) -> dict[str, str]:
        """Versions of the runtime and its quantizer, e.g. ``{"onnxruntime": "1.31.1"}``."""

    # --- capability ---------------------------------------------------------------------------
    @abstractmethod
    def supports(self, scheme: Scheme, model: Model | None = None) -> str | None:
        """None when the scheme (on this model) can be executed, else the reason (shown as n/a)."""

    def check_supported(self, scheme: Scheme, model: Model | None = None) -> None:
        reason = self.supports(scheme, model)
        if reason is not None:
            raise UnsupportedError(f"{self.name} cannot run {scheme.name}: {reason}")

    # --- work: one template, narrow hooks ------------------------------------------------------
    def prepare(
        self, model: Model, scheme: Scheme, calibration: np.ndarray | None, out_dir: Path
    ) -> Artifact:
        """Build the artifact in ``out_dir`` with the runtime's own quantizer; save its metadata.

        The steps are the same for every runtime: check availability and the scheme, validate
        the calibration data (:func:`check_calibration`), correct biases where the runtime's
        quantizer has none (:attr:`corrects_bias`), then the runtime's hooks — :meth:`_convert`,
        :meth:`_quantize`, :meth:`_save` — and :meth:`_describe` for what the artifact executes.
        ``calibration`` is float32 NCHW samples, preprocessed; None for schemes that need none.

        Example:
            >>> art = get_backend("sim").prepare(model, get_scheme("w8a8"), calib, Path("out"))  # doctest: +SKIP
            >>> art.metadata["cpu_profile"]["int8_class"]                                        # doctest: +SKIP
            'avx512-vnni'
        """
        from edgequant.hw.cpu import cpu_profile

        self.require()
        self.check_supported(scheme, model)
        # bad calibration data fails before seconds of conversion are spent
        calibration = check_calibration(calibration, model, scheme)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        meta: dict[str, Any] = {"cpu_profile": cpu_profile().to_dict()}
        plan = self.int8_plan(model, scheme, calibration)
        model = self._techniques(model, scheme, calibration, plan)
        for key in ("techniques_applied", "techniques_skipped"):
            if model.info.get(key):
                meta[key] = model.info[key]
        if self.corrects_bias and scheme.is_static:
            from edgequant.quant.bias_correction import corrected_for_quantizer

            model, meta["bias_correction"] = corrected_for_quantizer(
                model,
                self.runtime_scheme(scheme),
                calibration,
                weight_bits=plan.weight_bits() if plan else None,
                float_layers=plan.float_layers() if plan else (),
            )
        with tempfile.TemporaryDirectory(prefix=f"eq-{self.name}-", dir=out_dir) as tmp:
            build = Build(
                model=model,
                scheme=scheme,
                calibration=calibration,
                out_dir=out_dir,
                work_dir=Path(tmp),
                meta=meta,
                state={"int8_plan": plan},
            )
            converted = self._convert(build)
            path = self._save(build, self._quantize(build, converted))
        art = Artifact(path=path, backend=self.name, model=model.name, scheme=scheme, metadata=meta)
        self._describe(art)
        art.save_metadata()
        return art

    def int8_plan(
        self, model: Model, scheme: Scheme, calibration: np.ndarray | None
    ) -> Int8Plan | None:
        """This CPU class's INT8 treatment of a static build (:mod:`edgequant.backends.int8_cpu`:
        where int16 pair sums saturate on the calibration data, the remedy); None otherwise."""
        from edgequant.backends.int8_cpu import plan_int8

        if not scheme.is_static or scheme.weights is None or self.simulated:
            return None
        return plan_int8(self.name, model, scheme, calibration)

    def cache_facets(self) -> dict[str, Any]:
        """What decides this backend's artifacts besides versions (the INT8 class its kernels
        use here, the sim's target): part of the artifact cache key."""
        from edgequant.backends.int8_cpu import cache_facets

        return cache_facets(self.name)

    def runtime_scheme(self, scheme: Scheme) -> Scheme:
        """The scheme as this runtime's quantizer really applies it: each layer's weight bits
        (default: as written; LiteRT keeps depthwise convs at 8 bits in 4-bit schemes) and, for
        calibration ``default``, the kind of activation range it computes (:attr:`default_ranges`).
        The rounding techniques and bias correction work on it, so they target the bits and the
        activation ranges the runtime uses; a sim targeting this runtime simulates it.

        Example:
            >>> get_backend("onnxruntime").runtime_scheme(get_scheme("w8a8")).calibration.method
            'minmax'
        """
        cal = scheme.calibration
        if self.default_ranges is None or not scheme.is_static or cal.method != "default":
            return scheme
        return scheme.with_(calibration=replace(cal, method=self.default_ranges))

    def weight_grid(self, scheme: Scheme, plan: Int8Plan | None) -> Any:
        """AdaRound's target grid here (``WeightGrid``, per-layer function, None = the scheme's)."""
        from edgequant.backends.int8_cpu import weight_grid_for

        return None if plan is None else weight_grid_for(plan, scheme)

    def _techniques(
        self, model: Model, scheme: Scheme, calibration: np.ndarray | None, plan: Int8Plan | None
    ) -> Model:
        """The scheme's techniques with AdaRound/GPTQ on this runtime's grid (no-op when applied;
        a scheme without a rounding technique had them applied by the artifact cache)."""
        from edgequant.quant.scheme import ROUNDING_TECHNIQUES

        if not set(ROUNDING_TECHNIQUES) & set(scheme.techniques):
            return model
        return self.transformed(model, scheme, calibration, plan)

    def transformed(
        self, model: Model, scheme: Scheme, calibration: np.ndarray | None, plan: Int8Plan | None
    ) -> Model:
        """``model`` after all the scheme's techniques, as this runtime is given it: on its
        activation ranges (:meth:`runtime_scheme`), its weight grid per layer, the layers its
        ``plan`` keeps in float left as they are (no-op when already applied)."""
        if model.info.get("techniques_applied"):
            return model
        from edgequant.quant.transforms import apply_techniques

        grid = self.weight_grid(scheme, plan)
        return apply_techniques(
            model,
            self.runtime_scheme(scheme),
            calibration,
            adaround_grid=grid,
            float_layers=plan.float_layers() if plan else (),
        )

    @abstractmethod
    def _convert(self, build: Build) -> Any:
        """The float model in the runtime's own form (an ONNX file, an ``ov.Model``, ...)."""

    def _quantize(self, build: Build, converted: Any) -> Any:
        """The runtime's quantizer applied to ``converted`` as the scheme asks (float: as is)."""
        return converted

    @abstractmethod
    def _save(self, build: Build, quantized: Any) -> Path:
        """Write the artifact's model file(s) into ``build.out_dir``; return the file to load."""

    def _describe(self, artifact: Artifact) -> None:
        """Record what the artifact executes (``executed_precision``, ``inspect_summary``)."""
        artifact.metadata.setdefault("inspect_summary", self.inspect(artifact).summary())

    @abstractmethod
    def load(self, artifact: Artifact, threads: int) -> Session:
        """Load an artifact into a session using ``threads`` CPU threads."""

    def onnx_artifact(self, path: Path | str, scheme: Scheme | None = None) -> Artifact:
        """An ONNX file written outside :meth:`prepare` (e.g. a QAT QDQ export) as an artifact
        of this backend, for :meth:`load` and :meth:`inspect`. Needs ``loads_onnx``.

        ``scheme`` says what the file holds for ``inspect`` (default fp32; a QDQ file: w8a8).

        Example:
            >>> be = next(get_backend(n) for n in backend_names() if get_backend(n).loads_onnx)
            >>> be.inspect(be.onnx_artifact("qat.onnx", get_scheme("w8a8")))   # doctest: +SKIP
        """
        from edgequant.quant.scheme import get_scheme

        if not self.loads_onnx:
            raise UnsupportedError(f"{self.name} does not run ONNX files built outside edgequant")
        p = Path(path)
        if not p.is_file():
            raise ArtifactError(f"ONNX file {p} does not exist")
        return Artifact(
            path=p,
            backend=self.name,
            model=p.stem,
            scheme=scheme or get_scheme("fp32"),
            metadata={"format": "onnx", "inference_precision_hint": "f32"},
        )

    def load_onnx(self, path: Path | str, threads: int) -> Session:
        """A session over an ONNX file written outside :meth:`prepare` (see :meth:`onnx_artifact`).

        Example:
            >>> with be.load_onnx("model.onnx", threads=2) as s:   # doctest: +SKIP
            ...     logits = s.run(x)
        """
        return self.load(self.onnx_artifact(path), threads)

    def specialize(self, artifact: Artifact, batch_sizes: Iterable[int] | None = None) -> None:
        """Get ``artifact`` ready to run these batch sizes at full speed, before anything is timed.

        Runtimes with static-shape compiled artifacts (PyTorch's AOTInductor packages) compile
        what is missing once and keep it with the artifact; ``None`` means the backend's default
        sizes. The others run any batch size as built and need nothing.

        Example:
            >>> get_backend("onnxruntime").specialize(art, [1])   # doctest: +SKIP
        """
        return None

    def inspect(self, artifact: Artifact) -> InspectReport:
        """Which ops run in integer precision, which in float, and why."""
        return InspectReport(
            artifact=str(artifact.path),
            backend=self.name,
            scheme=artifact.scheme.name,
            notes=[f"{self.name} has no inspector yet"],
        )

    def layer_outputs(
        self, artifact: Artifact, batch: np.ndarray, names: Iterable[str] | None = None
    ) -> dict[str, np.ndarray]:
        """The runtime's own output of each conv/linear layer on ``batch``, keyed by the fp32
        module's layer names (a :class:`edgequant.backends.inspection.LayerOutputs`); ``names``:
        the layers wanted (None: all it can match). Runtimes without intermediates raise.

        Example:
            >>> get_backend("sim").layer_outputs(art, x)   # doctest: +SKIP
            Traceback (most recent call last):
            UnsupportedError: sim is the simulator, so it has no per-layer view ...
        """
        if self.simulated:
            raise UnsupportedError(
                f"{self.name} is the simulator, so it has no per-layer view of a runtime: its "
                "per-layer prediction is the 'predicted dB' column when you debug a runtime's artifact"
            )
        raise UnsupportedError(
            f"{self.name} exposes no intermediate outputs to edgequant, so it has no per-layer "
            "view; debug an artifact of a runtime that does"
        )


# --- the registry ------------------------------------------------------------------------------
# name -> "module:Class"; modules are imported only when the backend is asked for.
_BUILTIN: dict[str, str] = {
    "pytorch": "edgequant.backends.pytorch.backend:PyTorchBackend",
    "onnxruntime": "edgequant.backends.onnxruntime.backend:OnnxRuntimeBackend",
    "openvino": "edgequant.backends.openvino.backend:OpenVinoBackend",
    "litert": "edgequant.backends.litert.backend:LiteRtBackend",
    "tensorrt": "edgequant.backends.tensorrt.backend:TensorRtBackend",
    "sim": "edgequant.backends.sim.backend:SimBackend",
}
_ALIASES = {
    "ort": "onnxruntime",
    "ov": "openvino",
    "tflite": "litert",
    "torch": "pytorch",
    "trt": "tensorrt",
}
_EXTRA: dict[str, type[Backend]] = {}
_INSTANCES: dict[str, Backend] = {}


def register_backend(cls: type[Backend]) -> type[Backend]:
    """Register a third-party backend class (usable as a decorator)."""
    _EXTRA[cls.name] = cls
    _INSTANCES.pop(cls.name, None)
    return cls


def backend_names() -> list[str]:
    """All known backend names, built-in first."""
    return list(_BUILTIN) + [n for n in _EXTRA if n not in _BUILTIN]


def runtime_names(selected: str | None = None) -> list[str]:
    """``selected`` (comma-separated names) or every available runtime that is not simulated.

    Example:
        >>> runtime_names("onnxruntime,litert")
        ['onnxruntime', 'litert']
    """
    if selected:
        return [n.strip() for n in selected.split(",") if n.strip()]
    return [
        n for n in backend_names() if not get_backend(n).simulated and get_backend(n).available()
    ]


def canonical_name(name: str) -> str:
    """The registry's name for a backend name or alias (``ort`` -> ``onnxruntime``).

    Unknown names are returned lower-cased as they are; :func:`get_backend` reports them.

    Example:
        >>> canonical_name("OV")
        'openvino'
    """
    key = name.lower()
    return _ALIASES.get(key, key)


def get_backend(name: str) -> Backend:
    """The backend instance for a name (or alias); unknown names list the close matches."""
    key = canonical_name(name)
    if key in _INSTANCES:
        return _INSTANCES[key]
    if key in _EXTRA:
        inst: Backend = _EXTRA[key]()
    elif key in _BUILTIN:
        mod_name, cls_name = _BUILTIN[key].split(":")
        module = importlib.import_module(mod_name)
        inst = getattr(module, cls_name)()
    else:
        close = difflib.get_close_matches(key, backend_names() + list(_ALIASES), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValidationError(
            f"unknown backend {name!r}{hint} (known: {', '.join(backend_names())})"
        )
    _INSTANCES[key] = inst
    return inst


__all__ = [
    "METADATA_NAME",
    "Artifact",
    "Backend",
    "Build",
    "InspectReport",
    "OpInfo",
    "Session",
    "backend_names",
    "canonical_name",
    "check_calibration",
    "get_backend",
    "installed_versions",
    "register_backend",
]
