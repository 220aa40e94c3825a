"""Loopback downloads with the real clients (curl, atftp, tftp-hpa), checked by sha256.

Every test runs against pyatftpd and against Debian's atftpd (fixture ``server``),
so a passing atftpd run shows the test checks something real.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from netboot.tftp.netascii import to_netascii
from tests.tftp.clients import CLIENTS, fetch, fetch_argv, require, sha256
from tests.tftp.conftest import BIG_FILE, SMALL_FILES, TEXT
from tests.tftp.peers import RunningServer, TftpError, raw_fetch, start_server, wait_for_events


def _blksize_for(client: str, name: str) -> int | None:
    if client == "tftp-hpa":
        return None
    return 1428 if name == "mult1428" else 512 if name == "mult512" else None


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("name", sorted(SMALL_FILES))
def test_small_files_arrive_byte_exact(
    server: RunningServer, client: str, name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    require(client)
    if client == "curl" and name == "size0":
        request.applymarker(
            pytest.mark.xfail(
                reason="curl 7.88 bug: a 0-byte tftp:// download fails with 'getpeername() failed with "
                "errno 107' against atftpd and pyatftpd alike; atftp and tftp-hpa cover size 0"
            )
        )
    if client == "tftp-hpa" and name == "mult1428":
        pytest.skip("the tftp-hpa client cannot ask for blksize 1428 (512 only); covered by curl and atftp")
    out = tmp_path / "out"
    result = fetch(client, server.port, name, out, blksize=_blksize_for(client, name))
    assert result.returncode == 0, result.stderr
    assert sha256(out) == sha256(server.root / name)


@pytest.mark.parametrize("client", ["curl", "atftp"])
@pytest.mark.parametrize("blksize", [16, 1428, 8192, 65464])
def test_blksize_option(server: RunningServer, client: str, blksize: int, tmp_path: Path) -> None:
    require(client)
    out = tmp_path / "out"
    if client == "curl" and blksize < 24:
        pytest.skip("curl always adds tsize, and blksize 16 cannot carry that OACK: see test_tiny_blksize_*")
    result = fetch(client, server.port, "conc1m" if blksize >= 1428 else "size513", out, blksize=blksize)
    assert result.returncode == 0, result.stderr
    assert sha256(out) == sha256(server.root / ("conc1m" if blksize >= 1428 else "size513"))


@pytest.mark.parametrize("client", ["curl", "tftp-hpa"])
def test_40_mib_at_blksize_512_rolls_over_block_numbers(
    server: RunningServer, client: str, tmp_path: Path
) -> None:
    """81920 blocks: the block counter passes 65535 and must roll over to 0."""
    require(client)
    name, _size = BIG_FILE
    out = tmp_path / "out"
    result = fetch(client, server.port, name, out, blksize=512 if client == "curl" else None, timeout=300)
    assert result.returncode == 0, result.stderr
    assert sha256(out) == sha256(server.root / name)
    if server.name == "pyatftpd" and server.events is not None:
        # the C loop (netboot/tftp/native_lane.py) served it, rollover included
        found = wait_for_events(
            server.events, lambda evs: any(e["event"] == "done" and e.get("file") == name for e in evs)
        )
        lanes = [e.get("lane") for e in found if e["event"] == "done" and e.get("file") == name]
        assert lanes[-1] == "native", lanes


def test_python_lane_serves_the_same_bytes(served_dir: Path, tmp_path: Path) -> None:
    """PYATFTPD_NATIVE=0: the Python fast lane alone, byte for byte the same (rollover too)."""
    require("curl")
    name, _size = BIG_FILE
    server = start_server("pyatftpd", served_dir, events=tmp_path / "events.jsonl",
                          env={"PYATFTPD_NATIVE": "0"})
    try:
        out = tmp_path / "out"
        result = fetch("curl", server.port, name, out, blksize=512, timeout=300)
        assert result.returncode == 0, result.stderr
        assert sha256(out) == sha256(served_dir / name)
        found = wait_for_events(tmp_path / "events.jsonl", lambda evs: any(e["event"] == "done" for e in evs))
    finally:
        server.stop()
    assert [e.get("lane") for e in found if e["event"] == "done"] == ["python"]


@pytest.mark.parametrize("client", ["tftp-hpa", "atftp"])
def test_netascii_round_trip(server: RunningServer, client: str, tmp_path: Path) -> None:
    """The client converts CR LF back, so the local copy equals the original text.

    curl is left out: curl 7.88 fails ``tftp://host/file;mode=netascii`` with a
    getpeername() error before sending anything, against either server.
    """
    require(client)
    out = tmp_path / "out"
    result = fetch(client, server.port, "text.txt", out, netascii=True)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == TEXT


def test_netascii_wire_bytes(server: RunningServer) -> None:
    wire, _ = raw_fetch(server.address, "text.txt", mode="netascii")
    assert wire == to_netascii(TEXT)


def test_tsize_announces_the_exact_size(server: RunningServer) -> None:
    data, oack = raw_fetch(server.address, "mult1428", options=[("tsize", "0"), ("blksize", "1428")])
    assert oack == {"tsize": str(1428 * 3), "blksize": "1428"}
    assert len(data) == 1428 * 3


def test_nested_path_and_missing_file(server: RunningServer) -> None:
    data, _ = raw_fetch(server.address, "sub/nested.bin")
    assert data == (server.root / "sub" / "nested.bin").read_bytes()
    with pytest.raises(TftpError) as info:
        raw_fetch(server.address, "no-such-file")
    assert info.value.code == 1


def test_eight_concurrent_curl_clients(server: RunningServer, tmp_path: Path) -> None:
    require("curl")
    procs = []
    for index in range(8):
        blksize = (512, 1428, 8192, 1024)[index % 4]
        argv = fetch_argv("curl", server.port, "conc1m", tmp_path / f"out{index}", blksize=blksize)
        procs.append(subprocess.Popen(argv, stderr=subprocess.PIPE, text=True))
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    expected = sha256(server.root / "conc1m")
    assert all(sha256(tmp_path / f"out{index}") == expected for index in range(8))


def test_mixed_clients_at_once(server: RunningServer, tmp_path: Path) -> None:
    for client in CLIENTS:
        require(client)
    procs = [
        subprocess.Popen(
            fetch_argv(client, server.port, "conc1m", tmp_path / f"{client}{n}"), stderr=subprocess.PIPE
        )
        for n in range(2)
        for client in CLIENTS
    ]
    for proc in procs:
        proc.communicate(timeout=120)
        assert proc.returncode == 0
    expected = sha256(server.root / "conc1m")
    assert all(sha256(tmp_path / f"{client}{n}") == expected for n in range(2) for client in CLIENTS)


def test_events_record_request_oack_and_done(server: RunningServer) -> None:
    if server.name != "pyatftpd":
        pytest.skip("--events is a pyatftpd addition; atftpd only logs text")
    raw_fetch(server.address, "size513", options=[("blksize", "1024")])
    assert server.events is not None
    wanted = [("size513", "done")]
    found = wait_for_events(
        server.events, lambda evs: [(e.get("file"), e["event"]) for e in evs][-1:] == wanted
    )
    events = [e for e in found if e.get("file") == "size513"]
    names = [e["event"] for e in events]
    assert names[:2] == ["request", "oack"] and names[-1] == "done"
    done = events[-1]
    assert done["ok"] is True and done["bytes"] == 513 and done["seconds"] >= 0
    assert done["client"].startswith("127.0.0.1:") and done["session"]


def test_tiny_blksize_with_many_options_is_refused_not_overflowed(server: RunningServer) -> None:
    """CVE-2021-41054: atftpd < 0.7.5 overflowed its blksize-sized OACK buffer here.

    Both servers must refuse with ERROR 8 and keep serving.
    """
    options = [("blksize", "8"), ("tsize", "0"), ("timeout", "3"), ("windowsize", "2")]
    with pytest.raises(TftpError) as info:
        raw_fetch(server.address, "size513", options=options)
    assert info.value.code == 8
    data, _ = raw_fetch(server.address, "size513")
    assert data == (server.root / "size513").read_bytes()


@pytest.mark.parametrize("windowsize", [4, 16])
def test_windowsize_with_atftp(server: RunningServer, windowsize: int, tmp_path: Path) -> None:
    """RFC 7440: atftp asks for a window; the file must still arrive intact."""
    require("atftp")
    out = tmp_path / "out"
    argv = [
        "atftp",
        "--option",
        f"windowsize {windowsize}",
        "--option",
        "blksize 1428",
        "-g",
        "-r",
        "conc1m",
        "-l",
        str(out),
        "127.0.0.1",
        str(server.port),
    ]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert sha256(out) == sha256(server.root / "conc1m")
