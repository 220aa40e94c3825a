from pathlib import Path

from lab.scenario import DEFAULT_SIZES, CellKey, unicast_plan
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
