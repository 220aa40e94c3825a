"""The whole matrix as a plan: its cells and trains, a name for each, and how to split it.

Why a plan of its own: ``--only`` (re-run one cell), ``--shard K/N`` (spread the matrix
over CI runners) and ``lab merge`` (put the shards back together) all work on the same
list of cells and trains, and must agree on it.  Every cell is named ``NIC/column``
(``e1000/mtftp/debian/pyatftpd``) and every train by its column
(``mtftp/debian/pyatftpd/train4``); a fingerprint of all the names lets ``lab merge``
refuse shards that were not cut from the same plan.
"""

from __future__ import annotations

import fnmatch
import hashlib
from dataclasses import dataclass, field

from lab.model.plan import CellPlan, protocol_plan, with_cell_loss
from lab.model.train_plan import FULL_BOOT_PROTOCOLS, TrainPlan, train_plans
from roms.catalog import CATALOG, DESIGN_NICS
from roms.romset import RomSet

#: Rough seconds each kind of work takes on 2 cores under TCG (measured 2026-12-06: 60 boots
#: in 195 s with 2 at a time; trains from 20 s to 280 s).  Only used to balance shards.
BOOT_SECONDS = {"tftp": 6.0, "tftm": 8.0, "mtftp": 10.0, "x-slam": 6.0}
QUERIER_BOOT_SECONDS = 30.0
TRAIN_SECONDS = 120.0
LOSSY_TRAIN_SECONDS = 170.0
FULL_BOOT_SECONDS = 280.0


def rom_owners() -> list[str]:
    """The first catalog NIC of each ROM file name: the NIC a shipped ROM is *for* (Debian's
    pxe-eepro100.rom is eepro100's, not i82550's, which boots it only retargeted)."""
    owners: dict[str, str] = {}
    for model in CATALOG.values():
        if model.emulated and model.rom_file:
            owners.setdefault(model.rom_file, model.name)
    return list(owners.values())


def select_rows(spec: str, rom_sets: list[RomSet]) -> list[str]:
    """Rows of the matrix: booted NICs first, then the checklist NICs QEMU cannot emulate.

    ``default``: the design NICs, every NIC a ROM set ships a ROM for (Debian: e1000e,
    virtio-net-pci, vmxnet3), the seed list's other emulated drivers (tulip: its cells read
    "no ROM in set" and cost no boot), then the not-emulated rows.  ``design``: the same
    without the shipped-ROM NICs.  ``all``: every catalog NIC.  Or a comma-separated list.
    """
    not_emulated = [m.name for m in CATALOG.values() if not m.emulated]
    if spec == "all":
        return [m.name for m in CATALOG.values() if m.emulated] + not_emulated
    if spec in ("default", "design"):
        owned = [n for n in rom_owners() if any(s.has_rom(CATALOG[n]) for s in rom_sets)]
        shipped = [] if spec == "design" else owned
        covered = {d for name in DESIGN_NICS for d in CATALOG[name].etherboot_drivers}
        seed = [
            m.name
            for m in CATALOG.values()
            if m.emulated and m.etherboot_drivers and not set(m.etherboot_drivers) <= covered
        ]
        return list(dict.fromkeys([*DESIGN_NICS, *shipped, *seed, *not_emulated]))
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in CATALOG]
    if unknown:
        raise ValueError(f"unknown NIC(s) {', '.join(unknown)}; known: {', '.join(sorted(CATALOG))}")
    return names


@dataclass(frozen=True)
class MatrixRequest:
    """What ``lab matrix`` was asked to run (its options, parsed)."""

    nics: tuple[str, ...]
    servers: tuple[str, ...] = ("pyatftpd",)
    protocols: tuple[str, ...] = ("tftp", "tftm", "mtftp", "x-slam")
    sizes: tuple[int, ...] = (1,)
    mcast_size: int = 1024 * 1024
    topologies: tuple[str, ...] = ("flood",)
    querier_protocols: tuple[str, ...] = ()
    trains: tuple[str, ...] = ()
    train_size: int = 6 * 1024 * 1024
    train_nics: tuple[str, ...] = ()
    loss_percent: int = 0
    #: Loss each way on every cell's VM (``--lab-cell-loss``); 0: none.
    cell_loss_percent: int = 0
    legacy_train: bool = False
    #: None: the default full boots (those of FULL_BOOT_PROTOCOLS among ``trains``).
    full_boot: tuple[str, ...] | None = None


def cell_id(cell: CellPlan) -> str:
    return f"{cell.key.nic}/{cell.key.column}"


def matches(name: str, patterns: tuple[str, ...]) -> bool:
    """``name`` (a cell or train id) matches one of the ``--only`` patterns (shell globs)."""
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


@dataclass
class MatrixPlan:
    cells: list[CellPlan] = field(default_factory=list)
    trains: list[TrainPlan] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return [cell_id(c) for c in self.cells] + [t.column for t in self.trains]

    def fingerprint(self) -> str:
        """Names of every cell (with its payload sizes) and train: equal plans, equal prints."""
        parts = [f"{cell_id(c)}:{','.join(str(b.size) for b in c.boots)}" for c in self.cells]
        parts += [f"{t.column}:{t.size}:{','.join(t.nics)}" for t in self.trains]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]

    def boots(self) -> int:
        return sum(len(c.boots) for c in self.cells)

    def select(self, patterns: tuple[str, ...]) -> MatrixPlan:
        """Only the cells and trains whose ids match ``patterns`` (``--only``)."""
        if not patterns:
            return self
        return MatrixPlan(
            [c for c in self.cells if matches(cell_id(c), patterns)],
            [t for t in self.trains if matches(t.column, patterns)],
        )

    def shard(self, index: int, count: int) -> MatrixPlan:
        """Shard ``index`` of ``count`` (1-based): every train stays whole; the work is spread
        by estimated seconds, the longest first, each to the least loaded shard (ties by id),
        so every machine cuts the same shards from the same plan."""
        if not 1 <= index <= count:
            raise ValueError(f"shard {index}/{count}: K must be between 1 and N")
        work: list[tuple[float, str, CellPlan | TrainPlan]] = [
            (cell_cost(c), cell_id(c), c) for c in self.cells
        ]
        work += [(train_cost(t), t.column, t) for t in self.trains]
        loads = [0.0] * count
        mine = MatrixPlan()
        for cost, _name, item in sorted(work, key=lambda w: (-w[0], w[1])):
            target = min(range(count), key=lambda k: (loads[k], k))
            loads[target] += cost
            if target != index - 1:
                continue
            if isinstance(item, TrainPlan):
                mine.trains.append(item)
            else:
                mine.cells.append(item)
        mine.cells.sort(key=self.cells.index)
        mine.trains.sort(key=self.trains.index)
        return mine


def cell_cost(cell: CellPlan) -> float:
    per_boot = (
        QUERIER_BOOT_SECONDS if cell.key.topology != "flood" else BOOT_SECONDS.get(cell.key.protocol, 10.0)
    )
    return sum(per_boot + boot.size / (4 << 20) for boot in cell.boots)


def train_cost(train: TrainPlan) -> float:
    if train.full_boot:
        return FULL_BOOT_SECONDS
    return LOSSY_TRAIN_SECONDS if train.loss_percent else TRAIN_SECONDS


def plan_matrix(request: MatrixRequest, rom_sets: list[RomSet]) -> MatrixPlan:
    """Every cell and train ``request`` asks for, in report order."""
    servers = list(request.servers)
    cells = [
        cell
        for topology in request.topologies
        for cell in protocol_plan(
            list(request.nics),
            rom_sets,
            servers,
            request.protocols,
            request.sizes,
            request.mcast_size,
            topology,
        )
    ]
    if request.querier_protocols and "snoop+querier" not in request.topologies:
        cells += protocol_plan(list(request.nics), rom_sets, servers[:1], request.querier_protocols,
                               request.sizes, request.mcast_size, "snoop+querier")  # fmt: skip
    full_boot = request.full_boot
    if full_boot is None:
        full_boot = tuple(p for p in FULL_BOOT_PROTOCOLS if p in request.trains)
    trains = train_plans(
        request.trains, servers, [s.name for s in rom_sets], request.train_size, request.loss_percent,
        request.legacy_train, request.train_nics, full_boot,
    )  # fmt: skip
    return MatrixPlan(with_cell_loss(cells, request.cell_loss_percent), trains)


#: The ROM sets CI builds from the upstream iPXE archive (`--lab-upstream-sets`, docs/roms.md):
#: as published, and with the one-line RFC 2090 fix.  Both have SLAM.
UPSTREAM_SETS = ("upstream", "upstream-fix")


def upstream_plan(
    nics: tuple[str, ...], rom_sets: list[RomSet], mcast_size: int, train_size: int
) -> MatrixPlan:
    """What CI asks of the upstream sets: every protocol by pyatftpd/pyslamd on every row (one
    payload each: the edge sizes are Debian's columns' job), and the trains that show what
    Debian's ROMs cannot: x-slam on both sets, tftm by multicast on the fixed one.

    Why so few: ``tox`` must stay under 45 minutes with the sets' first build included.
    """
    sets = [s for s in rom_sets if s.name in UPSTREAM_SETS]
    cells = protocol_plan(list(nics), sets, ["pyatftpd"], ("tftp", "tftm", "mtftp", "x-slam"), (mcast_size,),
                          mcast_size)  # fmt: skip
    trains = []
    for rom_set in sets:
        if rom_set.name == "upstream-fix":
            trains.append(TrainPlan("tftm", "pyatftpd", rom_set.name, train_size))
        trains.append(TrainPlan("x-slam", "pyslamd", rom_set.name, train_size))
    return MatrixPlan(cells, trains)


def joined(*plans: MatrixPlan) -> MatrixPlan:
    return MatrixPlan([c for p in plans for c in p.cells], [t for p in plans for t in p.trains])
