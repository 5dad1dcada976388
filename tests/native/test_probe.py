"""Link probes (agent/xdp/src/probe.c) on buffers and invented clocks, under ASan/UBSan.

Frames are checked byte for byte against packets.py's independent builders; the bookkeeping
(deadlines counted in requests, the 64-request loss window, RTT EWMA and jitter, late and
foreign replies, peers following the routes) against a few lines of Python arithmetic.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import replace
from typing import Any

import pytest

from .packets import (
    ETH_P_IP,
    IPPROTO_UDP,
    VXLAN_PORT,
    Csum,
    eth,
    ip4,
    ipv4,
    mac,
    udp,
    vxlan,
    vxlan_frame,
)
from .pkt_harness import EncapParams, PktHarness, ProbeMsg

pytestmark = pytest.mark.native

VNI = 0x00BEEF
MS = 1_000_000
US = 1_000
OUR_IP, PEER_IP = ip4("192.168.250.1"), ip4("192.168.250.2")
PARAMS = EncapParams(
    outer_src_mac=mac("02:aa:00:00:00:01"),
    outer_dst_mac=mac("02:bb:00:00:00:02"),
    inner_src_mac=mac("02:cc:00:00:00:03"),
    inner_dst_mac=mac("02:dd:00:00:00:04"),
    outer_saddr=OUR_IP,
    outer_daddr=PEER_IP,
    vni=VNI,
    dport=VXLAN_PORT,
    sport_min=49152,
    sport_max=65535,
    ttl=64,
)


def payload(pkt: PktHarness, m: ProbeMsg, *, magic: int | None = None,
            version: int | None = None) -> bytes:
    """The probe payload as probe.h lays it out, written independently of probe.c."""
    c = pkt.consts
    return struct.pack("!IBBHII4s4sQ", c.PROBE_MAGIC if magic is None else magic,
                       c.PROBE_VERSION if version is None else version, m.type, 0, m.seq,
                       m.nonce, m.sender, m.target, m.tx_ns)


def probe_frame(pkt: PktHarness, m: ProbeMsg, *, sport: int = 50000, inner_type: int = 0,
                body: bytes | None = None, src_mac: bytes = mac("02:00:00:00:01:01"),
                dst_mac: bytes = mac("02:00:00:00:01:02"), **outer: Any) -> bytes:
    """A probe as it arrives from the wire (packets.py's VXLAN builder around it)."""
    inner = eth(PARAMS.inner_dst_mac, PARAMS.inner_src_mac,
                inner_type or pkt.consts.PROBE_ETHERTYPE)
    inner += payload(pkt, m) if body is None else body
    return vxlan_frame(inner, vni=VNI, sport=sport, src_mac=src_mac, dst_mac=dst_mac,
                       saddr=m.sender, daddr=m.target, **outer)


def request(pkt: PktHarness, **kw: int) -> ProbeMsg:
    fields = {"type": pkt.consts.PROBE_REQUEST, "seq": 7, "nonce": 0xC0FFEE, "tx_ns": 123 * MS,
              **kw}
    return ProbeMsg(sender=OUR_IP, target=PEER_IP, **fields)


# -- the frame ---------------------------------------------------------------------------------


def test_request_is_vxlan_with_the_routes_headers_and_the_documented_payload(
        pkt: PktHarness) -> None:
    m = request(pkt, seq=0xFFFFFFFE, tx_ns=2**63 + 5)
    frame = pkt.probe_build(PARAMS, 1234, m)
    assert len(frame) == pkt.consts.PROBE_FRAME_LEN
    sport = PARAMS.sport_min + 1234 % (PARAMS.sport_max - PARAMS.sport_min + 1)
    inner = eth(PARAMS.inner_dst_mac, PARAMS.inner_src_mac, pkt.consts.PROBE_ETHERTYPE)
    seg = udp(vxlan(inner + payload(pkt, m), vni=VNI), sport=sport, dport=VXLAN_PORT,
              csum=Csum.ZERO)
    expected = eth(PARAMS.outer_dst_mac, PARAMS.outer_src_mac) + ipv4(
        seg, saddr=OUR_IP, daddr=PEER_IP, proto=IPPROTO_UDP, ttl=64, df=True)
    assert frame == expected
    assert len(payload(pkt, m)) == pkt.consts.PROBE_MSG_LEN


def test_parse_reads_back_every_field(pkt: PktHarness) -> None:
    m = request(pkt, type=pkt.consts.PROBE_REPLY, seq=2**32 - 1, nonce=1, tx_ns=2**64 - 1)
    for frame in (pkt.probe_build(PARAMS, 0, m), probe_frame(pkt, m)):
        got = pkt.probe_parse(frame, VNI, VXLAN_PORT)
        assert (got.vxlan, got.match, got.ret, got.msg) == (0, True, 0, m)


@pytest.mark.parametrize("case", ["magic", "version", "type", "short", "ipv4", "trailing"])
def test_parse_refuses_what_is_not_a_probe_of_ours(pkt: PktHarness, case: str) -> None:
    m = request(pkt)
    frame, match, want = probe_frame(pkt, m), True, -errno.EBADMSG
    if case == "magic":
        frame = probe_frame(pkt, m, body=payload(pkt, m, magic=0x524C5043))
    elif case == "version":
        frame = probe_frame(pkt, m, body=payload(pkt, m, version=2))
        want = -errno.EPROTONOSUPPORT
    elif case == "type":
        frame = probe_frame(pkt, replace(m, type=3))
    elif case == "short":  # long enough for rl_parse_vxlan(), not for a payload
        frame = probe_frame(pkt, m, body=payload(pkt, m)[:24])
    elif case == "ipv4":  # pod traffic: never taken for a probe
        frame, match = probe_frame(pkt, m, inner_type=ETH_P_IP), False
    else:  # bytes after the UDP datagram (Ethernet padding) are not the probe's
        frame = probe_frame(pkt, m, body=payload(pkt, m)[:24]) + payload(pkt, m)[24:]
    got = pkt.probe_parse(frame, VNI, VXLAN_PORT)
    assert (got.vxlan, got.match, got.ret) == (0, match, want)


def reply_of(pkt: PktHarness, req: bytes, *, src_mac: bytes, dst_mac: bytes, sport: int) -> bytes:
    """The reply to req as probe.h describes it, built from req's bytes by packets.py."""
    saddr, daddr = req[26:30], req[30:34]
    inner = req[50:]
    pl = bytearray(inner[14:14 + 32])
    pl[5] = pkt.consts.PROBE_REPLY
    new_inner = inner[6:12] + inner[0:6] + inner[12:14] + bytes(pl)
    seg = udp(vxlan(new_inner, vni=VNI), sport=sport, dport=VXLAN_PORT, csum=Csum.ZERO)
    return eth(dst_mac, src_mac) + ipv4(seg, saddr=daddr, daddr=saddr, proto=IPPROTO_UDP,
                                         ttl=64, df=True)


OUR_MAC, NEXT_HOP = mac("02:11:11:11:11:11"), mac("02:22:22:22:22:22")


@pytest.mark.parametrize("dst_mac", [None, NEXT_HOP])
def test_answer_turns_the_request_round_in_place(pkt: PktHarness, dst_mac: bytes | None) -> None:
    """Addresses swapped, the request's source port kept (it is in the ring range), back to
    the route's next hop or else the request's sender, payload untouched but for the type;
    padding after the probe is cut off."""
    m = request(pkt, seq=99, tx_ns=555 * MS)
    req = probe_frame(pkt, m, sport=50123) + b"\x00" * 10
    ret, frame = pkt.probe_answer(req, vni=VNI, port=VXLAN_PORT, src_mac=OUR_MAC,
                                  dst_mac=dst_mac, sport_min=49152, sport_max=65535)
    assert ret == pkt.consts.PROBE_FRAME_LEN
    assert frame == reply_of(pkt, req, src_mac=OUR_MAC, dst_mac=dst_mac or req[6:12],
                             sport=50123)
    back = pkt.probe_parse(frame, VNI, VXLAN_PORT).msg
    assert back == replace(m, type=pkt.consts.PROBE_REPLY)


def test_answer_keeps_its_source_port_in_the_ring_range(pkt: PktHarness) -> None:
    req = probe_frame(pkt, request(pkt), sport=40000)
    ret, frame = pkt.probe_answer(req, vni=VNI, port=VXLAN_PORT, src_mac=OUR_MAC, dst_mac=None,
                                  sport_min=49152, sport_max=65535)
    assert ret > 0 and struct.unpack("!H", frame[34:36])[0] == 49152


def test_answer_refuses_outer_ip_options(pkt: PktHarness) -> None:
    req = probe_frame(pkt, request(pkt), ip_options=b"\x01\x01\x01\x00")
    ret, _ = pkt.probe_answer(req, vni=VNI, port=VXLAN_PORT, src_mac=OUR_MAC, dst_mac=None,
                              sport_min=49152, sport_max=65535)
    assert ret == -errno.EBADMSG


# -- the bookkeeping ---------------------------------------------------------------------------


@pytest.mark.parametrize(("interval_ms", "deadline"),
                         [(1000, 3), (60000, 3), (500, 3), (333, 4), (100, 10), (10, 100)])
def test_deadline_is_three_intervals_and_at_least_a_second(
        pkt: PktHarness, interval_ms: int, deadline: int) -> None:
    assert pkt.pt_init(max_peers=4, interval_ms=interval_ms, nonce=1) == deadline
    c = pkt.consts
    assert deadline == max(c.PROBE_DEADLINE_INTERVALS, -(-c.PROBE_DEADLINE_MIN_MS // interval_ms))


def tdiv(a: int, b: int) -> int:
    """C's integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def test_rtt_min_max_avg_and_jitter_follow_the_echoed_timestamps(pkt: PktHarness) -> None:
    pkt.pt_init(max_peers=4, interval_ms=100, nonce=42)
    assert pkt.pt_ref(PARAMS, 1000) == (0, 1)
    rtts = [300 * US, 350 * US, 200 * US, 20 * MS, 310 * US, 305 * US]
    avg = jitter = 0
    now = 10**12
    for i, rtt in enumerate(rtts):
        m = pkt.pt_send(PEER_IP, now)
        assert (m.seq, m.nonce, m.tx_ns, m.sender, m.target) == (1000 + i, 42, now, OUR_IP,
                                                                 PEER_IP)
        assert m.type == pkt.consts.PROBE_REQUEST
        assert pkt.pt_reply(replace(m, type=pkt.consts.PROBE_REPLY), now + rtt) \
            == pkt.consts.PROBE_IN_TIME
        if i == 0:
            avg = rtt
        else:
            avg += tdiv(rtt - avg, 8)
            jitter += tdiv(abs(rtt - rtts[i - 1]) - jitter, 16)
        last_reply = now + rtt
        now += 100 * MS
    st = pkt.pt_stat(PEER_IP)
    assert st is not None
    assert st["received"] == st["sent"] == len(rtts)
    assert (st["rtt_last_ns"], st["rtt_min_ns"], st["rtt_max_ns"]) == (rtts[-1], min(rtts),
                                                                       max(rtts))
    assert (st["rtt_avg_ns"], st["jitter_ns"]) == (avg, jitter)
    assert st["last_reply_ns"] == last_reply
    assert st["node_ip"] == PEER_IP.hex()


def send_round(pkt: PktHarness, answered: list[bool], now: int) -> int:
    """Send one request per entry, replying at once to those marked True; returns the time."""
    for ok in answered:
        m = pkt.pt_send(PEER_IP, now)
        if ok:
            assert pkt.pt_reply(m, now + 100 * US) == pkt.consts.PROBE_IN_TIME
        now += 100 * MS
    return now


@pytest.mark.parametrize("interval_ms", [100, 10])
def test_loss_counts_decided_requests_over_a_sliding_window(
        pkt: PktHarness, interval_ms: int) -> None:
    """Against a model: a request is decided once `deadline` more were sent; the window is
    the last RL_PROBE_WINDOW decided ones. At 10 ms the deadline (100 requests) is longer
    than the window."""
    k = pkt.pt_init(max_peers=4, interval_ms=interval_ms, nonce=1)
    window = pkt.consts.PROBE_WINDOW
    pkt.pt_ref(PARAMS, 5)
    history: list[bool] = []
    now = 10**9
    rounds = [[False] * k, [True, False] * 20, [False] * (window + k), [True] * (k + 16),
              [True, True, False] * 30]
    for i, answered in enumerate(rounds):
        now = send_round(pkt, answered, now)
        history += answered
        decided = history[:len(history) - k]
        last = decided[-window:] if decided else []
        st = pkt.pt_stat(PEER_IP)
        assert st is not None
        assert (st["sent"], st["received"]) == (len(history), sum(history))
        assert st["lost"] == decided.count(False)
        assert (st["window"], st["lost_window"]) == (len(last), last.count(False))
        assert st["loss_window_ppm"] == (last.count(False) * 10**6 // len(last) if last else 0)
        if i == 0:  # nothing has reached its deadline: no loss can be claimed yet
            assert (st["window"], st["loss_window_ppm"]) == (0, 0)
        if i == 2:  # a window of nothing but losses
            assert (st["window"], st["loss_window_ppm"]) == (window, 10**6)


def test_late_and_repeated_replies_are_counted_late_never_received(pkt: PktHarness) -> None:
    k = pkt.pt_init(max_peers=4, interval_ms=1000, nonce=1)
    pkt.pt_ref(PARAMS, 2**32 - 2)  # and the sequence numbers wrap on the way
    now = 10**9
    first = pkt.pt_send(PEER_IP, now)
    second = pkt.pt_send(PEER_IP, now + 1000 * MS)
    assert second.seq == 2**32 - 1
    assert pkt.pt_reply(second, now + 1001 * MS) == pkt.consts.PROBE_IN_TIME
    assert pkt.pt_reply(second, now + 1002 * MS) == pkt.consts.PROBE_LATE  # repeated
    send_round(pkt, [False] * k, now + 2000 * MS)  # first's deadline passes: lost
    assert pkt.pt_reply(first, now + 9000 * MS) == pkt.consts.PROBE_LATE
    st = pkt.pt_stat(PEER_IP)
    assert st is not None
    assert (st["received"], st["late"], st["lost"], st["window"]) == (1, 2, 1, 2)
    assert st["rtt_max_ns"] == 1 * MS  # the late reply's 9 s never became an RTT


def test_foreign_replies_are_refused_and_change_nothing(pkt: PktHarness) -> None:
    pkt.pt_init(max_peers=4, interval_ms=1000, nonce=77)
    pkt.pt_ref(PARAMS, 100)
    now = 10**9
    m = pkt.pt_send(PEER_IP, now)
    before = pkt.pt_stat(PEER_IP)
    assert pkt.pt_reply(replace(m, nonce=78), now + MS) == -errno.ESTALE  # an earlier agent
    assert pkt.pt_reply(replace(m, sender=ip4("192.168.250.9")), now + MS) == -errno.ESTALE
    assert pkt.pt_reply(replace(m, target=ip4("192.168.250.9")), now + MS) == -errno.ENOENT
    assert pkt.pt_reply(replace(m, seq=101), now + MS) == -errno.ERANGE  # never sent
    assert pkt.pt_reply(replace(m, seq=100 + 2**31), now + MS) == -errno.ERANGE
    assert pkt.pt_reply(m, now - 1) == -errno.ERANGE  # sent after it arrived?
    assert pkt.pt_stat(PEER_IP) == before
    assert pkt.pt_reply(m, now + MS) == pkt.consts.PROBE_IN_TIME


def test_peers_follow_the_routes_and_are_bounded(pkt: PktHarness) -> None:
    pkt.pt_init(max_peers=3, interval_ms=1000, nonce=1)
    nodes = [ip4(f"192.168.250.{i}") for i in range(2, 6)]
    for ip in nodes[:3]:
        assert pkt.pt_ref(replace(PARAMS, outer_daddr=ip), 1) == (0, nodes.index(ip) + 1)
    # a second route to a node: no new peer, its parameters are the latest route's
    moved = replace(PARAMS, outer_daddr=nodes[0], outer_saddr=ip4("192.168.251.1"))
    assert pkt.pt_ref(moved, 1) == (0, 3)
    assert pkt.pt_send(nodes[0], 1).sender == ip4("192.168.251.1")
    assert pkt.pt_ref(replace(PARAMS, outer_daddr=nodes[3]), 1) == (-errno.ENOSPC, 3)
    assert pkt.pt_unref(nodes[0]) == 3  # one route left
    assert pkt.pt_unref(nodes[0]) == 2  # forgotten, with its stats
    assert pkt.pt_stat(nodes[0]) is None
    assert sorted(pkt.pt_list()) == sorted(nodes[1:3])  # positions stay right
    assert pkt.pt_unref(nodes[0]) == 2  # unknown: no-op
    assert pkt.pt_ref(replace(PARAMS, outer_daddr=nodes[3]), 1) == (0, 3)
    st = pkt.pt_stat(nodes[3])
    assert st is not None and st["sent"] == 0
