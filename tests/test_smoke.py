"""The smoke boots on this host (the same code the container test runs inside the image).

Marked ``vm``: a tftp + mtftp pair takes about 25 s, the full Linux boot over mtftp about
a minute on 2 busy cores.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from images.fullboot import FullBootError, build_fullboot
from lab.container.smoke import smoke
from lab.infra.namespace import namespace_support_problem

pytestmark = pytest.mark.vm


@pytest.fixture(autouse=True)
def _needs_namespace() -> None:
    problem = namespace_support_problem()
    if problem:
        pytest.skip(f"no lab namespace: {problem}")
    if not Path("/dev/net/tun").exists():
        pytest.skip("no /dev/net/tun: modprobe tun")


def test_tftp_and_mtftp_verify_in_the_guest(tmp_path: Path) -> None:
    boots = smoke(["tftp", "mtftp"], "e1000", tmp_path, timeout=180)
    assert [(b.protocol, b.ok) for b in boots] == [("tftp", True), ("mtftp", True)], boots
    console = (tmp_path / "console-mtftp.log").read_text(errors="replace")
    assert "mtftp://192.0.2.1/payload-262144-1.bin" in console


def test_debian_kernel_boots_over_mtftp(tmp_path: Path) -> None:
    """The full boot story: Debian's 8 MB kernel and the initramfs by PXE MTFTP, marker on the console."""
    try:
        build_fullboot()
    except FullBootError as exc:
        pytest.skip(f"full boot payload unavailable: {exc}")
    (boot,) = smoke([], "e1000", tmp_path, timeout=400, fullboot_protocols=["mtftp"])
    console = (tmp_path / "console-mtftp-fullboot.log").read_text(errors="replace")
    assert "mtftp://192.0.2.1/vmlinuz" in console and "mtftp://192.0.2.1/initrd.gz" in console
    assert boot.ok, boot.detail
    print(f"full boot over mtftp: {boot.seconds:.1f} s, {boot.detail}")
