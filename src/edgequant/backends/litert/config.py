"""Map an edgequant :class:`Scheme` onto an ai-edge-quantizer recipe, and check it with the quantizer.

ai-edge-quantizer recipes are data: a list of ``{regex, operation, algorithm_key, op_config}``
entries, later entries winning for the ops they name. We write the scheme's parameters into
that shape (weight bits / symmetric / granularity, activation bits / symmetric, static vs
dynamic vs weight-only, fp16 by float casting) instead of picking a canned recipe by name, so a
custom scheme dict maps exactly and the built-in names reproduce the canned recipes:

=========== ========================================================================
scheme      recipe (same as)
=========== ========================================================================
w8a8        ``static_wi8_ai8`` (int8 per-channel sym weights, int8 asym activations)
w8a8-pt     ``static_wi8_ai8`` with TENSORWISE weights
w8a8-sym    ``static_wi8_ai8`` with symmetric activations
w8-dyn      ``dynamic_wi8_afp32`` (int8 weights, activations quantized at run time)
w8-only     ``weight_only_wi8_afp32`` (int8 weights, DEQUANTIZE, float compute)
w4-only     ``weight_only_wi4_afp32``; depthwise convs keep 8-bit weights (no int4 kernel)
w4a8        int4 conv/FC weights + int8 activations; depthwise convs keep 8-bit weights
fp16        ``float_casting`` of weights to fp16 (compute stays fp32 on CPUs)
=========== ========================================================================

Example:
    >>> from edgequant.quant.scheme import get_scheme
    >>> r = build_recipe(get_scheme("w8a8-pt"))
    >>> r[0]["op_config"]["weight_tensor_config"]["granularity"]
    'TENSORWISE'
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

from edgequant.errors import UnsupportedError, condense_error
from edgequant.quant.scheme import Scheme

#: ops that carry weights and so define what a scheme quantizes
WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
#: ops for which ai-edge-quantizer has no int4-weight kernel (checked with its own policy)
_BLOCK_SIZES = (32, 64, 128, 256)


def _granularity(scheme: Scheme) -> str:
    w = scheme.weights
    if w is None:  # pragma: no cover - callers only ask for quantized weights
        raise UnsupportedError("no weight quantization in this scheme")
    if w.granularity == "channel":
        return "CHANNELWISE"
    if w.granularity == "tensor":
        return "TENSORWISE"
    size = w.block_size
    if size not in _BLOCK_SIZES:
        raise UnsupportedError(
            f"ai-edge-quantizer supports weight blocks of {', '.join(map(str, _BLOCK_SIZES))}, not {size}"
        )
    return f"BLOCKWISE_{size}"


def _weight_config(scheme: Scheme, bits: int) -> dict[str, Any]:
    w = scheme.weights
    if w is None:  # pragma: no cover
        raise UnsupportedError("no weight quantization in this scheme")
    return {
        "num_bits": bits,
        "symmetric": w.symmetric,
        "granularity": _granularity(scheme),
        "dtype": "INT",
    }


def _op_config(scheme: Scheme, bits: int) -> dict[str, Any]:
    """The op_config of one recipe entry for the scheme, with ``bits``-bit weights."""
    if scheme.weights is None:
        # fp16: ai-edge-quantizer's float_casting stores weights as fp16 and adds DEQUANTIZE
        return {
            "weight_tensor_config": {
                "num_bits": 16,
                "dtype": "FLOAT",
                "symmetric": True,
                "granularity": "TENSORWISE",
            },
            "compute_precision": "FLOAT",
            "explicit_dequantize": True,
        }
    cfg: dict[str, Any] = {"weight_tensor_config": _weight_config(scheme, bits)}
    act = scheme.activations
    if act is None:  # weight-only: DEQUANTIZE feeds the float op
        cfg.update(compute_precision="FLOAT", explicit_dequantize=True)
    elif act.dynamic:  # dynamic range: the kernel quantizes activations on the fly
        cfg.update(compute_precision="INTEGER", explicit_dequantize=False)
    else:
        cfg.update(
            activation_tensor_config={
                "num_bits": act.bits,
                "symmetric": act.symmetric,
                "granularity": "TENSORWISE",
                "dtype": "INT",
            },
            compute_precision="INTEGER",
            explicit_dequantize=False,
        )
    return cfg


def _entry(operation: str, algorithm: str, op_config: dict[str, Any]) -> dict[str, Any]:
    return {
        "regex": ".*",
        "operation": operation,
        "algorithm_key": algorithm,
        "op_config": op_config,
    }


def _rejection(algorithm: str, op: str, op_config: dict[str, Any]) -> str | None:
    """ai-edge-quantizer's own reason for refusing ``op_config`` on ``op`` (None: accepted)."""
    from ai_edge_quantizer import algorithm_manager, qtyping

    try:
        algorithm_manager.check_op_quantization_config(
            algorithm,
            qtyping.TFLOperationName(op),
            qtyping.OpQuantizationConfig.from_dict(op_config),
        )
    except ValueError as e:
        return condense_error(e)
    return None


def _scope_regex(name: str) -> str:
    """The regex matching the op whose output tensor is ``name`` (a scope is the op's output
    tensor names, each followed by ``;``)."""
    return f"(^|;){re.escape(name)};"


def layer_bits_entries(
    scheme: Scheme,
    weight_ops: list[tuple[str, str]],
    skip: Collection[str] = (),
    op_bits: dict[str, int] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Recipe entries for the scheme's ``layer_bits``, and ``{op output name: bits}`` of every
    weight op whose bits they change. ``weight_ops``: ``(op type, output name)`` of the model's
    CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED ops in graph order (= execution order, so
    ``first`` and ``last`` are the torch model's). ``op_bits``: the bits per op already
    resolved on the torch module (globs on module names, :func:`module_ops`); default: the
    selectors resolved on the ops themselves. Ops in ``skip`` (graph outputs, which
    :func:`float_output_entries` writes) get no entry here. An op the quantizer has no kernel
    for at those bits is an :class:`UnsupportedError` naming it: ai-edge-quantizer would
    otherwise skip the entry without a word.

    Example:
        >>> from edgequant.quant.scheme import get_scheme
        >>> s = get_scheme({"base": "w4a8", "layer_bits": {"first": 8}})
        >>> entries, bits = layer_bits_entries(s, [("CONV_2D", "a"), ("CONV_2D", "b")])
        >>> bits, entries[0]["regex"], entries[0]["op_config"]["weight_tensor_config"]["num_bits"]
        ({'a': 8}, '(^|;)a;', 8)
    """
    if scheme.weights is None or not scheme.layer_bits:
        return [], {}
    from edgequant.quant.layer_bits import selected_bits

    names = [n for _, n in weight_ops]
    kinds = {n: k for k, n in weight_ops}
    depthwise = {n for k, n in weight_ops if k == "DEPTHWISE_CONV_2D"}
    base = scheme.weights.bits
    if op_bits is None:
        op_bits = selected_bits(scheme, names, depthwise)
    changed = {n: b for n, b in op_bits.items() if b != base}
    entries = []
    for name, bits in changed.items():
        entry = {
            **_entry("*", "min_max_uniform_quantize", _op_config(scheme, bits)),
            "regex": _scope_regex(name),
        }
        if _rejection(entry["algorithm_key"], kinds[name], entry["op_config"]) is not None:
            raise UnsupportedError(
                f"layer_bits: ai-edge-quantizer has no {bits}-bit-weight {kinds[name]} kernel "
                f"(op {name!r})"
            )
        if name not in skip:
            entries.append(entry)
    return entries, changed


def module_ops(modules: list[str], weight_ops: list[tuple[str, str]]) -> dict[str, str]:
    """``{torch module name: TFLite op output name}`` for the conv/linear modules whose op can be
    told: litert-torch names an op's output after the module path (``Type_attr`` segments, e.g.
    ``features.1.conv.0`` → ``…/Sequential_features/InvertedResidual_1/Sequential_conv/…_0``),
    and the graph output (named ``serving_default_…``) is the last module's when the last op
    writes it. A module no op or several ops match is left out.

    Example:
        >>> ops = [("CONV_2D", "Net/Sequential_features/Conv2d_0;"),
        ...        ("FULLY_CONNECTED", "serving_default_output_0")]
        >>> module_ops(["features.0", "fc"], ops)
        {'features.0': 'Net/Sequential_features/Conv2d_0;', 'fc': 'serving_default_output_0'}
    """
    out: dict[str, str] = {}
    for name in modules:
        path = "/".join(f"[^/;]*_{re.escape(seg)}" for seg in name.split("."))
        pattern = re.compile(f"(^|;)[^/;]+/{path};")
        hits = [op for _, op in weight_ops if pattern.search(op)]
        if len(hits) == 1:
            out[name] = hits[0]
    if modules and weight_ops and modules[-1] not in out and "/" not in weight_ops[-1][1]:
        out[modules[-1]] = weight_ops[-1][1]  # the graph output: the last module writes it
    return out


def float_output_entries(
    scheme: Scheme, output_names: list[str], bits: dict[str, int] | None = None
) -> list[dict[str, Any]]:
    """Recipe entries that keep a static scheme's graph outputs float: the op writing each output
    gets the weight-only config (int8 weights dequantized, float compute) and the output itself
    ``no_quantize``. ai-edge-quantizer otherwise rounds a classifier's logits to int8: on
    EfficientNet-Lite0 that alone made 1% of ImageNet logits tie and cost ~0.5% top-1 agreement
    with fp32. ``bits``: the weight bits of the ops ``layer_bits`` changes (by output name).

    Example:
        >>> from edgequant.quant.scheme import get_scheme
        >>> [(e["operation"], e["algorithm_key"])
        ...  for e in float_output_entries(get_scheme("w8a8"), ["out_0"])]
        [('*', 'min_max_uniform_quantize'), ('OUTPUT', 'no_quantize')]
        >>> float_output_entries(get_scheme("w8-only"), ["out_0"])
        []
    """
    if not scheme.is_static or scheme.weights is None:
        return []
    out = []
    for name in output_names:
        weight_only = {
            "weight_tensor_config": _weight_config(
                scheme, (bits or {}).get(name, scheme.weights.bits)
            ),
            "compute_precision": "FLOAT",
            "explicit_dequantize": True,
        }
        regex = _scope_regex(name)
        out.append({**_entry("*", "min_max_uniform_quantize", weight_only), "regex": regex})
        out.append({**_entry("OUTPUT", "no_quantize", {}), "regex": regex})
    return out


def build_recipe(scheme: Scheme) -> list[dict[str, Any]]:
    """The ai-edge-quantizer recipe (list of dicts, JSON-serialisable) for a quantized scheme.

    4-bit weights: the quantizer has no int4 depthwise kernel, so every op first gets the 8-bit
    config and then CONV_2D / FULLY_CONNECTED are overridden with 4 bits (later entries win).

    Example:
        >>> from edgequant.quant.scheme import get_scheme
        >>> [e["operation"] for e in build_recipe(get_scheme("w4-only"))]
        ['*', 'CONV_2D', 'FULLY_CONNECTED']
    """
    if scheme.is_float:
        return [_entry("*", "float_casting", _op_config(scheme, 16))]
    bits = scheme.weights.bits if scheme.weights else 8
    if bits == 8:
        return [_entry("*", "min_max_uniform_quantize", _op_config(scheme, 8))]
    base = _entry("*", "min_max_uniform_quantize", _op_config(scheme, 8))
    low = [
        _entry(op, "min_max_uniform_quantize", _op_config(scheme, bits))
        for op in ("CONV_2D", "FULLY_CONNECTED")
    ]
    return [base, *low]


def check_recipe(scheme: Scheme) -> str | None:
    """None when ai-edge-quantizer's own config policy accepts the scheme for convs, else why not.

    Uses the quantizer's validation (``algorithm_manager.check_op_quantization_config``), so
    what we call supported is what it will actually quantize.
    """
    try:
        recipe = build_recipe(scheme)
    except UnsupportedError as e:
        return str(e)
    for entry in recipe:
        ops: tuple[str, ...] = WEIGHT_OPS if entry["operation"] == "*" else (entry["operation"],)
        if entry["operation"] == "*" and scheme.weights is not None and scheme.weights.bits != 8:
            ops = ("DEPTHWISE_CONV_2D",)  # the 8-bit fallback entry only matters for these
        for op in ops:
            if (why := _rejection(entry["algorithm_key"], op, entry["op_config"])) is not None:
                return f"ai-edge-quantizer rejects it for {op}: {why}"
    for selector, bits in scheme.layer_bits:
        ops = ("DEPTHWISE_CONV_2D",) if selector == "depthwise" else ("CONV_2D", "FULLY_CONNECTED")
        for op in ops:
            if _rejection("min_max_uniform_quantize", op, _op_config(scheme, bits)) is not None:
                return (
                    f"layer_bits {selector}: ai-edge-quantizer has no {bits}-bit-weight {op} kernel"
                )
    return None


__all__ = [
    "WEIGHT_OPS",
    "build_recipe",
    "check_recipe",
    "float_output_entries",
    "layer_bits_entries",
    "module_ops",
]
