"""Pre-quantization transforms, usable in front of every backend's quantizer.

:func:`apply_techniques` runs the scheme's ``techniques`` in the order that makes sense —
``bn_fold`` → ``cle`` → ``adaround``, ``gptq`` or ``brecq`` → ``bias_correction`` (CLE, the
roundings and bias correction need BN folded first, so they imply it) — and returns a new fp32
:class:`~edgequant.models.base.Model` whose ``weights_hash`` carries a suffix naming what was
done (so cached artifacts of the original and the transformed model never collide).
``winograd`` is not a model transform (the simulator executes it) and is ignored here.

``bn_fold`` and ``cle`` give an equivalent model (to float rounding); ``bias_correction``
deliberately moves the fp32 outputs by the expected weight-quantization error (see
:mod:`edgequant.quant.bias_correction`); ``adaround`` replaces every conv/linear weight by its
learnt rounding on the scheme's weight grid (:mod:`edgequant.quant.adaround`; ``gptq`` by one
pass of error feedback instead, :mod:`edgequant.quant.gptq`; ``brecq`` learns it per block,
:mod:`edgequant.quant.brecq`): the runtime's quantizer then
reproduces those weights exactly, and a later ``bias_correction`` finds no weight-rounding error
left to correct. The returned model's ``info["techniques_applied"]`` lists what was applied;
calling again on it is a no-op, so a backend may call it defensively.

Example:
    >>> from edgequant.quant.scheme import get_scheme
    >>> s = get_scheme({"base": "w8a8", "name": "w8a8-cle", "techniques": ["cle"]})
    >>> m2 = apply_techniques(model, s, None)          # doctest: +SKIP
    >>> m2.info["techniques_applied"], m2.weights_hash.endswith("+bn_fold+cle")   # doctest: +SKIP
    (['bn_fold', 'cle'], True)
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from edgequant.errors import UnsupportedError, ValidationError
from edgequant.models.base import Model
from edgequant.quant.scheme import ROUNDING_TECHNIQUES, Scheme

if TYPE_CHECKING:
    from edgequant.quant.adaround import AdaRoundConfig, GridFor, WeightGrid

MODEL_TECHNIQUES = ("bn_fold", "cle", "adaround", "gptq", "brecq", "bias_correction")


def planned_techniques(scheme: Scheme) -> list[str]:
    """The model transforms the scheme asks for, in execution order, implied steps included."""
    asked = set(scheme.techniques) & set(MODEL_TECHNIQUES)
    if asked & {"cle", "bias_correction", *ROUNDING_TECHNIQUES}:
        asked.add("bn_fold")
    return [t for t in MODEL_TECHNIQUES if t in asked]


def apply_techniques(
    model: Model,
    scheme: Scheme,
    calibration: np.ndarray | None,
    *,
    adaround_config: AdaRoundConfig | None = None,
    adaround_grid: WeightGrid | GridFor | None = None,
    float_layers: Sequence[str] = (),
) -> Model:
    """The model with the scheme's transforms applied (the same object when there are none).

    ``adaround_config``: AdaRound's optimisation settings (default :class:`AdaRoundConfig()`);
    ``adaround_grid``: the target runtime's weight grid (a :class:`WeightGrid`, or per layer a
    function ``(name, layer) -> WeightGrid | None``); default: the scheme's weights with the
    restricted symmetric range ``max|w|/qmax``, which the simulator, ONNX Runtime's symmetric
    weights, NNCF, LiteRT and TensorRT compute. ``float_layers``: layers the runtime computes in
    float (a CPU-class remedy; the grid function gives them no grid): bias correction leaves
    them alone too.

    Raises ValidationError when bias correction is asked for without calibration data, and
    when the model has no PyTorch module (a user's ``.onnx`` file) — unless the scheme's
    techniques are optional (``Scheme.optional_techniques``, the built-in ``w8a8``'s): then the
    model comes back untransformed, ``info["techniques_skipped"]`` saying why (an ONNX file,
    synthetic or no calibration data).
    """
    plan = planned_techniques(scheme)
    if not plan or model.info.get("techniques_applied"):
        return model
    skip = _why_not_applied(model, calibration) if scheme.optional_techniques else None
    if skip:
        return dataclasses.replace(model, info={**model.info, "techniques_skipped": skip})
    if model.module is None:
        raise ValidationError(
            f"techniques {plan} need the PyTorch module; {model.name} is an ONNX file (drop the techniques)"
        )
    from edgequant.quant.bias_correction import correct_bias
    from edgequant.quant.bn_fold import fold_batchnorm
    from edgequant.quant.cle import equalize

    info = dict(model.info)
    module, pairs = fold_batchnorm(model.module)
    info["bn_fold_pairs"] = len(pairs)
    tag = "+bn_fold"
    if "cle" in plan:
        module, cle_pairs = equalize(module)
        info["cle_pairs"] = len(cle_pairs)
        tag += "+cle"
    rounding = [t for t in plan if t in ROUNDING_TECHNIQUES]
    if len(rounding) > 1:
        raise ValidationError(f"{', '.join(rounding)}: each chooses the rounding; keep one of them")
    if rounding:
        method = rounding[0]
        if calibration is None or len(calibration) == 0:
            raise ValidationError(f"{method} needs calibration data (pass --calib)")
        if scheme.weights is None:
            raise ValidationError(f"{method} needs integer weights; scheme {scheme.name} has none")
        from edgequant.quant.adaround import AdaRoundConfig
        from edgequant.quant.adaround_cache import cached_adaround
        from edgequant.quant.gptq import POOL_ROWS

        config = adaround_config or AdaRoundConfig()
        if method == "gptq":
            config = dataclasses.replace(config, method="gptq", pool_rows=POOL_ROWS)
        elif method == "brecq":
            config = dataclasses.replace(config, method="brecq")

        # one learnt rounding per (weights, grid, data, settings): runtimes sharing a grid reuse it
        try:
            module, stats, key, reused = cached_adaround(
                module,
                scheme,
                calibration,
                weights_hash=f"{model.weights_hash}{tag}",
                config=config,
                grid=adaround_grid,
            )
        except UnsupportedError as e:  # the model's structure, not the data: say so
            if not scheme.optional_techniques:
                raise
            return dataclasses.replace(
                model, info={**model.info, "techniques_skipped": f"not applied: {method}: {e}"}
            )
        info["adaround_layers"] = len(stats)
        info["adaround_kept_nearest"] = sum(s.kept_nearest for s in stats)
        info["adaround_reused"] = reused
        # the rounding's cache key covers weights, grids, data and settings (defaults included)
        tag += f"+{method}-{key[:8]}"
    if "bias_correction" in plan:
        if calibration is None or len(calibration) == 0:
            raise ValidationError("bias_correction needs calibration data (pass --calib)")
        module, n = correct_bias(module, scheme, calibration, float_layers=float_layers)
        info["bias_corrected_layers"] = n
        # the correction depends on the weight quantizer, the data and the float layers
        tag += f"+bias_correction-{_digest(scheme, calibration, float_layers)}"
    info["techniques_applied"] = plan
    return dataclasses.replace(
        model, module=module.eval(), weights_hash=f"{model.weights_hash}{tag}", info=info
    )


def _why_not_applied(model: Model, calibration: np.ndarray | None) -> str | None:
    """Why a scheme's optional techniques are skipped on ``model`` (None: they apply)."""
    if model.module is None:
        return (
            f"not applied: model {model.name!r} is an ONNX file (the techniques need its "
            "PyTorch module)"
        )
    if model.info.get("calibration_synthetic"):
        return (
            "not applied: synthetic calibration data (random pixels say nothing about the real "
            "activations the rounding and the bias correction learn from; fine for speed runs)"
        )
    if calibration is None or len(calibration) == 0:
        return "not applied: no calibration data"
    return None


def _digest(scheme: Scheme, calibration: np.ndarray, float_layers: Sequence[str] = ()) -> str:
    return hashlib.sha1(
        scheme.weights_key.encode()
        + np.ascontiguousarray(calibration, np.float32).tobytes()
        + ",".join(sorted(float_layers)).encode()  # empty: the digest as before
    ).hexdigest()[:8]


__all__ = ["MODEL_TECHNIQUES", "apply_techniques", "planned_techniques"]
