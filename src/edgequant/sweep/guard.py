"""Run a command so that it dies with the sweep: ``python guard.py -- COMMAND...``.

Every child of a sweep runs in its own session (so that a timeout or Ctrl-C can end it and all it
started with one ``killpg``). Its own session also means it outlives a sweep killed by ``kill -9``.
This guard sits between the two: it runs COMMAND in its process group, exits with COMMAND's
status (dying by the same signal when COMMAND did), and when its parent (the sweep) disappears
it kills the whole group, COMMAND and whatever COMMAND started (compilers, helpers).

It is started as a script (never imported by the package), so it costs an interpreter start-up
and nothing more.

Example::

    $ python src/edgequant/sweep/guard.py -- python -m edgequant bench --model digits_cnn ...
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys

POLL_S = 0.5


def main(argv: list[str]) -> int:
    """Run ``argv`` (after ``--``) until it ends or the parent is gone."""
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        print("usage: guard.py -- COMMAND...", file=sys.stderr)
        return 2
    parent = os.getppid()
    child = subprocess.Popen(argv[argv.index("--") + 1 :])

    def wait_for_it(signum: int, frame: object) -> None:
        """The sweep signals the whole group (``killpg``): COMMAND got it too; outlive it."""

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, wait_for_it)
    while True:
        try:
            code = child.wait(timeout=POLL_S)
            break
        except subprocess.TimeoutExpired:
            if os.getppid() != parent:  # the sweep is gone: end everything of this group
                os.killpg(os.getpgid(0), signal.SIGKILL)
    if code < 0:  # die the way the command died, so the sweep sees the same signal
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # the command's crash, not a 2nd core
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
