"""Per-layer error of a runtime's own int8 execution, beside the simulator's prediction.

For every Conv2d/Linear of the fp32 model, :func:`debug_artifact` compares the tensor the
runtime computes at that layer against fp32 on a few samples (SQNR in dB), and puts the
simulator's SQNR for the same layer (``quantize_module`` with the integer arithmetic this CPU
gives that runtime, on the runtime's bits and kind of activation range:
``Backend.runtime_scheme``) and its int16 pair-saturation count beside it.

**Where a layer is compared** (the same point for fp32, the runtime and the simulator): the
layer's output after its folded BatchNorm and its fused activation (ReLU/ReLU6/clip), as the
runtime holds it — dequantized where the runtime requantizes it there. Errors accumulate: a
layer's SQNR includes the error of everything before it, as in ONNX Runtime's
``qdq_loss_debug`` activation comparison.

**Matching**: layers are named by the fp32 module's names (``features.3.conv``). Each runtime's
``Backend.layer_outputs`` maps its own op names back to them (documented in each
``backends/<runtime>/debug.py``) and returns a :class:`LayerOutputs`; a layer the runtime's
names do not reveal is listed as *unmatched*, not dropped, and so are runtime ops matched to no
layer. A runtime may report a conv under the BatchNorm module folded into it.

Example:
    >>> from edgequant.studies.layer_debug import sqnr_db
    >>> import numpy as np
    >>> round(sqnr_db(np.ones(4), np.ones(4) * 1.01), 1)
    40.0
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgequant.backends.inspection import LayerOutputs
from edgequant.errors import ValidationError

if TYPE_CHECKING:
    import torch.fx as fx
    import torch.nn as nn

    from edgequant.backends.base import Artifact, Backend
    from edgequant.models.base import Model

#: the file (in the artifact directory) with the worst layers' summary, for the report
SUMMARY_FILE = "layer_debug.json"
SUMMARY_FORMAT = "edgequant.layer_debug/1"
POINT = "layer output after folded BN and fused activation, dequantized where requantized"


@dataclass
class LayerSite:
    """One Conv2d/Linear of the fp32 model and the graph node whose output is compared."""

    name: str
    kind: str
    node: str  # fx node (of the BN-folded trace) at the comparison point
    chain: tuple[str, ...] = ()  # fx nodes from the layer to ``node`` (identities included)


@dataclass
class LayerError:
    """One layer's row: runtime SQNR vs fp32, the sim's prediction, the saturation count."""

    name: str
    kind: str
    runtime_op: str | None = None
    runtime_sqnr_db: float | None = None
    sim_sqnr_db: float | None = None
    saturated: int | None = None
    pairs: int | None = None
    note: str = ""

    @property
    def matched(self) -> bool:
        return self.runtime_op is not None

    @property
    def saturated_pct(self) -> float | None:
        if self.saturated is None or not self.pairs:
            return None if self.saturated is None else 0.0
        return 100.0 * self.saturated / self.pairs

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["runtime_sqnr_db"] = _finite(self.runtime_sqnr_db)
        d["sim_sqnr_db"] = _finite(self.sim_sqnr_db)
        d["saturated_pct"] = self.saturated_pct
        d["matched"] = self.matched
        return d


@dataclass
class LayerDebug:
    """The per-layer view of one artifact; ``render()`` for text, ``to_dict()`` for JSON.

    Example:
        >>> r = LayerDebug(artifact="a", backend="b", scheme="w8a8", samples=2, arithmetic="exact")
        >>> r.worst(5), r.to_dict()["layers"]
        ([], [])
    """

    artifact: str
    backend: str
    scheme: str
    samples: int
    arithmetic: str
    int8_class: str = ""
    point: str = POINT
    layers: list[LayerError] = field(default_factory=list)
    unmatched_runtime_ops: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def worst(self, n: int = 5) -> list[LayerError]:
        """The ``n`` matched layers with the lowest runtime SQNR."""
        rows = [r for r in self.layers if r.runtime_sqnr_db is not None]
        return sorted(rows, key=lambda r: r.runtime_sqnr_db or 0.0)[:n]

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "layers"}
        d["layers"] = [r.to_dict() for r in self.layers]
        return d

    def summary(self, n: int = 5) -> dict[str, Any]:
        """What ``layer_debug.json`` holds: the header and the worst ``n`` layers."""
        return {
            "format": SUMMARY_FORMAT,
            "backend": self.backend,
            "scheme": self.scheme,
            "samples": self.samples,
            "arithmetic": self.arithmetic,
            "int8_class": self.int8_class,
            "point": self.point,
            "layers": len(self.layers),
            "unmatched_layers": [r.name for r in self.layers if not r.matched],
            "worst": [r.to_dict() for r in self.worst(n)],
        }

    def render(self, top: int | None = None) -> str:
        """A text table, worst runtime SQNR first (``top`` rows), unmatched layers after."""
        from edgequant.console import format_table

        matched = self.worst(len(self.layers))
        rows = matched[:top] if top else matched
        rest = [r for r in self.layers if r.runtime_sqnr_db is None]
        table = [
            [
                r.name,
                r.kind,
                r.runtime_op or "unmatched",
                _finite(r.runtime_sqnr_db),
                _finite(r.sim_sqnr_db),
                r.saturated_pct,
            ]
            for r in [*rows, *rest]
        ]
        head = (
            f"{self.artifact} ({self.backend}, {self.scheme}): per-layer SQNR vs fp32 on "
            f"{self.samples} samples; simulator arithmetic {self.arithmetic}"
            + (f" (INT8 class {self.int8_class})" if self.int8_class else "")
        )
        lines = [head, f"compared at: {self.point}", ""]
        lines.append(
            format_table(
                table, ["layer", "kind", "runtime op", "runtime dB", "predicted dB", "saturated %"]
            )
        )
        for name in self.unmatched_runtime_ops:
            lines.append(f"runtime op matched to no layer: {name}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _finite(x: float | None) -> float | None:
    """Rounded dB; +inf (bit-identical) becomes 999.0 so JSON stays plain."""
    if x is None or math.isnan(x):
        return None
    return 999.0 if math.isinf(x) and x > 0 else round(x, 2)


def sqnr_db(ref: np.ndarray, test: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio of ``test`` against ``ref`` in dB (inf: identical).

    Example:
        >>> sqnr_db(np.array([1.0, -1.0]), np.array([1.0, -1.0]))
        inf
    """
    r = np.asarray(ref, dtype=np.float64).ravel()
    t = np.asarray(test, dtype=np.float64).ravel()
    if r.shape != t.shape:
        raise ValidationError(f"cannot compare tensors of {r.size} and {t.size} elements")
    noise = float(np.sum((r - t) ** 2))
    signal = float(np.sum(r**2))
    if noise == 0.0:
        return math.inf
    return 10.0 * math.log10(max(signal, 1e-30) / noise)


# --- the fp32 side: sites and captured outputs -------------------------------------------------
def _kind(mod: nn.Module) -> str:
    import torch.nn as nn

    if isinstance(mod, nn.Linear):
        return "linear"
    conv: Any = mod
    dw = conv.groups > 1 and conv.groups == conv.in_channels
    return ("depthwise" if dw else "conv") + f" {conv.kernel_size[0]}x{conv.kernel_size[1]}"


def layer_sites(module: nn.Module) -> tuple[fx.GraphModule, list[LayerSite], dict[str, str]]:
    """The BN-folded traced fp32 model, its conv/linear sites, and BN name → conv name.

    Example:
        >>> import torch.nn as nn
        >>> _, sites, _ = layer_sites(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()))
        >>> [(s.name, s.kind, s.node) for s in sites]
        [('0', 'conv 3x3', '_1')]
    """
    import torch.nn as nn

    from edgequant.quant.bn_fold import fold_batchnorm
    from edgequant.quant.simulate import is_activation, node_module, trace

    folded, pairs = fold_batchnorm(module)
    gm = trace(folded)
    sites = []
    for node in gm.graph.nodes:
        mod = node_module(gm, node)
        if not isinstance(mod, nn.Conv2d | nn.Linear):
            continue
        end, chain = node, [node.name]
        users = list(end.users)
        while len(users) == 1 and isinstance(node_module(gm, users[0]), nn.Identity):
            end = users[0]  # a folded BN left as Identity
            chain.append(end.name)
            users = list(end.users)
        if len(users) == 1 and is_activation(gm, users[0]):
            end = users[0]
            chain.append(end.name)
        sites.append(
            LayerSite(name=str(node.target), kind=_kind(mod), node=end.name, chain=tuple(chain))
        )
    return gm, sites, {bn: conv for conv, bn in pairs}


def capture(gm: nn.Module, nodes: Iterable[str], batch: np.ndarray) -> dict[str, np.ndarray]:
    """Run ``gm`` (an fx GraphModule) on ``batch``; the outputs of the named nodes as float32."""
    import torch
    import torch.fx as fx

    want = set(nodes)
    got: dict[str, np.ndarray] = {}

    class _Grab(fx.Interpreter):
        def run_node(self, n: fx.Node) -> Any:
            out = super().run_node(n)
            if n.name in want and isinstance(out, torch.Tensor):
                got[n.name] = out.detach().float().numpy().copy()
            return out

    assert isinstance(gm, fx.GraphModule)
    with torch.no_grad():
        _Grab(gm).run(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)))
    return got


def simulate_layers(
    module: nn.Module,
    scheme: Any,
    calibration: np.ndarray,
    batch: np.ndarray,
    sites: list[LayerSite],
    arith_target: str,
) -> tuple[dict[str, np.ndarray], dict[str, tuple[int, int]]]:
    """The simulator's tensor at each site (after the ActQuant there, if any) and, per layer,
    (saturated pairs, pairs) under ``arith_target``."""
    from edgequant.quant.saturation import saturation_report
    from edgequant.quant.simulate import ActQuant, node_module, quantize_module

    sim = quantize_module(module, scheme, calibration, arith=arith_target)
    nodes = {n.name: n for n in sim.graph.nodes}
    where: dict[str, str] = {}
    for s in sites:
        present = [nodes[n] for n in s.chain or (s.node,) if n in nodes]
        if not present:
            continue
        node = present[-1]  # the simulator drops the folded BNs' identities
        users = list(node.users)
        aq = [u for u in users if isinstance(node_module(sim, u), ActQuant)]
        where[s.name] = aq[0].name if len(users) == 1 and aq else node.name
    saturation_report(sim, reset=True)
    got = capture(sim, where.values(), batch)
    sat = {r.name: (r.saturated, r.pairs) for r in saturation_report(sim)}
    return {name: got[n] for name, n in where.items() if n in got}, sat


# --- the whole view ------------------------------------------------------------------------------
def _debug_inputs(
    data: np.ndarray | str, model: Model, samples: int, calib_size: int
) -> np.ndarray:
    """The float32 inputs: the array, or ``max(calib_size, samples)`` samples of a dataset spec."""
    if isinstance(data, str):
        from edgequant.data.calibration import calibration_samples
        from edgequant.data.registry import open_dataset

        ds = open_dataset(data, model.input_spec, split="train", num_classes=model.num_classes)
        data = calibration_samples(ds, max(calib_size, samples))
    x = np.ascontiguousarray(data, dtype=np.float32)
    if samples < 1 or len(x) == 0:
        raise ValidationError(f"need at least one sample, got samples={samples}, {len(x)} given")
    return x


def _runtime_outputs(
    backend: Backend, art: Artifact, batch: np.ndarray, names: list[str], aliases: dict[str, str]
) -> LayerOutputs:
    """The runtime's layer outputs, keyed by our layer names (a folded BN's name -> its conv's)."""
    raw = backend.layer_outputs(art, batch, [*names, *aliases])
    out = raw if isinstance(raw, LayerOutputs) else LayerOutputs()  # a plain dict: exact arith
    if out is not raw:
        out.update(raw)
    for bn, conv in aliases.items():  # a runtime that names a conv after its folded BN
        if bn in out and conv not in out:
            out[conv] = out.pop(bn)
            if bn in out.sources:
                out.sources[conv] = out.sources.pop(bn)
    return out


#: samples calibrating the prediction when the artifact's weights were not transformed
DEFAULT_CALIB = 64


def debug_artifact(
    artifact: Artifact | str | Path,
    data: np.ndarray | str,
    *,
    model: Model | None = None,
    samples: int = 8,
    calibration: np.ndarray | None = None,
    calib_size: int | None = None,
    save: bool = True,
) -> LayerDebug:
    """Per-layer SQNR of ``artifact``'s runtime against fp32 on the first ``samples`` of
    ``data`` (an array, or a dataset spec such as ``imagenet:DIR``: ``calib_size`` samples of it),
    beside the simulator's prediction (calibrated on ``calibration``, default all of ``data``)
    and its saturation count. ``calib_size`` defaults to the artifact's own calibration sample
    count where its weights were rounded or corrected on that data (w8a8's GPTQ: the same
    dataset then gives the same weights, from the rounding cache), else 64. ``model`` defaults
    to the zoo model the artifact names.
    ``save`` writes the worst layers' summary to ``layer_debug.json`` in the artifact directory.

    Example:
        >>> r = debug_artifact("build/r50-ort-w8a8", x, samples=4)   # doctest: +SKIP
        >>> print(r.render(top=5))                                    # doctest: +SKIP
    """
    from edgequant.backends.artifact import Artifact as _Artifact
    from edgequant.backends.base import get_backend
    from edgequant.quant.int8_arith import get_arithmetic

    art = artifact if isinstance(artifact, _Artifact) else _Artifact.load(artifact)
    backend: Backend = get_backend(art.backend)
    model = model or _zoo_model(art.model)
    if model.module is None:
        raise ValidationError(
            f"model {model.name!r} has no PyTorch module: the per-layer view compares against it"
        )
    if calib_size is None:
        own = art.metadata.get("calibration_samples")
        calib_size = own if art.metadata.get("techniques_applied") and own else DEFAULT_CALIB
    x = _debug_inputs(data, model, samples, calib_size)
    batch = x[:samples]
    gm, sites, aliases = layer_sites(model.module)
    ref = capture(gm, {s.node for s in sites}, batch)
    out = _runtime_outputs(backend, art, batch, [s.name for s in sites], aliases)
    arith = get_arithmetic(out.arith_target)
    calib = x if calibration is None else calibration
    sim_model, notes = model, list(out.notes)
    scheme = backend.runtime_scheme(art.scheme)  # the runtime's bits and kind of range
    if scheme.calibration != art.scheme.calibration:
        notes.append(
            f"prediction: activation ranges {scheme.calibration.method}, as {backend.name} "
            f"calibrates for {art.scheme.calibration.method!r}"
        )
    applied = art.metadata.get("techniques_applied") or []
    if applied:  # GPTQ/AdaRound on the runtime's grid, bias correction: redone on ``calib``
        plan = backend.int8_plan(model, art.scheme, calib)
        sim_model = backend.transformed(model, art.scheme, calib, plan)
        notes.append(
            f"prediction: on the model after {', '.join(applied)} on {len(calib)} samples "
            "(the artifact's own calibration data gives the artifact's weights)"
        )
    elif backend.corrects_bias and art.scheme.is_static and art.metadata.get("bias_correction"):
        from edgequant.quant.bias_correction import corrected_for_quantizer

        sim_model = corrected_for_quantizer(model, scheme, calib)[0]
        notes.append("prediction: on the bias-corrected model the runtime's quantizer was given")
    assert sim_model.module is not None
    sim, sat = simulate_layers(sim_model.module, scheme, calib, batch, sites, out.arith_target)
    result = LayerDebug(
        artifact=str(art.path),
        backend=art.backend,
        scheme=art.scheme.name,
        samples=len(batch),
        arithmetic=arith.name,
        int8_class=str(art.metadata.get("cpu_profile", {}).get("int8_class", "")),
        unmatched_runtime_ops=list(out.unmatched),
        notes=notes,
    )
    for s in sites:
        result.layers.append(_row(s, ref.get(s.node), out, sim.get(s.name), sat.get(s.name)))
    if save:
        save_summary(result, art.directory)
    return result


def _row(
    site: LayerSite,
    ref: np.ndarray | None,
    out: LayerOutputs,
    sim: np.ndarray | None,
    sat: tuple[int, int] | None,
) -> LayerError:
    row = LayerError(name=site.name, kind=site.kind)
    if sat is not None:
        row.saturated, row.pairs = sat
    if ref is None:
        row.note = "no fp32 output captured"
        return row
    if sim is not None and sim.shape == ref.shape:
        row.sim_sqnr_db = sqnr_db(ref, sim)
    got = out.get(site.name)
    if got is None:
        row.note = "unmatched: the runtime's op names do not reveal this layer"
        return row
    row.runtime_op = out.sources.get(site.name, site.name)
    if got.size != ref.size:
        row.note = f"shape {tuple(got.shape)} differs from fp32 {tuple(ref.shape)}"
        return row
    row.runtime_sqnr_db = sqnr_db(ref, got.reshape(ref.shape))
    return row


def save_summary(result: LayerDebug, directory: Path | str, n: int = 5) -> Path:
    """Write :meth:`LayerDebug.summary` as ``layer_debug.json`` into ``directory``."""
    path = Path(directory) / SUMMARY_FILE
    path.write_text(json.dumps(result.summary(n), indent=2) + "\n", encoding="utf-8")
    return path


def _zoo_model(name: str) -> Model:
    from edgequant.models.loader import load_model

    try:
        return load_model(name)
    except Exception as e:  # any loader failure: say how to give the model
        raise ValidationError(
            f"cannot load the fp32 model {name!r} the artifact was built from ({e}); "
            "pass it explicitly (--model NAME or a checkpoint with --arch)"
        ) from None


__all__ = [
    "POINT",
    "SUMMARY_FILE",
    "LayerDebug",
    "LayerError",
    "LayerOutputs",
    "LayerSite",
    "capture",
    "debug_artifact",
    "layer_sites",
    "save_summary",
    "simulate_layers",
    "sqnr_db",
]
