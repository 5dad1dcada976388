"""rl_l4_csum_fill(), rl_ipv4_dec_ttl() and rl_set_macs() against packets.py's checksums.

AF_XDP has no checksum offload, so every pod packet that leaves through the ring core gets its
TCP/UDP checksum from rl_l4_csum_fill(); a wrong one is a silent drop at the far end.
"""

from __future__ import annotations

import random
import struct

import pytest

from .packets import (
    ETH_HLEN,
    IPPROTO_ICMP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPV4_HLEN,
    TCP_ACK,
    TCP_PSH,
    Csum,
    Ipv4Header,
    UdpHeader,
    checksum,
    eth,
    ip4,
    ipv4,
    l4_checksum,
    l4_checksum_ok,
    mac,
    ones_add,
    ones_sum,
    pseudo_header,
    tcp,
    tcp_frame,
    udp,
    udp_frame,
)
from .pkt_harness import PktHarness

pytestmark = pytest.mark.native

TS_OPTION = b"\x01\x01\x08\x0a" + struct.pack("!II", 123456, 654321)


def l4_of(frame: bytes) -> tuple[Ipv4Header, bytes]:
    """The IPv4 header and the L4 bytes (up to the IPv4 total length) of a frame."""
    ip = Ipv4Header.parse(frame)
    return ip, frame[ETH_HLEN + ip.hlen:ETH_HLEN + ip.tot_len]


def assert_only_l4_csum_changed(before: bytes, after: bytes, csum_off: int) -> None:
    """rl_l4_csum_fill() may write the two checksum bytes and nothing else."""
    assert len(before) == len(after)
    assert before[:csum_off] == after[:csum_off]
    assert before[csum_off + 2:] == after[csum_off + 2:]


@pytest.mark.parametrize("payload_len", [0, 1, 2, 3, 5, 1399, 1460, 8951])
@pytest.mark.parametrize("ip_options", [b"", b"\x01" * 8])
def test_tcp_partial_becomes_full(pkt: PktHarness, payload_len: int, ip_options: bytes) -> None:
    """A CHECKSUM_PARTIAL TCP packet (pseudo-header sum in the field) leaves fully summed."""
    payload = random.Random(payload_len).randbytes(payload_len)
    frame = tcp_frame(payload, tcp_options=TS_OPTION, ip_options=ip_options,
                      flags=TCP_ACK | TCP_PSH, csum=Csum.PARTIAL)
    ip, seg = l4_of(frame)
    assert not l4_checksum_ok(ip.saddr, ip.daddr, IPPROTO_TCP, seg)  # the input is partial
    r = pkt.csum_fill(frame)
    assert (r.parse, r.ret) == (0, 0)
    csum_off = ETH_HLEN + ip.hlen + 16
    assert_only_l4_csum_changed(frame, r.frame, csum_off)
    _, out_seg = l4_of(r.frame)
    assert l4_checksum_ok(ip.saddr, ip.daddr, IPPROTO_TCP, out_seg)
    zeroed = seg[:16] + b"\x00\x00" + seg[18:]
    assert out_seg[16:18] == struct.pack("!H", l4_checksum(ip.saddr, ip.daddr, IPPROTO_TCP,
                                                          zeroed))


@pytest.mark.parametrize("field", [0x0000, 0xFFFF, 0x1234])
def test_tcp_field_content_ignored(pkt: PktHarness, field: int) -> None:
    """Whatever the field holds going in is treated as 0 (TCP has no 'no checksum' value)."""
    frame = tcp_frame(b"data", csum=field)
    r = pkt.csum_fill(frame)
    assert r.ret == 0
    assert r.frame == tcp_frame(b"data", csum=Csum.FULL)


@pytest.mark.parametrize("payload_len", [0, 1, 7, 8, 1471])
def test_udp_partial_becomes_full(pkt: PktHarness, payload_len: int) -> None:
    """UDP gets its full checksum too."""
    payload = random.Random(payload_len).randbytes(payload_len)
    frame = udp_frame(payload, csum=Csum.PARTIAL)
    r = pkt.csum_fill(frame)
    assert r.ret == 0
    assert r.frame == udp_frame(payload, csum=Csum.FULL)
    ip, seg = l4_of(r.frame)
    assert l4_checksum_ok(ip.saddr, ip.daddr, IPPROTO_UDP, seg)


def test_udp_zero_checksum_kept(pkt: PktHarness) -> None:
    """UDP checksum 0 means 'none' (RFC 768): the sender opted out, so it stays 0."""
    frame = udp_frame(b"no checksum", csum=Csum.ZERO)
    r = pkt.csum_fill(frame)
    assert (r.ret, r.frame) == (0, frame)


def test_udp_computed_zero_sent_as_ffff(pkt: PktHarness) -> None:
    """A UDP checksum that computes to 0 goes out as 0xffff, since 0 would mean 'none'."""
    s, d = ip4("10.244.1.2"), ip4("10.244.2.3")
    # Choose the last payload word so that the whole segment sums to 0xffff.
    body = b"abcdefgh"
    probe = udp(body + b"\x00\x00", saddr=s, daddr=d, csum=0)
    partial = ones_sum(pseudo_header(s, d, IPPROTO_UDP, len(probe)) + probe)
    filler = struct.pack("!H", 0xFFFF - partial)
    seg = udp(body + filler, saddr=s, daddr=d, csum=0)
    assert l4_checksum(s, d, IPPROTO_UDP, seg) == 0
    frame = udp_frame(body + filler, saddr=s, daddr=d, csum=Csum.PARTIAL)
    r = pkt.csum_fill(frame)
    assert r.ret == 0
    assert UdpHeader.parse(r.frame, ETH_HLEN + IPV4_HLEN).csum == 0xFFFF


def test_udp_length_shorter_than_ip_payload(pkt: PktHarness) -> None:
    """With bytes after the UDP length, the checksum covers what the receiver sums: UDP length."""
    s, d = ip4("10.244.1.2"), ip4("10.244.2.3")
    seg = udp(b"payload", saddr=s, daddr=d, csum=Csum.PARTIAL)
    frame = eth() + ipv4(seg + b"TRAILER", saddr=s, daddr=d)
    r = pkt.csum_fill(frame)
    assert r.ret == 0
    out = r.frame[ETH_HLEN + IPV4_HLEN:ETH_HLEN + IPV4_HLEN + len(seg)]
    assert l4_checksum_ok(s, d, IPPROTO_UDP, out)
    assert r.frame.endswith(b"TRAILER")


@pytest.mark.parametrize("length", [0, 7, 100])
def test_udp_bad_length_field(pkt: PktHarness, length: int) -> None:
    """A UDP length below the header or past the IPv4 payload: nothing to sum, frame untouched."""
    frame = eth() + ipv4(udp(b"x" * 20, length=length, csum=0x1111))
    r = pkt.csum_fill(frame)
    assert (r.parse, r.ret, r.frame) == (0, -pkt.consts.TRUNCATED, frame)


@pytest.mark.parametrize("proto", [IPPROTO_TCP, IPPROTO_UDP])
def test_ethernet_padding_not_summed(pkt: PktHarness, proto: int) -> None:
    """Padding after the IPv4 total length is not part of the segment."""
    frame = (tcp_frame(b"", csum=Csum.PARTIAL) if proto == IPPROTO_TCP
             else udp_frame(b"", csum=Csum.PARTIAL))
    pad = b"\xaa" * 6
    padded = pkt.csum_fill(frame + pad)
    plain = pkt.csum_fill(frame)
    assert padded.ret == plain.ret == 0
    assert padded.frame == plain.frame + pad


@pytest.mark.parametrize("proto", [IPPROTO_TCP, IPPROTO_UDP])
def test_fragments_untouched(pkt: PktHarness, proto: int) -> None:
    """A fragment's checksum covers the whole datagram: not ours to compute."""
    seg = (tcp(b"x" * 32, csum=Csum.PARTIAL) if proto == IPPROTO_TCP
           else udp(b"x" * 32, csum=Csum.PARTIAL))
    for mf, off in [(True, 0), (False, 4)]:
        frame = eth() + ipv4(seg, proto=proto, mf=mf, frag_offset=off)
        r = pkt.csum_fill(frame)
        assert (r.ret, r.frame) == (0, frame)


def test_other_protocols_untouched(pkt: PktHarness) -> None:
    """ICMP and friends have their own checksums, computed by the pod."""
    frame = eth() + ipv4(b"\x08\x00\x12\x34" + b"p" * 30, proto=IPPROTO_ICMP)
    r = pkt.csum_fill(frame)
    assert (r.ret, r.frame) == (0, frame)


@pytest.mark.parametrize("proto", [IPPROTO_TCP, IPPROTO_UDP])
def test_segment_beyond_buffer(pkt: PktHarness, proto: int) -> None:
    """With allow_short (a chain's first buffer) the segment may end past the buffer: refuse."""
    frame = (tcp_frame(b"y" * 100, csum=Csum.PARTIAL) if proto == IPPROTO_TCP
             else udp_frame(b"y" * 100, csum=Csum.PARTIAL))
    cut = frame[:-1]
    r = pkt.csum_fill(cut, allow_short=True)
    assert (r.parse, r.ret, r.frame) == (0, -pkt.consts.TRUNCATED, cut)


# --- rl_ipv4_dec_ttl --------------------------------------------------------------------------


def full_recompute(frame: bytes) -> bytes:
    """The frame with its IPv4 header checksum computed from scratch."""
    ip = Ipv4Header.parse(frame)
    hdr = ip.raw[:10] + b"\x00\x00" + ip.raw[12:]
    hdr = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
    return frame[:ETH_HLEN] + hdr + frame[ETH_HLEN + ip.hlen:]


def test_dec_ttl_random_headers(pkt: PktHarness) -> None:
    """Incremental update (RFC 1624) equals a full recomputation over many headers."""
    rng = random.Random(1624)
    for _ in range(300):
        frame = eth() + ipv4(
            udp(b"q"), ttl=rng.randint(2, 255), tos=rng.randrange(256),
            ident=rng.randrange(65536), saddr=rng.randbytes(4), daddr=rng.randbytes(4),
            df=rng.random() < 0.5, options=b"\x01" * rng.choice([0, 4, 40]),
        )
        ttl = frame[ETH_HLEN + 8]
        ret, out = pkt.dec_ttl(frame)
        assert ret == 0
        assert out[ETH_HLEN + 8] == ttl - 1
        assert Ipv4Header.parse(out).csum_ok()
        assert out == full_recompute(frame[:ETH_HLEN + 8] + bytes([ttl - 1])
                                     + frame[ETH_HLEN + 9:])


@pytest.mark.parametrize("target", [0x0000, 0x0001, 0xFFFE, 0x00FF, 0xFF00])
def test_dec_ttl_checksum_edges(pkt: PktHarness, target: int) -> None:
    """Headers whose new checksum is 0x0000 (the ones-complement -0 trap) and nearby values."""
    # Pick the IP id so that after the decrement the header checksum is exactly target.
    base = eth() + ipv4(udp(b"e"), ttl=2, ident=0)
    after = base[:ETH_HLEN + 8] + b"\x01" + base[ETH_HLEN + 9:]
    hdr = after[ETH_HLEN:ETH_HLEN + IPV4_HLEN]
    rest = ones_sum(hdr[:10] + b"\x00\x00" + hdr[12:])
    ident = ones_add(~target & 0xFFFF, ~rest & 0xFFFF)
    frame = eth() + ipv4(udp(b"e"), ttl=2, ident=ident)
    ret, out = pkt.dec_ttl(frame)
    assert ret == 0
    assert out == full_recompute(out)
    assert Ipv4Header.parse(out).csum == target
    assert Ipv4Header.parse(out).csum_ok()


def test_dec_ttl_touches_only_ttl_and_checksum(pkt: PktHarness) -> None:
    """Nothing else in the frame changes, and the L4 checksum stays valid."""
    frame = tcp_frame(b"abc", ttl=9)
    _, out = pkt.dec_ttl(frame)
    diff = [i for i in range(len(frame)) if frame[i] != out[i]]
    assert set(diff) <= {ETH_HLEN + 8, ETH_HLEN + 10, ETH_HLEN + 11}
    assert out[ETH_HLEN + 8] == 8


# --- rl_set_macs ------------------------------------------------------------------------------


def test_set_macs(pkt: PktHarness) -> None:
    """Destination first, then source; the ethertype and beyond are left alone."""
    frame = tcp_frame(b"x")
    dst, src = mac("0a:0b:0c:0d:0e:0f"), mac("1a:1b:1c:1d:1e:1f")
    assert pkt.set_macs(frame, dst, src) == dst + src + frame[12:]
