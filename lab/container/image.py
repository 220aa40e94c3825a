"""The lab in a container: ``lab container build`` and ``lab container run -- ARGS``.

Why: a CI runner only needs a Docker engine, not the dozen Debian packages, the ROMs and
the right kernel features; the image carries them (images/Dockerfile, docs/container.md).

* The base image is built from Debian packages (``debootstrap`` then ``docker import``),
  because no registry hub is reachable here; ``--base debian:bookworm`` uses a hub image.
* The matrix runs with only what the sealed namespace needs: ``/dev/net/tun`` (and
  ``/dev/kvm`` only when asked), and ``seccomp=unconfined`` because Docker's default
  seccomp profile refuses the ``unshare(CLONE_NEWUSER)`` the lab's namespace is made
  with.  No added capability: inside its own user namespace the lab already holds
  CAP_NET_ADMIN over its own network (measured: the tftp/mtftp smoke passes without
  ``NET_ADMIN`` and fails without the tun device or with the default seccomp profile);
  ``--cap-add`` exists for a future need.  Never ``--privileged``, and no network at
  all (``network_mode=none``): the lab's bridge lives inside its own namespace.
* A dockerd started here has no ``docker0`` bridge, no iptables rules and leaves IP
  forwarding alone.
* When no engine answers and we are root, a private ``dockerd`` is started (its own
  socket and data root, no ``docker0`` bridge, no iptables rules: the host network is
  left alone) and stopped again when the command ends.

Written with the docker Python SDK (``docker`` on PyPI, in the ``lab`` extra).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.infra.provision import provision

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
DOCKERFILE = REPO_ROOT / "images" / "Dockerfile"
DEFAULT_BASE = "netboot-lab/bookworm-base"
DEFAULT_IMAGE = "netboot-lab/runner"
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
#: Where a dockerd started by the lab keeps its socket, pid file and data (never the system engine's).
PRIVATE_ENGINE_DIR = Path("/run/netboot-lab-docker")
PRIVATE_DATA_ROOT = Path("/var/lib/netboot-lab-docker")
ARTIFACTS_IN_CONTAINER = "/artifacts"
REVISION_LABEL = "org.opencontainers.image.revision"
CACHE_IN_CONTAINER = "/root/.cache/netboot-lab"
#: Path components never copied into the build context.
CONTEXT_EXCLUDES = frozenset({".git", ".venv", ".tox", "lab-artifacts", "__pycache__", ".mypy_cache",
                              ".ruff_cache", ".pytest_cache", ".hypothesis", "build", "dist"})  # fmt: skip

Log = Callable[[str], None]


class ContainerError(RuntimeError):
    """Something the container commands cannot do here; the message says how to fix it."""


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# --- the engine ----------------------------------------------------------------------------


@dataclass
class Engine:
    client: Any  # docker.DockerClient (the SDK has no type hints)
    #: The dockerd we started (stopped by ``close``), None when an engine was already running.
    daemon: subprocess.Popen[bytes] | None = None
    url: str = ""

    def close(self) -> None:
        self.client.close()
        if self.daemon is not None and self.daemon.poll() is None:
            os.killpg(self.daemon.pid, signal.SIGTERM)
            try:
                self.daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.daemon.pid, signal.SIGKILL)
                self.daemon.wait()


def _import_docker() -> Any:
    try:
        import docker  # type: ignore[import-untyped]
    except ImportError as exc:
        raise ContainerError(
            "the docker Python SDK is missing: pip install 'netboot-lab[lab]' (or pip install docker)"
        ) from exc
    return docker


def _try_client(url: str | None) -> Any:
    docker = _import_docker()
    try:
        if url is None:
            client = docker.from_env(timeout=600)
        else:
            client = docker.DockerClient(base_url=url, timeout=600)
        client.ping()
        return client
    except Exception:  # noqa: BLE001 - any failure means "no engine there"
        return None


def private_engine_url() -> str:
    return f"unix://{PRIVATE_ENGINE_DIR}/docker.sock"


def engine_problem() -> str | None:
    """Why no engine can be used here (for skips), or None when one answers or can be started."""
    try:
        _import_docker()
    except ContainerError as exc:
        return str(exc)
    if _try_client(None) or _try_client(private_engine_url()):
        return None
    if os.geteuid() != 0:
        return "no Docker engine answers and only root can start one: start dockerd (systemctl start docker)"
    if shutil.which("dockerd") is None:
        return "no Docker engine: apt-get install -y docker.io (Debian's engine)"
    return None


def connect(start: bool = True, log: Log = _stderr) -> Engine:
    """An engine to talk to: DOCKER_HOST/the default socket, the lab's private one, or a new dockerd."""
    for url in (None, private_engine_url()):
        client = _try_client(url)
        if client is not None:
            return Engine(client, None, url or os.environ.get("DOCKER_HOST", "default socket"))
    if not start:
        raise ContainerError("no Docker engine answers (DOCKER_HOST or /var/run/docker.sock)")
    if os.geteuid() != 0:
        raise ContainerError(
            "no Docker engine answers and only root can start one: start it (sudo systemctl start docker) "
            "or set DOCKER_HOST"
        )
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        if provision(["docker.io"], is_root=True) != 0 or shutil.which("dockerd") is None:
            raise ContainerError("no dockerd: apt-get install -y docker.io")
        dockerd = shutil.which("dockerd")
        assert dockerd is not None
    return _start_dockerd(dockerd, log)


def _start_dockerd(dockerd: str, log: Log) -> Engine:
    PRIVATE_ENGINE_DIR.mkdir(parents=True, exist_ok=True)
    PRIVATE_DATA_ROOT.mkdir(parents=True, exist_ok=True)
    log_path = PRIVATE_ENGINE_DIR / "dockerd.log"
    argv = [dockerd, "--host", private_engine_url(), "--data-root", str(PRIVATE_DATA_ROOT),
            "--exec-root", str(PRIVATE_ENGINE_DIR / "exec"),
            "--pidfile", str(PRIVATE_ENGINE_DIR / "docker.pid"),
            "--bridge", "none", "--iptables=false", "--ip-masq=false", "--ip-forward=false"]  # fmt: skip
    log(f"lab container: starting a private dockerd ({private_engine_url()}, log {log_path})")
    with open(log_path, "ab") as out:
        daemon = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        client = _try_client(private_engine_url())
        if client is not None:
            return Engine(client, daemon, private_engine_url())
        if daemon.poll() is not None:
            tail = log_path.read_text(errors="replace").splitlines()[-5:]
            raise ContainerError(f"dockerd exited with {daemon.returncode}: " + " | ".join(tail))
        time.sleep(0.5)
    os.killpg(daemon.pid, signal.SIGKILL)
    daemon.wait()
    raise ContainerError(f"dockerd did not answer within 60 s; see {log_path}")


@contextmanager
def engine(start: bool = True, log: Log = _stderr) -> Iterator[Engine]:
    handle = connect(start, log)
    try:
        yield handle
    finally:
        handle.close()


# --- images --------------------------------------------------------------------------------


def image_exists(handle: Engine, tag: str) -> bool:
    docker = _import_docker()
    try:
        handle.client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


def build_base(handle: Engine, tag: str = DEFAULT_BASE, log: Log = _stderr) -> float:
    """Make the Debian 12 base image from Debian packages; returns the seconds it took."""
    if os.geteuid() != 0:
        raise ContainerError(
            f"building {tag} needs root (debootstrap makes device nodes and sets owners): run "
            "`sudo lab container build`, or use a hub image with `lab container build --base debian:bookworm`"
        )
    if shutil.which("debootstrap") is None and provision(["debootstrap"], is_root=True) != 0:
        raise ContainerError("debootstrap is missing and could not be installed: apt-get install debootstrap")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="netboot-lab-base-", dir="/var/tmp") as tmp:
        root = Path(tmp) / "rootfs"
        log(f"lab container: debootstrap {DEBIAN_SUITE} (minbase) from {DEBIAN_MIRROR} ...")
        _run_quiet(["nice", "-n", "19", "ionice", "-c3", "debootstrap", "--variant=minbase", DEBIAN_SUITE,
                    str(root), DEBIAN_MIRROR], "debootstrap")  # fmt: skip
        import_rootfs(handle, root, tag, log)
    return time.monotonic() - started


def import_rootfs(handle: Engine, root: Path, tag: str = DEFAULT_BASE, log: Log = _stderr) -> None:
    """``tar -C root -c . | docker import - tag``: a root file system becomes an image."""
    with tempfile.TemporaryDirectory(prefix="netboot-lab-import-", dir="/var/tmp") as tmp:
        tarball = Path(tmp) / "rootfs.tar"
        _run_quiet(["tar", "-C", str(root), "--numeric-owner", "-cf", str(tarball), "."], "tar the rootfs")
        repository, _, version = tag.partition(":")
        log(f"lab container: docker import -> {tag}")
        handle.client.api.import_image_from_file(str(tarball), repository=repository, tag=version or "latest")


def _run_quiet(argv: Sequence[str], what: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-8:]
        raise ContainerError(f"{what} failed ({result.returncode}): " + "\n".join(tail))


def source_commit() -> str:
    """The checkout's short commit (``-dirty`` with local changes), or "unknown" outside git.

    The image has no .git, so the commit travels as the image label
    ``org.opencontainers.image.revision`` and the ``LAB_COMMIT`` variable of each run.
    """
    try:
        head = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True)  # fmt: skip
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True)  # fmt: skip
    except OSError:
        return "unknown"
    if head.returncode != 0 or not head.stdout.strip():
        return "unknown"
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def prepare_context(dest: Path, wheels: bool = True, log: Log = _stderr) -> Path:
    """Copy the project into ``dest`` and, with ``wheels``, every wheel it needs into ``dest/wheels``.

    The wheels are fetched on the host (whose pip knows the reachable index), so the image
    build needs no Python index; if that fails the build falls back to the index.
    """
    for rel in _project_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / rel, target)
    if wheels:
        argv = [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(dest / "wheels"),
                "setuptools>=68", "wheel", f"{dest}[lab,test]"]  # fmt: skip
        result = subprocess.run(argv, capture_output=True, text=True)
        if result.returncode != 0:
            shutil.rmtree(dest / "wheels", ignore_errors=True)
            last = (result.stderr.strip().splitlines() or ["pip wheel failed"])[-1]
            log(f"lab container: no wheels collected on the host ({last}); the build will use the index")
    return dest


def _project_files() -> list[str]:
    listed = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
    )
    if listed.returncode == 0:
        names = [n for n in listed.stdout.decode().split("\0") if n]
    else:  # an unpacked sdist: walk the tree
        names = [str(p.relative_to(REPO_ROOT)) for p in REPO_ROOT.rglob("*") if p.is_file()]
    return sorted(
        n for n in names if (REPO_ROOT / n).is_file() and not CONTEXT_EXCLUDES.intersection(n.split("/"))
    )


@dataclass(frozen=True)
class BuildResult:
    tag: str
    image_id: str
    size_bytes: int
    seconds: float
    base_seconds: float | None  # time spent making the base image (None: it existed)


def build_image(
    handle: Engine,
    tag: str = DEFAULT_IMAGE,
    base: str = DEFAULT_BASE,
    rebuild_base: bool = False,
    wheels: bool = True,
    log: Log = _stderr,
) -> BuildResult:
    """Build the runner image (and the local base first when it is the default and missing)."""
    started = time.monotonic()
    base_seconds = None
    if base == DEFAULT_BASE and (rebuild_base or not image_exists(handle, base)):
        base_seconds = build_base(handle, base, log)
    with tempfile.TemporaryDirectory(prefix="netboot-lab-context-") as tmp:
        context = prepare_context(Path(tmp), wheels, log)
        log(f"lab container: building {tag} FROM {base}")
        image_id = ""
        error = ""
        # network_mode=host: RUN steps reach the Debian mirror even with the private engine's
        # bridge switched off.
        for chunk in handle.client.api.build(path=str(context), dockerfile="images/Dockerfile", tag=tag,
                                             buildargs={"BASE": base}, network_mode="host", rm=True,
                                             forcerm=True, decode=True,
                                             labels={REVISION_LABEL: source_commit()}):  # fmt: skip
            if "stream" in chunk and chunk["stream"].strip():
                log("  " + chunk["stream"].rstrip())
            if "aux" in chunk and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
            if "error" in chunk:
                error = chunk["error"]
        if error:
            raise ContainerError(f"docker build failed: {error}")
    image = handle.client.images.get(tag)
    return BuildResult(tag, image_id or str(image.id), int(image.attrs.get("Size", 0)),
                       time.monotonic() - started, base_seconds)  # fmt: skip


# --- running -------------------------------------------------------------------------------


def run_options(kvm: bool = False, cap_add: Sequence[str] = ()) -> dict[str, Any]:
    """What the container gets: the least the sealed namespace and QEMU need (docs/container.md)."""
    devices = ["/dev/net/tun:/dev/net/tun:rwm"]
    if kvm:
        devices.append("/dev/kvm:/dev/kvm:rwm")
    return {
        "cap_add": list(cap_add),
        "devices": devices,
        "security_opt": ["seccomp=unconfined"],
        "network_mode": "none",
        "privileged": False,
        "init": True,
    }


def run_in_container(
    handle: Engine,
    command: Sequence[str],
    artifacts: Path,
    image: str = DEFAULT_IMAGE,
    kvm: bool = False,
    entrypoint: Sequence[str] | None = None,
    timeout: float | None = None,
    log: Log | None = _stderr,
    cap_add: Sequence[str] = (),
    cache: Path | None = None,
) -> tuple[int, str]:
    """Run ``command`` (arguments to the image's ``lab`` entry point unless ``entrypoint``).

    ``artifacts`` (a host folder) is mounted at /artifacts.  ``cache`` (a host folder, e.g.
    ``~/.cache/netboot-lab``) is mounted as the container's build cache, so the verifier and
    the full boot payload are reused, and the full boot works with no network inside.
    Returns (exit status, output).
    """
    artifacts = artifacts.resolve()
    artifacts.mkdir(parents=True, exist_ok=True)
    if kvm and not Path("/dev/kvm").exists():
        raise ContainerError("--kvm asked but this host has no /dev/kvm")
    if not Path("/dev/net/tun").exists():
        raise ContainerError("/dev/net/tun is missing on the host: modprobe tun")
    extra: dict[str, Any] = {} if entrypoint is None else {"entrypoint": list(entrypoint)}
    volumes = {str(artifacts): {"bind": ARTIFACTS_IN_CONTAINER, "mode": "rw"}}
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        volumes[str(cache.resolve())] = {"bind": CACHE_IN_CONTAINER, "mode": "rw"}
    labels = handle.client.images.get(image).labels or {}
    commit = labels.get(REVISION_LABEL, "unknown")
    container = handle.client.containers.run(
        image, list(command), detach=True,
        volumes=volumes,
        environment={"LAB_IN_CONTAINER": "1", "LAB_COMMIT": commit}, **run_options(kvm, cap_add), **extra,
    )  # fmt: skip
    lines: list[str] = []
    try:
        deadline = None if timeout is None else time.monotonic() + timeout
        for raw in container.logs(stream=True, follow=True):
            text = raw.decode("utf-8", "replace")
            lines.append(text)
            if log is not None:
                log(text.rstrip("\n"))
            if deadline is not None and time.monotonic() > deadline:
                container.kill()
                break
        status = container.wait(timeout=60 if timeout is None else max(timeout, 60))
    finally:
        try:
            container.remove(force=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
    return int(status.get("StatusCode", 1)), "".join(lines)


def matrix_command(args: Sequence[str]) -> list[str]:
    """``lab matrix ARGS`` with the artifacts folder pointed at the mount unless ARGS set it."""
    args = list(args)
    if args[:1] == ["--"]:
        args = args[1:]
    if not any(a == "--lab-artifacts" or a.startswith("--lab-artifacts=") for a in args):
        args += ["--lab-artifacts", ARTIFACTS_IN_CONTAINER]
    return ["matrix", *args]


# --- CLI -----------------------------------------------------------------------------------


def add_container_commands(subparsers: Any) -> None:
    """Add ``container build`` and ``container run`` to the ``lab`` CLI's subparsers."""
    parser = subparsers.add_parser("container", help="build the lab runner image or run the matrix in it")
    _add_build_and_run(parser)


def _add_build_and_run(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="container_command", required=True)
    build = sub.add_parser("build", help="build the base (debootstrap) if missing, then the runner image")
    build.add_argument("--base", default=DEFAULT_BASE,
                       help=f"FROM image (default {DEFAULT_BASE}, made from Debian packages; "
                       "debian:bookworm with a hub)")  # fmt: skip
    build.add_argument("--tag", default=DEFAULT_IMAGE, help=f"image tag (default {DEFAULT_IMAGE})")
    build.add_argument("--rebuild-base", action="store_true", help="debootstrap the base again")
    build.add_argument("--no-wheels", action="store_true", help="let pip in the build use the index")
    run = sub.add_parser("run", help="run `lab matrix ARGS` in the runner image: lab container run -- ARGS")
    run.add_argument("--tag", default=DEFAULT_IMAGE, help=f"image tag (default {DEFAULT_IMAGE})")
    run.add_argument("--artifacts", type=Path, default=Path("lab-artifacts"),
                     help="host folder mounted at /artifacts (default ./lab-artifacts)")  # fmt: skip
    run.add_argument("--kvm", action="store_true", help="pass /dev/kvm too (TCG is the default)")
    run.add_argument("--cache", type=Path, default=None, metavar="DIR",
                     help="host build cache to share, e.g. ~/.cache/netboot-lab")  # fmt: skip
    run.add_argument("--cap-add", action="append", default=[], metavar="CAP",
                     help="add a capability (none is needed today; repeatable)")  # fmt: skip
    run.add_argument("args", nargs=argparse.REMAINDER, help="arguments for lab matrix, after --")
    parser.set_defaults(func=cmd_container)


def cmd_container(args: argparse.Namespace) -> int:
    try:
        with engine() as handle:
            if args.container_command == "build":
                result = build_image(handle, args.tag, args.base, args.rebuild_base, not args.no_wheels)
                made = result.base_seconds
                base = f"; base made in {made:.0f} s" if made is not None else ""
                print(f"lab container: {result.tag} {result.image_id[:19]} {result.size_bytes / 1e6:.0f} MB, "
                      f"{result.seconds:.0f} s{base}")  # fmt: skip
                return 0
            if not image_exists(handle, args.tag):
                raise ContainerError(f"no image {args.tag}: run `lab container build` first")
            command = matrix_command(args.args)
            status, _ = run_in_container(handle, command, args.artifacts, args.tag, args.kvm,
                                         cap_add=args.cap_add, cache=args.cache)  # fmt: skip
            print(f"lab container: lab matrix exited {status}; artifacts in {args.artifacts.resolve()}")
            return status
    except ContainerError as exc:
        print(f"lab container: {exc}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lab.container.image build|run ...``: the same as ``lab container build|run ...``."""
    parser = argparse.ArgumentParser(
        prog="python -m lab.container.image", description="the lab in a container"
    )
    _add_build_and_run(parser)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
