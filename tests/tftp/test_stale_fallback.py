"""The rule that refuses iPXE's stale MTFTP fallback (netboot/tftp/stale_fallback.py)."""

from __future__ import annotations

import pytest

from netboot.tftp.stale_fallback import (
    MEMBER_QUIET_MAX,
    QUIET_MAX,
    QUIET_MIN,
    GroupStream,
    other_file_reason,
    stale_fallback_reason,
)

STREAM = GroupStream(last_group_send=100.0, finished_ips=frozenset({"192.0.2.10"}),
                     unfinished_ips=frozenset({"192.0.2.11"}))


def test_no_session_of_the_file_means_a_genuine_fetch() -> None:
    assert stale_fallback_reason(None, "192.0.2.12", 5.0) is None


@pytest.mark.parametrize("quiet", [QUIET_MIN, 0.25, 0.3, QUIET_MAX])
def test_a_stranger_just_after_the_group_went_quiet_is_a_listener(quiet: float) -> None:
    reason = stale_fallback_reason(STREAM, "192.0.2.12", 100.0 + quiet)
    assert reason is not None and "never heard" in reason


@pytest.mark.parametrize("quiet", [0.0, 0.05, QUIET_MAX + 0.1, 30.0])
def test_a_stranger_while_the_stream_flows_or_long_after_is_served(quiet: float) -> None:
    assert stale_fallback_reason(STREAM, "192.0.2.12", 100.0 + quiet) is None


def test_a_client_that_finished_the_file_is_served_at_once() -> None:
    assert stale_fallback_reason(STREAM, "192.0.2.10", 100.3) is None


@pytest.mark.parametrize("quiet", [0.0, 0.3, QUIET_MAX, 4.0, MEMBER_QUIET_MAX])
def test_an_unfinished_member_is_refused_just_after_the_stream(quiet: float) -> None:
    reason = stale_fallback_reason(STREAM, "192.0.2.11", 100.0 + quiet)
    assert reason is not None and "has not finished" in reason


def test_an_unfinished_member_is_refused_while_its_session_runs() -> None:
    running = GroupStream(100.0, frozenset(), frozenset({"192.0.2.11"}), running=True)
    assert stale_fallback_reason(running, "192.0.2.11", 160.0) is not None


def test_an_unfinished_member_long_after_an_ended_session_is_served() -> None:
    """Say an admin fetches by tftp:// a minute after a failed MTFTP boot; past iPXE's
    15.75 s give-up no listener of the session can still be waiting."""
    assert stale_fallback_reason(STREAM, "192.0.2.11", 100.0 + MEMBER_QUIET_MAX + 0.1) is None
    assert stale_fallback_reason(STREAM, "192.0.2.11", 160.0) is None


def test_a_session_that_never_sent_to_the_group_refuses_no_stranger() -> None:
    quiet = GroupStream(-1.0, frozenset(), frozenset({"192.0.2.11"}))
    assert stale_fallback_reason(quiet, "192.0.2.12", 0.3) is None


def test_a_stranger_just_after_another_file_s_stream_on_the_group_is_a_listener_locked_onto_it() -> None:
    """iPXE's one MTFTP group: a client opening the payload while the kernel streams may
    take the kernel's stream for its own and fall back when it stops (docs/multicast.md)."""
    kernel = GroupStream(100.0, frozenset({"192.0.2.10"}), frozenset({"192.0.2.11"}))
    found = other_file_reason([("kernel", kernel)], "192.0.2.12", 100.3)
    assert found is not None and found[0] is kernel
    assert "'kernel'" in found[1] and "never heard" in found[1]
    # its own members ask for the kernel themselves, and outside the window it is a real fetch
    assert other_file_reason([("kernel", kernel)], "192.0.2.10", 100.3) is None
    assert other_file_reason([("kernel", kernel)], "192.0.2.11", 100.3) is None
    assert other_file_reason([("kernel", kernel)], "192.0.2.12", 100.0 + QUIET_MAX + 0.1) is None
    assert other_file_reason([("kernel", kernel)], "192.0.2.12", 100.05) is None
    assert other_file_reason([], "192.0.2.12", 100.3) is None
