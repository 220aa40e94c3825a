"""Where a page's key parts end on its first screen, as headless Chromium lays it out.

Shared by the synthetic first-screen test (tests/lab_unit/test_report_screen.py) and the
one on a real run (tests/lab/test_report_page.py).  A probe script is added to a *copy*
of matrix.html; it reports where the summary, one finding's iPXE error line and the trains
table end, and Chromium's ``--dump-dom`` hands the result back.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from lab.report.screenshot import FIRST_SCREEN, chromium, chromium_argv

PROBE = """<pre id="probe"></pre><script>
const box = (el) => el ? el.getBoundingClientRect() : null;
const row = [...document.querySelectorAll('#findings tr')].find(r => r.textContent.includes(%s));
const line = row ? row.querySelector('.error-line') : null;
const out = {height: window.innerHeight, width: window.innerWidth,
  summary: box(document.getElementById('summary')), error: box(line),
  trains: box(document.getElementById('trains')), error_text: line ? line.textContent : null};
document.getElementById('probe').textContent = JSON.stringify(out);
</script></body>"""


def need_chromium() -> str:
    """Chromium, or a skip that says how to get it (the issue allows a skip; provisioning installs it)."""
    browser = chromium()
    if browser is None:
        pytest.skip("Debian's chromium is missing: sudo apt-get install --no-install-recommends chromium")
    return browser


def probe_first_screen(html: Path, finding: str) -> dict[str, Any]:
    """Boxes (top/bottom in px) of the summary, ``finding``'s error line and the trains table."""
    probed = html.with_name(html.stem + ".probed.html")
    probed.write_text(html.read_text().replace("</body>", PROBE % json.dumps(finding), 1))
    argv = [*chromium_argv(need_chromium()), "--dump-dom", probed.as_uri()]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    assert found and found.group(1), f"the probe did not run: {done.stderr[-2000:]}"
    where: dict[str, Any] = json.loads(found.group(1).replace("&quot;", '"'))
    assert where["width"] == FIRST_SCREEN[0]
    return where


def assert_first_screen(where: dict[str, Any], error_line: str) -> None:
    """The summary, ``error_line`` and the whole trains table end within the first screen."""
    height = FIRST_SCREEN[1]
    assert where["summary"]["bottom"] <= height
    assert where["error"] is not None, "the failing cell is not among the open findings"
    assert where["error_text"] == error_line
    assert where["error"]["bottom"] <= height, f"iPXE's error line ends at {where['error']['bottom']} px"
    assert where["trains"] is not None, "no trains table"
    assert where["trains"]["bottom"] <= height, f"the trains table ends at {where['trains']['bottom']} px"
