"""Without namespaces or /dev/net/tun, VM tests are skipped with the fix: never failed or passed."""

import pytest

import lab.pytest_plugin as plugin


def test_missing_tun_device_skips_with_reason_and_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugin, "vm_support_problem", lambda: "/dev/net/tun is missing; load the tun module")
    with pytest.raises(pytest.skip.Exception, match="tun module"):
        plugin.require_vm_support()


def test_vm_support_reports_missing_namespaces(monkeypatch: pytest.MonkeyPatch) -> None:
    import lab.infra.host as session

    reason = "user namespaces are not allowed; sysctl"
    monkeypatch.setattr(session, "namespace_support_problem", lambda: reason)
    assert session.vm_support_problem() == reason


def test_no_problem_means_no_skip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugin, "vm_support_problem", lambda: None)
    plugin.require_vm_support()
