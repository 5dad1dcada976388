/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Network policy, per-endpoint counters and flow samples, shared by both
 * programs (abi.h "Policy", maps.h rl_policy*, docs/policy.md).
 *
 * One decision per packet, whichever program sees it:
 *
 *  1. No trie in rl_policy[0]: no policy at all. Allow, track nothing,
 *     sample nothing. (An array-of-maps lookup, which the verifier inlines:
 *     about 2 ns a packet.)
 *  2. The reverse of the packet's tuple is in rl_policy_ct: it answers a flow
 *     a check allowed before, so it passes whatever the policies of its two
 *     ends say (NetworkPolicy is stateful). RL_VERDICT_REPLY.
 *  3. Otherwise each check the caller asks for (the sender's egress, the
 *     receiver's ingress) looks the endpoint up in the trie: no entry, not
 *     isolated; an entry, allowed iff one of its ranges matches. The first
 *     check that denies decides. A packet every check allowed records its
 *     own tuple in rl_policy_ct, so that its replies pass (2).
 *  4. A packet a check denied is still a reply if the kernel's connection
 *     tracker has its connection the other way round: replies of Service
 *     backends, whose flows were recorded under the ClusterIP
 *     (rl_kernel_ct_is_reply(); only denied packets pay for that lookup).
 *
 * Recording only after *all* checks allowed matters on one node, where
 * from_pod checks both ends: a flow the receiver's ingress refused must not
 * leave a record through which the receiver could "reply" past its own
 * egress and the sender's ingress policy. Across nodes the sender's node
 * records after its egress check alone (the receiver's ingress is decided
 * on the other node), so there a refused flow does leave a record: the
 * receiver may answer to the sender's own address and port, as with any
 * conntrack-based enforcement.
 *
 * What can be tracked: TCP, UDP and SCTP with their ports, and ICMP echo
 * (the identifier stands in for the source port, the destination port is
 * 0, for request and reply alike). Only TCP/UDP/SCTP and echo replies are
 * looked for as replies; only TCP/UDP/SCTP and echo requests are recorded.
 * Packets without ports (a later fragment, an L4 header cut short) are
 * neither: they match only a range that covers every port (0..65535) or
 * RL_PROTO_ANY. So a fragmented reply loses its later fragments when the
 * replier's egress (or the requester's ingress) is restricted by port.
 *
 * Records never expire by age, only by LRU eviction (or the agent's
 * flush): a reply is admitted as long as its flow's record survives.
 *
 * Flow samples (struct rl_flow_sample): one per decision -- every deny, and
 * one in rl_cfg_flow_sample_every allows and replies -- with the direction
 * of the check that denied, or for allows and replies the program's own
 * (from_pod egress, from_wire ingress).
 *
 * Per-endpoint counters (rl_ep_stats): TX and RX count the IPv4 packets a
 * program lets go on (bytes: the IPv4 total length, the same figure on
 * both sides of the overlay); packets a program drops are counted only by
 * the reason's own counter, on the endpoint whose policy (or spoofing)
 * caused it.
 *
 * Nothing here ever fails a packet for lack of resources: a full
 * rl_policy_ct evicts the oldest flow (LRU), a full rl_flow_samples costs
 * the sample (RL_XS_FLOW_SAMPLES_LOST).
 */
#ifndef RINGLANE_POLICY_H
#define RINGLANE_POLICY_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "ringlane/abi.h"
#include "ringlane/maps.h"
#include "lib/parse.h"
#include "lib/stats.h"

#define RL_ICMP_ECHOREPLY 0
#define RL_ICMP_ECHO 8

/* rl_tuple.flags */
#define RL_T_NOPORTS 1		/* later fragment or L4 header cut short: no ports */
#define RL_T_TRACK 2		/* recorded in rl_policy_ct when allowed */
#define RL_T_REPLY 4		/* looked for as the reply of a recorded flow */

/* A packet as the policy sees it. Ports in network order, as the CT keys
 * and flow samples hold them; 0 where the packet has none. */
struct rl_tuple {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 flags;		/* RL_T_* */
	__u16 pad;
	__u32 len;		/* IPv4 total length: what the byte counters add */
};

/* The first four bytes of TCP, UDP and SCTP alike: all the policy reads. */
struct rl_l4ports {
	__be16 source;
	__be16 dest;
};

/*
 * Fill @t from the IPv4 header @iph (already parsed, protocol @proto) and
 * whatever L4 header follows at @l4, which is not moved. Never fails: a
 * packet the L4 parse cannot read is a packet without ports.
 */
static __always_inline void rl_tuple_parse(struct rl_tuple *t, const struct rl_cursor *l4,
					   const struct iphdr *iph, int proto)
{
	struct rl_cursor c = *l4;
	struct rl_icmphdr *icmp;
	struct rl_l4ports *p;

	t->saddr = iph->saddr;
	t->daddr = iph->daddr;
	t->sport = 0;
	t->dport = 0;
	t->proto = proto;
	t->flags = 0;
	t->pad = 0;
	t->len = bpf_ntohs(iph->tot_len);
	if (rl_ip_is_later_fragment(iph)) {
		t->flags = RL_T_NOPORTS;
		return;
	}
	if (proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP) {
		p = c.pos;
		if ((void *)(p + 1) > c.end) {
			t->flags = RL_T_NOPORTS;
			return;
		}
		t->sport = p->source;
		t->dport = p->dest;
		t->flags = RL_T_TRACK | RL_T_REPLY;
	} else if (proto == IPPROTO_ICMP && parse_icmphdr(&c, &icmp) == 0) {
		/* echo: the identifier is the first half of rest */
		if (icmp->type == RL_ICMP_ECHO) {
			t->sport = *(__be16 *)&icmp->rest;
			t->flags = RL_T_TRACK;
		} else if (icmp->type == RL_ICMP_ECHOREPLY) {
			t->sport = *(__be16 *)&icmp->rest;
			t->flags = RL_T_REPLY;
		}
	}
}

/* The current generation's trie (rl_policy[0]), or NULL: no policy. The
 * verifier types the result as a map of the inner template's shape, so it
 * may be handed to bpf_map_lookup_elem() like any map. */
static __always_inline void *rl_policy_trie(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&rl_policy, &zero);
}

/* Non-zero if range @r admits @t (whose destination port is @dport, host
 * order). */
static __always_inline int rl_range_admits(const struct rl_port_range *r,
					   const struct rl_tuple *t, __u16 dport)
{
	if (r->proto == RL_PROTO_ANY)
		return 1;
	if (r->proto != t->proto)
		return 0;
	if (t->proto == IPPROTO_ICMP)
		return 1;
	if (t->flags & RL_T_NOPORTS)
		return r->lo == 0 && r->hi == 0xffff;
	return r->lo <= dport && dport <= r->hi;
}

/*
 * Non-zero if @endpoint's policy in direction @dir (RL_DIR_*) admits @t
 * to or from @peer, according to @trie. A miss means "not isolated".
 *
 * The loop: a constant bound the verifier can see (RL_POLICY_RANGES), with
 * the entry's own count as an early exit; nranges is whatever the map says,
 * so the index is also what keeps ranges[i] in bounds. Not unrolled: the
 * verifier walks the 16 iterations anyway, and one copy of the body keeps
 * the program small (it is inlined at every check).
 */
static __always_inline int rl_policy_admits(void *trie, const struct rl_tuple *t,
					    __be32 endpoint, __u8 dir, __be32 peer)
{
	struct rl_policy_key key = {
		.prefixlen = RL_POLICY_KEY_FIXED_BITS + 32,
		.endpoint = endpoint,
		.dir = dir,
		.peer = peer,
	};
	struct rl_policy_value *v;
	__u16 dport = bpf_ntohs(t->dport);
	__u32 i, n;

	v = bpf_map_lookup_elem(trie, &key);
	if (!v)
		return 1;
	n = v->nranges;
#pragma clang loop unroll(disable)
	for (i = 0; i < RL_POLICY_RANGES; i++) {
		if (i >= n)
			break;
		if (rl_range_admits(&v->ranges[i], t, dport))
			return 1;
	}
	return 0;
}

/* Non-zero if @t answers a flow recorded in rl_policy_ct: its reverse
 * tuple (for an echo reply: the same identifier, destination port 0). */
static __always_inline int rl_policy_is_reply(const struct rl_tuple *t)
{
	struct rl_ct_key key = {
		.saddr = t->daddr,
		.daddr = t->saddr,
		.proto = t->proto,
	};

	if (!(t->flags & RL_T_REPLY))
		return 0;
	if (t->proto == IPPROTO_ICMP) {
		key.sport = t->sport;
	} else {
		key.sport = t->dport;
		key.dport = t->sport;
	}
	return bpf_map_lookup_elem(&rl_policy_ct, &key) != NULL;
}

/*
 * The kernel's connection tracker, through the nf_conntrack kfuncs (Linux
 * 6.1+: options of 12 bytes with `dir`; later kernels also take 16). Needed for Services: a pod talks
 * to a ClusterIP, which kube-proxy rewrites to a backend after from_pod has
 * recorded the flow in rl_policy_ct under the ClusterIP; the backend's
 * answers then carry an address rl_policy_ct never saw. The kernel's entry
 * for the connection has them as its reply tuple, so a packet the kernel
 * would see in the reply direction is a reply. Declared weak: without
 * nf_conntrack (a module on most kernels, loaded by kube-proxy) they
 * resolve to NULL, the verifier drops the branch, and only rl_policy_ct
 * decides. Local declarations, as the headers carry no kfuncs; the
 * verifier checks them against the kernel's BTF at load. libbpf compares a
 * kfunc's prototype with the kernel's kind by kind, and a forward
 * declaration is not a struct to it: hence the (never read) member.
 */
struct nf_conn {
	__u64 rl_opaque;
};
struct bpf_ct_opts___rl {
	__s32 netns_id;
	__s32 error;
	__u8 l4proto;
	__u8 dir;
	__u16 ct_zone_id;
	__u8 ct_zone_dir;
	__u8 reserved[3];
};
/* 12: the size every kernel with `dir` accepts (16, with the zone fields,
 * only from about 6.11 on); the zone fields stay 0 either way. */
#define RL_CT_OPTS_SZ 12
#define RL_CT_NETNS_CURRENT (-1)
#define RL_CT_DIR_REPLY 1
#define RL_ENOENT 2
extern struct nf_conn *bpf_xdp_ct_lookup(struct xdp_md *ctx, struct bpf_sock_tuple *tuple,
					 __u32 tuple__sz, struct bpf_ct_opts___rl *opts,
					 __u32 opts__sz) __ksym __weak;
extern void bpf_ct_release(struct nf_conn *ct) __ksym __weak;

/* Non-zero if the kernel tracks @t's connection and @t goes in its reply
 * direction. TCP and UDP only (what the kfunc looks up). */
static __always_inline int rl_kernel_ct_is_reply(struct xdp_md *ctx, const struct rl_tuple *t)
{
	struct bpf_ct_opts___rl opts = {
		.netns_id = RL_CT_NETNS_CURRENT,
		.l4proto = t->proto,
	};
	struct bpf_sock_tuple tuple = {};
	struct nf_conn *ct;
	int reply;

	if (!bpf_xdp_ct_lookup || !bpf_ct_release)
		return 0;
	if (!(t->flags & RL_T_REPLY) || (t->proto != IPPROTO_TCP && t->proto != IPPROTO_UDP))
		return 0;
	tuple.ipv4.saddr = t->saddr;
	tuple.ipv4.daddr = t->daddr;
	tuple.ipv4.sport = t->sport;
	tuple.ipv4.dport = t->dport;
	ct = bpf_xdp_ct_lookup(ctx, &tuple, sizeof(tuple.ipv4), &opts, RL_CT_OPTS_SZ);
	if (!ct) {
		/* -ENOENT: not tracked. Anything else means the lookup itself
		 * failed (options the kernel refuses...): counted, never silent */
		if (opts.error && opts.error != -RL_ENOENT)
			rl_count(RL_XS_KERNEL_CT_ERROR);
		return 0;
	}
	reply = opts.dir == RL_CT_DIR_REPLY;
	bpf_ct_release(ct);
	return reply;
}

/* Record the allowed flow @t so that its replies pass. Looked up first:
 * an LRU update on every packet of a flow would cost more than the lookup
 * (and refresh nothing the LRU needs: lookups mark entries as used). */
static __always_inline void rl_policy_track(const struct rl_tuple *t)
{
	struct rl_ct_key key = {
		.saddr = t->saddr,
		.daddr = t->daddr,
		.sport = t->sport,
		.dport = t->dport,
		.proto = t->proto,
	};
	struct rl_ct_value v;

	if (!(t->flags & RL_T_TRACK) || bpf_map_lookup_elem(&rl_policy_ct, &key))
		return;
	v.created_ns = bpf_ktime_get_ns();
	bpf_map_update_elem(&rl_policy_ct, &key, &v, BPF_NOEXIST);
}

/*
 * The verdict (RL_VERDICT_*) of @trie on @t. @egress: check the egress
 * policy of endpoint @src (the sender) towards t->daddr; @ingress: check
 * the ingress policy of t->daddr (the receiver) from t->saddr. *@dir is set
 * to the direction of the check that denied. A packet either check denies
 * is still a reply if the kernel tracks its connection the other way round
 * (rl_kernel_ct_is_reply(): Services). Counts RL_XS_POLICY_REPLY (once per
 * packet: callers decide once).
 */
static __always_inline int rl_policy_verdict(struct xdp_md *ctx, void *trie,
					     const struct rl_tuple *t, int egress, __be32 src,
					     int ingress, __u8 *dir)
{
	if (rl_policy_is_reply(t))
		goto reply;
	if (egress && !rl_policy_admits(trie, t, src, RL_DIR_EGRESS, t->daddr)) {
		*dir = RL_DIR_EGRESS;
		goto denied;
	}
	if (ingress && !rl_policy_admits(trie, t, t->daddr, RL_DIR_INGRESS, t->saddr)) {
		*dir = RL_DIR_INGRESS;
		goto denied;
	}
	rl_policy_track(t);
	return RL_VERDICT_ALLOW;
denied:
	/* only now: the kernel's table costs more than ours, and is needed
	 * only for replies the policy alone would drop */
	if (!rl_kernel_ct_is_reply(ctx, t))
		return RL_VERDICT_DENY;
reply:
	rl_count(RL_XS_POLICY_REPLY);
	return RL_VERDICT_REPLY;
}

/*
 * Record a flow sample of @t: every deny, and one in @every other verdicts
 * (@every: the program's rl_cfg_flow_sample_every, 0 for none; a load-time
 * constant, so with 0 the verifier drops the random draw). A full ring
 * buffer costs the sample, counted, never the packet.
 */
static __always_inline void rl_flow_sample(const struct rl_tuple *t, __u8 verdict, __u8 dir,
					   __u8 point, __u32 every)
{
	struct rl_flow_sample *s;

	if (verdict != RL_VERDICT_DENY && (!every || bpf_get_prandom_u32() % every))
		return;
	s = bpf_ringbuf_reserve(&rl_flow_samples, sizeof(*s), 0);
	if (!s) {
		rl_count(RL_XS_FLOW_SAMPLES_LOST);
		return;
	}
	s->ts_ns = bpf_ktime_get_ns();
	s->saddr = t->saddr;
	s->daddr = t->daddr;
	s->sport = t->sport;
	s->dport = t->dport;
	s->proto = t->proto;
	s->verdict = verdict;
	s->dir = dir;
	s->point = point;
	s->len = t->len;
	s->pad = 0;
	/* 0: wake the reader only if it has caught up (adaptive) */
	bpf_ringbuf_submit(s, 0);
}

/* The counters of local pod @ip, or NULL if the agent made none for it. */
static __always_inline struct rl_ep_counters *rl_ep_counters_of(__be32 ip)
{
	return bpf_map_lookup_elem(&rl_ep_stats, &ip);
}

/* Add one packet of @len bytes to counters @packets and @bytes (RL_EPC_*)
 * of @ec, if any. Per-CPU: no atomics. */
static __always_inline void rl_ep_count_packet(struct rl_ep_counters *ec, __u32 packets,
					       __u32 bytes, __u32 len)
{
	if (!ec)
		return;
	ec->c[packets] += 1;
	ec->c[bytes] += len;
}

/* Add one to counter @which (RL_EPC_*) of @ec, if any. */
static __always_inline void rl_ep_count(struct rl_ep_counters *ec, __u32 which)
{
	if (ec)
		ec->c[which] += 1;
}

#endif /* RINGLANE_POLICY_H */
