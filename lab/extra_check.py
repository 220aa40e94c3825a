"""``lab`` without the package's ``lab`` extra: say which extra to install, not a traceback.

Why a module of its own, imported first by ``lab/cli.py``: the console script imports
``lab.cli``, whose imports need the extra (dpkt, matplotlib, docker, jinja2), so the
check has to run before them.  It only looks the modules up; it imports none.
"""

from __future__ import annotations

import importlib.util
import sys

#: Top-level modules of the ``lab`` extra (pyproject.toml, [project.optional-dependencies]).
LAB_EXTRA_MODULES = ("dpkt", "matplotlib", "docker", "jinja2")


def missing_lab_modules() -> list[str]:
    missing = []
    for name in LAB_EXTRA_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing


def require_lab_extra() -> None:
    missing = missing_lab_modules()
    if missing:
        sys.stderr.write(
            f"lab: missing {', '.join(missing)}, which the package's 'lab' extra installs; run: "
            "pip install 'netboot-lab[lab]' (from a checkout: pip install '.[lab]')\n"
        )
        raise SystemExit(2)


require_lab_extra()
