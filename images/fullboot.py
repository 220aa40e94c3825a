"""The full boot payload: Debian's own kernel plus a tiny busybox initramfs that proves its bytes.

Why: the verifier proves that bytes arrive; a full boot proves that what multicast
delivers is something a machine really boots (the seed's "200 nodes boot Linux" story),
with the 8 MB kernel as Debian ships it and an initramfs whose ``/init`` prints
``FULLBOOT OK sha256=<hex>`` for a deterministic file it carries, then powers off.

Nothing is installed on the host.  The packages are fetched with ``apt-get download``
(``linux-image-amd64`` names the versioned ``linux-image-6.1.0-*-amd64``; ``busybox-static``
gives one static binary) and only the members needed are read from them with
``dpkg-deb --fsys-tarfile``.  The initramfs is an ``newc`` archive made by GNU ``cpio
--reproducible`` with fixed times and owners and gzip without a timestamp, so the same
inputs give the same bytes and the result is cached under a key of those inputs
(``~/.cache/netboot-lab/fullboot/``).

CLI: ``python -m images.fullboot`` builds (or finds) the payload and prints its paths;
``python -m lab.infra.direct_boot --fullboot`` boots it straight from QEMU to check the marker.
"""

from __future__ import annotations

import argparse
import fnmatch
import gzip
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from images.payload import make_payload
from images.verifier import default_cache_root

KERNEL_META_PACKAGE = "linux-image-amd64"
BUSYBOX_PACKAGE = "busybox-static"
CPIO_PACKAGE = "cpio"
MARKER = "FULLBOOT OK"
#: Kernel command line for the serial console; panic=-1 reboots at once on a panic, which
#: ``-no-reboot`` (QEMU) or the lab's failure pattern turns into a quick, visible failure.
KERNEL_APPEND = "console=ttyS0 quiet panic=-1"
#: The file the initramfs carries: 256 KiB of make_payload(seed=2090), hashed in the guest.
CARRIED_NAME = "carried.bin"
CARRIED_SIZE = 256 * 1024
CARRIED_SEED = 2090
#: Bumped when the initramfs layout changes, so the cache key changes with it.
LAYOUT_VERSION = 1

INIT_SCRIPT = f"""#!/bin/busybox sh
# netboot-lab full boot: hash the carried file, print the marker, power off.
sum=$(/bin/busybox sha256sum /{CARRIED_NAME})
echo "{MARKER} sha256=${{sum%% *}} kernel=$(/bin/busybox uname -r)"
/bin/busybox poweroff -f
"""

_MARKER_RE = re.compile(re.escape(MARKER) + r" sha256=([0-9a-f]{64})(?: kernel=(\S+))?")


class FullBootError(RuntimeError):
    """The payload could not be built; the message names the Debian package or tool to get."""


@dataclass(frozen=True)
class FullBoot:
    kernel: Path
    initrd: Path
    marker: str
    carried_sha256: str
    #: "linux-image-6.1.0-56-amd64 6.1.192-2": what the kernel came from.
    kernel_package: str = ""

    @property
    def expected_line(self) -> str:
        """The console line a good boot prints (followed by `` kernel=<release>``)."""
        return f"{self.marker} sha256={self.carried_sha256}"


def default_cache_dir() -> Path:
    return default_cache_root() / "fullboot"


def fullboot_script(kernel_url: str, initrd_url: str, append: str = KERNEL_APPEND) -> str:
    """The iPXE script that boots the full boot payload from two URLs (any protocol iPXE has)."""
    return (
        "#!ipxe\n"
        "echo LAB fetch-start\n"
        f"kernel {kernel_url} {append} || goto failed\n"
        f"initrd {initrd_url} || goto failed\n"
        "echo LAB fetched\n"
        "echo LAB booting\n"
        "boot || goto failed\n"
        ":failed\n"
        "echo LAB fetch-failed\n"
    )


def parse_marker(console: str) -> tuple[str, str | None] | None:
    """(sha256, kernel release) from the marker line in ``console``, or None if it never appeared."""
    match = _MARKER_RE.search(console)
    return (match.group(1), match.group(2)) if match else None


def build_fullboot(cache_dir: Path | None = None) -> FullBoot:
    """Return the kernel and initramfs, downloading and building them on first use.

    ``cache_dir`` replaces ``~/.cache/netboot-lab/fullboot``.  Works offline once the
    two .deb files are in ``<cache>/debs``.  Safe when several processes build at once.
    """
    root = cache_dir if cache_dir is not None else default_cache_dir()
    debs = root / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    kernel_package = _resolve_kernel_package()
    kernel_deb = _fetch_deb(kernel_package, debs)
    busybox_deb = _fetch_deb(BUSYBOX_PACKAGE, debs)
    kernel = _extract_kernel(kernel_deb, root)
    carried = make_payload(CARRIED_SIZE, CARRIED_SEED)
    initrd = _build_initrd(busybox_deb, carried, root)
    return FullBoot(
        kernel=kernel,
        initrd=initrd,
        marker=MARKER,
        carried_sha256=hashlib.sha256(carried).hexdigest(),
        kernel_package=f"{_deb_field(kernel_deb, 'Package')} {_deb_field(kernel_deb, 'Version')}",
    )


# --- packages ------------------------------------------------------------------------------


def _resolve_kernel_package() -> str | None:
    """The versioned kernel package ``linux-image-amd64`` depends on, or None if apt cannot say."""
    try:
        out = subprocess.run(
            ["apt-cache", "depends", KERNEL_META_PACKAGE], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in out.stdout.splitlines():
        match = re.match(r"\s*Depends:\s*(linux-image-\S+)", line)
        if match:
            return match.group(1)
    return None


def _candidate_version(package: str) -> str | None:
    try:
        out = subprocess.run(["apt-cache", "policy", package], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"Candidate:\s*(\S+)", out.stdout)
    return match.group(1) if match and match.group(1) != "(none)" else None


def _deb_field(deb: Path, name: str) -> str:
    try:
        out = subprocess.run(["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True, timeout=60)
    except OSError as exc:
        raise FullBootError(f"cannot run dpkg-deb ({exc}): install Debian's dpkg") from exc
    if out.returncode != 0:
        raise FullBootError(f"{deb} is not a readable .deb ({out.stderr.strip()}); delete it and retry")
    return out.stdout.strip()


def _cached_debs(package_glob: str, debs: Path) -> list[Path]:
    return sorted(debs.glob(f"{package_glob}_*.deb"), key=lambda p: p.stat().st_mtime, reverse=True)


def _fetch_deb(package: str | None, debs: Path) -> Path:
    """The .deb of ``package`` (apt's candidate) in ``debs``, downloading it when missing.

    ``package`` None means apt could not resolve the kernel: the newest cached kernel .deb
    is used, so a machine without apt lists still builds from its cache.
    """
    if package is None:
        cached = _cached_debs("linux-image-*-amd64", debs)
        if cached:
            return cached[0]
        raise FullBootError(
            f"apt-cache cannot resolve {KERNEL_META_PACKAGE} to a versioned kernel package and no kernel "
            f".deb is cached in {debs}: run `apt-get update` (Debian 12 sources), or put a "
            f"linux-image-6.1.0-*-amd64 .deb there"
        )
    version = _candidate_version(package)
    for deb in _cached_debs(package, debs):
        if version is None or _deb_field(deb, "Version") == version:
            return deb
    if shutil.which("apt-get") is None:
        raise FullBootError(f"apt-get not found: fetch the Debian package {package} into {debs} by hand")
    with tempfile.TemporaryDirectory(prefix="download-", dir=debs) as tmp:
        try:
            out = subprocess.run(
                ["apt-get", "download", package], cwd=tmp, capture_output=True, text=True, timeout=600
            )
        except subprocess.TimeoutExpired as exc:
            raise FullBootError(f"`apt-get download {package}` timed out: check the mirror") from exc
        got = list(Path(tmp).glob("*.deb"))
        if out.returncode != 0 or not got:
            raise FullBootError(
                f"`apt-get download {package}` failed: {out.stderr.strip() or out.stdout.strip()}; "
                f"the full boot needs the Debian package {package} (run `apt-get update` first)"
            )
        final = debs / got[0].name
        os.replace(got[0], final)
    return final


def _read_member(deb: Path, pattern: str) -> tuple[str, bytes]:
    """The first file in ``deb``'s data whose path matches ``pattern``, streamed (no full extract)."""
    proc = subprocess.Popen(
        ["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for member in tar:
                if member.isfile() and fnmatch.fnmatch(member.name.lstrip("./"), pattern):
                    handle = tar.extractfile(member)
                    if handle is not None:
                        return member.name.lstrip("./"), handle.read()
    except tarfile.TarError as exc:
        raise FullBootError(f"cannot read {deb}: {exc}; delete it and retry") from exc
    finally:
        proc.kill()
        proc.wait()
    raise FullBootError(f"{deb.name} has no file matching {pattern}")


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name + ".", delete=False) as tmp:
        tmp.write(data)
    os.replace(tmp.name, path)


def _extract_kernel(deb: Path, root: Path) -> Path:
    stem = deb.name.removesuffix(".deb").replace("%3a", "_")
    existing = list((root / stem).glob("vmlinuz-*"))
    if existing:
        return existing[0]
    name, data = _read_member(deb, "boot/vmlinuz-*")
    target = root / stem / Path(name).name
    _write_atomic(target, data)
    return target


# --- initramfs -----------------------------------------------------------------------------


def _build_initrd(busybox_deb: Path, carried: bytes, root: Path) -> Path:
    _, busybox = _read_member(busybox_deb, "bin/busybox")
    key = hashlib.sha256(
        repr((LAYOUT_VERSION, INIT_SCRIPT, CARRIED_NAME)).encode()
        + hashlib.sha256(busybox).digest()
        + hashlib.sha256(carried).digest()
    ).hexdigest()[:16]
    target = root / f"initrd-{key}.cpio.gz"
    if target.is_file():
        return target
    if shutil.which("cpio") is None:
        raise FullBootError(
            f"cpio not found: the full boot initramfs is packed with GNU cpio; "
            f"install the Debian package {CPIO_PACKAGE} (`apt-get install {CPIO_PACKAGE}`)"
        )
    with tempfile.TemporaryDirectory(prefix="initrd-") as tmp:
        tree = Path(tmp)
        files = {
            "bin/busybox": (busybox, 0o755),
            "init": (INIT_SCRIPT.encode(), 0o755),
            CARRIED_NAME: (carried, 0o644),
        }
        for directory in ("bin", "dev", "proc", "sys"):
            (tree / directory).mkdir()
        for rel, (data, mode) in files.items():
            (tree / rel).write_bytes(data)
            (tree / rel).chmod(mode)
        names = sorted(["bin", "dev", "proc", "sys", *files])
        for rel in names:
            os.utime(tree / rel, (0, 0))
        out = subprocess.run(
            ["cpio", "--quiet", "-o", "-H", "newc", "--reproducible", "--owner=0:0"],
            cwd=tree,
            input="\n".join(names).encode() + b"\n",
            capture_output=True,
            timeout=120,
        )
        if out.returncode != 0:
            raise FullBootError(f"cpio failed packing the initramfs: {out.stderr.decode(errors='replace')}")
    _write_atomic(target, gzip.compress(out.stdout, compresslevel=9, mtime=0))
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="build (or find) the full boot kernel + initramfs")
    parser.add_argument("--cache-dir", type=Path, default=None, help="default ~/.cache/netboot-lab/fullboot")
    args = parser.parse_args(argv)
    try:
        fb = build_fullboot(args.cache_dir)
    except FullBootError as exc:
        print(f"fullboot: {exc}", file=sys.stderr)
        return 2
    print(f"kernel  {fb.kernel} ({fb.kernel.stat().st_size} bytes, {fb.kernel_package})")
    print(f"initrd  {fb.initrd} ({fb.initrd.stat().st_size} bytes)")
    print(f"expect  {fb.expected_line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
