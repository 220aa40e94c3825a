"""Console bytes as text a person (or a pattern) can read: no ANSI escapes, no carriage returns.

Why in the model: the console reader matches patterns on this text, and the reports quote
it; both must clean it the same way.
"""

from __future__ import annotations

import re
from pathlib import Path

_ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1bc")


def clean(raw: bytes) -> str:
    """Console bytes as matchable text: no ANSI sequences, no carriage returns."""
    return _ANSI.sub(b"", raw).replace(b"\r", b"").decode("utf-8", errors="replace")


def console_tail(path: Path, lines: int = 40) -> str:
    """The last non-empty ``lines`` of a console log, cleaned ("" when there is none)."""
    try:
        text = clean(path.read_bytes())
    except OSError:
        return ""
    kept = [line for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])
