"""Multi-VM trains: several VMs of mixed NICs fetch one payload by multicast, staggered.

Why trains: a single VM proves a protocol works; only several clients joining a
running stream prove what multicast is for (the late ones take blocks they never
asked for) and catch what only happens then (atftpd's MTFTP late joiners printing
``ok`` over zero-filled images, lab-findings.md).  Every claim is a ``TrainCheck``
computed from the guests' verdicts, the server's events and the captures.
"""

from __future__ import annotations

import json
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lab.capture import Capture
from lab.delivery import classify, wire_figures
from lab.evidence import BootEvidence
from lab.loss import LossInjection, add_loss, remove_loss
from lab.session import VERIFIER_NAME, WIRE_CONTEXT, BootRun, Lab
from lab.slam import SLAM_PORT
from lab.status import Status, combine
from lab.topology import BRIDGE, SERVER_IPV4
from lab.train_diagnosis import diagnose, refused_fallback, tap_activity
from lab.wire import Frame, WireSummary, frames_of, read_frames, slam_header, slam_int
from roms.catalog import nic
from roms.romset import RomSet

#: Four QEMU models with four different iPXE drivers (intel, realtek, virtio-net, vmxnet3):
#: the train that checks the *server* with a mixed crowd.
TRAIN_NICS = ("e1000", "rtl8139", "virtio-net-pci", "vmxnet3")
#: The older PCI models (pcnet32, eepro100) behind an e1000 and an rtl8139: the train that
#: checks how those *drivers* cope with a multicast stream they do not drive.  On a 2-core
#: TCG host they have failed it with both servers (docs/matrix.md, "Trains"), while their
#: single-VM cells and 2-VM trains pass; kept so the matrix keeps showing it.
LEGACY_TRAIN_NICS = ("e1000", "rtl8139", "pcnet", "eepro100")
TRAIN_GAP_SECONDS = 0.5
#: Measured here: one stock-ROM client takes MTFTP's 512-byte lock-step blocks at about
#: 120 KB/s under TCG, and four VMs on two cores about half that.  The VMs' requests come
#: up to about 3 s apart (boot-time spread, not the 0.5 s start gap), and everything sent
#: before the last one asked must go out again: with 3 MiB that floor alone reached 1.205 x
#: on a quiet host (the last VM joined at block 1259 of 6145).  6 MiB halves it (about
#: 1.10 x) and keeps tox -e lab within its budget (docs/matrix.md).  --lab-train-size for more.
DEFAULT_TRAIN_SIZE = 6 * 1024 * 1024
GROUP_RATIO_LIMIT = 1.2
#: Protocols of the full-boot trains.  mtftp by default: Debian's ROMs cannot hear RFC 2090
#: groups and have no SLAM, so tftm and x-slam full boots are for ROM sets that can
#: (x-slam runs one pyslamd per file, lab/fullboot_train.py).
FULL_BOOT_PROTOCOLS = ("mtftp",)
FULL_BOOT_CHOICES = ("mtftp", "tftm", "x-slam")
#: Stage timeouts of train VMs for 3 MiB; run_trains scales it with the largest payload.
TRAIN_TIMEOUT_SCALE = 0.75
_TIMEOUT_REFERENCE_SIZE = 3 * 1024 * 1024


@dataclass(frozen=True)
class TrainPlan:
    protocol: str
    server: str
    rom_set: str
    size: int
    nics: tuple[str, ...] = TRAIN_NICS
    gap: float = TRAIN_GAP_SECONDS
    seed: int = 24
    #: Loss in % each way on the last VM's tap (0: none), from its first TFTP request on
    #: (see :func:`_lossy_after_dhcp`).
    loss_percent: int = 0
    #: Names a NIC mix other than TRAIN_NICS in the column ("legacy": LEGACY_TRAIN_NICS).
    label: str = ""
    #: Boot Debian's kernel and the repo's initramfs instead of fetching the verifier and a
    #: payload (lab/fullboot_train.py); ``size`` is then unused.
    full_boot: bool = False

    @property
    def column(self) -> str:
        loss = f"/loss{self.loss_percent}" if self.loss_percent else ""
        label = f"-{self.label}" if self.label else ""
        label += "-fullboot" if self.full_boot else ""
        return f"{self.protocol}/{self.rom_set}/{self.server}/train{len(self.nics)}{label}{loss}"

    @property
    def slug(self) -> str:
        return "train-" + self.column.replace("/", "-")


@dataclass
class TrainCheck:
    name: str
    ok: bool | None  # None: not applicable (said why in detail)
    detail: str


@dataclass
class TrainVm:
    nic: str
    ip: str
    directory: Path
    evidence: BootEvidence
    started_at: float  # seconds after the first VM started
    heard_before_asking: int = 0  # distinct group blocks it received but never asked for
    transfer: tuple[float, float] | None = None  # first/last payload frame on its tap (capture clock)
    diagnosis: str = ""  # for a failed VM: what its tap shows (lab/train_diagnosis.py)


@dataclass
class TrainResult:
    plan: TrainPlan
    status: Status
    outcome: str
    directory: Path
    vms: list[TrainVm] = field(default_factory=list)
    checks: list[TrainCheck] = field(default_factory=list)
    group_bytes: int = 0
    group_ratio: float | None = None
    loss: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    timelines: list[str] = field(default_factory=list)  # PNGs of the session(s), or an error
    #: Full-boot trains: the kernel package, the bytes of kernel + initrd, and the server's
    #: figures per file (``mcast_session_end``).
    full_boot: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "column": self.plan.column,
            "plan": asdict(self.plan),
            "status": self.status.value,
            "outcome": self.outcome,
            "artifacts": str(self.directory),
            "group_bytes": self.group_bytes,
            "group_ratio": None if self.group_ratio is None else round(self.group_ratio, 4),
            "loss": self.loss,
            "reason": self.reason,
            "timelines": self.timelines,
            "full_boot": self.full_boot,
            "checks": [asdict(c) for c in self.checks],
            "vms": [
                {
                    "nic": v.nic,
                    "ip": v.ip,
                    "artifacts": str(v.directory),
                    "started_at": round(v.started_at, 3),
                    "heard_before_asking": v.heard_before_asking,
                    "transfer": v.transfer,
                    "status": v.evidence.status.value,
                    "delivery": v.evidence.delivery,
                    "tap": v.evidence.tap,
                    "reason": v.evidence.reason,
                    "diagnosis": v.diagnosis,
                }
                for v in self.vms
            ],
        }


def train_plans(
    protocols: tuple[str, ...],
    servers: list[str],
    rom_sets: list[str],
    size: int,
    loss_percent: int,
    legacy: bool = False,
    nics: tuple[str, ...] = TRAIN_NICS,
    full_boot: tuple[str, ...] = FULL_BOOT_PROTOCOLS,
) -> list[TrainPlan]:
    """The default trains: each multicast protocol per ROM set and server, one lossy mtftp
    train, (``legacy``) one mtftp train of the older PCI NIC models, and a full boot per
    ``full_boot`` protocol with the first server."""
    plans = []
    for rom_set in rom_sets:
        for protocol in protocols:
            for server in ["pyslamd"] if protocol == "x-slam" else servers:
                plans.append(TrainPlan(protocol, server, rom_set, size, nics=nics))
        if loss_percent and "mtftp" in protocols:
            plans.append(TrainPlan("mtftp", servers[0], rom_set, size, nics=nics, loss_percent=loss_percent))
        if legacy and "mtftp" in protocols:
            old = LEGACY_TRAIN_NICS
            plans.append(TrainPlan("mtftp", servers[0], rom_set, size, nics=old, label="legacy"))
        for protocol in full_boot:
            server = "pyslamd" if protocol == "x-slam" else servers[0]
            plans.append(TrainPlan(protocol, server, rom_set, size, nics=nics, full_boot=True))
    return plans


def run_trains(
    plans: list[TrainPlan], rom_sets: list[RomSet], directory: Path, accel: str, progress: Any = None
) -> list[TrainResult]:
    """Every train in one lab of its own (its own namespace), one train at a time: all cores for 4 VMs."""
    from lab.errors import LabError
    from lab.session import LabConfig

    by_set = {rs.name: rs for rs in rom_sets}
    results: list[TrainResult] = []
    lab: Lab | None = None
    try:
        for index, plan in enumerate(plans):
            where = directory / "trains" / plan.slug
            try:
                if lab is None:
                    # The payload stage waits 135 s per 3 MiB: a healthy 3 MiB train VM is done
                    # in about 70 s here, while a VM stuck listening in MTFTP (iPXE ignores
                    # failures in MTFTP mode) holds its train for the whole wait.
                    largest = max(p.size for p in plans)
                    scale = TRAIN_TIMEOUT_SCALE * max(1.0, largest / _TIMEOUT_REFERENCE_SIZE)
                    config = LabConfig(
                        directory / "labs" / "trains", index=7, accel=accel, capture=False,
                        timeout_scale=scale,
                    )
                    lab = Lab(config)
                    lab.__enter__()
                if plan.full_boot:
                    from lab.fullboot_train import run_fullboot_train

                    result = run_fullboot_train(lab, by_set[plan.rom_set], plan, where)
                else:
                    result = run_train(lab, by_set[plan.rom_set], plan, where)
            except (LabError, OSError, RuntimeError, ValueError) as exc:
                result = TrainResult(plan, Status.ERROR, "error", where, reason=f"the lab broke: {exc}")
                if lab is not None:
                    lab.close()
                lab = None
            results.append(result)
            if progress is not None:
                progress(index + 1, len(plans), result)
    finally:
        if lab is not None:
            lab.close()
    return results


def run_train(lab: Lab, rom_set: RomSet, plan: TrainPlan, directory: Path) -> TrainResult:
    """Boot ``plan.nics`` ``plan.gap`` s apart against ``lab``, capture br0 and every tap, check."""
    directory.mkdir(parents=True, exist_ok=True)
    kind = plan.server if plan.server in ("pyatftpd", "atftpd") else "pyatftpd"
    if lab.tftp is None or lab.tftp.kind != kind:
        lab.start_tftp(kind)
    name, _ = lab.payload(plan.size, plan.seed)
    lab.prepare(plan.protocol, name, train_vms=len(plan.nics))
    events_mark = len(lab.tftp.events()) if lab.tftp else 0
    slots = [lab.reserve() for _ in plan.nics]
    taps = [s.tap for s in slots]
    loss: LossInjection | None = None
    runs: list[BootRun] = []
    starts: list[float] = []
    with Capture(
        lab.ns, [BRIDGE, *taps], directory / "wire", method="af_packet", context=WIRE_CONTEXT
    ) as cap:
        lossy = len(taps) - 1
        stop_watch = threading.Event()
        injected: list[LossInjection] = []
        watcher: threading.Thread | None = None
        if plan.loss_percent:
            watcher = threading.Thread(
                target=_lossy_after_dhcp,
                args=(
                    lab, taps[lossy], slots[lossy].ipv4, plan.loss_percent, events_mark, stop_watch, injected
                ),
                daemon=True,
            )
            watcher.start()
        t0 = time.monotonic()
        for index, (nic_name, slot) in enumerate(zip(plan.nics, slots, strict=True)):
            if index:
                time.sleep(max(0.0, t0 + index * plan.gap - time.monotonic()))
            starts.append(time.monotonic() - t0)
            runs.append(
                lab.launch(
                    nic(nic_name),
                    rom_set,
                    plan.size,
                    plan.seed,
                    directory / f"vm{index}-{nic_name}",
                    protocol=plan.protocol,
                    capture=False,
                    slot=slot,
                )
            )
        evidences: list[BootEvidence | None] = [None] * len(runs)

        def finish(i: int) -> None:
            evidences[i] = runs[i].finish()

        threads = [threading.Thread(target=finish, args=(i,)) for i in range(len(runs))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stop_watch.set()
        if watcher is not None:
            watcher.join(timeout=30)
        loss = injected[0] if injected else None
        if loss is not None:
            remove_loss(lab.ns, loss)
    result = cap.result
    server_events = lab.tftp.events()[events_mark:] if lab.tftp else []
    (directory / "server.events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in server_events))
    if plan.protocol == "x-slam" and lab.slam is not None:
        server_events = server_events + lab.slam.events()
    vms: list[TrainVm] = []
    for index, run in enumerate(runs):
        evidence = evidences[index] or run.evidence
        ip = slots[index].ipv4
        summary = result.summaries.get(slots[index].tap) if result else None
        pcap = result.files.get(slots[index].tap) if result else None
        vm = TrainVm(plan.nics[index], ip, run.directory, evidence, starts[index])
        if summary is not None:
            drops = int(
                (result.stats.get(slots[index].tap, {}) if result else {}).get("kernel_drops", 0) or 0
            )
            figures = wire_figures(summary, ip, run.other_unicast_bytes, drops)
            said_ok = any(s.name == "payload" and s.status is Status.PASS for s in evidence.stages)
            mine = [e for e in server_events if str(e.get("client", "")).rsplit(":", 1)[0] == ip]
            delivery = classify(
                plan.protocol, evidence.status, plan.size, mine, figures, said_ok, evidence.failed_stage
            )
            evidence.delivery = delivery.to_json()
            evidence.files["train_wire"] = str(pcap)
            evidence.write(run.directory / "evidence.json")
        if pcap is not None and pcap.exists():
            frames = list(read_frames(pcap))  # read once for both readers
            vm.heard_before_asking, vm.transfer = stream_timeline(frames, ip, name)
            vm.diagnosis = diagnose(evidence, tap_activity(frames, ip), vm.transfer is not None)
        if evidence.status is not Status.PASS:
            vm.diagnosis = refused_fallback(server_events, ip) or vm.diagnosis
        vms.append(vm)
    train = TrainResult(plan, Status.MISS, "", directory, vms)
    if loss is not None:
        train.loss = {
            "tap": taps[lossy],
            "vm": lossy,
            "percent": plan.loss_percent,
            "from": "the VM's first TFTP request (after its DHCP)",
            "method": loss.method,
            "ingress_method": loss.ingress_method,
        }
    bridge = result.summaries.get(BRIDGE) if result else None
    judge(train, server_events, bridge)
    train.timelines = draw_train_timelines(directory)
    (directory / "train.json").write_text(json.dumps(train.to_json(), indent=1) + "\n")
    return train


def mark_unsupported(train: TrainResult, statuses: Sequence[Status]) -> bool:
    """Every VM's ROM lacks the protocol: the train is UNSUPPORTED and judged no further."""
    if not all(s is Status.UNSUPPORTED for s in statuses):
        return False
    train.status, train.outcome = Status.UNSUPPORTED, "unsupported"
    train.reason = "every ROM's Features: line lacks the protocol"
    return True


def late_join_check(joins: list[dict[str, Any]]) -> TrainCheck:
    """Did VMs join a session another VM had opened (pyatftpd's ``mcast_join`` events)?

    A held session (``--mcast-min-clients``) has no stream yet when its VMs join, so
    their joins say ``held``, not ``late``; every one after a session's first came late
    all the same.
    """
    late = sum(1 for e in joins if e.get("late"))
    held = [e for e in joins if e.get("held")]
    held_late = len(held) - len({e.get("session") for e in held})
    return TrainCheck(
        "late joins in the server's events",
        late + held_late > 0,
        f"{late} of {len(joins)} mcast_join events have late=true"
        + (f"; {held_late} joined a held session after its first client" if held else ""),
    )


def judge(train: TrainResult, server_events: list[dict[str, Any]], bridge: WireSummary | None) -> None:
    """The train's checks, status and outcome from its VMs' evidence, the events and the bridge capture."""
    plan, vms = train.plan, train.vms
    statuses = [v.evidence.status for v in vms]
    outcomes = [str(v.evidence.delivery.get("outcome", "")) for v in vms]
    if bridge is not None:
        train.group_bytes = bridge.group_bytes()
        train.group_ratio = bridge.group_ratio(plan.size)
    if mark_unsupported(train, statuses):
        return
    checks = train.checks
    checks.append(
        TrainCheck(
            "every VM verified the bytes",
            all(s is Status.PASS for s in statuses),
            ", ".join(_verdict(v) for v in vms),
        )
    )
    corrupt = [v.nic for v, o in zip(vms, outcomes, strict=True) if o == "ok-but-corrupt"]
    checks.append(
        TrainCheck(
            "no VM reported ok for bytes that fail verification",
            not corrupt,
            f"iPXE printed ok but the guest's SHA-256 differs on: {', '.join(corrupt)}"
            if corrupt
            else "none",
        )
    )
    clients = {str(e.get("client", "")).rsplit(":", 1)[0] for e in server_events}
    missing = [v.nic for v in vms if v.ip not in clients]
    checks.append(
        TrainCheck(
            "every VM appears in the server's events",
            not missing,
            f"absent: {', '.join(f'{v.nic} ({v.ip})' for v in vms if v.nic in missing)}"
            if missing
            else f"{len(vms)} clients in {len(server_events)} events",
        )
    )
    spans = [v.transfer for v in vms if v.transfer is not None]
    if len(spans) == len(vms):
        overlap = min(end for _, end in spans) - max(start for start, _ in spans)
        checks.append(
            TrainCheck(
                "the transfers overlap (taps' first/last payload frames)",
                overlap > 0,
                f"all {len(vms)} transfers ran at once for {overlap:.1f} s",
            )
        )
    else:
        checks.append(
            TrainCheck(
                "the transfers overlap (taps' first/last payload frames)",
                False,
                "a VM's tap shows no payload transfer",
            )
        )
    joins = [e for e in server_events if e.get("event") == "mcast_join"]
    if joins:
        checks.append(late_join_check(joins))
    fallback = all(o == "unicast-fallback" for o in outcomes)
    # Late = every VM but the first to start its payload transfer (by the wire, not by boot order).
    first = min(
        (v for v in vms if v.transfer is not None),
        key=lambda v: v.transfer[0] if v.transfer else 0.0,
        default=None,
    )
    late_vms = [v for v in vms if v is not first]
    if fallback:
        checks.append(
            TrainCheck(
                "late VMs took blocks from the running stream",
                None,
                "not applicable: every VM fell back to unicast (it cannot hear the group)",
            )
        )
    else:
        took = [v for v in late_vms if v.heard_before_asking > 0]
        checks.append(
            TrainCheck(
                "late VMs took blocks from the running stream",
                len(took) == len(late_vms),
                ", ".join(
                    f"{v.nic}: {v.heard_before_asking} group blocks it never asked for" for v in late_vms
                ),
            )
        )
    if fallback:
        checks.append(
            TrainCheck(
                f"group bytes <= {GROUP_RATIO_LIMIT} x payload",
                None,
                f"not applicable (fallback); {train.group_bytes} B on the group"
                + ("" if train.group_ratio is None else f" = {train.group_ratio:.3f} x payload"),
            )
        )
    elif train.group_ratio is None:
        checks.append(TrainCheck(f"group bytes <= {GROUP_RATIO_LIMIT} x payload", False, "no bridge capture"))
    else:
        checks.append(
            TrainCheck(
                f"group bytes <= {GROUP_RATIO_LIMIT} x payload",
                train.group_ratio <= GROUP_RATIO_LIMIT,
                f"{train.group_bytes} B = {train.group_ratio:.3f} x the {plan.size} B payload "
                "(bridge capture)",
            )
        )
    if any(s in (Status.ERROR, Status.MISS) for s in statuses) and not any(
        s is Status.FAIL for s in statuses
    ):
        train.status = combine(statuses)
    else:
        train.status = Status.PASS if all(c.ok is not False for c in checks) else Status.FAIL
    if corrupt:
        train.outcome = "ok-but-corrupt"
    elif train.status is Status.PASS:
        train.outcome = "unicast-fallback" if fallback else "multicast"
    else:
        train.outcome = "failed" if train.status is Status.FAIL else train.status.value.lower()
    failed = [c for c in checks if c.ok is False]
    train.reason = "; ".join(f"{c.name}: {c.detail}" for c in failed)


def _lossy_after_dhcp(
    lab: Lab, tap: str, ip: str, percent: int, mark: int, stop: threading.Event, out: list[LossInjection]
) -> None:
    """Loss on ``tap`` from the moment its VM first asks the TFTP server for anything.

    Why not from boot: with 5 % loss each way from power-on, the VM's DHCP exchange lost
    packets and waited out iPXE's DHCP timers, so it asked for the payload 15 s after the
    others (block 3884 of 12289) and any MTFTP server had to send a third of the file
    again (1.397 x measured): a figure about DHCP, not about multicast delivery.  Why not
    from its payload request (tried): a lossy VM that happens to ask first is the master
    for the whole pass, and every lost DATA or ACK then stalls all four VMs on a timer
    (the train ran out of time at 270 s).  So the lossy VM starts last and its loss
    starts at its boot-script request: its verifier and payload travel with loss.
    """
    while not stop.is_set():
        events = lab.tftp.events()[mark:] if lab.tftp else []
        if any(str(e.get("client", "")).rsplit(":", 1)[0] == ip for e in events):
            out.append(add_loss(lab.ns, tap, percent))
            return
        stop.wait(0.05)


def draw_train_timelines(directory: Path) -> list[str]:
    """The train's session(s) from the server's events and the bridge capture (docs/timeline.md)."""
    from lab.timeline import draw_pictures

    pictures, error = draw_pictures(directory)
    return [error] if error is not None else [str(p) for p in pictures]


def _verdict(vm: TrainVm) -> str:
    return f"{vm.nic}={vm.evidence.status.value}" + (f" ({vm.diagnosis})" if vm.diagnosis else "")


def stream_timeline(
    pcap: Path | Sequence[Frame], client_ip: str, payload_name: str, listen_after: str = VERIFIER_NAME
) -> tuple[int, tuple[float, float] | None]:
    """From a VM's tap: group blocks it received but never asked for, and its transfer span.

    TFTP: a client asks for block 1 with its RRQ and for block n+1 with each ACK n (iPXE's
    ACK is cumulative: its first gap).  Group DATA blocks it received after its RRQ
    for ``payload_name`` that are not among those were requested by another client:
    it took them from the running stream.  The span runs from that RRQ to the last
    payload frame (group DATA or ACK).

    SLAM: a client asks for the blocks its NACKs list (skip/send runs from block 0).  A
    client that joins a running stream may never NACK at all (it hears every block it
    lacks), so its span starts with the first SLAM DATA after the fetch of the file named
    like ``listen_after`` (the verifier; the boot script for a full boot) ended.

    A client that never asked (stuck before its fetch) took nothing, whatever was flooded
    to its tap.
    """
    start: float | None = None
    last: float | None = None
    asked: set[int] = set()
    received: list[tuple[float, int]] = []
    slam_received: list[tuple[float, int]] = []
    verifier_asked = False
    verifier_done: float | None = None
    for frame in frames_of(pcap):
        l3 = frame.l3
        if frame.ethertype != 0x0800 or len(l3) < 20 or l3[9] != 17:
            continue
        ihl = (l3[0] & 0x0F) * 4
        src, dst = _ip(l3[12:16]), _ip(l3[16:20])
        udp = l3[ihl:]
        if len(udp) < 9:
            continue
        sport, dport = struct.unpack_from("!HH", udp, 0)
        body = udp[8:]
        if src == client_ip and dst == SERVER_IPV4 and dport == SLAM_PORT:
            if body[:1] != b"\0":  # b"\0" alone is the disconnect
                start = frame.ts if start is None else start
                asked |= slam_nack_blocks(body)
            last = frame.ts
            continue
        if src == SERVER_IPV4 and 224 <= l3[16] <= 239 and SLAM_PORT in (sport, dport) and body[:1] != b"\0":
            try:
                (_transaction, _total, _size, packet), _ = slam_header(body, 4)
            except ValueError:
                continue
            slam_received.append((frame.ts, packet))
            continue
        if len(body) < 4:
            continue
        opcode = struct.unpack_from("!H", body, 0)[0]
        if src == client_ip and dst == SERVER_IPV4:
            if opcode == 1 and payload_name.encode() in body:
                start = frame.ts if start is None else start
                asked.add(1)
            elif opcode == 1 and listen_after.encode() in body:
                verifier_asked = True
            elif opcode == 4 and start is not None:
                asked.add((struct.unpack_from("!H", body, 2)[0] + 1) & 0xFFFF)
                last = frame.ts
            elif opcode == 4 and verifier_asked:
                verifier_done = frame.ts
        elif src == SERVER_IPV4 and 224 <= l3[16] <= 239 and opcode == 3:
            received.append((frame.ts, struct.unpack_from("!H", body, 2)[0]))
            last = frame.ts
    if slam_received:
        if start is None and verifier_done is not None:
            start = next((ts for ts, _ in slam_received if ts > verifier_done), None)
        received = slam_received
        if start is not None:
            heard_last = max((ts for ts, _ in slam_received if ts >= start), default=start)
            last = heard_last if last is None else max(last, heard_last)
    if start is None:
        # It never asked for the payload (stuck before its fetch): frames flooded to its tap
        # are not blocks it took.
        return 0, None
    never_asked = {block for ts, block in received if ts >= start and block not in asked}
    return len(never_asked), (start, last if last is not None else start)


def slam_nack_blocks(body: bytes, limit: int = 1 << 17) -> set[int]:
    """The blocks a SLAM NACK asks for: alternating (skip, send) run lengths from block 0."""
    blocks: set[int] = set()
    position, block, sending = 0, 0, False
    while len(blocks) < limit:
        try:
            run, position = slam_int(body, position)
        except ValueError:
            break  # the terminating NUL (or garbage) ends the list
        if sending:
            blocks.update(range(block, block + min(run, limit - len(blocks))))
        block += run
        sending = not sending
    return blocks


def _ip(raw: bytes) -> str:
    return ".".join(str(b) for b in raw)
