"""Generated iPXE scripts: the right commands, in order, with nothing a 2019 ROM lacks."""

from __future__ import annotations

import pytest

from images.bootscript import (
    BOOT_FAILED,
    FETCH_FAILED,
    FETCH_START,
    FETCHED,
    KERNEL_FETCHED,
    ipxe_script,
    payload_url,
)

DIGEST = "ab" * 32
DEBIAN_2019_COMMANDS = {"echo", "kernel", "module", "boot", "imgstat", "exit"}


def test_script_fetches_kernel_then_module_then_boots() -> None:
    script = ipxe_script(
        "tftp://192.0.2.1/verifier.elf", "mtftp://192.0.2.1/payload.bin", DIGEST.upper(), 1432
    )
    lines = script.splitlines()
    assert lines[0] == "#!ipxe"
    assert (
        lines.index(f"echo {FETCH_START}")
        < lines.index(f"echo {KERNEL_FETCHED}")
        < lines.index(f"echo {FETCHED}")
    )
    assert f"kernel tftp://192.0.2.1/verifier.elf expect={DIGEST} size=1432 || goto failed" in lines
    assert "module mtftp://192.0.2.1/payload.bin || goto failed" in lines
    assert lines.index("boot || goto boot_failed") > lines.index(f"echo {FETCHED}")
    assert lines[lines.index(":failed") + 1 :][:2] == [f"echo {FETCH_FAILED}", "exit 1"]
    assert lines[lines.index(":boot_failed") + 1 :][:2] == [f"echo {BOOT_FAILED}", "exit 1"]


def test_script_uses_only_commands_debian_roms_have() -> None:
    script = ipxe_script("tftp://192.0.2.1/v.elf", "x-slam://192.0.2.1", DIGEST, 1)
    commands = {line.split()[0] for line in script.splitlines()[1:] if line and not line.startswith(":")}
    assert commands <= DEBIAN_2019_COMMANDS, commands - DEBIAN_2019_COMMANDS


@pytest.mark.parametrize(
    ("protocol", "filename", "url"),
    [
        ("tftp", "verifier.elf", "tftp://192.0.2.1/verifier.elf"),
        ("tftm", "/p.bin", "tftm://192.0.2.1/p.bin"),
        ("mtftp", "p.bin", "mtftp://192.0.2.1/p.bin"),
        ("slam", None, "x-slam://192.0.2.1"),
        ("slam", "ignored.bin", "x-slam://192.0.2.1"),
    ],
)
def test_payload_urls(protocol: str, filename: str | None, url: str) -> None:
    assert payload_url(protocol, "192.0.2.1", filename) == url


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("tftp://a/b c", "tftp://a/p", DIGEST, 1), "spaces"),
        (("tftp://a/b", "", DIGEST, 1), "empty"),
        (("tftp://a/b", "tftp://a/p", "abc", 1), "64 hex"),
        (("tftp://a/b", "tftp://a/p", DIGEST, -1), "size"),
    ],
)
def test_bad_arguments_are_rejected(args: tuple[str, str, str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ipxe_script(*args)


def test_unknown_protocol_and_missing_name() -> None:
    with pytest.raises(ValueError, match="unknown protocol"):
        payload_url("ftp", "192.0.2.1", "x")
    with pytest.raises(ValueError, match="needs a file name"):
        payload_url("tftp", "192.0.2.1")
