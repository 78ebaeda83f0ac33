"""NNCF on an ``openvino.Model``: a scheme's parameters mapped onto ``nncf.quantize`` (static INT8)
and ``nncf.compress_weights`` (weight-only), returning the options actually used.

Choices made on purpose (and recorded in the artifact metadata):

- preset ``MIXED`` for asymmetric activations (symmetric weights), ``PERFORMANCE`` for symmetric
  activations; ``per_channel`` weights follow the scheme's granularity;
- **per-tensor activation quantizers everywhere.** NNCF's CPU default quantizes the input of
  every depthwise convolution per channel; on pretrained EfficientNet-Lite0 that alone cost
  12 dB of logits SQNR (halves protocol below: 10.2 dB, agreement 90%, top-1 82% against fp32's
  88%; bypassing one FakeQuantize at a time showed the loss in the depthwise inputs, and it did
  not come from the range estimator: MINMAX gave 10.4 dB). Per-tensor, as ONNX Runtime and
  LiteRT do: 20.1 dB with MEAN_MINMAX, 22.9 dB with MINMAX, 23.1 dB with HISTOGRAM (94%, 86%);
- calibration method → NNCF range estimator: ``minmax`` → MINMAX, ``mse`` → HISTOGRAM
  (searches the range minimising the L2 quantization error), ``default`` → MINMAX (as good as
  HISTOGRAM above and cheaper; NNCF's own MEAN_MINMAX was 3 dB worse);
- overflow fix from the CPU flags (see :func:`~edgequant.backends.openvino.config.cpu_int8_choice`);
- ``model_type=None`` (a CNN: no SmoothQuant, which NNCF applies to transformers only);
- bias correction: the full ``BiasCorrection`` algorithm by default (``fast_bias_correction=False``):
  slower to build but it corrects the per-channel output shift that depthwise convolutions of
  MobileNet/EfficientNet suffer from after int8 rounding.

Measured, pretrained EfficientNet-Lite0 w8a8, 50 imagenet-dev images, calibrated on one half
and scored on the other, swapped (``benchmarks/int8_accuracy.py --halves``), per-tensor
activations: full BiasCorrection 22.9 dB (agreement 94%) against FastBiasCorrection 20.6 dB
(94%) with MINMAX, 18.8 dB (92%) with MEAN_MINMAX. Earlier, with per-channel depthwise inputs:
overflow fix ``first_layer_only`` cost 6 points of agreement on this VNNI CPU; NNCF's quantile
estimator was far worse (68%).

Example:
    >>> q, used = quantize_static(ov_model, get_scheme("w8a8"), calib, ["INT8"])  # doctest: +SKIP
    >>> used["preset"]                                                             # doctest: +SKIP
    'mixed'
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from edgequant.backends.openvino import inspect as ovi
from edgequant.backends.openvino.config import cpu_int8_choice
from edgequant.backends.openvino.session import ov_error
from edgequant.errors import ModelError, ValidationError
from edgequant.hw.cpu import cpu_flags
from edgequant.quant.scheme import Scheme

if TYPE_CHECKING:
    from edgequant.backends.int8_cpu import Int8Plan

#: full BiasCorrection instead of NNCF's default FastBiasCorrection (see module docstring)
FAST_BIAS_CORRECTION = False


def _range_estimator(method: str) -> tuple[Any, str]:
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    if method == "minmax":
        return RangeEstimatorParametersSet.MINMAX, "MINMAX (min of mins, max of maxes)"
    if method == "mse":
        return (
            RangeEstimatorParametersSet.HISTOGRAM,
            "HISTOGRAM (range minimising the L2 quantization error)",
        )
    if method != "default":  # supports() rejects the others; guard against a direct call
        raise ValidationError(f"calibration method {method!r} has no NNCF range estimator here")
    return (
        RangeEstimatorParametersSet.MINMAX,
        "default: MINMAX (measured: as good as HISTOGRAM and better than NNCF's own MEAN_MINMAX "
        "on EfficientNet-Lite0, whose ReLU6 activations are bounded)",
    )


def _cpu_choice(capabilities: list[str], plan: Int8Plan | None) -> dict[str, Any]:
    """The overflow fix and ignored layers for the CPU class oneDNN really uses (int8_cpu's plan).

    Pair-saturating class with a per-layer analysis: overflow fix off, the layers that saturate on
    the calibration data left in f32 (``ignored_scope``); exact classes: overflow fix off; no
    analysis possible (a user's ONNX file): the flag-based fallback (first layer only).
    """
    cpu = cpu_int8_choice(list(capabilities), cpu_flags())
    if plan is None or plan.note:
        return {**cpu, "ignored_layers": []}
    return {
        "overflow_fix": "disable",
        "cpu_int8_isa": [plan.int8_class],
        "reason": plan.reason(),
        "ignored_layers": list(plan.remedied),
    }


def ignored_scope(
    ov_model: Any, layers: list[str], bn_to_conv: dict[str, str] | None = None
) -> tuple[Any, list[str]]:
    """NNCF ``IgnoredScope`` naming the ops of ``ov_model`` that compute the PyTorch modules
    ``layers``, and those op names. OpenVINO's frontend names an op after its module
    (``__module.<name>/aten::_convolution/Convolution``) unless it folded a BatchNorm into it
    (``Multiply_…``): then the BN's module, through ``bn_to_conv``, names it
    (:func:`~edgequant.backends.openvino.debug.op_modules`).

    Example:
        >>> ignored_scope(ov_model, ["_conv_stem"], {"_bn0": "_conv_stem"})[1]  # doctest: +SKIP
        ['Multiply_12325']
    """
    import nncf

    from edgequant.backends.openvino.debug import op_modules

    wanted = set(layers)
    names = [op for op, module in op_modules(ov_model, bn_to_conv).items() if module in wanted]
    return nncf.IgnoredScope(names=names, validate=False), names


def _static_options(
    preset: str,
    per_channel: bool,
    symmetric: bool,
    subset: int,
    estimator_name: str,
    cpu: dict[str, Any],
) -> dict[str, Any]:
    """What :func:`quantize_static` asked NNCF for, with the reasons, for ``artifact.json``."""
    return {
        "tool": "nncf.quantize",
        "preset": preset,
        "target_device": "CPU",
        "weights_per_channel": per_channel,
        "activations_symmetric": symmetric,
        "activations_per_channel": False,
        "activations_reason": "per tensor everywhere: NNCF's CPU default quantizes depthwise "
        "inputs per channel, measured 12 dB worse logits SQNR on EfficientNet-Lite0",
        "subset_size": subset,
        "range_estimator": estimator_name,
        "fast_bias_correction": FAST_BIAS_CORRECTION,
        "bias_correction": "FastBiasCorrection" if FAST_BIAS_CORRECTION else "BiasCorrection",
        # NNCF's full BiasCorrection runs on 20% of the subset (its own rule)
        "bias_correction_samples": subset if FAST_BIAS_CORRECTION else max(int(subset * 0.2), 1),
        "model_type": None,
        "smooth_quant": "off (CNN: NNCF applies it to transformers only)",
        "overflow_fix": cpu["overflow_fix"],
        "cpu_int8_isa": cpu["cpu_int8_isa"],
        "cpu_choice_reason": cpu["reason"],
        "ignored_layers": cpu["ignored_layers"],
        "ignored_ops": cpu.get("ignored_ops", []),
        "ignored_aliases": cpu.get("ignored_aliases", []),
        "float_parts": "f32 (INFERENCE_PRECISION_HINT f32, so only the int8 part differs from fp32)",
    }


def quantize_static(
    ov_model: Any,
    scheme: Scheme,
    samples: np.ndarray,
    capabilities: list[str],
    plan: Int8Plan | None = None,
    bn_to_conv: dict[str, str] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """``nncf.quantize`` with the scheme mapped; returns the quantized model and options used.

    ``plan``: the CPU-class plan (:func:`edgequant.backends.int8_cpu.plan_int8`); its remedied
    layers stay in f32 (``bn_to_conv``: the model's BatchNorm → conv names, to find the ops
    OpenVINO renamed when it folded a BN).
    """
    import nncf
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        OverflowFix,
        QuantizationParameters,
    )

    w, a = scheme.weights, scheme.activations
    if w is None or a is None:
        raise ValidationError(f"scheme {scheme.name} is not a static integer scheme")
    cpu = _cpu_choice(capabilities, plan)
    extra: dict[str, Any] = {}
    if cpu["ignored_layers"]:
        extra["ignored_scope"], cpu["ignored_ops"] = ignored_scope(
            ov_model, cpu["ignored_layers"], bn_to_conv
        )
        # the names the compiled model may show for them: the folded BNs' modules
        cpu["ignored_aliases"] = sorted(
            bn for bn, conv in (bn_to_conv or {}).items() if conv in set(cpu["ignored_layers"])
        )
        missing = len(cpu["ignored_layers"]) - len(cpu["ignored_ops"])
        if missing > 0:  # a module OpenVINO renamed beyond recognition: say so, keep going
            cpu["reason"] += (
                f"; {missing} of those layers were not found among OpenVINO's ops and stay int8"
            )
    preset = nncf.QuantizationPreset.PERFORMANCE if a.symmetric else nncf.QuantizationPreset.MIXED
    per_channel = w.granularity == "channel"
    estimator, estimator_name = _range_estimator(scheme.calibration.method)
    advanced = AdvancedQuantizationParameters(
        overflow_fix=OverflowFix(cpu["overflow_fix"]),
        weights_quantization_params=QuantizationParameters(per_channel=per_channel),
        # per-tensor activations everywhere (see the module docstring)
        activations_quantization_params=QuantizationParameters(per_channel=False),
        activations_range_estimator_params=estimator,
    )
    subset = min(scheme.calibration.samples, len(samples))
    dataset = nncf.Dataset([samples[i : i + 1] for i in range(subset)])
    try:
        with _quiet_nncf():
            quantized = nncf.quantize(
                ov_model,
                dataset,
                preset=preset,
                target_device=nncf.TargetDevice.CPU,
                subset_size=subset,
                fast_bias_correction=FAST_BIAS_CORRECTION,
                model_type=None,
                advanced_parameters=advanced,
                **extra,
            )
    except Exception as e:
        raise ModelError(f"NNCF could not quantize the model: {ov_error(e)}") from None
    used = _static_options(preset.value, per_channel, a.symmetric, subset, estimator_name, cpu)
    return quantized, used


def compress_weights(ov_model: Any, scheme: Scheme) -> tuple[Any, dict[str, Any]]:
    """``nncf.compress_weights`` for w8-only / w4-only; returns the model and options used."""
    import nncf

    w = scheme.weights
    if w is None:
        raise ValidationError(f"scheme {scheme.name} has no integer weights")
    kwargs: dict[str, Any]
    if w.bits == 8:
        mode = (
            nncf.CompressWeightsMode.INT8_SYM if w.symmetric else nncf.CompressWeightsMode.INT8_ASYM
        )
        kwargs = {}
    else:
        mode = (
            nncf.CompressWeightsMode.INT4_SYM if w.symmetric else nncf.CompressWeightsMode.INT4_ASYM
        )
        # ratio 1 + all_layers: every MatMul to int4; group_size -1 = per output channel
        kwargs = {"ratio": 1.0, "all_layers": True, "group_size": w.block_size or -1}
    try:
        with _quiet_nncf():
            compressed = nncf.compress_weights(ov_model, mode=mode, **kwargs)
    except Exception as e:
        raise ModelError(f"NNCF could not compress the weights: {ov_error(e)}") from None
    stored = weight_storage(compressed)
    used: dict[str, Any] = {
        "tool": "nncf.compress_weights",
        "mode": mode.value,
        **kwargs,
        "weights_stored_as": stored,
    }
    if w.bits == 4 and any(t.startswith(("i8", "u8")) for t in stored):
        used["note"] = (
            "NNCF compresses only MatMul/Embedding weights to 4 bit; convolution "
            "weights use its int8 backup precision, so a CNN shrinks about 4x, not 8x"
        )
    return compressed, used


def weight_storage(ov_model: Any) -> dict[str, int]:
    """``{"<element type> <op type>": count}`` of the weight constants of convs and matmuls."""
    out: Counter[str] = Counter()
    for op in ov_model.get_ordered_ops():
        if op.get_type_name() not in ovi.WEIGHTED_IR_TYPES or op.get_input_size() < 2:
            continue
        consts = ovi.upstream_constants(op.input(1).get_source_output().get_node())
        if not consts:
            continue  # activation x activation MatMul
        biggest = max(consts, key=lambda c: int(c.get_byte_size()))
        out[f"{biggest.get_element_type().get_type_name()} {op.get_type_name()}"] += 1
    return dict(out)


@contextlib.contextmanager
def _quiet_nncf() -> Iterator[None]:
    """NNCF draws rich progress bars on *stdout* and logs per-quantizer warnings: keep stdout for
    ``--json`` documents (bars go to stderr) and only errors in the log."""
    logger = logging.getLogger("nncf")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        logger.setLevel(level)
