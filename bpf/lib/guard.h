/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Overlay hardening shared by both programs (docs/threat-model.md): who is a
 * VTEP, which addresses this node itself receives on, and which ICMP errors
 * quote the overlay's own underlay headers.
 *
 * Why a FIB lookup and not a list of the node's addresses: the kernel's VXLAN
 * socket (the fallback device's) is bound to INADDR_ANY on the VXLAN port, so
 * a datagram to *any* address the node accepts locally -- its underlay IP, its
 * VTEP address, every pod gateway address, a second NIC's address, a subnet
 * broadcast -- is decapsulated. The kernel's own routing table is the only
 * complete list of those, and bpf_fib_lookup() asks it exactly the question
 * the kernel will ask the packet. It is only consulted for the rare packets
 * that are addressed to the VXLAN port, so its cost is off the fast path.
 */
#ifndef RINGLANE_GUARD_H
#define RINGLANE_GUARD_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "ringlane/abi.h"
#include "ringlane/maps.h"
#include "lib/parse.h"

#define RL_AF_INET 2 /* linux/socket.h, which does not build for -target bpf */

/* RL_VTEP_F_* of @addr in rl_vteps, 0 if it is none of ours. */
static __always_inline __u32 rl_vtep_flags(__be32 addr)
{
	struct rl_vtep_info *v = bpf_map_lookup_elem(&rl_vteps, &addr);

	return v ? v->flags : 0;
}

/*
 * Non-zero if the node itself would receive a packet from @saddr to @daddr
 * that arrived on this program's interface: a local or broadcast route, or
 * multicast. Every answer other than "forwarded" counts as received: a local
 * or broadcast route, no route at all, forwarding disabled on the interface
 * (then nothing is forwarded, only delivered), or a failed lookup. For the
 * VXLAN port this errs on the side of refusing; the kernel drops the
 * unroutable ones anyway.
 */
static __always_inline int rl_node_receives(struct xdp_md *ctx, __be32 saddr, __be32 daddr)
{
	struct bpf_fib_lookup fib = {};
	__u32 d = bpf_ntohl(daddr);
	long rc;

	/* 224.0.0.0/4 and 255.255.255.255 are not in the FIB as local routes,
	 * yet a socket bound to INADDR_ANY receives them. */
	if ((d & 0xf0000000) == 0xe0000000 || d == 0xffffffff)
		return 1;
	fib.family = RL_AF_INET;
	fib.l4_protocol = IPPROTO_UDP;
	fib.ipv4_src = saddr;
	fib.ipv4_dst = daddr;
	fib.ifindex = ctx->ingress_ifindex;
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	return rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH &&
	       rc != BPF_FIB_LKUP_RET_UNSUPP_LWT;
}

/* ICMP types whose message quotes a packet the kernel then acts on:
 * destination unreachable (fragmentation needed lowers the path MTU),
 * redirect, time exceeded, parameter problem. */
static __always_inline int rl_icmp_is_error(__u8 type)
{
	return type == RL_ICMP_DEST_UNREACH || type == RL_ICMP_REDIRECT ||
	       type == RL_ICMP_TIME_EXCEEDED || type == RL_ICMP_PARAMETERPROB;
}

/*
 * Non-zero if the ICMP message at @l4 (just past an IPv4 header that is not
 * a later fragment) is an error that quotes the overlay's underlay traffic:
 * a UDP datagram from or to the VXLAN port, or any packet addressed to a
 * VTEP. Nothing a pod legitimately received can look like that, and the
 * kernel acts on such quotes (one fragmentation-needed lowers the path MTU
 * towards a node for ten minutes, for every pod). @fragmented: the ICMP
 * message is the first fragment of several; an error message is never that
 * large, and its quote could hide in the later fragments, so it counts as
 * quoting the underlay.
 */
static __always_inline int rl_icmp_quotes_underlay(struct rl_cursor *l4, __u16 vxlan_port,
						    int fragmented)
{
	struct rl_icmphdr *icmp;
	struct iphdr *quoted;
	struct udphdr *ports;
	int proto;

	if (parse_icmphdr(l4, &icmp) < 0 || !rl_icmp_is_error(icmp->type))
		return 0;
	if (fragmented)
		return 1;
	/* A quote the kernel would discard (too short) needs no check. */
	proto = parse_quoted_iphdr(l4, &quoted);
	if (proto < 0)
		return 0;
	if (rl_vtep_flags(quoted->daddr))
		return 1;
	/* The kernel reads the quoted ports whatever the quoted fragment
	 * offset says; so do we. It needs 8 bytes of them (icmp_socket_deliver). */
	if (proto != IPPROTO_UDP || parse_udphdr(l4, &ports) < 0)
		return 0;
	return bpf_ntohs(ports->source) == vxlan_port || bpf_ntohs(ports->dest) == vxlan_port;
}

#endif /* RINGLANE_GUARD_H */
