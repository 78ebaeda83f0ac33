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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

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


T = TypeVar("T")


def match_layers(
    layers: Iterable[tuple[str, Sequence[str | None], T]], names: Iterable[str] | None = None
) -> tuple[dict[str, T], list[str]]:
    """Each runtime layer matched to a module layer name: what every ``layer_outputs`` taps.

    ``layers`` gives, per runtime conv/linear op, its own name, the module names it may stand for
    (best first; None for none) and the value to keep. A layer takes its first candidate that is
    wanted (any, when ``names`` is None) and not taken yet; the others are unmatched, by their own
    name.

    Example:
        >>> ops = [("conv_0", ["stem"], 0), ("conv_1", [None, "head"], 1), ("conv_2", ["stem"], 2)]
        >>> match_layers(ops)
        ({'stem': 0, 'head': 1}, ['conv_2'])
        >>> match_layers(ops, ["head"])
        ({'head': 1}, ['conv_0', 'conv_2'])
    """
    wanted = set(names) if names is not None else None
    taps: dict[str, T] = {}
    unmatched: list[str] = []
    for own, candidates, value in layers:
        name = next(
            (c for c in candidates if c is not None and (wanted is None or c in wanted)), None
        )
        if name is None or name in taps:
            unmatched.append(own)
        else:
            taps[name] = value
    return taps, unmatched


__all__ = ["InspectReport", "LayerOutputs", "OpInfo", "match_layers"]
