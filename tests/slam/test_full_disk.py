"""pyslamd on a full disk: events and log lines that cannot be written are counted, not raised.

(It used to keep serving but print one traceback per event it could not write.)
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.infra.namespace import Namespace, kill_group
from tests.slam.session import SERVER_IP, SlamSession, sha256
from tests.smallfs import fill, small_tmpfs

pytestmark = [pytest.mark.netns, pytest.mark.timeout(120)]


def test_pyslamd_serves_with_events_and_log_on_a_full_disk(netns: Namespace, tmp_path: Path) -> None:
    data = os.urandom(200_000)
    (tmp_path / "boot.img").write_bytes(data)
    session = SlamSession(netns, tmp_path / "run")
    console = tmp_path / "console.txt"
    with small_tmpfs(tmp_path / "small", 64) as small:
        fill(small)
        argv = [sys.executable, "-m", "netboot.slam.cli", str(tmp_path / "boot.img"), "--bind-address",
                SERVER_IP, "--events", str(small / "events.jsonl"), "--logfile", str(small / "log")]
        with open(console, "wb") as err:
            server = netns.popen(argv, stderr=err, stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while "cannot write the log" not in console.read_text() and time.monotonic() < deadline:
                time.sleep(0.05)  # the first log line ("serving ...") fails: said once on stderr
            [result] = session.results(session.start_clients(1))
            assert result["outcome"] == "ok" and result["sha256"] == sha256(data)
        finally:
            kill_group(server)  # SIGTERM: pyslamd reports the count at stop
            session.close()
    text = console.read_text()
    assert "Traceback" not in text and "Logging error" not in text, text
    assert text.count("cannot write the log to") == 1, text
    assert "log line(s) could not be written" in text, text

