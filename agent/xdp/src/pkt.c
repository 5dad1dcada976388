// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * pkt: parsing, checksums, VXLAN encapsulation and TCP segmentation for the
 * ring core. The contracts are in pkt.h. Frames are untrusted byte buffers:
 * every field is read through get_be*()/memcpy() after a length check, never
 * through a cast to a header struct.
 */
#include <string.h>
#include <arpa/inet.h>

#include "pkt.h"

#define PKT_ETH_P_IP	0x0800
#define PKT_PROTO_TCP	6
#define PKT_PROTO_UDP	17
#define PKT_IP_DF	0x4000
#define PKT_IP_MF	0x2000
#define PKT_IP_OFFMASK	0x1fff
#define PKT_TCP_HLEN	20U
#define PKT_TCP_FIN	0x01
#define PKT_TCP_PSH	0x08
#define PKT_TCP_CWR	0x80
/* Shortest inner frame behind a VXLAN header: Ethernet + IPv4 without options. */
#define PKT_INNER_MIN	(RL_ETH_HLEN + RL_IPV4_HLEN)

/* Byte-wise loads and stores: frames have no alignment guarantee. */
static inline __u16 get_be16(const __u8 *p)
{
	return (__u16)(p[0] << 8 | p[1]);
}

/* See get_be16(). */
static inline __u32 get_be32(const __u8 *p)
{
	return (__u32)p[0] << 24 | (__u32)p[1] << 16 | (__u32)p[2] << 8 | p[3];
}

/* See get_be16(). */
static inline void put_be16(__u8 *p, __u16 v)
{
	p[0] = (__u8)(v >> 8);
	p[1] = (__u8)v;
}

/* See get_be16(). */
static inline void put_be32(__u8 *p, __u32 v)
{
	p[0] = (__u8)(v >> 24);
	p[1] = (__u8)(v >> 16);
	p[2] = (__u8)(v >> 8);
	p[3] = (__u8)v;
}

/* Fold a 64-bit ones-complement accumulator to 16 bits (RFC 1071, end-around carry). */
static inline __u16 csum_fold(__u64 sum)
{
	sum = (sum & 0xffffffffULL) + (sum >> 32);
	sum = (sum & 0xffffffffULL) + (sum >> 32);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

/*
 * Ones-complement sum of @len bytes as big-endian 16-bit words, odd tail
 * padded with zero (RFC 1071), folded to 16 bits. Adds 32-bit native words
 * and swaps once at the end, which is exact by RFC 1071's byte-order
 * independence and much faster than a byte loop over 64 KiB.
 */
static __u16 csum_bytes(const __u8 *p, __u32 len)
{
	__u64 sum = 0;
	__u32 w = 0;

	for (; len >= 4; p += 4, len -= 4) {
		memcpy(&w, p, 4);
		sum += w;
	}
	if (len) {
		w = 0;
		memcpy(&w, p, len);
		sum += w;
	}
	return ntohs(csum_fold(sum));
}

/* Sum of the TCP/UDP pseudo header (RFC 793/768), to add to the L4 bytes' sum. */
static __u64 csum_pseudo(__be32 saddr, __be32 daddr, __u8 proto, __u32 l4_len)
{
	__u32 s = ntohl(saddr), d = ntohl(daddr);

	return (__u64)(s >> 16) + (s & 0xffff) + (d >> 16) + (d & 0xffff) +
	       proto + (l4_len >> 16) + (l4_len & 0xffff);
}

/* Final TCP/UDP checksum of @l4_len bytes at @l4 whose checksum field reads 0. */
static __u16 csum_l4(const __u8 *l4, __u32 l4_len, __be32 saddr, __be32 daddr, __u8 proto)
{
	__u64 sum = csum_pseudo(saddr, daddr, proto, l4_len) + csum_bytes(l4, l4_len);

	return (__u16)~csum_fold(sum);
}

/* Recompute an IPv4 header checksum in place over @ihl_len bytes. */
static void ipv4_csum_set(__u8 *ip, __u32 ihl_len)
{
	put_be16(ip + 10, 0);
	put_be16(ip + 10, (__u16)~csum_bytes(ip, ihl_len));
}

/*
 * Checks shared by both parsers: Ethernet type, IPv4 version, IHL and the
 * total length against the frame. Returns the header length in @ihl_len.
 */
static int parse_ipv4(const __u8 *frame, __u32 len, bool allow_short, __u32 *ihl_len)
{
	const __u8 *ip = frame + RL_ETH_HLEN;
	__u32 hl, tot_len;

	if (len < RL_ETH_HLEN)
		return -RL_DROP_TRUNCATED;
	if (get_be16(frame + 12) != PKT_ETH_P_IP)
		return -RL_DROP_NOT_IPV4;
	if (len < RL_ETH_HLEN + RL_IPV4_HLEN)
		return -RL_DROP_TRUNCATED;
	if ((ip[0] >> 4) != 4)
		return -RL_DROP_NOT_IPV4;
	hl = (__u32)(ip[0] & 0x0f) * 4;
	if (hl < RL_IPV4_HLEN || hl > len - RL_ETH_HLEN)
		return -RL_DROP_BAD_IHL;
	tot_len = get_be16(ip + 2);
	if (tot_len < hl)
		return -RL_DROP_BAD_IP_LEN;
	if (!allow_short && tot_len > len - RL_ETH_HLEN)
		return -RL_DROP_BAD_IP_LEN;
	*ihl_len = hl;
	return 0;
}

int rl_parse_inner(const __u8 *frame, __u32 len, bool allow_short,
		   struct rl_pkt_info *out)
{
	const __u8 *ip = frame + RL_ETH_HLEN;
	__u32 ihl_len, tot_len, l4_off, l4_end;
	__be16 sport = 0, dport = 0;
	bool is_frag;
	__u8 proto;
	int err;

	err = parse_ipv4(frame, len, allow_short, &ihl_len);
	if (err)
		return err;
	tot_len = get_be16(ip + 2);
	proto = ip[9];
	is_frag = (get_be16(ip + 6) & (PKT_IP_MF | PKT_IP_OFFMASK)) != 0;
	l4_off = RL_ETH_HLEN + ihl_len;

	if (!is_frag && (proto == PKT_PROTO_TCP || proto == PKT_PROTO_UDP)) {
		__u32 l4_min = proto == PKT_PROTO_TCP ? PKT_TCP_HLEN : RL_UDP_HLEN;

		if (!allow_short && tot_len - ihl_len < l4_min)
			return -RL_DROP_TRUNCATED;
		/* Ports only from bytes that are in the buffer and in the packet. */
		l4_end = RL_ETH_HLEN + tot_len;
		if (l4_end > len)
			l4_end = len;
		if (l4_off + 4 <= l4_end) {
			memcpy(&sport, frame + l4_off, 2);
			memcpy(&dport, frame + l4_off + 2, 2);
		}
	}

	memset(out, 0, sizeof(*out));
	out->l3_off = RL_ETH_HLEN;
	out->l4_off = (__u16)l4_off;
	out->ip_tot_len = (__u16)tot_len;
	out->ip_proto = proto;
	out->ttl = ip[8];
	out->is_fragment = is_frag;
	memcpy(&out->saddr, ip + 12, 4);
	memcpy(&out->daddr, ip + 16, 4);
	out->sport = sport;
	out->dport = dport;
	return 0;
}

int rl_parse_vxlan(const __u8 *frame, __u32 len, __u32 vni, __u16 port,
		   struct rl_vxlan_info *out)
{
	const __u8 *ip = frame + RL_ETH_HLEN;
	const __u8 *udp, *vx;
	__u32 ihl_len, ip_payload, udp_len;
	int err;

	err = parse_ipv4(frame, len, false, &ihl_len);
	if (err)
		return err;
	if (get_be16(ip + 6) & (PKT_IP_MF | PKT_IP_OFFMASK))
		return -RL_DROP_FRAGMENT;
	if (ip[9] != PKT_PROTO_UDP)
		return -RL_DROP_NOT_VXLAN;
	/* parse_ipv4() checked that the whole IP packet is in the frame. */
	ip_payload = get_be16(ip + 2) - ihl_len;
	if (ip_payload < RL_UDP_HLEN)
		return -RL_DROP_TRUNCATED;
	udp = ip + ihl_len;
	if (get_be16(udp + 2) != port)
		return -RL_DROP_NOT_VXLAN;
	udp_len = get_be16(udp + 4);
	if (udp_len < RL_UDP_HLEN + RL_VXLAN_HDR_LEN + RL_ETH_HLEN || udp_len > ip_payload)
		return -RL_DROP_BAD_IP_LEN;
	vx = udp + RL_UDP_HLEN;
	if (!(vx[0] & RL_VXLAN_FLAG_I) || (get_be32(vx + 4) >> 8) != vni)
		return -RL_DROP_BAD_VNI;
	if (udp_len - RL_UDP_HLEN - RL_VXLAN_HDR_LEN < PKT_INNER_MIN)
		return -RL_DROP_NO_INNER_ETH;

	memset(out, 0, sizeof(*out));
	out->inner_off = (__u16)(RL_ETH_HLEN + ihl_len + RL_UDP_HLEN + RL_VXLAN_HDR_LEN);
	out->inner_len = (__u16)(udp_len - RL_UDP_HLEN - RL_VXLAN_HDR_LEN);
	memcpy(&out->outer_saddr, ip + 12, 4);
	out->vni = vni;
	return 0;
}

/* Rotate left, for jhash_final(). */
static inline __u32 rol32(__u32 w, unsigned int s)
{
	return (w << s) | (w >> (32 - s));
}

/* Bob Jenkins' lookup3 final mix (the kernel's __jhash_final): full avalanche in 3 words. */
static __u32 jhash_3words(__u32 a, __u32 b, __u32 c, __u32 initval)
{
	initval += 0xdeadbeef + (3 << 2);
	a += initval;
	b += initval;
	c += initval;
	c ^= b;
	c -= rol32(b, 14);
	a ^= c;
	a -= rol32(c, 11);
	b ^= a;
	b -= rol32(a, 25);
	c ^= b;
	c -= rol32(b, 16);
	a ^= c;
	a -= rol32(c, 4);
	b ^= a;
	b -= rol32(a, 14);
	c ^= b;
	c -= rol32(b, 24);
	return c;
}

__u32 rl_flow_hash(const struct rl_pkt_info *info)
{
	__u32 ports;

	if (info->is_fragment)
		return jhash_3words(info->saddr, info->daddr, 0, 0);
	ports = (__u32)ntohs(info->sport) << 16 | ntohs(info->dport);
	return jhash_3words(info->saddr, info->daddr, ports, info->ip_proto);
}

void rl_encap(__u8 *outer, __u32 inner_len, const struct rl_encap_params *p,
	      __u32 flow_hash)
{
	__u8 *ip = outer + RL_ETH_HLEN;
	__u8 *udp = ip + RL_IPV4_HLEN;
	__u8 *vx = udp + RL_UDP_HLEN;
	__u32 range, sport;

	memcpy(outer, p->outer_dst_mac, 6);
	memcpy(outer + 6, p->outer_src_mac, 6);
	put_be16(outer + 12, PKT_ETH_P_IP);

	ip[0] = 0x45;
	ip[1] = 0;
	put_be16(ip + 2, (__u16)(RL_IPV4_HLEN + RL_UDP_HLEN + RL_VXLAN_HDR_LEN + inner_len));
	put_be16(ip + 4, 0);
	put_be16(ip + 6, PKT_IP_DF);
	ip[8] = p->ttl;
	ip[9] = PKT_PROTO_UDP;
	memcpy(ip + 12, &p->outer_saddr, 4);
	memcpy(ip + 16, &p->outer_daddr, 4);
	ipv4_csum_set(ip, RL_IPV4_HLEN);

	/* A reversed range degenerates to sport_min rather than wrapping. */
	sport = p->sport_min;
	if (p->sport_max >= p->sport_min) {
		range = (__u32)p->sport_max - p->sport_min + 1;
		sport += flow_hash % range;
	}
	put_be16(udp, (__u16)sport);
	put_be16(udp + 2, p->dport);
	put_be16(udp + 4, (__u16)(RL_UDP_HLEN + RL_VXLAN_HDR_LEN + inner_len));
	put_be16(udp + 6, 0);

	vx[0] = RL_VXLAN_FLAG_I;
	vx[1] = vx[2] = vx[3] = 0;
	put_be32(vx + 4, (p->vni & 0xffffff) << 8);

	if (inner_len >= RL_ETH_HLEN)
		rl_set_macs(outer + RL_ENCAP_LEN, p->inner_dst_mac, p->inner_src_mac);
}

int rl_l4_csum_fill(__u8 *frame, __u32 len, const struct rl_pkt_info *info)
{
	__u32 ihl_len, l4_len, csum_off;
	__u8 *l4;
	__u16 csum;

	if (info->is_fragment ||
	    (info->ip_proto != PKT_PROTO_TCP && info->ip_proto != PKT_PROTO_UDP))
		return 0;
	if (info->l4_off < info->l3_off)
		return -RL_DROP_TRUNCATED;
	ihl_len = info->l4_off - info->l3_off;
	if (info->ip_tot_len < ihl_len)
		return -RL_DROP_TRUNCATED;
	l4_len = info->ip_tot_len - ihl_len;
	if (info->l4_off > len || l4_len > len - info->l4_off)
		return -RL_DROP_TRUNCATED;
	l4 = frame + info->l4_off;

	if (info->ip_proto == PKT_PROTO_UDP) {
		__u32 udp_len;

		if (l4_len < RL_UDP_HLEN)
			return -RL_DROP_TRUNCATED;
		csum_off = 6;
		if (get_be16(l4 + csum_off) == 0)
			return 0;
		/* The receiver sums what the UDP length covers (RFC 768). */
		udp_len = get_be16(l4 + 4);
		if (udp_len < RL_UDP_HLEN || udp_len > l4_len)
			return -RL_DROP_TRUNCATED;
		l4_len = udp_len;
	} else {
		if (l4_len < PKT_TCP_HLEN)
			return -RL_DROP_TRUNCATED;
		csum_off = 16;
	}

	put_be16(l4 + csum_off, 0);
	csum = csum_l4(l4, l4_len, info->saddr, info->daddr, info->ip_proto);
	if (info->ip_proto == PKT_PROTO_UDP && csum == 0)
		csum = 0xffff;
	put_be16(l4 + csum_off, csum);
	return 0;
}

void rl_ipv4_dec_ttl(__u8 *frame, const struct rl_pkt_info *info)
{
	__u8 *ip = frame + info->l3_off;
	__u16 old_word, new_word, check;
	__u64 sum;

	/* RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), m = the TTL/protocol word. */
	old_word = get_be16(ip + 8);
	ip[8]--;
	new_word = get_be16(ip + 8);
	check = get_be16(ip + 10);
	sum = (__u16)~check + (__u16)~old_word + (__u64)new_word;
	put_be16(ip + 10, (__u16)~csum_fold(sum));
}

void rl_set_macs(__u8 *frame, const __u8 dst[6], const __u8 src[6])
{
	memcpy(frame, dst, 6);
	memcpy(frame + 6, src, 6);
}

int rl_tso_init(struct rl_tso_state *st, const struct rl_chain *chain,
		__u32 mtu)
{
	const __u8 *tcp;
	__u32 ihl_len, l4_len, tcp_len, hdrs, i;
	__u64 total = 0;
	int err;

	if (chain->n == 0 || chain->n > RL_MAX_FRAGS)
		return -RL_DROP_BAD_CHAIN;
	err = rl_parse_inner(chain->buf[0], chain->len[0], true, &st->info);
	if (err)
		return err;
	if (st->info.ip_proto != PKT_PROTO_TCP || st->info.is_fragment)
		return -RL_DROP_OVERSIZE;

	ihl_len = st->info.l4_off - st->info.l3_off;
	l4_len = st->info.ip_tot_len - ihl_len;
	if (l4_len < PKT_TCP_HLEN || st->info.l4_off + PKT_TCP_HLEN > chain->len[0])
		return -RL_DROP_TRUNCATED;
	tcp = chain->buf[0] + st->info.l4_off;
	tcp_len = (__u32)(tcp[12] >> 4) * 4;
	if (tcp_len < PKT_TCP_HLEN || tcp_len > l4_len ||
	    st->info.l4_off + tcp_len > chain->len[0])
		return -RL_DROP_TRUNCATED;

	for (i = 0; i < chain->n; i++)
		total += chain->len[i];
	if (total != (__u64)RL_ETH_HLEN + st->info.ip_tot_len)
		return -RL_DROP_BAD_CHAIN;

	hdrs = ihl_len + tcp_len;
	if (st->info.ip_tot_len > mtu && mtu <= hdrs)
		return -RL_DROP_OVERSIZE;

	st->chain = chain;
	st->hdr_len = st->info.l4_off + tcp_len;
	st->payload_total = l4_len - tcp_len;
	st->payload_done = 0;
	/* 0 only when the packet fits and has no payload: one header-only segment. */
	st->mss = mtu > hdrs ? mtu - hdrs : 0;
	st->seg_index = 0;
	st->frag = 0;
	st->frag_off = st->hdr_len;
	return 0;
}

/*
 * Copy @need payload bytes from the chain's read position to @dst, crossing
 * buffer boundaries. Each pass either finishes or steps to the next buffer,
 * so the loop runs at most chain->n + 1 times.
 */
static int tso_gather(struct rl_tso_state *st, __u8 *dst, __u32 need)
{
	const struct rl_chain *ch = st->chain;

	while (need && st->frag < ch->n) {
		__u32 blen = ch->len[st->frag];
		__u32 n = blen > st->frag_off ? blen - st->frag_off : 0;

		if (n > need)
			n = need;
		memcpy(dst, ch->buf[st->frag] + st->frag_off, n);
		dst += n;
		need -= n;
		st->frag_off += n;
		if (st->frag_off >= blen) {
			st->frag++;
			st->frag_off = 0;
		}
	}
	return need ? -RL_DROP_BAD_CHAIN : 0;
}

int rl_tso_next(struct rl_tso_state *st, __u8 *dst, __u32 room)
{
	const struct rl_pkt_info *info = &st->info;
	__u32 ihl_len = info->l4_off - info->l3_off;
	__u32 tcp_len = st->hdr_len - info->l4_off;
	__u32 seg_payload, seg_len;
	__u8 *ip = dst + info->l3_off;
	__u8 *tcp = dst + info->l4_off;
	bool last;
	__u8 flags;
	int err;

	if (st->seg_index > 0 && st->payload_done >= st->payload_total)
		return 0;
	seg_payload = st->payload_total - st->payload_done;
	if (seg_payload > st->mss)
		seg_payload = st->mss;
	seg_len = st->hdr_len + seg_payload;
	if (seg_len > room)
		return -RL_DROP_OVERSIZE;

	memcpy(dst, st->chain->buf[0], st->hdr_len);
	err = tso_gather(st, dst + st->hdr_len, seg_payload);
	if (err)
		return err;

	put_be16(ip + 2, (__u16)(ihl_len + tcp_len + seg_payload));
	put_be16(ip + 4, (__u16)(get_be16(ip + 4) + st->seg_index));
	ipv4_csum_set(ip, ihl_len);

	put_be32(tcp + 4, get_be32(tcp + 4) + st->payload_done);
	last = st->payload_done + seg_payload >= st->payload_total;
	flags = tcp[13];
	if (!last)
		flags &= (__u8)~(PKT_TCP_FIN | PKT_TCP_PSH);
	if (st->seg_index > 0)
		flags &= (__u8)~PKT_TCP_CWR;
	tcp[13] = flags;
	put_be16(tcp + 16, 0);
	put_be16(tcp + 16, csum_l4(tcp, tcp_len + seg_payload, info->saddr, info->daddr,
				   PKT_PROTO_TCP));

	st->payload_done += seg_payload;
	st->seg_index++;
	return (int)seg_len;
}
