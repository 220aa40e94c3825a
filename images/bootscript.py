"""iPXE boot scripts for one scenario: fetch the verifier and the payload, then boot.

Only commands that Debian's 2019 ROMs have are used (``kernel``, ``module``, ``boot``,
``echo``, ``imgstat``, ``goto``): no digest commands, because the verifier does the
checking in the guest.  ``echo`` markers split the console into stages the lab can
time, and a failed fetch or boot prints a marker of its own so the lab need not wait
for a timeout to know.
"""

from __future__ import annotations

import re

#: Console markers printed by the script, in order.
FETCH_START = "LAB fetch-start"
KERNEL_FETCHED = "LAB kernel-fetched"
FETCHED = "LAB fetched"
FETCH_FAILED = "LAB fetch-failed"
#: ``boot`` itself failed after both fetches, e.g. "Requested memory not available" when the
#: guest's RAM cannot hold kernel and module (24 MiB in a 32 MiB guest does that).
BOOT_FAILED = "LAB boot-failed"

#: Protocols the lab can put in a URL, and their iPXE scheme.
SCHEMES = {"tftp": "tftp", "tftm": "tftm", "mtftp": "mtftp", "slam": "x-slam", "http": "http"}

_HEX64 = re.compile(r"[0-9a-f]{64}")


def payload_url(protocol: str, server: str, filename: str | None = None) -> str:
    """The iPXE URL fetching ``filename`` from ``server`` by ``protocol`` (a key of SCHEMES).

    SLAM URLs carry no file name (the server serves one file per instance, the lab runs
    one pyslamd per file), and no group either: current iPXE rejects
    ``x-slam://server/group:port``, so the default group is used.
    """
    if protocol not in SCHEMES:
        raise ValueError(f"unknown protocol {protocol!r}; use one of {', '.join(SCHEMES)}")
    _no_space("server", server)
    if protocol == "slam":
        return f"x-slam://{server}"
    if not filename:
        raise ValueError(f"a {protocol} URL needs a file name")
    _no_space("file name", filename)
    return f"{SCHEMES[protocol]}://{server}/{filename.lstrip('/')}"


def ipxe_script(
    kernel_url: str, payload_url: str, expect_sha256: str, size: int, show_images: bool = True
) -> str:
    """A script that boots the verifier with the payload as its module and the expected digest/size."""
    _no_space("kernel URL", kernel_url)
    _no_space("payload URL", payload_url)
    expect = expect_sha256.lower()
    if not _HEX64.fullmatch(expect):
        raise ValueError(f"expect_sha256 must be 64 hex digits, got {expect_sha256!r}")
    if size < 0:
        raise ValueError(f"size must be >= 0, got {size}")
    lines = [
        "#!ipxe",
        f"echo {FETCH_START}",
        f"kernel {kernel_url} expect={expect} size={size} || goto failed",
        f"echo {KERNEL_FETCHED}",
        f"module {payload_url} || goto failed",
        f"echo {FETCHED}",
        *(["imgstat"] if show_images else []),
        "boot || goto boot_failed",
        ":failed",
        f"echo {FETCH_FAILED}",
        "exit 1",
        ":boot_failed",
        f"echo {BOOT_FAILED}",
        "exit 1",
    ]
    return "\n".join(lines) + "\n"


def _no_space(what: str, value: str) -> None:
    if not value or any(c.isspace() for c in value) or "||" in value or value.startswith("-"):
        raise ValueError(
            f"{what} {value!r} cannot go on an iPXE command line (empty, spaces, '||' or a leading '-')"
        )
