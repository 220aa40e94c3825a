"""The real TFTP clients used as reference peers: curl, atftp and tftp-hpa."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

CLIENTS = ("curl", "atftp", "tftp-hpa")
_BINARIES = {"curl": "curl", "atftp": "atftp", "tftp-hpa": "tftp"}
_PACKAGES = {"curl": "curl", "atftp": "atftp", "tftp-hpa": "tftp-hpa"}


def require(client: str) -> None:
    if shutil.which(_BINARIES[client]) is None:
        pytest.skip(f"{client} is missing; install it with: apt-get install -y {_PACKAGES[client]}")


def fetch_argv(
    client: str, port: int, name: str, out: Path, *, blksize: int | None = None, netascii: bool = False
) -> list[str]:
    if client == "curl":
        argv = ["curl", "-sS", "--max-time", "120", "-o", str(out)]
        if blksize:
            argv += ["--tftp-blksize", str(blksize)]
        return [*argv, f"tftp://127.0.0.1:{port}/{name}"]
    if client == "atftp":
        argv = ["atftp", "-g", "-r", name, "-l", str(out)]
        if blksize:
            argv += ["--option", f"blksize {blksize}"]
        if netascii:
            argv += ["--option", "mode netascii"]
        return [*argv, "127.0.0.1", str(port)]
    if blksize:
        raise ValueError("the tftp-hpa client cannot ask for a blksize")
    mode = "netascii" if netascii else "binary"
    return ["tftp", "127.0.0.1", str(port), "-m", mode, "-c", "get", name, str(out)]


def fetch(
    client: str,
    port: int,
    name: str,
    out: Path,
    *,
    blksize: int | None = None,
    netascii: bool = False,
    timeout: float = 180,
) -> subprocess.CompletedProcess[str]:
    argv = fetch_argv(client, port, name, out, blksize=blksize, netascii=netascii)
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
