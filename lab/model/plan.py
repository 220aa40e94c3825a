"""What the matrix runs: cells (one column key per NIC row) and the boots that prove them.

Why this shape: a cell is identified by a ``CellKey`` whose fields are the matrix's
axes: NIC row; ROM set, protocol, server, topology and train size as columns.  The
unicast issue fills ``protocol="tftp"``, ``train=1``; the multicast issue adds
protocols, servers, topologies and trains without changing the model.  A cell is
proven by one or more ``BootPlan``s (one VM run each, one payload each, because the
verifier hashes the first multiboot module and then ends QEMU).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from roms.catalog import nic
from roms.romset import RomSet

PROTOCOLS = ("tftp", "tftm", "mtftp", "x-slam")

#: The payload sizes of the unicast matrix: one byte (a single short block), an exact
#: multiple of the 1432-byte block (the transfer ends with an empty block) and a
#: kernel-sized 5 MiB.
DEFAULT_SIZES: tuple[int, ...] = (1, 1432 * 3, 5 * 1024 * 1024)


@dataclass(frozen=True, order=True)
class CellKey:
    nic: str
    rom_set: str
    protocol: str = "tftp"
    server: str = "pyatftpd"
    topology: str = "flood"
    train: int = 1
    #: Percent loss each way on the VM's UDP but DHCP's (``--lab-cell-loss``, lab/run/loss.py).
    loss: int = 0

    @property
    def column(self) -> str:
        """The column a cell lands in (everything but the NIC row)."""
        parts = [self.protocol, self.rom_set, self.server]
        if self.topology != "flood":
            parts.append(self.topology)
        if self.train != 1:
            parts.append(f"train{self.train}")
        if self.loss:
            parts.append(f"loss{self.loss}")
        return "/".join(parts)

    @property
    def slug(self) -> str:
        return f"{self.nic}-{self.column}".replace("/", "-").replace(":", "")


@dataclass(frozen=True)
class BootPlan:
    """One VM boot: a cell key plus the payload this boot fetches and verifies."""

    key: CellKey
    size: int
    seed: int

    @property
    def slug(self) -> str:
        return f"{self.key.slug}-{self.size}B"


@dataclass
class CellPlan:
    """A cell and its boots, or the verdict that says why it cannot run here."""

    key: CellKey
    boots: list[BootPlan] = field(default_factory=list)
    #: Set when the cell cannot run here: ("NOT_EMULATED" | "SKIP", reason).
    verdict: tuple[str, str] | None = None


def unicast_plan(
    nics: list[str],
    rom_sets: list[RomSet],
    server: str,
    sizes: tuple[int, ...] = DEFAULT_SIZES,
    topology: str = "flood",
) -> list[CellPlan]:
    """The unicast TFTP matrix: every NIC x ROM set, every payload size as its own boot."""
    cells = []
    for nic_name in nics:
        model = nic(nic_name)
        for rom_set in rom_sets:
            key = CellKey(model.name, rom_set.name, "tftp", server, topology)
            cell = CellPlan(key)
            if not model.emulated:
                cell.verdict = ("NOT_EMULATED", f"QEMU here has no model of {model.name} ({model.note})")
            elif not rom_set.has_rom(model):
                cell.verdict = ("SKIP", f"no ROM in set {rom_set.name!r} for {model.name}")
            else:
                cell.boots = [BootPlan(key, size, seed=index + 1) for index, size in enumerate(sizes)]
            cells.append(cell)
    return cells


#: One payload per multicast cell: big enough for thousands of group blocks (2048 at
#: MTFTP's 512 bytes), small enough to keep tox -e lab in budget (MTFTP runs lock-step at
#: about 120 KB/s under TCG here; docs/matrix.md).
DEFAULT_MCAST_SIZE = 1024 * 1024

#: The server column of each protocol: x-slam is served by pyslamd, whatever TFTP server runs.
SLAM_SERVER = "pyslamd"


def protocol_plan(
    nics: list[str],
    rom_sets: list[RomSet],
    servers: list[str],
    protocols: tuple[str, ...] = PROTOCOLS,
    sizes: tuple[int, ...] = DEFAULT_SIZES,
    mcast_size: int = DEFAULT_MCAST_SIZE,
    topology: str = "flood",
) -> list[CellPlan]:
    """Every NIC x ROM set x protocol x server: tftp with ``sizes``, the multicast ones with one payload."""
    cells = []
    for protocol in protocols:
        cell_servers = [SLAM_SERVER] if protocol == "x-slam" else servers
        for server in cell_servers:
            protocol_sizes = sizes if protocol == "tftp" else (mcast_size,)
            for cell in unicast_plan(nics, rom_sets, server, protocol_sizes, topology):
                key = CellKey(cell.key.nic, cell.key.rom_set, protocol, server, topology)
                boots = [BootPlan(key, b.size, b.seed) for b in cell.boots]
                cells.append(CellPlan(key, boots, cell.verdict))
    return cells


def with_cell_loss(cells: list[CellPlan], percent: int) -> list[CellPlan]:
    """The same cells with ``percent`` loss on their VMs' taps: new columns (``.../lossN``),
    so a lossy cell never stands in for the clean one in a report or an expectation."""
    if not percent:
        return cells
    out = []
    for cell in cells:
        key = replace(cell.key, loss=percent)
        out.append(CellPlan(key, [BootPlan(key, b.size, b.seed) for b in cell.boots], cell.verdict))
    return out
