"""Fault injection: kill real ``edgequant sweep`` runs, their workers and builders at random
points, resume, and check that nothing was lost, duplicated or left behind (issue 16).

Each round starts ``edgequant sweep`` on a small digits_cnn experiment (two runtimes, fp32 and
w8a8, Offline, 0.3 s cells) with a fresh runs folder and a fresh artifact cache (so builds
happen every round), with a random isolation (cell or backend) and random ``--build-jobs``
(1 or 2). After a random delay it sends SIGKILL (sometimes SIGTERM or SIGHUP) to the sweep
itself or to a random process below it (a bench, a group worker, a build-ahead worker or a
guard). Then it resumes the sweep to completion and checks:

* every cell of the plan has exactly one run folder with a ``result.json`` whose status is ok,
  and ``results.db`` has exactly one row per cell (no lost, no duplicated cell);
* ``PRAGMA integrity_check`` of ``results.db`` is ``ok``;
* no process of the killed sweep outlived it (no orphan), and no process names the round's
  folders once the resumed sweep has finished;
* no stale temporary folder: no ``.tmp-*`` in the cache or the runs folder, no ``.rebuild-*``.

    PYTHONPATH=src .venv/bin/python benchmarks/fault_injection.py --rounds 6 [--seed 1] [--keep DIR]

Exit status 0 when every round passed, 1 otherwise (each failed check is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

EXPERIMENT = """\
name: faults
models: [digits_cnn]
backends: [onnxruntime, sim]
schemes: [fp32, w8a8]
scenarios: [Offline]
data: digits
calib: digits
threads: 1
duration_s: 0.3
"""
RESUME_TIMEOUT_S = 600


@dataclass
class Round:
    """What one round did and found."""

    index: int
    options: list[str]
    victim: str = ""
    problems: list[str] = field(default_factory=list)


def _children() -> dict[int, list[int]]:
    """ppid -> pids of every live process (from /proc)."""
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat.rsplit(") ", 1)[1].split()
        if fields[0] != "Z":
            tree.setdefault(int(fields[1]), []).append(int(entry))
    return tree


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid``."""
    tree, out, todo = _children(), [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def _processes_naming(text: str) -> list[str]:
    own = os.getpid()
    return [
        f"{p} {_cmdline(int(p))[:160]}"
        for p in os.listdir("/proc")
        if p.isdigit() and int(p) != own and alive(int(p)) and text in _cmdline(int(p))
    ]


def sweep_command(experiment: Path, runs: Path, options: list[str]) -> list[str]:
    return [sys.executable, "-m", "edgequant", "sweep", str(experiment), "-o", str(runs), *options]


def inject(
    rnd: Round, experiment: Path, runs: Path, env: dict[str, str], rng: random.Random
) -> list[int]:
    """Start a sweep, kill it or one of its processes at a random point; return the processes
    that were below the sweep when it was hit (to look for orphans)."""
    log = open(runs.parent / f"round{rnd.index}.log", "w")  # noqa: SIM115 - closed below
    sweep = subprocess.Popen(
        sweep_command(experiment, runs, rnd.options), stdout=log, stderr=log, env=env
    )
    delay = rng.uniform(3.0, 20.0)
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline and sweep.poll() is None:
        time.sleep(0.05)
    below = descendants(sweep.pid)
    sig = rng.choice(
        [signal.SIGKILL, signal.SIGKILL, signal.SIGKILL, signal.SIGTERM, signal.SIGHUP]
    )
    if sweep.poll() is not None:
        rnd.victim = f"nothing (the sweep finished within {delay:.1f} s)"
    elif below and rng.random() < 0.5:
        # mostly the bench, worker or builder itself, sometimes the guard in front of it
        workers = [p for p in below if "guard.py" not in _cmdline(p)]
        pid = rng.choice(workers if workers and rng.random() < 0.7 else below)
        rnd.victim = f"{sig.name} to child {_cmdline(pid)[:100]!r} at {delay:.1f} s"
        os.kill(pid, sig)
        try:
            sweep.wait(RESUME_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            rnd.problems.append("the sweep did not finish after one of its children was killed")
            sweep.kill()
    else:
        rnd.victim = f"{sig.name} to the sweep at {delay:.1f} s ({len(below)} processes below)"
        os.kill(sweep.pid, sig)
    sweep.wait()
    log.close()
    return below


def check_orphans(rnd: Round, below: list[int]) -> None:
    """Processes that were below the killed sweep must be gone within seconds."""
    deadline = time.monotonic() + 15
    left = [p for p in below if alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = [p for p in left if alive(p)]
    for pid in left:
        rnd.problems.append(f"orphan process {pid}: {_cmdline(pid)[:160]}")
        os.kill(pid, signal.SIGKILL)


def check_results(rnd: Round, runs: Path, cells: list[str], cache: Path) -> None:
    """No lost or duplicated cell, a sound results.db, no stale temporary folder."""
    for cell in cells:
        path = runs / cell / "result.json"
        try:
            status = json.loads(path.read_text()).get("status")
        except (OSError, ValueError) as e:
            rnd.problems.append(f"cell {cell}: no readable result.json ({type(e).__name__})")
            continue
        if status != "ok":
            rnd.problems.append(f"cell {cell}: status {status} after the resume")
    extra = sorted(
        p.name
        for p in runs.iterdir()
        if p.is_dir() and p.name not in cells and p.name not in ("groups", "pairs")
    )
    if extra:
        rnd.problems.append(f"unexpected folders in the runs folder: {extra}")
    db = runs / "results.db"
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            check = conn.execute("PRAGMA integrity_check").fetchone()[0]
            ids = [r[0] for r in conn.execute("SELECT run_id FROM runs")]
        finally:
            conn.close()
    except sqlite3.Error as e:
        rnd.problems.append(f"results.db cannot be read: {e}")
        return
    if check != "ok":
        rnd.problems.append(f"results.db integrity_check: {check}")
    if sorted(ids) != sorted(cells):
        rnd.problems.append(f"results.db rows {sorted(ids)} != the plan's cells {sorted(cells)}")
    stale = [
        str(p)
        for root in (cache, runs)
        for p in root.rglob("*")
        if p.is_dir() and (p.name.startswith((".tmp-", ".rebuild-")) or p.name.endswith(".tmp"))
    ]
    if stale:
        rnd.problems.append(f"stale temporary folders: {stale}")


def run_round(rnd: Round, base: Path, rng: random.Random, cells: list[str]) -> None:
    folder = base / f"round{rnd.index}"
    folder.mkdir()
    experiment = folder / "experiment.yaml"
    experiment.write_text(EXPERIMENT)
    runs, cache = folder / "runs", folder / "cache"
    env = {**os.environ, "EDGEQUANT_CACHE": str(cache)}
    below = inject(rnd, experiment, runs, env, rng)
    check_orphans(rnd, below)
    resume = subprocess.run(
        sweep_command(experiment, runs, []),
        capture_output=True,
        text=True,
        env=env,
        timeout=RESUME_TIMEOUT_S,
    )
    (folder / "resume.log").write_text(resume.stdout + resume.stderr)
    if resume.returncode != 0:
        rnd.problems.append(
            f"the resumed sweep exited {resume.returncode} (see {folder}/resume.log)"
        )
    check_results(rnd, runs, cells, cache)
    for line in _processes_naming(str(folder)):
        rnd.problems.append(f"process left after the resume: {line}")


def plan_cells() -> list[str]:
    from edgequant.sweep.experiment import parse_experiment

    return [c.cell_id for c in parse_experiment(EXPERIMENT).cells()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=6, help="how many kills (default 6)")
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    ap.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it")
    args = ap.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    base = args.keep or Path(tempfile.mkdtemp(prefix="eq-faults-"))
    base.mkdir(parents=True, exist_ok=True)
    cells = plan_cells()
    print(f"fault injection: {args.rounds} rounds, seed {seed}, {len(cells)} cells, in {base}")
    failed = 0
    for i in range(args.rounds):
        options = ["--isolation", rng.choice(["cell", "backend"])]
        options += ["--build-jobs", str(rng.choice([1, 2]))]
        rnd = Round(i, options)
        run_round(rnd, base, rng, cells)
        verdict = "ok" if not rnd.problems else "FAILED"
        print(f"round {i} [{' '.join(options)}] {rnd.victim}: {verdict}", flush=True)
        for p in rnd.problems:
            print(f"    {p}", flush=True)
        failed += bool(rnd.problems)
    print(f"{args.rounds - failed}/{args.rounds} rounds passed (seed {seed})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
