"""A full disk under ``--events`` and ``--logfile`` costs no client its reply.

(On a full disk every request used to be dropped: the router's ``request`` event
raised ENOSPC before the request was routed, one traceback per request.)
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import pytest

from netboot.events import EventLog
from tests.smallfs import fill, small_tmpfs
from tests.tftp.peers import TftpError, raw_fetch, start_server


def test_an_event_that_cannot_be_written_is_counted_and_said_once(caplog: pytest.LogCaptureFixture) -> None:
    events = EventLog("/dev/full", "pyatftpd")
    with caplog.at_level(logging.WARNING):
        for index in range(50):
            events.emit("request", n=index)  # never raises
        assert events.dropped == 50
        said = [r for r in caplog.records if "cannot write events" in r.getMessage()]
        assert len(said) == 1 and "No space left" in said[0].getMessage()
        events.close()
    assert any("50 event(s) could not be written" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("workers", ["1", "4"])
def test_requests_are_answered_with_events_and_log_on_a_full_disk(tmp_path: Path, workers: str) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "f").write_bytes(os.urandom(3000))
    with small_tmpfs(tmp_path / "small", 64) as small:
        fill(small)
        server = start_server(
            "pyatftpd",
            root,
            extra=["--workers", workers, "--logfile", str(small / "server.log")],
            events=small / "events.jsonl",
            log=tmp_path / "stderr.txt",
        )
        try:
            with pytest.raises(TftpError) as missing:
                raw_fetch(server.address, "missing")
            assert missing.value.code == 1
            for _ in range(5):
                assert raw_fetch(server.address, "f")[0] == (root / "f").read_bytes()
        finally:
            os.killpg(server.proc.pid, signal.SIGTERM)
            server.proc.wait(10)
    console = (tmp_path / "stderr.txt").read_text()
    assert "Traceback" not in console and "Logging error" not in console, console
    assert console.count("cannot write the log to") == 1, console
    assert "log line(s) could not be written" in console, console
