"""The provisioning step must name the exact fix when it cannot install."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from lab.infra import provision

pytestmark = pytest.mark.skipif(
    shutil.which("dpkg-query") is None, reason="not a Debian system (no dpkg-query)"
)
FAKE = "no-such-package-netboot-lab"


def test_installed_package_is_not_reported_missing() -> None:
    assert provision.missing_packages(["dpkg"]) == []


def test_unknown_package_is_reported_missing() -> None:
    assert provision.missing_packages(["dpkg", FAKE]) == [FAKE]


def test_non_root_gets_one_line_with_the_exact_command(capsys: pytest.CaptureFixture[str]) -> None:
    code = provision.provision(["dpkg", "no-such-package-netboot-lab"], is_root=False)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1
    assert "sudo apt-get install -y --no-install-recommends no-such-package-netboot-lab" in err[0]


def test_nothing_missing_is_silent_success(capsys: pytest.CaptureFixture[str]) -> None:
    assert provision.provision(["dpkg"], is_root=False) == 0
    assert capsys.readouterr().err == ""


def test_every_project_package_is_installed_here() -> None:
    """tox runs `python -m lab.infra.provision` first, so by now nothing may be missing."""
    assert provision.missing_packages(list(provision.PACKAGES)) == []


def test_root_installs_without_recommended_packages() -> None:
    [update, install] = provision.install_commands(["qemu-system-x86", "atftpd"])
    assert update[:2] == ["apt-get", "update"]
    assert install[:2] == ["apt-get", "install"] and "--no-install-recommends" in install
    assert install[-2:] == ["qemu-system-x86", "atftpd"]
    assert "--no-install-recommends" in provision.install_command(["atftpd"])


def test_quiet_commands_disable_and_mask_every_way_atftpd_can_listen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(provision.shutil, "which", lambda name: f"/usr/bin/{name}")
    (tmp_path / "etc" / "init.d").mkdir(parents=True)
    (tmp_path / "etc" / "init.d" / "atftpd").write_text("#!/bin/sh\n")
    (tmp_path / "etc" / "inetd.conf").write_text("tftp dgram udp wait nobody /usr/sbin/in.tftpd\n")
    (tmp_path / "run" / "systemd" / "system").mkdir(parents=True)
    commands = provision.quiet_commands(tmp_path / "etc", tmp_path / "run")
    units = ["atftpd.socket", "atftpd.service"]
    assert commands == [
        ["systemctl", "stop", *units],
        ["systemctl", "disable", "--quiet", *units],
        ["systemctl", "mask", "--quiet", *units],
        ["update-rc.d", "atftpd", "disable"],
        ["update-inetd", "--disable", "tftp"],
    ]
    # Without a running systemd (a container): no stop, but disable and mask still work on files.
    bare = provision.quiet_commands(tmp_path / "nothing", tmp_path / "nothing")
    assert bare == [["systemctl", "disable", "--quiet", *units], ["systemctl", "mask", "--quiet", *units]]


@pytest.mark.skipif(shutil.which("systemctl") is None, reason="no systemctl: no atftpd.socket either")
def test_no_tftp_service_is_enabled_on_this_host() -> None:
    """tox runs `python -m lab.infra.provision` first: atftpd.socket must be disabled and masked by now."""
    assert provision.enabled_tftp_units() == []
    if provision.missing_packages(["atftpd"]) == []:
        state = subprocess.run(["systemctl", "is-enabled", "atftpd.socket"], capture_output=True, text=True)
        assert state.stdout.strip() == "masked"


@pytest.mark.skipif(shutil.which("apt-cache") is None, reason="no apt-cache: not an apt system")
def test_debian_tftpd_hpa_would_remove_atftpd() -> None:
    """Why only the tftp-hpa client is in PACKAGES (docs/findings.md): the server package
    conflicts with atftpd and replaces it.  If Debian drops the conflict, this fails and the
    server may join the reference peers."""
    show = subprocess.run(["apt-cache", "show", "tftpd-hpa"], capture_output=True, text=True, check=False)
    if show.returncode != 0 or not show.stdout.strip():
        pytest.skip("apt knows no tftpd-hpa package here (no package lists: apt-get update)")
    fields = dict(line.split(": ", 1) for line in show.stdout.split("\n\n")[0].splitlines() if ": " in line)
    conflicts = {part.split()[0] for part in fields.get("Conflicts", "").split(",") if part.strip()}
    assert "atftpd" in conflicts, fields.get("Conflicts")
    assert "tftpd-hpa" not in provision.PACKAGES and "tftp-hpa" in provision.PACKAGES


def test_the_rom_build_packages_are_checked_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[list[str]] = []
    monkeypatch.setattr(provision, "provision", lambda names, is_root: asked.append(list(names)) or 0)
    provision.main(["--check"])
    provision.main(["--check", "--build"])
    assert "liblzma-dev" not in asked[0]
    assert {"liblzma-dev", "make", "perl", "patch"} <= set(asked[1]) and asked[1][: len(asked[0])] == asked[0]
