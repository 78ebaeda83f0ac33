"""Loading a PyTorch artifact only when it is this user's: its program and packages are code.

``program.pt2`` is read with ``torch.export.load``, which falls back to a full unpickle when the
safe load fails, and an AOTInductor package (``model-bN.pt2``) is a native shared library that
``aoti_load_package`` maps into the process. So, like the sim's pickle, both are loaded only
from an artifact signed under this user's key (:func:`edgequant.backends.artifact.require_trusted`)
whose files match the hashes recorded when they were written. A package is compiled after the
build (``specialize``): :func:`record_package` lists it in ``extra_files`` and signs the
artifact again, so a package that is not listed was not compiled here and is refused.

Example:
    >>> TRUST_WHAT.startswith("a torch.export program")
    True
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from edgequant.backends.artifact import (
    HASHES_KEY,
    METADATA_NAME,
    Artifact,
    require_trusted,
)
from edgequant.backends.pytorch.config import PROGRAM_NAME
from edgequant.errors import ArtifactError, condense_error

#: what ``require_trusted`` names in its refusal ("program.pt2 is WHAT that can run code ...")
TRUST_WHAT = "a torch.export program (with AOTInductor packages: native code)"


def load_program(artifact: Artifact) -> Any:
    """The artifact's ``program.pt2`` as an ExportedProgram, after checking it is trusted.

    Example:
        >>> load_program(art).module()   # doctest: +SKIP
        GraphModule(...)
    """
    import torch

    require_trusted(artifact, TRUST_WHAT)
    program_path = artifact.directory / PROGRAM_NAME
    if artifact.scheme.weights is not None:
        import torchao.quantization.pt2e  # noqa: F401  (registers the quantized_decomposed ops)
    try:
        return torch.export.load(str(program_path))
    except Exception as e:  # torch.export raises many types
        raise ArtifactError(
            f"cannot read {program_path} ({condense_error(e)}); delete {artifact.directory} and rebuild"
        ) from e


def check_packages(artifact: Artifact, packages: dict[int, Path]) -> None:
    """Refuse the artifact unless it is trusted and every package was signed when compiled.

    Example:
        >>> check_packages(art, PyTorchBackend.packages(art))   # doctest: +SKIP
    """
    require_trusted(artifact, TRUST_WHAT)
    listed = artifact.metadata.get(HASHES_KEY) or {}
    if any(p.name not in listed for p in packages.values()):
        # another handle of this artifact may have compiled and signed them since it was read
        with contextlib.suppress(OSError, ValueError, ArtifactError):
            fresh = Artifact.load(artifact.directory, verify=False)
            require_trusted(fresh, TRUST_WHAT)
            artifact.metadata.update(fresh.metadata)
            listed = artifact.metadata.get(HASHES_KEY) or {}
    for path in packages.values():
        if path.name not in listed:
            raise ArtifactError(
                f"artifact {artifact.directory} holds {path.name}, which was not signed when it "
                "was compiled: an AOTInductor package is native code, so edgequant refuses it; "
                f"delete {path} (it is compiled again) or rebuild with `edgequant quantize`"
            )


def record_package(artifact: Artifact, package: Path) -> None:
    """List a package compiled into the artifact in ``extra_files`` and sign the artifact again.

    Packages another process compiled meanwhile are kept listed when the ``artifact.json`` on
    disk is still trusted (two benches may specialize one artifact at once).

    Example:
        >>> record_package(art, art.directory / "model-b8.pt2")   # doctest: +SKIP
    """
    names = set(artifact.metadata.get("extra_files") or [])
    with contextlib.suppress(OSError, ValueError, ArtifactError):
        on_disk = Artifact.load(artifact.directory, verify=False)
        require_trusted(on_disk, TRUST_WHAT)
        names |= set(on_disk.metadata.get("extra_files") or [])
    names.add(package.name)
    artifact.metadata["extra_files"] = sorted(
        n for n in names if (artifact.directory / n).is_file()
    )
    try:
        artifact.save_metadata()
    except OSError as e:
        raise ArtifactError(
            f"cannot record {package.name} in {artifact.directory / METADATA_NAME}: "
            f"{e.strerror}; the package would not be trusted when loaded"
        ) from e


__all__ = ["TRUST_WHAT", "check_packages", "load_program", "record_package"]
