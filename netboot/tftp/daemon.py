"""Process plumbing shared with atftpd: daemonizing, pidfile, dropping privileges.

Why by hand: ``--daemon`` without ``--no-fork`` must behave like atftpd (detach
from the terminal, survive the shell), and as root the server must give up root
after binding port 69 (``--user``/``--group``, default nobody/nogroup).
"""

from __future__ import annotations

import grp
import os
import pwd


def daemonize() -> None:
    """Classic double fork: no controlling terminal, not a session leader, cwd /."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    os.chdir("/")
    os.umask(0o022)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)


def write_pidfile(path: str) -> None:
    """Write atomically (rename), so a reader never sees an empty pidfile."""
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="ascii") as handle:
        handle.write(f"{os.getpid()}\n")
    os.replace(temporary, path)


def remove_pidfile(path: str) -> str | None:
    """Remove the pidfile if it still names this process; a reason when it cannot be removed.

    Why the check: a second server started with the same pidfile owns it now.  Why a
    reason rather than an exception: after the privilege drop the server user may not
    write the pidfile's folder (put it in one it can, e.g. systemd's RuntimeDirectory).
    """
    try:
        with open(path, encoding="ascii") as handle:
            if handle.read().strip() != str(os.getpid()):
                return None
        os.unlink(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return (
            f"cannot remove the pidfile {path}: {exc.strerror} "
            "(its folder must be writable by the server user)"
        )
    return None


def split_user(spec: str, group: str | None) -> tuple[str, str | None]:
    """``user[.group]`` as atftpd spells it; an explicit ``--group`` wins."""
    user, _, dotted_group = spec.partition(".")
    return user, group or dotted_group or None


def drop_privileges(user: str, group: str | None) -> str:
    """Become ``user``/``group``; return a line for the log.  Raises with advice on failure."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise SystemExit(f"pyatftpd: unknown user {user!r}; pass --user with an existing account") from None
    if group is None:
        gid = entry.pw_gid
        for candidate in ("nogroup", "nobody"):
            if user == "nobody":
                try:
                    gid = grp.getgrnam(candidate).gr_gid
                    break
                except KeyError:
                    continue
    else:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise SystemExit(
                f"pyatftpd: unknown group {group!r}; pass --group with an existing group"
            ) from None
    if os.getuid() == entry.pw_uid and os.getgid() == gid:
        return f"running as {user}"
    os.setgroups([])
    os.setgid(gid)
    os.setuid(entry.pw_uid)
    return f"dropped privileges to uid {entry.pw_uid} gid {gid}"
