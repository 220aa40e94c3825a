"""The iPXE script each VM runs: fetch the verifier and the payload, then boot.

``images.bootscript.ipxe_script`` (the payload side's generator) is used when present;
the local one emits the same markers the boot ladder waits for.
"""

from __future__ import annotations

import importlib

from lab.topology import SERVER_IPV4


def url(protocol: str, name: str, server: str = SERVER_IPV4) -> str:
    return f"{protocol}://{server}/{name}"


def _local_script(kernel_url: str, payload_url: str, expect_sha256: str, size: int) -> str:
    return (
        "#!ipxe\n"
        "echo LAB fetch-start\n"
        f"kernel {kernel_url} expect={expect_sha256} size={size} || goto failed\n"
        f"module {payload_url} || goto failed\n"
        "echo LAB fetched\n"
        # the last character before 'boot' can be lost on the serial line: pad with a line
        "echo LAB booting\n"
        "boot || goto failed\n"
        ":failed\n"
        "echo LAB fetch-failed\n"
    )


def boot_script(kernel_url: str, payload_url: str, expect_sha256: str, size: int) -> str:
    try:
        generator = importlib.import_module("images.bootscript").ipxe_script
    except (ImportError, AttributeError):
        return _local_script(kernel_url, payload_url, expect_sha256, size)
    return str(generator(kernel_url, payload_url, expect_sha256, size))
