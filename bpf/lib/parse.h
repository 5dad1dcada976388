/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Bounds-checked header parsing for Ringlane's XDP programs.
 *
 * A cursor walks the packet from ctx->data; every parse_*() first proves to
 * the verifier that the whole header lies before the end, then returns a
 * pointer to it and moves the cursor past it. A truncated or invalid header
 * returns -1 and leaves the cursor alone; a valid header with contents we
 * do not want (another EtherType, protocol, port) is the caller's decision,
 * so the two are counted apart.
 *
 * Verifier notes, which is why the code looks the way it does:
 *  - Every access to packet memory needs a prior comparison of a pointer
 *    (with the same base and at least that offset) against data_end. The
 *    comparison must be on the pointer itself, not on a length computed
 *    from it: "if (p + n > end)" works, "if (end - p < n)" does not.
 *  - A variable offset (the IPv4 header length) may be added to a packet
 *    pointer only when the verifier knows its range. ihl is a 4-bit field,
 *    so ihl * 4 is at most 60; we never clamp it by hand, the bounds come
 *    from the load itself.
 *  - Everything is __always_inline, so the range proved inside a parse_*()
 *    carries over to the caller's own accesses and the cursor stays in
 *    registers. (A global, separately verified function could not even take
 *    a packet pointer as an argument.)
 *
 * Multi-buffer (xdp.frags) programs see only the first buffer between data
 * and data_end. Headers fit there (drivers and the generic path put at
 * least the first few hundred bytes in it), the payload may not, and
 * nothing here reads beyond the headers. Were headers ever split across
 * buffers, the frame would look truncated and be passed to the kernel:
 * slower, never wrong.
 */
#ifndef RINGLANE_PARSE_H
#define RINGLANE_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "ringlane/abi.h"

/* Kernel-internal in include/net/ip.h, not exported to uapi. */
#define RL_IP_MF 0x2000
#define RL_IP_OFFSET 0x1fff

/* The VXLAN header (RFC 7348). There is no uapi definition. */
struct rl_vxlanhdr {
	__u8 flags;		/* RL_VXLAN_FLAG_I and reserved bits */
	__u8 rsvd1[3];
	__be32 vni_rsvd;	/* VNI in the upper 24 bits, 8 reserved bits */
};
_Static_assert(sizeof(struct rl_vxlanhdr) == RL_VXLAN_HDR_LEN, "rl_vxlanhdr");

struct rl_cursor {
	void *pos;
	void *end;
};

static __always_inline void rl_cursor_init(struct rl_cursor *c, struct xdp_md *ctx)
{
	c->pos = (void *)(long)ctx->data;
	c->end = (void *)(long)ctx->data_end;
}

/* Ethernet header. Returns the EtherType in network order (compare it with
 * bpf_htons(ETH_P_*), folded at compile time), or -1 if truncated. No VLAN
 * handling: pods send untagged frames, and NICs strip the underlay tag. */
static __always_inline int parse_ethhdr(struct rl_cursor *c, struct ethhdr **ethp)
{
	struct ethhdr *eth = c->pos;

	if ((void *)(eth + 1) > c->end)
		return -1;
	c->pos = eth + 1;
	*ethp = eth;
	return eth->h_proto;
}

/* IPv4 header including options. Returns the protocol, or -1 if the header
 * is truncated, not version 4, has IHL < 5, or a total length shorter than
 * the header (which also catches BIG TCP's tot_len == 0: such super-frames
 * are for the kernel, not for a ring core limited to 64 KiB packets).
 *
 * tot_len is deliberately not compared with data_end: in a multi-buffer
 * frame the packet continues past the first buffer. @zero_len_ok: accept a
 * total length of 0 as well (parse_iphdr_gso()). */
static __always_inline int __parse_iphdr(struct rl_cursor *c, struct iphdr **iphp,
					 int zero_len_ok)
{
	struct iphdr *iph = c->pos;
	__u32 hlen;

	if ((void *)(iph + 1) > c->end)
		return -1;
	if (iph->version != 4)
		return -1;
	/* Bounded by the 4-bit field: hlen in [0, 60], known to the verifier. */
	hlen = iph->ihl * 4;
	if (hlen < sizeof(*iph))
		return -1;
	/* Options: the variable-length part must be proved in bounds too,
	 * through the same pointer the caller continues from. */
	if (c->pos + hlen > c->end)
		return -1;
	if (bpf_ntohs(iph->tot_len) < hlen && !(zero_len_ok && iph->tot_len == 0))
		return -1;
	c->pos += hlen;
	*iphp = iph;
	return iph->protocol;
}

static __always_inline int parse_iphdr(struct rl_cursor *c, struct iphdr **iphp)
{
	return __parse_iphdr(c, iphp, 0);
}

/* As parse_iphdr(), but a total length of 0 is accepted too: the kernel's
 * GSO super-frames above 64 KiB (BIG TCP) carry it. For checks that must
 * hold for every packet a pod sends (policy), not for forwarding. */
static __always_inline int parse_iphdr_gso(struct rl_cursor *c, struct iphdr **iphp)
{
	return __parse_iphdr(c, iphp, 1);
}

/* Non-zero if @iph is any fragment (MF set or an offset). Only the first
 * fragment carries the L4 header, and VXLAN is never fragmented by a sane
 * sender, so fragments are the kernel's job (it reassembles). */
static __always_inline int rl_ip_is_fragment(const struct iphdr *iph)
{
	return (iph->frag_off & bpf_htons(RL_IP_MF | RL_IP_OFFSET)) != 0;
}

/* Non-zero if @iph is a fragment other than the first: what follows its
 * header is payload, not an L4 header. */
static __always_inline int rl_ip_is_later_fragment(const struct iphdr *iph)
{
	return (iph->frag_off & bpf_htons(RL_IP_OFFSET)) != 0;
}

/* UDP header. 0, or -1 if truncated. */
static __always_inline int parse_udphdr(struct rl_cursor *c, struct udphdr **udpp)
{
	struct udphdr *udp = c->pos;

	if ((void *)(udp + 1) > c->end)
		return -1;
	c->pos = udp + 1;
	*udpp = udp;
	return 0;
}

/* TCP header (the fixed 20 bytes; options are not needed). 0, or -1 if
 * truncated. */
static __always_inline int parse_tcphdr(struct rl_cursor *c, struct tcphdr **tcpp)
{
	struct tcphdr *tcp = c->pos;

	if ((void *)(tcp + 1) > c->end)
		return -1;
	c->pos = tcp + 1;
	*tcpp = tcp;
	return 0;
}

/* The ICMP header (RFC 792). linux/icmp.h includes libc's socket headers,
 * which do not build for -target bpf. */
struct rl_icmphdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be32 rest;		/* unused, or the next-hop MTU of fragmentation-needed */
};
_Static_assert(sizeof(struct rl_icmphdr) == 8, "rl_icmphdr");

#define RL_ICMP_DEST_UNREACH 3
#define RL_ICMP_REDIRECT 5
#define RL_ICMP_TIME_EXCEEDED 11
#define RL_ICMP_PARAMETERPROB 12

/* ICMP header. 0, or -1 if truncated. */
static __always_inline int parse_icmphdr(struct rl_cursor *c, struct rl_icmphdr **icmpp)
{
	struct rl_icmphdr *icmp = c->pos;

	if ((void *)(icmp + 1) > c->end)
		return -1;
	c->pos = icmp + 1;
	*icmpp = icmp;
	return 0;
}

/* The IPv4 header an ICMP error quotes, read as leniently as the kernel's
 * icmp_unreach() reads it: IHL >= 5 and in bounds, nothing else (neither
 * version nor total length: a quote is not a packet). Returns the quoted
 * protocol or -1. A check on quotes must not be stricter than the kernel,
 * or a malformed quote would slip past the check and still be acted on. */
static __always_inline int parse_quoted_iphdr(struct rl_cursor *c, struct iphdr **iphp)
{
	struct iphdr *iph = c->pos;
	__u32 hlen;

	if ((void *)(iph + 1) > c->end)
		return -1;
	hlen = iph->ihl * 4;
	if (hlen < sizeof(*iph))
		return -1;
	if (c->pos + hlen > c->end)
		return -1;
	c->pos += hlen;
	*iphp = iph;
	return iph->protocol;
}

/* ARP for IPv4 over Ethernet (RFC 826), the only kind a pod sends. */
struct rl_arp_eth_ipv4 {
	__be16 htype;
	__be16 ptype;
	__u8 hlen;
	__u8 plen;
	__be16 oper;
	__u8 sha[6];		/* sender MAC */
	__u8 spa[4];		/* sender IPv4 (bytes: the field is unaligned) */
	__u8 tha[6];
	__u8 tpa[4];
};
_Static_assert(sizeof(struct rl_arp_eth_ipv4) == 28, "rl_arp_eth_ipv4");

/* ARP payload. 0 if it is a complete Ethernet/IPv4 ARP, -1 if truncated or
 * of another kind (the kernel's arp_rcv() drops those on an Ethernet link). */
static __always_inline int parse_arp(struct rl_cursor *c, struct rl_arp_eth_ipv4 **arpp)
{
	struct rl_arp_eth_ipv4 *arp = c->pos;

	if ((void *)(arp + 1) > c->end)
		return -1;
	if (arp->htype != bpf_htons(1) || arp->ptype != bpf_htons(ETH_P_IP) ||
	    arp->hlen != 6 || arp->plen != 4)
		return -1;
	c->pos = arp + 1;
	*arpp = arp;
	return 0;
}

/* VXLAN header. 0, or -1 if truncated. The caller checks the I flag and
 * VNI; reserved bits are ignored as RFC 7348 requires of receivers. */
static __always_inline int parse_vxlanhdr(struct rl_cursor *c, struct rl_vxlanhdr **vxp)
{
	struct rl_vxlanhdr *vx = c->pos;

	if ((void *)(vx + 1) > c->end)
		return -1;
	c->pos = vx + 1;
	*vxp = vx;
	return 0;
}

/* The 24-bit VNI of @vx, host order. */
static __always_inline __u32 rl_vxlan_vni(const struct rl_vxlanhdr *vx)
{
	return bpf_ntohl(vx->vni_rsvd) >> 8;
}

#endif /* RINGLANE_PARSE_H */
