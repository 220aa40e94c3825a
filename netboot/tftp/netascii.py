"""Netascii (RFC 764 / RFC 1350) conversion of whole files.

Why whole files: a CR LF pair may straddle two blocks, and ``tsize`` must announce
the converted size before the first block, so the server converts once up front
(netascii is used for small text files; octet transfers never come here).
"""

from __future__ import annotations

import re

_TO_WIRE = re.compile(rb"\r|\n")
_FROM_WIRE = re.compile(rb"\r\n|\r\0")


def to_netascii(data: bytes) -> bytes:
    """Local text -> wire: LF becomes CR LF, a bare CR becomes CR NUL."""
    return _TO_WIRE.sub(lambda m: b"\r\n" if m.group() == b"\n" else b"\r\0", data)


def from_netascii(data: bytes) -> bytes:
    """Wire -> local text: CR LF becomes LF, CR NUL becomes CR; anything else is kept."""
    return _FROM_WIRE.sub(lambda m: b"\n" if m.group() == b"\r\n" else b"\r", data)
