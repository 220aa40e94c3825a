"""iPXE's own error line, from consoles as the lab's VMs printed them."""

from __future__ import annotations

from lab.judge.ipxe_error import ipxe_error

PROGRESS = "  0%\b\b\b\b    \b\b\b\b" * 3
#: e1000/tftm/debian/atftpd: the progress redrawn, then the error wrapped at 80 columns.
TFTM_TIMEOUT = (
    "LAB kernel-fetched\n"
    f"tftm://192.0.2.1/payload-1048576-1.bin...{PROGRESS} Connection timed out (http://ipxe.org/\n"
    "4c126035)\nLAB fetch-failed\n"
)


def test_the_words_before_a_wrapped_code_without_the_progress_redraws() -> None:
    error = ipxe_error(TFTM_TIMEOUT)
    assert error is not None
    assert error.line == "Connection timed out (http://ipxe.org/4c126035)"
    assert (error.code, error.words, error.printed) == ("4c126035", "Connection timed out", True)


def test_the_last_error_of_a_console_wins() -> None:
    console = (
        "tftp://192.0.2.1/a... No such file or directory (http://ipxe.org/2d12603b)\n"
        "mtftp://192.0.2.1/b... Operation not supported (http://ipxe.org/3c092003)\n"
    )
    error = ipxe_error(console)
    assert error is not None and error.words == "Operation not supported" and error.code == "3c092003"


def test_a_code_printed_without_words_is_put_into_words_from_its_top_byte() -> None:
    error = ipxe_error("x-slam://192.0.2.1... Error 0x4c0a6035 (http://ipxe.org/4c0a6035)\n")
    assert error is not None
    assert error.printed is False
    assert error.words == "Connection timed out"
    assert error.line == "http://ipxe.org/4c0a6035"


def test_a_console_without_an_error_has_none() -> None:
    assert ipxe_error("tftp://192.0.2.1/verifier.elf... ok\nLAB fetched\n") is None


def test_the_boot_scripts_own_exit_status_does_not_hide_the_cause() -> None:
    """After a failed fetch the script exits 1, and iPXE prints that too if the VM lives on."""
    console = (
        "tftm://192.0.2.1/payload.bin... Connection timed out (http://ipxe.org/4c126035)\n"
        "LAB fetch-failed\n"
        "Could not boot image: Error 0x00000001 (http://ipxe.org/00000001)\n"
    )
    error = ipxe_error(console)
    assert error is not None and error.words == "Connection timed out" and error.code == "4c126035"
    alone = ipxe_error("Could not boot image: Error 0x00000001 (http://ipxe.org/00000001)\n")
    assert alone is not None and alone.code == "00000001"
