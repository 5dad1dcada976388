"""Packet builders, parsers and an independent Internet checksum, for every test tier.

The ring core (C), the XDP programs (BPF) and the kernel all have their own checksum and header
code; tests need a reference that shares none of it, so everything here is plain `struct` and
integer arithmetic written straight from the RFCs (791, 768, 793, 1071, 7348).

Builders return bytes and take every field as a keyword with a sensible default, plus escape
hatches (`tot_len=`, `csum=`, `ihl=`, ...) to produce the malformed packets tests need. Layers
nest by concatenation: `eth(...) + ipv4(...payload=udp(...))`.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from dataclasses import dataclass

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
ETH_HLEN = 14
IPV4_HLEN = 20
UDP_HLEN = 8
TCP_HLEN = 20
VXLAN_HLEN = 8
VXLAN_PORT = 4789
VXLAN_FLAG_I = 0x08
ENCAP_LEN = ETH_HLEN + IPV4_HLEN + UDP_HLEN + VXLAN_HLEN

IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17

IP_DF = 0x4000
IP_MF = 0x2000
IP_OFFMASK = 0x1FFF

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_PSH = 0x08
TCP_ACK = 0x10
TCP_URG = 0x20
TCP_ECE = 0x40
TCP_CWR = 0x80


def mac(text: str) -> bytes:
    """'02:00:00:00:00:01' -> 6 bytes; tests read better with textual addresses."""
    raw = bytes(int(part, 16) for part in text.split(":"))
    if len(raw) != 6:
        raise ValueError(f"not a MAC address: {text!r}")
    return raw


def ip4(text: str) -> bytes:
    """'10.0.0.1' -> 4 bytes in network order."""
    return ipaddress.IPv4Address(text).packed


# --- checksums (RFC 1071) ---------------------------------------------------------------------


def ones_sum(data: bytes, initial: int = 0) -> int:
    """16-bit ones-complement sum of big-endian words (odd tail zero-padded), folded.

    Not complemented, so sums of pieces can be added with `ones_add`. A buffer whose stored
    checksum is right sums to 0xffff.
    """
    if len(data) % 2:
        data += b"\x00"
    words: tuple[int, ...] = struct.unpack(f"!{len(data) // 2}H", data)
    total = initial + sum(words)
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def ones_add(a: int, b: int) -> int:
    """Ones-complement addition of two 16-bit values."""
    total = a + b
    return (total & 0xFFFF) + (total >> 16)


def checksum(data: bytes, initial: int = 0) -> int:
    """The Internet checksum of data: the complement of its ones-complement sum."""
    return ~ones_sum(data, initial) & 0xFFFF


def pseudo_header(saddr: bytes, daddr: bytes, proto: int, length: int) -> bytes:
    """The IPv4 TCP/UDP pseudo header that the L4 checksum covers (RFC 793/768)."""
    return saddr + daddr + struct.pack("!BBH", 0, proto, length)


def l4_checksum(saddr: bytes, daddr: bytes, proto: int, segment: bytes) -> int:
    """Full TCP/UDP checksum of segment (its checksum field must already read 0)."""
    return checksum(pseudo_header(saddr, daddr, proto, len(segment)) + segment)


def l4_checksum_ok(saddr: bytes, daddr: bytes, proto: int, segment: bytes) -> bool:
    """Whether segment's stored checksum verifies, as a receiver checks it."""
    return ones_sum(pseudo_header(saddr, daddr, proto, len(segment)) + segment) == 0xFFFF


class Csum(enum.Enum):
    """How a builder fills an L4 checksum field (an int instead stores that value)."""

    FULL = "full"  # the correct checksum, as on the wire
    PARTIAL = "partial"  # pseudo-header sum only, as a pod sends with CHECKSUM_PARTIAL
    ZERO = "zero"  # 0: "no checksum" for UDP, a wrong one for TCP


def _l4_csum_value(
    mode: Csum | int, saddr: bytes, daddr: bytes, proto: int, segment: bytes
) -> int:
    """The checksum field for segment (field zeroed) according to mode."""
    if isinstance(mode, int):
        return mode
    if mode is Csum.ZERO:
        return 0
    if mode is Csum.PARTIAL:
        # What the kernel stores for CHECKSUM_PARTIAL: ~csum_tcpudp_magic(), i.e. the
        # uncomplemented pseudo-header sum.
        return ones_sum(pseudo_header(saddr, daddr, proto, len(segment)))
    value = l4_checksum(saddr, daddr, proto, segment)
    if proto == IPPROTO_UDP and value == 0:
        return 0xFFFF
    return value


# --- builders ---------------------------------------------------------------------------------


def eth(
    dst: bytes = mac("02:00:00:00:00:02"),
    src: bytes = mac("02:00:00:00:00:01"),
    ethertype: int = ETH_P_IP,
) -> bytes:
    """An Ethernet II header (14 bytes)."""
    return dst + src + struct.pack("!H", ethertype)


def ipv4(
    payload: bytes = b"",
    *,
    saddr: bytes = ip4("10.244.1.2"),
    daddr: bytes = ip4("10.244.2.3"),
    proto: int = IPPROTO_UDP,
    ttl: int = 64,
    tos: int = 0,
    ident: int = 0,
    df: bool = False,
    mf: bool = False,
    frag_offset: int = 0,
    options: bytes = b"",
    version: int = 4,
    ihl: int | None = None,
    tot_len: int | None = None,
    csum: int | None = None,
) -> bytes:
    """An IPv4 header (options padded to 32 bits) followed by payload.

    frag_offset is in 8-byte units. ihl, tot_len and csum override the computed values.
    """
    options += b"\x00" * (-len(options) % 4)
    hlen = IPV4_HLEN + len(options)
    if ihl is None:
        ihl = hlen // 4
    if tot_len is None:
        tot_len = hlen + len(payload)
    frag = (IP_DF if df else 0) | (IP_MF if mf else 0) | (frag_offset & IP_OFFMASK)
    hdr = struct.pack(
        "!BBHHHBBH4s4s", version << 4 | ihl, tos, tot_len, ident, frag, ttl, proto, 0,
        saddr, daddr,
    ) + options
    if csum is None:
        csum = checksum(hdr)
    return hdr[:10] + struct.pack("!H", csum) + hdr[12:] + payload


def udp(
    payload: bytes = b"",
    *,
    sport: int = 40000,
    dport: int = 5201,
    saddr: bytes = ip4("10.244.1.2"),
    daddr: bytes = ip4("10.244.2.3"),
    length: int | None = None,
    csum: Csum | int = Csum.FULL,
) -> bytes:
    """A UDP header and payload; saddr/daddr only feed the checksum's pseudo header."""
    if length is None:
        length = UDP_HLEN + len(payload)
    seg = struct.pack("!HHHH", sport, dport, length, 0) + payload
    value = _l4_csum_value(csum, saddr, daddr, IPPROTO_UDP, seg)
    return seg[:6] + struct.pack("!H", value) + seg[8:]


def tcp(
    payload: bytes = b"",
    *,
    sport: int = 40000,
    dport: int = 5201,
    seq: int = 1000,
    ack: int = 0,
    flags: int = TCP_ACK,
    window: int = 65535,
    urg: int = 0,
    options: bytes = b"",
    saddr: bytes = ip4("10.244.1.2"),
    daddr: bytes = ip4("10.244.2.3"),
    doff: int | None = None,
    csum: Csum | int = Csum.FULL,
) -> bytes:
    """A TCP header (options padded to 32 bits) and payload; saddr/daddr feed the checksum."""
    options += b"\x00" * (-len(options) % 4)
    if doff is None:
        doff = (TCP_HLEN + len(options)) // 4
    seg = struct.pack(
        "!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack, doff << 4, flags, window, 0, urg,
    ) + options + payload
    value = _l4_csum_value(csum, saddr, daddr, IPPROTO_TCP, seg)
    return seg[:16] + struct.pack("!H", value) + seg[18:]


def vxlan(payload: bytes = b"", *, vni: int = 1, flags: int = VXLAN_FLAG_I,
          reserved1: int = 0, reserved2: int = 0) -> bytes:
    """A VXLAN header (RFC 7348) and payload. reserved1 is 24 bits, reserved2 8 bits."""
    return struct.pack("!I", flags << 24 | reserved1 & 0xFFFFFF) + struct.pack(
        "!I", (vni & 0xFFFFFF) << 8 | reserved2 & 0xFF
    ) + payload


# --- whole frames -----------------------------------------------------------------------------


def udp_frame(
    payload: bytes = b"udp payload",
    *,
    saddr: bytes = ip4("10.244.1.2"),
    daddr: bytes = ip4("10.244.2.3"),
    sport: int = 40000,
    dport: int = 5201,
    csum: Csum | int = Csum.FULL,
    ttl: int = 64,
    ident: int = 0,
    options: bytes = b"",
    src_mac: bytes = mac("02:00:00:00:00:01"),
    dst_mac: bytes = mac("02:00:00:00:00:02"),
) -> bytes:
    """A well-formed Ethernet/IPv4/UDP frame."""
    seg = udp(payload, sport=sport, dport=dport, saddr=saddr, daddr=daddr, csum=csum)
    return eth(dst_mac, src_mac) + ipv4(
        seg, saddr=saddr, daddr=daddr, proto=IPPROTO_UDP, ttl=ttl, ident=ident,
        options=options,
    )


def tcp_frame(
    payload: bytes = b"tcp payload",
    *,
    saddr: bytes = ip4("10.244.1.2"),
    daddr: bytes = ip4("10.244.2.3"),
    sport: int = 40000,
    dport: int = 5201,
    seq: int = 1000,
    ack: int = 0,
    flags: int = TCP_ACK,
    tcp_options: bytes = b"",
    csum: Csum | int = Csum.FULL,
    ttl: int = 64,
    ident: int = 0,
    df: bool = True,
    ip_options: bytes = b"",
    src_mac: bytes = mac("02:00:00:00:00:01"),
    dst_mac: bytes = mac("02:00:00:00:00:02"),
) -> bytes:
    """A well-formed Ethernet/IPv4/TCP frame."""
    seg = tcp(payload, sport=sport, dport=dport, seq=seq, ack=ack, flags=flags,
              options=tcp_options, saddr=saddr, daddr=daddr, csum=csum)
    return eth(dst_mac, src_mac) + ipv4(
        seg, saddr=saddr, daddr=daddr, proto=IPPROTO_TCP, ttl=ttl, ident=ident, df=df,
        options=ip_options,
    )


def vxlan_frame(
    inner: bytes,
    *,
    vni: int = 1,
    flags: int = VXLAN_FLAG_I,
    saddr: bytes = ip4("192.168.0.1"),
    daddr: bytes = ip4("192.168.0.2"),
    sport: int = 49152,
    dport: int = VXLAN_PORT,
    udp_length: int | None = None,
    ip_options: bytes = b"",
    mf: bool = False,
    frag_offset: int = 0,
    src_mac: bytes = mac("02:00:00:00:01:01"),
    dst_mac: bytes = mac("02:00:00:00:01:02"),
) -> bytes:
    """An outer Ethernet/IPv4/UDP/VXLAN frame around inner (UDP checksum 0, RFC 7348)."""
    seg = udp(vxlan(inner, vni=vni, flags=flags), sport=sport, dport=dport, length=udp_length,
              csum=Csum.ZERO)
    return eth(dst_mac, src_mac) + ipv4(
        seg, saddr=saddr, daddr=daddr, proto=IPPROTO_UDP, df=True, options=ip_options, mf=mf,
        frag_offset=frag_offset,
    )


# --- parsers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ipv4Header:
    """The fields of an IPv4 header, host order, as a test reads them back."""

    version: int
    ihl: int
    tos: int
    tot_len: int
    ident: int
    flags_frag: int
    ttl: int
    proto: int
    csum: int
    saddr: bytes
    daddr: bytes
    raw: bytes  # the header bytes, options included

    @classmethod
    def parse(cls, buf: bytes, off: int = ETH_HLEN) -> Ipv4Header:
        """Read the header at buf[off:] (an Ethernet frame by default)."""
        vihl, tos, tot_len, ident, frag, ttl, proto, csum, saddr, daddr = struct.unpack_from(
            "!BBHHHBBH4s4s", buf, off
        )
        ihl = vihl & 0xF
        return cls(vihl >> 4, ihl, tos, tot_len, ident, frag, ttl, proto, csum, saddr, daddr,
                   bytes(buf[off:off + ihl * 4]))

    @property
    def hlen(self) -> int:
        """Header length in bytes."""
        return self.ihl * 4

    def csum_ok(self) -> bool:
        """Whether the stored header checksum verifies."""
        return ones_sum(self.raw) == 0xFFFF


@dataclass(frozen=True)
class TcpHeader:
    """The fields of a TCP header, host order."""

    sport: int
    dport: int
    seq: int
    ack: int
    doff: int
    flags: int
    window: int
    csum: int
    urg: int
    options: bytes

    @classmethod
    def parse(cls, buf: bytes, off: int) -> TcpHeader:
        """Read the header at buf[off:]."""
        sport, dport, seq, ack, doff_b, flags, window, csum, urg = struct.unpack_from(
            "!HHIIBBHHH", buf, off
        )
        doff = doff_b >> 4
        return cls(sport, dport, seq, ack, doff, flags, window, csum, urg,
                   bytes(buf[off + TCP_HLEN:off + doff * 4]))

    @property
    def hlen(self) -> int:
        """Header length in bytes."""
        return self.doff * 4


@dataclass(frozen=True)
class UdpHeader:
    """The fields of a UDP header, host order."""

    sport: int
    dport: int
    length: int
    csum: int

    @classmethod
    def parse(cls, buf: bytes, off: int) -> UdpHeader:
        """Read the header at buf[off:]."""
        return cls(*struct.unpack_from("!HHHH", buf, off))
