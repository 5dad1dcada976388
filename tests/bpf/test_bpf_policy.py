"""Network policy in rl_from_pod and rl_from_wire (bpf/lib/policy.h) under BPF_PROG_TEST_RUN, and
the Python side that installs it and reads the telemetry back (agent.xdp.policy_maps).

The truth table runs each packet twice on one datapath: under the row's policy, then with no
policy at all. An allowed packet must do exactly what it does without a policy (same action,
same counters: policy adds no other outcome), a denied one is an XDP_DROP counted by the
check's reason and nothing else. Each decision under a policy leaves exactly one flow sample
(the harness loads both programs with rl_cfg_flow_sample_every = 1); none is left without one.

The scenario of test_bpf_programs: the test device is the veth of LOCAL_POD; OTHER_POD is
another pod of this node; REMOTE_POD (10.244.2.0/24) and ELSEWHERE (10.244.3.0/24) are pods of
node B.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

import pytest

from agent.policy.model import Direction
from agent.xdp.bpfobj import BpfError, lib
from agent.xdp.policy_maps import (
    FlowSample,
    FlowSampleReader,
    PolicyEntry,
    PortRange,
    TrackedFlow,
    endpoint_counter_names,
)

from ..native.packets import (
    ETH_HLEN,
    IPPROTO_ICMP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    eth,
    ip4,
    ipv4,
    tcp,
    udp,
)
from .test_bpf_programs import (
    EP_SLOT,
    KERNEL_SPORT,
    LOCAL_POD,
    OTHER_MAC,
    OTHER_POD,
    POD,
    POD_MAC,
    REMOTE_POD,
    SERVED,
    WIRE,
    Maps,
    _deltas,
    _setup,
    wire,
)
from .xdp_harness import (
    NODE_B,
    XDP_DROP,
    XDP_PASS,
    XDP_REDIRECT,
    Datapath,
    MakeDatapath,
    XskSocket,
    needs_root,
)

pytestmark = [pytest.mark.bpf, needs_root]

IPPROTO_SCTP = 132
IPPROTO_GRE = 47  # a protocol without ports
ICMP_ECHO_REPLY = 0
ICMP_ECHO = 8

ELSEWHERE = "10.244.3.4"
EGRESS = Direction.EGRESS
INGRESS = Direction.INGRESS
ALLOW = lib.RL_VERDICT_ALLOW
DENY = lib.RL_VERDICT_DENY
REPLY = lib.RL_VERDICT_REPLY
AT_POD = lib.RL_POINT_FROM_POD
AT_WIRE = lib.RL_POINT_FROM_WIRE

POD_PORT = 40000
PEER_PORT = 5201
RING = (50000 + 60000) // 2  # a ring core source port (the harness's range is 50000..60000)

# Both remote podCIDRs on node B, and the ring core serving both directions.
NODE_MAPS = Maps(remote_cidrs=(("10.244.2.0/24", NODE_B), ("10.244.3.0/24", NODE_B)),
                 xsk_slots=SERVED.xsk_slots)

# --- policies -------------------------------------------------------------------------------

ANY = PortRange(lib.RL_PROTO_ANY)
ICMP = PortRange(IPPROTO_ICMP)


def TCP(lo: int, hi: int | None = None) -> PortRange:
    """A TCP range lo..hi (just lo without hi): the rule's destination ports."""
    return PortRange(IPPROTO_TCP, lo, lo if hi is None else hi)


def UDP(lo: int, hi: int | None = None) -> PortRange:
    """A UDP range lo..hi (just lo without hi): the rule's destination ports."""
    return PortRange(IPPROTO_UDP, lo, lo if hi is None else hi)


def SCTP(lo: int, hi: int | None = None) -> PortRange:
    """A SCTP range lo..hi (just lo without hi): the rule's destination ports."""
    return PortRange(IPPROTO_SCTP, lo, lo if hi is None else hi)


def rules(ep: str, direction: Direction, *allow: tuple[str, tuple[PortRange, ...]]
          ) -> tuple[PolicyEntry, ...]:
    """`ep` isolated in `direction`: each (peer CIDR, ranges) of `allow`, and a 0.0.0.0/0 deny
    unless `allow` has its own 0.0.0.0/0 entry. What the agent's compiler produces."""
    entries = [PolicyEntry(IPv4Address(ep), direction, IPv4Network(cidr), ranges)
               for cidr, ranges in allow]
    if not any(e.peer.prefixlen == 0 for e in entries):
        entries.append(PolicyEntry(IPv4Address(ep), direction, IPv4Network("0.0.0.0/0"), ()))
    return tuple(entries)


# --- packets --------------------------------------------------------------------------------


def l4(proto: int, sport: int, dport: int, icmp_type: int, ident: int) -> bytes:
    """An L4 header (and some payload) of `proto`, ports in network order where it has them."""
    if proto == IPPROTO_TCP:
        return tcp(b"t" * 20, sport=sport, dport=dport)
    if proto == IPPROTO_UDP:
        return udp(b"u" * 20, sport=sport, dport=dport)
    if proto == IPPROTO_SCTP:
        return struct.pack("!HHII", sport, dport, 0x1234, 0) + b"s" * 20
    if proto == IPPROTO_ICMP:
        return struct.pack("!BBHHH", icmp_type, 0, 0, ident, 1) + b"i" * 20
    return b"g" * 28


def frame(proto: int = IPPROTO_UDP, *, saddr: str, daddr: str, sport: int, dport: int,
          icmp_type: int = ICMP_ECHO, ident: int = 0, mf: bool = False, frag_offset: int = 0,
          src_mac: bytes = POD_MAC) -> bytes:
    """An IPv4 frame; with frag_offset a later fragment (payload where L4 would be)."""
    payload = l4(proto, sport, dport, icmp_type, ident)
    if frag_offset:
        payload = b"\xee" * len(payload)
    return eth(src=src_mac) + ipv4(payload, saddr=ip4(saddr), daddr=ip4(daddr), proto=proto,
                                   mf=mf, frag_offset=frag_offset)


def pod(proto: int = IPPROTO_UDP, *, daddr: str = REMOTE_POD, sport: int = POD_PORT,
        dport: int = PEER_PORT, icmp_type: int = ICMP_ECHO, ident: int = 0, mf: bool = False,
        frag_offset: int = 0, src_mac: bytes = POD_MAC) -> bytes:
    """LOCAL_POD -> daddr, as from_pod sees it."""
    return frame(proto, saddr=LOCAL_POD, daddr=daddr, sport=sport, dport=dport,
                 icmp_type=icmp_type, ident=ident, mf=mf, frag_offset=frag_offset,
                 src_mac=src_mac)


def big_tcp() -> bytes:
    """A BIG TCP super-frame as the pod's kernel hands it over: IPv4 total length 0."""
    f = bytearray(pod(IPPROTO_TCP))
    f[ETH_HLEN + 2:ETH_HLEN + 4] = b"\0\0"
    return bytes(f)


def from_wire(proto: int = IPPROTO_UDP, *, saddr: str = REMOTE_POD, daddr: str = LOCAL_POD,
              sport: int = POD_PORT, dport: int = PEER_PORT, outer_sport: int = RING,
              icmp_type: int = ICMP_ECHO, ident: int = 0, frag_offset: int = 0) -> bytes:
    """saddr -> daddr (a local pod), inside VXLAN from node B (its ring core by default)."""
    inner = frame(proto, saddr=saddr, daddr=daddr, sport=sport, dport=dport,
                  icmp_type=icmp_type, ident=ident, frag_offset=frag_offset)
    return wire(inner, sport=outer_sport)


# --- the truth table ------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    name: str
    policy: tuple[PolicyEntry, ...] | None  # None: no policy installed
    prog: str
    packet: bytes
    allowed: bool
    denied_by: Direction = EGRESS  # the direction of the check that denies (when not allowed)


def _drop_counter(row: Row) -> str:
    if row.prog == WIRE:
        return "wire_drop_policy_ingress"
    return "pod_drop_policy_egress" if row.denied_by == EGRESS else "pod_drop_policy_ingress"


# Egress isolations of LOCAL_POD used by several rows
EXCEPT_24 = rules(LOCAL_POD, EGRESS, ("10.244.0.0/16", (ANY,)), ("10.244.2.0/24", ()))
FEWER_24 = rules(LOCAL_POD, EGRESS, ("10.244.0.0/16", (TCP(80), UDP(53))),
                 ("10.244.2.0/24", (TCP(80),)), ("10.244.2.3/32", (TCP(80), TCP(443))))
PORTS = rules(LOCAL_POD, EGRESS, ("0.0.0.0/0", (TCP(8000, 8080), UDP(53), UDP(0, 10),
                                                TCP(65535))))
ICMP_ONLY = rules(LOCAL_POD, EGRESS, ("10.244.2.0/24", (ICMP,)))
ICMP_PORTS = rules(LOCAL_POD, EGRESS, ("10.244.2.0/24", (PortRange(IPPROTO_ICMP, 7, 7),)))
ANY_24 = rules(LOCAL_POD, EGRESS, ("10.244.2.0/24", (ANY,)))
UDP_5201 = rules(LOCAL_POD, EGRESS, ("0.0.0.0/0", (UDP(5201),)))
ALL_UDP_PORTS = rules(LOCAL_POD, EGRESS, ("0.0.0.0/0", (UDP(0, 65535),)))
ALL_TCP_PORTS = rules(LOCAL_POD, EGRESS, ("0.0.0.0/0", (TCP(0, 65535),)))
SCTP_5201 = rules(LOCAL_POD, EGRESS, ("0.0.0.0/0", (SCTP(5201),)))
GRE_ONLY = rules(LOCAL_POD, EGRESS, ("0.0.0.0/0", (PortRange(IPPROTO_GRE),)))
IN_FROM_B = rules(LOCAL_POD, INGRESS, ("10.244.2.0/24", (UDP(5201), TCP(80))))
OTHER_IN_DENY = rules(OTHER_POD, INGRESS)
OTHER_IN_FROM_LOCAL = rules(OTHER_POD, INGRESS, (f"{LOCAL_POD}/32", (UDP(5201),)))

# fmt: off
ROWS = [
    # not isolated: allowed
    Row("no policy", None, POD, pod(), True),
    Row("empty policy", (), POD, pod(), True),
    Row("another pod isolated", rules(OTHER_POD, EGRESS), POD, pod(), True),
    Row("ingress isolation leaves egress alone", rules(LOCAL_POD, INGRESS), POD, pod(), True),
    Row("egress isolation of a remote pod is not ours", rules(REMOTE_POD, EGRESS), POD, pod(),
        True),
    # isolated, /0 deny: everything denied
    Row("deny all udp", rules(LOCAL_POD, EGRESS), POD, pod(), False),
    Row("deny all tcp", rules(LOCAL_POD, EGRESS), POD, pod(IPPROTO_TCP), False),
    Row("deny all tcp superframe", rules(LOCAL_POD, EGRESS), POD,
        eth() + ipv4(tcp(b"t" * 3000), saddr=ip4(LOCAL_POD), daddr=ip4(REMOTE_POD),
                     proto=IPPROTO_TCP), False),
    # BIG TCP (total length 0): forwarded by the kernel, but checked first
    Row("deny all big tcp", rules(LOCAL_POD, EGRESS), POD, big_tcp(), False),
    Row("big tcp allowed", rules(LOCAL_POD, EGRESS, ("0.0.0.0/0", (TCP(PEER_PORT),))), POD,
        big_tcp(), True),
    Row("deny all icmp", rules(LOCAL_POD, EGRESS), POD, pod(IPPROTO_ICMP), False),
    Row("deny all sctp", rules(LOCAL_POD, EGRESS), POD, pod(IPPROTO_SCTP), False),
    Row("deny all later fragment", rules(LOCAL_POD, EGRESS), POD, pod(frag_offset=100), False),
    Row("deny all to the internet", rules(LOCAL_POD, EGRESS), POD, pod(daddr="8.8.8.8"), False),
    # CIDR with an exception (a longer prefix, nranges 0)
    Row("except /24 denied", EXCEPT_24, POD, pod(), False),
    Row("except /24 outside allowed", EXCEPT_24, POD, pod(daddr=ELSEWHERE), True),
    Row("except /24 outside /16 denied", EXCEPT_24, POD, pod(daddr="8.8.8.8"), False),
    # the longest prefix alone decides (the compiler stores the union per prefix)
    Row("longest prefix /32", FEWER_24, POD, pod(IPPROTO_TCP, dport=443), True),
    Row("longest prefix /24", FEWER_24, POD, pod(IPPROTO_TCP, daddr="10.244.2.9", dport=443),
        False),
    Row("longest prefix /24 allows", FEWER_24, POD, pod(IPPROTO_TCP, daddr="10.244.2.9",
                                                         dport=80), True),
    Row("longest prefix /24 no udp", FEWER_24, POD, pod(daddr="10.244.2.9", dport=53), False),
    Row("longest prefix /16 udp", FEWER_24, POD, pod(daddr=ELSEWHERE, dport=53), True),
    # port ranges, at and beyond their edges
    Row("tcp below lo", PORTS, POD, pod(IPPROTO_TCP, dport=7999), False),
    Row("tcp at lo", PORTS, POD, pod(IPPROTO_TCP, dport=8000), True),
    Row("tcp inside", PORTS, POD, pod(IPPROTO_TCP, dport=8042), True),
    Row("tcp at hi", PORTS, POD, pod(IPPROTO_TCP, dport=8080), True),
    Row("tcp at hi+1", PORTS, POD, pod(IPPROTO_TCP, dport=8081), False),
    Row("tcp 65535", PORTS, POD, pod(IPPROTO_TCP, dport=65535), True),
    Row("tcp 65534", PORTS, POD, pod(IPPROTO_TCP, dport=65534), False),
    Row("udp single port", PORTS, POD, pod(dport=53), True),
    Row("udp single port hi+1", PORTS, POD, pod(dport=54), False),
    Row("udp single port lo-1", PORTS, POD, pod(dport=52), False),
    Row("udp port 0", PORTS, POD, pod(dport=0), True),
    Row("udp range of another protocol", PORTS, POD, pod(dport=8000), False),
    Row("tcp range of another protocol", PORTS, POD, pod(IPPROTO_TCP, dport=53), False),
    Row("the source port does not count", PORTS, POD, pod(sport=53, dport=5201), False),
    # SCTP ports, protocols without ports
    Row("sctp port", SCTP_5201, POD, pod(IPPROTO_SCTP), True),
    Row("sctp other port", SCTP_5201, POD, pod(IPPROTO_SCTP, dport=5202), False),
    Row("sctp range is not tcp", SCTP_5201, POD, pod(IPPROTO_TCP), False),
    Row("portless protocol range", GRE_ONLY, POD, pod(IPPROTO_GRE), True),
    Row("portless protocol not udp", GRE_ONLY, POD, pod(), False),
    # ICMP: ports ignored
    Row("icmp echo request", ICMP_ONLY, POD, pod(IPPROTO_ICMP, ident=7), True),
    Row("icmp echo reply", ICMP_ONLY, POD, pod(IPPROTO_ICMP, icmp_type=ICMP_ECHO_REPLY), True),
    Row("icmp range ports ignored", ICMP_PORTS, POD, pod(IPPROTO_ICMP, ident=9), True),
    Row("icmp rule is not udp", ICMP_ONLY, POD, pod(), False),
    Row("icmp rule other peer", ICMP_ONLY, POD, pod(IPPROTO_ICMP, daddr=ELSEWHERE), False),
    Row("icmp later fragment", ICMP_ONLY, POD, pod(IPPROTO_ICMP, frag_offset=100), True),
    # RL_PROTO_ANY: every protocol and port, fragments too
    Row("any tcp", ANY_24, POD, pod(IPPROTO_TCP, dport=1), True),
    Row("any udp", ANY_24, POD, pod(dport=65535), True),
    Row("any icmp", ANY_24, POD, pod(IPPROTO_ICMP), True),
    Row("any sctp", ANY_24, POD, pod(IPPROTO_SCTP), True),
    Row("any portless", ANY_24, POD, pod(IPPROTO_GRE), True),
    Row("any later fragment", ANY_24, POD, pod(frag_offset=100), True),
    Row("any other peer", ANY_24, POD, pod(daddr=ELSEWHERE), False),
    # later fragments: no ports, so only a range of every port matches
    Row("first fragment has ports", UDP_5201, POD, pod(mf=True), True),
    Row("later fragment port range", UDP_5201, POD, pod(frag_offset=100), False),
    Row("later fragment every port", ALL_UDP_PORTS, POD, pod(frag_offset=100), True),
    Row("later fragment every port other protocol", ALL_TCP_PORTS, POD, pod(frag_offset=100),
        False),
    Row("later fragment tcp every port", ALL_TCP_PORTS, POD,
        pod(IPPROTO_TCP, frag_offset=100), True),
    # same node: the destination's ingress is checked in from_pod (after the sender's egress)
    Row("same node ingress deny", OTHER_IN_DENY, POD, pod(daddr=OTHER_POD), False, INGRESS),
    Row("same node ingress allow", OTHER_IN_FROM_LOCAL, POD, pod(daddr=OTHER_POD), True),
    Row("same node ingress other port", OTHER_IN_FROM_LOCAL, POD,
        pod(daddr=OTHER_POD, dport=5202), False, INGRESS),
    Row("same node egress first", rules(LOCAL_POD, EGRESS) + OTHER_IN_DENY, POD,
        pod(daddr=OTHER_POD), False, EGRESS),
    Row("same node egress allows ingress denies",
        rules(LOCAL_POD, EGRESS, (f"{OTHER_POD}/32", (ANY,))) + OTHER_IN_DENY, POD,
        pod(daddr=OTHER_POD), False, INGRESS),
    Row("same node not isolated", rules(LOCAL_POD, INGRESS), POD, pod(daddr=OTHER_POD), True),
    # from_wire: the inner packet against its destination's ingress, ring and kernel senders
    Row("wire no policy", None, WIRE, from_wire(), True),
    Row("wire deny all ring", rules(LOCAL_POD, INGRESS), WIRE, from_wire(), False, INGRESS),
    Row("wire deny all kernel", rules(LOCAL_POD, INGRESS), WIRE,
        from_wire(outer_sport=KERNEL_SPORT), False, INGRESS),
    Row("wire deny all kernel tcp", rules(LOCAL_POD, INGRESS), WIRE,
        from_wire(IPPROTO_TCP, outer_sport=KERNEL_SPORT), False, INGRESS),
    Row("wire allowed port ring", IN_FROM_B, WIRE, from_wire(), True),
    Row("wire allowed port kernel", IN_FROM_B, WIRE, from_wire(outer_sport=KERNEL_SPORT), True),
    Row("wire allowed tcp", IN_FROM_B, WIRE, from_wire(IPPROTO_TCP, dport=80), True),
    Row("wire other port ring", IN_FROM_B, WIRE, from_wire(dport=5202), False, INGRESS),
    Row("wire other port kernel", IN_FROM_B, WIRE,
        from_wire(dport=5202, outer_sport=KERNEL_SPORT), False, INGRESS),
    Row("wire other peer", IN_FROM_B, WIRE, from_wire(saddr=ELSEWHERE), False, INGRESS),
    Row("wire later fragment", IN_FROM_B, WIRE, from_wire(frag_offset=100), False, INGRESS),
    Row("wire icmp", IN_FROM_B, WIRE, from_wire(IPPROTO_ICMP), False, INGRESS),
    Row("wire egress isolation leaves ingress alone", rules(LOCAL_POD, EGRESS), WIRE,
        from_wire(), True),
    Row("wire other local pod not isolated", rules(LOCAL_POD, INGRESS), WIRE,
        from_wire(daddr=OTHER_POD), True),
    Row("wire other local pod isolated", OTHER_IN_DENY, WIRE, from_wire(daddr=OTHER_POD),
        False, INGRESS),
]
# fmt: on


def _samples(dp: Datapath) -> list[FlowSample]:
    with FlowSampleReader(dp.maps.pin_dir) as reader:
        return reader.read(0, 1000)


def _expected_sample(row: Row) -> tuple[int, Direction, int]:
    """(verdict, direction, point) of the sample a row's decision leaves."""
    point = AT_WIRE if row.prog == WIRE else AT_POD
    if not row.allowed:
        return DENY, row.denied_by, point
    return ALLOW, INGRESS if row.prog == WIRE else EGRESS, point


@pytest.mark.parametrize("row", ROWS, ids=[r.name.replace(" ", "-") for r in ROWS])
def test_policy_verdict(row: Row, make_datapath: MakeDatapath, xsk: XskSocket) -> None:
    dp = make_datapath()
    _setup(dp, NODE_MAPS, xsk)
    if row.policy is not None:
        assert dp.policy.swap_policy(row.policy) == len(row.policy)
    before = dp.maps.xdp_stats()
    action, out = dp.run(row.prog, row.packet)
    moved = _deltas(before, dp.maps.xdp_stats())
    assert out == row.packet

    # the same packet without any policy
    dp.policy.clear_policy()
    dp.policy.flush_ct()
    before = dp.maps.xdp_stats()
    free_action, _ = dp.run(row.prog, row.packet)
    free_moved = _deltas(before, dp.maps.xdp_stats())
    assert free_action != XDP_DROP

    if row.allowed:
        assert (action, moved) == (free_action, free_moved)
    else:
        assert (action, moved) == (XDP_DROP, {_drop_counter(row): 1})
    samples = _samples(dp)
    if row.policy is None:
        assert samples == []
    else:
        assert [(s.verdict, s.direction, s.point) for s in samples] == [_expected_sample(row)]


def test_every_row_decides_what_it_says() -> None:
    """Sanity of the table: rows on both programs and both outcomes, each packet unique to its
    row's purpose (no two rows with the same policy and packet)."""
    assert {r.prog for r in ROWS} == {POD, WIRE}
    assert {r.allowed for r in ROWS if r.prog == WIRE} == {True, False}
    seen = {(r.policy, r.packet) for r in ROWS}
    assert len(seen) == len(ROWS)


# --- stateful: replies through rl_policy_ct -----------------------------------------------


@pytest.fixture
def dp(make_datapath: MakeDatapath, xsk: XskSocket) -> Datapath:
    """A datapath with the scenario's maps: the endpoint, both remote podCIDRs, sockets."""
    d = make_datapath()
    _setup(d, NODE_MAPS, xsk)
    return d


def _counts(dp: Datapath, *names: str) -> tuple[int, ...]:
    stats = dp.maps.xdp_stats()
    return tuple(stats[n] for n in names)


def test_reply_passes_although_the_replier_denies(dp: Datapath) -> None:
    """LOCAL_POD may send TCP to REMOTE_POD:80 but receives nothing; the replies of its own
    flow still pass, on the ring core's and the kernel's path, and only those."""
    dp.policy.swap_policy(rules(LOCAL_POD, EGRESS, ("10.244.2.0/24", (TCP(80),)))
                          + rules(LOCAL_POD, INGRESS))
    reply = from_wire(IPPROTO_TCP, sport=80, dport=POD_PORT)
    assert dp.run(WIRE, reply)[0] == XDP_DROP  # no flow yet

    assert dp.run(POD, pod(IPPROTO_TCP, dport=80))[0] == XDP_REDIRECT
    assert dp.policy.tracked_flows() == {
        TrackedFlow(IPv4Address(LOCAL_POD), IPv4Address(REMOTE_POD), POD_PORT, 80, IPPROTO_TCP)
    }
    assert dp.run(WIRE, reply)[0] == XDP_REDIRECT
    assert dp.run(WIRE, from_wire(IPPROTO_TCP, sport=80, dport=POD_PORT,
                                  outer_sport=KERNEL_SPORT))[0] == XDP_PASS
    # not the flow's reply: another port, another peer, another protocol
    assert dp.run(WIRE, from_wire(IPPROTO_TCP, sport=80, dport=POD_PORT + 1))[0] == XDP_DROP
    assert dp.run(WIRE, from_wire(IPPROTO_TCP, saddr=ELSEWHERE, sport=80,
                                  dport=POD_PORT))[0] == XDP_DROP
    assert dp.run(WIRE, from_wire(IPPROTO_UDP, sport=80, dport=POD_PORT))[0] == XDP_DROP
    assert _counts(dp, "policy_reply", "wire_drop_policy_ingress", "wire_redirect") == (2, 4, 1)
    verdicts = [(s.verdict, s.point) for s in _samples(dp)]
    assert verdicts == [(DENY, AT_WIRE), (ALLOW, AT_POD), (REPLY, AT_WIRE), (REPLY, AT_WIRE),
                        (DENY, AT_WIRE), (DENY, AT_WIRE), (DENY, AT_WIRE)]


def test_reply_from_pod_to_an_allowed_inbound_flow(dp: Datapath) -> None:
    """The other way round: REMOTE_POD may reach LOCAL_POD's UDP 53, LOCAL_POD may send
    nothing; its answers pass through from_pod, and nothing else it sends does."""
    dp.policy.swap_policy(rules(LOCAL_POD, INGRESS, ("0.0.0.0/0", (UDP(53),)))
                          + rules(LOCAL_POD, EGRESS))
    answer = pod(sport=53, dport=POD_PORT)
    assert dp.run(POD, answer)[0] == XDP_DROP
    assert dp.run(WIRE, from_wire(sport=POD_PORT, dport=53))[0] == XDP_REDIRECT
    assert dp.run(POD, answer)[0] == XDP_REDIRECT
    assert dp.run(POD, pod(sport=53, dport=POD_PORT + 1))[0] == XDP_DROP
    assert _counts(dp, "policy_reply", "pod_drop_policy_egress") == (1, 2)


def test_icmp_echo_reply_through_ct(dp: Datapath) -> None:
    """An echo request records (identifier, 0); the echo reply with that identifier passes the
    requester's ingress; another identifier does not, nor does a request the other way."""
    dp.policy.swap_policy(rules(LOCAL_POD, EGRESS, ("10.244.2.0/24", (ICMP,)))
                          + rules(LOCAL_POD, INGRESS))
    assert dp.run(POD, pod(IPPROTO_ICMP, ident=77))[0] == XDP_REDIRECT
    assert dp.policy.tracked_flows() == {
        TrackedFlow(IPv4Address(LOCAL_POD), IPv4Address(REMOTE_POD), 77, 0, IPPROTO_ICMP)
    }
    echo_reply = from_wire(IPPROTO_ICMP, icmp_type=ICMP_ECHO_REPLY, ident=77)
    assert dp.run(WIRE, echo_reply)[0] == XDP_REDIRECT
    assert dp.run(WIRE, from_wire(IPPROTO_ICMP, icmp_type=ICMP_ECHO_REPLY,
                                  ident=78))[0] == XDP_DROP
    assert dp.run(WIRE, from_wire(IPPROTO_ICMP, icmp_type=ICMP_ECHO, ident=77))[0] == XDP_DROP
    assert _counts(dp, "policy_reply", "wire_drop_policy_ingress") == (1, 2)
    # an echo reply is never recorded itself; it was no flow start
    assert len(dp.policy.tracked_flows()) == 1


def test_no_reply_without_the_forward_flow(dp: Datapath) -> None:
    """A 'reply' whose forward packet was never seen (or was denied) is checked like any
    packet; a denied forward packet records nothing."""
    dp.policy.swap_policy(rules(LOCAL_POD, EGRESS, ("10.244.3.0/24", (ANY,)))
                          + rules(LOCAL_POD, INGRESS))
    assert dp.run(POD, pod())[0] == XDP_DROP  # to REMOTE_POD: denied
    assert dp.policy.tracked_flows() == set()
    assert dp.run(WIRE, from_wire(sport=PEER_PORT, dport=POD_PORT))[0] == XDP_DROP
    assert _counts(dp, "policy_reply") == (0,)


def test_same_node_flow_denied_by_ingress_records_nothing(dp: Datapath) -> None:
    """LOCAL_POD -> OTHER_POD passes LOCAL_POD's egress but not OTHER_POD's ingress: no record,
    so OTHER_POD cannot 'answer' past its own egress policy. Once the flow is allowed, its
    replies from OTHER_POD pass although OTHER_POD's egress denies everything."""
    other_egress = rules(OTHER_POD, EGRESS)
    dp.policy.swap_policy(OTHER_IN_DENY + other_egress)
    assert dp.run(POD, pod(daddr=OTHER_POD))[0] == XDP_DROP
    assert dp.policy.tracked_flows() == set()

    dp.policy.swap_policy(OTHER_IN_FROM_LOCAL + other_egress)
    assert dp.run(POD, pod(daddr=OTHER_POD))[0] == XDP_PASS
    assert len(dp.policy.tracked_flows()) == 1
    # the test device now is OTHER_POD's veth: its answer, then something it was not asked
    dp.maps.set_endpoint(ifindex=dp.ifindex, slot=EP_SLOT, ip=IPv4Address(OTHER_POD),
                         mac=OTHER_MAC)
    answer = frame(saddr=OTHER_POD, daddr=LOCAL_POD, sport=PEER_PORT, dport=POD_PORT,
                   src_mac=OTHER_MAC)
    assert dp.run(POD, answer)[0] == XDP_PASS
    other = frame(saddr=OTHER_POD, daddr=LOCAL_POD, sport=PEER_PORT, dport=POD_PORT + 1,
                  src_mac=OTHER_MAC)
    assert dp.run(POD, other)[0] == XDP_DROP
    assert _counts(dp, "policy_reply", "pod_drop_policy_ingress", "pod_drop_policy_egress") == (
        1, 1, 1)


def test_flush_ct_forgets_replies(dp: Datapath) -> None:
    dp.policy.swap_policy(rules(LOCAL_POD, INGRESS))
    assert dp.run(POD, pod())[0] == XDP_REDIRECT
    reply = from_wire(sport=PEER_PORT, dport=POD_PORT)
    assert dp.run(WIRE, reply)[0] == XDP_REDIRECT
    assert dp.policy.flush_ct() == 1
    assert dp.policy.flush_ct() == 0
    assert dp.run(WIRE, reply)[0] == XDP_DROP


def test_no_policy_tracks_nothing(dp: Datapath) -> None:
    assert dp.run(POD, pod())[0] == XDP_REDIRECT
    assert dp.run(WIRE, from_wire())[0] == XDP_REDIRECT
    assert dp.policy.tracked_flows() == set()
    assert _counts(dp, "policy_reply") == (0,)


# --- generations ----------------------------------------------------------------------------


def test_swap_changes_verdicts_and_clear_restores_allow_all(dp: Datapath) -> None:
    a = rules(LOCAL_POD, EGRESS, ("10.244.2.0/24", (TCP(443),)))
    b = rules(LOCAL_POD, EGRESS, ("10.244.2.0/24", (TCP(80),)), ("10.244.3.0/24", (ANY,)))
    to_80, to_443 = pod(IPPROTO_TCP, dport=80), pod(IPPROTO_TCP, dport=443)
    assert not dp.policy.installed()
    assert dp.policy.installed_entries() == []

    assert dp.policy.swap_policy(a) == 2
    assert set(dp.policy.installed_entries()) == set(a)
    assert [dp.run(POD, p)[0] for p in (to_80, to_443)] == [XDP_DROP, XDP_REDIRECT]

    assert dp.policy.swap_policy(b) == 3
    assert set(dp.policy.installed_entries()) == set(b)
    dp.policy.flush_ct()
    assert [dp.run(POD, p)[0] for p in (to_80, to_443)] == [XDP_REDIRECT, XDP_DROP]

    dp.policy.clear_policy()
    dp.policy.clear_policy()  # idempotent
    assert not dp.policy.installed()
    assert dp.policy.installed_entries() == []
    assert [dp.run(POD, p)[0] for p in (to_80, to_443)] == [XDP_REDIRECT, XDP_REDIRECT]


def test_installed_entries_round_trip(dp: Datapath) -> None:
    """Every field survives the trie: endpoints, both directions, prefixes /0../32, ranges up
    to RL_POLICY_RANGES with every protocol and the port edges."""
    many = tuple(TCP(i * 100, i * 100 + 99) for i in range(lib.RL_POLICY_RANGES - 2))
    entries = (
        rules(LOCAL_POD, EGRESS, ("10.0.0.0/8", (*many, ANY, PortRange(IPPROTO_ICMP, 0, 0))),
              ("10.244.2.3/32", (UDP(0, 65535),)), ("192.168.0.0/24", ()))
        + rules(LOCAL_POD, INGRESS, ("0.0.0.0/0", (SCTP(1, 2),)))
        + rules(OTHER_POD, INGRESS, ("10.244.0.0/16", (PortRange(IPPROTO_GRE),)))
    )
    dp.policy.swap_policy(entries)
    assert set(dp.policy.installed_entries()) == set(entries)


def _bad(entries: tuple[PolicyEntry, ...], err: int, match: str, dp: Datapath) -> None:
    with pytest.raises(BpfError, match=match) as info:
        dp.policy.swap_policy(entries)
    assert info.value.errno == err


def test_failed_swap_keeps_the_old_policy(dp: Datapath) -> None:
    """Each refusal names what is wrong (and which endpoint), and leaves the policy in force."""
    old = rules(LOCAL_POD, EGRESS, ("10.244.2.0/24", (TCP(80),)))
    dp.policy.swap_policy(old)
    ep = IPv4Address(OTHER_POD)
    too_many = tuple(TCP(i) for i in range(lib.RL_POLICY_RANGES + 1))
    _bad(rules(OTHER_POD, EGRESS, ("10.0.0.0/8", too_many)), errno.E2BIG,
         rf"{OTHER_POD} egress 10\.0\.0\.0/8 has 17 port ranges", dp)
    _bad((PolicyEntry(ep, EGRESS, IPv4Network("10.0.0.0/8"), ()),), errno.EINVAL,
         rf"{OTHER_POD} egress has entries but no 0\.0\.0\.0/0 entry", dp)
    # found by the kernel (BPF_NOEXIST) with the new trie half filled: it is dropped too
    _bad(rules(OTHER_POD, INGRESS) * 2, errno.EINVAL, rf"{OTHER_POD} ingress 0\.0\.0\.0/0 twice",
         dp)
    _bad((PolicyEntry(ep, 7,  # type: ignore[arg-type]
              IPv4Network("0.0.0.0/0"), ()),), errno.EINVAL, "direction", dp)
    _bad(rules(OTHER_POD, EGRESS, ("0.0.0.0/0", (TCP(90, 80),))), errno.EINVAL,
         "invalid port range", dp)
    _bad(rules(OTHER_POD, EGRESS, ("0.0.0.0/0", (PortRange(256),))), errno.EINVAL,
         "invalid port range", dp)
    assert set(dp.policy.installed_entries()) == set(old)
    assert dp.run(POD, pod(IPPROTO_TCP, dport=80))[0] == XDP_REDIRECT
    assert dp.run(POD, pod(IPPROTO_TCP, dport=81))[0] == XDP_DROP


def test_too_many_entries_are_refused_before_any_work(dp: Datapath) -> None:
    entry = PolicyEntry(IPv4Address(LOCAL_POD), EGRESS, IPv4Network("0.0.0.0/0"), ())
    with pytest.raises(BpfError, match="131073 entries") as info:
        dp.policy.swap_policy([entry] * (lib.RL_MAX_POLICY_ENTRIES + 1))
    assert info.value.errno == errno.E2BIG
    assert not dp.policy.installed()


# --- per-endpoint counters ------------------------------------------------------------------


def test_endpoint_counters(dp: Datapath) -> None:
    """TX of the sender, RX of a local receiver (from_pod for same-node traffic, from_wire for
    the rest), drops on the end whose policy denied, spoofing on the pod's own entry. Only
    endpoints the agent gave an entry are counted; packets never create one."""
    local, other = IPv4Address(LOCAL_POD), IPv4Address(OTHER_POD)
    dp.policy.ensure_endpoint_stats(local)
    dp.policy.ensure_endpoint_stats(other)
    size = len(pod()) - 14  # IPv4 total length of the test frames
    assert dp.run(POD, pod())[0] == XDP_REDIRECT  # LOCAL tx
    assert dp.run(POD, pod(daddr=OTHER_POD))[0] == XDP_PASS  # LOCAL tx, OTHER rx
    assert dp.run(WIRE, from_wire())[0] == XDP_REDIRECT  # LOCAL rx (ring)
    assert dp.run(WIRE, from_wire(outer_sport=KERNEL_SPORT))[0] == XDP_PASS  # LOCAL rx (kernel)
    assert dp.run(WIRE, from_wire(daddr=OTHER_POD))[0] == XDP_PASS  # OTHER rx (not local)
    assert dp.run(POD, pod(src_mac=OTHER_MAC))[0] == XDP_DROP  # LOCAL spoof
    assert dp.run(POD, frame(saddr=OTHER_POD, daddr=REMOTE_POD, sport=1, dport=2))[0] == XDP_DROP

    dp.policy.swap_policy(rules(LOCAL_POD, EGRESS, (f"{OTHER_POD}/32", (ANY,)))
                          + rules(LOCAL_POD, INGRESS) + rules(OTHER_POD, INGRESS))
    assert dp.run(POD, pod())[0] == XDP_DROP  # LOCAL egress drop
    assert dp.run(POD, pod(daddr=OTHER_POD))[0] == XDP_DROP  # OTHER ingress drop
    assert dp.run(WIRE, from_wire())[0] == XDP_DROP  # LOCAL ingress drop
    assert dp.run(WIRE, from_wire(daddr=OTHER_POD, dport=1))[0] == XDP_DROP  # OTHER ingress

    stats = dp.policy.endpoint_stats()
    assert set(stats) == {local, other}
    assert stats[local] == {
        "tx_packets": 2, "tx_bytes": 2 * size, "rx_packets": 2, "rx_bytes": 2 * size,
        "drop_policy_egress": 1, "drop_policy_ingress": 1, "drop_spoof": 2,
    }  # fmt: skip
    assert stats[other] == {
        "tx_packets": 0, "tx_bytes": 0, "rx_packets": 2, "rx_bytes": 2 * size,
        "drop_policy_egress": 0, "drop_policy_ingress": 2, "drop_spoof": 0,
    }  # fmt: skip

    dp.policy.ensure_endpoint_stats(local)  # keeps what is there
    assert dp.policy.endpoint_stats()[local]["tx_packets"] == 2
    dp.policy.delete_endpoint_stats(other)
    dp.policy.delete_endpoint_stats(other)
    assert set(dp.policy.endpoint_stats()) == {local}


def test_endpoint_counter_names_come_from_the_enum() -> None:
    names = endpoint_counter_names()
    assert sorted(names) == list(range(lib.RL_EPC_MAX))
    assert names[lib.RL_EPC_TX_PACKETS] == "tx_packets"
    assert names[lib.RL_EPC_DROP_SPOOF] == "drop_spoof"


# --- flow samples ---------------------------------------------------------------------------


def test_flow_samples_read_back(dp: Datapath) -> None:
    """Every field of a sample as Python values: addresses, host-order ports, the IPv4 length."""
    dp.policy.swap_policy(rules(LOCAL_POD, EGRESS, ("10.244.2.0/24", (UDP(5201),))))
    assert dp.run(POD, pod(sport=1234, dport=5201))[0] == XDP_REDIRECT
    assert dp.run(POD, pod(IPPROTO_TCP, sport=1234, dport=443))[0] == XDP_DROP
    assert dp.run(WIRE, from_wire(IPPROTO_ICMP, ident=0xBEEF))[0] == XDP_REDIRECT
    with FlowSampleReader(dp.maps.pin_dir) as reader:
        first = reader.read(0, 2)
        rest = reader.read(0, 10)
        assert reader.read(0.02, 10) == []
    samples = first + rest
    assert (len(first), len(rest)) == (2, 1)
    assert samples[0].ts_ns <= samples[1].ts_ns <= samples[2].ts_ns
    size = len(pod()) - 14
    local, remote = IPv4Address(LOCAL_POD), IPv4Address(REMOTE_POD)
    assert [s._replace(ts_ns=0) for s in samples] == [
        FlowSample(0, local, remote, 1234, 5201, IPPROTO_UDP, ALLOW, EGRESS, AT_POD, size),
        FlowSample(0, local, remote, 1234, 443, IPPROTO_TCP, DENY, EGRESS, AT_POD,
                   len(pod(IPPROTO_TCP)) - 14),
        FlowSample(0, remote, local, 0xBEEF, 0, IPPROTO_ICMP, ALLOW, INGRESS, AT_WIRE,
                   len(pod(IPPROTO_ICMP)) - 14),
    ]


def test_sampling_off_by_default_but_denies_are_sampled(
    make_datapath: MakeDatapath, xsk: XskSocket
) -> None:
    """rl_cfg_flow_sample_every defaults to 0: no allowed packet is sampled, every deny is."""
    dp = make_datapath(flow_sample_every=None)
    _setup(dp, NODE_MAPS, xsk)
    dp.policy.swap_policy(rules(LOCAL_POD, EGRESS, ("10.244.2.0/24", (UDP(5201),))))
    for _ in range(5):
        assert dp.run(POD, pod())[0] == XDP_REDIRECT
    assert dp.run(POD, pod(dport=5202))[0] == XDP_DROP
    assert [(s.verdict, s.dport) for s in _samples(dp)] == [(DENY, 5202)]


def test_sampling_one_in_n(make_datapath: MakeDatapath, xsk: XskSocket) -> None:
    """rl_cfg_flow_sample_every = 4: about a quarter of the allowed packets (a random draw)."""
    dp = make_datapath(flow_sample_every=4)
    _setup(dp, NODE_MAPS, xsk)
    dp.policy.swap_policy(())
    assert dp.bench(POD, pod(), repeat=4000)[0] == XDP_REDIRECT
    with FlowSampleReader(dp.maps.pin_dir) as reader:
        n = len(reader.read(0, 5000))
    assert 700 < n < 1300


def test_full_sample_ring_costs_samples_not_packets(dp: Datapath) -> None:
    """Denied packets beyond the ring's room are still denied and counted; the samples that did
    not fit are counted as lost, and those that did are all there to read."""
    dp.policy.swap_policy(rules(LOCAL_POD, EGRESS))
    record = 8 + 32  # ring buffer header + struct rl_flow_sample
    room = lib.RL_FLOW_SAMPLES_BYTES // record
    runs = room + 500
    assert dp.bench(POD, pod(), repeat=runs)[0] == XDP_DROP
    lost, dropped = _counts(dp, "flow_samples_lost", "pod_drop_policy_egress")
    assert dropped == runs
    assert lost >= 500
    with FlowSampleReader(dp.maps.pin_dir) as reader:
        read = 0
        while batch := reader.read(0, 1024):
            read += len(batch)
    assert read + lost == runs
