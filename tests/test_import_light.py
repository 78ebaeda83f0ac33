"""Importing edgequant, its public API names and the CLI parser must not import any runtime."""

import subprocess
import sys

HEAVY = (
    "torch",
    "onnxruntime",
    "openvino",
    "nncf",
    "ai_edge_litert",
    "litert_torch",
    "ai_edge_quantizer",
    "mlperf_loadgen",
    "tensorflow",
    "matplotlib",
    "jax",
)


def _imported_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys\nprint(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {m.split(".")[0] for m in out.split()}


def test_import_edgequant_is_light() -> None:
    mods = _imported_after(
        "import edgequant, edgequant.errors, edgequant.quant.scheme, edgequant.backends"
    )
    assert not mods & set(HEAVY), mods & set(HEAVY)


def test_cli_parser_is_light() -> None:
    mods = _imported_after("from edgequant.cli import build_parser\nbuild_parser()")
    assert not mods & set(HEAVY), mods & set(HEAVY)


def test_public_api_names_are_lazy_and_light() -> None:
    # listing the API imports nothing; resolving the names this branch has imports no runtime
    mods = _imported_after(
        "import edgequant\n"
        "assert set(edgequant.__all__) <= set(dir(edgequant))\n"
        "import sys\n"
        "assert 'edgequant.studies.qat' not in sys.modules\n"
        "for name in ('report', 'qat', 'lab', 'train'):\n"
        "    assert callable(getattr(edgequant, name)), name\n"
    )
    assert not mods & set(HEAVY), mods & set(HEAVY)
