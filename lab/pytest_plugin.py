"""The lab's pytest plugin: options, markers and fixtures shared by all tests.

Registered from the root ``conftest.py``.  The VM fixtures (``lab``, ``dhcp``,
``tftp_server``, ``vm``, ``artifacts``, ``confirm``) live here; see docs/lab.md.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lab.netns import Namespace, NamespaceUnavailable, namespace_support_problem


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
