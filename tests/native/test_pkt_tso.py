"""rl_tso_init()/rl_tso_next(): GSO-equivalent TCP segmentation of a descriptor chain.

A pod's veth hands the ring core 64 KiB TSO super-frames spread over up to RL_MAX_FRAGS
buffers of uneven size. Each test checks the segments twice: against a segmentation computed
independently in Python (byte for byte), and against the properties a receiver relies on
(payload reassembles, sequence numbers contiguous, checksums valid, flags where GSO puts them).
"""

from __future__ import annotations

import random

import pytest

from .packets import (
    ETH_HLEN,
    IP_DF,
    IPPROTO_TCP,
    TCP_ACK,
    TCP_CWR,
    TCP_ECE,
    TCP_FIN,
    TCP_PSH,
    Csum,
    Ipv4Header,
    TcpHeader,
    eth,
    ipv4,
    l4_checksum_ok,
    tcp,
    tcp_frame,
    udp_frame,
)
from .pkt_harness import PktHarness, TsoResult

pytestmark = pytest.mark.native

TS_OPTION = b"\x01\x01\x08\x0a" + bytes(range(8))
IP_OPTION = b"\x94\x04\x00\x00"  # router alert: options must be copied into every segment
MAX_TOT_LEN = 65535


def big_frame(payload_len: int, *, flags: int = TCP_ACK | TCP_PSH, seq: int = 0x10000000,
              ident: int = 4242, ip_options: bytes = IP_OPTION,
              tcp_options: bytes = TS_OPTION) -> bytes:
    """A pod's TSO super-frame: CHECKSUM_PARTIAL, payload of a recognisable random pattern."""
    payload = random.Random(payload_len).randbytes(payload_len)
    return tcp_frame(payload, flags=flags, seq=seq, ident=ident, ip_options=ip_options,
                     tcp_options=tcp_options, csum=Csum.PARTIAL)


def headers_len(frame: bytes) -> tuple[int, int, int]:
    """(IPv4 header, TCP header, Ethernet+IPv4+TCP) lengths of a frame."""
    ip = Ipv4Header.parse(frame)
    th = TcpHeader.parse(frame, ETH_HLEN + ip.hlen)
    return ip.hlen, th.hlen, ETH_HLEN + ip.hlen + th.hlen


# Ethernet + IPv4 with IP_OPTION + TCP with TS_OPTION: the first buffer must hold this much.
HDR_LEN = ETH_HLEN + 24 + 32


def split(frame: bytes, head: list[int], chunk: int = 4096) -> list[int]:
    """Buffer lengths: the given leading ones, then chunk-sized ones, the last one shorter."""
    lens = list(head)
    rest = len(frame) - sum(lens)
    assert rest >= 0
    while rest > 0:
        lens.append(min(chunk, rest))
        rest -= lens[-1]
    return lens


def reference_segments(frame: bytes, mtu: int) -> list[bytes]:
    """Segment frame as Linux GSO does, with packets.py's builders."""
    ip = Ipv4Header.parse(frame)
    th = TcpHeader.parse(frame, ETH_HLEN + ip.hlen)
    start = ETH_HLEN + ip.hlen + th.hlen
    payload = frame[start:ETH_HLEN + ip.tot_len]
    mss = mtu - ip.hlen - th.hlen
    chunks = [payload[i:i + mss] for i in range(0, len(payload), mss)] or [b""]
    out = []
    for i, chunk in enumerate(chunks):
        flags = th.flags
        if i != len(chunks) - 1:
            flags &= ~(TCP_FIN | TCP_PSH)
        if i != 0:
            flags &= ~TCP_CWR
        seg = tcp(chunk, sport=th.sport, dport=th.dport, seq=th.seq + i * mss, ack=th.ack,
                  flags=flags, window=th.window, urg=th.urg, options=th.options,
                  saddr=ip.saddr, daddr=ip.daddr)
        out.append(frame[:ETH_HLEN] + ipv4(
            seg, saddr=ip.saddr, daddr=ip.daddr, proto=IPPROTO_TCP, ttl=ip.ttl, tos=ip.tos,
            ident=(ip.ident + i) & 0xFFFF, df=bool(ip.flags_frag & IP_DF), options=ip.raw[20:],
        ))
    return out


def test_tso_frame_layout() -> None:
    """The chain layouts below are written around HDR_LEN; make sure it is what big_frame has."""
    assert headers_len(big_frame(0)) == (24, 32, HDR_LEN)


def check_segments(frame: bytes, r: TsoResult, mtu: int) -> None:
    """The receiver's view: every property of a correct segmentation, then byte equality."""
    assert r.init == 0
    assert r.end == 0
    ip0 = Ipv4Header.parse(frame)
    th0 = TcpHeader.parse(frame, ETH_HLEN + ip0.hlen)
    hdr_len = ETH_HLEN + ip0.hlen + th0.hlen
    payload = frame[hdr_len:]
    assert r.hdr_len == hdr_len
    assert r.payload_total == len(payload)
    assert r.mss == mtu - ip0.hlen - th0.hlen
    assert len(r.segs) == max(1, -(-len(payload) // r.mss))

    joined = b""
    for i, seg in enumerate(r.segs):
        ip = Ipv4Header.parse(seg)
        th = TcpHeader.parse(seg, ETH_HLEN + ip.hlen)
        assert seg[:ETH_HLEN] == frame[:ETH_HLEN]
        assert ip.tot_len == len(seg) - ETH_HLEN <= mtu
        assert ip.raw[20:] == ip0.raw[20:]  # IP options copied
        assert ip.ident == (ip0.ident + i) & 0xFFFF
        assert ip.csum_ok(), i
        assert th.options == th0.options
        assert th.seq == (th0.seq + len(joined)) & 0xFFFFFFFF, i
        assert l4_checksum_ok(ip.saddr, ip.daddr, IPPROTO_TCP, seg[ETH_HLEN + ip.hlen:]), i
        first, last = i == 0, i == len(r.segs) - 1
        want = th0.flags
        if not last:
            want &= ~(TCP_FIN | TCP_PSH)
        if not first:
            want &= ~TCP_CWR
        assert th.flags == want, i
        if not last:
            assert ip.tot_len == mtu  # only the last segment may be short
        joined += seg[hdr_len:]
    assert joined == payload

    want_segs = reference_segments(frame, mtu)
    for i, (got, want_seg) in enumerate(zip(r.segs, want_segs, strict=True)):
        assert got == want_seg, f"segment {i}"


@pytest.mark.parametrize(
    "head",
    [
        pytest.param([100, 3840, 7, 3840, 1, 4093], id="uneven-100-3840-7-3840-1"),
        pytest.param([HDR_LEN], id="headers-exactly-in-first"),
        pytest.param([HDR_LEN + 1, 0, 4095, 0], id="empty-buffers"),
        pytest.param([1000, 1, 1, 1], id="byte-buffers"),
    ],
)
@pytest.mark.parametrize("mtu", [1450, 1500, 9000])
def test_tso_max_superframe_uneven_buffers(pkt: PktHarness, head: list[int], mtu: int) -> None:
    """A 64 KiB super-frame split at awkward places segments exactly like GSO."""
    frame = big_frame(MAX_TOT_LEN - (HDR_LEN - ETH_HLEN))
    lens = split(frame, head)
    assert len(lens) <= pkt.consts.MAX_FRAGS
    r = pkt.tso(frame, lens, mtu, ETH_HLEN + mtu)
    check_segments(frame, r, mtu)


@pytest.mark.parametrize("mss_multiple", [1, 2, 7])
def test_tso_payload_multiple_of_mss(pkt: PktHarness, mss_multiple: int) -> None:
    """A payload of exactly n*mss gives n full segments and no empty trailing one."""
    ihl, thl, _ = headers_len(big_frame(0))
    mtu = 1400
    frame = big_frame(mss_multiple * (mtu - ihl - thl))
    r = pkt.tso(frame, split(frame, [200, 333]), mtu, ETH_HLEN + mtu)
    check_segments(frame, r, mtu)
    assert len(r.segs) == mss_multiple


def test_tso_flags_fin_psh_cwr(pkt: PktHarness) -> None:
    """CWR only on the first segment, FIN and PSH only on the last, ECE/ACK on every one."""
    flags = TCP_FIN | TCP_PSH | TCP_CWR | TCP_ECE | TCP_ACK
    frame = big_frame(5000, flags=flags)
    r = pkt.tso(frame, split(frame, [150, 3000]), 1500, ETH_HLEN + 1500)
    check_segments(frame, r, 1500)
    got = [TcpHeader.parse(s, ETH_HLEN + 24).flags for s in r.segs]
    assert len(got) == 4
    assert got[0] == TCP_CWR | TCP_ECE | TCP_ACK
    assert got[1] == got[2] == TCP_ECE | TCP_ACK
    assert got[3] == TCP_FIN | TCP_PSH | TCP_ECE | TCP_ACK


def test_tso_fits_in_one_segment(pkt: PktHarness) -> None:
    """tot_len <= mtu: exactly one segment, identical but for the filled-in checksums."""
    frame = big_frame(1000, flags=TCP_FIN | TCP_PSH | TCP_CWR | TCP_ACK)
    ihl, _, _ = headers_len(frame)
    broken_ip_csum = frame[:ETH_HLEN + 10] + b"\x00\x00" + frame[ETH_HLEN + 12:]
    mtu = len(frame) - ETH_HLEN
    for m in (mtu, mtu + 1, 9000):
        r = pkt.tso(broken_ip_csum, split(frame, [100, 500]), m, ETH_HLEN + m)
        assert (r.init, r.end, len(r.segs)) == (0, 0, 1)
        want = big_frame(1000, flags=TCP_FIN | TCP_PSH | TCP_CWR | TCP_ACK)
        want = want[:ETH_HLEN + ihl + 16] + r.segs[0][ETH_HLEN + ihl + 16:ETH_HLEN + ihl + 18] \
            + want[ETH_HLEN + ihl + 18:]
        assert r.segs[0] == want  # only the TCP checksum differs from the input
        check_segments(frame, r, m)


def test_tso_one_byte_over_mtu(pkt: PktHarness) -> None:
    """One byte too many: a full segment and a one-byte segment."""
    frame = big_frame(1000)
    mtu = len(frame) - ETH_HLEN - 1
    r = pkt.tso(frame, [len(frame)], mtu, ETH_HLEN + mtu)
    check_segments(frame, r, mtu)
    assert len(r.segs[-1]) == r.hdr_len + 1


def test_tso_mss_of_one(pkt: PktHarness) -> None:
    """The smallest mss: every payload byte in its own segment, across 20 tiny buffers."""
    frame = big_frame(50, ip_options=b"", tcp_options=b"")
    mtu = 20 + 20 + 1
    lens = split(frame, [60, 1, 2, 3, 0, 5, 1, 1, 1, 1], chunk=3)
    assert len(lens) == pkt.consts.MAX_FRAGS
    r = pkt.tso(frame, lens, mtu, ETH_HLEN + mtu)
    check_segments(frame, r, mtu)
    assert len(r.segs) == 50


def test_tso_id_and_seq_wrap(pkt: PktHarness) -> None:
    """IP id and TCP sequence number wrap modulo 2^16 and 2^32."""
    frame = big_frame(6000, ident=0xFFFE, seq=0xFFFFF000)
    r = pkt.tso(frame, split(frame, [128]), 1500, ETH_HLEN + 1500)
    check_segments(frame, r, 1500)
    ids = [Ipv4Header.parse(s).ident for s in r.segs]
    assert ids[:4] == [0xFFFE, 0xFFFF, 0, 1]


@pytest.mark.parametrize("mtu", [HDR_LEN - ETH_HLEN, 1500])
def test_tso_header_only(pkt: PktHarness, mtu: int) -> None:
    """No payload (a bare ACK that still arrives as a chain): one header-only segment.

    An mtu of exactly the header size fits such a packet, although it leaves no room for payload.
    """
    frame = big_frame(0)
    r = pkt.tso(frame, [len(frame), 0], mtu, ETH_HLEN + mtu)
    assert (r.init, r.end, r.mss, len(r.segs)) == (0, 0, mtu - (HDR_LEN - ETH_HLEN), 1)
    assert r.segs[0] == reference_segments(frame, 1500)[0]


def test_tso_room_too_small(pkt: PktHarness) -> None:
    """A destination smaller than a segment is refused before anything is written."""
    frame = big_frame(4000)
    r = pkt.tso(frame, [len(frame)], 1500, ETH_HLEN + 1500 - 1)
    assert (r.init, r.segs, r.end) == (0, (), -pkt.consts.OVERSIZE)


@pytest.mark.parametrize("delta", [-1, 1, 100])
def test_tso_chain_total_mismatch(pkt: PktHarness, delta: int) -> None:
    """Buffers holding more or fewer bytes than 14 + IPv4 total length: a broken chain."""
    frame = big_frame(8000)
    frame = frame[:delta] if delta < 0 else frame + b"\x00" * delta
    r = pkt.tso(frame, split(frame, [300]), 1500, ETH_HLEN + 1500)
    assert r.init == -pkt.consts.BAD_CHAIN


def test_tso_empty_chain(pkt: PktHarness) -> None:
    """A chain of no buffers."""
    assert pkt.tso(b"", [], 1500, 1514).init == -pkt.consts.BAD_CHAIN


def test_tso_not_tcp(pkt: PktHarness) -> None:
    """UDP cannot be segmented (and must not be fragmented by us): oversize."""
    frame = udp_frame(b"u" * 5000)
    r = pkt.tso(frame, split(frame, [100]), 1500, ETH_HLEN + 1500)
    assert r.init == -pkt.consts.OVERSIZE


def test_tso_tcp_fragment(pkt: PktHarness) -> None:
    """A fragment has no complete TCP stream to cut: oversize."""
    seg = tcp(b"f" * 3000)
    frame = eth() + ipv4(seg, proto=IPPROTO_TCP, mf=True)
    r = pkt.tso(frame, split(frame, [100]), 1500, ETH_HLEN + 1500)
    assert r.init == -pkt.consts.OVERSIZE


def test_tso_mtu_below_headers(pkt: PktHarness) -> None:
    """No room for a single payload byte."""
    frame = big_frame(3000)
    ihl, thl, _ = headers_len(frame)
    for mtu in (0, ihl + thl):
        r = pkt.tso(frame, [len(frame)], mtu, 70000)
        assert r.init == -pkt.consts.OVERSIZE, mtu


def test_tso_first_buffer_without_tcp_header(pkt: PktHarness) -> None:
    """The first buffer must hold the whole TCP header, options included."""
    frame = big_frame(3000)
    _, _, hdr_len = headers_len(frame)
    for first in (ETH_HLEN + 24 + 19, hdr_len - 1):
        r = pkt.tso(frame, split(frame, [first]), 1500, ETH_HLEN + 1500)
        assert r.init == -pkt.consts.TRUNCATED, first


@pytest.mark.parametrize("doff", [0, 4, 15])
def test_tso_bad_data_offset(pkt: PktHarness, doff: int) -> None:
    """A TCP data offset below 5, or past the packet: truncated."""
    payload = b"d" * 20
    frame = eth() + ipv4(tcp(payload, doff=doff), proto=IPPROTO_TCP)
    r = pkt.tso(frame, [len(frame)], 1500, 1514)
    assert r.init == -pkt.consts.TRUNCATED


def test_tso_parse_errors_pass_through(pkt: PktHarness) -> None:
    """rl_parse_inner()'s verdicts reach the caller unchanged."""
    frame = big_frame(100)
    not_ip = frame[:12] + b"\x86\xdd" + frame[14:]
    assert pkt.tso(not_ip, [len(frame)], 1500, 1514).init == -pkt.consts.NOT_IPV4
    assert pkt.tso(frame[:20], [20], 1500, 1514).init == -pkt.consts.TRUNCATED
