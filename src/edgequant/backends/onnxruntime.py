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

import contextlib
import platform
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgequant.backends.base import Artifact, Backend, InspectReport, Session
from edgequant.backends.onnxruntime_inspect import classify_graph, executed_precision
from edgequant.backends.onnxruntime_quant import (
    build_dynamic,
    build_float,
    build_static,
    build_weight_only,
    need,
)
from edgequant.build.export import export_onnx, onnx_weight_bytes
from edgequant.errors import ArtifactError, BenchmarkError, ValidationError, condense_error
from edgequant.quant.scheme import Scheme

if TYPE_CHECKING:
    from edgequant.models.base import Model

MODEL_FILE = "model.onnx"
#: session config entries every session gets (recorded in each artifact's metadata).
#: Idle worker threads sleep instead of spinning: on a CPU shared with other work (an edge box,
#: or this 2-core build machine) spinning steals the cores the other worker needs. Measured on
#: ResNet-50, 2 threads, load ~12 on 2 cores: fp32 +11%, U8S8 int8 +33% images/s without spinning.
SESSION_CONFIG = {"session.intra_op.allow_spinning": "0", "session.inter_op.allow_spinning": "0"}


def cpu_flags() -> set[str]:
    """The CPU feature flags of this machine (lower case), empty where /proc/cpuinfo is absent."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return set(line.split(":", 1)[1].split())
    return set()


def int8_choice(flags: set[str] | None = None, machine: str | None = None) -> dict[str, Any]:
    """Which int8 activation type (and reduce_range) makes ORT's CPU kernels fast here, and why.

    Example:
        >>> int8_choice({"avx512_vnni"}, "x86_64")["activation_type"]
        'QUInt8'
        >>> int8_choice(set(), "aarch64")["activation_type"]
        'QInt8'
    """
    flags = cpu_flags() if flags is None else flags
    machine = (machine or platform.machine()).lower()
    vnni = sorted(flags & {"avx512_vnni", "avx_vnni", "amx_int8", "avx_vnni_int8"})
    if machine in ("x86_64", "amd64", "i686", "x86"):
        if vnni:
            return {
                "activation_type": "QUInt8",
                "reduce_range": False,
                "reason": f"x86 with {', '.join(vnni)}: ORT's int8 GEMM kernels (vpdpbusd) take uint8 "
                "activations x int8 weights (U8S8); S8S8 is emulated and measured ~3x slower",
                "reduce_range_reason": "VNNI accumulates u8 x s8 products in int32: no saturation, full 8-bit weights",
            }
        return {
            "activation_type": "QUInt8",
            "reduce_range": True,
            "reason": "x86 without VNNI: U8S8 is ORT's fast path, and 7-bit weights (reduce_range) avoid "
            "the int16 saturation of pmaddubsw",
        }
    return {
        "activation_type": "QInt8",
        "reduce_range": False,
        "reason": f"{machine}: signed dot-product instructions make S8S8 ORT's fast int8 path",
    }


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime on the CPU execution provider, with ORT's own quantizer.

    Example:
        >>> be = OnnxRuntimeBackend()
        >>> be.supports(get_scheme("bf16"))   # doctest: +ELLIPSIS
        "ONNX Runtime's CPU provider has no bfloat16 ...
    """

    name = "onnxruntime"
    description = "ONNX Runtime (CPU execution provider), quantize_static QDQ / quantize_dynamic"
    install_hint = "pip install onnxruntime onnx"
    needs_torch_module = False

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

    # --- build --------------------------------------------------------------------------------
    def prepare(
        self, model: Model, scheme: Scheme, calibration: np.ndarray | None, out_dir: Path
    ) -> Artifact:
        self.require()
        self.check_supported(scheme, model)
        if scheme.is_static:
            calibration = validate_calibration(calibration, model, scheme)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        dst = out_dir / MODEL_FILE
        meta: dict[str, Any] = {
            "session_options": {
                "graph_optimization_level": "ORT_ENABLE_ALL",
                "inter_op_num_threads": 1,
                **SESSION_CONFIG,
            },
            "runtime_versions": self.versions(),
            "choices": [],
            "quantizer_options": {},
        }
        if scheme.is_static:  # quantize_static has no bias correction of its own
            from edgequant.quant.bias_correction import corrected_for_quantizer

            model, meta["bias_correction"] = corrected_for_quantizer(model, scheme, calibration)
        with tempfile.TemporaryDirectory(prefix="eq-ort-", dir=out_dir) as tmp:
            fp32 = export_onnx(model, Path(tmp) / "fp32.onnx")
            meta["fp32_weight_bytes"] = onnx_weight_bytes(fp32)
            meta["exporter"] = (
                "user ONNX file" if model.onnx_path else "torch.onnx.export (TorchScript, opset 17)"
            )
            if scheme.is_float:
                build_float(fp32, dst, scheme, meta)
            elif scheme.is_weight_only:
                build_weight_only(fp32, dst, scheme, meta)
            elif scheme.is_dynamic:
                build_dynamic(fp32, dst, scheme, meta)
            else:
                choice = self._int8_override or int8_choice()
                calib = need(calibration, scheme)
                build_static(fp32, dst, scheme, calib, meta, Path(tmp), choice)
        meta["weight_bytes"] = onnx_weight_bytes(dst)
        art = Artifact(path=dst, backend=self.name, model=model.key, scheme=scheme, metadata=meta)
        report = self.inspect(art)
        meta["executed_precision"] = executed_precision(scheme, report)
        meta["inspect_summary"] = report.summary()
        art.save_metadata()
        return art

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
            _make_session(artifact.path, 1, optimized_path=opt)
            graph = onnx.load(str(opt)).graph
        return classify_graph(graph, artifact)


class OnnxRuntimeSession(Session):
    """An ``onnxruntime.InferenceSession``: float32 NCHW in, float32 logits out."""

    def __init__(self, path: Path, threads: int, executed_precision: str | None = None) -> None:
        self._sess = _make_session(path, threads)
        inputs = self._sess.get_inputs()
        self._input = inputs[0].name
        dim0 = inputs[0].shape[0] if inputs[0].shape else None
        self.fixed_batch = dim0 if isinstance(dim0, int) and dim0 > 0 else None
        self.executed_precision = executed_precision

    def run(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        try:
            out = self._sess.run(None, {self._input: x})[0]
        except Exception as e:  # ORT's pybind errors: make them one clear project error
            if "InvalidArgument" in type(e).__name__ or "INVALID_ARGUMENT" in str(e):
                raise ValidationError(
                    f"ONNX Runtime rejected a batch of shape {x.shape}: {condense_error(e)}"
                ) from None
            raise BenchmarkError(
                f"ONNX Runtime failed while running: {condense_error(e)}"
            ) from None
        return np.asarray(out, dtype=np.float32)

    def close(self) -> None:
        self._sess = None  # type: ignore[assignment]


def _make_session(path: Path, threads: int, optimized_path: Path | None = None) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1  # CNNs are a chain: parallelism belongs inside each op
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # the "hardware-specific optimized model" warning is expected
    for key, value in SESSION_CONFIG.items():
        so.add_session_config_entry(key, value)
    if optimized_path is not None:
        so.optimized_model_filepath = str(optimized_path)
    try:
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own exception types for bad files
        raise ArtifactError(
            f"ONNX Runtime cannot load {path}: {condense_error(e)}; delete it and rebuild"
        ) from None


# --- input checks ----------------------------------------------------------------------------
def validate_calibration(
    calibration: np.ndarray | None, model: Model, scheme: Scheme
) -> np.ndarray:
    """Float32 NCHW calibration samples matching the model's input, finite and non-empty.

    Example:
        >>> validate_calibration(None, model, get_scheme("w8a8"))  # doctest: +SKIP
        Traceback (most recent call last):
        ValidationError: scheme w8a8 needs calibration data: pass --calib DATASET
    """
    from edgequant.data import validate_batch

    if calibration is None:
        raise ValidationError(f"scheme {scheme.name} needs calibration data: pass --calib DATASET")
    return np.ascontiguousarray(
        validate_batch(calibration, model.input_spec, what="calibration data")
    )


__all__ = [
    "OnnxRuntimeBackend",
    "OnnxRuntimeSession",
    "cpu_flags",
    "int8_choice",
    "validate_calibration",
]
