// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * rl_from_pod: pod egress -> ring core.
 *
 * Attached in generic (SKB) mode to the host side of each accelerated pod's
 * veth, so it sees every frame the pod sends. Overlay traffic (IPv4 to a
 * remote podCIDR) from a registered endpoint is redirected to that veth's
 * AF_XDP socket, where the ring core encapsulates it. Everything else, and
 * every case the ring core cannot or should not handle, is XDP_PASS: the
 * kernel routes it exactly as without Ringlane, overlay traffic included
 * (through the kernel VXLAN device). Passing is therefore always safe;
 * redirecting is the optimisation.
 *
 * Before either, a few rejections (XDP_DROP, counted by reason; see
 * docs/threat-model.md), decided without looking at the XSKMAP so that they
 * hold while the ring core is down: a registered pod must send with its own
 * MAC and IPv4 address (ARP included), must not send to the VXLAN port of its
 * node or of another VTEP, and must not send ICMP errors that quote the
 * overlay's underlay headers. Then network policy (lib/policy.h): the
 * pod's egress policy, and the ingress policy of a destination on this node
 * (same-node traffic never reaches from_wire), also decided before any
 * redirect, so that it holds on the ring core's path and the kernel's alike.
 *
 * In generic mode the pod's TSO super-frames arrive whole, as multi-buffer
 * frames (hence xdp.frags: without it the kernel would first linearise each
 * one, a copy of up to 64 KiB); only the first buffer's linear part is visible, and we read
 * nothing but headers.
 *
 * The program name is an interface: the agent finds and detaches programs
 * named rl_from_pod after a crash. Do not rename.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "ringlane/abi.h"
#include "ringlane/maps.h"
#include "lib/guard.h"
#include "lib/parse.h"
#include "lib/policy.h"
#include "lib/stats.h"

/*
 * Load-time configuration, set by the loader before load (the verifier then
 * sees a constant and prunes dead branches).
 *
 * rl_cfg_overlay_mtu: the largest inner IPv4 packet (tot_len) that fits in
 * one VXLAN frame on the underlay, i.e. underlay MTU - RL_ENCAP_LEN; 1450
 * for a 1500-byte underlay. Larger non-TCP packets go to the kernel, which
 * fragments them or answers ICMP fragmentation-needed through its VXLAN
 * device; larger TCP packets are TSO super-frames the ring core segments.
 */
const volatile __u32 rl_cfg_overlay_mtu = 1500 - RL_ENCAP_LEN;

/* rl_cfg_tcp_mode: RL_TCP_RING, RL_TCP_KERNEL or RL_TCP_AUTO (abi.h). */
const volatile __u32 rl_cfg_tcp_mode = RL_TCP_AUTO;

/* rl_cfg_vxlan_port: the overlay's UDP port, host order (as from_wire's). */
const volatile __u32 rl_cfg_vxlan_port = RL_VXLAN_PORT_DEFAULT;

/* rl_cfg_antispoof: 1 drops a registered pod's frames whose Ethernet source,
 * IPv4 source or ARP sender is not its endpoint's; 0 leaves them alone (for
 * pods that legitimately bridge or route other addresses). */
const volatile __u32 rl_cfg_antispoof = 1;

/* rl_cfg_flow_sample_every: while a policy is installed, record one in this
 * many allowed (or reply) packets in rl_flow_samples, drawn at random;
 * denied packets are always recorded. 0: allowed packets never are. */
const volatile __u32 rl_cfg_flow_sample_every = 0;

static __always_inline int rl_mac_eq(const __u8 *a, const __u8 *b)
{
	return ((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]) |
		(a[4] ^ b[4]) | (a[5] ^ b[5])) == 0;
}

/* An ARP sender other than the pod itself (its MAC, its IPv4 address or
 * 0.0.0.0 for an RFC 5227 probe): RL_XS_POD_DROP_SPOOF_*, else 0. An ARP
 * that is not Ethernet/IPv4 or is truncated is the kernel's to drop. */
static __always_inline int arp_spoofed(struct rl_cursor *c, const struct rl_endpoint_info *ep)
{
	const __u8 *ip = (const __u8 *)&ep->ip;
	struct rl_arp_eth_ipv4 *arp;

	if (parse_arp(c, &arp) < 0)
		return 0;
	if (!rl_mac_eq(arp->sha, ep->mac))
		return RL_XS_POD_DROP_SPOOF_MAC;
	if ((arp->spa[0] | arp->spa[1] | arp->spa[2] | arp->spa[3]) == 0)
		return 0;
	if ((arp->spa[0] ^ ip[0]) | (arp->spa[1] ^ ip[1]) | (arp->spa[2] ^ ip[2]) |
	    (arp->spa[3] ^ ip[3]))
		return RL_XS_POD_DROP_SPOOF_IP;
	return 0;
}

/*
 * What a pod may never send, whatever the destination and whether or not the
 * ring core runs: RL_XS_POD_DROP_* or 0. @c points just past the IPv4 header.
 *
 *  - UDP to the VXLAN port of an address the node receives on (the kernel's
 *    VXLAN socket would decapsulate it and route the inner frame: a pod
 *    could inject frames as if from any node) or of a known VTEP (the same at
 *    another node, or through a masquerade that gives it a node's source).
 *    Only a first fragment has ports; the later ones cannot be reassembled
 *    without it.
 *  - ICMP errors quoting underlay traffic (rl_icmp_quotes_underlay()).
 */
static __always_inline int pod_guard(struct xdp_md *ctx, struct rl_cursor *c,
				     const struct iphdr *iph, int proto)
{
	struct rl_cursor l4 = *c;
	struct udphdr *udp;
	__u32 flags;

	if (rl_ip_is_later_fragment(iph))
		return 0;
	if (proto == IPPROTO_ICMP)
		return rl_icmp_quotes_underlay(&l4, rl_cfg_vxlan_port, rl_ip_is_fragment(iph))
		       ? RL_XS_POD_DROP_ICMP_UNDERLAY : 0;
	if (proto != IPPROTO_UDP || parse_udphdr(&l4, &udp) < 0 ||
	    bpf_ntohs(udp->dest) != rl_cfg_vxlan_port)
		return 0;
	flags = rl_vtep_flags(iph->daddr);
	if (flags & (RL_VTEP_F_NODE | RL_VTEP_F_EXTRA))
		return RL_XS_POD_DROP_VXLAN_TO_VTEP;
	if ((flags & RL_VTEP_F_SELF) || rl_node_receives(ctx, iph->saddr, iph->daddr))
		return RL_XS_POD_DROP_VXLAN_TO_NODE;
	return 0;
}

/* A spoofing drop for @reason (RL_XS_POD_DROP_SPOOF_*), also counted on the
 * endpoint's own counters (by its real address, never the forged one). */
static __always_inline int spoof_drop(const struct rl_endpoint_info *ep, enum rl_xdp_stat reason)
{
	rl_ep_count(rl_ep_counters_of(ep->ip), RL_EPC_DROP_SPOOF);
	return rl_drop(reason);
}

/*
 * Policy and per-endpoint counters for an IPv4 packet of endpoint @ep: 0 to
 * go on, or RL_XS_POD_DROP_POLICY_* to drop it. @c points just past the
 * IPv4 header @iph, whose protocol is @proto; it is not moved.
 *
 * Two checks: the pod's egress towards the destination, then the
 * destination's ingress from the pod. Only pods of this node have entries
 * in this node's trie, so for any other destination the second lookup
 * misses and allows; for a pod of this node it is the only check its
 * ingress policy gets, as the kernel delivers same-node traffic without
 * from_wire. The sender's TX counts what goes on (IPv4 total length for
 * bytes), the receiver's RX is counted where the packet is known to stay on
 * this node (rl_from_pod(): not to a remote podCIDR), so that traffic to
 * other nodes, the hot path, pays for one counter lookup, not two. Drops
 * count on the end whose policy denied.
 */
static __always_inline int pod_policy(struct xdp_md *ctx, const struct rl_cursor *c,
				      const struct iphdr *iph,
				      int proto, const struct rl_endpoint_info *ep)
{
	struct rl_ep_counters *src = rl_ep_counters_of(ep->ip);
	__u8 dir = RL_DIR_EGRESS;
	struct rl_tuple t;
	void *trie;
	__u32 len;
	int verdict;

	trie = rl_policy_trie();
	if (trie) {
		rl_tuple_parse(&t, c, iph, proto);
		verdict = rl_policy_verdict(ctx, trie, &t, 1, ep->ip, 1, &dir);
		rl_flow_sample(&t, verdict, dir, RL_POINT_FROM_POD, rl_cfg_flow_sample_every);
		if (verdict == RL_VERDICT_DENY && dir == RL_DIR_EGRESS) {
			rl_ep_count(src, RL_EPC_DROP_POLICY_EGRESS);
			return RL_XS_POD_DROP_POLICY_EGRESS;
		}
		if (verdict == RL_VERDICT_DENY) {
			rl_ep_count(rl_ep_counters_of(iph->daddr), RL_EPC_DROP_POLICY_INGRESS);
			return RL_XS_POD_DROP_POLICY_INGRESS;
		}
	}
	len = bpf_ntohs(iph->tot_len);
	rl_ep_count_packet(src, RL_EPC_TX_PACKETS, RL_EPC_TX_BYTES, len);
	return 0;
}

/*
 * Whether this TCP packet belongs on the kernel path. In AUTO mode a flow
 * stays on the ring core (low latency for request/response traffic) until
 * its first super-frame, proof of a bulk sender whose GSO the kernel path
 * keeps whole; from then on every packet of the flow goes to the kernel.
 * Steering whole flows, once, keeps reordering to that single switch.
 */
static __always_inline int tcp_to_kernel(struct rl_cursor *c, const struct iphdr *iph)
{
	struct rl_flow_info moved = { .path = RL_FLOW_KERNEL };
	struct rl_flow_key key = { .saddr = iph->saddr, .daddr = iph->daddr };
	struct tcphdr *tcp;

	if (rl_cfg_tcp_mode == RL_TCP_RING)
		return 0;
	if (rl_cfg_tcp_mode == RL_TCP_KERNEL)
		return 1;
	/* a later fragment has no ports; fragmented TCP is rare enough to
	 * leave where the kernel would put it */
	if (rl_ip_is_fragment(iph) || parse_tcphdr(c, &tcp) < 0)
		return 1;
	key.sport = tcp->source;
	key.dport = tcp->dest;
	if (bpf_map_lookup_elem(&rl_flows, &key))
		return 1;
	if (bpf_ntohs(iph->tot_len) <= rl_cfg_overlay_mtu)
		return 0;
	/* NOEXIST: when two CPUs race on one flow's super-frames, one counts */
	if (!bpf_map_update_elem(&rl_flows, &key, &moved, BPF_NOEXIST))
		rl_count(RL_XS_POD_FLOW_TO_KERNEL);
	return 1;
}

SEC("xdp.frags")
int rl_from_pod(struct xdp_md *ctx)
{
	struct rl_endpoint_info *ep;
	struct rl_remote_info *remote;
	struct rl_lpm4_key key;
	struct rl_cursor c;
	struct ethhdr *eth;
	struct iphdr *iph;
	__u32 ifindex;
	int proto, ret;

	rl_cursor_init(&c, ctx);

	proto = parse_ethhdr(&c, &eth);
	if (proto < 0)
		return rl_pass(RL_XS_POD_PASS_MALFORMED);

	/* The veth's endpoint, if registered: its entry names the socket slot
	 * the ring core serves for this pod, and the pod's own addresses.
	 * ingress_ifindex is the host-side veth the frame was received on. */
	ifindex = ctx->ingress_ifindex;
	ep = bpf_map_lookup_elem(&rl_endpoints, &ifindex);

	/* Anti-spoofing, on every frame of a registered pod (not only overlay
	 * traffic: a forged source is as bad towards the node or a local pod). */
	if (ep && rl_cfg_antispoof) {
		if (!rl_mac_eq(eth->h_source, ep->mac))
			return spoof_drop(ep, RL_XS_POD_DROP_SPOOF_MAC);
		if (proto == bpf_htons(ETH_P_ARP)) {
			ret = arp_spoofed(&c, ep);
			if (ret)
				return spoof_drop(ep, ret);
		}
	}
	/* ARP, IPv6, ...: the kernel path (IPv4-only overlay). */
	if (proto != bpf_htons(ETH_P_IP))
		return rl_pass(RL_XS_POD_PASS_NOT_IPV4);

	/* The source is checked on the raw header, before parse_iphdr()'s
	 * length checks: the kernel accepts a GSO frame whose tot_len is 0
	 * (BIG TCP), which parse_iphdr() calls malformed and passes. */
	iph = c.pos;
	if (ep && rl_cfg_antispoof && (void *)(iph + 1) <= c.end && iph->saddr != ep->ip)
		return spoof_drop(ep, RL_XS_POD_DROP_SPOOF_IP);

	proto = parse_iphdr(&c, &iph);
	if (proto < 0) {
		/* A BIG TCP super-frame is no malformed packet to the policy: it
		 * is checked like any other, then left to the kernel as before. */
		if (ep && parse_iphdr_gso(&c, &iph) >= 0) {
			ret = pod_policy(ctx, &c, iph, iph->protocol, ep);
			if (ret)
				return rl_drop(ret);
		}
		return rl_pass(RL_XS_POD_PASS_MALFORMED);
	}

	ret = pod_guard(ctx, &c, iph, proto);
	if (ret)
		return rl_drop(ret);
	if (ep) {
		ret = pod_policy(ctx, &c, iph, proto, ep);
		if (ret)
			return rl_drop(ret);
	}

	/* Only traffic to another node's podCIDR is overlay traffic; local
	 * pods, services (before kube-proxy/NAT in the kernel) and the
	 * outside world stay on the kernel path. */
	key.prefixlen = 32;
	key.addr = iph->daddr;
	remote = bpf_map_lookup_elem(&rl_remote_cidrs, &key);
	if (!remote) {
		/* Delivered on this node (if to a pod): the receiver's RX. */
		rl_ep_count_packet(rl_ep_counters_of(iph->daddr), RL_EPC_RX_PACKETS,
				   RL_EPC_RX_BYTES, bpf_ntohs(iph->tot_len));
		return rl_pass(RL_XS_POD_PASS_NOT_REMOTE);
	}
	if (!ep)
		return rl_pass(RL_XS_POD_PASS_NO_ENDPOINT);

	/* The kernel owes the sender an ICMP time-exceeded; the ring core
	 * does not generate ICMP. */
	if (iph->ttl <= 1)
		return rl_pass(RL_XS_POD_PASS_TTL);

	/* TCP above the MTU is a TSO super-frame that the ring core segments
	 * (or the kernel, see tcp_to_kernel()); anything else that big would
	 * need IP fragmentation or PMTU signalling, which the kernel's VXLAN
	 * path does. */
	if (proto == IPPROTO_TCP) {
		if (tcp_to_kernel(&c, iph))
			return rl_pass(RL_XS_POD_PASS_TCP_KERNEL);
	} else if (bpf_ntohs(iph->tot_len) > rl_cfg_overlay_mtu) {
		return rl_pass(RL_XS_POD_PASS_OVERSIZE);
	}

	/* An empty slot (ring core not running or socket not yet bound) makes
	 * the helper return the XDP_PASS default: the kernel VXLAN fallback. */
	ret = bpf_redirect_map(&rl_xsks, ep->slot, XDP_PASS);
	rl_count(ret == XDP_REDIRECT ? RL_XS_POD_REDIRECT : RL_XS_POD_FALLBACK);
	return ret;
}

/* The kernel offers GPL-only helpers only to programs with a GPL-compatible
 * license; declaring GPL keeps every helper available as the program grows. */
char LICENSE[] SEC("license") = "GPL";
