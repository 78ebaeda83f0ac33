"""An artifact: a built model on disk plus ``artifact.json``, what was done to build it.

At build time ``artifact.json`` records the sha256 of every file of the artifact
(``file_hashes``) and an HMAC of those hashes under a per-user key
(``~/.config/edgequant/artifact-key``, created on first use, mode 0600): ``signature``.
:meth:`Artifact.load` checks the hashes (a file changed after the build is named);
:func:`require_trusted` also checks the signature, for runtimes whose files can run code when
loaded (a pickle): an artifact folder copied from elsewhere cannot forge it and is refused.

Example:
    >>> art = Artifact.load("runs/r50-ort-w8a8")          # doctest: +SKIP
    >>> art.metadata["executed_precision"], art.size_bytes  # doctest: +SKIP
    ('int8', 25749843)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgequant.console import log
from edgequant.errors import ArtifactError, ValidationError
from edgequant.quant.scheme import Scheme

METADATA_NAME = "artifact.json"
#: the artifact.json keys written at build time: sha256 per file, HMAC of them
HASHES_KEY = "file_hashes"
SIGNATURE_KEY = "signature"
KEY_NAME = "artifact-key"
_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    """The sha256 of a file, hex.

    Example:
        >>> import tempfile; p = Path(tempfile.mkdtemp()) / "f"; _ = p.write_bytes(b"")
        >>> file_sha256(p)[:8]
        'e3b0c442'
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def key_path() -> Path:
    """Where the per-user signing key lives: ``$XDG_CONFIG_HOME/edgequant/artifact-key``
    (default ``~/.config/edgequant/artifact-key``).

    Example:
        >>> key_path().name
        'artifact-key'
    """
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "edgequant" / KEY_NAME


def signing_key() -> bytes:
    """This user's artifact signing key, created (32 random bytes, mode 0600) on first use.

    Where the key cannot be written (a read-only home), a key for this process only is used,
    with a warning: artifacts built now load in this process, later ones rebuild them.

    Example:
        >>> len(signing_key()) >= 32
        True
    """
    global _PROCESS_KEY
    path = key_path()
    try:
        key = path.read_bytes() if path.exists() else b""
        if len(key) >= 32:
            return key
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{KEY_NAME}-{os.getpid()}-{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_bytes(32))
        finally:
            os.close(fd)
        try:
            if key:  # too short to be ours: replace it
                os.replace(tmp, path)
            else:  # fails if another process created the key first: use theirs
                os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
        return path.read_bytes()
    except OSError as e:
        if _PROCESS_KEY is None:
            _PROCESS_KEY = secrets.token_bytes(32)
            log(
                f"edgequant: warning: cannot write the artifact signing key {path} "
                f"({e.strerror or type(e).__name__}); artifacts built now are trusted by this "
                "process only (set XDG_CONFIG_HOME to a writable folder)"
            )
        return _PROCESS_KEY


_PROCESS_KEY: bytes | None = None


def _signature(meta: dict[str, Any]) -> str:
    payload = json.dumps(
        {
            "backend": meta.get("backend"),
            "file": meta.get("file"),
            HASHES_KEY: meta.get(HASHES_KEY),
        },
        sort_keys=True,
    ).encode()
    return hmac.new(signing_key(), payload, hashlib.sha256).hexdigest()


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

    def files(self) -> list[Path]:
        """The artifact's files (the model file or every file under it, plus extra files)."""
        if self.path.is_dir():
            return sorted(
                p for p in self.path.rglob("*") if p.is_file() and p.name != METADATA_NAME
            )
        files = [self.path] + [self.directory / p for p in self.metadata.get("extra_files", [])]
        return [p for p in files if p.is_file()]

    def save_metadata(self) -> Path:
        """Write ``artifact.json``: the metadata, the file hashes and their signature."""
        meta = dict(self.metadata)
        meta.update(
            backend=self.backend,
            model=self.model,
            scheme=self.scheme.to_dict(),
            file=self.path.name,
            size_bytes=self.size_bytes,
        )
        meta[HASHES_KEY] = {
            str(p.relative_to(self.directory)): file_sha256(p)
            for p in self.files()
            if p.is_relative_to(self.directory)
        }
        meta[SIGNATURE_KEY] = _signature(meta)
        self.metadata = meta
        out = self.directory / METADATA_NAME
        out.write_text(json.dumps(meta, indent=2, default=str))
        return out

    def modified_file(self) -> str | None:
        """The first file whose content differs from the hash recorded at build time (or that
        is missing), else None. Artifacts built before hashes were recorded have none to check.

        Example:
            >>> Artifact.load("runs/art").modified_file() is None   # doctest: +SKIP
            True
        """
        hashes = self.metadata.get(HASHES_KEY)
        if not hashes:
            return None
        if not isinstance(hashes, dict):
            return METADATA_NAME
        root = self.directory.resolve()
        for name, digest in sorted(hashes.items()):
            f = (self.directory / str(name)).resolve()
            if not f.is_relative_to(root) or not f.is_file() or file_sha256(f) != digest:
                return str(name)
        return None

    @classmethod
    def load(cls, path: Path | str, *, verify: bool = True) -> Artifact:
        """Read an artifact from its directory, its model file or its ``artifact.json``.

        ``verify`` checks every file against the sha256 recorded at build time and raises
        :class:`ArtifactError` naming the first one that was modified.

        Example:
            >>> Artifact.load("/nonexistent")
            Traceback (most recent call last):
            ...
            edgequant.errors.ArtifactError: artifact /nonexistent does not exist; build it with `edgequant quantize`
        """
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
        meta, scheme, file = _read_metadata(meta_path)
        if not file.exists():
            raise ArtifactError(
                f"artifact file {file} is missing; delete {meta_path.parent} and rebuild it"
            )
        art = cls(
            path=file, backend=meta["backend"], model=meta["model"], scheme=scheme, metadata=meta
        )
        if verify:
            changed = art.modified_file()
            if changed is not None:
                raise ArtifactError(
                    f"artifact {art.directory} was modified after it was built ({changed}); "
                    "rebuild it with `edgequant quantize`"
                )
        return art


def _read_metadata(meta_path: Path) -> tuple[dict[str, Any], Scheme, Path]:
    """Parse ``artifact.json``; anything that is not an artifact description is an ArtifactError."""
    advice = "it is not an artifact description; delete the artifact and rebuild it with `edgequant quantize`"
    try:
        meta = json.loads(meta_path.read_bytes().decode("utf-8"))
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
        raise ArtifactError(f"{meta_path} is corrupt ({type(e).__name__}): {advice}") from None
    if not isinstance(meta, dict):
        raise ArtifactError(
            f"{meta_path} is corrupt (a JSON {type(meta).__name__}, not an object): {advice}"
        )
    try:
        scheme = Scheme.from_dict(meta["scheme"])
        name = meta["file"]
        if not isinstance(name, str) or not all(
            isinstance(meta[k], str) for k in ("backend", "model")
        ):
            raise TypeError("file, backend and model must be strings")
    except KeyError as e:
        raise ArtifactError(f"{meta_path} is corrupt (no {e} key): {advice}") from None
    except (TypeError, AttributeError, ValueError, ValidationError) as e:
        raise ArtifactError(f"{meta_path} is corrupt ({type(e).__name__}: {e}): {advice}") from None
    file = meta_path.parent / name
    if not file.resolve().is_relative_to(meta_path.parent.resolve()):
        raise ArtifactError(f"{meta_path} names a file outside its folder ({name}): {advice}")
    return meta, scheme, file


def require_trusted(artifact: Artifact, what: str) -> None:
    """Refuse an artifact whose files can run code when loaded (``what``, e.g. "a pickle")
    unless it was built by this user on this machine: its ``signature`` must be the HMAC of its
    file hashes under this user's key, and every file must match its hash.

    Example:
        >>> require_trusted(Artifact.load("copied/sim-artifact"), "a pickle")  # doctest: +SKIP
        Traceback (most recent call last):
        ArtifactError: artifact copied/sim-artifact was not built by this user on this machine ...
    """
    meta = artifact.metadata
    sig = meta.get(SIGNATURE_KEY)
    if (
        not isinstance(sig, str)
        or not meta.get(HASHES_KEY)
        or not hmac.compare_digest(sig, _signature(meta))
    ):
        raise ArtifactError(
            f"artifact {artifact.directory} was not built by this user on this machine (its "
            f"signature does not match {key_path()}): {artifact.path.name} is {what} that can run "
            "code when loaded, so edgequant refuses it; rebuild it here with `edgequant quantize`"
        )
    changed = artifact.modified_file()
    if changed is not None:
        raise ArtifactError(
            f"artifact {artifact.directory} was modified after it was built ({changed}); "
            "rebuild it with `edgequant quantize`"
        )


__all__ = [
    "HASHES_KEY",
    "METADATA_NAME",
    "SIGNATURE_KEY",
    "Artifact",
    "file_sha256",
    "key_path",
    "require_trusted",
    "signing_key",
]
