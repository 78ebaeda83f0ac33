"""The PyTorch backend's fixed choices: file names, batch sizes, Inductor options, dtypes.

Example:
    >>> PACKAGE_TEMPLATE.format(batch=8)
    'model-b8.pt2'
"""

from __future__ import annotations

import re
from typing import Any

#: batch sizes compiled when nobody says which (``edgequant quantize``): 1 serves SingleStream
#: latency, 8 the Offline default. Static shapes let Inductor prepack conv weights for the real
#: input size: measured on ResNet-50 (2 threads, batch 8), a dynamic-batch package ran fp32 at
#: 0.67x and int8 at 0.43x the static speed.
DEFAULT_BATCH_SIZES = (1, 8)
PROGRAM_NAME = "program.pt2"
PACKAGE_TEMPLATE = "model-b{batch}.pt2"
_PACKAGE_RE = re.compile(r"^model-b(\d+)\.pt2$")
#: the wrapper (run_impl: allocations and kernel calls, no math) compiled at -O0: measured here,
#: its g++ step for MobileNetV2 batch 8 took 4.8 s instead of 7.3 s at -O1 (separate processes),
#: with the same latency (batch-1 p50 within run-to-run noise, alternating rounds); kernels keep -O3
_INDUCTOR_CONFIGS: dict[str, Any] = {
    "freezing": True,
    "cpp.dynamic_threads": True,
    "aot_inductor.compile_wrapper_opt_level": "O0",
}
_TORCH_DTYPES = {"fp16": "float16", "bf16": "bfloat16"}
_PRECISION = {"fp32": "f32", "fp16": "f16", "bf16": "bf16"}


__all__ = ["DEFAULT_BATCH_SIZES", "PACKAGE_TEMPLATE", "PROGRAM_NAME"]
