"""The lab's pytest plugin: options, markers and fixtures shared by all tests.

Registered as the ``lab`` pytest11 entry point of the installed package, so any test tree
gets these fixtures and the ``--lab-*`` options.  Fixtures (see docs/lab.md):

* ``netns``: a fresh sealed namespace for one test (no VMs).
* ``lab`` (session, one per xdist worker): namespace + br0 + dnsmasq + TFTP server.
* ``dhcp``, ``tftp_server`` (param: pyatftpd, atftpd), ``vm`` (factory), ``artifacts``,
  ``confirm`` (records per-stage evidence into ``user_properties`` and evidence.json).

Any VM test on a host without namespaces, /dev/net/tun or QEMU is skipped with the
reason and the fix; it is never failed and never passed.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from lab.infra.dnsmasq import Dnsmasq
from lab.infra.host import vm_support_problem
from lab.infra.namespace import Namespace, NamespaceUnavailable, namespace_support_problem
from lab.infra.qemu import ACCELS
from lab.infra.tftp_service import SERVERS, TftpService, server_problem
from lab.model.jsonable import to_json
from lab.model.network import Topology
from lab.model.results import BootEvidence
from lab.model.status import Status
from lab.run.boot import BootRun, launch
from lab.run.lab import Lab, LabConfig
from lab.run.services import Services, TftpWant
from roms.catalog import DESIGN_NICS, nic
from roms.romset import RomSet, rom_sets

_RUN_ID_ENV = "LAB_RUN_ID"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lab", "virtual boot lab")
    group.addoption("--lab-nics", default=",".join(DESIGN_NICS), help="NIC models for nic_model tests")
    group.addoption(
        "--lab-rom-dir", action="append", default=[], metavar="NAME=DIR", help="add a ROM set (repeatable)"
    )
    group.addoption("--lab-accel", choices=ACCELS, default="tcg", help="tcg (default) or kvm (hangs here)")
    group.addoption("--lab-artifacts", default="lab-artifacts", help="root folder for per-test artifacts")
    group.addoption(
        "--lab-topology", default="flood", choices=("flood", "snoop", "snoop+querier"),
        help="bridge multicast settings of each worker's lab",
    )  # fmt: skip
    group.addoption("--lab-jobs", type=int, default=4, help="most VMs one worker runs at once (vm factory)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "nic(*names): run a nic_model test only for these NIC models")
    # One run id shared by the controller and its xdist workers (they inherit the env).
    os.environ.setdefault(_RUN_ID_ENV, datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "nic_model" not in metafunc.fixturenames:
        return
    names = [n.strip() for n in str(metafunc.config.getoption("--lab-nics")).split(",") if n.strip()]
    marker = metafunc.definition.get_closest_marker("nic")
    if marker is not None:
        names = [n for n in names if n in marker.args] or list(marker.args)
    metafunc.parametrize("nic_model", names, ids=names)


def _worker_index() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    digits = re.sub(r"\D", "", worker)
    return int(digits) if digits else 0


def require_vm_support() -> None:
    """Skip (never fail) when this host cannot run lab VMs, naming the reason and the fix."""
    problem = vm_support_problem()
    if problem:
        pytest.skip(f"lab VMs unavailable: {problem}")


@pytest.fixture
def netns() -> Iterator[Namespace]:
    """A fresh sealed user+net namespace for one test; skipped (with the fix) if unavailable."""
    problem = namespace_support_problem()
    if problem:
        pytest.skip(f"no lab namespace: {problem}")
    try:
        with Namespace() as ns:
            yield ns
    except NamespaceUnavailable as exc:  # pragma: no cover - depends on the host
        pytest.skip(f"no lab namespace: {exc}")


@pytest.fixture(scope="session")
def lab_run_dir(pytestconfig: pytest.Config) -> Path:
    root = Path(str(pytestconfig.getoption("--lab-artifacts"))).resolve()
    run_dir = root / os.environ[_RUN_ID_ENV]
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


@pytest.fixture(scope="session")
def lab_rom_sets(pytestconfig: pytest.Config) -> list[RomSet]:
    """Debian's ROMs plus every ``--lab-rom-dir NAME=DIR``."""
    return rom_sets(pytestconfig.getoption("--lab-rom-dir"))


@pytest.fixture(scope="session")
def lab(pytestconfig: pytest.Config, lab_run_dir: Path) -> Iterator[Lab]:
    """This worker's lab: its own namespace, br0, dnsmasq and TFTP server (pyatftpd first)."""
    require_vm_support()
    index = _worker_index()
    server = "pyatftpd"
    problem = server_problem(server)
    if problem:
        pytest.skip(f"lab VMs unavailable: {problem}")
    config = LabConfig(
        lab_run_dir / "labs" / f"gw{index}",
        index=index,
        server=server,
        topology=Topology.parse(str(pytestconfig.getoption("--lab-topology"))),
        accel=str(pytestconfig.getoption("--lab-accel")),
        slot_count=max(2, int(pytestconfig.getoption("--lab-jobs"))),
    )
    with Lab(config) as running:
        yield running


@pytest.fixture
def dhcp(lab: Lab) -> Dnsmasq:
    """The worker's dnsmasq (fixed address and boot file per VM slot)."""
    assert lab.dhcp is not None
    return lab.dhcp


def _use_server(lab: Lab, kind: str) -> TftpService:
    lab.config.server = kind
    return lab.ensure(Services(TftpWant(kind)))


@pytest.fixture(params=SERVERS)
def tftp_server(request: pytest.FixtureRequest, lab: Lab) -> TftpService:
    """The TFTP server VMs boot from: pyatftpd (ours) or atftpd (Debian's, the reference)."""
    kind = str(request.param)
    problem = server_problem(kind)
    if problem:
        pytest.skip(problem)
    return _use_server(lab, kind)


@pytest.fixture
def artifacts(request: pytest.FixtureRequest, lab_run_dir: Path) -> Path:
    """One folder per test: ``<--lab-artifacts>/<run-id>/<test node id>``."""
    name = re.sub(r"[^A-Za-z0-9_.\-\[\]]+", "_", request.node.nodeid).strip("_")
    folder = lab_run_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


VmFactory = Callable[..., BootRun]


@pytest.fixture
def vm(
    request: pytest.FixtureRequest, lab: Lab, artifacts: Path, lab_rom_sets: list[RomSet]
) -> Iterator[VmFactory]:
    """Start VMs: ``vm("e1000", size=1)`` returns a running boot; ``.finish()`` gives its evidence.

    Several calls give several VMs at once (each in its own slot: MAC, address, tap,
    boot file).  VMs still running at teardown are stopped.  Without ``tftp_server`` a
    test boots from pyatftpd, whatever an earlier test on this worker switched to.
    """
    if "tftp_server" not in request.fixturenames:
        _use_server(lab, "pyatftpd")
    runs: list[BootRun] = []

    def start(
        nic_name: str,
        size: int = 1432 * 3,
        seed: int = 1,
        rom_set: str | RomSet = "debian",
        check_rom: bool = True,
        protocol: str = "tftp",
    ) -> BootRun:
        chosen = rom_set if isinstance(rom_set, RomSet) else {s.name: s for s in lab_rom_sets}[rom_set]
        folder = artifacts / f"vm{len(runs)}-{nic_name}-{size}B"
        run = launch(lab, nic(nic_name), chosen, size, seed, folder, check_rom=check_rom, protocol=protocol)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.finish()


class Confirm:
    """Records a boot's evidence per stage: the only path from a test into the matrix."""

    def __init__(self, item: pytest.Item, folder: Path) -> None:
        self.item = item
        self.folder = folder
        self.records: list[dict[str, Any]] = []

    def __call__(self, evidence: BootEvidence, label: str = "") -> BootEvidence:
        prefix = f"{label}:" if label else ""
        for stage in evidence.stages:
            self.item.user_properties.append((f"{prefix}stage:{stage.name}", stage.status.value))
            self.item.user_properties.append((f"{prefix}seconds:{stage.name}", f"{stage.seconds:.3f}"))
        self.item.user_properties.append((f"{prefix}status", evidence.status.value))
        for name, path in evidence.files.items():
            self.item.user_properties.append((f"{prefix}evidence:{name}", str(path)))
        self.records.append({"label": label, **to_json(evidence, self.folder)})
        (self.folder / "evidence.json").write_text(json.dumps(self.records, indent=2) + "\n")
        return evidence

    def passed(self, evidence: BootEvidence, label: str = "") -> None:
        """Record, then fail the test unless the boot PASSed (the reason names the stage)."""
        self(evidence, label)
        if evidence.status is not Status.PASS:
            pytest.fail(f"{label or 'boot'}: {evidence.reason}", pytrace=False)


@pytest.fixture
def confirm(request: pytest.FixtureRequest, artifacts: Path) -> Confirm:
    return Confirm(request.node, artifacts)


#: Evidence recorded by ``confirm`` in every test, gathered where reports arrive (the
#: xdist controller, or the only process): pytest carries ``user_properties`` across
#: workers, which ``record_testsuite_property`` does not (pytest #7767).
_COLLECTED: list[dict[str, Any]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when != "call" or not any(k.endswith("status") for k, _ in report.user_properties):
        return
    _COLLECTED.append(
        {
            "nodeid": report.nodeid,
            "outcome": report.outcome,
            "seconds": round(report.duration, 3),
            "properties": [[str(k), str(v)] for k, v in report.user_properties],
        }
    )


def pytest_sessionfinish(session: pytest.Session) -> None:
    if hasattr(session.config, "workerinput") or not _COLLECTED:
        return
    root = Path(str(session.config.getoption("--lab-artifacts"))).resolve() / os.environ[_RUN_ID_ENV]
    root.mkdir(parents=True, exist_ok=True)
    (root / "pytest-evidence.json").write_text(json.dumps(_COLLECTED, indent=2) + "\n")
