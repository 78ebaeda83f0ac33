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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgequant.build.calibration import CalibrationInput
from edgequant.console import log
from edgequant.errors import ValidationError

if TYPE_CHECKING:
    from edgequant.backends.base import Artifact, Backend, InspectReport
    from edgequant.models.base import Model
    from edgequant.quant.scheme import Scheme


def resolve_model(
    model: str | Path | Model,
    *,
    weights: str | Path | None = None,
    arch: str | None = None,
    pretrained: bool = True,
) -> Model:
    """A :class:`~edgequant.models.base.Model` from a zoo name, a model file or a Model.

    Example:
        >>> resolve_model("digits_cnn").name
        'digits_cnn'
    """
    from edgequant.models.base import Model
    from edgequant.models.loader import load_model

    if isinstance(model, Model):
        if weights is not None or arch is not None:
            raise ValidationError("weights= and arch= apply to a model name or file, not a Model")
        return model
    if not isinstance(model, str | Path):
        raise ValidationError(
            f"model must be a zoo name, a model file or an edgequant Model, got {type(model).__name__}"
        )
    return load_model(model, weights=weights, arch=arch, pretrained=pretrained)


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
        }


def quantize_model(
    model: str | Path | Model,
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
) -> QuantizeResult:
    """:func:`quantize`, returning the cached artifact and the build notes beside the result."""
    from edgequant.backends.base import Artifact, get_backend
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
    m = resolve_model(model, weights=weights, arch=arch, pretrained=pretrained)
    # a deployable artifact: the runtime's default batch sizes compiled (batch_sizes=None)
    built = build_artifact(
        be, m, sch, calibration, cache_dir=cache_dir, force=force, progress=progress
    )
    notes = list(built.notes)
    if built.calibration_ignored:
        notes.append(f"{sch.name} needs no calibration; --calib ignored")
    final = built.artifact
    if output is not None:
        final = Artifact.load(copy_artifact(built.artifact.directory, Path(output)))
    return QuantizeResult(artifact=final, cached=built.artifact, model=m, notes=notes)


def quantize(
    model: str | Path | Model,
    *,
    backend: Backend | str,
    scheme: Scheme | str = "w8a8",
    calibration: CalibrationInput = None,
    cache_dir: Path | str | None = None,
    force: bool = False,
    output: Path | str | None = None,
    **options: Any,
) -> Artifact:
    """Quantize ``model`` for ``backend`` with the runtime's own quantizer; return the artifact.

    - ``model``: a zoo name (``edgequant models``), a model file (``.onnx``, or ``.pth`` with
      ``arch=``), or an :class:`~edgequant.models.base.Model`;
    - ``scheme``: a scheme name (``w8a8``, ``fp16``, …), a YAML file or a
      :class:`~edgequant.quant.scheme.Scheme`;
    - ``calibration``: for static schemes, a dataset spec (``digits``, ``imagenet:DIR``,
      ``synthetic``, ``npy:FILE``; its train split), or a float32 NCHW array of preprocessed
      samples; ignored for schemes that need none;
    - ``output``: a directory the artifact is copied to (absent, empty or a previous artifact);
      without it the artifact in the cache (``cache_dir``, default ``$EDGEQUANT_CACHE``) is
      returned. ``force`` rebuilds a cached artifact.

    Further ``options``: ``calibration_samples`` (default: the scheme's), ``weights``, ``arch``,
    ``pretrained`` (False: random weights), ``progress``.

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
    return result.artifact


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
    from edgequant.backends.base import Artifact, get_backend

    art = artifact if isinstance(artifact, Artifact) else Artifact.load(artifact)
    be = get_backend(art.backend)
    be.require()
    return be.inspect(art)


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
    "check_output_dir",
    "copy_artifact",
    "inspect_artifact",
    "quantize",
    "quantize_model",
    "resolve_model",
]
