"""What ``inspect`` and ``layer_outputs`` report of an artifact: each operator's precision and
why; a layer's own intermediate outputs.

Example:
    >>> r = InspectReport(artifact="m.onnx", backend="rt", scheme="w8a8",
    ...                   ops=[OpInfo(name="c1", op_type="Conv", precision="int8"),
    ...                        OpInfo(name="c2", op_type="Conv", precision="fp32", reason="depthwise")])
    >>> r.summary()
    '1/2 convs in integer precision; 1 fall back to float: 1 × depthwise'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(kw_only=True)
class OpInfo:
    """One operator of an artifact as ``inspect`` sees it."""

    name: str
    op_type: str
    precision: str  # "int8", "int4", "fp32", "fp16", "bf16", ...
    reason: str = ""


@dataclass(kw_only=True)
class InspectReport:
    """What runs in integer and what still runs in float, and why."""

    artifact: str
    backend: str
    scheme: str
    ops: list[OpInfo] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def convs(self) -> list[OpInfo]:
        return [o for o in self.ops if "conv" in o.op_type.lower()]

    def summary(self) -> str:
        """E.g. ``37/53 convs in int8; 16 fall back to float: 16 × depthwise (…)``."""
        convs = self.convs
        if not convs:
            return "no convolutions found"
        low = [o for o in convs if o.precision.startswith(("int", "i", "u"))]
        flt = [o for o in convs if o not in low]
        text = f"{len(low)}/{len(convs)} convs in integer precision"
        if flt:
            reasons: dict[str, int] = {}
            for o in flt:
                reasons[o.reason or "no reason given"] = (
                    reasons.get(o.reason or "no reason given", 0) + 1
                )
            detail = "; ".join(
                f"{n} × {r}" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1])
            )
            text += f"; {len(flt)} fall back to float: {detail}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "artifact": self.artifact,
            "backend": self.backend,
            "scheme": self.scheme,
            "summary": self.summary(),
            "notes": self.notes,
            "ops": [vars(o) for o in self.ops],
        }


class LayerOutputs(dict[str, np.ndarray]):
    """What a runtime's ``layer_outputs`` returns: layer name → float32 array (N, ...).

    ``sources``: layer name → the runtime's own op name it came from; ``unmatched``: runtime
    conv/linear ops whose name maps to no requested layer; ``arith_target``: the integer
    arithmetic (name or INT8 class) the simulator should use to predict this runtime on this
    CPU; ``notes``: what the runtime's intermediate outputs are (and are not).

    Example:
        >>> out = LayerOutputs(arith_target="exact")
        >>> out["conv1"] = np.zeros((1, 4, 2, 2), np.float32)
        >>> out.sources, list(out)
        ({}, ['conv1'])
    """

    def __init__(
        self,
        *,
        arith_target: str = "exact",
        sources: dict[str, str] | None = None,
        unmatched: list[str] | None = None,
        notes: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.arith_target = arith_target
        self.sources: dict[str, str] = dict(sources or {})
        self.unmatched: list[str] = list(unmatched or [])
        self.notes: list[str] = list(notes or [])


__all__ = ["InspectReport", "LayerOutputs", "OpInfo"]
