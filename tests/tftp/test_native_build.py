"""The native lane is built with the package, never at run time; without a compiler the
package still builds and the server says once that the Python lane serves."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from netboot.tftp import native_lane
from tests.tftp.peers import raw_fetch, start_server, wait_for_events

REPO = Path(__file__).resolve().parents[2]


def test_the_server_serves_with_the_built_lane_and_writes_nothing_under_home(tmp_path: Path) -> None:
    assert native_lane.built_path() is not None, "reinstall the package with gcc present (pip install -e .)"
    home = tmp_path / "home"
    home.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    (root / "big").write_bytes(os.urandom(1 << 20))
    env = {"HOME": str(home), "XDG_CACHE_HOME": "", "PYATFTPD_NATIVE": "1"}
    server = start_server(
        "pyatftpd", root, extra=["--workers", "2"], events=tmp_path / "events.jsonl", env=env
    )
    try:
        data = raw_fetch(server.address, "big", options=[("blksize", "1428")])[0]
        assert data == (root / "big").read_bytes()
        events = wait_for_events(tmp_path / "events.jsonl", lambda es: any(e["event"] == "done" for e in es))
    finally:
        server.stop()
    [done] = [e for e in events if e["event"] == "done"]
    assert done["ok"] and done["lane"] == "native"
    assert list(home.rglob("*")) == [], "the server wrote under $HOME"


@pytest.mark.timeout(300)
def test_without_a_compiler_the_package_builds_and_the_python_lane_serves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
         str(REPO)],
        capture_output=True, text=True, timeout=240, cwd=tmp_path,
        env={**os.environ, "CC": "/bin/false", "LDSHARED": "/bin/false"},
    )
    assert build.returncode == 0, build.stderr[-2000:]
    [wheel] = wheels.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "netboot/tftp/lockstep.c" in names
    assert not [n for n in names if n.endswith(".so")], "a compiler was used after all"
    # The package carries its man pages (installed into share/man) and its systemd units.
    for page in ("man8/pyatftpd.8", "man8/pyslamd.8", "man1/netboot-fetch.1", "man1/netboot-slam-fetch.1"):
        assert f"netboot_lab-0.1.0.data/data/share/man/{page}" in names, names
    for unit in ("pyatftpd.service", "pyatftpd.socket", "pyslamd@.service"):
        assert f"netboot/data/systemd/{unit}" in names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    root = tmp_path / "root"
    root.mkdir()
    (root / "f").write_bytes(os.urandom(100_000))
    log = tmp_path / "log"
    # -S: no site-packages, and a working directory away from this checkout, so only the
    # unpacked wheel provides netboot.
    monkeypatch.chdir(tmp_path)
    env = {"PYTHONPATH": str(site), "PYATFTPD_NATIVE": "1"}
    server = start_server(
        "pyatftpd", root, extra=["--workers", "3"], events=tmp_path / "events.jsonl", log=log, env=env,
        python=[sys.executable, "-S"],
    )
    try:
        assert raw_fetch(server.address, "f")[0] == (root / "f").read_bytes()
        events = wait_for_events(tmp_path / "events.jsonl", lambda es: any(e["event"] == "done" for e in es))
    finally:
        server.stop()
    assert [e["lane"] for e in events if e["event"] == "done"] == ["python"]
    assert log.read_text().count("native lane not built") == 1, log.read_text()
