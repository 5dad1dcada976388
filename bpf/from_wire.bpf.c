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
 * Before that, whatever the kernel's VXLAN socket would take -- UDP to our
 * port, on any address -- must come from a known VTEP (rl_vteps: the nodes
 * and extraVteps), be addressed to this node's underlay address, carry our
 * VNI with the I flag, not be fragmented, and not carry VXLAN for a node
 * inside (decapsulated twice). Everything else on our port is XDP_DROP,
 * counted by reason, with or without the ring core (docs/threat-model.md).
 *
 * Then network policy (lib/policy.h): the inner packet must be admitted by
 * the ingress policy of its destination, on the ring core's path and the
 * kernel's alike, so it is decided before the two part ways. Link probes of
 * the ring cores (inner EtherType RL_PROBE_ETHERTYPE) go to the ring core
 * like traffic for an accelerated pod.
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
#include "lib/guard.h"
#include "lib/parse.h"
#include "lib/policy.h"
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
/* rl_cfg_underlay_ip: this node's underlay IPv4 address, host order; the
 * outer destination every node sends to. 0: rely on rl_vteps' SELF entries
 * alone (they also hold any secondary underlay address). */
const volatile __u32 rl_cfg_underlay_ip = 0;
/* rl_cfg_flow_sample_every: as from_pod's (one allowed packet in this many
 * is sampled while a policy is installed; 0: none; denies always are). */
const volatile __u32 rl_cfg_flow_sample_every = 0;

static __always_inline int is_self(__be32 daddr)
{
	if (rl_cfg_underlay_ip && bpf_ntohl(daddr) == rl_cfg_underlay_ip)
		return 1;
	return (rl_vtep_flags(daddr) & RL_VTEP_F_SELF) != 0;
}

/* RFC 1624 (eqn. 3) update of a ones-complement checksum for one 16-bit word. */
static __always_inline __u16 csum_replace16(__u16 check, __u16 old, __u16 new)
{
	__u32 sum = (__u16)~check + (__u16)~old + (__u32)new;

	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/*
 * RFC 7348 asks receivers to ignore the reserved bits; the kernel's VXLAN
 * device instead drops any frame that has one set (a documented deviation in
 * vxlan_rcv()). So that the fallback accepts what the ring core accepts, the
 * reserved bits are cleared before the frame goes anywhere. A non-zero UDP
 * checksum is updated incrementally, which also keeps the sum over the
 * datagram unchanged. With a zero checksum (what VXLAN senders use) the sum
 * changes; that would only matter for a CHECKSUM_COMPLETE skb, which drivers
 * do not produce while an XDP program may rewrite their frames (mlx5 turns
 * it off with XDP attached), and generic mode on a veth never sees one.
 */
static __always_inline void clear_reserved(struct udphdr *udp, struct rl_vxlanhdr *vx)
{
	__u16 *w = (__u16 *)vx;
	__u16 old[4], i;

	for (i = 0; i < 4; i++)
		old[i] = w[i];
	vx->flags = RL_VXLAN_FLAG_I;
	vx->rsvd1[0] = 0;
	vx->rsvd1[1] = 0;
	vx->rsvd1[2] = 0;
	vx->vni_rsvd &= bpf_htonl(0xffffff00);
	if (!udp->check)
		return;
	for (i = 0; i < 4; i++)
		udp->check = csum_replace16(udp->check, old[i], w[i]);
	if (!udp->check)
		udp->check = 0xffff;
}

static __always_inline int has_reserved(const struct rl_vxlanhdr *vx)
{
	return (vx->flags & ~RL_VXLAN_FLAG_I) || vx->rsvd1[0] || vx->rsvd1[1] || vx->rsvd1[2] ||
	       (vx->vni_rsvd & bpf_htonl(0xff));
}

/*
 * Non-zero if the inner frame at @outer is VXLAN that the receiving kernel
 * would decapsulate a second time: UDP to the VXLAN port of an address this
 * node receives on, or of a VTEP. Inner VXLAN to a pod is the pod's business.
 * A later inner fragment has no ports; without its first it is never
 * reassembled. Malformed inner frames are the later checks' to count.
 */
static __always_inline int nested_vxlan(struct xdp_md *ctx, const struct rl_cursor *outer)
{
	struct rl_cursor c = *outer;
	struct ethhdr *eth;
	struct iphdr *iph;
	struct udphdr *udp;

	if (parse_ethhdr(&c, &eth) != bpf_htons(ETH_P_IP) ||
	    parse_iphdr(&c, &iph) != IPPROTO_UDP || rl_ip_is_later_fragment(iph) ||
	    parse_udphdr(&c, &udp) < 0 || bpf_ntohs(udp->dest) != rl_cfg_vxlan_port)
		return 0;
	return rl_vtep_flags(iph->daddr) || rl_node_receives(ctx, iph->saddr, iph->daddr);
}

/*
 * A TCP flow the sending node steered to the kernel (its frames carry a
 * kernel source port): steer the local pod's replies to the kernel as well,
 * by recording the reverse tuple in rl_flows, which from_pod consults. Both
 * directions of a bulk flow then use one path, and its ACKs do not queue
 * behind the ring core. Looked up first: an LRU update per packet would
 * cost more than the lookup. @iph is the inner TCP packet's header (already
 * parsed by the caller), @l4 just past it.
 */
static __always_inline void follow_kernel_flow(const struct rl_cursor *l4,
					       const struct iphdr *iph)
{
	struct rl_flow_info moved = { .path = RL_FLOW_KERNEL };
	struct rl_cursor c = *l4;
	struct rl_flow_key key;
	struct tcphdr *tcp;

	if (rl_ip_is_fragment(iph) || parse_tcphdr(&c, &tcp) < 0)
		return;
	key.saddr = iph->daddr;
	key.daddr = iph->saddr;
	key.sport = tcp->dest;
	key.dport = tcp->source;
	if (!bpf_map_lookup_elem(&rl_flows, &key))
		bpf_map_update_elem(&rl_flows, &key, &moved, BPF_ANY);
}

/*
 * Ingress policy and per-endpoint counters for the inner IPv4 packet @iph
 * (protocol @proto, @l4 just past its header, not moved): 0 to go on, or
 * RL_XS_WIRE_DROP_POLICY_INGRESS. A destination that is no pod of this
 * node has no entries in the trie: allowed.
 */
static __always_inline int wire_policy(struct xdp_md *ctx, const struct rl_cursor *l4,
				       const struct iphdr *iph,
				       int proto)
{
	struct rl_ep_counters *dst = rl_ep_counters_of(iph->daddr);
	__u8 dir = RL_DIR_INGRESS;
	struct rl_tuple t;
	void *trie;
	int verdict;

	trie = rl_policy_trie();
	if (trie) {
		rl_tuple_parse(&t, l4, iph, proto);
		verdict = rl_policy_verdict(ctx, trie, &t, 0, 0, 1, &dir);
		rl_flow_sample(&t, verdict, dir, RL_POINT_FROM_WIRE, rl_cfg_flow_sample_every);
		if (verdict == RL_VERDICT_DENY) {
			rl_ep_count(dst, RL_EPC_DROP_POLICY_INGRESS);
			return RL_XS_WIRE_DROP_POLICY_INGRESS;
		}
	}
	rl_ep_count_packet(dst, RL_EPC_RX_PACKETS, RL_EPC_RX_BYTES, bpf_ntohs(iph->tot_len));
	return 0;
}

/*
 * Hand the frame to the underlay socket of the queue it arrived on, counting
 * @stat; an empty slot (ring core down) or a queue beyond the reserved slots
 * is the kernel fallback. One socket per queue keeps decapsulation on the
 * CPU that received the frame.
 */
static __always_inline int to_ring_core(struct xdp_md *ctx, enum rl_xdp_stat stat)
{
	__u32 queue = ctx->rx_queue_index;
	int ret;

	if (queue >= RL_MAX_UNDERLAY_QUEUES)
		return rl_pass(RL_XS_WIRE_FALLBACK);
	ret = bpf_redirect_map(&rl_xsks, RL_UNDERLAY_SLOT_BASE + queue, XDP_PASS);
	rl_count(ret == XDP_REDIRECT ? stat : RL_XS_WIRE_FALLBACK);
	return ret;
}

SEC("xdp.frags")
int rl_from_wire(struct xdp_md *ctx)
{
	struct rl_local_ip_info *local;
	struct rl_cursor c, in;
	struct rl_vxlanhdr *vx;
	struct iphdr *iph, *inner;
	struct ethhdr *eth;
	struct udphdr *udp;
	int proto, ret, inner_eth, inner_l4;
	__be32 daddr;
	__u32 sport;

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
	/* Outer fragments are for the kernel to reassemble, and the kernel
	 * would then hand a reassembled VXLAN datagram to its VXLAN socket
	 * without anyone checking it. No node fragments VXLAN (the overlay MTU
	 * leaves room for the headers; the ring core drops what does not fit),
	 * so the first fragment of a datagram to our port is dropped, and the
	 * later ones can never be reassembled. Later fragments have no UDP
	 * header: what would be there is payload. */
	if (rl_ip_is_fragment(iph)) {
		if (!rl_ip_is_later_fragment(iph) && parse_udphdr(&c, &udp) == 0 &&
		    bpf_ntohs(udp->dest) == rl_cfg_vxlan_port)
			return rl_drop(RL_XS_WIRE_DROP_FRAGMENT);
		return rl_pass(RL_XS_WIRE_PASS_FRAGMENT);
	}
	if (parse_udphdr(&c, &udp) < 0)
		return rl_pass(RL_XS_WIRE_PASS_MALFORMED);
	if (bpf_ntohs(udp->dest) != rl_cfg_vxlan_port)
		return rl_pass(RL_XS_WIRE_PASS_NOT_VXLAN);

	/* Our port: the kernel's VXLAN socket takes it on any local address,
	 * so who sent it and to whom is checked here, for both paths. */
	if (!(rl_vtep_flags(iph->saddr) & (RL_VTEP_F_NODE | RL_VTEP_F_EXTRA)))
		return rl_drop(RL_XS_WIRE_DROP_UNKNOWN_VTEP);
	if (!is_self(iph->daddr))
		return rl_drop(RL_XS_WIRE_DROP_NOT_TO_NODE);

	/* VXLAN: the I flag and our VNI, or it is not ours to carry. Reserved
	 * bits are ignored, as RFC 7348 asks of receivers (see
	 * clear_reserved() for the kernel's side). */
	if (parse_vxlanhdr(&c, &vx) < 0)
		return rl_pass(RL_XS_WIRE_PASS_MALFORMED);
	if (!(vx->flags & RL_VXLAN_FLAG_I) || rl_vxlan_vni(vx) != rl_cfg_vni)
		return rl_drop(RL_XS_WIRE_DROP_BAD_VNI);
	if (has_reserved(vx)) {
		clear_reserved(udp, vx);
		rl_count(RL_XS_WIRE_RSVD_CLEARED);
	}
	if (nested_vxlan(ctx, &c))
		return rl_drop(RL_XS_WIRE_DROP_NESTED_VXLAN);

	/* The inner frame, parsed once for the policy, the kernel branch and
	 * the ring path.
	 * inner_eth is the inner EtherType or -1, inner_l4 the inner IPv4
	 * protocol or -1; @inner is valid only where inner_l4 >= 0, which the
	 * verifier follows path by path (on the others it never initialised
	 * the pointer, and each use below sits behind that test). */
	in = c;
	inner_l4 = -1;
	inner_eth = parse_ethhdr(&in, &eth);
	if (inner_eth == bpf_htons(ETH_P_IP))
		inner_l4 = parse_iphdr(&in, &inner);
	if (inner_l4 >= 0) {
		ret = wire_policy(ctx, &in, inner, inner_l4);
		if (ret)
			return rl_drop(ret);
	}

	/* A kernel VXLAN sender (a node whose ring core is down, or a flow
	 * steered to the kernel) is answered by the kernel here too, so one
	 * flow never straddles both paths on the receiving side. */
	sport = bpf_ntohs(udp->source);
	if (sport < rl_cfg_ring_sport_min || sport > rl_cfg_ring_sport_max) {
		if (inner_l4 == IPPROTO_TCP)
			follow_kernel_flow(&in, inner);
		return rl_pass(RL_XS_WIRE_PASS_KERNEL_SENT);
	}

	/* Inner frame: the destination decides. A link probe is the ring
	 * core's own (nothing else on the node would take it). Any other
	 * non-IPv4 inner frame (ARP through the overlay) has no accelerated
	 * destination: NOT_LOCAL. */
	if (inner_eth < 0)
		return rl_pass(RL_XS_WIRE_PASS_MALFORMED);
	if (inner_eth == bpf_htons(RL_PROBE_ETHERTYPE))
		return to_ring_core(ctx, RL_XS_WIRE_PROBE);
	if (inner_eth != bpf_htons(ETH_P_IP))
		return rl_pass(RL_XS_WIRE_PASS_NOT_LOCAL);
	if (inner_l4 < 0)
		return rl_pass(RL_XS_WIRE_PASS_MALFORMED);
	daddr = inner->daddr;
	local = bpf_map_lookup_elem(&rl_local_ips, &daddr);
	if (!local)
		return rl_pass(RL_XS_WIRE_PASS_NOT_LOCAL);
	return to_ring_core(ctx, RL_XS_WIRE_REDIRECT);
}

/* The kernel offers GPL-only helpers only to programs with a GPL-compatible
 * license; declaring GPL keeps every helper available as the program grows. */
char LICENSE[] SEC("license") = "GPL";
