"""Can this host run lab VMs at all?  The answer is a reason with its fix, or None.

Why one function: a pytest run skips VM tests with this reason, and ``lab matrix`` stops
with it; both must say the same thing and name the same fix.
"""

from __future__ import annotations

import os
import shutil

from lab.infra.namespace import namespace_support_problem


def vm_support_problem() -> str | None:
    """Why VMs cannot run here (a skip reason with the fix), or None."""
    problem = namespace_support_problem()
    if problem:
        return problem
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is missing; load the tun module (modprobe tun) or pass --device /dev/net/tun"
    for tool, package in (("qemu-system-x86_64", "qemu-system-x86"), ("dnsmasq", "dnsmasq-base")):
        if shutil.which(tool) is None:
            return f"'{tool}' is missing; apt-get install {package}"
    return None
