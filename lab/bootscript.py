"""The iPXE script each VM runs, from the payload side's generator (images.bootscript).

The lab only chooses the URLs; the script's markers (``LAB fetch-start``, ``LAB
kernel-fetched``, ``LAB fetched``, ``LAB fetch-failed``, ``LAB boot-failed``) are what
the boot ladder waits for.
"""

from __future__ import annotations

from images.bootscript import ipxe_script
from lab.topology import SERVER_IPV4


def url(protocol: str, name: str, server: str = SERVER_IPV4) -> str:
    return f"{protocol}://{server}/{name}"


def boot_script(kernel_url: str, payload_url: str, expect_sha256: str, size: int) -> str:
    return ipxe_script(kernel_url, payload_url, expect_sha256, size)
