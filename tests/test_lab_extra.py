"""``lab`` installed without its extra names the extra to install instead of a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("hidden", ["dpkt", "jinja2"])
def test_lab_without_its_extra_says_which_extra_to_install(hidden: str) -> None:
    # A module set to None in sys.modules cannot be imported: as if the extra were not installed.
    code = f"import sys; sys.modules[{hidden!r}] = None; sys.argv = ['lab', 'matrix']; " \
        "from lab.cli import main; sys.exit(main())"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr, result.stderr
    assert hidden in result.stderr and "pip install 'netboot-lab[lab]'" in result.stderr
