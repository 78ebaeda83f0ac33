"""LiteRT (TFLite) backend: litert-torch converts, ai-edge-quantizer quantizes, XNNPACK runs.

Pipeline of :meth:`LiteRtBackend.prepare`:

1. ``litert_torch.convert(module, (example,))`` turns the fp32 ``nn.Module`` into a float
   ``.tflite`` (no TensorFlow). The input stays NCHW (the converter inserts a TRANSPOSE) and the
   batch is 1; sessions resize the input for other batch sizes.
2. For quantized schemes, ai-edge-quantizer runs a recipe built from the scheme
   (:mod:`edgequant.backends.litert.config`); static schemes calibrate first with the
   quantizer's own calibrator, one sample per step.
3. The session (:mod:`edgequant.backends.litert.session`) runs the artifact with the XNNPACK
   delegate and ``threads`` threads; int8 I/O is (de)quantized with numpy.

Why this configuration is the fast one on x86: static INT8 with per-channel symmetric int8
weights and int8 activations maps onto XNNPACK's QS8 kernels (VNNI on this class of CPU);
nothing in the graph stays float except the model's own TRANSPOSE/PAD/MEAN data movement.

bf16 is n/a (neither LiteRT nor XNNPACK has bfloat16 inference). fp16 stores fp16 weights that
XNNPACK expands to fp32 at load time: the file halves, the arithmetic stays fp32, and the
artifact records that as its executed precision.

Example:
    >>> from edgequant.backends import get_backend
    >>> from edgequant.quant.scheme import get_scheme
    >>> be = get_backend("litert")
    >>> be.supports(get_scheme("bf16"))
    'LiteRT/XNNPACK has no bfloat16 inference kernels'
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgequant.backends.base import Artifact, Backend, Build, InspectReport, installed_versions
from edgequant.backends.litert import debug
from edgequant.backends.litert.config import (
    WEIGHT_OPS,
    build_recipe,
    check_recipe,
    float_output_entries,
    layer_bits_entries,
    module_ops,
)
from edgequant.errors import ArtifactError, UnsupportedError
from edgequant.quant.scheme import LAYER_SELECTORS, Scheme

if TYPE_CHECKING:
    from edgequant.backends.litert.session import LiteRtSession
    from edgequant.models.base import Model

_PACKAGES = {
    "ai_edge_litert": "ai-edge-litert",
    "litert_torch": "litert-torch",
    "ai_edge_quantizer": "ai-edge-quantizer",
}


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The converter and the quantizer print progress on stdout; stdout belongs to --json."""
    with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _weight_ops(flatbuffer: bytes) -> list[tuple[str, str]]:
    """``(op type, output tensor name)`` of a .tflite's conv/FC ops, in graph order."""
    from ai_edge_litert.interpreter import Interpreter

    with _quiet():
        it = Interpreter(model_content=flatbuffer)
        ops = it._get_ops_details()  # private, but the only API listing a model's ops
        names = {int(d["index"]): str(d["name"]) for d in it.get_tensor_details()}
    return [
        (str(op["op_name"]), names[int(op["outputs"][0])])
        for op in ops
        if op["op_name"] in WEIGHT_OPS and len(op["outputs"])
    ]


def _op_bits(model: Model, scheme: Scheme, ops: list[tuple[str, str]]) -> dict[str, int] | None:
    """``{op output name: bits}`` of the ops a module-name glob of ``layer_bits`` picks, the
    whole ``layer_bits`` resolved on the torch module (None: no glob, the selectors are resolved
    on the ops). A picked module whose op cannot be told is an :class:`UnsupportedError`."""
    from edgequant.quant.layer_bits import changed_bits, weight_layers

    if model.module is None or all(sel in LAYER_SELECTORS for sel, _ in scheme.layer_bits):
        return None
    changed = changed_bits(model.module, scheme)
    mapped = module_ops(weight_layers(model.module), ops)
    lost = [m for m in changed if m not in mapped]
    if lost:
        raise UnsupportedError(
            f"layer_bits: no TFLite op of {lost[0]!r} could be told from the converted model's "
            f"names; use the selectors {', '.join(LAYER_SELECTORS)}"
        )
    return {mapped[m]: b for m, b in changed.items()}


def _output_names(flatbuffer: bytes) -> list[str]:
    """The graph output tensors' names of a .tflite held in memory."""
    from ai_edge_litert.interpreter import Interpreter

    with _quiet():
        return [str(d["name"]) for d in Interpreter(model_content=flatbuffer).get_output_details()]


class LiteRtBackend(Backend):
    """LiteRT with the XNNPACK delegate; quantization by ai-edge-quantizer recipes.

    Example:
        >>> be = LiteRtBackend()
        >>> art = be.prepare(model, get_scheme("w8a8"), calib, Path("out"))   # doctest: +SKIP
        >>> with be.load(art, threads=2) as sess:                               # doctest: +SKIP
        ...     logits = sess.run(batch)          # float32 NCHW in, float32 logits out
        >>> be.inspect(art).summary()                                            # doctest: +SKIP
        '53/53 convs in integer precision'
    """

    name = "litert"
    portable_artifacts = True
    description = "LiteRT (TFLite) + XNNPACK; litert-torch converter, ai-edge-quantizer recipes"
    install_hint = "pip install ai-edge-litert litert-torch ai-edge-quantizer"
    corrects_bias = True  # ai-edge-quantizer has no bias correction of its own
    default_ranges = "minmax"  # ai-edge-quantizer calibrates the min and max it sees
    layer_outputs = debug.layer_outputs  # per-layer intermediates, see litert/debug.py

    # --- availability ------------------------------------------------------------------------
    def unavailable_reason(self) -> str | None:
        missing = [pip for mod, pip in _PACKAGES.items() if importlib.util.find_spec(mod) is None]
        if missing:
            return f"{', '.join(missing)} not installed; run `pip install {' '.join(missing)}`"
        return None

    def versions(self) -> dict[str, str]:
        return installed_versions(*_PACKAGES.values())

    # --- capability ---------------------------------------------------------------------------
    def supports(self, scheme: Scheme, model: Model | None = None) -> str | None:
        if model is not None and model.module is None:
            from edgequant.backends.litert.sources import source_reason

            reason = source_reason(model, scheme)
            if reason is not None:
                return reason
        if scheme.float_dtype == "bf16":
            return "LiteRT/XNNPACK has no bfloat16 inference kernels"
        if "winograd" in scheme.techniques:
            # bn_fold/cle/bias_correction are model transforms the artifact cache applies first
            return "XNNPACK's int8 convolutions are direct, not Winograd; study Winograd with the sim backend"
        w, a = scheme.weights, scheme.activations
        if w is not None and not scheme.weight_bits_used <= {4, 8}:
            bad = max(scheme.weight_bits_used - {4, 8})
            return f"LiteRT kernels take 8- or 4-bit integer weights, not {bad}-bit"
        globs = [sel for sel, _ in scheme.layer_bits if sel not in LAYER_SELECTORS]
        if globs and model is not None and model.module is None:
            return (
                f"layer_bits {globs[0]!r}: a .tflite file has no torch module names; "
                f"use the selectors {', '.join(LAYER_SELECTORS)}"
            )
        if a is not None and a.bits != 8:
            return f"XNNPACK runs 8-bit integer activations only, not {a.bits}-bit"
        if a is not None and not a.dynamic and a.granularity != "tensor":
            return "LiteRT quantizes activations per tensor only"
        if a is not None and a.dynamic and w is not None and not w.symmetric:
            return "dynamic-range kernels need symmetric weights"
        if scheme.is_static and not scheme.calibration.method.startswith(("default", "minmax")):
            return (
                f"ai-edge-quantizer calibrates activations by min/max only; "
                f"{scheme.calibration.method} is not offered"
            )
        if self.unavailable_reason() is not None:
            return None  # capability is known; availability is reported by require()
        return check_recipe(scheme)

    def runtime_scheme(self, scheme: Scheme) -> Scheme:
        """Min/max ranges for calibration ``default`` (:meth:`Backend.runtime_scheme`); 4-bit
        schemes with their depthwise convs at 8 bits: ai-edge-quantizer has no int4 depthwise
        kernel (:func:`~edgequant.backends.litert.config.build_recipe`)."""
        scheme = super().runtime_scheme(scheme)
        if 4 not in scheme.weight_bits_used:
            return scheme
        return scheme.with_(layer_bits=(*scheme.layer_bits, ("depthwise", 8)))

    # --- build hooks (Backend.prepare runs them) ---------------------------------------------
    def _convert(self, build: Build) -> bytes:
        """The float .tflite (batch 1, NCHW input kept)."""
        from edgequant.backends.litert.quantize import convert, float_weight_bytes
        from edgequant.backends.litert.sources import read_source

        t0 = time.perf_counter()
        converter = "litert_torch.convert, batch 1, NCHW input kept (TRANSPOSE inserted)"
        if build.model.module is None:  # a user's .tflite: run and quantized as it is
            float_bytes, converter = read_source(build.model)
        else:
            with _quiet():
                float_bytes = convert(build.model)
        build.meta.update(
            runtime="litert",
            fp32_weight_bytes=float_weight_bytes(float_bytes),
            versions=self.versions(),
            converter=converter,
            convert_s=round(time.perf_counter() - t0, 2),
        )
        return float_bytes

    def _quantize(self, build: Build, converted: bytes) -> bytes:
        """ai-edge-quantizer with the scheme's recipe (static: calibrated first)."""
        from edgequant.backends.litert.quantize import quantize

        scheme = build.scheme
        if scheme.is_float and scheme.float_dtype == "fp32":
            build.meta["quantizer"] = None
            return converted
        calib = None
        if build.calibration is not None and scheme.is_static:
            calib = build.calibration[: scheme.calibration.samples]
        outputs = _output_names(converted)
        # a static scheme's output ops are written by float_output_entries, at their bits
        skip = outputs if scheme.is_static else []
        layers: list[dict[str, Any]] = []
        changed: dict[str, int] = {}
        if scheme.layer_bits:  # the ops are only listed (one more interpreter) when needed
            ops = _weight_ops(converted)
            op_bits = _op_bits(build.model, scheme, ops)
            layers, changed = layer_bits_entries(scheme, ops, skip=skip, op_bits=op_bits)
        recipe = build_recipe(scheme) + layers + float_output_entries(scheme, outputs, changed)
        if changed:
            build.meta["layer_bits"] = changed
        t1 = time.perf_counter()
        with _quiet():
            data, cal_meta = quantize(converted, recipe, calib, scheme)
        build.meta.update(
            quantizer={
                "name": "ai-edge-quantizer",
                "recipe": recipe,
                **cal_meta,
                "bias_correction": build.meta.get("bias_correction"),
            },
            quantize_s=round(time.perf_counter() - t1, 2),
        )
        return data

    def _save(self, build: Build, quantized: bytes) -> Path:
        path = build.out_dir / "model.tflite"
        path.write_bytes(quantized)
        return path

    def _describe(self, artifact: Artifact) -> None:
        from edgequant.backends.litert.inspect import describe

        with _quiet():
            artifact.metadata.update(describe(artifact.path, artifact.scheme))

    def load(self, artifact: Artifact, threads: int) -> LiteRtSession:
        from edgequant.backends.litert.session import LiteRtSession

        self.require()
        if not artifact.path.is_file():
            raise ArtifactError(f"{artifact.path} is missing; rebuild it with `edgequant quantize`")
        return LiteRtSession(
            artifact.path,
            threads,
            artifact.metadata.get("executed_precision"),
            artifact.metadata.get("batch_resizable"),
        )

    def inspect(self, artifact: Artifact) -> InspectReport:
        from edgequant.backends.litert.inspect import inspect_tflite

        self.require()
        return inspect_tflite(artifact.path, backend=self.name, scheme=artifact.scheme.name)


__all__ = ["LiteRtBackend"]
