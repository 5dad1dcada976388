/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The one home of every contract shared by the XDP programs (bpf/), the ring
 * core (agent/xdp/src/) and Python (agent/xdp/, through cffi).
 *
 * Rules: fixed-width types only, explicit padding, a _Static_assert on every
 * struct's size. Enums are append-only: a retired value keeps its number.
 * Python reads every value from the compiled module (lib.RL_*); no Python
 * literal repeats one.
 *
 * The file is read by three compilers: clang -target bpf, gcc for the ring
 * core, and cffi's cdef parser. For the last one, _build.py drops every line
 * that starts with '#' except plain integer #defines, and every
 * _Static_assert, so keep declarations on lines of their own.
 */
#ifndef RINGLANE_ABI_H
#define RINGLANE_ABI_H

#include <linux/types.h>

/* Bumped on any incompatible change; pinned maps record it (rl_meta).
 * 3: rl_vteps added, rl_xdp_stats grew (overlay hardening).
 * 4: policy maps, per-endpoint counters, flow samples, link probes. */
#define RL_ABI_VERSION 4

#define RL_VXLAN_PORT_DEFAULT 4789
#define RL_VXLAN_FLAG_I 0x08
#define RL_VXLAN_HDR_LEN 8
#define RL_ETH_HLEN 14
#define RL_IPV4_HLEN 20
#define RL_UDP_HLEN 8
/* Outer Ethernet + IPv4 (no options) + UDP + VXLAN. */
#define RL_ENCAP_LEN 50

/*
 * XSKMAP layout: slots [0, RL_MAX_ENDPOINTS) hold pod veth sockets, one per
 * endpoint; slot RL_UNDERLAY_SLOT_BASE + q holds the underlay socket of
 * queue q. An empty slot makes bpf_redirect_map() return XDP_PASS, which is
 * how traffic falls back to the kernel VXLAN device.
 */
#define RL_MAX_ENDPOINTS 1024
#define RL_MAX_UNDERLAY_QUEUES 64
#define RL_UNDERLAY_SLOT_BASE 1024
#define RL_XSK_SLOTS 1088
#define RL_MAX_REMOTE_CIDRS 16384
#define RL_MAX_VTEPS 16384

/*
 * Outer UDP source ports. The ring core and the kernel fallback device use
 * disjoint ranges (both still spread flows by hash inside theirs), so that
 * from_wire can tell who sent a frame: the ring core's frames go to the
 * receiving ring core, the kernel's to the receiving kernel. A flow steered
 * to the kernel on one node therefore stays on the kernel on the other.
 * The kernel's range is [MIN, MAX]; IFLA_VXLAN_PORT_RANGE takes MAX + 1.
 */
#define RL_RING_SPORT_MIN 49152
#define RL_RING_SPORT_MAX 65535
#define RL_KERNEL_SPORT_MIN 32768
#define RL_KERNEL_SPORT_MAX 49151

/*
 * TCP steering, from_pod's rl_cfg_tcp_mode. AF_XDP has no TSO: the ring
 * core segments a pod's 64 KiB super-frames one MTU at a time, which loses
 * to the kernel's GSO on bulk TCP (measured: docs/datapath.md). AUTO keeps
 * a TCP flow on the ring core until it sends its first super-frame, then
 * moves the whole flow, for good, to the kernel path (rl_flows).
 */
#define RL_TCP_RING 0
#define RL_TCP_KERNEL 1
#define RL_TCP_AUTO 2
#define RL_MAX_FLOWS 65536

/* Longest descriptor chain the ring core accepts for one packet (64 KiB
 * TSO super-frame in 4 KiB chunks plus slack). */
#define RL_MAX_FRAGS 20

/* rl_endpoints: host veth ifindex -> endpoint. Written by the agent. */
struct rl_endpoint_info {
	__u32 slot;		/* XSKMAP slot of this veth's socket */
	__be32 ip;		/* pod IPv4, network order */
	__u8 mac[6];		/* pod MAC */
	__u16 flags;		/* RL_EP_F_*; 0 today */
};
_Static_assert(sizeof(struct rl_endpoint_info) == 16, "rl_endpoint_info");

/* rl_local_ips: pod IPv4 (network order) -> XSKMAP slot of its veth. Lets
 * from_wire redirect only traffic the ring core can deliver; the rest (the
 * node's own VTEP address, pods not accelerated) stays on the kernel path. */
struct rl_local_ip_info {
	__u32 slot;
	__u32 ifindex;
};
_Static_assert(sizeof(struct rl_local_ip_info) == 8, "rl_local_ip_info");

/* rl_remote_cidrs: LPM trie key; prefixlen counts bits of addr. */
struct rl_lpm4_key {
	__u32 prefixlen;
	__be32 addr;
};
_Static_assert(sizeof(struct rl_lpm4_key) == 8, "rl_lpm4_key");

/* rl_remote_cidrs value: the node that owns the podCIDR. */
struct rl_remote_info {
	__be32 node_ip;
	__u32 flags;
};
_Static_assert(sizeof(struct rl_remote_info) == 8, "rl_remote_info");

/* rl_flows: a pod's TCP flow (its egress direction) -> path. Only flows
 * moved to the kernel are stored; LRU, so finished flows age out. */
struct rl_flow_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
};
_Static_assert(sizeof(struct rl_flow_key) == 12, "rl_flow_key");

#define RL_FLOW_KERNEL 1

struct rl_flow_info {
	__u32 path;		/* RL_FLOW_KERNEL */
	__u32 pad;
};
_Static_assert(sizeof(struct rl_flow_info) == 8, "rl_flow_info");

/*
 * rl_vteps: underlay IPv4 (network order) -> what that address is to us.
 * from_wire accepts VXLAN only from a NODE or EXTRA address and only to a
 * SELF address (or rl_cfg_underlay_ip); from_pod refuses to let a pod send
 * to any of them on the VXLAN port. Written by the agent: SELF from the
 * underlay interface's addresses, NODE from the node list, EXTRA from the
 * extraVteps configuration. One address may carry several flags.
 */
#define RL_VTEP_F_NODE 1	/* another node of the cluster */
#define RL_VTEP_F_EXTRA 2	/* an operator-listed VTEP (extraVteps) */
#define RL_VTEP_F_SELF 4	/* an underlay address of this node */

struct rl_vtep_info {
	__u32 flags;		/* RL_VTEP_F_* */
	__u32 pad;
};
_Static_assert(sizeof(struct rl_vtep_info) == 8, "rl_vtep_info");

/* rl_meta[0]: written once by whoever creates the pinned maps. */
struct rl_meta {
	__u32 abi_version;
	__u32 pad;
};
_Static_assert(sizeof(struct rl_meta) == 8, "rl_meta");

/*
 * Per-CPU counters of the XDP programs (rl_xdp_stats, PERCPU_ARRAY indexed
 * by this enum). Append-only.
 */
enum rl_xdp_stat {
	RL_XS_POD_REDIRECT = 0,		/* from_pod: handed to the ring core */
	RL_XS_POD_FALLBACK = 1,		/* from_pod: overlay, but no socket: kernel VXLAN */
	RL_XS_POD_PASS_NOT_IPV4 = 2,
	RL_XS_POD_PASS_NOT_REMOTE = 3,	/* destination is no remote podCIDR */
	RL_XS_POD_PASS_NO_ENDPOINT = 4,	/* veth not registered */
	RL_XS_POD_PASS_OVERSIZE = 5,	/* non-TCP packet above the overlay MTU */
	RL_XS_POD_PASS_TTL = 6,		/* TTL <= 1: the kernel sends time-exceeded */
	RL_XS_POD_PASS_MALFORMED = 7,	/* truncated or bad IPv4 header */
	RL_XS_WIRE_REDIRECT = 8,	/* from_wire: handed to the ring core */
	RL_XS_WIRE_FALLBACK = 9,	/* from_wire: ours, but no socket: kernel VXLAN */
	RL_XS_WIRE_PASS_NOT_VXLAN = 10,
	RL_XS_WIRE_PASS_OTHER_VNI_RETIRED = 11, /* ABI 2; now RL_XS_WIRE_DROP_BAD_VNI */
	RL_XS_WIRE_PASS_NOT_LOCAL = 12,	/* inner destination is no accelerated pod */
	RL_XS_WIRE_PASS_MALFORMED = 13,
	RL_XS_POD_PASS_TCP_KERNEL = 14,	/* TCP of a flow steered to the kernel path */
	RL_XS_POD_FLOW_TO_KERNEL = 15,	/* bulk TCP flows moved to the kernel (once each) */
	RL_XS_WIRE_PASS_KERNEL_SENT = 16, /* source port outside the ring range: kernel's */
	RL_XS_WIRE_PASS_FRAGMENT = 17,	/* outer fragment: the kernel reassembles */
	/* Overlay hardening (ABI 3): every rejection is an XDP_DROP counted by
	 * reason, with or without the ring core (docs/threat-model.md). */
	RL_XS_POD_DROP_SPOOF_MAC = 18,	/* Ethernet source / ARP sender MAC not the endpoint's */
	RL_XS_POD_DROP_SPOOF_IP = 19,	/* IPv4 source / ARP sender IP not the endpoint's */
	RL_XS_POD_DROP_VXLAN_TO_NODE = 20, /* to the VXLAN port of an address this node receives */
	RL_XS_POD_DROP_VXLAN_TO_VTEP = 21, /* to the VXLAN port of another node (rl_vteps) */
	RL_XS_POD_DROP_ICMP_UNDERLAY = 22, /* ICMP error quoting overlay/underlay headers */
	RL_XS_WIRE_DROP_UNKNOWN_VTEP = 23, /* VXLAN from an address that is no known VTEP */
	RL_XS_WIRE_DROP_NOT_TO_NODE = 24, /* VXLAN to an address that is not our underlay's */
	RL_XS_WIRE_DROP_BAD_VNI = 25,	/* our port, but another VNI or the I flag clear */
	RL_XS_WIRE_DROP_FRAGMENT = 26,	/* first fragment of a VXLAN datagram */
	RL_XS_WIRE_DROP_NESTED_VXLAN = 27, /* inner VXLAN to a node: would be decapsulated twice */
	RL_XS_WIRE_RSVD_CLEARED = 28,	/* event: reserved VXLAN bits cleared (RFC 7348) */
	/* Policy (ABI 4); per-endpoint figures are in rl_ep_stats. */
	RL_XS_POD_DROP_POLICY_EGRESS = 29,  /* the sending pod's egress policy denies */
	RL_XS_POD_DROP_POLICY_INGRESS = 30, /* a local destination's ingress policy denies */
	RL_XS_WIRE_DROP_POLICY_INGRESS = 31, /* inner packet denied by its pod's ingress policy */
	RL_XS_POLICY_REPLY = 32,	/* allowed as the reply of an allowed flow (rl_policy_ct) */
	RL_XS_FLOW_SAMPLES_LOST = 33,	/* rl_flow_samples was full: sample not recorded */
	RL_XS_WIRE_PROBE = 34,		/* link probe (RL_PROBE_ETHERTYPE) to the ring core */
	RL_XS_KERNEL_CT_ERROR = 35,	/* the kernel conntrack lookup failed (not: not found) */
	RL_XS_MAX = 36,
};

/*
 * Policy (docs/policy.md). The agent compiles every policy into one LPM trie
 * per generation and swaps it into rl_policy[0] (an ARRAY_OF_MAPS) with one
 * map update: a packet sees the old trie or the new one, never a mix, and
 * the kernel frees the old trie after an RCU grace period. An empty slot
 * means no policy at all: everything is allowed and nothing is tracked.
 *
 * Key: (endpoint, direction, peer prefix). The endpoint is a local pod's
 * IPv4; direction is RL_DIR_*; peer is the other end (the destination for
 * egress, the source for ingress). prefixlen counts the 64 bits of
 * endpoint + direction + pad, plus the peer's prefix length.
 *
 * Lookup result: no entry -> the endpoint is not isolated in that direction
 * (allow). An entry -> isolated; allowed iff one of its ranges matches. An
 * isolated endpoint always has a /0 peer entry, so a miss cannot mean
 * "isolated, peer unknown". The compiler stores, for each prefix, the union
 * of every rule whose CIDR contains it and whose exceptions do not, so the
 * longest match alone decides (exceptions are longer prefixes with fewer
 * ranges, nranges 0 being deny).
 */
#define RL_DIR_EGRESS 0
#define RL_DIR_INGRESS 1
#define RL_POLICY_KEY_FIXED_BITS 64
#define RL_MAX_POLICY_ENTRIES 131072
#define RL_POLICY_RANGES 16
#define RL_PROTO_ANY 0

struct rl_policy_key {
	__u32 prefixlen;
	__be32 endpoint;
	__u8 dir;
	__u8 pad[3];
	__be32 peer;
};
_Static_assert(sizeof(struct rl_policy_key) == 16, "rl_policy_key");

/* proto: IPPROTO_TCP/UDP/SCTP/ICMP, or RL_PROTO_ANY (any protocol, any
 * port). Ports are the destination port, host order, inclusive; ignored for
 * ICMP. A later IPv4 fragment carries no ports: it matches only a range
 * that covers every port (0..65535) or RL_PROTO_ANY. */
struct rl_port_range {
	__u8 proto;
	__u8 pad;
	__u16 lo;
	__u16 hi;
};
_Static_assert(sizeof(struct rl_port_range) == 6, "rl_port_range");

struct rl_policy_value {
	__u16 nranges;		/* 0..RL_POLICY_RANGES; 0 = deny */
	__u16 pad;
	struct rl_port_range ranges[RL_POLICY_RANGES];
};
_Static_assert(sizeof(struct rl_policy_value) == 100, "rl_policy_value");

/* rl_policy_ct: flows a policy check allowed, by their original tuple, so
 * that replies pass whatever the replier's policy says (Kubernetes
 * NetworkPolicy is stateful). Ports in network order; ICMP echo uses the
 * identifier as sport and 0 as dport for request and reply alike. LRU. */
#define RL_MAX_POLICY_CT 262144

struct rl_ct_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};
_Static_assert(sizeof(struct rl_ct_key) == 16, "rl_ct_key");

struct rl_ct_value {
	__u64 created_ns;	/* bpf_ktime_get_ns() of the first allowed packet */
};
_Static_assert(sizeof(struct rl_ct_value) == 8, "rl_ct_value");

/* rl_ep_stats: local pod IPv4 -> per-CPU counters, indexed by this enum.
 * Entries are created and deleted by the agent with the endpoint; the
 * programs only update existing ones (a spoofed address never makes one).
 * TX is what the pod sent (seen by from_pod), RX what was sent to it and
 * seen by a program (from_wire, or from_pod of a local sender). */
enum rl_ep_counter {
	RL_EPC_TX_PACKETS = 0,
	RL_EPC_TX_BYTES = 1,
	RL_EPC_RX_PACKETS = 2,
	RL_EPC_RX_BYTES = 3,
	RL_EPC_DROP_POLICY_EGRESS = 4,
	RL_EPC_DROP_POLICY_INGRESS = 5,
	RL_EPC_DROP_SPOOF = 6,
	RL_EPC_MAX = 7,
};

struct rl_ep_counters {
	__u64 c[RL_EPC_MAX];
	__u64 pad;
};
_Static_assert(sizeof(struct rl_ep_counters) == 64, "rl_ep_counters");

/* rl_flow_samples (RINGBUF) records: one in rl_cfg_flow_sample_every
 * policy decisions (0: none) and every denied packet, when there is room;
 * a full buffer costs the sample (RL_XS_FLOW_SAMPLES_LOST), never the
 * packet. */
#define RL_FLOW_SAMPLES_BYTES 262144
#define RL_VERDICT_ALLOW 0
#define RL_VERDICT_DENY 1
#define RL_VERDICT_REPLY 2
#define RL_POINT_FROM_POD 0
#define RL_POINT_FROM_WIRE 1

struct rl_flow_sample {
	__u64 ts_ns;		/* bpf_ktime_get_ns() */
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 verdict;		/* RL_VERDICT_* */
	__u8 dir;		/* RL_DIR_* of the check that decided */
	__u8 point;		/* RL_POINT_* */
	__u32 len;		/* packet length */
	__u32 pad;
};
_Static_assert(sizeof(struct rl_flow_sample) == 32, "rl_flow_sample");

/*
 * Link probes: the ring cores of two nodes measure their overlay link with
 * frames that travel the overlay itself (outer VXLAN with a ring source
 * port, like pod traffic), whose inner Ethernet type is RL_PROBE_ETHERTYPE
 * (IEEE 802 local experimental). from_wire hands them to the ring core of
 * the receiving node, which answers requests and times replies.
 */
#define RL_PROBE_ETHERTYPE 0x88B5

/*
 * Why the ring core dropped a packet. Helpers return -reason; only the
 * worker loop counts it. Append-only; Python's DropReason mirrors it and a
 * test checks the two agree.
 */
enum rl_drop_reason {
	RL_DROP_NONE = 0,
	RL_DROP_TRUNCATED = 1,		/* headers do not fit in the frame */
	RL_DROP_NOT_IPV4 = 2,
	RL_DROP_BAD_IHL = 3,		/* IHL < 5 or beyond the frame */
	RL_DROP_BAD_IP_LEN = 4,		/* IPv4 total length disagrees with the frame */
	RL_DROP_NOT_VXLAN = 5,		/* outer UDP is not our port */
	RL_DROP_BAD_VNI = 6,		/* VNI is not ours or the I flag is clear */
	RL_DROP_NO_INNER_ETH = 7,	/* VXLAN payload shorter than an inner Ethernet+IPv4 */
	RL_DROP_NO_ROUTE = 8,		/* encap: no remote podCIDR for the destination */
	RL_DROP_NO_ENDPOINT = 9,	/* decap: no local endpoint for the destination */
	RL_DROP_OVERSIZE = 10,		/* too large for the underlay MTU and not segmentable */
	RL_DROP_TX_RING_FULL = 11,
	RL_DROP_POOL_EMPTY = 12,	/* no free frame for a segment */
	RL_DROP_BAD_CHAIN = 13,		/* malformed or over-long descriptor chain */
	RL_DROP_FRAGMENT = 14,		/* outer IPv4 fragment: VXLAN is never fragmented by us */
	RL_DROP_MAX = 15,
};

#endif /* RINGLANE_ABI_H */
