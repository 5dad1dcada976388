/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * probe: link probes between ring cores, the frame and the bookkeeping.
 * Like pkt.c, free of sockets, threads and clocks (the caller passes the
 * time), so tests drive it on plain buffers with invented timestamps; the
 * worker (worker.c) sends, answers and times probes with it.
 *
 * A probe travels the overlay as pod traffic to that node does:
 *
 *   outer Ethernet/IPv4/UDP/VXLAN  rl_encap() with the route's parameters
 *                                  (next-hop MAC, node IPs, VNI, port); the
 *                                  source port is in the ring range, one
 *                                  per peer, so a peer's probes follow one
 *                                  ECMP path as one pod flow would
 *   inner Ethernet                 dst: receiver's VTEP MAC, src: sender's
 *                                  (as for pod traffic; no one reads them),
 *                                  type RL_PROBE_ETHERTYPE (abi.h)
 *   payload, RL_PROBE_MSG_LEN bytes, multi-byte fields in network order:
 *      0 magic    RL_PROBE_MAGIC ("RLPB")
 *      4 version  RL_PROBE_VERSION; another version is dropped
 *      5 type     RL_PROBE_REQUEST or RL_PROBE_REPLY
 *      6 reserved 0 when sent, ignored when received
 *      8 seq      the requester's sequence number towards that peer
 *     12 nonce    the requester core's random id: replies meant for an
 *                 earlier incarnation (an agent restart) are not ours
 *     16 sender   requester's underlay IPv4
 *     20 target   replier's underlay IPv4 as the requester addressed it
 *     24 tx_ns    requester's CLOCK_MONOTONIC when it built the request;
 *                 echoed untouched, so the two nodes' clocks never meet
 *
 * A reply is the request turned round in its own frame: outer addresses
 * swapped, type REPLY, nothing else of the payload changed.
 *
 * Deadlines are counted in requests: a peer's request is decided (answered
 * in time, or lost) when rl_probe_table.deadline more requests have been
 * sent to that peer, i.e. that many intervals later at the nominal rate.
 * That needs no send time per request and stays right when the worker
 * falls behind (both the deadline and the next request move together).
 */
#ifndef RL_PROBE_H
#define RL_PROBE_H

#include <linux/types.h>
#include <stdbool.h>

#include "fwd.h"
#include "pkt.h"
#include "ringcore.h"

#define RL_PROBE_MAGIC 0x524c5042	/* "RLPB" */
#define RL_PROBE_VERSION 1
#define RL_PROBE_REQUEST 1
#define RL_PROBE_REPLY 2
#define RL_PROBE_MSG_LEN 32
#define RL_PROBE_FRAME_LEN (RL_ENCAP_LEN + RL_ETH_HLEN + RL_PROBE_MSG_LEN)
/* The longest deadline in requests (at RL_PROBE_INTERVAL_MIN_MS): the
 * pending requests of a peer must fit in its answered mask. */
#define RL_PROBE_DEADLINE_MAX \
	((RL_PROBE_DEADLINE_MIN_MS + RL_PROBE_INTERVAL_MIN_MS - 1) / RL_PROBE_INTERVAL_MIN_MS)
#define RL_PROBE_PENDING_MAX 128	/* bits in rl_probe_peer.answered */

_Static_assert(RL_PROBE_DEADLINE_MAX <= RL_PROBE_PENDING_MAX &&
	       RL_PROBE_DEADLINE_INTERVALS <= RL_PROBE_PENDING_MAX,
	       "pending requests must fit in rl_probe_peer.answered");
_Static_assert(RL_PROBE_WINDOW == 64, "the loss window is one 64-bit mask");

/* rl_probe_reply_in() results that are not errors. */
#define RL_PROBE_IN_TIME 0
#define RL_PROBE_LATE 1

/* A probe payload, host order (addresses stay network order). */
struct rl_probe_msg {
	__u8 type;		/* RL_PROBE_REQUEST or RL_PROBE_REPLY */
	__u8 pad[3];
	__u32 seq;
	__u32 nonce;
	__be32 sender_ip;
	__be32 target_ip;
	__u32 pad2;
	__u64 tx_ns;
};

/* One remote node being probed. */
struct rl_probe_peer {
	struct rl_encap_params encap;	/* of the latest route set towards it */
	struct rl_link_stat st;		/* what rl_core__link_stats() copies */
	__u64 answered[RL_PROBE_PENDING_MAX / 64]; /* bit seq % RL_PROBE_PENDING_MAX:
						    * pending request seq was answered */
	__u64 lost_bits;	/* bit i: the i-th latest decided request was lost */
	__u32 next_seq;		/* of the next request */
	__u32 undecided;	/* oldest request not decided yet */
	__u32 refs;		/* routes towards this node */
	__u32 pos;		/* index in rl_probe_table.peers */
	__u32 hash;		/* outer source port entropy, fixed per peer */
};

/* Every peer of one core. Owned by the worker, like the routes. */
struct rl_probe_table {
	struct rl_hmap index;		/* node IPv4 -> struct rl_probe_peer * */
	struct rl_probe_peer **peers;	/* dense, in no particular order */
	__u32 n;
	__u32 cap;			/* of peers[] */
	__u32 max;
	__u32 deadline;			/* in requests; see the top of this file */
	__u32 nonce;
};

/*
 * rl_probe_deadline() - the deadline in requests for @interval_ms
 * (RL_PROBE_INTERVAL_MIN_MS..MAX_MS): RL_PROBE_DEADLINE_INTERVALS
 * intervals, at least RL_PROBE_DEADLINE_MIN_MS.
 */
__u32 rl_probe_deadline(__u32 interval_ms);

/*
 * rl_probe_table_init() - an empty table for up to @max_peers peers, probed
 * every @interval_ms (a valid interval), whose requests carry @nonce.
 * Return: 0 or -ENOMEM.
 */
int rl_probe_table_init(struct rl_probe_table *t, __u32 max_peers, __u32 interval_ms,
			__u32 nonce);

/* rl_probe_table_fini() - free the table and every peer. */
void rl_probe_table_fini(struct rl_probe_table *t);

/*
 * rl_probe_peer_ref() - one more route towards @encap->outer_daddr: start
 * probing that node (its first request carries @first_seq), or, if it is
 * probed already, count the route and take @encap as its parameters.
 * Return: 0, -ENOSPC (max_peers reached), -ENOMEM.
 */
int rl_probe_peer_ref(struct rl_probe_table *t, const struct rl_encap_params *encap,
		      __u32 first_seq);

/*
 * rl_probe_peer_unref() - one route fewer towards @ip; at none, the peer
 * and its stats are forgotten. No-op for an unknown @ip.
 */
void rl_probe_peer_unref(struct rl_probe_table *t, __be32 ip);

/* rl_probe_peer_find() - the peer of node @ip, or NULL. */
struct rl_probe_peer *rl_probe_peer_find(const struct rl_probe_table *t, __be32 ip);

/*
 * rl_probe_request() - the next request to @p, timestamped @now_ns. Changes
 * nothing: call rl_probe_sent() once it is on its way.
 */
void rl_probe_request(const struct rl_probe_table *t, const struct rl_probe_peer *p,
		      __u64 now_ns, struct rl_probe_msg *out);

/*
 * rl_probe_sent() - the request rl_probe_request() made is on its way:
 * count it, and decide the requests whose deadline it passes.
 */
void rl_probe_sent(struct rl_probe_table *t, struct rl_probe_peer *p);

/*
 * rl_probe_reply_in() - a reply @m arrived at @now_ns. In time: counted
 * received, RTT = @now_ns - m->tx_ns feeds the stats. After its deadline
 * (already counted lost) or repeated: counted late, stats unchanged.
 * Return: RL_PROBE_IN_TIME, RL_PROBE_LATE; -ENOENT (no peer m->target_ip),
 * -ESTALE (nonce or sender not ours), -ERANGE (a sequence number never
 * sent, or a timestamp after @now_ns); nothing is counted on error.
 */
int rl_probe_reply_in(struct rl_probe_table *t, const struct rl_probe_msg *m, __u64 now_ns);

/*
 * rl_probe_build() - write a probe of RL_PROBE_FRAME_LEN bytes at @frame:
 * the outer headers and inner MACs from @p (rl_encap() with @hash for the
 * source port), then the inner Ethernet type and the payload @m.
 */
void rl_probe_build(__u8 *frame, const struct rl_encap_params *p, __u32 hash,
		    const struct rl_probe_msg *m);

/*
 * rl_probe_match() - whether the VXLAN frame @frame, parsed into @vi by
 * rl_parse_vxlan(), carries a probe (inner type RL_PROBE_ETHERTYPE). Only
 * the type is looked at: rl_probe_parse() checks the rest.
 */
static inline bool rl_probe_match(const __u8 *frame, const struct rl_vxlan_info *vi)
{
	const __u8 *type = frame + vi->inner_off + 12;

	return vi->inner_len >= RL_ETH_HLEN &&
	       (__u16)(type[0] << 8 | type[1]) == RL_PROBE_ETHERTYPE;
}

/*
 * rl_probe_parse() - read the payload of the probe @frame, parsed into @vi
 * by rl_parse_vxlan() (so inner_off + inner_len bytes are in the frame).
 * Return: 0; -EBADMSG (not a probe, too short, wrong magic or type),
 * -EPROTONOSUPPORT (another version).
 */
int rl_probe_parse(const __u8 *frame, const struct rl_vxlan_info *vi, struct rl_probe_msg *out);

/*
 * rl_probe_answer() - turn the request @frame (rl_probe_parse() accepted
 * it) into its reply, in place: outer Ethernet from @src_mac to @dst_mac,
 * or back to the request's source MAC if @dst_mac is NULL; outer IPv4
 * addresses swapped, TTL 64, checksum recomputed; the request's source port
 * if it is in [@sport_min, @sport_max], else @sport_min; inner MACs swapped;
 * type REPLY. Trailing bytes past the probe are cut off.
 * Return: the reply's length (RL_PROBE_FRAME_LEN), or -EBADMSG if the outer
 * IPv4 header has options (a request we never send).
 */
int rl_probe_answer(__u8 *frame, const struct rl_vxlan_info *vi, const __u8 src_mac[6],
		    const __u8 *dst_mac, __u16 sport_min, __u16 sport_max);

#endif /* RL_PROBE_H */
