"""The HTML report in a real browser: headless Chromium renders it, plots and all, with no console errors.

``make test`` installs Debian's ``chromium`` when it is missing; without it these tests are skipped.
``EDGEQUANT_WRITE_SCREENSHOT=1`` also writes the screenshot to ``docs/report.png`` (the README's);
``EDGEQUANT_SCREENSHOT_RUNS=DIR`` takes the report of that runs directory (e.g. the demo's) instead
of the tiny sweep's.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from edgequant.report import build_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="chromium is not on PATH (`make test` installs it: apt-get install -y chromium)",
    ),
]
REPO = Path(__file__).resolve().parents[2]


def chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium on a local page, isolated from the network and from any profile."""
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-extensions",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        *args,
        page.resolve().as_uri(),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def console_errors(stderr: str) -> list[str]:
    """Messages the page itself logged (console.*, uncaught exceptions), from Chromium's log."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


def screenshot(page: Path, png: Path, tmp: Path) -> list[str]:
    """Screenshot the page at 1400x2400; returns the console errors seen while rendering."""
    proc = chromium(
        page,
        tmp / "profile-shot",
        f"--screenshot={png}",
        "--window-size=1400,2400",
        "--hide-scrollbars",
    )
    if not png.is_file():
        raise AssertionError(
            f"chromium wrote no screenshot (exit {proc.returncode}): {proc.stderr[-1500:]}"
        )
    return console_errors(proc.stderr)


def test_console_error_detection_works(tmp_path: Path) -> None:
    # the check below is only worth something if a broken page is caught
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<html><body><script>console.error('edgequant-canary'); nope();</script></body></html>"
    )
    errors = console_errors(chromium(bad, tmp_path / "profile", "--dump-dom").stderr)
    assert any("edgequant-canary" in e for e in errors) and any("Uncaught" in e for e in errors)


@pytest.mark.slow
def test_report_renders_in_chromium(tmp_path: Path) -> None:
    from PIL import Image

    runs_env = os.environ.get("EDGEQUANT_SCREENSHOT_RUNS")
    if runs_env:
        runs = Path(runs_env)
    else:
        from tests.sweep.real_sweep import real_sweep

        runs = real_sweep().runs_dir  # records written by a real sweep, through the store
    page = build_report(runs, tmp_path / "report.html")

    dom = chromium(page, tmp_path / "profile-dom", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-1500:]
    assert console_errors(dom.stderr) == []
    # the plots are in the rendered DOM as SVG drawings with content
    svgs = re.findall(r"<svg\b.*?</svg>", dom.stdout, flags=re.S)
    assert len(svgs) >= 3, f"only {len(svgs)} plots rendered"
    assert all(("<path" in s or "<rect" in s) for s in svgs)
    assert "Recommendation per model" in dom.stdout

    png = tmp_path / "report.png"
    assert screenshot(page, png, tmp_path) == []
    img = Image.open(png).convert("RGB")
    assert img.size == (1400, 2400)
    small = img.resize((140, 240))
    colors = small.getcolors(maxcolors=140 * 240) or []
    non_white = sum(n for n, c in colors if sum(c) < 720)
    assert len(colors) > 30, "the screenshot is (nearly) one colour: nothing rendered"
    assert non_white > 0.05 * 140 * 240, "the screenshot is mostly blank"
    # tab10 blue/orange bars of the plots are on the page
    assert any(
        abs(c[0] - 31) < 25 and abs(c[1] - 119) < 25 and abs(c[2] - 180) < 25 for _, c in colors
    )

    if os.environ.get("EDGEQUANT_WRITE_SCREENSHOT") == "1":
        target = REPO / "docs" / "report.png"
        target.parent.mkdir(exist_ok=True)
        shutil.copyfile(png, target)
