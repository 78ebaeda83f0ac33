"""The artifact cache: build each (model, weights, scheme, calibration set, runtime) once.

Artifacts live in ``$EDGEQUANT_CACHE`` (default ``~/.cache/edgequant``) under
``<backend>/<model key>-<scheme>-<hash>/``. The hash covers the model key and weights hash, the
full scheme (techniques included), the calibration set's identity and sample count, and the
backend's name and runtime versions, so upgrading a runtime or changing a calibration set never
reuses a stale artifact.

Builds go to a temporary directory beside the final one and are renamed into place, so an
interrupted build never leaves a half-written artifact under the final name. One process at a
time builds an entry: an ``flock`` on ``.lock-<entry>`` beside it (see :class:`EntryLock`); the
others wait, with a progress line naming the builder, then use what it built. The kernel drops
the lock of a builder that dies (``kill -9`` included), so a waiter takes over at once. A cached
artifact whose metadata is missing or unreadable, whose files are missing or differ from the
sha256 recorded at build time, or that the runtime cannot load, is reported in one line,
deleted and rebuilt. A cache that cannot be written costs a warning: the artifact is built into
a temporary folder for this run only.

Example:
    >>> from edgequant.build.cache import get_or_build
    >>> art = get_or_build("onnxruntime", load_model("resnet50"), "w8a8",
    ...                    open_dataset("synthetic", spec))               # doctest: +SKIP
    >>> art.metadata["cache_key"][:8]                                       # doctest: +SKIP
    '3fa1c2d9'
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgequant.backends.artifact import HASHES_KEY
from edgequant.backends.base import METADATA_NAME, Artifact, Backend, get_backend
from edgequant.console import log
from edgequant.errors import ArtifactError, EdgequantError, UnsupportedError, ValidationError
from edgequant.paths import default_cache_dir
from edgequant.quant.scheme import ROUNDING_TECHNIQUES, Scheme, get_scheme

if TYPE_CHECKING:
    from edgequant.data.base import Dataset
    from edgequant.models.base import Model

#: bump when the layout, the key or a build default changes, so old entries are not reused
#: (2: bias correction by default for ONNX Runtime, LiteRT and PyTorch static int8;
#: 3: the backend's ``recipe`` joins the key; 4: the backend's ``cache_facets`` — the INT8 class
#: its kernels use here and per-layer CPU remedies — join it). A change in one backend bumps its
#: ``recipe``.
CACHE_FORMAT = 4


def calibration_identity(calib: Dataset | np.ndarray | None, n: int | None) -> str | None:
    """What identifies a calibration set in the cache key: dataset identity + sample count.

    Arrays are identified by a hash of their bytes.

    Example:
        >>> calibration_identity(np.zeros((2, 3, 8, 8), np.float32), None)[:6]
        'array:'
    """
    if calib is None:
        return None
    if isinstance(calib, np.ndarray):
        digest = hashlib.sha1(np.ascontiguousarray(calib).tobytes()).hexdigest()[:16]
        return f"array:{calib.shape}:{calib.dtype}:{digest}"
    return f"{calib.identity}|samples={n}"


def cache_key(backend: Backend, model: Model, scheme: Scheme, calib_id: str | None) -> str:
    """The hex digest naming an artifact in the cache.

    Example:
        >>> cache_key(get_backend("onnxruntime"), model, get_scheme("fp32"), None)  # doctest: +SKIP
        'c0ffee…'
    """
    payload = {
        "format": CACHE_FORMAT,
        "model": model.key,
        "weights_hash": model.weights_hash,
        "scheme": scheme.to_dict(),
        "calibration": calib_id,
        "backend": backend.name,
        "recipe": backend.recipe,
        "versions": backend.versions(),
        # what else decides the build here: the INT8 class its kernels use, the sim's target
        "facets": backend.cache_facets(),
    }
    if set(ROUNDING_TECHNIQUES) & set(scheme.techniques):  # a release that rounds differently
        from edgequant.quant.adaround_cache import signature

        payload["rounding"] = signature()
    runtime = backend.runtime_scheme(scheme)
    if runtime != scheme:  # what the rounding and the sim's target really work on
        payload["runtime_scheme"] = runtime.to_dict()
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def get_or_build(
    backend: Backend | str,
    model: Model,
    scheme: Scheme | str,
    calib: Dataset | np.ndarray | None = None,
    *,
    cache_dir: Path | str | None = None,
    force: bool = False,
    progress: bool = True,
) -> Artifact:
    """The cached artifact for (backend, model, scheme, calibration set), built when missing.

    ``calib`` is a :class:`~edgequant.data.base.Dataset` (``scheme.calibration.samples`` of it
    are used, a seeded subset) or an already-preprocessed float32 NCHW array. Static schemes
    without it raise :class:`ValidationError`; the backend's availability and support for the
    scheme are checked before anything is built. ``force`` rebuilds even a valid entry.

    Example:
        >>> art = get_or_build("onnxruntime", model, "fp32")    # doctest: +SKIP
        >>> get_or_build("onnxruntime", model, "fp32").path == art.path   # doctest: +SKIP
        True
    """
    be = get_backend(backend) if isinstance(backend, str) else backend
    sch = get_scheme(scheme)
    be.require()
    be.check_supported(sch, model)
    if sch.needs_calibration and calib is None:
        raise ValidationError(f"scheme {sch.name} needs calibration data: pass --calib DATASET")
    use_calib = calib if sch.needs_calibration else None
    n_calib = sch.calibration.samples if use_calib is not None else None
    calib_id = calibration_identity(use_calib, n_calib)
    key = cache_key(be, model, sch, calib_id)

    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    _check_root(root, cache_dir is None)
    final = root / be.name / f"{_safe(model.key)}-{_safe(sch.name)}-{key[:16]}"
    if final.exists() and not force:
        problem = _check_entry(be, final, key)
        if problem is None:
            return Artifact.load(final, verify=False)  # checked just now
        log(f"edgequant: cached artifact {final} is unusable ({problem}); rebuilding it")
        force = True  # checked once: whoever holds the lock next rebuilds it
    lock = EntryLock(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire(progress=progress)
    except OSError as e:
        final = _run_folder(root, e) / be.name / final.name
        return _build(be, model, sch, use_calib, n_calib, calib_id, key, final, progress)
    try:
        # built by the process we waited for (or left by a dead one): use it if it is sound
        reuse = final.exists() and (lock.waited or not force)
        if reuse and _check_entry(be, final, key) is None:
            return Artifact.load(final, verify=False)  # checked just now
        return _build(be, model, sch, use_calib, n_calib, calib_id, key, final, progress)
    finally:
        lock.release()


class EntryLock:
    """An exclusive ``flock`` on ``.lock-<entry>`` beside a cache entry, held while building it.

    :meth:`acquire` waits for another holder, logging who it waits for (the lock file holds the
    holder's pid and start time) every ``report_s`` seconds; the kernel releases the lock when
    its holder exits or is killed, so a dead builder is taken over at once. ``waited`` says
    whether another process held it first.

    Example:
        >>> import tempfile
        >>> lock = EntryLock(Path(tempfile.mkdtemp()) / "entry")
        >>> lock.acquire(); lock.waited
        False
        >>> lock.release()
    """

    def __init__(self, entry: Path, *, poll_s: float = 0.2, report_s: float = 30.0) -> None:
        self.path = entry.parent / f".lock-{entry.name}"
        self.entry = entry
        self.poll_s = poll_s
        self.report_s = report_s
        self.waited = False
        self._fd: int | None = None

    def acquire(self, *, progress: bool = True) -> None:
        """Take the lock, waiting for its holder; OSError when the lock file cannot be made."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        last_report = -float("inf")
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                self.waited = True
                now = time.monotonic()
                if progress and now - last_report >= self.report_s:
                    last_report = now
                    log(f"edgequant: waiting for {self.holder()} to finish building {self.entry}")
                time.sleep(self.poll_s)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}, since {time.strftime('%H:%M:%S')}".encode())
        self._fd = fd

    def holder(self) -> str:
        """Who holds the lock, as its file says (``pid N, since T``)."""
        try:
            text = self.path.read_text(errors="replace").strip()
        except OSError:
            text = ""
        return text or "another process"

    def release(self) -> None:
        """Drop the lock (closing the file releases the flock)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _run_folder(root: Path, error: OSError) -> Path:
    """A temporary folder for this run's builds when the cache cannot be written (deleted at
    exit), announced with a warning that says why and what to change."""
    tmp = Path(tempfile.mkdtemp(prefix="edgequant-build-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    reason = error.strerror or type(error).__name__
    log(
        f"edgequant: warning: the artifact cache {root} cannot be written ({reason}); building "
        f"into {tmp} for this run only (point $EDGEQUANT_CACHE or --cache-dir at a writable "
        "folder to keep artifacts)"
    )
    return tmp


def _check_root(root: Path, from_env: bool) -> None:
    """Refuse a cache root that is a file (or lies under one) with advice on what to change."""
    probe = root
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.is_dir():
        return
    where = "$EDGEQUANT_CACHE" if from_env else "--cache-dir"
    raise ValidationError(
        f"the artifact cache {root} cannot be a folder: {probe} is a file; point {where} at a folder"
    )


def _build(
    be: Backend,
    model: Model,
    scheme: Scheme,
    calib: Dataset | np.ndarray | None,
    n_calib: int | None,
    calib_id: str | None,
    key: str,
    final: Path,
    progress: bool,
) -> Artifact:
    calib_array = _calibration_array(calib, n_calib, model)
    if getattr(calib, "kind", None) == "synthetic":
        # random pixels say nothing about real activations: corrections that learn from the
        # calibration data (default bias correction) are skipped; speed does not depend on them
        model = dataclasses.replace(model, info={**model.info, "calibration_synthetic": True})
    if scheme.techniques and not set(ROUNDING_TECHNIQUES) & set(scheme.techniques):
        # AdaRound/GPTQ need the runtime's own weight grid: Backend.prepare applies them
        model = _apply_techniques(model, be.runtime_scheme(scheme), calib_array)
    final.parent.mkdir(parents=True, exist_ok=True)
    collect_stale_builds(final.parent)
    for tmp in final.parent.glob(f".tmp-{final.name}-*"):
        # we hold this entry's lock: its other temporary folders are dead builders' (even
        # when their pid was reused by a live process)
        shutil.rmtree(tmp, ignore_errors=True)
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}-{time.monotonic_ns()}"
    if progress:
        log(f"building {be.name} {scheme.name} artifact for {model.name} ...")
    t0 = time.perf_counter()
    try:
        with _self_contained(model) as source:
            art = be.prepare(source, scheme, calib_array, tmp)
        _relative_extra_files(art.metadata, tmp)
        art.metadata.update(
            cache_key=key,
            calibration_set=calib_id,
            calibration_samples=art.metadata.get(
                "calibration_samples", 0 if calib_array is None else len(calib_array)
            ),
            build_seconds=round(time.perf_counter() - t0, 2),
            weights_hash=model.weights_hash,
            techniques_applied=list(
                art.metadata.get("techniques_applied") or model.info.get("techniques_applied", [])
            ),
        )
        art.save_metadata()
        if final.exists():  # a corrupt entry, or --force: replace it
            shutil.rmtree(final, ignore_errors=True)
        try:
            os.replace(tmp, final)
        except OSError:
            # another process renamed its build into place first: theirs is as good as ours
            if _check_entry(be, final, key) is not None:
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if progress:
        log(f"built {final} in {time.perf_counter() - t0:.1f} s")
    return Artifact.load(final, verify=False)  # written just now


#: ONNX's protobuf limit: a model with more weights must keep them in external data
_PROTOBUF_LIMIT = 2**31 - 1


@contextlib.contextmanager
def _self_contained(model: Model) -> Iterator[Model]:
    """The model with its ONNX file made self-contained (external data inlined) for the build.

    Runtimes copy or convert the ``.onnx`` into the artifact; an ``.onnx.data`` file beside it
    would stay behind in the user's folder, so the cached artifact would break (or silently use
    other weights) once that folder changes. Inlined, the artifact carries its weights.
    """
    path = model.onnx_path
    if path is None:
        yield model
        return
    import onnx

    from edgequant.models.onnx_file import external_data_files

    if not external_data_files(onnx.load(str(path), load_external_data=False), path.parent):
        yield model
        return
    full = onnx.load(str(path))  # reads the external data beside the model
    if full.ByteSize() >= _PROTOBUF_LIMIT:
        raise UnsupportedError(
            f"{path} keeps over 2 GB of weights in external data; edgequant builds artifacts "
            "from single-file ONNX models only"
        )
    with tempfile.TemporaryDirectory(prefix="edgequant-onnx-") as folder:
        inlined = Path(folder) / path.name
        onnx.save(full, str(inlined))
        yield dataclasses.replace(model, onnx_path=inlined)


def collect_stale_builds(folder: Path) -> list[Path]:
    """Delete the ``.tmp-*`` build folders in ``folder`` whose builder process is gone (a build
    killed with ``kill -9`` cannot clean up after itself); return what was deleted.

    A temporary folder is named ``.tmp-<entry>-<pid>-<ns>``; one whose process still runs on
    this machine is another build in progress and is left alone.

    Example:
        >>> collect_stale_builds(Path("/nonexistent"))
        []
    """
    removed: list[Path] = []
    for tmp in folder.glob(".tmp-*"):
        parts = tmp.name.rsplit("-", 2)
        if len(parts) != 3 or not parts[1].isdigit():
            continue
        if _process_alive(int(parts[1])):
            continue
        shutil.rmtree(tmp, ignore_errors=True)
        removed.append(tmp)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _relative_extra_files(meta: dict[str, Any], build_dir: Path) -> None:
    """Store extra files inside the build directory by name relative to it: the directory is
    renamed into the cache (and copied by ``quantize -o``), so absolute paths would dangle and
    the entry would look truncated on every later use."""
    extra = meta.get("extra_files")
    if not extra:
        return
    out = []
    for p in extra:
        path = Path(p)
        with contextlib.suppress(ValueError):
            path = path.relative_to(build_dir)
        out.append(str(path))
    meta["extra_files"] = out


def _calibration_array(
    calib: Dataset | np.ndarray | None, n: int | None, model: Model
) -> np.ndarray | None:
    from edgequant.data import calibration_samples, validate_batch

    if calib is None:
        return None
    if isinstance(calib, np.ndarray):
        x = validate_batch(calib, model.input_spec, what="calibration data")
        return x[:n] if n is not None else x
    return calibration_samples(calib, n or len(calib))


def _apply_techniques(model: Model, scheme: Scheme, calib: np.ndarray | None) -> Model:
    try:
        from edgequant.quant.transforms import apply_techniques
    except ImportError:
        raise UnsupportedError(
            f"scheme {scheme.name} asks for techniques {list(scheme.techniques)}, but "
            "edgequant.quant.transforms is not installed in this build"
        ) from None
    return apply_techniques(model, scheme, calib)


def _check_entry(be: Backend, directory: Path, key: str) -> str | None:
    """None when the cached entry is complete and loads, else what is wrong with it."""
    meta_path = directory / METADATA_NAME
    if not meta_path.is_file():
        return f"{METADATA_NAME} is missing"
    try:
        art = Artifact.load(directory, verify=False)
    except ArtifactError as e:  # a tampered artifact.json (binary bytes, a JSON list) included
        return str(e)
    if art.metadata.get("cache_key") != key:
        return "its cache key does not match"
    recorded = art.metadata.get("size_bytes")
    actual = art.size_bytes
    if recorded != actual:
        return f"size is {actual} bytes, metadata says {recorded} (truncated?)"
    if not art.metadata.get(HASHES_KEY):
        return "no file hashes recorded (built by an older edgequant)"
    changed = art.modified_file()
    if changed is not None:
        return f"{changed} differs from the sha256 recorded when it was built"
    try:
        be.load(art, threads=1).close()
    except EdgequantError as e:
        return f"the runtime cannot load it: {e}"
    except Exception as e:  # runtimes raise their own types for corrupt files
        return f"the runtime cannot load it: {type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}"
    return None


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.+" else "_" for c in text)[:60]


def cache_entries(cache_dir: Path | str | None = None) -> list[dict[str, Any]]:
    """One dict per cached artifact (backend, model, scheme, path, size_bytes), for listings.

    Example:
        >>> [e["scheme"] for e in cache_entries()]   # doctest: +SKIP
        ['fp32', 'w8a8']
    """
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    out: list[dict[str, Any]] = []
    for meta in sorted(root.glob(f"*/*/{METADATA_NAME}")):
        if meta.parent.name.startswith(".tmp-"):
            continue
        try:
            data = json.loads(meta.read_text())
            out.append(
                {
                    "backend": data["backend"],
                    "model": data["model"],
                    "scheme": data["scheme"]["name"],
                    "path": str(meta.parent),
                    "size_bytes": data.get("size_bytes"),
                }
            )
        except (OSError, ValueError, KeyError):
            continue
    return out


__all__ = [
    "CACHE_FORMAT",
    "cache_entries",
    "cache_key",
    "calibration_identity",
    "collect_stale_builds",
    "default_cache_dir",
    "get_or_build",
]
