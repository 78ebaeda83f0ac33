"""ONNX Runtime backend: ``torch.onnx.export`` + ORT's own quantizer + the CPU execution provider.

Schemes and how each is built (everything with ``onnxruntime.quantization`` / ORT tools):

========== ===============================================================================
fp32       the exported graph as is
fp16       ``onnxruntime.transformers.float16`` (float32 inputs/outputs kept). ORT's x86 CPU
           provider has no fp16 Conv kernels: it casts the weights back to fp32 at load, so the
           file is 2× smaller but compute stays fp32 (recorded as ``executed_precision``)
w8-only    int8 weights (ORT's ``quant_utils`` scales, per channel) + ``DequantizeLinear``: 4×
w4-only    smaller file, float compute; int4 needs opset 21 (the graph is converted)
w8-dyn     ``quantize_dynamic`` (ConvInteger + DynamicQuantizeLinear). Measured several times
           *slower* than fp32 on CNNs; kept because people try it, and the metadata says why
w8a8 …     ``quantize_static`` in QDQ format, scheme mapped onto per_channel/WeightSymmetric/
           ActivationSymmetric/calibration method. On x86 the activations are **uint8** (U8S8):
           the VNNI/AVX2 int8 kernels multiply unsigned by signed bytes, S8S8 runs ~3× slower
========== ===============================================================================

Example:
    >>> from edgequant.backends import get_backend
    >>> be = get_backend("onnxruntime")
    >>> art = be.prepare(model, get_scheme("w8a8"), calib, Path("out"))   # doctest: +SKIP
    >>> with be.load(art, threads=2) as s:                                   # doctest: +SKIP
    ...     logits = s.run(batch)
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgequant.backends.base import (
    Artifact,
    Backend,
    Build,
    InspectReport,
    Session,
    mixed_bits_reason,
)
from edgequant.backends.onnxruntime import debug, quantize
from edgequant.backends.onnxruntime.config import SESSION_CONFIG, int8_choice
from edgequant.backends.onnxruntime.inspect import classify_graph, executed_precision
from edgequant.backends.onnxruntime.session import OnnxRuntimeSession, make_session
from edgequant.errors import ValidationError
from edgequant.models.export import export_onnx, onnx_weight_bytes
from edgequant.quant.scheme import Scheme

if TYPE_CHECKING:
    from edgequant.models.base import Model

MODEL_FILE = "model.onnx"


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime on the CPU execution provider, with ORT's own quantizer.

    Example:
        >>> from edgequant.quant.scheme import get_scheme
        >>> be = OnnxRuntimeBackend()
        >>> be.supports(get_scheme("bf16"))   # doctest: +ELLIPSIS
        "ONNX Runtime's CPU provider has no bfloat16 ...
    """

    name = "onnxruntime"
    portable_artifacts = True
    description = "ONNX Runtime (CPU execution provider), quantize_static QDQ / quantize_dynamic"
    install_hint = "pip install onnxruntime onnx"
    needs_torch_module = False
    corrects_bias = True  # quantize_static has no bias correction of its own
    loads_onnx = True
    default_ranges = "minmax"  # its default calibrator (quantize._calibration_options)
    layer_outputs = debug.layer_outputs  # per-layer intermediates, see onnxruntime/debug.py

    def __init__(self, int8_override: dict[str, Any] | None = None) -> None:
        # another target (TensorRT) may need another int8 layout than this CPU's fast one
        self._int8_override = int8_override

    # --- availability ------------------------------------------------------------------------
    def unavailable_reason(self) -> str | None:
        try:
            import onnx  # noqa: F401
            import onnxruntime as ort
        except ImportError as e:
            return f"{e.name or 'onnxruntime'} is not installed ({self.install_hint})"
        if "CPUExecutionProvider" not in ort.get_available_providers():
            return "this onnxruntime build has no CPUExecutionProvider (pip install onnxruntime)"
        return None

    def versions(self) -> dict[str, str]:
        import onnx
        import onnxruntime as ort

        return {"onnxruntime": ort.__version__, "onnx": onnx.__version__}

    # --- capability ---------------------------------------------------------------------------
    def supports(self, scheme: Scheme, model: Model | None = None) -> str | None:
        if scheme.float_dtype == "bf16":
            return "ONNX Runtime's CPU provider has no bfloat16 Conv/Gemm kernels"
        if scheme.float_dtype == "fp16" and not scheme.is_float:
            return "fp16 together with integer weights is not a combination ORT's quantizer builds"
        if model is not None and model.module is None and model.onnx_path is None:
            return "the model has neither a PyTorch module nor an ONNX file"
        w, a = scheme.weights, scheme.activations
        if w is None:
            return None
        if (mixed := mixed_bits_reason(scheme, "ORT's quantizer")) is not None:
            return mixed
        if w.block_size is not None:
            return "block-wise weights: ORT's CPU Conv has no blocked DequantizeLinear path; use granularity channel"
        if not w.symmetric:
            return "asymmetric weights: ORT's int8 Conv kernels need symmetric (zero-point 0) int8 weights"
        if a is None:
            if w.bits not in (4, 8):
                return (
                    f"{w.bits}-bit weights: ONNX DequantizeLinear stores only 4- or 8-bit integers"
                )
            return None
        if w.bits != 8:
            return (
                f"{w.bits}-bit weights with integer activations: ORT has no int{w.bits} Conv kernel "
                "(it would dequantize to float); study it with the sim backend"
            )
        if a.bits != 8:
            return f"{a.bits}-bit activations: ORT's integer kernels take 8-bit activations only"
        if a.granularity != "tensor":
            return "per-channel activations: ORT quantizes activations per tensor only"
        if scheme.is_dynamic and a.symmetric:
            return "symmetric dynamic activations: ORT's DynamicQuantizeLinear is asymmetric uint8 only"
        if scheme.is_static and scheme.calibration.method == "mse":
            return "calibration method mse: ORT's calibrators are minmax, entropy and percentile"
        return None

    # --- build hooks (Backend.prepare runs them) ---------------------------------------------
    def _convert(self, build: Build) -> Path:
        """The fp32 ONNX file: exported from the module, or the user's own file."""
        model, meta = build.model, build.meta
        meta.update(
            session_options={
                "graph_optimization_level": "ORT_ENABLE_ALL",
                "inter_op_num_threads": 1,
                **SESSION_CONFIG,
            },
            runtime_versions=self.versions(),
            choices=[],
            quantizer_options={},
        )
        fp32 = export_onnx(model, build.work_dir / "fp32.onnx")
        meta["fp32_weight_bytes"] = onnx_weight_bytes(fp32)
        meta["exporter"] = (
            "user ONNX file" if model.onnx_path else "torch.onnx.export (TorchScript, opset 17)"
        )
        return fp32

    def _quantize(self, build: Build, converted: Path) -> Path:
        """ORT's quantizer (or fp16 converter) from the fp32 file into the artifact's file."""
        scheme, meta = build.scheme, build.meta
        dst = build.out_dir / MODEL_FILE
        if scheme.is_float:
            quantize.build_float(converted, dst, scheme, meta)
        elif scheme.is_weight_only:
            quantize.build_weight_only(converted, dst, scheme, meta)
        elif scheme.is_dynamic:
            quantize.build_dynamic(converted, dst, scheme, meta)
        else:
            calib = quantize.need(build.calibration, scheme)
            choice, layers = self._int8_layout(build, calib)
            quantize.build_static(
                converted, dst, scheme, calib, meta, build.work_dir, choice, layers
            )
        return dst

    def _int8_layout(self, build: Build, calib: Any) -> tuple[dict[str, Any], list[str]]:
        """The int8 layout for this CPU class and the layers that get U8U8 (see int8_cpu).

        On AVX2 / AVX-512 without VNNI the layers whose pair sums saturate on the calibration data
        get U8U8 and the rest keep 8-bit U8S8 weights; without a PyTorch module (a user's ONNX
        file) nothing can be analysed and the blanket fallback stays: reduce_range everywhere.
        """
        from edgequant.backends.int8_cpu import record_plan

        plan = build.state.get("int8_plan")
        if self._int8_override is not None or plan is None:
            return self._int8_override or int8_choice(), []
        choice = dict(int8_choice())
        record_plan(build.meta, plan)
        if plan.saturating and not plan.note:
            choice["reduce_range"] = False
            choice["reduce_range_reason"] = plan.reason()
        return choice, plan.remedied

    def _save(self, build: Build, quantized: Path) -> Path:
        build.meta["weight_bytes"] = onnx_weight_bytes(quantized)
        return quantized

    def _describe(self, artifact: Artifact) -> None:
        report = self.inspect(artifact)
        artifact.metadata["executed_precision"] = executed_precision(artifact.scheme, report)
        artifact.metadata["inspect_summary"] = report.summary()

    # --- run ----------------------------------------------------------------------------------
    def load(self, artifact: Artifact, threads: int) -> Session:
        self.require()
        if threads < 1:
            raise ValidationError(f"threads must be >= 1, got {threads}")
        return OnnxRuntimeSession(
            artifact.path, threads, artifact.metadata.get("executed_precision")
        )

    def inspect(self, artifact: Artifact) -> InspectReport:
        """Classify every Conv/Gemm of the graph ORT actually runs (after its optimizations)."""
        import onnx

        with tempfile.TemporaryDirectory(prefix="eq-ort-inspect-") as tmp:
            opt = Path(tmp) / "optimized.onnx"
            make_session(artifact.path, 1, optimized_path=opt)
            graph = onnx.load(str(opt)).graph
        return classify_graph(graph, artifact)


__all__ = ["OnnxRuntimeBackend", "int8_choice"]
