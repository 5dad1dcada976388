// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * rl_from_wire: underlay VXLAN -> ring core.
 *
 * Attached in native mode to the underlay interface. A frame is redirected
 * to the AF_XDP socket of the queue it arrived on only when the ring core
 * can deliver it: outer IPv4/UDP to our VXLAN port, not fragmented, our VNI
 * with the I flag, and an inner IPv4 destination that is an accelerated
 * local pod (rl_local_ips). Everything else is XDP_PASS, so the node's own
 * traffic, other VXLAN users and pods that are not accelerated keep using
 * the kernel stack, including its VXLAN device (the fallback when the ring
 * core is down: its sockets' slots are then empty).
 *
 * Native mode runs before the kernel allocates an skb, which is the point
 * of the fast path; jumbo frames arrive as multi-buffer frames (xdp.frags),
 * and only headers in the first buffer are read.
 *
 * The program name is an interface: the agent finds and detaches programs
 * named rl_from_wire after a crash. Do not rename.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "ringlane/abi.h"
#include "ringlane/maps.h"
#include "lib/parse.h"
#include "lib/stats.h"

/*
 * Load-time configuration, set by the loader before load. Both must match
 * the kernel VXLAN device (the fallback) and the ring core's encapsulation,
 * or the fast path and the fallback would disagree about what is overlay.
 *
 * rl_cfg_vxlan_port: outer UDP destination port, host order.
 * rl_cfg_vni: the overlay's 24-bit VNI, host order (1 is flannel's default).
 */
const volatile __u32 rl_cfg_vxlan_port = RL_VXLAN_PORT_DEFAULT;
const volatile __u32 rl_cfg_vni = 1;
/* rl_cfg_ring_sport_min/max: the ring core's outer source ports (abi.h). */
const volatile __u32 rl_cfg_ring_sport_min = RL_RING_SPORT_MIN;
const volatile __u32 rl_cfg_ring_sport_max = RL_RING_SPORT_MAX;

/*
 * A TCP flow the sending node steered to the kernel (its frames carry a
 * kernel source port): steer the local pod's replies to the kernel as well,
 * by recording the reverse tuple in rl_flows, which from_pod consults. Both
 * directions of a bulk flow then use one path, and its ACKs do not queue
 * behind the ring core. Looked up first: an LRU update per packet would
 * cost more than the lookup.
 */
static __always_inline void follow_kernel_flow(struct rl_cursor *c)
{
	struct rl_flow_info moved = { .path = RL_FLOW_KERNEL };
	struct rl_flow_key key;
	struct ethhdr *eth;
	struct iphdr *iph;
	struct tcphdr *tcp;

	if (parse_ethhdr(c, &eth) != bpf_htons(ETH_P_IP) ||
	    parse_iphdr(c, &iph) != IPPROTO_TCP || rl_ip_is_fragment(iph) ||
	    parse_tcphdr(c, &tcp) < 0)
		return;
	key.saddr = iph->daddr;
	key.daddr = iph->saddr;
	key.sport = tcp->dest;
	key.dport = tcp->source;
	if (!bpf_map_lookup_elem(&rl_flows, &key))
		bpf_map_update_elem(&rl_flows, &key, &moved, BPF_ANY);
}

SEC("xdp.frags")
int rl_from_wire(struct xdp_md *ctx)
{
	struct rl_local_ip_info *local;
	struct rl_vxlanhdr *vx;
	struct rl_cursor c;
	struct ethhdr *eth;
	struct iphdr *iph;
	struct udphdr *udp;
	__be32 daddr;
	__u32 queue, sport;
	int proto, ret;

	rl_cursor_init(&c, ctx);

	/* Outer headers. Truncation is MALFORMED; a valid header that is not
	 * ours is NOT_VXLAN. */
	proto = parse_ethhdr(&c, &eth);
	if (proto < 0)
		return rl_pass(RL_XS_WIRE_PASS_MALFORMED);
	if (proto != bpf_htons(ETH_P_IP))
		return rl_pass(RL_XS_WIRE_PASS_NOT_VXLAN);
	proto = parse_iphdr(&c, &iph);
	if (proto < 0)
		return rl_pass(RL_XS_WIRE_PASS_MALFORMED);
	if (proto != IPPROTO_UDP)
		return rl_pass(RL_XS_WIRE_PASS_NOT_VXLAN);
	/* Checked before the UDP header: later fragments have none, and what
	 * would be there is payload. The kernel reassembles and then hands the
	 * datagram to its VXLAN device. */
	if (rl_ip_is_fragment(iph))
		return rl_pass(RL_XS_WIRE_PASS_FRAGMENT);
	if (parse_udphdr(&c, &udp) < 0)
		return rl_pass(RL_XS_WIRE_PASS_MALFORMED);
	if (bpf_ntohs(udp->dest) != rl_cfg_vxlan_port)
		return rl_pass(RL_XS_WIRE_PASS_NOT_VXLAN);

	/* VXLAN: only the I flag and the VNI are checked. Reserved bits are
	 * ignored, as RFC 7348 asks of receivers; the ring core decapsulates
	 * such frames the same way. */
	if (parse_vxlanhdr(&c, &vx) < 0)
		return rl_pass(RL_XS_WIRE_PASS_MALFORMED);
	if (!(vx->flags & RL_VXLAN_FLAG_I) || rl_vxlan_vni(vx) != rl_cfg_vni)
		return rl_pass(RL_XS_WIRE_PASS_OTHER_VNI);

	/* A kernel VXLAN sender (a node whose ring core is down, or a flow
	 * steered to the kernel) is answered by the kernel here too, so one
	 * flow never straddles both paths on the receiving side. */
	sport = bpf_ntohs(udp->source);
	if (sport < rl_cfg_ring_sport_min || sport > rl_cfg_ring_sport_max) {
		follow_kernel_flow(&c);
		return rl_pass(RL_XS_WIRE_PASS_KERNEL_SENT);
	}

	/* Inner frame: the destination decides. A non-IPv4 inner frame (ARP
	 * through the overlay) has no accelerated destination: NOT_LOCAL. */
	proto = parse_ethhdr(&c, &eth);
	if (proto < 0)
		return rl_pass(RL_XS_WIRE_PASS_MALFORMED);
	if (proto != bpf_htons(ETH_P_IP))
		return rl_pass(RL_XS_WIRE_PASS_NOT_LOCAL);
	if (parse_iphdr(&c, &iph) < 0)
		return rl_pass(RL_XS_WIRE_PASS_MALFORMED);
	daddr = iph->daddr;
	local = bpf_map_lookup_elem(&rl_local_ips, &daddr);
	if (!local)
		return rl_pass(RL_XS_WIRE_PASS_NOT_LOCAL);

	/* One underlay socket per queue, so decapsulation stays on the CPU
	 * that received the frame. A queue beyond the slots we reserve can
	 * have no socket: the kernel fallback, like an empty slot. */
	queue = ctx->rx_queue_index;
	if (queue >= RL_MAX_UNDERLAY_QUEUES)
		return rl_pass(RL_XS_WIRE_FALLBACK);
	ret = bpf_redirect_map(&rl_xsks, RL_UNDERLAY_SLOT_BASE + queue, XDP_PASS);
	rl_count(ret == XDP_REDIRECT ? RL_XS_WIRE_REDIRECT : RL_XS_WIRE_FALLBACK);
	return ret;
}

/* The kernel offers GPL-only helpers only to programs with a GPL-compatible
 * license; declaring GPL keeps every helper available as the program grows. */
char LICENSE[] SEC("license") = "GPL";
