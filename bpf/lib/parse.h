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
 * frame the packet continues past the first buffer. */
static __always_inline int parse_iphdr(struct rl_cursor *c, struct iphdr **iphp)
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
	if (bpf_ntohs(iph->tot_len) < hlen)
		return -1;
	c->pos += hlen;
	*iphp = iph;
	return iph->protocol;
}

/* Non-zero if @iph is any fragment (MF set or an offset). Only the first
 * fragment carries the L4 header, and VXLAN is never fragmented by a sane
 * sender, so fragments are the kernel's job (it reassembles). */
static __always_inline int rl_ip_is_fragment(const struct iphdr *iph)
{
	return (iph->frag_off & bpf_htons(RL_IP_MF | RL_IP_OFFSET)) != 0;
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
