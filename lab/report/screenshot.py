"""A picture of matrix.html's first screen, as a maintainer's browser shows it.

Why a picture in every run: a CI artifact is often looked at, not unpacked; ``matrix.png``
beside ``matrix.html`` shows the summary, the cells to look at and the trains at a glance,
and it is what the first-screen test measures (tests/lab/test_report_page.py).  Debian's
``chromium`` renders it headless; where it is missing the run says so and goes on (the
reports do not depend on it).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

#: The screen the page is designed for (docs/howto.md, "Read the matrix").
FIRST_SCREEN = (1400, 900)


def chromium() -> str | None:
    """Debian's chromium, or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def chromium_argv(browser: str, size: tuple[int, int] = FIRST_SCREEN) -> list[str]:
    """Headless flags for a page's first screen: no sandbox (the lab runs as a namespace's
    root, where Chromium's sandbox cannot start), no GPU, no scrollbars eating width."""
    width, height = size
    return [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            f"--window-size={width},{height}", "--virtual-time-budget=3000"]  # fmt: skip


def screenshot(html: Path, png: Path, size: tuple[int, int] = FIRST_SCREEN) -> str | None:
    """Render ``html``'s first screen into ``png``; None on success, else why not (in words)."""
    browser = chromium()
    if browser is None:
        return "no screenshot: chromium is missing (apt-get install --no-install-recommends chromium)"
    argv = [*chromium_argv(browser, size), f"--screenshot={png}", html.resolve().as_uri()]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    except subprocess.TimeoutExpired:
        return "no screenshot: chromium took over 120 s"
    if not png.is_file():
        return f"no screenshot: chromium exited {done.returncode}: {done.stderr.strip()[-300:]}"
    return None
