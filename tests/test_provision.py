"""The provisioning step must name the exact fix when it cannot install."""

from __future__ import annotations

import shutil

import pytest

from lab import provision

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
    assert "sudo apt-get install -y no-such-package-netboot-lab" in err[0]


def test_nothing_missing_is_silent_success(capsys: pytest.CaptureFixture[str]) -> None:
    assert provision.provision(["dpkg"], is_root=False) == 0
    assert capsys.readouterr().err == ""


def test_every_project_package_is_installed_here() -> None:
    """tox runs `python -m lab.provision` first, so by now nothing may be missing."""
    assert provision.missing_packages(list(provision.PACKAGES)) == []


def test_the_rom_build_packages_are_checked_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[list[str]] = []
    monkeypatch.setattr(provision, "provision", lambda names, is_root: asked.append(list(names)) or 0)
    provision.main(["--check"])
    provision.main(["--check", "--build"])
    assert "liblzma-dev" not in asked[0]
    assert {"liblzma-dev", "make", "perl", "patch"} <= set(asked[1]) and asked[1][: len(asked[0])] == asked[0]
