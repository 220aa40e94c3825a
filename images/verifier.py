"""Build the in-guest verifier and read its verdict.

The verifier (sources in ``images/verifier/``) is a freestanding 32-bit multiboot ELF:
iPXE boots it with ``kernel verifier.elf expect=<sha256> size=<n>`` plus ``module
<payload>``; it hashes the module, prints the result on COM1 and ends QEMU through
isa-debug-exit.  It is built here, at test time, with the machine's gcc (an x86-64 gcc
compiles freestanding ``-m32`` code without gcc-multilib: no libc, no libgcc), and
cached by the hash of its sources, flags and toolchain so every run uses the same
binary without rebuilding.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

SOURCE_DIR = Path(__file__).resolve().parent / "verifier"
SOURCES = ("boot.S", "sha256.c", "verifier.c")
HEADERS = ("sha256.h",)
LINKER_SCRIPT = "verifier.ld"
ELF_NAME = "verifier.elf"

#: Values the verifier writes to isa-debug-exit; QEMU exits with status ``value << 1 | 1``.
VERIFY_EXIT_PASS = 0x10
VERIFY_EXIT_FAIL = 0x11
VERIFY_EXIT_NOEXPECT = 0x12
VERIFY_EXIT_ERROR = 0x13  # not started by a multiboot loader

#: The QEMU options that give the verifier its exit port.
ISA_DEBUG_EXIT = ("-device", "isa-debug-exit,iobase=0xf4,iosize=4")

_VERDICTS = {
    VERIFY_EXIT_PASS: "PASS",
    VERIFY_EXIT_FAIL: "FAIL",
    VERIFY_EXIT_NOEXPECT: "NOEXPECT",
    VERIFY_EXIT_ERROR: "ERROR",
}

CFLAGS = (
    "-m32", "-march=i686", "-std=gnu11", "-O2",
    "-ffreestanding", "-fno-pic", "-fno-pie", "-fno-stack-protector",
    "-fno-asynchronous-unwind-tables", "-mgeneral-regs-only",
    "-Wall", "-Wextra", "-Werror",
)  # fmt: skip
LDFLAGS = (
    "-m", "elf_i386", "-nostdlib", "--build-id=none", "-z", "max-page-size=0x1000",
    "-z", "noexecstack", "--no-warn-rwx-segments",
)  # fmt: skip


class VerifierBuildError(RuntimeError):
    """The verifier could not be built; the message says which tool failed and how to get it."""


def exit_status(value: int) -> int:
    """QEMU's exit status for a value written to isa-debug-exit."""
    return (value << 1) | 1


def verdict_from_exit(status: int) -> str | None:
    """``PASS``/``FAIL``/``NOEXPECT``/``ERROR`` for a QEMU exit status the verifier caused, else None.

    None means the verifier did not end QEMU (crash, kill, timeout, another exit path):
    a lab problem, never a delivery verdict.
    """
    if status < 0 or not status & 1:
        return None
    return _VERDICTS.get(status >> 1)


@dataclass(frozen=True)
class VerifierReport:
    """What the verifier printed, parsed from a console log."""

    started: bool
    sha256: str | None
    size: int | None
    verdict: str | None  # PASS, FAIL, NOEXPECT, ERROR, or None if no verdict line yet
    detail: str


_SHA_LINE = re.compile(r"VERIFY sha256=([0-9a-f]{64}) bytes=(\d+)")
_VERDICT_LINE = re.compile(r"VERIFY (PASS|FAIL|NOEXPECT|ERROR)\b([^\r\n]*)")


def parse_console(text: str) -> VerifierReport:
    """Read the verifier's lines from console text (the last run wins if it booted twice)."""
    start = text.rfind("VERIFY start")
    if start < 0:
        return VerifierReport(False, None, None, None, "")
    tail = text[start:]
    sha = _SHA_LINE.search(tail)
    verdict = _VERDICT_LINE.search(tail)
    return VerifierReport(
        started=True,
        sha256=sha.group(1) if sha else None,
        size=int(sha.group(2)) if sha else None,
        verdict=verdict.group(1) if verdict else None,
        detail=verdict.group(2).strip() if verdict else "",
    )


def default_cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "netboot-lab"


def build_verifier(cache_dir: Path | None = None) -> Path:
    """Return the path of the built verifier ELF, building it on first use.

    The result lives in ``<cache>/verifier-<hash>/verifier.elf`` where the hash covers
    sources, flags and the toolchain's versions; ``cache_dir`` replaces
    ``~/.cache/netboot-lab``.  Safe when several processes build at once.
    """
    gcc, ld = _tool("gcc"), _tool("ld")
    key = _source_hash(gcc, ld)
    root = cache_dir if cache_dir is not None else default_cache_root()
    final = root / f"verifier-{key}"
    elf = final / ELF_NAME
    if elf.is_file():
        return elf
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="verifier-build-", dir=root) as tmp:
        work = Path(tmp) / "out"
        work.mkdir()
        _compile_and_link(gcc, ld, work)
        try:
            os.rename(work, final)
        except OSError:
            if not elf.is_file():  # not a concurrent build that won the race
                raise
    return elf


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise VerifierBuildError(
            f"{name} not found on PATH: the in-guest verifier is built with the machine's toolchain; "
            "install it with `apt-get install gcc binutils`"
        )
    return path


def _version(tool: str) -> str:
    try:
        out = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise VerifierBuildError(f"cannot run {tool} --version: {exc}") from exc
    return out.stdout.splitlines()[0] if out.stdout else ""


def _source_hash(gcc: str, ld: str) -> str:
    digest = hashlib.sha256()
    for name in (*SOURCES, *HEADERS, LINKER_SCRIPT):
        path = SOURCE_DIR / name
        if not path.is_file():
            raise VerifierBuildError(f"verifier source {path} is missing: reinstall the package")
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(repr((CFLAGS, LDFLAGS, _version(gcc), _version(ld))).encode())
    return digest.hexdigest()[:16]


def _compile_and_link(gcc: str, ld: str, work: Path) -> None:
    objects: list[Path] = []
    for name in SOURCES:
        obj = work / (name.rsplit(".", 1)[0] + ".o")
        _run([gcc, *CFLAGS, "-c", str(SOURCE_DIR / name), "-o", str(obj)], "compile " + name)
        objects.append(obj)
    script = str(SOURCE_DIR / LINKER_SCRIPT)
    _run([ld, *LDFLAGS, "-T", script, *map(str, objects), "-o", str(work / ELF_NAME)], "link verifier.elf")
    for obj in objects:
        obj.unlink()


def _run(argv: list[str], what: str) -> None:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise VerifierBuildError(f"could not {what}: {exc}") from exc
    if result.returncode == 0:
        return
    message = result.stderr.strip() or result.stdout.strip()
    hint = ""
    if "-m32" in argv and re.search(r"m32|i386|unrecognized|not supported|cannot find", message, re.I):
        hint = (
            "; this gcc cannot emit 32-bit x86 code. Debian's x86-64 gcc can (no gcc-multilib "
            "needed for this freestanding build): install gcc and binutils from Debian"
        )
    raise VerifierBuildError(f"could not {what} ({' '.join(argv)}):\n{message}{hint}")
