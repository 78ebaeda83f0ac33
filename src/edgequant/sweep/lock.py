"""One sweep at a time per runs folder: an ``fcntl`` lock on ``RUNS/.sweep.lock``.

Two sweeps into one folder would both run every cell and store contended measurements as
valid. The lock is held for the whole sweep and released when it ends, however it ends (the
kernel drops an ``flock`` when its process dies, ``kill -9`` included). The file keeps the
holder's pid and command line, so the refusal can name the other process.

Example:
    >>> with RunsLock(Path(tmp)):   # doctest: +SKIP
    ...     pass
"""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path
from types import TracebackType

from edgequant.errors import EdgequantError
from edgequant.sweep.records import now

LOCK_FILE = ".sweep.lock"


class RunsLock:
    """Exclusive use of a runs folder; refuses (raises) at once when another process holds it."""

    def __init__(self, runs_dir: Path) -> None:
        self.path = Path(runs_dir) / LOCK_FILE
        self._fd: int | None = None

    def __enter__(self) -> RunsLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise EdgequantError(
                f"{self.path.parent} is in use by another sweep ({holder}); wait for it to "
                "finish or stop it, or sweep into another folder"
            ) from None
        os.ftruncate(fd, 0)
        command = " ".join(sys.argv) or sys.executable
        os.pwrite(fd, f"pid {os.getpid()}, since {now()}: {command}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


__all__ = ["LOCK_FILE", "RunsLock"]
