/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * pkt: the ring core's packet logic, free of sockets and threads so that it
 * can be unit-tested and fuzzed on plain buffers.
 *
 * Every function is pure (touches only the buffers it is given), never
 * allocates, never reads past the lengths it is given, and returns 0 (or a
 * count) on success and -RL_DROP_<reason> (enum rl_drop_reason) on bad
 * input. All multi-byte fields in the structs below are in network order
 * where named __be*, host order otherwise.
 */
#ifndef RL_PKT_H
#define RL_PKT_H

#include <linux/types.h>
#include <stdbool.h>
#include "ringlane/abi.h"

/* A parsed inner (pod) IPv4 frame starting at its Ethernet header. */
struct rl_pkt_info {
	__u16 l3_off;		/* offset of the IPv4 header (14) */
	__u16 l4_off;		/* offset of the L4 header (l3_off + ihl*4) */
	__u16 ip_tot_len;	/* IPv4 total length, host order */
	__u8 ip_proto;
	__u8 ttl;
	__u8 is_fragment;	/* MF set or fragment offset != 0 */
	__u8 pad[3];
	__be32 saddr;
	__be32 daddr;
	__be16 sport;		/* 0 unless TCP/UDP and not a fragment */
	__be16 dport;
};

/* Parameters of one VXLAN encapsulation (one remote node, one worker). */
struct rl_encap_params {
	__u8 outer_src_mac[6];	/* underlay interface */
	__u8 outer_dst_mac[6];	/* next hop towards the remote node */
	__u8 inner_src_mac[6];	/* this node's VTEP MAC */
	__u8 inner_dst_mac[6];	/* remote node's VTEP MAC (what its kernel VXLAN expects) */
	__be32 outer_saddr;
	__be32 outer_daddr;
	__u32 vni;		/* host order, 24 bits */
	__u16 dport;		/* host order */
	__u16 sport_min;	/* host order; source port range for flow entropy */
	__u16 sport_max;
	__u8 ttl;		/* outer TTL */
	__u8 pad;
};

/* A parsed outer VXLAN frame. */
struct rl_vxlan_info {
	__u16 inner_off;	/* offset of the inner Ethernet header */
	__u16 inner_len;	/* inner frame length, from the UDP length (not the
				 * buffer: trailing bytes are not the inner frame's) */
	__be32 outer_saddr;
	__u32 vni;		/* host order */
};

/*
 * rl_parse_inner() - parse an Ethernet/IPv4 frame of @len bytes.
 * Accepts IP options and fragments (reported in @out). @len may be larger
 * than the IPv4 total length (Ethernet padding) but not smaller, except
 * when @allow_short is set (the first buffer of a descriptor chain).
 * Return: 0, or -RL_DROP_TRUNCATED/-RL_DROP_NOT_IPV4/-RL_DROP_BAD_IHL/
 * -RL_DROP_BAD_IP_LEN.
 */
int rl_parse_inner(const __u8 *frame, __u32 len, bool allow_short,
		   struct rl_pkt_info *out);

/*
 * rl_parse_vxlan() - parse an outer Ethernet/IPv4/UDP/VXLAN frame and check
 * that an inner Ethernet + minimal IPv4 header follows.
 * Return: 0, or -RL_DROP_TRUNCATED/-RL_DROP_NOT_IPV4/-RL_DROP_BAD_IHL/
 * -RL_DROP_BAD_IP_LEN/-RL_DROP_FRAGMENT/-RL_DROP_NOT_VXLAN/-RL_DROP_BAD_VNI/
 * -RL_DROP_NO_INNER_ETH.
 */
int rl_parse_vxlan(const __u8 *frame, __u32 len, __u32 vni, __u16 port,
		   struct rl_vxlan_info *out);

/*
 * rl_flow_hash() - a hash of the inner 5-tuple (addresses only for
 * fragments), stable for a flow, for the outer UDP source port.
 */
__u32 rl_flow_hash(const struct rl_pkt_info *info);

/*
 * rl_encap() - write the 50-byte outer Ethernet/IPv4/UDP/VXLAN header at
 * @outer, which must be followed by @inner_len bytes of inner frame, and
 * rewrite the inner Ethernet addresses to the VTEP MACs of @p. The outer
 * IPv4 checksum is computed; the outer UDP checksum is 0 (RFC 7348). The
 * source port is sport_min + hash % (sport_max - sport_min + 1).
 */
void rl_encap(__u8 *outer, __u32 inner_len, const struct rl_encap_params *p,
	      __u32 flow_hash);

/*
 * rl_l4_csum_fill() - compute the full TCP or UDP checksum of an unfragmented
 * inner packet in place. A pod's frames arrive with CHECKSUM_PARTIAL (only
 * the pseudo-header sum in the field) and AF_XDP has no checksum offload,
 * so the ring core always finishes it. A UDP checksum of 0 ("none") is left
 * as it is. No-op for other protocols and for fragments.
 * Return: 0 or -RL_DROP_TRUNCATED.
 */
int rl_l4_csum_fill(__u8 *frame, __u32 len, const struct rl_pkt_info *info);

/*
 * rl_ipv4_dec_ttl() - decrement the inner TTL with an incremental checksum
 * update (RFC 1624). The caller has checked ttl > 1.
 */
void rl_ipv4_dec_ttl(__u8 *frame, const struct rl_pkt_info *info);

/*
 * rl_set_macs() - write destination and source MAC into an Ethernet header.
 */
void rl_set_macs(__u8 *frame, const __u8 dst[6], const __u8 src[6]);

/* A packet spread across a descriptor chain (an xdp.frags super-frame). */
struct rl_chain {
	const __u8 *buf[RL_MAX_FRAGS];
	__u32 len[RL_MAX_FRAGS];
	__u32 n;
};

/*
 * TCP segmentation of a super-frame, as GSO would do it: every segment gets
 * a copy of the Ethernet/IPv4/TCP headers, an IP id incremented per segment,
 * its own total length and IPv4 checksum, sequence number advanced by the
 * payload before it, FIN and PSH only on the last segment, CWR only on the
 * first, and a full TCP checksum.
 */
struct rl_tso_state {
	const struct rl_chain *chain;
	struct rl_pkt_info info;	/* from the first buffer */
	__u32 hdr_len;			/* Ethernet + IPv4 + TCP header bytes */
	__u32 payload_total;		/* TCP payload bytes in the whole chain */
	__u32 payload_done;		/* bytes already emitted */
	__u32 mss;			/* payload bytes per segment */
	__u32 seg_index;
	__u32 frag;			/* read position: buffer index ... */
	__u32 frag_off;			/* ... and offset inside it */
};

/*
 * rl_tso_init() - prepare to segment @chain (whose first buffer holds at
 * least the Ethernet/IPv4/TCP headers) into packets whose IPv4 total length
 * is at most @mtu.
 * Return: 0; -RL_DROP_OVERSIZE if the packet is not TCP or the headers leave
 * no room for payload; -RL_DROP_BAD_CHAIN if the buffers' total disagrees
 * with the IPv4 total length; parse errors as rl_parse_inner().
 */
int rl_tso_init(struct rl_tso_state *st, const struct rl_chain *chain,
		__u32 mtu);

/*
 * rl_tso_next() - write the next segment (Ethernet header first) into @dst,
 * which has room for @room bytes.
 * Return: the segment's length in bytes, 0 when every byte was emitted, or
 * -RL_DROP_OVERSIZE if @room is too small for a segment.
 */
int rl_tso_next(struct rl_tso_state *st, __u8 *dst, __u32 room);

#endif /* RL_PKT_H */
