// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * probe: link probes between ring cores. The frame layout, the deadline
 * rule and every contract are in probe.h. Frames are untrusted: fields are
 * read with memcpy() after the length checks rl_parse_vxlan() and
 * rl_probe_parse() made, never through a cast to a struct.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include "probe.h"

#define PROBE_TTL 64
/* Payload offsets (probe.h). */
#define OFF_MAGIC 0
#define OFF_VERSION 4
#define OFF_TYPE 5
#define OFF_RESERVED 6
#define OFF_SEQ 8
#define OFF_NONCE 12
#define OFF_SENDER 16
#define OFF_TARGET 20
#define OFF_TX_NS 24

_Static_assert(OFF_TX_NS + 8 == RL_PROBE_MSG_LEN, "payload layout");

/* Byte-order helpers over unaligned bytes. */
static __u32 load_be32(const __u8 *p)
{
	__u32 v;

	memcpy(&v, p, 4);
	return ntohl(v);
}

/* See load_be32(). */
static void store_be32(__u8 *p, __u32 v)
{
	v = htonl(v);
	memcpy(p, &v, 4);
}

/* See load_be32(). */
static __u64 load_be64(const __u8 *p)
{
	return (__u64)load_be32(p) << 32 | load_be32(p + 4);
}

/* See load_be32(). */
static void store_be64(__u8 *p, __u64 v)
{
	store_be32(p, (__u32)(v >> 32));
	store_be32(p + 4, (__u32)v);
}

__u32 rl_probe_deadline(__u32 interval_ms)
{
	__u32 k = (RL_PROBE_DEADLINE_MIN_MS + interval_ms - 1) / interval_ms;

	return k > RL_PROBE_DEADLINE_INTERVALS ? k : RL_PROBE_DEADLINE_INTERVALS;
}

int rl_probe_table_init(struct rl_probe_table *t, __u32 max_peers, __u32 interval_ms,
			__u32 nonce)
{
	int err;

	memset(t, 0, sizeof(*t));
	err = rl_hmap_init(&t->index, max_peers);
	if (err)
		return err;
	t->max = max_peers;
	t->deadline = rl_probe_deadline(interval_ms);
	t->nonce = nonce;
	return 0;
}

void rl_probe_table_fini(struct rl_probe_table *t)
{
	__u32 i;

	for (i = 0; i < t->n; i++)
		free(t->peers[i]);
	free(t->peers);
	rl_hmap_fini(&t->index);
	memset(t, 0, sizeof(*t));
}

struct rl_probe_peer *rl_probe_peer_find(const struct rl_probe_table *t, __be32 ip)
{
	return rl_hmap_get(&t->index, ip);
}

/* Make room for one more peer in the dense array. 0 or -ENOMEM. */
static int peers_grow(struct rl_probe_table *t)
{
	struct rl_probe_peer **p;
	__u32 cap;

	if (t->n < t->cap)
		return 0;
	cap = t->cap ? 2 * t->cap : 16;
	p = realloc(t->peers, cap * sizeof(*p));
	if (!p)
		return -ENOMEM;
	t->peers = p;
	t->cap = cap;
	return 0;
}

int rl_probe_peer_ref(struct rl_probe_table *t, const struct rl_encap_params *encap,
		      __u32 first_seq)
{
	struct rl_probe_peer *p = rl_probe_peer_find(t, encap->outer_daddr);
	int err;

	if (p) {
		p->refs++;
		p->encap = *encap;
		return 0;
	}
	if (t->n >= t->max)
		return -ENOSPC;
	err = peers_grow(t);
	if (err)
		return err;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->encap = *encap;
	p->st.node_ip = encap->outer_daddr;
	p->next_seq = first_seq;
	p->undecided = first_seq;
	p->refs = 1;
	/* Knuth's multiplicative hash: spreads sequential node IPs */
	p->hash = ntohl(encap->outer_daddr) * 2654435761U;
	err = rl_hmap_put(&t->index, encap->outer_daddr, p, 0);
	if (err) {
		free(p);
		return err;
	}
	p->pos = t->n;
	t->peers[t->n++] = p;
	return 0;
}

void rl_probe_peer_unref(struct rl_probe_table *t, __be32 ip)
{
	struct rl_probe_peer *p = rl_probe_peer_find(t, ip);

	if (!p || --p->refs)
		return;
	rl_hmap_del(&t->index, ip);
	t->peers[p->pos] = t->peers[--t->n];
	t->peers[p->pos]->pos = p->pos;
	free(p);
}

void rl_probe_request(const struct rl_probe_table *t, const struct rl_probe_peer *p,
		      __u64 now_ns, struct rl_probe_msg *out)
{
	memset(out, 0, sizeof(*out));
	out->type = RL_PROBE_REQUEST;
	out->seq = p->next_seq;
	out->nonce = t->nonce;
	out->sender_ip = p->encap.outer_saddr;
	out->target_ip = p->encap.outer_daddr;
	out->tx_ns = now_ns;
}

/* The word of @p's answered mask that holds request @seq, and its bit. */
static __u64 *answered_word(struct rl_probe_peer *p, __u32 seq, __u64 *bit)
{
	__u32 i = seq % RL_PROBE_PENDING_MAX;

	*bit = 1ULL << (i % 64);
	return &p->answered[i / 64];
}

/* The oldest pending request of @p has reached its deadline: answered in
 * time or lost, it enters the loss window. */
static void decide_oldest(struct rl_probe_peer *p)
{
	__u64 bit, *word = answered_word(p, p->undecided, &bit);
	__u32 lost = !(*word & bit);

	*word &= ~bit;
	p->undecided++;
	/* bits beyond a window not yet full are 0, so this is exact from the start */
	p->st.lost_window -= (__u32)(p->lost_bits >> 63);
	p->lost_bits = p->lost_bits << 1 | lost;
	p->st.lost_window += lost;
	if (p->st.window < RL_PROBE_WINDOW)
		p->st.window++;
	p->st.lost += lost;
	p->st.loss_window_ppm = (__u32)((__u64)p->st.lost_window * 1000000 / p->st.window);
}

void rl_probe_sent(struct rl_probe_table *t, struct rl_probe_peer *p)
{
	p->next_seq++;
	p->st.sent++;
	while (p->next_seq - p->undecided > t->deadline)
		decide_oldest(p);
}

/* Absolute difference of two durations. */
static __u64 abs_diff(__u64 a, __u64 b)
{
	return a > b ? a - b : b - a;
}

/* Feed one in-time round trip of @rtt ns, arrived at @now_ns, into @st. */
static void rtt_update(struct rl_link_stat *st, __u64 rtt, __u64 now_ns)
{
	if (!st->received) {
		st->rtt_min_ns = rtt;
		st->rtt_max_ns = rtt;
		st->rtt_avg_ns = rtt;
		st->jitter_ns = 0;
	} else {
		if (rtt < st->rtt_min_ns)
			st->rtt_min_ns = rtt;
		if (rtt > st->rtt_max_ns)
			st->rtt_max_ns = rtt;
		/* avg += (rtt - avg) / 8, J += (|D| - J) / 16, in signed ns */
		st->rtt_avg_ns = (__u64)((__s64)st->rtt_avg_ns +
					 ((__s64)rtt - (__s64)st->rtt_avg_ns) / 8);
		st->jitter_ns = (__u64)((__s64)st->jitter_ns +
					((__s64)abs_diff(rtt, st->rtt_last_ns) -
					 (__s64)st->jitter_ns) / 16);
	}
	st->rtt_last_ns = rtt;
	st->last_reply_ns = now_ns;
	st->received++;
}

int rl_probe_reply_in(struct rl_probe_table *t, const struct rl_probe_msg *m, __u64 now_ns)
{
	struct rl_probe_peer *p = rl_probe_peer_find(t, m->target_ip);
	__u64 bit, *word;
	__u32 pending, age;

	if (!p)
		return -ENOENT;
	if (m->nonce != t->nonce || m->sender_ip != p->encap.outer_saddr)
		return -ESTALE;
	if (m->tx_ns > now_ns)
		return -ERANGE;
	pending = p->next_seq - p->undecided;
	age = m->seq - p->undecided;	/* wraps for a decided request */
	if (age >= pending) {
		/* before the oldest pending: decided already; else never sent */
		if (p->undecided - m->seq < 0x80000000U) {
			p->st.late++;
			return RL_PROBE_LATE;
		}
		return -ERANGE;
	}
	word = answered_word(p, m->seq, &bit);
	if (*word & bit) {
		p->st.late++;
		return RL_PROBE_LATE;
	}
	*word |= bit;
	rtt_update(&p->st, now_ns - m->tx_ns, now_ns);
	return RL_PROBE_IN_TIME;
}

void rl_probe_build(__u8 *frame, const struct rl_encap_params *p, __u32 hash,
		    const struct rl_probe_msg *m)
{
	__u8 *inner = frame + RL_ENCAP_LEN, *pl = inner + RL_ETH_HLEN;
	__u16 type = htons(RL_PROBE_ETHERTYPE);

	rl_encap(frame, RL_ETH_HLEN + RL_PROBE_MSG_LEN, p, hash);
	memcpy(inner + 12, &type, 2);
	store_be32(pl + OFF_MAGIC, RL_PROBE_MAGIC);
	pl[OFF_VERSION] = RL_PROBE_VERSION;
	pl[OFF_TYPE] = m->type;
	pl[OFF_RESERVED] = 0;
	pl[OFF_RESERVED + 1] = 0;
	store_be32(pl + OFF_SEQ, m->seq);
	store_be32(pl + OFF_NONCE, m->nonce);
	memcpy(pl + OFF_SENDER, &m->sender_ip, 4);
	memcpy(pl + OFF_TARGET, &m->target_ip, 4);
	store_be64(pl + OFF_TX_NS, m->tx_ns);
}

int rl_probe_parse(const __u8 *frame, const struct rl_vxlan_info *vi, struct rl_probe_msg *out)
{
	const __u8 *pl = frame + vi->inner_off + RL_ETH_HLEN;

	if (!rl_probe_match(frame, vi) || vi->inner_len < RL_ETH_HLEN + RL_PROBE_MSG_LEN ||
	    load_be32(pl + OFF_MAGIC) != RL_PROBE_MAGIC)
		return -EBADMSG;
	if (pl[OFF_VERSION] != RL_PROBE_VERSION)
		return -EPROTONOSUPPORT;
	if (pl[OFF_TYPE] != RL_PROBE_REQUEST && pl[OFF_TYPE] != RL_PROBE_REPLY)
		return -EBADMSG;
	memset(out, 0, sizeof(*out));
	out->type = pl[OFF_TYPE];
	out->seq = load_be32(pl + OFF_SEQ);
	out->nonce = load_be32(pl + OFF_NONCE);
	memcpy(&out->sender_ip, pl + OFF_SENDER, 4);
	memcpy(&out->target_ip, pl + OFF_TARGET, 4);
	out->tx_ns = load_be64(pl + OFF_TX_NS);
	return 0;
}

int rl_probe_answer(__u8 *frame, const struct rl_vxlan_info *vi, const __u8 src_mac[6],
		    const __u8 *dst_mac, __u16 sport_min, __u16 sport_max)
{
	const __u8 *ip = frame + RL_ETH_HLEN, *udp = ip + RL_IPV4_HLEN;
	__u8 *inner = frame + RL_ENCAP_LEN;
	struct rl_encap_params p;
	__u16 sport;

	if (vi->inner_off != RL_ENCAP_LEN)
		return -EBADMSG;	/* outer IPv4 options: never from a ring core */
	/* every field is read before rl_encap() writes over the header */
	memset(&p, 0, sizeof(p));
	memcpy(p.outer_dst_mac, dst_mac ? dst_mac : frame + 6, 6);
	memcpy(p.outer_src_mac, src_mac, 6);
	memcpy(p.inner_dst_mac, inner + 6, 6);
	memcpy(p.inner_src_mac, inner, 6);
	memcpy(&p.outer_saddr, ip + 16, 4);
	memcpy(&p.outer_daddr, ip + 12, 4);
	p.vni = vi->vni;
	p.dport = (__u16)(udp[2] << 8 | udp[3]);
	sport = (__u16)(udp[0] << 8 | udp[1]);
	if (sport < sport_min || sport > sport_max)
		sport = sport_min;
	p.sport_min = sport;
	p.sport_max = sport;
	p.ttl = PROBE_TTL;
	rl_encap(frame, RL_ETH_HLEN + RL_PROBE_MSG_LEN, &p, 0);
	inner[RL_ETH_HLEN + OFF_TYPE] = RL_PROBE_REPLY;
	return RL_PROBE_FRAME_LEN;
}
