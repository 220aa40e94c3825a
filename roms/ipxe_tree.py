"""Where an iPXE source tree comes from: a git checkout at a revision, or a source archive.

The lab builds ROMs only in a copy of the tree under its own cache, never in the user's
tree: a git checkout is read with ``git archive`` (which writes nothing to the user's
repository, not even worktree metadata), an archive is extracted.  The identity of the
source (commit, or the archive's sha256) is what a cached build is keyed on and what
the ROM set's manifest names.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ARCHIVE_SUFFIXES = (".tar.xz", ".tar.gz", ".tgz", ".tar.bz2", ".tar")


class TreeError(Exception):
    """The source given is not an iPXE checkout or archive we can read."""


@dataclass(frozen=True)
class TreeSource:
    """One iPXE source tree, identified well enough to key a cache on it."""

    kind: str  # "git" or "archive"
    path: Path
    #: The full commit id: of REV for a checkout; the one ``git archive`` stored in the
    #: archive's pax header, if any.  iPXE's banner shows its first five digits.
    commit: str | None
    #: What people call this tree: ``git describe`` of REV, or the archive's file name.
    describe: str
    #: The cache identity: the commit for a checkout, the archive's sha256 for an archive.
    digest: str
    rev: str | None = None

    def identity(self) -> dict[str, str | None]:
        """The manifest's ``source`` entry."""
        if self.kind == "git":
            return {
                "kind": "git",
                "path": str(self.path),
                "rev": self.rev,
                "commit": self.commit,
                "describe": self.describe,
            }
        return {
            "kind": "archive",
            "path": str(self.path),
            "name": self.path.name,
            "sha256": self.digest,
            "commit": self.commit,
            "describe": self.describe,
        }

    def key_part(self) -> str:
        return f"{self.kind}:{self.digest}"


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/netboot-lab/ipxe`` (default ``~/.cache/netboot-lab/ipxe``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "netboot-lab" / "ipxe"


def _git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise TreeError(f"git {' '.join(args)} in {repo} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def is_git_checkout(path: Path) -> bool:
    if not path.is_dir() or shutil.which("git") is None:
        return False
    result = subprocess.run(
        ["git", "-C", str(path), "rev-parse", "--git-dir"], capture_output=True, text=True
    )
    return result.returncode == 0


def resolve_commit(repo: Path, rev: str) -> str:
    """REV as a full commit id, or TreeError naming REV and the repository."""
    try:
        return _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    except TreeError:
        raise TreeError(f"{repo} has no commit {rev!r}; give a branch, tag or commit id with --rev") from None


def open_source(src: Path | str, rev: str | None = None) -> TreeSource:
    """Identify SRC: an iPXE git checkout (at REV, default HEAD) or a source archive."""
    path = Path(src).expanduser().resolve()
    if path.is_file() and path.name.endswith(ARCHIVE_SUFFIXES):
        if rev is not None:
            raise TreeError(f"--rev {rev} applies to a git checkout, but {path} is an archive")
        return _open_archive(path)
    if path.is_dir():
        if not is_git_checkout(path):
            raise TreeError(
                f"{path} is a folder but not a git checkout; give an iPXE git checkout or a source "
                f"archive ({', '.join(ARCHIVE_SUFFIXES)}), e.g. `git archive` output or a release tarball"
            )
        top = Path(_git(path, "rev-parse", "--show-toplevel"))
        commit = resolve_commit(top, rev or "HEAD")
        if not _git(top, "ls-tree", "--name-only", commit, "src/Makefile"):
            raise TreeError(f"{top} at {rev or 'HEAD'} has no src/Makefile: not an iPXE tree")
        describe = _git(top, "describe", "--tags", "--always", "--abbrev=12", commit)
        return TreeSource("git", top, commit, describe, commit, rev or "HEAD")
    if path.exists():
        raise TreeError(f"{path} is neither a git checkout nor an archive ({', '.join(ARCHIVE_SUFFIXES)})")
    raise TreeError(f"{path} does not exist")


def _open_archive(path: Path) -> TreeSource:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    try:
        with tarfile.open(path, "r|*") as archive:
            archive.next()  # reading the first member also reads git's pax global header
            commit = archive.pax_headers.get("comment")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise TreeError(f"{path} is not a readable tar archive: {exc}") from None
    if commit is not None and not (len(commit) in (40, 64) and all(c in "0123456789abcdef" for c in commit)):
        commit = None
    return TreeSource("archive", path, commit, path.name, digest.hexdigest())


def uncommitted_changes(source: TreeSource) -> bool:
    """Whether the checkout has changes REV's build will not include (tracked files only)."""
    if source.kind != "git":
        return False
    return bool(_git(source.path, "status", "--porcelain", "--untracked-files=no"))


def extract(source: TreeSource, dest: Path) -> Path:
    """Write the tree's files into ``dest`` (which must not exist) and return ``dest``.

    ``dest`` gets the tree's top level (``dest/src/Makefile``) whatever the archive's top
    folder is called.
    """
    dest.mkdir(parents=True)
    if source.kind == "git":
        proc = subprocess.Popen(
            ["git", "-C", str(source.path), "archive", "--format=tar", str(source.commit)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None
        _untar(proc.stdout, dest, strip_top=False)
        stderr = proc.stderr.read().decode() if proc.stderr else ""
        if proc.wait() != 0:
            raise TreeError(f"git archive {source.commit} in {source.path} failed: {stderr.strip()}")
    else:
        with source.path.open("rb") as handle:
            _untar(handle, dest, strip_top=True)
    if not (dest / "src" / "Makefile").is_file():
        raise TreeError(f"{source.path}: no src/Makefile in the tree (an iPXE archive has ipxe/src/Makefile)")
    return dest


def _untar(stream: IO[bytes], dest: Path, strip_top: bool) -> None:
    """Extract a tar stream safely (tarfile's "data" filter), dropping the single top folder if asked."""
    with tarfile.open(fileobj=stream, mode="r|*") as archive:
        for member in archive:
            if strip_top:
                top, _, rest = member.name.lstrip("./").partition("/")
                if not rest:
                    continue  # the top folder itself, or a stray file beside it
                member.name = rest
                if member.islnk():
                    member.linkname = member.linkname.lstrip("./").partition("/")[2]
            _extract_member(archive, member, dest)


def _extract_member(archive: tarfile.TarFile, member: tarfile.TarInfo, dest: Path) -> None:
    """Extract one member with the "data" filter, or the same rules where Python lacks it.

    Python's extraction filters came in 3.11.4; Debian 12's python3 is 3.11.2, where
    ``extract(filter=...)`` is a TypeError.  There, ``check_member`` refuses what the
    "data" filter would, before the plain extract.
    """
    if hasattr(tarfile, "data_filter"):
        try:
            archive.extract(member, dest, filter="data")
        except tarfile.FilterError as refused:
            raise TreeError(f"archive member {member.name!r} refused: {refused}; not extracting it") from None
        return
    check_member(member, dest)
    member.mode = (member.mode & 0o755) | (0o600 if member.isfile() else 0o700)
    member.uid = member.gid = os.getuid()
    member.uname = member.gname = ""
    archive.extract(member, dest, set_attrs=not member.issym())


def check_member(member: tarfile.TarInfo, dest: Path) -> None:
    """Refuse what tarfile's "data" filter refuses: paths or links out of ``dest``, devices, fifos."""
    root = dest.resolve()

    def inside(path: Path) -> bool:
        return path == root or root in path.parents

    if member.name.startswith("/") or not inside((root / member.name).resolve()):
        raise TreeError(f"archive member {member.name!r} would land outside {dest}; not extracting it")
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        raise TreeError(f"archive member {member.name!r} is a device or fifo; an iPXE tree has none")
    if member.issym():
        target = (root / member.name).parent / member.linkname
        if member.linkname.startswith("/") or not inside(target.resolve()):
            raise TreeError(f"archive symlink {member.name!r} -> {member.linkname!r} points outside {dest}")
    if member.islnk() and (member.linkname.startswith("/") or not inside((root / member.linkname).resolve())):
        raise TreeError(f"archive hard link {member.name!r} -> {member.linkname!r} points outside {dest}")
