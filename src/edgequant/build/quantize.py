"""``quantize`` and ``inspect_artifact``: the Python functions behind ``edgequant quantize`` / ``inspect``.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> out = Path(tempfile.mkdtemp()) / "digits-w8a8"
    >>> art = quantize("digits_cnn", backend="onnxruntime", scheme="w8a8",
    ...                calibration="digits", output=out, cache_dir=tempfile.mkdtemp())
    >>> art.directory == out, art.metadata["calibration_samples"]
    (True, 200)
    >>> inspect_artifact(out).summary().split(";")[0]            # doctest: +ELLIPSIS
    '... convs in integer precision'
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgequant.backends.artifact import Artifact
from edgequant.build.calibration import CalibrationInput
from edgequant.console import log
from edgequant.errors import ValidationError

if TYPE_CHECKING:
    from edgequant.backends.base import Backend, InspectReport
    from edgequant.models.base import Model
    from edgequant.quant.scheme import Scheme


def resolve_model(
    model: Any,
    *,
    weights: str | Path | None = None,
    arch: str | None = None,
    pretrained: bool = True,
    input_options: Mapping[str, Any] | None = None,
    card: str | Path | None = None,
    example: np.ndarray | None = None,
) -> Model:
    """A :class:`~edgequant.models.base.Model` from a zoo name, a model file, an entry point
    ``package.module:factory``, a ``torch.nn.Module`` or a Model.

    An ``nn.Module`` takes its input shape from ``input_options["input_shape"]``, else from
    ``example`` (a calibration array), else from a ``input_shape`` attribute of the module.

    Example:
        >>> resolve_model("digits_cnn").name
        'digits_cnn'
        >>> import torch
        >>> resolve_model(torch.nn.Conv2d(3, 2, 1), input_options={"input_shape": "3,8,8"}).num_classes
        8
    """
    from edgequant.models.base import Model
    from edgequant.models.loader import load_model

    if isinstance(model, Model):
        if weights is not None or arch is not None:
            raise ValidationError("weights= and arch= apply to a model name or file, not a Model")
        return model
    if _is_module(model):
        return _module_model(model, dict(input_options or {}), example)
    if not isinstance(model, str | Path):
        raise ValidationError(
            "model must be a zoo name, a model file or an edgequant Model (or "
            f"package.module:factory, or a torch.nn.Module), got {type(model).__name__}"
        )
    return load_model(
        model,
        weights=weights,
        arch=arch,
        pretrained=pretrained,
        input_options=input_options,
        card=card,
    )


def _is_module(obj: Any) -> bool:
    mod = type(obj).__module__ or ""
    if not mod.startswith("torch") and not hasattr(obj, "state_dict"):
        return False
    import torch.nn as nn

    return isinstance(obj, nn.Module)


def _module_model(module: Any, options: dict[str, Any], example: np.ndarray | None) -> Model:
    """A user's in-memory ``nn.Module`` as a Model (its weights hashed for the cache key)."""
    from edgequant.models.image_input import given_chw
    from edgequant.models.loader import state_dict_hash
    from edgequant.models.sources import torch_model

    layout = str(options.get("layout", "NCHW")).upper()
    where = f"module {type(module).__name__}"
    chw = given_chw(where, options, layout)
    if chw is None and example is not None and example.ndim == 4:
        s = example.shape[1:]
        chw = (s[2], s[0], s[1]) if layout == "NHWC" else (s[0], s[1], s[2])
    if chw is None and getattr(module, "input_shape", None) is not None:
        chw = tuple(module.input_shape[-3:])
    if chw is None:
        raise ValidationError(
            f"{where}: give its input shape (input_options={{'input_shape': '3,224,224'}}), "
            "a calibration array, or an input_shape attribute on the module"
        )
    name = type(module).__name__.lower()
    digest = state_dict_hash(module.state_dict())
    return torch_model(
        module,
        where=where,
        name=name,
        source_format="module",
        chw=chw,  # type: ignore[arg-type]
        options=options,
        weights=f"in-memory {type(module).__name__}",
        weights_hash=digest,
        info={},
    )


@dataclass(frozen=True)
class QuantizeResult:
    """What :func:`quantize_model` did: the artifact (copied to ``output`` when one was given),
    the cached one it came from, the model and the notes on the build."""

    artifact: Artifact
    cached: Artifact
    model: Model
    notes: list[str]

    def to_dict(self) -> dict[str, Any]:
        """The document ``edgequant quantize --json`` prints."""
        meta = self.artifact.metadata
        fp32_w, w = meta.get("fp32_weight_bytes"), meta.get("weight_bytes")
        return {
            "artifact": str(self.artifact.path),
            "directory": str(self.artifact.directory),
            "cached_at": str(self.cached.directory),
            "backend": self.artifact.backend,
            "model": self.model.name,
            "scheme": self.artifact.scheme.name,
            "size_bytes": self.artifact.size_bytes,
            "weight_bytes": w,
            "fp32_weight_bytes": fp32_w,
            "weight_reduction_vs_fp32": round(fp32_w / w, 2) if fp32_w and w else None,
            "executed_precision": meta.get("executed_precision"),
            "calibration_samples": meta.get("calibration_samples"),
            "inspect_summary": meta.get("inspect_summary"),
            "choices": meta.get("choices", []),
            "model_source": meta.get("model_source"),
        }


def quantize_model(
    model: Any,
    *,
    backend: Backend | str,
    scheme: Scheme | str = "w8a8",
    calibration: CalibrationInput = None,
    calibration_samples: int | None = None,
    cache_dir: Path | str | None = None,
    force: bool = False,
    output: Path | str | None = None,
    weights: str | Path | None = None,
    arch: str | None = None,
    pretrained: bool = True,
    progress: bool = True,
    input_options: Mapping[str, Any] | None = None,
    card: str | Path | None = None,
    check: bool = True,
) -> QuantizeResult:
    """:func:`quantize`, returning the cached artifact and the build notes beside the result.

    ``check`` (default on) records ``model_source`` in the artifact's metadata: the source
    format, the conversion path and the fp32-vs-fp32 check of the conversion
    (:func:`edgequant.build.source.model_source`).
    """
    from edgequant.backends.base import get_backend
    from edgequant.build.source import record_model_source, require_source
    from edgequant.build.stage import build_artifact
    from edgequant.quant.scheme import get_scheme

    be = get_backend(backend) if isinstance(backend, str) else backend
    sch = get_scheme(scheme)
    if calibration_samples is not None:
        if calibration_samples < 1:
            raise ValidationError(f"--calib-size must be >= 1, got {calibration_samples}")
        sch = sch.with_(calibration=replace(sch.calibration, samples=calibration_samples))
    be.require()
    if output is not None:
        check_output_dir(Path(output))  # before the build, not after it
    m = resolve_model(
        model,
        weights=weights,
        arch=arch,
        pretrained=pretrained,
        input_options=input_options,
        card=card,
        example=calibration if isinstance(calibration, np.ndarray) else None,
    )
    require_source(be, m)
    # a deployable artifact: the runtime's default batch sizes compiled (batch_sizes=None)
    built = build_artifact(
        be, m, sch, calibration, cache_dir=cache_dir, force=force, progress=progress, check=False
    )
    notes = list(built.notes)
    if built.calibration_ignored:
        notes.append(f"{sch.name} needs no calibration; --calib ignored")
    if check:
        record_model_source(be, m, built.artifact, calibration, cache_dir)
    src = built.artifact.metadata.get("model_source") or {}
    if src.get("check", {}).get("faithful") is False:
        c = src["check"]
        notes.append(
            f"the conversion is not faithful: cosine {c['cosine_min']}, max error "
            f"{c['max_abs_error']:.3g} against {c['reference']}"
        )
    final = built.artifact
    if output is not None:
        final = Artifact.load(copy_artifact(built.artifact.directory, Path(output)))
    return QuantizeResult(artifact=final, cached=built.artifact, model=m, notes=notes)


def quantize(
    model: Any,
    *,
    backend: Backend | str,
    scheme: Scheme | str = "w8a8",
    calibration: CalibrationInput = None,
    cache_dir: Path | str | None = None,
    force: bool = False,
    output: Path | str | None = None,
    **options: Any,
) -> QuantizedArtifact:
    """Quantize ``model`` for ``backend`` with the runtime's own quantizer; return the artifact
    as a :class:`QuantizedArtifact` (``.run(x)``, ``.inspect()``, ``.benchmark(scenario=...)``).

    - ``model``: a zoo name (``edgequant models``), a model file (``.onnx``, ``.pt2``,
      ``.tflite``, an IR ``.xml``, or ``.pth`` with ``arch=``), an entry point
      ``package.module:factory``, a ``torch.nn.Module`` (no file needed) or an
      :class:`~edgequant.models.base.Model`;
    - ``scheme``: a scheme name (``w8a8``, ``fp16``, …), a YAML file or a
      :class:`~edgequant.quant.scheme.Scheme`;
    - ``calibration``: for static schemes, a dataset spec (``digits``, ``imagenet:DIR``,
      ``synthetic``, ``npy:FILE``; its train split), or a float32 NCHW array of preprocessed
      samples; ignored for schemes that need none;
    - ``output``: a directory the artifact is copied to (absent, empty or a previous artifact);
      without it the artifact in the cache (``cache_dir``, default ``$EDGEQUANT_CACHE``) is
      returned. ``force`` rebuilds a cached artifact.

    Further ``options``: ``calibration_samples`` (default: the scheme's), ``weights``, ``arch``,
    ``pretrained`` (False: random weights), ``progress``, ``input_options`` (``input_shape``,
    ``layout``, ``mean``, ``std``, ``scale``, ``resize``, ``color``, ... as the CLI's options),
    ``card`` (a model card file), ``check`` (False: skip the conversion check).

    Example:
        >>> import tempfile
        >>> import numpy as np
        >>> x = np.random.default_rng(0).standard_normal((16, 1, 32, 32)).astype(np.float32)
        >>> art = quantize("digits_cnn", backend="onnxruntime", scheme="w8a8", calibration=x,
        ...                cache_dir=tempfile.mkdtemp(), progress=False)
        >>> art.scheme.name, art.metadata["calibration_samples"]
        ('w8a8', 16)
    """
    allowed = {"calibration_samples", "weights", "arch", "pretrained", "progress"}
    allowed |= {"input_options", "card", "check"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValidationError(
            f"quantize() got unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(allowed))}"
        )
    result = quantize_model(
        model,
        backend=backend,
        scheme=scheme,
        calibration=calibration,
        cache_dir=cache_dir,
        force=force,
        output=output,
        **options,
    )
    for note in result.notes:
        log(f"note: {note}")
    return QuantizedArtifact.of(result.artifact, result.model)


@dataclass(kw_only=True, eq=False)
class QuantizedArtifact(Artifact):
    """What :func:`quantize` returns: an :class:`~edgequant.backends.base.Artifact` (``path``,
    ``backend``, ``scheme``, ``metadata``, ``directory``, ...) plus what to do with it.

    - ``run(x)``: float32 samples in (``(N, *input_spec.tensor_shape)``), float outputs out;
    - ``inspect()``: which ops run in integer precision (an :class:`InspectReport`);
    - ``benchmark(scenario=..., **options)``: one LoadGen run (a ``ResultRecord``);
    - ``source``: the :class:`~edgequant.models.base.Model` it was built from.

    Example:
        >>> import tempfile, numpy as np, torch
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(),
        ...                           torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        ...                           torch.nn.Linear(8, 4))
        >>> x = np.random.default_rng(0).standard_normal((8, 3, 16, 16)).astype(np.float32)
        >>> art = quantize(net, backend="onnxruntime", scheme="w8a8", calibration=x,
        ...                cache_dir=tempfile.mkdtemp(), progress=False)
        >>> art.run(x[:2]).shape, art.model_source["check"]["faithful"]
        ((2, 4), True)
        >>> art.inspect().summary()
        '1/1 convs in integer precision'
    """

    source: Model | None = field(default=None, repr=False)
    _session: Any = field(default=None, init=False, repr=False)

    @classmethod
    def of(cls, artifact: Artifact, model: Model | None) -> QuantizedArtifact:
        """The handle over an artifact built from ``model``."""
        # every field the artifact was made with, whatever fields Artifact gains later
        made = {f.name: getattr(artifact, f.name) for f in fields(Artifact) if f.init}
        return cls(**made, source=model)

    @property
    def model_source(self) -> dict[str, Any] | None:
        """The source format, conversion path and its numerical check (see :mod:`edgequant.build.source`)."""
        return self.metadata.get("model_source")

    def run(self, x: np.ndarray, *, threads: int = 1) -> np.ndarray:
        """Run float32 samples through the artifact (one session kept open); return the outputs."""
        from edgequant.backends.base import get_backend

        if self._session is None:
            self._session = get_backend(self.backend).load(self, threads)
        batch = np.ascontiguousarray(x, dtype=np.float32)
        fixed = self._session.fixed_batch
        if fixed is None or len(batch) == fixed:
            return np.asarray(self._session.run(batch))
        return np.concatenate([self._session.run(batch[i : i + 1]) for i in range(len(batch))])

    def inspect(self) -> InspectReport:
        """:func:`inspect_artifact` of this artifact."""
        return inspect_artifact(self)

    def benchmark(self, scenario: str = "SingleStream", **options: Any) -> Any:
        """One MLPerf LoadGen run of this artifact (:func:`edgequant.benchmark`'s options)."""
        import edgequant  # the public API: the build stage itself never depends on the harness

        options.setdefault("progress", False)
        return edgequant.benchmark(self.source, scenario=scenario, artifact=self.path, **options)

    def close(self) -> None:
        """Close the session :meth:`run` opened."""
        if self._session is not None:
            self._session.close()
            self._session = None


def inspect_artifact(artifact: Artifact | Path | str) -> InspectReport:
    """Which ops of an artifact run in integer precision, which fall back to float, and why.

    ``artifact`` is an :class:`~edgequant.backends.base.Artifact` or the path of an artifact
    directory, its model file or its ``artifact.json``. The runtime that built it must be
    installed (it is asked for its own view of the compiled model).

    Example:
        >>> import tempfile
        >>> art = quantize("digits_cnn", backend="onnxruntime", scheme="w8-dyn",
        ...                cache_dir=tempfile.mkdtemp(), progress=False)
        >>> report = inspect_artifact(art)
        >>> report.scheme, len(report.convs) > 0
        ('w8-dyn', True)
    """
    from edgequant.backends.base import get_backend

    art = artifact if isinstance(artifact, Artifact) else Artifact.load(artifact)
    be = get_backend(art.backend)
    be.require()
    report = be.inspect(art)
    note = techniques_note(art.metadata)
    if note:
        report.notes.insert(0, note)
    return report


def techniques_note(meta: dict[str, Any]) -> str | None:
    """What was done to the fp32 model before the runtime's quantizer saw it, or why the
    scheme's optional techniques were not (``artifact.json``); None when there was nothing.

    Example:
        >>> print(techniques_note({"techniques_applied": ["bn_fold", "gptq", "bias_correction"]}))
        before quantizing: bn_fold, gptq, bias_correction (weights already on the runtime's grid)
        >>> techniques_note({"techniques_skipped": "not applied: no calibration data"})
        'techniques: not applied: no calibration data'
    """
    from edgequant.quant.scheme import ROUNDING_TECHNIQUES

    applied = meta.get("techniques_applied") or []
    if applied:
        on_grid = set(ROUNDING_TECHNIQUES) & set(applied)
        return f"before quantizing: {', '.join(applied)}" + (
            " (weights already on the runtime's grid)" if on_grid else ""
        )
    skipped = meta.get("techniques_skipped")
    return f"techniques: {skipped}" if skipped else None


def check_output_dir(out: Path) -> bool:
    """Refuse an ``output`` that is a file or a non-empty folder holding no artifact; True when
    it holds a previous artifact (which a copy replaces).

    Example:
        >>> import tempfile
        >>> check_output_dir(Path(tempfile.mkdtemp()) / "new")
        False
    """
    from edgequant.backends.base import METADATA_NAME

    if not out.exists():
        return False
    if not out.is_dir():
        raise ValidationError(f"-o {out} is a file; give a directory")
    if not any(out.iterdir()):
        return False
    if not (out / METADATA_NAME).is_file():
        raise ValidationError(
            f"-o {out} is a non-empty directory that holds no artifact; choose another"
        )
    return True


def copy_artifact(src_dir: Path, out: Path) -> Path:
    """Copy (hard-link where possible) an artifact directory to ``out``; return ``out``.

    ``out`` may be absent, empty, or a previous artifact (replaced); anything else is refused.

    Example:
        >>> copy_artifact(art.directory, Path("build/r50"))   # doctest: +SKIP
        PosixPath('build/r50')
    """
    if check_output_dir(out):
        shutil.rmtree(out)

    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)  # same file system: no copy of a 100 MB model
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(src_dir, out, copy_function=link_or_copy, dirs_exist_ok=True)
    return out


__all__ = [
    "QuantizeResult",
    "QuantizedArtifact",
    "check_output_dir",
    "copy_artifact",
    "inspect_artifact",
    "quantize",
    "quantize_model",
    "resolve_model",
]
