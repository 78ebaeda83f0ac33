"""An artifact: a built model on disk plus ``artifact.json``, what was done to build it.

Example:
    >>> art = Artifact.load("runs/r50-ort-w8a8")          # doctest: +SKIP
    >>> art.metadata["executed_precision"], art.size_bytes  # doctest: +SKIP
    ('int8', 25749843)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgequant.errors import ArtifactError, ValidationError
from edgequant.quant.scheme import Scheme

METADATA_NAME = "artifact.json"


@dataclass(kw_only=True)
class Artifact:
    """A built model on disk plus what was done to build it.

    ``path`` is the file (or directory) the runtime loads; ``metadata`` is written to
    ``artifact.json`` beside it: scheme, quantizer options actually used, calibration samples,
    executed precision, sizes, and the reasons for the choices made.
    """

    path: Path
    backend: str
    model: str
    scheme: Scheme
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def directory(self) -> Path:
        return self.path if self.path.is_dir() else self.path.parent

    @property
    def size_bytes(self) -> int:
        """Bytes on disk of the model file(s), excluding our metadata."""
        if self.path.is_dir():
            return sum(
                p.stat().st_size
                for p in self.path.rglob("*")
                if p.is_file() and p.name != METADATA_NAME
            )
        # extra files are stored by name (relative to the artifact directory); absolute paths still work
        files = [self.path] + [self.directory / p for p in self.metadata.get("extra_files", [])]
        return sum(p.stat().st_size for p in files if p.exists())

    def save_metadata(self) -> Path:
        meta = dict(self.metadata)
        meta.update(
            backend=self.backend,
            model=self.model,
            scheme=self.scheme.to_dict(),
            file=self.path.name,
            size_bytes=self.size_bytes,
        )
        self.metadata = meta
        out = self.directory / METADATA_NAME
        out.write_text(json.dumps(meta, indent=2, default=str))
        return out

    @classmethod
    def load(cls, path: Path | str) -> Artifact:
        """Read an artifact from its directory, its model file or its ``artifact.json``."""
        p = Path(path)
        if not p.exists():
            raise ArtifactError(f"artifact {p} does not exist; build it with `edgequant quantize`")
        meta_path = (
            p / METADATA_NAME
            if p.is_dir()
            else (p if p.name == METADATA_NAME else p.parent / METADATA_NAME)
        )
        if not meta_path.is_file():
            raise ArtifactError(
                f"{meta_path} is missing: {p} was not built by edgequant (rebuild it)"
            )
        try:
            meta = json.loads(meta_path.read_text())
            scheme = Scheme.from_dict(meta["scheme"])
            file = meta_path.parent / meta["file"]
        except (json.JSONDecodeError, KeyError, ValidationError) as e:
            raise ArtifactError(
                f"{meta_path} is corrupt ({e}); delete the artifact and rebuild it"
            ) from None
        if not file.exists():
            raise ArtifactError(
                f"artifact file {file} is missing; delete {meta_path.parent} and rebuild it"
            )
        return cls(
            path=file, backend=meta["backend"], model=meta["model"], scheme=scheme, metadata=meta
        )


__all__ = ["METADATA_NAME", "Artifact"]
