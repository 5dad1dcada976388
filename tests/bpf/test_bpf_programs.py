"""rl_from_pod and rl_from_wire under BPF_PROG_TEST_RUN: one table row per verdict and reason.

Rejections (XDP_DROP, docs/threat-model.md) have rows of their own, each also with the ring core
down (no socket in the XSKMAP): they must not depend on it. The programs consult the FIB for
"does this node receive that address": the test namespace is routed like a node (conftest).

Each row is data: the program, the from_pod TCP mode it is loaded with, the frame it sees, what
the maps hold, the expected XDP action, the one rl_xdp_stats counter that gives the verdict's
reason, any event counter that moves with it (pod_flow_to_kernel), and the rl_flows entries the
run adds. Counters move by exactly one, no other counter may move, and rl_flows must end up
holding exactly what it held before plus the row's new flows, each with path RL_FLOW_KERNEL.
Every enum rl_xdp_stat outcome of both programs appears at least once (checked by
test_every_counter_is_covered).

Limits of BPF_PROG_TEST_RUN: the kernel refuses input shorter than an Ethernet header, so
"truncated Ethernet" cannot be run (parse_ethhdr's check is still there for real frames); and a
redirect is only decided, not performed, so REDIRECT rows prove the verdict and the slot choice.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import TypedDict

import pytest

from agent.policy.model import Direction
from agent.xdp.bpfobj import lib
from agent.xdp.maps import Flow, VtepFlag
from agent.xdp.policy_maps import PolicyEntry, PortRange, TrackedFlow

from ..native.packets import (
    ETH_HLEN,
    ETH_P_ARP,
    ETH_P_IPV6,
    IPPROTO_ICMP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPV4_HLEN,
    TCP_HLEN,
    UDP_HLEN,
    VXLAN_FLAG_I,
    VXLAN_HLEN,
    Csum,
    checksum,
    eth,
    ip4,
    ipv4,
    mac,
    tcp,
    udp,
    udp_frame,
    vxlan,
)
from .xdp_harness import (
    GATEWAY,
    NODE_B,
    OVERLAY_MTU,
    RING_SPORT_MAX,
    RING_SPORT_MIN,
    THIS_NODE,
    VNI,
    VXLAN_PORT,
    XDP_DROP,
    XDP_PASS,
    XDP_REDIRECT,
    Datapath,
    MakeDatapath,
    XskSocket,
    needs_root,
)

pytestmark = [pytest.mark.bpf, needs_root]

POD = "rl_from_pod"
WIRE = "rl_from_wire"

UNDERLAY = lib.RL_UNDERLAY_SLOT_BASE
MAX_QUEUES = lib.RL_MAX_UNDERLAY_QUEUES

# The scenario: this node's pods are 10.244.1.0/24, node B (192.168.0.2) owns 10.244.2.0/24.
LOCAL_POD = "10.244.1.2"
REMOTE_POD = "10.244.2.3"
EP_SLOT = 5  # XSKMAP slot of the test veth's socket
POD_MAC = mac("02:00:00:00:00:01")  # the endpoint's MAC: what eth() sends from by default
OTHER_MAC = mac("02:00:00:00:00:66")
OTHER_POD = "10.244.1.3"  # another pod of this node
SECOND_SELF = "192.168.0.9"  # a secondary underlay address (rl_vteps SELF, not in the FIB)
EXTRA_VTEP = "192.168.0.77"
STRANGER = "192.168.0.66"  # on the underlay, but no VTEP
NODE = int(VtepFlag.NODE)
EXTRA = int(VtepFlag.EXTRA)
SELF = int(VtepFlag.SELF)
OUTER_OVERHEAD = ETH_HLEN + IPV4_HLEN + UDP_HLEN + VXLAN_HLEN

# from_pod's TCP modes (rl_cfg_tcp_mode)
AUTO = lib.RL_TCP_AUTO
RING = lib.RL_TCP_RING
KERNEL = lib.RL_TCP_KERNEL

# Outer UDP source ports: the ring core's (inside the harness's RING_SPORT_MIN..MAX) and the kernel
# VXLAN device's (abi.h's kernel range, outside the ring range under any configuration here).
RING_SPORT = (RING_SPORT_MIN + RING_SPORT_MAX) // 2
KERNEL_SPORT = lib.RL_KERNEL_SPORT_MIN

# The TCP flow of the scenario, as rl_flows keys it (the local pod's egress direction). Ports and
# addresses all differ from their swapped and byte-swapped selves, so a key built from the wrong
# field or in the wrong byte order cannot match.
POD_PORT = 40000  # the local pod's (client) port
PEER_PORT = 5201  # the remote pod's (server) port
FLOW = Flow(IPv4Address(LOCAL_POD), IPv4Address(REMOTE_POD), POD_PORT, PEER_PORT)
OTHER_FLOW = FLOW._replace(sport=POD_PORT + 1)


@dataclass(frozen=True)
class Maps:
    """What the pinned maps hold when the frame arrives."""

    remote_cidrs: tuple[tuple[str, str], ...] = (("10.244.2.0/24", "192.168.0.2"),)
    endpoint_slot: int | None = EP_SLOT  # rl_endpoints[ingress device]; None: not registered
    local_ips: tuple[str, ...] = (LOCAL_POD,)
    xsk_slots: tuple[int, ...] = ()  # slots that hold a bound AF_XDP socket
    flows: tuple[Flow, ...] = ()  # rl_flows: flows already moved to the kernel path
    vteps: tuple[tuple[str, int], ...] = ((NODE_B, NODE),)  # rl_vteps: address, RL_VTEP_F_*
    policy: tuple[PolicyEntry, ...] | None = None  # rl_policy[0]'s trie; None: no policy
    tracked: tuple[TrackedFlow, ...] = ()  # rl_policy_ct: flows a policy check allowed


SERVED = Maps(xsk_slots=(EP_SLOT, UNDERLAY))  # ring core up: pod socket and queue 0's socket
DOWN = Maps()  # ring core down (or restarting): every XSKMAP slot empty


def served_with(*flows: Flow) -> Maps:
    """SERVED, with `flows` already in rl_flows."""
    return Maps(xsk_slots=SERVED.xsk_slots, flows=flows)


def served_vteps(*vteps: tuple[str, int], served: bool = True) -> Maps:
    """SERVED (or DOWN) with rl_vteps holding exactly `vteps`."""
    return Maps(xsk_slots=SERVED.xsk_slots if served else (), vteps=vteps)


def deny_all(ip: str, direction: Direction) -> tuple[PolicyEntry, ...]:
    """The policy of pod `ip` isolated in `direction` with nothing allowed."""
    return (PolicyEntry(IPv4Address(ip), direction, IPv4Network("0.0.0.0/0"), ()),)


EGRESS = Direction.EGRESS
INGRESS = Direction.INGRESS
UDP_5201 = (PortRange(IPPROTO_UDP, PEER_PORT, PEER_PORT),)


def policed(*entries: PolicyEntry, served: bool = True,
            tracked: tuple[TrackedFlow, ...] = ()) -> Maps:
    """SERVED (or DOWN) with `entries` installed as the policy."""
    return Maps(xsk_slots=SERVED.xsk_slots if served else (), policy=entries, tracked=tracked)




def reverse(flow: TrackedFlow) -> TrackedFlow:
    """The flow whose replies `flow` is (addresses and ports swapped)."""
    return TrackedFlow(flow.daddr, flow.saddr, flow.dport, flow.sport, flow.proto)


# The local pod's UDP flow to the remote pod (what pod_udp() sends), as rl_policy_ct keys it.
UDP_FLOW = TrackedFlow(IPv4Address(LOCAL_POD), IPv4Address(REMOTE_POD), POD_PORT, PEER_PORT,
                       IPPROTO_UDP)
# The remote pod's UDP flow to the local pod (what inner() carries: the same ports).
INNER_FLOW = UDP_FLOW._replace(saddr=IPv4Address(REMOTE_POD), daddr=IPv4Address(LOCAL_POD))


@dataclass(frozen=True)
class Case:
    name: str
    prog: str
    packet: bytes
    action: int
    counter: str  # rl_xdp_stats name, as PinnedMaps.xdp_stats() spells it
    maps: Maps = field(default_factory=Maps)
    rx_queue: int = 0
    tcp_mode: int = AUTO  # from_pod's rl_cfg_tcp_mode
    also: tuple[str, ...] = ()  # event counters that move by one besides `counter`
    new_flows: tuple[Flow, ...] = ()  # rl_flows entries the run adds
    out: bytes | None = None  # the frame the program leaves (None: `packet`, untouched)
    antispoof: int = 1  # from_pod's rl_cfg_antispoof
    underlay_ip: str | None = THIS_NODE  # from_wire's rl_cfg_underlay_ip (None: not set)
    new_tracked: tuple[TrackedFlow, ...] = ()  # rl_policy_ct entries the run adds


class Effects(TypedDict):
    """Case keywords for what a run does besides its verdict."""

    also: tuple[str, ...]
    new_flows: tuple[Flow, ...]


# What FLOW's first super-frame does in AUTO mode.
MOVED = Effects(also=("pod_flow_to_kernel",), new_flows=(FLOW,))


# --- frames -------------------------------------------------------------------------------


def pod_udp(size: int = 100, *, options: bytes = b"") -> bytes:
    """Pod -> remote pod UDP frame whose IPv4 total length is `size`."""
    payload = b"u" * (size - IPV4_HLEN - len(options) - UDP_HLEN)
    return udp_frame(payload, saddr=ip4(LOCAL_POD), daddr=ip4(REMOTE_POD), options=options)


def pod_tcp(
    size: int = 100,
    *,
    sport: int = POD_PORT,
    dport: int = PEER_PORT,
    ttl: int = 64,
    options: bytes = b"",
    mf: bool = False,
) -> bytes:
    """Pod -> remote pod TCP frame (FLOW by default) whose IPv4 total length is `size` (a TSO
    super-frame if above the overlay MTU). mf: the first fragment of a fragmented packet."""
    payload = b"t" * (size - IPV4_HLEN - len(options) - TCP_HLEN)
    saddr, daddr = ip4(LOCAL_POD), ip4(REMOTE_POD)
    seg = tcp(payload, sport=sport, dport=dport, saddr=saddr, daddr=daddr)
    return eth() + ipv4(
        seg,
        saddr=saddr,
        daddr=daddr,
        proto=IPPROTO_TCP,
        ttl=ttl,
        df=not mf,
        mf=mf,
        options=options,
    )


def pod_ip(
    payload: bytes = b"p" * 40,
    *,
    daddr: str = REMOTE_POD,
    proto: int = IPPROTO_UDP,
    ttl: int = 64,
    version: int = 4,
    ihl: int | None = None,
    tot_len: int | None = None,
) -> bytes:
    """Pod frame with a hand-made IPv4 header (the escape hatches make it malformed)."""
    return eth() + ipv4(
        payload,
        saddr=ip4(LOCAL_POD),
        daddr=ip4(daddr),
        proto=proto,
        ttl=ttl,
        version=version,
        ihl=ihl,
        tot_len=tot_len,
    )


def inner(daddr: str = LOCAL_POD, size: int = 100) -> bytes:
    """Remote pod -> local pod UDP frame, as carried inside VXLAN."""
    payload = b"i" * (size - IPV4_HLEN - UDP_HLEN)
    return udp_frame(payload, saddr=ip4(REMOTE_POD), daddr=ip4(daddr))


def inner_tcp(
    daddr: str = LOCAL_POD,
    *,
    sport: int = PEER_PORT,
    dport: int = POD_PORT,
    mf: bool = False,
    frag_offset: int = 0,
) -> bytes:
    """Remote pod -> local pod TCP frame, as carried inside VXLAN: FLOW's reverse by default.

    With frag_offset, a later fragment: what follows the IPv4 header is payload, not TCP."""
    saddr = ip4(REMOTE_POD)
    seg = tcp(b"r" * 60, sport=sport, dport=dport, saddr=saddr, daddr=ip4(daddr))
    if frag_offset:
        seg = b"\xee" * len(seg)
    return eth() + ipv4(
        seg,
        saddr=saddr,
        daddr=ip4(daddr),
        proto=IPPROTO_TCP,
        df=not (mf or frag_offset),
        mf=mf,
        frag_offset=frag_offset,
    )


def wire(
    inner_frame: bytes | None = None,
    *,
    vni: int = VNI,
    flags: int = VXLAN_FLAG_I,
    reserved1: int = 0,
    reserved2: int = 0,
    sport: int = RING_SPORT,
    dport: int = VXLAN_PORT,
    proto: int = IPPROTO_UDP,
    mf: bool = False,
    frag_offset: int = 0,
    options: bytes = b"",
    ihl: int | None = None,
    src: str = NODE_B,
    dst: str = THIS_NODE,
    csum: Csum = Csum.ZERO,
) -> bytes:
    """Node B -> this node VXLAN frame around `inner_frame`, sent by B's ring core (a source port
    in the ring range) unless `sport` says otherwise."""
    if inner_frame is None:
        inner_frame = inner()
    saddr, daddr = ip4(src), ip4(dst)
    body = vxlan(inner_frame, vni=vni, flags=flags, reserved1=reserved1, reserved2=reserved2)
    seg = udp(body, sport=sport, dport=dport, saddr=saddr, daddr=daddr, csum=csum)
    return eth() + ipv4(
        seg,
        saddr=saddr,
        daddr=daddr,
        proto=proto,
        df=not mf,
        mf=mf,
        frag_offset=frag_offset,
        options=options,
        ihl=ihl,
    )


def inner_ip(*, version: int = 4, ihl: int | None = None, options: bytes = b"") -> bytes:
    """Inner frame with a hand-made IPv4 header."""
    return eth() + ipv4(
        b"x" * 40,
        saddr=ip4(REMOTE_POD),
        daddr=ip4(LOCAL_POD),
        version=version,
        ihl=ihl,
        options=options,
    )


def pod_tcp_later_fragment() -> bytes:
    """A later fragment of pod TCP to the remote pod: no TCP header, so no ports to key on."""
    return eth() + ipv4(
        b"\xee" * 40,
        saddr=ip4(LOCAL_POD),
        daddr=ip4(REMOTE_POD),
        proto=IPPROTO_TCP,
        frag_offset=185,
    )


def pod_to(
    daddr: str,
    *,
    dport: int = VXLAN_PORT,
    saddr: str = LOCAL_POD,
    src_mac: bytes = POD_MAC,
    mf: bool = False,
    frag_offset: int = 0,
) -> bytes:
    """A pod's UDP datagram to daddr:dport (the VXLAN port by default) carrying a VXLAN frame
    for a local pod: what a pod sends to have a node decapsulate it. With frag_offset, a later
    fragment (payload where the UDP header would be)."""
    seg = udp(vxlan(inner(LOCAL_POD), vni=VNI), dport=dport, saddr=ip4(saddr), daddr=ip4(daddr),
              csum=Csum.ZERO)
    if frag_offset:
        seg = b"\xee" * len(seg)
    return eth(src=src_mac) + ipv4(seg, saddr=ip4(saddr), daddr=ip4(daddr), mf=mf,
                                   frag_offset=frag_offset)


def pod_from(*, saddr: str = LOCAL_POD, src_mac: bytes = POD_MAC, tot_len: int | None = None,
             proto: int = IPPROTO_UDP) -> bytes:
    """Pod -> remote pod frame with the given source addresses (spoofed unless the defaults)."""
    seg = udp(b"s" * 40, saddr=ip4(saddr), daddr=ip4(REMOTE_POD))
    return eth(src=src_mac) + ipv4(seg, saddr=ip4(saddr), daddr=ip4(REMOTE_POD), proto=proto,
                                   tot_len=tot_len)


def arp(*, sha: bytes = POD_MAC, spa: str = LOCAL_POD, src_mac: bytes = POD_MAC,
        htype: int = 1, hlen: int = 6, size: int = 28) -> bytes:
    """An ARP request from the pod for its gateway (RFC 826); spa 0.0.0.0 is a probe."""
    body = struct.pack("!HHBBH", htype, 0x0800, hlen, 4, 1) + sha + ip4(spa) + b"\x00" * 6 + \
        ip4(GATEWAY)
    return eth(b"\xff" * 6, src_mac, ETH_P_ARP) + body[:size]


def underlay_quote(*, saddr: str = THIS_NODE, daddr: str = NODE_B, proto: int = IPPROTO_UDP,
                   sport: int = RING_SPORT, dport: int = VXLAN_PORT, options: bytes = b"",
                   tot_len: int = 1500, version: int = 4, ihl: int | None = None,
                   l4_len: int = 16) -> bytes:
    """What an ICMP error quotes: the start of one of this node's own VXLAN datagrams to node B
    (IPv4 header, UDP header, VXLAN header: all the kernel's VXLAN error handler wants)."""
    l4 = struct.pack("!HHHH", sport, dport, 1480, 0) + vxlan(b"", vni=VNI)
    return ipv4(b"", saddr=ip4(saddr), daddr=ip4(daddr), proto=proto, df=True, tot_len=tot_len,
                options=options, version=version, ihl=ihl) + l4[:l4_len]


def pod_icmp(quote: bytes, *, icmp_type: int = 3, code: int = 4, daddr: str = GATEWAY,
             mf: bool = False, frag_offset: int = 0) -> bytes:
    """An ICMP error from the pod (fragmentation needed, MTU 576, by default) quoting `quote`."""
    rest = 576 if (icmp_type, code) == (3, 4) else 0
    msg = struct.pack("!BBHI", icmp_type, code, 0, rest) + quote
    msg = msg[:2] + struct.pack("!H", checksum(msg)) + msg[4:]
    return eth() + ipv4(msg, saddr=ip4(LOCAL_POD), daddr=ip4(daddr), proto=IPPROTO_ICMP, mf=mf,
                        frag_offset=frag_offset)


def nested(daddr: str, *, dport: int = VXLAN_PORT, mf: bool = False,
           frag_offset: int = 0) -> bytes:
    """Inner frame: UDP from a remote pod to daddr:dport carrying VXLAN again (for a local pod):
    decapsulated once more by whoever receives it on the VXLAN port."""
    seg = udp(vxlan(inner(LOCAL_POD), vni=VNI), dport=dport, saddr=ip4(REMOTE_POD),
              daddr=ip4(daddr), csum=Csum.ZERO)
    if frag_offset:
        seg = b"\xee" * len(seg)
    return eth() + ipv4(seg, saddr=ip4(REMOTE_POD), daddr=ip4(daddr), mf=mf,
                        frag_offset=frag_offset)


def wire_rsvd(*, sport: int = RING_SPORT, csum: Csum = Csum.ZERO) -> bytes:
    """wire() with every reserved VXLAN bit set (flags, the 24 after them, the last byte)."""
    return wire(flags=0xFF, reserved1=0xFFFFFF, reserved2=0xFF, sport=sport, csum=csum)

CLEARED = Effects(also=("wire_rsvd_cleared",), new_flows=())
REPLY = Effects(also=("policy_reply",), new_flows=())

# A ring core's link probe (abi.h RL_PROBE_ETHERTYPE) inside VXLAN.
PROBE = eth(ethertype=lib.RL_PROBE_ETHERTYPE) + b"\x00" * 46

NOP4 = b"\x01\x01\x01\x01"  # four IPv4 NOP options: a valid header with IHL 6
FULL_WIRE = wire()
KERNEL_TCP = wire(inner_tcp(), sport=KERNEL_SPORT)  # FLOW's reverse, from B's kernel VXLAN device
# KERNEL_TCP cut one byte short of the end of the inner TCP header
TRUNC_TCP = OUTER_OVERHEAD + ETH_HLEN + IPV4_HLEN + TCP_HLEN - 1


# --- the table ----------------------------------------------------------------------------

# A table: one row per case reads better than the formatter's vertical layout.
# fmt: off
CASES = [
    # from_pod: to the ring core, or to the kernel VXLAN fallback when no socket serves it
    Case("pod redirect", POD, pod_udp(), XDP_REDIRECT, "pod_redirect", SERVED),
    Case("pod redirect ip options", POD, pod_udp(options=NOP4), XDP_REDIRECT, "pod_redirect",
         SERVED),
    Case("pod redirect udp at mtu", POD, pod_udp(OVERLAY_MTU), XDP_REDIRECT, "pod_redirect",
         SERVED),
    Case("pod redirect tcp above mtu ring mode", POD, pod_tcp(OVERLAY_MTU + 1), XDP_REDIRECT,
         "pod_redirect", SERVED, tcp_mode=RING),
    Case("pod redirect tso superframe multibuffer ring mode", POD, pod_tcp(60000),
         XDP_REDIRECT, "pod_redirect", SERVED, tcp_mode=RING),
    Case("pod redirect lpm shorter prefix", POD, pod_ip(daddr="10.245.9.9"), XDP_REDIRECT,
         "pod_redirect",
         Maps(remote_cidrs=(("10.245.0.0/16", "192.168.0.3"),), xsk_slots=(EP_SLOT,))),
    Case("pod redirect ttl 2", POD, pod_ip(ttl=2), XDP_REDIRECT, "pod_redirect", SERVED),
    Case("pod fallback empty slot", POD, pod_udp(), XDP_PASS, "pod_fallback"),
    Case("pod fallback other slot served", POD, pod_udp(), XDP_PASS, "pod_fallback",
         Maps(xsk_slots=(EP_SLOT + 1, UNDERLAY))),
    # from_pod: not overlay traffic, or traffic the kernel must handle
    Case("pod arp", POD, eth(ethertype=ETH_P_ARP) + b"\x00" * 28, XDP_PASS,
         "pod_pass_not_ipv4", SERVED),
    Case("pod ipv6", POD, eth(ethertype=ETH_P_IPV6) + b"\x60" + b"\x00" * 39, XDP_PASS,
         "pod_pass_not_ipv4", SERVED),
    Case("pod not remote internet", POD, pod_ip(daddr="8.8.8.8"), XDP_PASS,
         "pod_pass_not_remote", SERVED),
    Case("pod not remote same node", POD, pod_ip(daddr="10.244.1.9"), XDP_PASS,
         "pod_pass_not_remote", SERVED),
    Case("pod not remote empty map", POD, pod_udp(), XDP_PASS, "pod_pass_not_remote",
         Maps(remote_cidrs=(), xsk_slots=(EP_SLOT,))),
    Case("pod no endpoint", POD, pod_udp(), XDP_PASS, "pod_pass_no_endpoint",
         Maps(endpoint_slot=None, xsk_slots=(EP_SLOT,))),
    Case("pod ttl 1", POD, pod_ip(ttl=1), XDP_PASS, "pod_pass_ttl", SERVED),
    Case("pod ttl 0", POD, pod_ip(ttl=0), XDP_PASS, "pod_pass_ttl", SERVED),
    Case("pod oversize udp", POD, pod_udp(OVERLAY_MTU + 1), XDP_PASS, "pod_pass_oversize",
         SERVED),
    Case("pod oversize icmp", POD, pod_ip(b"\x08" * (OVERLAY_MTU - 19), proto=IPPROTO_ICMP),
         XDP_PASS, "pod_pass_oversize", SERVED),
    Case("pod oversize udp gso superframe", POD, pod_udp(30000), XDP_PASS,
         "pod_pass_oversize", SERVED),
    # from_pod TCP, AUTO mode: on the ring core until the flow's first super-frame, then on the
    # kernel path for good (rl_flows); the steering precedes the socket, so it holds with the
    # ring core down too
    Case("pod tcp auto small", POD, pod_tcp(), XDP_REDIRECT, "pod_redirect", SERVED),
    Case("pod tcp auto at mtu", POD, pod_tcp(OVERLAY_MTU), XDP_REDIRECT, "pod_redirect",
         SERVED),
    Case("pod tcp auto small ring core down", POD, pod_tcp(), XDP_PASS, "pod_fallback"),
    Case("pod tcp auto above mtu moves flow", POD, pod_tcp(OVERLAY_MTU + 1), XDP_PASS,
         "pod_pass_tcp_kernel", SERVED, **MOVED),
    Case("pod tcp auto superframe 3000 moves flow", POD, pod_tcp(3000), XDP_PASS,
         "pod_pass_tcp_kernel", SERVED, **MOVED),
    Case("pod tcp auto tso superframe multibuffer moves flow", POD, pod_tcp(60000), XDP_PASS,
         "pod_pass_tcp_kernel", SERVED, **MOVED),
    Case("pod tcp auto superframe ip options moves flow", POD, pod_tcp(3000, options=NOP4),
         XDP_PASS, "pod_pass_tcp_kernel", SERVED, **MOVED),
    Case("pod tcp auto superframe ring core down moves flow", POD, pod_tcp(3000), XDP_PASS,
         "pod_pass_tcp_kernel", **MOVED),
    Case("pod tcp auto known flow small", POD, pod_tcp(), XDP_PASS, "pod_pass_tcp_kernel",
         served_with(FLOW)),
    Case("pod tcp auto known flow superframe moved once", POD, pod_tcp(3000), XDP_PASS,
         "pod_pass_tcp_kernel", served_with(FLOW)),
    Case("pod tcp auto other sport redirected", POD, pod_tcp(sport=POD_PORT + 1),
         XDP_REDIRECT, "pod_redirect", served_with(FLOW)),
    Case("pod tcp auto other dport redirected", POD, pod_tcp(dport=PEER_PORT + 1),
         XDP_REDIRECT, "pod_redirect", served_with(FLOW)),
    Case("pod tcp auto other saddr redirected", POD, pod_tcp(), XDP_REDIRECT, "pod_redirect",
         served_with(FLOW._replace(saddr=IPv4Address("10.244.1.3")))),
    Case("pod tcp auto other daddr redirected", POD, pod_tcp(), XDP_REDIRECT, "pod_redirect",
         served_with(FLOW._replace(daddr=IPv4Address("10.244.2.4")))),
    Case("pod tcp auto ports swapped redirected", POD, pod_tcp(), XDP_REDIRECT, "pod_redirect",
         served_with(FLOW._replace(sport=PEER_PORT, dport=POD_PORT))),
    Case("pod tcp auto reverse flow redirected", POD, pod_tcp(), XDP_REDIRECT, "pod_redirect",
         served_with(Flow(FLOW.daddr, FLOW.saddr, FLOW.dport, FLOW.sport))),
    Case("pod udp same tuple as kernel flow", POD, pod_udp(), XDP_REDIRECT, "pod_redirect",
         served_with(FLOW)),
    Case("pod tcp auto first fragment", POD, pod_tcp(mf=True), XDP_PASS,
         "pod_pass_tcp_kernel", SERVED),
    Case("pod tcp auto later fragment", POD, pod_tcp_later_fragment(), XDP_PASS,
         "pod_pass_tcp_kernel", SERVED),
    Case("pod tcp auto truncated tcp header", POD, pod_tcp()[: ETH_HLEN + IPV4_HLEN + 19],
         XDP_PASS, "pod_pass_tcp_kernel", SERVED),
    # from_pod TCP: the earlier checks still come first, and move no flow
    Case("pod tcp auto superframe ttl 1", POD, pod_tcp(3000, ttl=1), XDP_PASS, "pod_pass_ttl",
         SERVED),
    Case("pod tcp auto superframe no endpoint", POD, pod_tcp(3000), XDP_PASS,
         "pod_pass_no_endpoint", Maps(endpoint_slot=None, xsk_slots=(EP_SLOT,))),
    Case("pod tcp auto superframe not remote", POD, pod_tcp(3000), XDP_PASS,
         "pod_pass_not_remote", Maps(remote_cidrs=(), xsk_slots=(EP_SLOT,))),
    # from_pod TCP, RING mode: every TCP packet to the ring core, rl_flows ignored
    Case("pod tcp ring small", POD, pod_tcp(), XDP_REDIRECT, "pod_redirect", SERVED,
         tcp_mode=RING),
    Case("pod tcp ring superframe 3000", POD, pod_tcp(3000), XDP_REDIRECT, "pod_redirect",
         SERVED, tcp_mode=RING),
    Case("pod tcp ring known flow", POD, pod_tcp(3000), XDP_REDIRECT, "pod_redirect",
         served_with(FLOW), tcp_mode=RING),
    Case("pod tcp ring first fragment", POD, pod_tcp(mf=True), XDP_REDIRECT, "pod_redirect",
         SERVED, tcp_mode=RING),
    Case("pod tcp ring later fragment", POD, pod_tcp_later_fragment(), XDP_REDIRECT,
         "pod_redirect", SERVED, tcp_mode=RING),
    Case("pod tcp ring superframe ring core down", POD, pod_tcp(3000), XDP_PASS,
         "pod_fallback", tcp_mode=RING),
    # from_pod TCP, KERNEL mode: every overlay TCP packet to the kernel, no flow recorded
    Case("pod tcp kernel small", POD, pod_tcp(), XDP_PASS, "pod_pass_tcp_kernel", SERVED,
         tcp_mode=KERNEL),
    Case("pod tcp kernel superframe", POD, pod_tcp(3000), XDP_PASS, "pod_pass_tcp_kernel",
         SERVED, tcp_mode=KERNEL),
    Case("pod tcp kernel not remote", POD, pod_tcp(), XDP_PASS, "pod_pass_not_remote",
         Maps(remote_cidrs=(), xsk_slots=(EP_SLOT,)), tcp_mode=KERNEL),
    Case("pod udp kernel mode redirected", POD, pod_udp(), XDP_REDIRECT, "pod_redirect",
         SERVED, tcp_mode=KERNEL),
    Case("pod udp kernel mode oversize", POD, pod_udp(OVERLAY_MTU + 1), XDP_PASS,
         "pod_pass_oversize", SERVED, tcp_mode=KERNEL),
    # from_pod anti-spoofing: a registered pod sends as itself, to anyone, ring core or not
    Case("pod spoofed source mac", POD, pod_from(src_mac=OTHER_MAC), XDP_DROP,
         "pod_drop_spoof_mac", SERVED),
    Case("pod spoofed source mac ring core down", POD, pod_from(src_mac=OTHER_MAC), XDP_DROP,
         "pod_drop_spoof_mac", DOWN),
    Case("pod spoofed source mac not overlay", POD,
         eth(src=OTHER_MAC) + pod_ip(daddr="8.8.8.8")[ETH_HLEN:], XDP_DROP,
         "pod_drop_spoof_mac", SERVED),
    Case("pod spoofed source mac ipv6", POD,
         eth(src=OTHER_MAC, ethertype=ETH_P_IPV6) + b"\x60" + b"\x00" * 39, XDP_DROP,
         "pod_drop_spoof_mac", SERVED),
    Case("pod spoofed source ip", POD, pod_from(saddr=OTHER_POD), XDP_DROP,
         "pod_drop_spoof_ip", SERVED),
    Case("pod spoofed source ip ring core down", POD, pod_from(saddr=OTHER_POD), XDP_DROP,
         "pod_drop_spoof_ip", DOWN),
    Case("pod spoofed source ip of a remote pod", POD, pod_from(saddr=REMOTE_POD), XDP_DROP,
         "pod_drop_spoof_ip", SERVED),
    Case("pod spoofed source ip of the node", POD, pod_from(saddr=THIS_NODE), XDP_DROP,
         "pod_drop_spoof_ip", SERVED),
    Case("pod spoofed source ip tot_len 0", POD, pod_from(saddr=OTHER_POD, tot_len=0,
         proto=IPPROTO_TCP), XDP_DROP, "pod_drop_spoof_ip", SERVED),
    Case("pod spoofed source ip not overlay", POD,
         eth() + ipv4(b"x" * 20, saddr=ip4(OTHER_POD), daddr=ip4("8.8.8.8")), XDP_DROP,
         "pod_drop_spoof_ip", SERVED),
    Case("pod spoofed unregistered veth", POD, pod_from(saddr=OTHER_POD, src_mac=OTHER_MAC),
         XDP_PASS, "pod_pass_no_endpoint", Maps(endpoint_slot=None, xsk_slots=(EP_SLOT,))),
    Case("pod spoofed mac antispoof off", POD, pod_from(src_mac=OTHER_MAC), XDP_REDIRECT,
         "pod_redirect", SERVED, antispoof=0),
    Case("pod spoofed ip antispoof off", POD, pod_from(saddr=OTHER_POD), XDP_REDIRECT,
         "pod_redirect", SERVED, antispoof=0),
    Case("pod spoofed arp antispoof off", POD, arp(spa=GATEWAY), XDP_PASS,
         "pod_pass_not_ipv4", SERVED, antispoof=0),
    Case("pod arp own", POD, arp(), XDP_PASS, "pod_pass_not_ipv4", SERVED),
    Case("pod arp probe", POD, arp(spa="0.0.0.0"), XDP_PASS, "pod_pass_not_ipv4", SERVED),
    Case("pod arp claims the gateway", POD, arp(spa=GATEWAY), XDP_DROP, "pod_drop_spoof_ip",
         SERVED),
    Case("pod arp claims another pod ring core down", POD, arp(spa=OTHER_POD), XDP_DROP,
         "pod_drop_spoof_ip", DOWN),
    Case("pod arp sender mac spoofed", POD, arp(sha=OTHER_MAC), XDP_DROP,
         "pod_drop_spoof_mac", SERVED),
    Case("pod arp frame source mac spoofed", POD, arp(src_mac=OTHER_MAC), XDP_DROP,
         "pod_drop_spoof_mac", SERVED),
    Case("pod arp not ethernet is the kernel's", POD, arp(spa=GATEWAY, htype=6), XDP_PASS,
         "pod_pass_not_ipv4", SERVED),
    Case("pod arp truncated is the kernel's", POD, arp(spa=GATEWAY, size=27), XDP_PASS,
         "pod_pass_not_ipv4", SERVED),
    # from_pod: no VXLAN to the node (any address it receives on) or to another VTEP
    Case("pod vxlan to node underlay", POD, pod_to(THIS_NODE), XDP_DROP,
         "pod_drop_vxlan_to_node", SERVED),
    Case("pod vxlan to pod gateway", POD, pod_to(GATEWAY), XDP_DROP, "pod_drop_vxlan_to_node",
         SERVED),
    Case("pod vxlan to pod gateway ring core down", POD, pod_to(GATEWAY), XDP_DROP,
         "pod_drop_vxlan_to_node", DOWN),
    Case("pod vxlan to pod gateway unregistered veth", POD, pod_to(GATEWAY), XDP_DROP,
         "pod_drop_vxlan_to_node", Maps(endpoint_slot=None, xsk_slots=(EP_SLOT,))),
    Case("pod vxlan to subnet broadcast", POD, pod_to("192.168.0.255"), XDP_DROP,
         "pod_drop_vxlan_to_node", SERVED),
    Case("pod vxlan to broadcast", POD, pod_to("255.255.255.255"), XDP_DROP,
         "pod_drop_vxlan_to_node", SERVED),
    Case("pod vxlan to multicast", POD, pod_to("239.1.1.1"), XDP_DROP,
         "pod_drop_vxlan_to_node", SERVED),
    Case("pod vxlan to loopback", POD, pod_to("127.0.0.1"), XDP_DROP,
         "pod_drop_vxlan_to_node", SERVED),
    Case("pod vxlan to secondary self", POD, pod_to(SECOND_SELF), XDP_DROP,
         "pod_drop_vxlan_to_node", served_vteps((NODE_B, NODE), (SECOND_SELF, SELF))),
    Case("pod vxlan first fragment to node", POD, pod_to(GATEWAY, mf=True), XDP_DROP,
         "pod_drop_vxlan_to_node", SERVED),
    Case("pod vxlan later fragment has no ports", POD, pod_to(GATEWAY, frag_offset=185),
         XDP_PASS, "pod_pass_not_remote", SERVED),
    Case("pod vxlan to another node", POD, pod_to(NODE_B), XDP_DROP,
         "pod_drop_vxlan_to_vtep", SERVED),
    Case("pod vxlan to another node ring core down", POD, pod_to(NODE_B), XDP_DROP,
         "pod_drop_vxlan_to_vtep", DOWN),
    Case("pod vxlan to extra vtep", POD, pod_to(EXTRA_VTEP), XDP_DROP,
         "pod_drop_vxlan_to_vtep", served_vteps((EXTRA_VTEP, EXTRA))),
    Case("pod vxlan to a remote pod is allowed", POD, pod_to(REMOTE_POD), XDP_REDIRECT,
         "pod_redirect", SERVED),
    Case("pod vxlan to a local pod is allowed", POD, pod_to(OTHER_POD), XDP_PASS,
         "pod_pass_not_remote", SERVED),
    Case("pod vxlan to the internet is allowed", POD, pod_to("8.8.8.8"), XDP_PASS,
         "pod_pass_not_remote", SERVED),
    Case("pod other udp port to node is allowed", POD, pod_to(GATEWAY, dport=53), XDP_PASS,
         "pod_pass_not_remote", SERVED),
    Case("pod flannel's port is not ours", POD, pod_to(GATEWAY, dport=4789), XDP_PASS,
         "pod_pass_not_remote", SERVED),
    # from_pod: no ICMP error quoting underlay traffic (path MTU and redirect poisoning)
    Case("pod icmp frag needed quoting node vxlan", POD, pod_icmp(underlay_quote()), XDP_DROP,
         "pod_drop_icmp_underlay", SERVED),
    Case("pod icmp frag needed ring core down", POD, pod_icmp(underlay_quote()), XDP_DROP,
         "pod_drop_icmp_underlay", DOWN),
    Case("pod icmp frag needed to a remote node", POD, pod_icmp(underlay_quote(),
         daddr=NODE_B), XDP_DROP, "pod_drop_icmp_underlay", SERVED),
    Case("pod icmp frag needed to a remote pod", POD, pod_icmp(underlay_quote(),
         daddr=REMOTE_POD), XDP_DROP, "pod_drop_icmp_underlay", SERVED),
    Case("pod icmp quoting vxlan reply direction", POD, pod_icmp(underlay_quote(
         saddr=NODE_B, daddr=THIS_NODE, sport=VXLAN_PORT, dport=RING_SPORT)), XDP_DROP,
         "pod_drop_icmp_underlay", SERVED),
    Case("pod icmp quoting tcp to a vtep", POD, pod_icmp(underlay_quote(proto=IPPROTO_TCP,
         dport=10250)), XDP_DROP, "pod_drop_icmp_underlay", SERVED),
    Case("pod icmp quoting vxlan with ip options", POD, pod_icmp(underlay_quote(
         daddr="8.8.8.8", options=NOP4)), XDP_DROP, "pod_drop_icmp_underlay", SERVED),
    Case("pod icmp quote with bogus version and length", POD, pod_icmp(underlay_quote(
         daddr="8.8.8.8", version=0, tot_len=0)), XDP_DROP, "pod_drop_icmp_underlay", SERVED),
    Case("pod icmp quote of ports only", POD, pod_icmp(underlay_quote(daddr="8.8.8.8",
         l4_len=8)), XDP_DROP, "pod_drop_icmp_underlay", SERVED),
    Case("pod icmp port unreachable quoting vxlan", POD, pod_icmp(underlay_quote(), code=3),
         XDP_DROP, "pod_drop_icmp_underlay", SERVED),
    Case("pod icmp redirect quoting vxlan", POD, pod_icmp(underlay_quote(), icmp_type=5,
         code=1), XDP_DROP, "pod_drop_icmp_underlay", SERVED),
    Case("pod icmp time exceeded quoting vxlan", POD, pod_icmp(underlay_quote(),
         icmp_type=11, code=0), XDP_DROP, "pod_drop_icmp_underlay", SERVED),
    Case("pod icmp parameter problem quoting vxlan", POD, pod_icmp(underlay_quote(),
         icmp_type=12, code=0), XDP_DROP, "pod_drop_icmp_underlay", SERVED),
    Case("pod icmp error first fragment", POD, pod_icmp(b"q" * 8, mf=True), XDP_DROP,
         "pod_drop_icmp_underlay", SERVED),
    Case("pod icmp error later fragment has no header", POD,
         pod_icmp(b"q" * 8, frag_offset=185), XDP_PASS, "pod_pass_not_remote", SERVED),
    Case("pod icmp frag needed quoting pod traffic", POD, pod_icmp(underlay_quote(
         saddr=REMOTE_POD, daddr="10.244.1.77", dport=5201), daddr=REMOTE_POD), XDP_REDIRECT,
         "pod_redirect", SERVED),
    Case("pod icmp port unreachable to the node", POD, pod_icmp(underlay_quote(
         saddr=GATEWAY, daddr=LOCAL_POD, dport=161), code=3), XDP_PASS, "pod_pass_not_remote",
         SERVED),
    Case("pod icmp quote too short is the kernel's", POD, pod_icmp(underlay_quote()[:19]),
         XDP_PASS, "pod_pass_not_remote", SERVED),
    Case("pod icmp quote without ports is the kernel's", POD, pod_icmp(underlay_quote(
         daddr="8.8.8.8", l4_len=7)), XDP_PASS, "pod_pass_not_remote", SERVED),
    Case("pod icmp echo to the node", POD, pod_icmp(b"ping", icmp_type=8, code=0),
         XDP_PASS, "pod_pass_not_remote", SERVED),
    Case("pod icmp echo first fragment", POD, pod_icmp(b"ping" * 4, icmp_type=8, code=0,
         mf=True, daddr=REMOTE_POD), XDP_REDIRECT, "pod_redirect", SERVED),
    # from_pod: malformed, at every header boundary
    Case("pod truncated after eth", POD, eth(), XDP_PASS, "pod_pass_malformed", SERVED),
    Case("pod truncated ip header", POD, pod_udp()[: ETH_HLEN + IPV4_HLEN - 1], XDP_PASS,
         "pod_pass_malformed", SERVED),
    Case("pod truncated ip options", POD,
         pod_udp(options=NOP4 * 2)[: ETH_HLEN + IPV4_HLEN + 4], XDP_PASS,
         "pod_pass_malformed", SERVED),
    Case("pod ihl 4", POD, pod_ip(ihl=4), XDP_PASS, "pod_pass_malformed", SERVED),
    Case("pod ihl 0", POD, pod_ip(ihl=0), XDP_PASS, "pod_pass_malformed", SERVED),
    Case("pod ihl beyond frame", POD, pod_ip(b"", ihl=15), XDP_PASS, "pod_pass_malformed",
         SERVED),
    Case("pod version 6 in ipv4 frame", POD, pod_ip(version=6), XDP_PASS,
         "pod_pass_malformed", SERVED),
    Case("pod tot_len below header", POD, pod_ip(tot_len=IPV4_HLEN - 1), XDP_PASS,
         "pod_pass_malformed", SERVED),

    # from_wire: ours, to the queue's socket or to the kernel VXLAN fallback
    Case("wire redirect", WIRE, FULL_WIRE, XDP_REDIRECT, "wire_redirect", SERVED),
    Case("wire redirect queue 3", WIRE, FULL_WIRE, XDP_REDIRECT, "wire_redirect",
         Maps(xsk_slots=(UNDERLAY + 3,)), rx_queue=3),
    Case("wire redirect last queue", WIRE, FULL_WIRE, XDP_REDIRECT, "wire_redirect",
         Maps(xsk_slots=(UNDERLAY + MAX_QUEUES - 1,)), rx_queue=MAX_QUEUES - 1),
    # reserved bits are ignored (RFC 7348): cleared, so that the kernel fallback, which drops
    # frames with any set, accepts them as the ring core does
    Case("wire redirect reserved bits set", WIRE, wire_rsvd(), XDP_REDIRECT, "wire_redirect",
         SERVED, out=FULL_WIRE, **CLEARED),
    Case("wire reserved bits set ring core down", WIRE, wire_rsvd(), XDP_PASS,
         "wire_fallback", DOWN, out=FULL_WIRE, **CLEARED),
    Case("wire reserved flag bit only", WIRE, wire(flags=0x88), XDP_REDIRECT, "wire_redirect",
         SERVED, out=FULL_WIRE, **CLEARED),
    Case("wire reserved byte only", WIRE, wire(reserved2=1), XDP_REDIRECT, "wire_redirect",
         SERVED, out=FULL_WIRE, **CLEARED),
    Case("wire reserved bits udp checksum kept valid", WIRE, wire_rsvd(csum=Csum.FULL),
         XDP_REDIRECT, "wire_redirect", SERVED, out=wire(csum=Csum.FULL), **CLEARED),
    Case("wire reserved bits kernel sent", WIRE, wire_rsvd(sport=KERNEL_SPORT), XDP_PASS,
         "wire_pass_kernel_sent", SERVED, out=wire(sport=KERNEL_SPORT), **CLEARED),
    Case("wire redirect outer ip options", WIRE, wire(options=NOP4), XDP_REDIRECT,
         "wire_redirect", SERVED),
    Case("wire redirect inner ip options", WIRE, wire(inner_ip(options=NOP4)), XDP_REDIRECT,
         "wire_redirect", SERVED),
    Case("wire redirect jumbo multibuffer", WIRE, wire(inner(size=9000)), XDP_REDIRECT,
         "wire_redirect", SERVED),
    Case("wire fallback empty slot", WIRE, FULL_WIRE, XDP_PASS, "wire_fallback"),
    Case("wire fallback other queue served", WIRE, FULL_WIRE, XDP_PASS, "wire_fallback",
         Maps(xsk_slots=(UNDERLAY + 3, EP_SLOT))),
    Case("wire fallback queue beyond underlay slots", WIRE, FULL_WIRE, XDP_PASS,
         "wire_fallback", SERVED, rx_queue=MAX_QUEUES),
    # from_wire: not VXLAN for us
    Case("wire arp", WIRE, eth(ethertype=ETH_P_ARP) + b"\x00" * 28, XDP_PASS,
         "wire_pass_not_vxlan", SERVED),
    Case("wire ipv6", WIRE, eth(ethertype=ETH_P_IPV6) + b"\x60" + b"\x00" * 39, XDP_PASS,
         "wire_pass_not_vxlan", SERVED),
    Case("wire outer tcp", WIRE, wire(proto=IPPROTO_TCP), XDP_PASS, "wire_pass_not_vxlan",
         SERVED),
    Case("wire other udp port", WIRE, wire(dport=4789), XDP_PASS, "wire_pass_not_vxlan",
         SERVED),
    # from_wire: outer fragments. No node fragments VXLAN, and a reassembled datagram would
    # reach the kernel's VXLAN socket unchecked: the first fragment to our port is dropped (the
    # later ones then never reassemble); other fragments are the kernel's to reassemble
    Case("wire outer first fragment", WIRE, wire(mf=True), XDP_DROP, "wire_drop_fragment",
         SERVED),
    Case("wire outer first fragment ring core down", WIRE, wire(mf=True), XDP_DROP,
         "wire_drop_fragment", DOWN),
    Case("wire outer first fragment unknown vtep", WIRE, wire(mf=True, src=STRANGER),
         XDP_DROP, "wire_drop_fragment", SERVED),
    Case("wire outer first fragment with ip options", WIRE, wire(mf=True, options=NOP4),
         XDP_DROP, "wire_drop_fragment", SERVED),
    Case("wire outer fragment of kernel tcp", WIRE, wire(inner_tcp(), sport=KERNEL_SPORT,
         mf=True), XDP_DROP, "wire_drop_fragment", SERVED),
    Case("wire outer later fragment", WIRE, wire(frag_offset=185), XDP_PASS,
         "wire_pass_fragment", SERVED),
    Case("wire outer first fragment other port", WIRE, wire(mf=True, dport=4789), XDP_PASS,
         "wire_pass_fragment", SERVED),
    Case("wire outer first fragment truncated udp", WIRE,
         wire(mf=True)[: ETH_HLEN + IPV4_HLEN + UDP_HLEN - 1], XDP_PASS, "wire_pass_fragment",
         SERVED),
    # from_wire: our port but not our VNI, or no I flag (the kernel would drop them uncounted)
    Case("wire other vni", WIRE, wire(vni=VNI + 1), XDP_DROP, "wire_drop_bad_vni", SERVED),
    Case("wire other vni ring core down", WIRE, wire(vni=VNI + 1), XDP_DROP,
         "wire_drop_bad_vni", DOWN),
    Case("wire vni in reserved byte", WIRE, wire(vni=0, reserved2=VNI), XDP_DROP,
         "wire_drop_bad_vni", SERVED),
    Case("wire i flag clear", WIRE, wire(flags=0), XDP_DROP, "wire_drop_bad_vni", SERVED),
    Case("wire only other flags", WIRE, wire(flags=0xFF & ~VXLAN_FLAG_I), XDP_DROP,
         "wire_drop_bad_vni", SERVED),
    Case("wire other vni kernel sent", WIRE, wire(vni=VNI + 1, sport=KERNEL_SPORT), XDP_DROP,
         "wire_drop_bad_vni", SERVED),
    Case("wire other vni reserved bits left alone", WIRE, wire(vni=VNI + 1, reserved2=7),
         XDP_DROP, "wire_drop_bad_vni", SERVED),
    # from_wire: only known VTEPs may send VXLAN, whatever the ring core's state or the path
    Case("wire from unknown vtep", WIRE, wire(src=STRANGER), XDP_DROP,
         "wire_drop_unknown_vtep", SERVED),
    Case("wire from unknown vtep ring core down", WIRE, wire(src=STRANGER), XDP_DROP,
         "wire_drop_unknown_vtep", DOWN),
    Case("wire from unknown vtep kernel sport", WIRE, wire(src=STRANGER, sport=KERNEL_SPORT),
         XDP_DROP, "wire_drop_unknown_vtep", SERVED),
    Case("wire from a pod address", WIRE, wire(src=REMOTE_POD), XDP_DROP,
         "wire_drop_unknown_vtep", SERVED),
    Case("wire from a local pod address", WIRE, wire(src=LOCAL_POD), XDP_DROP,
         "wire_drop_unknown_vtep", SERVED),
    Case("wire from this node's own address", WIRE, wire(src=THIS_NODE), XDP_DROP,
         "wire_drop_unknown_vtep", served_vteps((NODE_B, NODE), (THIS_NODE, SELF))),
    Case("wire from unknown vtep other vni", WIRE, wire(src=STRANGER, vni=VNI + 1), XDP_DROP,
         "wire_drop_unknown_vtep", SERVED),
    Case("wire no vteps known", WIRE, FULL_WIRE, XDP_DROP, "wire_drop_unknown_vtep",
         served_vteps()),
    Case("wire from extra vtep", WIRE, wire(src=EXTRA_VTEP), XDP_REDIRECT, "wire_redirect",
         served_vteps((EXTRA_VTEP, EXTRA))),
    Case("wire from node that is also extra", WIRE, FULL_WIRE, XDP_REDIRECT, "wire_redirect",
         served_vteps((NODE_B, NODE | EXTRA))),
    Case("wire unknown vtep other port is not ours", WIRE, wire(src=STRANGER, dport=4789),
         XDP_PASS, "wire_pass_not_vxlan", SERVED),
    # from_wire: VXLAN only to this node's underlay address (the kernel's socket takes any)
    Case("wire to a pod gateway address", WIRE, wire(dst=GATEWAY), XDP_DROP,
         "wire_drop_not_to_node", SERVED),
    Case("wire to a pod gateway address ring core down", WIRE, wire(dst=GATEWAY), XDP_DROP,
         "wire_drop_not_to_node", DOWN),
    Case("wire to broadcast", WIRE, wire(dst="255.255.255.255"), XDP_DROP,
         "wire_drop_not_to_node", SERVED),
    Case("wire to multicast", WIRE, wire(dst="239.1.1.1"), XDP_DROP, "wire_drop_not_to_node",
         SERVED),
    Case("wire to another node", WIRE, wire(dst=NODE_B), XDP_DROP, "wire_drop_not_to_node",
         SERVED),
    Case("wire to secondary underlay address", WIRE, wire(dst=SECOND_SELF), XDP_REDIRECT,
         "wire_redirect", served_vteps((NODE_B, NODE), (SECOND_SELF, SELF))),
    Case("wire underlay address from rl_vteps only", WIRE, FULL_WIRE, XDP_REDIRECT,
         "wire_redirect", served_vteps((NODE_B, NODE), (THIS_NODE, SELF)), underlay_ip=None),
    Case("wire no underlay address known", WIRE, FULL_WIRE, XDP_DROP, "wire_drop_not_to_node",
         SERVED, underlay_ip=None),
    # from_wire: VXLAN in VXLAN for a node would be decapsulated twice
    Case("wire nested vxlan to node underlay", WIRE, wire(nested(THIS_NODE)), XDP_DROP,
         "wire_drop_nested_vxlan", SERVED),
    Case("wire nested vxlan to pod gateway", WIRE, wire(nested(GATEWAY)), XDP_DROP,
         "wire_drop_nested_vxlan", SERVED),
    Case("wire nested vxlan ring core down", WIRE, wire(nested(GATEWAY)), XDP_DROP,
         "wire_drop_nested_vxlan", DOWN),
    Case("wire nested vxlan kernel sent", WIRE, wire(nested(GATEWAY), sport=KERNEL_SPORT),
         XDP_DROP, "wire_drop_nested_vxlan", SERVED),
    Case("wire nested vxlan to another node", WIRE, wire(nested(NODE_B)), XDP_DROP,
         "wire_drop_nested_vxlan", SERVED),
    Case("wire nested vxlan to secondary self", WIRE, wire(nested(SECOND_SELF)), XDP_DROP,
         "wire_drop_nested_vxlan", served_vteps((NODE_B, NODE), (SECOND_SELF, SELF))),
    Case("wire nested vxlan to subnet broadcast", WIRE, wire(nested("192.168.0.255")),
         XDP_DROP, "wire_drop_nested_vxlan", SERVED),
    Case("wire nested vxlan to broadcast", WIRE, wire(nested("255.255.255.255")), XDP_DROP,
         "wire_drop_nested_vxlan", SERVED),
    Case("wire nested vxlan to multicast", WIRE, wire(nested("239.1.2.3")), XDP_DROP,
         "wire_drop_nested_vxlan", SERVED),
    Case("wire nested vxlan to loopback", WIRE, wire(nested("127.0.0.1")), XDP_DROP,
         "wire_drop_nested_vxlan", SERVED),
    Case("wire nested vxlan first fragment", WIRE, wire(nested(GATEWAY, mf=True)), XDP_DROP,
         "wire_drop_nested_vxlan", SERVED),
    Case("wire nested later fragment has no ports", WIRE,
         wire(nested(GATEWAY, frag_offset=185)), XDP_PASS, "wire_pass_not_local", SERVED),
    Case("wire inner vxlan to a local pod is the pod's", WIRE, wire(nested(LOCAL_POD)),
         XDP_REDIRECT, "wire_redirect", SERVED),
    Case("wire inner vxlan to a remote pod is forwarded", WIRE, wire(nested("10.244.2.9")),
         XDP_PASS, "wire_pass_not_local", SERVED),
    Case("wire inner udp other port to node", WIRE, wire(nested(GATEWAY, dport=4789)),
         XDP_PASS, "wire_pass_not_local", SERVED),
    # from_wire: ours, but the destination is not an accelerated local pod
    Case("wire inner dst not local", WIRE, wire(inner("10.244.1.99")), XDP_PASS,
         "wire_pass_not_local", SERVED),
    Case("wire no local ips", WIRE, FULL_WIRE, XDP_PASS, "wire_pass_not_local",
         Maps(local_ips=(), xsk_slots=(UNDERLAY,))),
    Case("wire inner arp", WIRE, wire(eth(ethertype=ETH_P_ARP) + b"\x00" * 28), XDP_PASS,
         "wire_pass_not_local", SERVED),
    # from_wire: the outer source port tells who sent it; the ring range's boundaries
    Case("wire sport ring min", WIRE, wire(sport=RING_SPORT_MIN), XDP_REDIRECT,
         "wire_redirect", SERVED),
    Case("wire sport ring max", WIRE, wire(sport=RING_SPORT_MAX), XDP_REDIRECT,
         "wire_redirect", SERVED),
    Case("wire sport below ring range", WIRE, wire(sport=RING_SPORT_MIN - 1), XDP_PASS,
         "wire_pass_kernel_sent", SERVED),
    Case("wire sport above ring range", WIRE, wire(sport=RING_SPORT_MAX + 1), XDP_PASS,
         "wire_pass_kernel_sent", SERVED),
    Case("wire sport 0", WIRE, wire(sport=0), XDP_PASS, "wire_pass_kernel_sent", SERVED),
    Case("wire sport 65535", WIRE, wire(sport=65535), XDP_PASS, "wire_pass_kernel_sent",
         SERVED),
    Case("wire sport kernel max", WIRE, wire(sport=lib.RL_KERNEL_SPORT_MAX), XDP_PASS,
         "wire_pass_kernel_sent", SERVED),
    # from_wire: kernel-sent TCP is the kernel's, and the local pod's replies follow it there
    Case("wire kernel tcp follows flow", WIRE, KERNEL_TCP, XDP_PASS, "wire_pass_kernel_sent",
         SERVED, new_flows=(FLOW,)),
    Case("wire kernel tcp follows flow ring core down", WIRE, KERNEL_TCP, XDP_PASS,
         "wire_pass_kernel_sent", new_flows=(FLOW,)),
    Case("wire kernel tcp known flow", WIRE, KERNEL_TCP, XDP_PASS, "wire_pass_kernel_sent",
         served_with(FLOW)),
    Case("wire kernel tcp other flow known", WIRE, KERNEL_TCP, XDP_PASS,
         "wire_pass_kernel_sent", served_with(OTHER_FLOW), new_flows=(FLOW,)),
    # recorded whatever the inner destination: from_pod only consults it for registered pods
    Case("wire kernel tcp inner dst not local", WIRE,
         wire(inner_tcp("10.244.1.99"), sport=KERNEL_SPORT), XDP_PASS,
         "wire_pass_kernel_sent", SERVED,
         new_flows=(FLOW._replace(saddr=IPv4Address("10.244.1.99")),)),
    Case("wire kernel tcp outer ip options", WIRE,
         wire(inner_tcp(), sport=KERNEL_SPORT, options=NOP4), XDP_PASS,
         "wire_pass_kernel_sent", SERVED, new_flows=(FLOW,)),
    Case("wire kernel udp", WIRE, wire(sport=KERNEL_SPORT), XDP_PASS, "wire_pass_kernel_sent",
         SERVED),
    Case("wire kernel inner arp", WIRE,
         wire(eth(ethertype=ETH_P_ARP) + b"\x00" * 28, sport=KERNEL_SPORT), XDP_PASS,
         "wire_pass_kernel_sent", SERVED),
    Case("wire kernel inner tcp first fragment", WIRE,
         wire(inner_tcp(mf=True), sport=KERNEL_SPORT), XDP_PASS, "wire_pass_kernel_sent",
         SERVED),
    Case("wire kernel inner tcp later fragment", WIRE,
         wire(inner_tcp(frag_offset=185), sport=KERNEL_SPORT), XDP_PASS,
         "wire_pass_kernel_sent", SERVED),
    Case("wire kernel truncated inner tcp", WIRE, KERNEL_TCP[:TRUNC_TCP], XDP_PASS,
         "wire_pass_kernel_sent", SERVED),
    Case("wire kernel truncated inner eth", WIRE, KERNEL_TCP[: OUTER_OVERHEAD + ETH_HLEN - 1],
         XDP_PASS, "wire_pass_kernel_sent", SERVED),
    Case("wire kernel inner ihl 4", WIRE, wire(inner_ip(ihl=4), sport=KERNEL_SPORT), XDP_PASS,
         "wire_pass_kernel_sent", SERVED),
    # from_wire: the checks before the source port still come first, and record no flow
    Case("wire kernel tcp other vni", WIRE, wire(inner_tcp(), sport=KERNEL_SPORT, vni=VNI + 1),
         XDP_DROP, "wire_drop_bad_vni", SERVED),
    Case("wire kernel tcp unknown vtep", WIRE,
         wire(inner_tcp(), sport=KERNEL_SPORT, src=STRANGER), XDP_DROP,
         "wire_drop_unknown_vtep", SERVED),
    Case("wire kernel tcp other udp port", WIRE,
         wire(inner_tcp(), sport=KERNEL_SPORT, dport=4789), XDP_PASS, "wire_pass_not_vxlan",
         SERVED),
    # from_wire: ring-sent TCP is the ring core's (or the fallback's), and records no flow
    Case("wire ring tcp redirect", WIRE, wire(inner_tcp()), XDP_REDIRECT, "wire_redirect",
         SERVED),
    Case("wire ring tcp fallback", WIRE, wire(inner_tcp()), XDP_PASS, "wire_fallback"),
    Case("wire ring tcp known flow redirect", WIRE, wire(inner_tcp()), XDP_REDIRECT,
         "wire_redirect", served_with(FLOW)),
    # from_wire: malformed, at every header boundary
    Case("wire truncated after eth", WIRE, FULL_WIRE[:ETH_HLEN], XDP_PASS,
         "wire_pass_malformed", SERVED),
    Case("wire truncated outer ip", WIRE, FULL_WIRE[: ETH_HLEN + IPV4_HLEN - 1], XDP_PASS,
         "wire_pass_malformed", SERVED),
    Case("wire outer ihl 4", WIRE, wire(ihl=4), XDP_PASS, "wire_pass_malformed", SERVED),
    Case("wire truncated outer options", WIRE,
         wire(options=NOP4 * 2)[: ETH_HLEN + IPV4_HLEN + 4], XDP_PASS,
         "wire_pass_malformed", SERVED),
    Case("wire truncated udp", WIRE, FULL_WIRE[: ETH_HLEN + IPV4_HLEN + UDP_HLEN - 1],
         XDP_PASS, "wire_pass_malformed", SERVED),
    Case("wire truncated vxlan", WIRE, FULL_WIRE[: OUTER_OVERHEAD - 1], XDP_PASS,
         "wire_pass_malformed", SERVED),
    Case("wire truncated inner eth", WIRE, FULL_WIRE[: OUTER_OVERHEAD + ETH_HLEN - 1],
         XDP_PASS, "wire_pass_malformed", SERVED),
    Case("wire truncated inner ip", WIRE,
         FULL_WIRE[: OUTER_OVERHEAD + ETH_HLEN + IPV4_HLEN - 1], XDP_PASS,
         "wire_pass_malformed", SERVED),
    Case("wire inner ihl 4", WIRE, wire(inner_ip(ihl=4)), XDP_PASS, "wire_pass_malformed",
         SERVED),
    Case("wire inner version 6", WIRE, wire(inner_ip(version=6)), XDP_PASS,
         "wire_pass_malformed", SERVED),
    Case("wire truncated inner options", WIRE,
         wire(inner_ip(options=NOP4 * 2)[: ETH_HLEN + IPV4_HLEN + 4]), XDP_PASS,
         "wire_pass_malformed", SERVED),
    # policy (lib/policy.h): decided before any redirect, so it holds with the ring core down
    # and on the kernel's path; a reply of a tracked flow passes whatever the policy says
    Case("pod policy egress deny", POD, pod_udp(), XDP_DROP, "pod_drop_policy_egress",
         policed(*deny_all(LOCAL_POD, EGRESS))),
    Case("pod policy egress deny ring core down", POD, pod_udp(), XDP_DROP,
         "pod_drop_policy_egress", policed(*deny_all(LOCAL_POD, EGRESS), served=False)),
    Case("pod policy egress deny kernel tcp", POD, pod_tcp(3000), XDP_DROP,
         "pod_drop_policy_egress", policed(*deny_all(LOCAL_POD, EGRESS))),
    Case("pod policy egress allow", POD, pod_udp(), XDP_REDIRECT, "pod_redirect",
         policed(*deny_all(LOCAL_POD, EGRESS),
                 PolicyEntry(IPv4Address(LOCAL_POD), EGRESS, IPv4Network("10.244.2.0/24"),
                             UDP_5201)),
         new_tracked=(UDP_FLOW,)),
    Case("pod policy other pod isolated", POD, pod_udp(), XDP_REDIRECT, "pod_redirect",
         policed(*deny_all(OTHER_POD, EGRESS), *deny_all(OTHER_POD, INGRESS)),
         new_tracked=(UDP_FLOW,)),
    Case("pod policy ingress of same node pod deny", POD, pod_ip(daddr=OTHER_POD), XDP_DROP,
         "pod_drop_policy_ingress", policed(*deny_all(OTHER_POD, INGRESS))),
    Case("pod policy reply", POD, pod_udp(), XDP_REDIRECT, "pod_redirect",
         policed(*deny_all(LOCAL_POD, EGRESS), tracked=(reverse(UDP_FLOW),)), **REPLY),
    Case("pod policy without endpoint", POD, pod_udp(), XDP_PASS, "pod_pass_no_endpoint",
         Maps(endpoint_slot=None, policy=deny_all(LOCAL_POD, EGRESS))),
    Case("wire policy ingress deny", WIRE, FULL_WIRE, XDP_DROP, "wire_drop_policy_ingress",
         policed(*deny_all(LOCAL_POD, INGRESS))),
    Case("wire policy ingress deny ring core down", WIRE, FULL_WIRE, XDP_DROP,
         "wire_drop_policy_ingress", policed(*deny_all(LOCAL_POD, INGRESS), served=False)),
    Case("wire policy ingress deny kernel sent", WIRE, wire(sport=KERNEL_SPORT), XDP_DROP,
         "wire_drop_policy_ingress", policed(*deny_all(LOCAL_POD, INGRESS))),
    Case("wire policy ingress deny kernel tcp records no flow", WIRE, KERNEL_TCP, XDP_DROP,
         "wire_drop_policy_ingress", policed(*deny_all(LOCAL_POD, INGRESS))),
    Case("wire policy ingress allow", WIRE, FULL_WIRE, XDP_REDIRECT, "wire_redirect",
         policed(*deny_all(LOCAL_POD, INGRESS),
                 PolicyEntry(IPv4Address(LOCAL_POD), INGRESS, IPv4Network("10.244.2.0/24"),
                             UDP_5201)),
         new_tracked=(INNER_FLOW,)),
    Case("wire policy reply", WIRE, FULL_WIRE, XDP_REDIRECT, "wire_redirect",
         policed(*deny_all(LOCAL_POD, INGRESS), tracked=(reverse(INNER_FLOW),)), **REPLY),
    Case("wire policy reply kernel sent", WIRE, wire(sport=KERNEL_SPORT), XDP_PASS,
         "wire_pass_kernel_sent",
         policed(*deny_all(LOCAL_POD, INGRESS), tracked=(reverse(INNER_FLOW),)), **REPLY),
    # the reply must be of that very flow: the forward tuple itself is no reply
    Case("wire policy forward tuple tracked is no reply", WIRE, FULL_WIRE, XDP_DROP,
         "wire_drop_policy_ingress", policed(*deny_all(LOCAL_POD, INGRESS),
                                             tracked=(INNER_FLOW,))),
    Case("wire policy inner dst not isolated", WIRE, wire(inner("10.244.1.99")), XDP_PASS,
         "wire_pass_not_local", policed(*deny_all(LOCAL_POD, INGRESS)),
         new_tracked=(INNER_FLOW._replace(daddr=IPv4Address("10.244.1.99")),)),
    # from_wire: link probes of the ring cores go to the ring core, as traffic for its pods
    # does; policy (IPv4 only) does not apply to them
    Case("wire probe redirect", WIRE, wire(PROBE), XDP_REDIRECT, "wire_probe", SERVED),
    Case("wire probe ring core down", WIRE, wire(PROBE), XDP_PASS, "wire_fallback"),
    Case("wire probe queue beyond slots", WIRE, wire(PROBE), XDP_PASS, "wire_fallback",
         SERVED, rx_queue=MAX_QUEUES),
    Case("wire probe kernel sent", WIRE, wire(PROBE, sport=KERNEL_SPORT), XDP_PASS,
         "wire_pass_kernel_sent", SERVED),
    Case("wire probe under policy", WIRE, wire(PROBE), XDP_REDIRECT, "wire_probe",
         policed(*deny_all(LOCAL_POD, INGRESS))),
    Case("wire probe truncated", WIRE, wire(PROBE[:ETH_HLEN]), XDP_REDIRECT, "wire_probe",
         SERVED),
]
# fmt: on


def _setup(dp: Datapath, maps: Maps, xsk: XskSocket) -> None:
    for cidr, node in maps.remote_cidrs:
        dp.maps.set_remote_cidr(IPv4Network(cidr), IPv4Address(node))
    if maps.endpoint_slot is not None:
        dp.maps.set_endpoint(
            ifindex=dp.ifindex,
            slot=maps.endpoint_slot,
            ip=IPv4Address(LOCAL_POD),
            mac=POD_MAC,
        )
    for ip in maps.local_ips:
        dp.maps.set_local_ip(IPv4Address(ip), slot=EP_SLOT, ifindex=dp.ifindex)
    for slot in maps.xsk_slots:
        dp.put_xsk(slot, xsk)
    for flow in maps.flows:
        dp.put_flow(flow)
    for ip, flags in maps.vteps:
        dp.maps.set_vtep(IPv4Address(ip), VtepFlag(flags))
    if maps.policy is not None:
        dp.policy.swap_policy(maps.policy)
    for tracked in maps.tracked:
        dp.put_tracked(tracked)


def _deltas(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before[name] for name in after if after[name] != before[name]}


@pytest.mark.parametrize("case", CASES, ids=[c.name.replace(" ", "-") for c in CASES])
def test_verdict(case: Case, make_datapath: MakeDatapath, xsk: XskSocket) -> None:
    dp = make_datapath(tcp_mode=case.tcp_mode, antispoof=case.antispoof,
                       underlay_ip=case.underlay_ip)
    _setup(dp, case.maps, xsk)
    assert dp.maps.flows() == set(case.maps.flows)
    before = dp.maps.xdp_stats()

    action, out = dp.run(case.prog, case.packet, rx_queue=case.rx_queue)

    moved = _deltas(before, dp.maps.xdp_stats())
    want = {case.counter: 1, **dict.fromkeys(case.also, 1)}
    assert (action, moved) == (case.action, want)
    assert dp.maps.flows() == set(case.maps.flows) | set(case.new_flows)
    for flow in case.new_flows:
        assert dp.flow_info(flow) == (lib.RL_FLOW_KERNEL, 0)
    # Without a policy nothing is tracked; with one, what every check allowed.
    assert dp.policy.tracked_flows() == set(case.maps.tracked) | set(case.new_tracked)
    # The programs rewrite nothing but reserved VXLAN bits; the ring core does the rest.
    assert out == (case.packet if case.out is None else case.out)


# Counters no table row can move, each with the test that covers it instead.
COVERED_ELSEWHERE = {
    "flow_samples_lost": "test_bpf_policy.py::test_full_sample_ring_costs_samples_not_packets",
    # a failing conntrack lookup needs a kernel that refuses the options; this one takes them,
    # and tests/netns/test_policy.py::test_service_replies_pass_an_isolated_client shows the
    # lookup working
    "kernel_ct_error": "tests/netns/test_policy.py::test_service_replies_pass_an_isolated_client",
}


def test_every_counter_is_covered() -> None:
    """Each enum rl_xdp_stat value (but RL_XS_MAX) is some row's expected counter."""
    enum_names = {
        n.removeprefix("RL_XS_").lower()
        for n in dir(lib)
        if n.startswith("RL_XS_") and n != "RL_XS_MAX" and not n.endswith("_RETIRED")
    }
    assert enum_names == ({c.counter for c in CASES} | {a for c in CASES for a in c.also}
                          | set(COVERED_ELSEWHERE))


def test_frames_are_what_the_rows_say() -> None:
    """Sanity of the table's builders (so a row cannot pass for the wrong reason)."""
    assert len(pod_udp(OVERLAY_MTU)) == ETH_HLEN + OVERLAY_MTU
    assert len(pod_tcp(60000)) == ETH_HLEN + 60000
    assert len(pod_tcp(3000, options=NOP4)) == ETH_HLEN + 3000
    assert len(FULL_WIRE) == OUTER_OVERHEAD + len(inner())
    assert tcp(b"")[12] >> 4 == 5  # pod_tcp assumes a 20-byte TCP header
    # the frames carry the ports FLOW names, in network order, where the programs read them
    l4 = ETH_HLEN + IPV4_HLEN
    assert pod_tcp()[l4 : l4 + 4] == struct.pack("!HH", FLOW.sport, FLOW.dport)
    assert pod_tcp(options=NOP4)[l4 + 4 : l4 + 8] == struct.pack("!HH", FLOW.sport, FLOW.dport)
    inner_l4 = OUTER_OVERHEAD + l4
    assert KERNEL_TCP[inner_l4 : inner_l4 + 4] == struct.pack("!HH", FLOW.dport, FLOW.sport)
    # outer source ports: ring rows inside the loaded ring range, kernel rows outside it
    assert RING_SPORT_MIN <= struct.unpack_from("!H", FULL_WIRE, l4)[0] <= RING_SPORT_MAX
    assert struct.unpack_from("!H", KERNEL_TCP, l4)[0] == KERNEL_SPORT
    assert not RING_SPORT_MIN <= KERNEL_SPORT <= RING_SPORT_MAX
    # the superframe rows really are above the overlay MTU, the small ones not
    assert len(pod_tcp(3000)) - ETH_HLEN > OVERLAY_MTU >= len(pod_tcp()) - ETH_HLEN


def test_fallback_then_redirect_when_socket_appears(datapath: Datapath, xsk: XskSocket) -> None:
    """The fallback switch: the same frame goes to the kernel until the ring core fills the
    slot, then to the ring core, with no map change but the XSKMAP."""
    _setup(datapath, Maps(), xsk)
    assert datapath.run(POD, pod_udp())[0] == XDP_PASS
    datapath.put_xsk(EP_SLOT, xsk)
    assert datapath.run(POD, pod_udp())[0] == XDP_REDIRECT
    stats = datapath.maps.xdp_stats()
    assert (stats["pod_fallback"], stats["pod_redirect"]) == (1, 1)


# --- TCP steering over several packets ----------------------------------------------------


def _run_all(dp: Datapath, runs: list[tuple[str, bytes]]) -> list[int]:
    return [dp.run(prog, packet)[0] for prog, packet in runs]


def test_auto_moves_each_flow_once_and_for_good(
    make_datapath: MakeDatapath, xsk: XskSocket
) -> None:
    """A flow stays on the ring core until its first super-frame; from then on every packet of
    it, small ones included, goes to the kernel. Another flow is untouched until it sends a
    super-frame of its own."""
    dp = make_datapath(tcp_mode=AUTO)
    _setup(dp, SERVED, xsk)
    other = OTHER_FLOW.sport
    before = dp.maps.xdp_stats()

    actions = _run_all(dp, [
        (POD, pod_tcp()),                   # small: ring core
        (POD, pod_tcp(3000)),               # first super-frame: moved
        (POD, pod_tcp()),                   # small, known: kernel
        (POD, pod_tcp(60000)),              # super-frame, known: kernel, not moved again
        (POD, pod_tcp(sport=other)),        # the other flow: ring core
        (POD, pod_tcp(3000, sport=other)),  # its first super-frame: moved
        (POD, pod_tcp(sport=other)),        # and then kernel
        (POD, pod_udp()),                   # UDP is never steered
    ])  # fmt: skip

    assert actions == [XDP_REDIRECT, XDP_PASS, XDP_PASS, XDP_PASS,
                       XDP_REDIRECT, XDP_PASS, XDP_PASS, XDP_REDIRECT]  # fmt: skip
    assert _deltas(before, dp.maps.xdp_stats()) == {
        "pod_redirect": 3,
        "pod_pass_tcp_kernel": 5,
        "pod_flow_to_kernel": 2,
    }
    assert dp.maps.flows() == {FLOW, OTHER_FLOW}


def test_kernel_sent_flow_takes_the_local_replies_along(
    make_datapath: MakeDatapath, xsk: XskSocket
) -> None:
    """from_wire records the reverse of a kernel-sent TCP flow in the key from_pod computes
    for the local pod's replies: those then take the kernel path (without being counted as a
    flow from_pod moved). Ring-sent TCP and kernel-sent UDP record nothing."""
    dp = make_datapath(tcp_mode=AUTO)
    _setup(dp, SERVED, xsk)
    other = OTHER_FLOW.sport
    before = dp.maps.xdp_stats()

    actions = _run_all(dp, [
        (WIRE, wire(inner_tcp(dport=other))),       # ring-sent: ring core
        (POD, pod_tcp(sport=other)),                # its reply: ring core
        (WIRE, wire(inner(), sport=KERNEL_SPORT)),  # kernel-sent UDP
        (POD, pod_udp()),                           # UDP reply: ring core
        (WIRE, KERNEL_TCP),                         # kernel-sent TCP: recorded
        (POD, pod_tcp()),                           # its reply: kernel
        (WIRE, KERNEL_TCP),                         # again: already recorded
        (POD, pod_tcp(3000)),                       # a super-frame: not re-moved
    ])  # fmt: skip

    assert actions == [XDP_REDIRECT, XDP_REDIRECT, XDP_PASS, XDP_REDIRECT,
                       XDP_PASS, XDP_PASS, XDP_PASS, XDP_PASS]  # fmt: skip
    assert _deltas(before, dp.maps.xdp_stats()) == {
        "wire_redirect": 1,
        "wire_pass_kernel_sent": 3,
        "pod_redirect": 2,
        "pod_pass_tcp_kernel": 2,
    }
    assert dp.maps.flows() == {FLOW}
    assert dp.flow_info(FLOW) == (lib.RL_FLOW_KERNEL, 0)


def test_wire_leaves_an_existing_flow_entry_alone(
    make_datapath: MakeDatapath, xsk: XskSocket
) -> None:
    """from_wire only inserts an absent flow (lookup first): a present entry is not rewritten.
    The seeded pad value is a marker an update would have reset to 0."""
    dp = make_datapath(tcp_mode=AUTO)
    _setup(dp, SERVED, xsk)
    dp.put_flow(FLOW, pad=0x5EED)
    assert dp.run(WIRE, KERNEL_TCP)[0] == XDP_PASS
    assert dp.flow_info(FLOW) == (lib.RL_FLOW_KERNEL, 0x5EED)
    assert dp.maps.flows() == {FLOW}


def test_ring_mode_ignores_the_flows_from_wire_records(
    make_datapath: MakeDatapath, xsk: XskSocket
) -> None:
    """from_wire records kernel-sent flows whatever from_pod's mode (it has no such setting);
    in RING mode from_pod never consults them."""
    dp = make_datapath(tcp_mode=RING)
    _setup(dp, SERVED, xsk)
    assert dp.run(WIRE, KERNEL_TCP)[0] == XDP_PASS
    assert dp.maps.flows() == {FLOW}
    assert dp.run(POD, pod_tcp())[0] == XDP_REDIRECT


# --- the compiled-in defaults -------------------------------------------------------------


def test_tcp_mode_defaults_to_auto(make_datapath: MakeDatapath, xsk: XskSocket) -> None:
    """from_pod loaded without rl_cfg_tcp_mode behaves as RL_TCP_AUTO."""
    dp = make_datapath(tcp_mode=None)
    _setup(dp, SERVED, xsk)
    assert _run_all(dp, [(POD, pod_tcp()), (POD, pod_tcp(3000)), (POD, pod_tcp())]) == [
        XDP_REDIRECT, XDP_PASS, XDP_PASS,
    ]  # fmt: skip
    stats = dp.maps.xdp_stats()
    assert (stats["pod_redirect"], stats["pod_flow_to_kernel"], stats["pod_pass_tcp_kernel"]) == (
        1, 1, 2,
    )  # fmt: skip
    assert dp.maps.flows() == {FLOW}


def test_sport_ranges_are_disjoint_and_adjacent() -> None:
    """abi.h: the kernel device's range lies just below the ring core's, which ends at 65535."""
    assert lib.RL_KERNEL_SPORT_MIN <= lib.RL_KERNEL_SPORT_MAX
    assert lib.RL_KERNEL_SPORT_MAX + 1 == lib.RL_RING_SPORT_MIN
    assert lib.RL_RING_SPORT_MIN <= lib.RL_RING_SPORT_MAX == 0xFFFF


@pytest.mark.parametrize(
    ("sport", "action", "counter"),
    [
        (lib.RL_KERNEL_SPORT_MIN, XDP_PASS, "wire_pass_kernel_sent"),
        (lib.RL_KERNEL_SPORT_MAX, XDP_PASS, "wire_pass_kernel_sent"),
        (lib.RL_RING_SPORT_MIN, XDP_REDIRECT, "wire_redirect"),
        (lib.RL_RING_SPORT_MAX, XDP_REDIRECT, "wire_redirect"),
        (lib.RL_KERNEL_SPORT_MIN - 1, XDP_PASS, "wire_pass_kernel_sent"),
        (0, XDP_PASS, "wire_pass_kernel_sent"),
    ],
)
def test_ring_sport_range_defaults_to_abi(
    make_datapath: MakeDatapath, xsk: XskSocket, sport: int, action: int, counter: str
) -> None:
    """from_wire loaded without rl_cfg_ring_sport_min/max uses abi.h's ring range."""
    dp = make_datapath(ring_sports=None)
    _setup(dp, SERVED, xsk)
    before = dp.maps.xdp_stats()
    assert dp.run(WIRE, wire(sport=sport))[0] == action
    assert _deltas(before, dp.maps.xdp_stats()) == {counter: 1}
