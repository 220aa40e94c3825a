from pathlib import Path

from lab.model.plan import DEFAULT_SIZES, CellKey, unicast_plan
from roms.romset import RomSet


def test_unicast_plan_boots_each_size_and_marks_what_cannot_run(tmp_path: Path) -> None:
    (tmp_path / "pxe-e1000.rom").write_bytes(b"\x55\xaa")
    sets = [RomSet("mine", tmp_path)]
    cells = unicast_plan(["e1000", "rtl8139", "tg3"], sets, "pyatftpd")
    by_nic = {c.key.nic: c for c in cells}
    assert [b.size for b in by_nic["e1000"].boots] == list(DEFAULT_SIZES)
    assert by_nic["rtl8139"].verdict is not None and by_nic["rtl8139"].verdict[0] == "SKIP"
    assert "no ROM" in by_nic["rtl8139"].verdict[1]
    assert by_nic["tg3"].verdict is not None and by_nic["tg3"].verdict[0] == "NOT_EMULATED"


def test_sizes_cover_one_byte_an_exact_block_multiple_and_a_kernel() -> None:
    assert DEFAULT_SIZES[0] == 1
    assert DEFAULT_SIZES[1] % 1432 == 0
    assert DEFAULT_SIZES[2] == 5 * 1024 * 1024


def test_cell_columns_grow_with_the_multicast_axes() -> None:
    assert CellKey("e1000", "debian").column == "tftp/debian/pyatftpd"
    key = CellKey("e1000", "fixed", "mtftp", "atftpd", "snoop+querier", 4)
    assert key.column == "mtftp/fixed/atftpd/snoop+querier/train4"
    assert "/" not in key.slug


def test_protocol_plan_covers_every_protocol_and_server_and_slam_has_its_own_server(tmp_path: Path) -> None:
    from lab.model.plan import protocol_plan
    from roms.romset import RomSet

    sets = [RomSet("debian", tmp_path)]
    cells = protocol_plan(["e1000"], sets, ["pyatftpd", "atftpd"], mcast_size=1000)
    columns = {c.key.column for c in cells}
    assert columns == {
        "tftp/debian/pyatftpd", "tftp/debian/atftpd", "tftm/debian/pyatftpd", "tftm/debian/atftpd",
        "mtftp/debian/pyatftpd", "mtftp/debian/atftpd", "x-slam/debian/pyslamd",
    }  # fmt: skip
    querier = protocol_plan(["e1000"], sets, ["pyatftpd"], ("mtftp",), topology="snoop+querier")
    assert [c.key.column for c in querier] == ["mtftp/debian/pyatftpd/snoop+querier"]


def test_train_plans_per_protocol_server_and_one_lossy_train() -> None:
    from lab.model.train_plan import train_plans

    plans = train_plans(("mtftp", "tftm", "x-slam"), ["pyatftpd", "atftpd"], ["debian"], 4096, 5)
    assert [p.column for p in plans] == [
        "mtftp/debian/pyatftpd/train4", "mtftp/debian/atftpd/train4", "tftm/debian/pyatftpd/train4",
        "tftm/debian/atftpd/train4", "x-slam/debian/pyslamd/train4", "mtftp/debian/pyatftpd/train4/loss5",
        "mtftp/debian/pyatftpd/train4-fullboot",
    ]  # fmt: skip
    assert len({n for n in plans[0].nics}) == 4  # four different NIC models
    assert plans[-1].full_boot and plans[-1].nics == plans[0].nics
    legacy = train_plans(("mtftp",), ["pyatftpd"], ["d"], 1, 0, legacy=True, full_boot=())
    assert [p.column for p in legacy] == ["mtftp/d/pyatftpd/train4", "mtftp/d/pyatftpd/train4-legacy"]
    assert {"pcnet", "eepro100"} <= set(legacy[-1].nics)
    without = train_plans(("mtftp",), ["pyatftpd"], ["d"], 1, 0, full_boot=())
    assert [p.column for p in without] == ["mtftp/d/pyatftpd/train4"]
    tftm = train_plans(("tftm",), ["pyatftpd"], ["d"], 1, 0, full_boot=("tftm",))
    assert [p.column for p in tftm] == ["tftm/d/pyatftpd/train4", "tftm/d/pyatftpd/train4-fullboot"]


def test_cell_loss_gives_every_cell_its_own_lossy_column(tmp_path: Path) -> None:
    """A lossy cell must never stand in for the clean one in a report or an expectation."""
    from lab.model.plan import protocol_plan, with_cell_loss

    (tmp_path / "pxe-e1000.rom").write_bytes(b"\x55\xaa")
    clean = protocol_plan(["e1000", "tg3"], [RomSet("debian", tmp_path)], ["pyatftpd"], ("tftp",), (2 << 20,))
    lossy = with_cell_loss(clean, 5)
    assert [c.key.column for c in lossy] == ["tftp/debian/pyatftpd/loss5"] * 2
    assert [b.key.loss for b in lossy[0].boots] == [5] and lossy[0].boots[0].size == 2 << 20
    assert lossy[1].verdict == clean[1].verdict  # tg3 stays NOT_EMULATED
    assert with_cell_loss(clean, 0) == clean
    assert lossy[0].boots[0].slug != clean[0].boots[0].slug  # own artifact folder
