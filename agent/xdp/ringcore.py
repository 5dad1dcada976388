"""Typed facade over the native ring core (agent.xdp._ringcore).

Python only creates, configures and reads the core; packets never cross into the interpreter.
Every C call returns 0 or -errno, turned here into NativeError with a message that names the
object and, where one exists, the remedy.
"""

from __future__ import annotations

import enum
import importlib
import os
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from agent.errors import check
from agent.xdp.cvalues import be32, from_be32, mac_bytes

# RINGLANE_SANITIZED_CORE=1 loads the ASan/UBSan build (agent/xdp/_build.py ..._asan), which
# only the test suite builds and runs, in agents started with libasan preloaded.
_native = importlib.import_module(
    "agent.xdp._ringcore_asan" if os.environ.get("RINGLANE_SANITIZED_CORE") == "1"
    else "agent.xdp._ringcore"
)
ffi: Any = _native.ffi
lib: Any = _native.lib


def _enum_from_lib(name: str, prefix: str, last: str) -> Any:
    """An IntEnum of the C enum whose members start with `prefix` (values read from lib)."""
    members = {
        n[len(prefix):].lower(): getattr(lib, n)
        for n in dir(lib)
        if n.startswith(prefix) and n != last
    }
    return enum.IntEnum(name, members)


#: Why the ring core dropped a packet (enum rl_drop_reason in abi.h).
DropReason = _enum_from_lib("DropReason", "RL_DROP_", "RL_DROP_MAX")

_COUNTER_FIELDS = [f for f, _ in ffi.typeof("struct rl_counters").fields if f != "drops"]
_KSTAT_FIELDS = [f for f, _ in ffi.typeof("struct rl_kstats").fields]
_PROBE_FIELDS = [f for f, _ in ffi.typeof("struct rl_probe_counters").fields]

#: RingCore(probe_interval_ms=PROBES_OFF): send no link probes (the core still answers).
PROBES_OFF: int = lib.RL_PROBE_OFF


@dataclass(frozen=True)
class Counters:
    """What a worker or one socket did: packets, bytes, encap/decap, drops by reason."""

    values: dict[str, int]
    drops: dict[str, int]

    @classmethod
    def from_c(cls, c: Any) -> Counters:
        drops = {r.name: int(c.drops[r.value]) for r in DropReason if c.drops[r.value]}
        return cls({f: int(getattr(c, f)) for f in _COUNTER_FIELDS}, drops)

    def __getitem__(self, name: str) -> int:
        return self.values[name]

    @property
    def dropped(self) -> int:
        return sum(self.drops.values())


@dataclass(frozen=True)
class SocketStats:
    """One AF_XDP socket: our counters, the kernel's XDP_STATISTICS, its bind mode and how
    many entries each of its rings (rx, tx, fill, comp) held at the snapshot."""

    counters: Counters
    kernel: dict[str, int]
    zero_copy: bool
    frames_owned: int
    rings: dict[str, int]

    @classmethod
    def from_c(cls, s: Any) -> SocketStats:
        return cls(
            Counters.from_c(s.counters),
            {f: int(getattr(s.kernel, f)) for f in _KSTAT_FIELDS},
            bool(s.zero_copy),
            int(s.frames_owned),
            {r: int(getattr(s, f"{r}_entries")) for r in ("rx", "tx", "fill", "comp")},
        )

    @property
    def bind_mode(self) -> str:
        return "zero-copy" if self.zero_copy else "copy"


@dataclass(frozen=True)
class CoreStats:
    """A consistent snapshot of a core, taken by its worker between two batches."""

    worker: Counters
    underlay: SocketStats
    frames_total: int
    frames_free: int
    frames_worker: int
    frames_sockets: int
    bad_frees: int
    n_endpoints: int
    hugepages: bool
    running: bool
    loops: int
    sleeps: int
    #: link probe counters (struct rl_probe_counters): probes_sent, probe_replies, ...
    probe: dict[str, int] = field(default_factory=dict)
    endpoints: dict[int, SocketStats] = field(default_factory=dict)


@dataclass(frozen=True)
class LinkStat:
    """One remote node's overlay link as this core's probes measure it.

    sent/received/lost/late count since the node got its first route here. RTTs and jitter
    are in microseconds, 0.0 until the first reply (received == 0); min and max since the
    first reply, avg an EWMA of gain 1/8, jitter RFC 3550's smoothed |RTT difference|.
    `loss` is the share of the last `window` decided probes (at most RL_PROBE_WINDOW) that got
    no reply before their deadline; 0.0 while nothing is decided yet (window 0).
    """

    node_ip: IPv4Address
    sent: int
    received: int
    lost: int
    late: int
    window: int
    lost_window: int
    loss: float
    rtt_last_us: float
    rtt_min_us: float
    rtt_avg_us: float
    rtt_max_us: float
    jitter_us: float
    last_reply_age_s: float | None

    @classmethod
    def from_c(cls, s: Any, now_ns: int) -> LinkStat:
        last_reply = int(s.last_reply_ns)
        return cls(
            node_ip=from_be32(s.node_ip),
            sent=int(s.sent),
            received=int(s.received),
            lost=int(s.lost),
            late=int(s.late),
            window=int(s.window),
            lost_window=int(s.lost_window),
            loss=int(s.loss_window_ppm) / 1e6,
            rtt_last_us=int(s.rtt_last_ns) / 1e3,
            rtt_min_us=int(s.rtt_min_ns) / 1e3,
            rtt_avg_us=int(s.rtt_avg_ns) / 1e3,
            rtt_max_us=int(s.rtt_max_ns) / 1e3,
            jitter_us=int(s.jitter_ns) / 1e3,
            last_reply_age_s=max(0, now_ns - last_reply) / 1e9 if last_reply else None,
        )


class RingCore:
    """One node's ring core: UMEM, underlay socket, worker thread, endpoint sockets.

    Create it after the XDP objects are loaded (it needs the XSKMAP), then start() it. close()
    withdraws every socket from the XSKMAP before closing it, so traffic falls back to the kernel
    VXLAN path rather than into a black hole.
    """

    def __init__(
        self,
        *,
        underlay_ifname: str,
        underlay_ip: IPv4Address,
        underlay_mac: str | bytes,
        vtep_mac: str | bytes,
        xsks_map_fd: int,
        vni: int,
        overlay_mtu: int,
        vxlan_port: int = 0,
        n_frames: int = 0,
        ring_size: int = 0,
        ep_ring_size: int = 0,
        batch_size: int = 0,
        busy_poll: bool = False,
        hugepages: bool = True,
        cpu: int = -1,
        queue: int = 0,
        probe_interval_ms: int = 0,
    ) -> None:
        """Options as struct rl_core_opts (0: the core's default). `probe_interval_ms`: link
        probes to every remote node this often (0: RL_PROBE_DEFAULT_INTERVAL_MS, PROBES_OFF:
        none)."""
        self._ifname = ffi.new("char[]", underlay_ifname.encode())
        opts = ffi.new("struct rl_core_opts *")
        opts.sz = ffi.sizeof("struct rl_core_opts")
        opts.underlay_ifname = self._ifname
        opts.underlay_queue = queue
        opts.n_frames = n_frames
        opts.ring_size = ring_size
        opts.ep_ring_size = ep_ring_size
        opts.batch_size = batch_size
        opts.vni = vni
        opts.vxlan_port = vxlan_port
        opts.overlay_mtu = overlay_mtu
        opts.underlay_ip = be32(underlay_ip)
        ffi.memmove(opts.underlay_mac, mac_bytes(underlay_mac), 6)
        ffi.memmove(opts.vtep_mac, mac_bytes(vtep_mac), 6)
        opts.xsks_map_fd = xsks_map_fd
        opts.busy_poll = int(busy_poll)
        opts.hugepages = int(hugepages)
        opts.cpu = cpu
        opts.probe_interval_ms = probe_interval_ms
        out = ffi.new("struct rl_core **")
        check(
            lib.rl_core__create(opts, out),
            f"ring core on {underlay_ifname}",
            "EINVAL means an option is out of range (ring sizes are powers of two, VNI < 2^24, "
            "576 <= overlay MTU <= 3740, probe interval 10..60000 ms); EPERM/EAFNOSUPPORT means "
            "no AF_XDP (run as root on a kernel with CONFIG_XDP_SOCKETS)",
        )
        self._core: Any = out[0]
        self._slots: set[int] = set()

    def start(self) -> None:
        check(lib.rl_core__start(self._core), "start ring core worker")

    def close(self) -> None:
        """Idempotent: withdraws every socket, stops the worker, frees the UMEM."""
        if self._core is not None:
            lib.rl_core__destroy(self._core)
            self._core = None
            self._slots.clear()

    def __enter__(self) -> RingCore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add_endpoint(
        self, *, slot: int, ifname: str, ip: IPv4Address, pod_mac: str | bytes,
        host_mac: str | bytes,
    ) -> None:
        e = ffi.new("struct rl_endpoint_opts *")
        name = ffi.new("char[]", ifname.encode())
        e.sz = ffi.sizeof("struct rl_endpoint_opts")
        e.ifname = name
        e.slot = slot
        e.ip = be32(ip)
        ffi.memmove(e.pod_mac, mac_bytes(pod_mac), 6)
        ffi.memmove(e.host_mac, mac_bytes(host_mac), 6)
        check(lib.rl_core__add_endpoint(self._core, e), f"AF_XDP socket on {ifname} (slot {slot})",
              "EEXIST: slot or pod IP already served")
        self._slots.add(slot)

    def remove_endpoint(self, slot: int) -> None:
        check(lib.rl_core__remove_endpoint(self._core, slot), f"remove endpoint slot {slot}")
        self._slots.discard(slot)

    def set_remote(
        self, *, cidr: IPv4Network, node_ip: IPv4Address, next_hop_mac: str | bytes,
        vtep_mac: str | bytes,
    ) -> None:
        r = ffi.new("struct rl_remote_opts *")
        r.sz = ffi.sizeof("struct rl_remote_opts")
        r.cidr = be32(cidr.network_address)
        r.prefixlen = cidr.prefixlen
        r.node_ip = be32(node_ip)
        ffi.memmove(r.next_hop_mac, mac_bytes(next_hop_mac), 6)
        ffi.memmove(r.vtep_mac, mac_bytes(vtep_mac), 6)
        check(lib.rl_core__set_remote(self._core, r), f"remote podCIDR {cidr}")

    def remove_remote(self, cidr: IPv4Network) -> None:
        check(lib.rl_core__remove_remote(self._core, be32(cidr.network_address), cidr.prefixlen),
              f"remove remote podCIDR {cidr}")

    def endpoint_stats(self, slot: int) -> SocketStats:
        out = ffi.new("struct rl_sock_stats *")
        check(lib.rl_core__endpoint_stats(self._core, slot, out), f"stats of endpoint {slot}")
        return SocketStats.from_c(out)

    def stats(self) -> CoreStats:
        out = ffi.new("struct rl_core_stats *")
        check(lib.rl_core__stats(self._core, out), "ring core stats")
        eps = {slot: self.endpoint_stats(slot) for slot in sorted(self._slots)}
        return CoreStats(
            worker=Counters.from_c(out.worker),
            underlay=SocketStats.from_c(out.underlay),
            frames_total=int(out.frames_total),
            frames_free=int(out.frames_free),
            frames_worker=int(out.frames_worker),
            frames_sockets=int(out.frames_sockets),
            bad_frees=int(out.bad_frees),
            n_endpoints=int(out.n_endpoints),
            hugepages=bool(out.hugepages),
            running=bool(out.running),
            loops=int(out.loops),
            sleeps=int(out.sleeps),
            probe={f: int(getattr(out.probe, f)) for f in _PROBE_FIELDS},
            endpoints=eps,
        )

    def link_stats(self) -> list[LinkStat]:
        """Every probed node's link, from one snapshot the worker takes between two batches;
        sorted by node IP. Nodes leave the list with their last route."""
        room = 64
        while True:
            out = ffi.new("struct rl_link_stat[]", room)
            n = check(lib.rl_core__link_stats(self._core, out, room), "link stats")
            now = time.monotonic_ns()  # CLOCK_MONOTONIC, as the worker's timestamps
            if n <= room:
                return sorted((LinkStat.from_c(out[i], now) for i in range(n)),
                              key=lambda s: s.node_ip)
            room = n + 64  # peers were added since: take them all next time
