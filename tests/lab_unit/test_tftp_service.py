from pathlib import Path

import pytest

from lab.infra.tftp_service import TftpSpec, events_from_atftpd_log, tftp_argv


def _spec(kind: str) -> TftpSpec:
    return TftpSpec(kind, Path("/root"), Path("/a/log"), Path("/a/events.jsonl"))


def test_pyatftpd_runs_from_its_atftpd_compatible_cli_with_events() -> None:
    argv = tftp_argv(_spec("pyatftpd"))
    assert argv[0].endswith("pyatftpd")
    joined = " ".join(argv)
    assert "--daemon --no-fork --port 69 --bind-address 192.0.2.1" in joined
    assert "--events /a/events.jsonl" in joined and argv[-1] == "/root"


def test_atftpd_keeps_root_inside_the_user_namespace() -> None:
    argv = tftp_argv(_spec("atftpd"))
    assert argv[argv.index("--user") + 1] == "root.root"
    assert "--events" not in argv


def test_unknown_server_is_refused() -> None:
    with pytest.raises(ValueError, match="pyatftpd"):
        tftp_argv(_spec("tftpd-hpa"))


def test_atftpd_log_lines_become_request_events() -> None:
    log = "Nov 27 vm atftpd[12.1]: Serving payload-1-1.bin to 192.0.2.100:2070\nother line\n"
    assert events_from_atftpd_log(log) == [
        {"server": "atftpd", "event": "request", "file": "payload-1-1.bin", "client": "192.0.2.100:2070"}
    ]


def test_a_train_holds_pyatftpd_sessions_and_atftpd_has_no_such_option() -> None:
    spec = TftpSpec("pyatftpd", Path("/root"), Path("/a/log"), Path("/a/events.jsonl"), mcast_min_clients=4)
    argv = tftp_argv(spec)
    assert argv[argv.index("--mcast-min-clients") + 1] == "4" and "--mcast-max-wait" in argv
    assert "--mcast-min-clients" not in tftp_argv(_spec("pyatftpd"))
    atftpd = TftpSpec("atftpd", Path("/root"), Path("/a/log"), Path("/a/events.jsonl"), mcast_min_clients=4)
    assert "--mcast-min-clients" not in tftp_argv(atftpd)


def test_the_users_pyatftpd_options_come_before_the_folder() -> None:
    """--lab-pyatftpd-arg=--mcast-window=8 reaches pyatftpd; the folder stays its last argument."""
    from dataclasses import replace

    argv = tftp_argv(replace(_spec("pyatftpd"), extra_args=("--mcast-window=8",)))
    assert argv[-2:] == ["--mcast-window=8", str(_spec("pyatftpd").root)]
