"""TensorRT backend (NVIDIA GPUs): ONNX Runtime's TensorRT execution provider.

The model is exported to ONNX (:func:`edgequant.models.export.export_onnx`); ``fp32`` and
``fp16`` build with the provider's own precision flags, ``w8a8`` uses ONNX Runtime's
``quantize_static`` QDQ model with **symmetric int8** activations and weights (what TensorRT's
explicit-quantization path needs), which TensorRT fuses into int8 kernels. The TensorRT engine is
built at first load and cached next to the artifact (``trt_engine_cache``).

It needs an NVIDIA GPU, the ``tensorrt`` Python package and an ``onnxruntime-gpu`` build with the
``TensorrtExecutionProvider``; where any is missing, :meth:`TensorRtBackend.unavailable_reason`
says which and how to install it. Nothing here runs on a CPU-only machine.

Example:
    >>> from edgequant.backends import get_backend
    >>> get_backend("tensorrt").unavailable_reason()   # doctest: +SKIP
    'no NVIDIA GPU found (nvidia-smi not present / no /dev/nvidia0)'
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from edgequant.backends.base import (
    Artifact,
    Backend,
    Build,
    InspectReport,
    OpInfo,
    Session,
    installed_versions,
    mixed_bits_reason,
)
from edgequant.backends.onnxruntime.backend import OnnxRuntimeBackend
from edgequant.backends.tensorrt.session import TensorRtSession
from edgequant.quant.scheme import Scheme

if TYPE_CHECKING:
    from edgequant.models.base import Model

_SUPPORTED = ("fp32", "fp16", "w8a8-sym")


def _has_nvidia_gpu() -> bool:
    return Path("/dev/nvidia0").exists() or shutil.which("nvidia-smi") is not None


class TensorRtBackend(Backend):
    """TensorRT through ONNX Runtime's TensorrtExecutionProvider (GPU only)."""

    name = "tensorrt"
    description = "NVIDIA TensorRT via ONNX Runtime's TensorrtExecutionProvider (GPU)"
    install_hint = "pip install tensorrt onnxruntime-gpu (needs an NVIDIA GPU and driver)"
    needs_torch_module = False
    corrects_bias = True  # ONNX Runtime's quantize_static has no bias correction of its own

    def unavailable_reason(self) -> str | None:
        if not _has_nvidia_gpu():
            return "no NVIDIA GPU found (no /dev/nvidia0, no nvidia-smi); TensorRT runs on NVIDIA GPUs only"
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            return f"the tensorrt package is not installed ({self.install_hint})"
        try:
            import onnxruntime as ort
        except ImportError:
            return f"onnxruntime is not installed ({self.install_hint})"
        if "TensorrtExecutionProvider" not in ort.get_available_providers():
            return f"this onnxruntime build has no TensorrtExecutionProvider ({self.install_hint})"
        return None

    def versions(self) -> dict[str, str]:
        return installed_versions("tensorrt", "onnxruntime", missing="not installed")

    def supports(self, scheme: Scheme, model: Model | None = None) -> str | None:
        if (mixed := mixed_bits_reason(scheme, "TensorRT's explicit quantization")) is not None:
            return mixed
        if scheme.name in _SUPPORTED or (
            scheme.is_float and scheme.float_dtype in ("fp32", "fp16")
        ):
            return None
        if scheme.float_dtype == "bf16":
            return "bf16 is not offered through ONNX Runtime's TensorRT provider (use fp16)"
        if scheme.is_weight_only:
            return (
                "weight-only int schemes: TensorRT's CNN int8 path needs quantized activations too"
            )
        if scheme.is_dynamic:
            return "dynamic activation quantization: TensorRT needs static (calibrated) int8 ranges"
        w, a = scheme.weights, scheme.activations
        if w is None or a is None or w.bits != 8 or a.bits != 8:
            return "TensorRT's explicit quantization runs 8-bit weights and activations only"
        if not a.symmetric:
            return "asymmetric activations: TensorRT int8 is symmetric only (use w8a8-sym)"
        return None

    # --- build hooks: ONNX Runtime's, with symmetric int8 (Backend.prepare runs them) ---------
    def _ort(self) -> OnnxRuntimeBackend:
        s8s8 = {
            "activation_type": "QInt8",
            "reduce_range": False,
            "reason": "TensorRT explicit quantization: symmetric int8 activations and weights",
        }
        return OnnxRuntimeBackend(int8_override=s8s8)

    @staticmethod
    def _onnx_build(build: Build) -> Build:
        # fp16 is a TensorRT build flag, not a file conversion: the fp32 ONNX file is the artifact
        if build.scheme.is_float:
            return dataclasses.replace(
                build, scheme=build.scheme.with_(name="fp32", float_dtype="fp32")
            )
        return build

    def _convert(self, build: Build) -> Path:
        return self._ort()._convert(self._onnx_build(build))

    def _quantize(self, build: Build, converted: Path) -> Path:
        return self._ort()._quantize(self._onnx_build(build), converted)

    def _save(self, build: Build, quantized: Path) -> Path:
        return self._ort()._save(self._onnx_build(build), quantized)

    def _describe(self, artifact: Artifact) -> None:
        scheme = artifact.scheme
        self._ort()._describe(artifact)
        artifact.metadata.update(
            trt_fp16=scheme.float_dtype == "fp16",
            trt_int8=not scheme.is_float,
            executed_precision="int8" if not scheme.is_float else scheme.float_dtype,
            note="TensorRT engine is built at first load and cached in trt_engine_cache/",
        )

    def load(self, artifact: Artifact, threads: int) -> Session:
        self.require()
        return TensorRtSession(artifact)

    def inspect(self, artifact: Artifact) -> InspectReport:
        """Per conv/matmul of the ONNX file: int8 where TensorRT's explicit quantization fuses
        ``DequantizeLinear`` pairs into an int8 kernel, else the build's float precision.

        The engine makes the final choice per layer while it builds; ``trtexec --dumpLayerInfo``
        on the engine cache shows it.
        """
        import onnx

        graph = onnx.load(str(artifact.path), load_external_data=False).graph
        report = InspectReport(
            artifact=str(artifact.path), backend=self.name, scheme=artifact.scheme.name
        )
        producers = {o: n for n in graph.node for o in n.output}
        fp = "fp16" if artifact.metadata.get("trt_fp16") else "fp32"
        for node in graph.node:
            if node.op_type not in ("Conv", "Gemm", "MatMul", "ConvTranspose"):
                continue
            src = [producers.get(i) for i in node.input[:2]]
            qdq = len(src) == 2 and all(
                p is not None and p.op_type == "DequantizeLinear" for p in src
            )
            report.ops.append(
                OpInfo(
                    name=node.name or node.output[0],
                    op_type=node.op_type,
                    precision="int8" if qdq else fp,
                    reason="" if qdq else "no Q/DQ on its inputs: TensorRT runs it in float",
                )
            )
        report.notes.append(
            "TensorRT chooses kernel precisions while building the engine; "
            "use trtexec --dumpLayerInfo on the engine cache for per-layer precisions"
        )
        return report


__all__ = ["TensorRtBackend", "TensorRtSession"]
