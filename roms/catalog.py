"""The NIC models the lab knows: what QEMU emulates, which iPXE driver runs it, which ROM it needs.

The seed's checklist of multicast-capable Etherboot drivers is the mission's scope, so
every one of them has a row here even when QEMU cannot emulate the card: the matrix
shows those as "not emulated" instead of silently dropping them.  Two different
absences are kept apart: ``qemu_device is None`` (QEMU here has no such device) and a
ROM set without ``rom_file`` (see ``roms.romset.RomMissing``, e.g. Debian ships no
tulip ROM).

PCI IDs and iPXE driver names come from the ``PCI_ROM`` tables in iPXE's
``src/drivers/net/*.c`` (checked against 36a4c85, the commit Debian's ROMs were built
from, and current master); the IDs of emulated devices were read from QEMU 7.2 itself
(``info pci``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NicModel:
    """One NIC model.  ``pci_id`` is what QEMU's device (or the real card) reports."""

    name: str
    qemu_device: str | None
    pci_id: str | None
    ipxe_driver: str
    rom_file: str | None
    etherboot_drivers: tuple[str, ...]
    note: str
    #: Other PCI IDs a ROM built for this NIC may carry in its header and still drive it
    #: (same iPXE driver): QEMU's i8255x variants all use the 8086:1229 eepro100 ROM,
    #: the e1000 variants the 8086:100e one, virtio ROMs are built for 1af4:1041.
    compatible_rom_ids: tuple[str, ...] = ()
    bus: str = "pci"

    @property
    def emulated(self) -> bool:
        return self.qemu_device is not None

    def rom_ids(self) -> tuple[str, ...]:
        """Every PCI ID a matching ROM header may carry, the device's own first."""
        own = (self.pci_id,) if self.pci_id else ()
        return own + tuple(i for i in self.compatible_rom_ids if i != self.pci_id)


def _row(
    name: str,
    qemu_device: str | None,
    pci_id: str | None,
    ipxe_driver: str,
    rom_file: str | None,
    etherboot_drivers: tuple[str, ...],
    note: str,
    compatible_rom_ids: tuple[str, ...] = (),
    bus: str = "pci",
) -> tuple[str, NicModel]:
    model = NicModel(
        name, qemu_device, pci_id, ipxe_driver, rom_file, etherboot_drivers, note, compatible_rom_ids, bus
    )
    return name, model


_NOT_EMULATED = "QEMU 7.2 has no emulation of this card"

CATALOG: dict[str, NicModel] = dict(
    [
        # --- the five NICs of the design -------------------------------------------------
        _row("e1000", "e1000", "8086:100e", "intel", "pxe-e1000.rom", (),
             "Intel 82540EM; QEMU's default NIC for the pc machine"),
        _row("rtl8139", "rtl8139", "10ec:8139", "realtek", "pxe-rtl8139.rom", ("rtl8139",),
             "Realtek RTL8139; iPXE merged its rtl8139 driver into realtek.c"),
        _row("pcnet", "pcnet", "1022:2000", "pcnet32", "pxe-pcnet.rom", ("pcnet32",),
             "AMD PCnet-PCI II (Am79C970A)"),
        _row("ne2k_pci", "ne2k_pci", "10ec:8029", "ns8390", "pxe-ne2k_pci.rom", ("ns8390",),
             "Realtek RTL8029 NE2000 clone; iPXE's legacy ns8390 driver also declares ISA ROMs, "
             "so its ROM header carries no PCI ID (0000:0000) and cannot be checked against the NIC"),
        _row("eepro100", "i82557b", "8086:1229", "eepro100", "pxe-eepro100.rom", ("eepro100",),
             "Intel 82557B; QEMU runs the whole i8255x family (i82550 ... i82801) on this one ROM",
             ("8086:1229",)),
        # --- more i8255x variants QEMU emulates (one eepro100 ROM for all) ----------------
        *[
            _row(dev, dev, pid, "eepro100", "pxe-eepro100.rom", ("eepro100",),
                 f"Intel {dev[1:].upper()} (i8255x family, eepro100 ROM)", ("8086:1229",))
            for dev, pid in (
                ("i82550", "8086:1209"), ("i82551", "8086:1209"), ("i82557a", "8086:1229"),
                ("i82557c", "8086:1229"), ("i82558a", "8086:1229"), ("i82558b", "8086:1229"),
                ("i82559a", "8086:1229"), ("i82559b", "8086:1229"), ("i82559c", "8086:1229"),
                ("i82559er", "8086:1209"), ("i82562", "8086:1209"), ("i82801", "8086:2449"),
            )
        ],
        # --- other NICs QEMU 7.2 emulates ------------------------------------------------
        _row("e1000-82544gc", "e1000-82544gc", "8086:100c", "intel", "pxe-e1000.rom", (),
             "Intel 82544GC; QEMU gives every e1000 variant the e1000 ROM", ("8086:100e",)),
        _row("e1000-82545em", "e1000-82545em", "8086:100f", "intel", "pxe-e1000.rom", (),
             "Intel 82545EM; QEMU gives every e1000 variant the e1000 ROM", ("8086:100e",)),
        _row("e1000e", "e1000e", "8086:10d3", "intel", "pxe-e1000e.rom", (),
             "Intel 82574L (PCIe)"),
        _row("virtio-net-pci", "virtio-net-pci", "1af4:1000", "virtio-net", "pxe-virtio.rom", (),
             "transitional virtio-net; iPXE's virtio ROMs are built for the modern ID 1af4:1041",
             ("1af4:1041",)),
        _row("virtio-net-pci-non-transitional", "virtio-net-pci-non-transitional", "1af4:1041",
             "virtio-net", "pxe-virtio.rom", (), "modern-only virtio-net", ("1af4:1000",)),
        _row("vmxnet3", "vmxnet3", "15ad:07b0", "vmxnet3", "pxe-vmxnet3.rom", (),
             "VMware paravirtual NIC v3"),
        _row("tulip", "tulip", "1011:0019", "tulip", "pxe-tulip.rom", ("tulip",),
             "DEC 21143; Debian's ipxe-qemu ships no tulip ROM: needs a ROM set built with it"),
        _row("ne2k_isa", "ne2k_isa", None, "ns8390", None, ("ns8390",),
             "ISA NE2000: an ISA card has no PCI option ROM, so no romfile= can boot it", bus="isa"),
        # --- seed drivers QEMU cannot emulate (kept so the matrix shows them) -------------
        _row("3c509", None, None, "3c509", None, ("3c509",),
             f"3Com EtherLink III, ISA; {_NOT_EMULATED}", bus="isa"),
        _row("3c515", None, None, "3c515", None, ("3c515",),
             f"3Com Fast EtherLink ISAPnP (TCM5051); {_NOT_EMULATED}", bus="isa"),
        _row("3c595", None, "10b7:5950", "3c595", None, ("3c595",),
             f"3Com 3c595 Vortex 100baseTx; {_NOT_EMULATED}"),
        _row("3c90x", None, "10b7:9200", "3c90x", None, ("3c90x",),
             f"3Com 3c905C-TXM; {_NOT_EMULATED}"),
        _row("epic100", None, "10b8:0005", "epic100", None, ("epic100",),
             f"SMC EtherPower II (83c170 EPIC/100); {_NOT_EMULATED}"),
        _row("forcedeth", None, "10de:0066", "forcedeth", None, ("forcedeth",),
             f"NVIDIA nForce2 MCP; {_NOT_EMULATED}"),
        _row("natsemi", None, "100b:0020", "natsemi", None, ("natsemi",),
             f"National Semiconductor DP83815; {_NOT_EMULATED}"),
        _row("ns83820", None, "100b:0022", "natsemi", None, ("ns83820",),
             f"National Semiconductor DP83820; iPXE drives it with natsemi.c; {_NOT_EMULATED}"),
        _row("r8169", None, "10ec:8169", "realtek", None, ("r8169",),
             f"Realtek RTL8169 gigabit; iPXE drives it with realtek.c; {_NOT_EMULATED}"),
        _row("sis900", None, "1039:0900", "sis900", None, ("sis900",),
             f"SiS 900; {_NOT_EMULATED}"),
        _row("sundance", None, "13f0:0201", "sundance", None, ("sundance",),
             f"Sundance ST201 Alta; {_NOT_EMULATED}"),
        _row("tg3", None, "14e4:1644", "tg3", None, ("tg3",),
             f"Broadcom BCM5700 Tigon3; {_NOT_EMULATED}"),
        _row("tlan", None, "0e11:ae32", "tlan", None, ("tlan",),
             f"Compaq Netelligent 10/100 TX (TI ThunderLAN); {_NOT_EMULATED}"),
        _row("via-rhine", None, "1106:3065", "rhine", None, ("via-rhine",),
             f"VIA VT6102 Rhine II; iPXE's driver is rhine.c; {_NOT_EMULATED}"),
        _row("w89c840", None, "1050:0840", "w89c840", None, ("w89c840",),
             f"Winbond W89C840F; {_NOT_EMULATED}"),
    ]
)

#: The design's five NICs, in the order the matrix shows them.
DESIGN_NICS: tuple[str, ...] = ("e1000", "rtl8139", "pcnet", "ne2k_pci", "eepro100")

#: The seed's list of Etherboot drivers with multicast support: the mission's checklist.
SEED_ETHERBOOT_DRIVERS: tuple[str, ...] = (
    "3c509", "3c515", "3c595", "3c90x", "eepro100", "epic100", "forcedeth", "natsemi",
    "ns83820", "ns8390", "pcnet32", "rtl8139", "r8169", "sis900", "sundance", "tg3", "tlan",
    "tulip", "via-rhine", "w89c840",
)


def emulated() -> list[NicModel]:
    """The NIC models QEMU here can run, in catalog order."""
    return [model for model in CATALOG.values() if model.emulated]


def nic(name: str) -> NicModel:
    """Look up a NIC model by name; the error lists the valid names."""
    try:
        return CATALOG[name]
    except KeyError:
        valid = ", ".join(sorted(CATALOG))
        raise KeyError(f"unknown NIC model {name!r}; valid names: {valid}") from None


def covering(etherboot_driver: str) -> list[NicModel]:
    """The catalog rows that stand for one of the seed's Etherboot drivers."""
    return [model for model in CATALOG.values() if etherboot_driver in model.etherboot_drivers]
