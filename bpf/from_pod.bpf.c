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
#include "lib/parse.h"
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
	/* ARP, IPv6, ...: the kernel path (IPv4-only overlay). */
	if (proto != bpf_htons(ETH_P_IP))
		return rl_pass(RL_XS_POD_PASS_NOT_IPV4);

	proto = parse_iphdr(&c, &iph);
	if (proto < 0)
		return rl_pass(RL_XS_POD_PASS_MALFORMED);

	/* Only traffic to another node's podCIDR is overlay traffic; local
	 * pods, services (before kube-proxy/NAT in the kernel) and the
	 * outside world stay on the kernel path. */
	key.prefixlen = 32;
	key.addr = iph->daddr;
	remote = bpf_map_lookup_elem(&rl_remote_cidrs, &key);
	if (!remote)
		return rl_pass(RL_XS_POD_PASS_NOT_REMOTE);

	/* The veth must be registered: its entry names the socket slot the
	 * ring core serves for this pod. ingress_ifindex is the host-side
	 * veth the frame was received on. */
	ifindex = ctx->ingress_ifindex;
	ep = bpf_map_lookup_elem(&rl_endpoints, &ifindex);
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
