"""A real Dask scheduler and real ``edgequant worker``s as separate processes on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SRC = str(Path(__file__).resolve().parents[3] / "src")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Fleet:
    """Starts processes and stops every one of them (``stop``), whatever happened."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def _start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([SRC, *filter(None, [env.get("PYTHONPATH")])])
        env["EDGEQUANT_CACHE"] = str(self.root / f"cache-{name}")
        log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgequant", *argv],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def start_scheduler(self) -> None:
        self._start(
            "scheduler",
            ["cluster", "--start-scheduler", "--host", "127.0.0.1", "--port", str(self.port)],
        )

    def start_worker(self, name: str, device: str, runtimes: list[str]) -> subprocess.Popen[bytes]:
        return self._start(
            name,
            [
                "worker",
                "--scheduler",
                self.address,
                "--device",
                device,
                "--runtimes",
                ",".join(runtimes),
                "--host",
                "127.0.0.1",
            ],
        )

    def work_dir(self, name: str) -> Path:
        return self.root / f"cache-{name}" / "fleet"

    def wait_for(self, devices: dict[str, int], timeout_s: float = 90.0) -> list[Any]:
        """Wait until each device has that many workers; returns the workers' views."""
        from edgequant.sweep.fleet.cluster import by_device, connect, workers

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                client = connect(self.address, timeout_s=5)
                try:
                    views = workers(client)
                finally:
                    client.close()
                have = {d: len(g) for d, g in by_device(views).items()}
                if all(have.get(d, 0) >= n for d, n in devices.items()):
                    return views
            except Exception:
                pass
            if time.monotonic() > deadline:
                logs = {p.name: p.read_text()[-2000:] for p in self.root.glob("*.log")}
                raise AssertionError(f"the fleet did not come up: {logs}")
            time.sleep(1.0)

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(proc.pid, sig)
                except (ProcessLookupError, PermissionError):
                    break
                try:
                    proc.wait(timeout=10)
                    break
                except subprocess.TimeoutExpired:
                    continue
