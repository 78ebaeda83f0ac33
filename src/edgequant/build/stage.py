"""The build stage: model + scheme + calibration -> a cached artifact, specialized to run.

One function, :func:`build_artifact`, used by ``edgequant quantize``, ``edgequant bench``, the
sweep's build-ahead workers and the Python API: it checks that the runtime is there and runs the
scheme, chooses the calibration data (:mod:`edgequant.build.calibration`), finds the artifact in
the cache or builds it (:mod:`edgequant.build.cache`, which applies the scheme's techniques), and
lets the backend compile the batch sizes it will run (``Backend.specialize``) before anything is
timed.

Example:
    >>> import tempfile
    >>> from edgequant.models import load_model
    >>> built = build_artifact("onnxruntime", load_model("digits_cnn"), "w8a8",
    ...                        "synthetic:16", cache_dir=tempfile.mkdtemp(), progress=False)
    >>> built.artifact.scheme.name, built.notes
    ('w8a8', ['calibrated on synthetic data: fine for speed, meaningless for accuracy'])
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from edgequant.build.calibration import CalibrationInput, select_calibration
from edgequant.console import log

if TYPE_CHECKING:
    from edgequant.backends.base import Artifact, Backend
    from edgequant.models.base import Model
    from edgequant.quant.scheme import Scheme


@dataclass(frozen=True)
class Built:
    """What the build stage made: the (cached) artifact, and the notes on how it was built."""

    artifact: Artifact
    notes: list[str] = field(default_factory=list)
    #: a calibration set was given for a scheme that needs none
    calibration_ignored: bool = False


def build_artifact(
    backend: Backend | str,
    model: Model,
    scheme: Scheme | str,
    calibration: CalibrationInput = None,
    *,
    default_calibration: str | None = None,
    batch_sizes: Iterable[int] | None = None,
    cache_dir: Path | str | None = None,
    force: bool = False,
    progress: bool = True,
    check: bool = True,
) -> Built:
    """Build (or fetch from the cache) the artifact of ``model`` in ``scheme`` for ``backend``.

        ``calibration`` (a dataset spec, a dataset, a float32 NCHW array or None) and
        ``default_calibration`` follow :func:`~edgequant.build.calibration.select_calibration`.
        ``batch_sizes`` are the sizes the artifact will run (None: the backend's defaults), compiled
        now by runtimes with static shapes. ``force`` rebuilds a cached artifact. ``check`` (default
    on) records the conversion check of a fresh build in its metadata (``model_source``, see
    :func:`edgequant.build.source.record_model_source`); a check that cannot run costs a warning.

        Raises :class:`~edgequant.errors.BackendUnavailableError` when the runtime is missing,
        :class:`~edgequant.errors.UnsupportedError` when it cannot run the scheme and
        :class:`~edgequant.errors.ValidationError` for missing or malformed calibration data, all
        before anything is built.

        Example:
            >>> import tempfile
            >>> from edgequant.models import load_model
            >>> art = build_artifact("onnxruntime", load_model("digits_cnn"), "fp32",
            ...                      cache_dir=tempfile.mkdtemp(), progress=False).artifact
            >>> art.path.suffix
            '.onnx'
    """
    from edgequant.backends.base import get_backend
    from edgequant.build.cache import get_or_build
    from edgequant.quant.scheme import get_scheme

    be = get_backend(backend) if isinstance(backend, str) else backend
    sch = get_scheme(scheme)
    be.require()
    be.check_supported(sch, model)
    calib = select_calibration(sch, model, calibration, default=default_calibration)
    if progress:
        log(f"preparing {model.name} {sch.name} for {be.name}")
    art = get_or_build(
        be, model, sch, calib.source, cache_dir=cache_dir, force=force, progress=progress
    )
    notes = list(calib.notes)
    # compile the sizes asked for first: the check then runs on one of them (a PyTorch artifact
    # checked before would compile a batch-1 package no run needs, 20-30 s for ResNet-50)
    be.specialize(art, None if batch_sizes is None else list(batch_sizes))
    if check and "model_source" not in art.metadata:
        data = calibration if calib.source is None else calib.source
        notes.extend(_check_conversion(be, model, art, data, cache_dir))
    return Built(art, notes, calibration_ignored=calib.ignored)


def _check_conversion(
    be: Backend, model: Model, art: Artifact, data: CalibrationInput, cache_dir: Path | str | None
) -> list[str]:
    """The conversion check of a fresh build; one that cannot run is a note, never fatal."""
    from edgequant.build.source import record_model_source
    from edgequant.errors import condense_error

    try:
        record_model_source(be, model, art, data, cache_dir)
    except Exception as e:  # the build itself is fine: say why there is no check, and go on
        note = f"the conversion check of {model.name} on {be.name} did not run: {condense_error(e)}"
        log(f"warning: {note}")
        return [note]
    return []


__all__ = ["Built", "build_artifact"]
