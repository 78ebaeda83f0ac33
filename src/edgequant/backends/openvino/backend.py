"""OpenVINO backend: ``openvino.convert_model`` + NNCF, executed by the OpenVINO CPU plugin.

Scheme mapping (what ``prepare`` does, recorded in ``artifact.json``):

========== ==================================================================================
fp32       IR with fp32 weights; ``INFERENCE_PRECISION_HINT=f32`` (without it a CPU with
           AVX512_BF16/AMX runs "FP32" models in bf16)
bf16       fp32 IR; hint ``bf16`` (the CPU plugin's bf16 kernels)
fp16       IR weights stored in fp16; hint ``f16`` where the CPU has FP16 compute, else ``f32``
           (on x86 without AVX512_FP16/AMX_FP16 the plugin would silently run bf16 instead)
w8a8*      ``nncf.quantize``: preset MIXED (asym activations) or PERFORMANCE (sym activations),
           per-channel or per-tensor weights, range estimator from the calibration method,
           overflow fix chosen from the CPU's VNNI flags; float parts run f32
w8-only    ``nncf.compress_weights`` INT8_SYM/ASYM per channel (convs and matmuls); f32 compute
w4-only    ``nncf.compress_weights`` INT4_SYM/ASYM on MatMuls; n/a for a conv-dominated model,
           because NNCF keeps convolution weights in its int8 backup precision
========== ==================================================================================

n/a: w8-dyn (the CPU plugin's dynamic quantization covers FullyConnected only), w4a8 (no 4-bit
weight x 8-bit activation kernels), entropy calibration (NNCF has no KL estimator), percentile
calibration (NNCF's quantile estimator measured broken here); use default, minmax or mse.

Example:
    >>> from edgequant.backends import get_backend
    >>> from edgequant.quant.scheme import get_scheme
    >>> be = get_backend("openvino")
    >>> be.supports(get_scheme("w8-dyn")) is not None
    True
    >>> art = be.prepare(model, get_scheme("w8a8"), calib, Path("out"))   # doctest: +SKIP
    >>> with be.load(art, threads=2) as s: logits = s.run(x)             # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from edgequant.backends.base import (
    Artifact,
    Backend,
    Build,
    InspectReport,
    installed_versions,
    mixed_bits_reason,
)
from edgequant.backends.openvino import debug
from edgequant.backends.openvino import inspect as ovi
from edgequant.backends.openvino.config import PRECISION_HINT
from edgequant.backends.openvino.session import OpenVinoSession, ov_error
from edgequant.errors import ArtifactError, ModelError, ValidationError
from edgequant.quant.scheme import Scheme

if TYPE_CHECKING:
    from edgequant.models.base import Model

MODEL_FILE = "model.xml"


def _module_digest(model: Model) -> str:
    """SHA-1 of the module's state (weights and buffers); the ONNX file's bytes otherwise."""
    h = hashlib.sha1()
    if model.module is None:
        if model.onnx_path is not None and Path(model.onnx_path).is_file():
            h.update(Path(model.onnx_path).read_bytes())
        return h.hexdigest()
    import torch

    h.update(type(model.module).__qualname__.encode())
    for name, tensor in model.module.state_dict().items():
        h.update(name.encode())
        t = tensor.detach().cpu().contiguous().reshape(-1)
        h.update(
            t.view(torch.uint8).numpy().tobytes() if t.dtype != torch.bool else t.numpy().tobytes()
        )
    return h.hexdigest()


def _conv_weight_share(model: Model) -> float:
    """Fraction of the module's weight elements that belong to convolutions (0 for ONNX models)."""
    if model.module is None:
        return 0.0
    import torch.nn as nn

    conv = other = 0
    for m in model.module.modules():
        weight = getattr(m, "weight", None)
        if weight is None or not hasattr(weight, "numel"):
            continue
        if isinstance(m, nn.modules.conv._ConvNd):
            conv += weight.numel()
        elif isinstance(m, nn.Linear | nn.Embedding):
            other += weight.numel()
    return conv / max(1, conv + other)


def _static_batch(shape: Any) -> bool:
    """Whether an output's partial shape has a fixed batch after the input's was freed."""
    return bool(shape.rank.is_static and len(shape) > 0 and shape[0].is_static)


def _outputs_meta(ov_model: Any) -> dict[str, Any]:
    """A model with several outputs (a detector's boxes + scores) is run whole; the sessions
    return, and accuracy and the checks read, its first output only: recorded by name."""
    if len(ov_model.outputs) == 1:
        return {}
    names = [
        ", ".join(sorted(o.get_names())) or f"output {i}" for i, o in enumerate(ov_model.outputs)
    ]
    return {
        "outputs": names,
        "output_measured": names[0],
        "outputs_note": f"{len(names)} outputs, all computed; the first ({names[0]}) is returned",
    }


class OpenVinoBackend(Backend):
    """Intel OpenVINO on the CPU; NNCF for static INT8 and weight compression.

    Example:
        >>> from edgequant.backends import get_backend
        >>> from edgequant.quant.scheme import get_scheme
        >>> be = get_backend("openvino")
        >>> be.supports(get_scheme("w8a8")) is None
        True
        >>> art = be.prepare(model, get_scheme("w8a8"), calib, Path("r50-ov-w8a8"))  # doctest: +SKIP
        >>> be.inspect(art).summary()                                                # doctest: +SKIP
        '53/53 convs in integer precision'
    """

    name: ClassVar[str] = "openvino"
    portable_artifacts: ClassVar[bool] = True
    #: 2: per-tensor activation quantizers and MINMAX ranges for static int8 (openvino_quant)
    recipe: ClassVar[int] = 2
    description: ClassVar[str] = "OpenVINO CPU plugin; NNCF post-training quantization"
    install_hint: ClassVar[str] = "pip install openvino nncf"
    needs_torch_module: ClassVar[bool] = False
    loads_onnx: ClassVar[bool] = True
    default_ranges: ClassVar[str | None] = "minmax"  # NNCF MINMAX (quantize._range_estimator)
    layer_outputs = debug.layer_outputs  # per-layer intermediates, see openvino/debug.py

    def __init__(self) -> None:
        self._core: Any = None
        self._lock = threading.Lock()
        self._converted: dict[tuple[Any, ...], tuple[Any, dict[str, Any]]] = {}

    # --- availability ------------------------------------------------------------------------
    def unavailable_reason(self) -> str | None:
        try:
            import openvino  # noqa: F401 - the check itself
        except ImportError as e:
            return f"the openvino package cannot be imported ({e}); {self.install_hint}"
        try:
            devices = self.core().available_devices
        except Exception as e:  # a broken install: say why instead of crashing later
            return f"OpenVINO cannot start: {ov_error(e)} (reinstall: {self.install_hint})"
        if "CPU" not in devices:
            return f"OpenVINO sees no CPU device (devices: {devices})"
        return None

    def core(self) -> Any:
        """The shared ``openvino.Core`` (created once: it loads the plugins)."""
        with self._lock:
            if self._core is None:
                import openvino as ov

                self._core = ov.Core()
            return self._core

    def versions(self) -> dict[str, str]:
        return installed_versions("openvino", "nncf")

    # --- capability ---------------------------------------------------------------------------
    def supports(self, scheme: Scheme, model: Model | None = None) -> str | None:
        if (
            model is not None
            and model.module is None
            and model.onnx_path is None
            and model.source_path is None
        ):
            return "the model has neither a PyTorch module nor an ONNX file to convert"
        if model is not None and model.info.get("quantized") and not scheme.is_float:
            return "the model file is already quantized; run it as fp32 (as it is)"
        if scheme.is_float:
            return None
        if (mixed := mixed_bits_reason(scheme, "NNCF")) is not None:
            return mixed
        w = scheme.weights
        if w is None:  # unreachable after is_float; narrows the type
            return None
        if importlib.util.find_spec("nncf") is None:
            return "integer schemes need NNCF (pip install nncf)"
        if scheme.is_dynamic:
            return (
                "OpenVINO CPU quantizes activations at run time only for FullyConnected "
                "(DYNAMIC_QUANTIZATION_GROUP_SIZE), never for convolutions"
            )
        if scheme.is_weight_only:
            if w.bits == 8:
                if w.granularity != "channel":
                    return "NNCF compresses int8 weights per output channel only"
                return None
            if w.bits == 4:
                if model is not None and _conv_weight_share(model) > 0.5:
                    return (
                        "NNCF compresses only MatMul/Embedding weights to 4 bit; this model's "
                        "weights are mostly convolutions, which would stay int8 (use w8-only)"
                    )
                if w.granularity == "tensor":
                    return "NNCF compresses int4 weights per channel or in groups, not per tensor"
                return None
            return f"NNCF weight compression has int8 and int4, not {w.bits}-bit integers"
        a = scheme.activations
        if a is None or a.bits != 8:
            return f"OpenVINO CPU runs 8-bit activations only, not {a.bits if a else '?'}-bit"
        if w.bits != 8:
            return (
                f"OpenVINO CPU has no {w.bits}-bit-weight x 8-bit-activation kernels "
                "(NNCF would only emulate it in int8)"
            )
        if a.granularity != "tensor":
            return "NNCF quantizes activations per tensor only"
        if w.granularity not in ("channel", "tensor"):
            return "NNCF quantizes int8 weights per channel or per tensor, not in blocks"
        if not w.symmetric:
            return "NNCF's static presets quantize weights symmetrically only"
        if scheme.calibration.method == "entropy":
            return (
                "NNCF has no entropy (KL) range estimator; use calibration default, minmax or mse"
            )
        if scheme.calibration.percentile is not None:
            # measured: EfficientNet-Lite0 on imagenet-dev, 62% top-1 agreement with fp32 against
            # 90% for MEAN_MINMAX, whichever side (min or max) uses the quantile reducer
            return (
                "NNCF 3.4's quantile range estimator wrecks accuracy on OpenVINO (measured: 62% "
                "top-1 agreement with fp32 on EfficientNet-Lite0); use calibration default, "
                "minmax or mse"
            )
        return None

    # --- build hooks (Backend.prepare runs them) ---------------------------------------------
    def _convert(self, build: Build) -> Any:
        """The fp32 ``ov.Model`` (converted once per process and weights, see below)."""
        build.state["t0"] = time.perf_counter()  # build_s: conversion to the saved IR
        ov_model, convert_meta = self._converted_model(build.model)
        build.meta.update(converter=convert_meta, versions=self.versions())
        return ov_model

    def _quantize(self, build: Build, converted: Any) -> Any:
        """NNCF where the scheme asks: ``nncf.quantize`` (static) or ``compress_weights``."""
        from edgequant.backends.openvino import quantize as ovq

        scheme, meta = build.scheme, build.meta
        if scheme.is_static and build.calibration is not None:
            from edgequant.backends.int8_cpu import record_plan

            plan = build.state.get("int8_plan")
            bn_to_conv: dict[str, str] = {}
            if plan is not None:
                record_plan(meta, plan)
                module = build.model.module
                if plan.remedied and module is not None:
                    from edgequant.quant.bn_fold import conv_bn_pairs

                    with contextlib.suppress(Exception):  # untraceable: module names only
                        bn_to_conv = {bn: conv for conv, bn in conv_bn_pairs(module)}
            converted, meta["quantizer"] = ovq.quantize_static(
                converted,
                scheme,
                build.calibration,
                self.core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"),
                plan,
                bn_to_conv,
            )
            meta["calibration_samples"] = int(meta["quantizer"]["subset_size"])
        elif scheme.is_weight_only:
            converted, meta["quantizer"] = ovq.compress_weights(converted, scheme)
        return converted

    def _save(self, build: Build, quantized: Any) -> Path:
        """The IR (``model.xml`` + ``.bin``), its sizes and the precision hint it runs with."""
        import openvino as ov

        scheme, meta = build.scheme, build.meta
        xml = build.out_dir / MODEL_FILE
        try:
            ov.save_model(
                quantized,
                str(xml),
                compress_to_fp16=scheme.is_float and scheme.float_dtype == "fp16",
            )
        except Exception as e:
            raise ArtifactError(
                f"could not write the OpenVINO IR to {xml}: {ov_error(e)}"
            ) from None
        meta["build_s"] = round(time.perf_counter() - build.state["t0"], 3)
        # relative to the artifact directory: the cache builds in a temporary directory and
        # renames it, and `quantize -o` copies it, so an absolute path would dangle
        meta["extra_files"] = [xml.with_suffix(".bin").name]
        meta["ir_size_bytes"] = xml.stat().st_size + xml.with_suffix(".bin").stat().st_size
        meta["weight_bytes"] = ovi.weight_bytes(self.core().read_model(str(xml)))
        meta["inference_precision_hint"] = self._hint(scheme)
        if (
            scheme.is_float
            and scheme.float_dtype == "fp16"
            and meta["inference_precision_hint"] != "f16"
        ):
            meta["note"] = (
                "the CPU has no FP16 compute (no AVX512_FP16/AMX_FP16): weights are "
                "stored in fp16 and computed in f32"
            )
        return xml

    def _describe(self, artifact: Artifact) -> None:
        # compile once so the metadata records what the plugin really executes, not what we asked
        sess = self.load(artifact, threads=1)
        try:
            artifact.metadata["executed_precision"] = sess.executed_precision
            artifact.metadata["runtime_precisions"] = sess.runtime_precisions
            artifact.metadata["inspect_summary"] = self._report(artifact, sess).summary()
        finally:
            sess.close()

    def _converted_model(self, model: Model) -> tuple[Any, dict[str, Any]]:
        """The fp32 ``ov.Model`` of a model, converted once per process and weights.

        Conversion (TorchScript tracing) costs seconds; building several schemes of one model
        (a sweep, the tests) reuses it. The key hashes the weights, so a module changed in place
        (BN folding, CLE) is converted again.
        """
        key = (model.key, str(model.onnx_path), model.input_spec.shape, _module_digest(model))
        with self._lock:
            hit = self._converted.get(key)
        if hit is None:
            hit = self._convert_uncached(model)
            with self._lock:
                self._converted[key] = hit
                while len(self._converted) > 2:  # a few models at most: they hold their weights
                    self._converted.pop(next(iter(self._converted)))
        ov_model, meta = hit
        return ov_model.clone(), dict(meta)  # NNCF's compress_weights edits the model in place

    def _convert_uncached(self, model: Model) -> tuple[Any, dict[str, Any]]:
        """torch Module → ov.Model directly (no ONNX detour); a user's ONNX file is converted."""
        import openvino as ov

        c, h, w = model.input_spec.shape
        try:
            if model.module is not None:
                import torch

                with torch.no_grad():
                    ov_model = ov.convert_model(
                        model.module, example_input=torch.zeros(1, c, h, w), input=[(-1, c, h, w)]
                    )
                source = "torch"
            elif model.onnx_path is not None:
                ov_model = ov.convert_model(str(model.onnx_path))
                source = "onnx"
            elif model.source_path is not None:  # .tflite or IR, read natively
                ov_model = self.core().read_model(str(model.source_path))
                source = model.source_format
            else:
                raise ModelError(f"model {model.name} has no module or ONNX file to convert")
        except ModelError:
            raise
        except Exception as e:
            raise ModelError(f"OpenVINO cannot convert {model.name}: {ov_error(e)}") from None
        if len(ov_model.inputs) != 1:
            raise ModelError(
                f"{model.name}: the OpenVINO backend runs models with one image input; this one "
                f"has {len(ov_model.inputs)} inputs"
            )
        meta: dict[str, Any] = {"source": source, "dynamic_batch": True}
        meta.update(_outputs_meta(ov_model))
        if source != "torch":
            try:  # make the batch dimension free so one IR serves every batch size
                sample = list(model.input_spec.tensor_shape)  # NHWC for a .tflite
                ov_model.reshape({ov_model.input(0): ov.PartialShape([-1, *sample])})
                if any(_static_batch(o.get_partial_shape()) for o in ov_model.outputs):
                    # a Reshape in the graph bakes batch 1 in: keep batch 1, not wrong outputs
                    ov_model.reshape({ov_model.input(0): ov.PartialShape([1, *sample])})
                    meta.update(dynamic_batch=False, reshape_error="the graph fixes batch 1")
            except Exception as e:
                meta.update(dynamic_batch=False, reshape_error=ov_error(e))
        return ov_model, meta

    def _hint(self, scheme: Scheme) -> str:
        hint = PRECISION_HINT[scheme.float_dtype]
        if hint == "f16" and "FP16" not in self.core().get_property(
            "CPU", "OPTIMIZATION_CAPABILITIES"
        ):
            return "f32"
        return hint

    def load(self, artifact: Artifact, threads: int) -> OpenVinoSession:
        self.require()
        if threads < 1:
            raise ValidationError(f"threads must be >= 1, got {threads}")
        onnx_file = artifact.path.suffix == ".onnx"  # a QDQ file from load_onnx: no .bin
        if not artifact.path.is_file() or (
            not onnx_file and not artifact.path.with_suffix(".bin").is_file()
        ):
            raise ArtifactError(f"OpenVINO IR {artifact.path} (.xml + .bin) is missing; rebuild it")
        try:
            ir = self.core().read_model(str(artifact.path))
        except Exception as e:
            raise ArtifactError(
                f"OpenVINO cannot read {artifact.path} ({ov_error(e)}); "
                "the artifact is corrupt: delete it and rebuild"
            ) from None
        hint = artifact.metadata.get("inference_precision_hint") or self._hint(artifact.scheme)
        return OpenVinoSession(self.core(), ir, threads=threads, hint=hint)

    def inspect(self, artifact: Artifact) -> InspectReport:
        """Per conv/matmul of the runtime model: integer or float, and why it stayed float."""
        sess = self.load(artifact, threads=1)
        try:
            return self._report(artifact, sess)
        finally:
            sess.close()

    def _report(self, artifact: Artifact, sess: OpenVinoSession) -> InspectReport:
        scheme = artifact.scheme
        intent = (
            "float" if scheme.is_float else "weight-only" if scheme.is_weight_only else "static"
        )
        ops, notes = ovi.inspect_ops(sess.ir_model, sess.latency_model(), intent=intent)
        notes.insert(
            0,
            f"executed precision {sess.executed_precision} (INFERENCE_PRECISION_HINT {sess.hint})",
        )
        if artifact.scheme.is_weight_only:
            notes.append("weight-only: int8/int4 weights are decompressed, compute stays float")
            stored = artifact.metadata.get("quantizer", {}).get("weights_stored_as")
            if stored:
                notes.append(f"weights stored as {stored}")
        from edgequant.backends.int8_cpu import inspect_note, remedy_reasons

        cpu_note = inspect_note(artifact.metadata)
        if cpu_note:
            notes.append(cpu_note)
        remedied = remedy_reasons(artifact.metadata)
        for op in ops:  # a compiled op is named after what it fused: "_bn0+_stem_act"
            hit = next((p for p in op.name.split("+") if p in remedied), None)
            if hit is not None and not op.precision.startswith("int"):
                op.reason = remedied[hit]
        return InspectReport(
            artifact=str(artifact.path),
            backend=self.name,
            scheme=artifact.scheme.name,
            ops=ops,
            notes=notes,
        )


__all__ = ["OpenVinoBackend", "OpenVinoSession"]
