// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * worker: the per-packet loop of the ring core. One thread owns every ring,
 * the frame pool and the forwarding tables of its core; the control thread
 * reaches them only through a command that this loop runs between batches.
 *
 *   pod veth rx --(parse, route, csum, TTL, encap in headroom)--> underlay tx
 *   underlay rx --(parse VXLAN, find endpoint, strip, MACs)-----> pod veth tx
 *   every completion ring --> frame pool --> every fill ring
 *   link probes: requests every interval --> underlay tx; underlay rx -->
 *     requests answered in place --> underlay tx, replies timed and freed
 *
 * Bounded work per loop: at most batch_size packets (plus the rest of a
 * descriptor chain) per rx ring. When a number of loops in a row find
 * nothing to do, the worker sleeps in poll() (need_wakeup mode), so an idle
 * node costs no CPU; busy_poll keeps it spinning.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include "core.h"

#ifndef XDP_PKT_CONTD
#define XDP_PKT_CONTD (1 << 0)	/* linux/if_xdp.h of 6.6+ */
#endif

/* Empty loops before sleeping in poll(): about 10-50 us of spinning, enough
 * to ride out the gap between two bursts without a syscall. */
#define RL_IDLE_SPINS 256
/* poll() timeout: short while frames wait for a completion, so the pool
 * refills even if no packet wakes us, long when nothing is in flight. */
#define RL_POLL_MS_INFLIGHT 10
#define RL_POLL_MS_IDLE 1000
/* Probe requests per loop at most: a round to many peers is spread over
 * loops instead of filling the tx ring at once. */
#define RL_PROBE_BURST 32
/* While packets flow, look at the clock for probes one loop in this many. */
#define RL_PROBE_CLOCK_EVERY 16

/* The bytes of UMEM address @addr. */
static inline __u8 *frame_data(const struct rl_core *c, __u64 addr)
{
	return (__u8 *)c->umem_area + addr;
}

/* CLOCK_MONOTONIC in ns: what probes are timed with (vDSO, no syscall). */
static __u64 mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (__u64)ts.tv_sec * 1000000000ULL + (__u64)ts.tv_nsec;
}

/* Count a drop of reason @reason (RL_DROP_TRUNCATED if out of range) on
 * the worker and on @s. */
static void count_drop(struct rl_core *c, struct rl_sock *s, int reason)
{
	if (reason <= 0 || reason >= RL_DROP_MAX)
		reason = RL_DROP_TRUNCATED;
	RL_CNT_ADD(c->cnt.drops[reason], 1);
	RL_CNT_ADD(s->cnt.drops[reason], 1);
}

/* Return the @n frames of a chain starting at rx index @idx to the pool. */
static void free_chain(struct rl_core *c, struct rl_sock *s, __u32 idx, __u32 n)
{
	__u32 i;

	for (i = 0; i < n; i++)
		rl_pool_free(c->pool, rl_ring_desc(&s->rx, idx + i)->addr);
}

/* Put one frame on @s's tx ring, counted nowhere; it is published at the
 * end of the loop. 0 or -RL_DROP_TX_RING_FULL. */
static int tx_put(struct rl_core *c, struct rl_sock *s, __u64 addr, __u32 len)
{
	struct xdp_desc *d;
	__u32 idx;

	if (!rl_ring_prod_reserve(&s->tx, 1, &idx))
		return -RL_DROP_TX_RING_FULL;
	d = rl_ring_desc(&s->tx, idx);
	d->addr = addr;
	d->len = len;
	d->options = 0;
	rl_pool_set_owner(c->pool, addr, s->owner);
	s->tx_unsent++;
	s->tx_inflight++;
	c->tx_outstanding++;
	return 0;
}

/* tx_put() a packet, counted as one sent on @s and by the worker. */
static int tx_enqueue(struct rl_core *c, struct rl_sock *s, __u64 addr, __u32 len)
{
	int err = tx_put(c, s, addr, len);

	if (err)
		return err;
	RL_CNT_ADD(s->cnt.tx_packets, 1);
	RL_CNT_ADD(s->cnt.tx_bytes, len);
	RL_CNT_ADD(c->cnt.tx_packets, 1);
	RL_CNT_ADD(c->cnt.tx_bytes, len);
	return 0;
}

/* Publish @s's new tx descriptors and make the kernel send them. Copy mode
 * sends at most 32 frames per sendto() (-EAGAIN: more to do), so kick until
 * the kernel has consumed everything or says it is busy. */
static void tx_flush(struct rl_core *c, struct rl_sock *s)
{
	__u32 tries;

	if (!s->tx_unsent)
		return;
	rl_ring_prod_submit(&s->tx);
	if (s->zero_copy && !rl_ring_needs_wakeup(&s->tx)) {
		s->tx_unsent = 0;
		return;
	}
	for (tries = 0; tries < s->tx_unsent / 32 + 2; tries++) {
		if (sendto(s->fd, NULL, 0, MSG_DONTWAIT, NULL, 0) >= 0 &&
		    rl_load_acquire(s->tx.consumer) == s->tx.cached_prod)
			break;
		if (errno != EAGAIN && errno != EINTR)
			return;	/* EBUSY/ENOBUFS: completions first; retried next loop */
	}
	if (rl_load_acquire(s->tx.consumer) == s->tx.cached_prod)
		s->tx_unsent = 0;
}

/* Completed tx frames back to the pool. */
static void drain_comp(struct rl_core *c, struct rl_sock *s)
{
	__u32 n, idx, i;

	n = rl_ring_cons_peek(&s->comp, s->comp.size, &idx);
	if (!n)
		return;
	for (i = 0; i < n; i++)
		rl_pool_free(c->pool, *rl_ring_addr(&s->comp, idx + i));
	rl_ring_cons_release(&s->comp);
	s->tx_inflight -= n;
	c->tx_outstanding -= n;
}

void rl_worker_refill(struct rl_core *c, struct rl_sock *s)
{
	__u32 level, want, n, idx, i;

	level = s->fill.cached_prod - rl_load_acquire(s->fill.consumer);
	if (level >= s->fill_target)
		return;
	want = s->fill_target - level;
	if (want > c->pool->top)
		want = c->pool->top;
	/* never more than the ring has room for, or the reserve fails whole */
	want = rl_ring_prod_nb_free(&s->fill, want);
	n = rl_ring_prod_reserve(&s->fill, want, &idx);
	if (!n)
		return;
	for (i = 0; i < n; i++)
		*rl_ring_addr(&s->fill, idx + i) = rl_pool_alloc(c->pool, s->owner);
	rl_ring_prod_submit(&s->fill);
}

/* Segment a TCP super-frame (chain of @k descriptors at rx index @idx) and
 * encapsulate every segment into a frame of its own. */
static void encap_tso(struct rl_core *c, struct rl_sock *s, __u32 idx, __u32 k,
		      const struct rl_route *route, __u32 hash)
{
	const __u32 room = RL_FRAME_SIZE - RL_TX_HEADROOM - RL_ENCAP_LEN;
	struct rl_tso_state st;
	struct rl_chain ch;
	__u64 f;
	__u32 i;
	int len, err;

	ch.n = k;
	for (i = 0; i < k; i++) {
		const struct xdp_desc *d = rl_ring_desc(&s->rx, idx + i);

		ch.buf[i] = frame_data(c, d->addr);
		ch.len[i] = d->len;
	}
	err = rl_tso_init(&st, &ch, c->opts.overlay_mtu);
	if (err) {
		count_drop(c, s, -err);
		return;
	}
	RL_CNT_ADD(c->cnt.tso_packets, 1);
	RL_CNT_ADD(s->cnt.tso_packets, 1);
	for (;;) {
		f = rl_pool_alloc(c->pool, RL_OWNER_WORKER);
		if (f == RL_POOL_EMPTY) {
			count_drop(c, s, RL_DROP_POOL_EMPTY);
			return;
		}
		len = rl_tso_next(&st, frame_data(c, f + RL_TX_HEADROOM + RL_ENCAP_LEN), room);
		if (len <= 0) {
			rl_pool_free(c->pool, f);
			if (len < 0)
				count_drop(c, s, -len);
			return;
		}
		rl_encap(frame_data(c, f + RL_TX_HEADROOM), (__u32)len, &route->encap, hash);
		err = tx_enqueue(c, &c->underlay, f + RL_TX_HEADROOM, (__u32)len + RL_ENCAP_LEN);
		if (err) {
			rl_pool_free(c->pool, f);
			count_drop(c, s, -err);
			return;
		}
		RL_CNT_ADD(c->cnt.tso_segments, 1);
		RL_CNT_ADD(s->cnt.tso_segments, 1);
		RL_CNT_ADD(c->cnt.encap, 1);
		RL_CNT_ADD(s->cnt.encap, 1);
	}
}

/* One packet from a pod (@k descriptors at rx index @idx): to the underlay.
 * Always a packet of the pods' (true). */
static bool from_pod(struct rl_core *c, struct rl_sock *s, __u32 idx, __u32 k)
{
	const struct xdp_desc *d = rl_ring_desc(&s->rx, idx);
	const struct rl_route *route;
	struct rl_pkt_info info;
	__u8 *data = frame_data(c, d->addr);
	__u32 len, hash;
	int err;

	err = rl_parse_inner(data, d->len, k > 1, &info);
	if (err)
		goto drop;
	route = rl_fwd_route_lookup(&c->fwd, info.daddr);
	if (!route) {
		err = -RL_DROP_NO_ROUTE;
		goto drop;
	}
	hash = rl_flow_hash(&info);
	if (info.ttl > 1)
		rl_ipv4_dec_ttl(data, &info);
	if (k > 1 || info.ip_tot_len > c->opts.overlay_mtu) {
		/* a TSO super-frame (or TCP from a pod whose MTU is too big):
		 * segment as GSO would; anything else this large was left to
		 * the kernel by from_pod */
		encap_tso(c, s, idx, k, route, hash);
		free_chain(c, s, idx, k);
		return true;
	}
	len = RL_ETH_HLEN + info.ip_tot_len;	/* drops Ethernet padding */
	err = rl_l4_csum_fill(data, len, &info);
	if (err)
		goto drop;
	/* filled: unfragmented TCP, and UDP unless its checksum is 0 ("none",
	 * left so); the fill succeeded, so the L4 header is in the frame */
	if (!info.is_fragment && (info.ip_proto == IPPROTO_TCP ||
	    (info.ip_proto == IPPROTO_UDP &&
	     (data[info.l4_off + 6] | data[info.l4_off + 7])))) {
		RL_CNT_ADD(c->cnt.csum_filled, 1);
		RL_CNT_ADD(s->cnt.csum_filled, 1);
	}
	if ((d->addr & (RL_FRAME_SIZE - 1)) < RL_ENCAP_LEN) {
		err = -RL_DROP_TRUNCATED;	/* no headroom: never seen from the kernel */
		goto drop;
	}
	rl_encap(data - RL_ENCAP_LEN, len, &route->encap, hash);
	err = tx_enqueue(c, &c->underlay, d->addr - RL_ENCAP_LEN, len + RL_ENCAP_LEN);
	if (err)
		goto drop;
	RL_CNT_ADD(c->cnt.encap, 1);
	RL_CNT_ADD(s->cnt.encap, 1);
	return true;
drop:
	count_drop(c, s, -err);
	free_chain(c, s, idx, k);
	return true;
}

/* A probe from the underlay socket @s (one descriptor at rx index @idx,
 * parsed into @vi): a request is answered in its own frame, a reply timed;
 * counted in c->pcnt only. */
static void probe_rx(struct rl_core *c, struct rl_sock *s, __u32 idx,
		     const struct rl_vxlan_info *vi)
{
	const struct xdp_desc *d = rl_ring_desc(&s->rx, idx);
	const struct rl_probe_peer *peer;
	__u8 *data = frame_data(c, d->addr);
	struct rl_probe_msg m;
	int ret;

	if (rl_probe_parse(data, vi, &m))
		goto bad;
	if (m.type == RL_PROBE_REPLY) {
		ret = rl_probe_reply_in(&c->probes, &m, mono_ns());
		if (ret < 0)
			goto bad;
		RL_CNT_ADD(c->pcnt.probe_replies, 1);
		if (ret == RL_PROBE_LATE)
			RL_CNT_ADD(c->pcnt.probe_late, 1);
		free_chain(c, s, idx, 1);
		return;
	}
	/* back the way pod traffic to that node goes, if we route to it */
	peer = rl_probe_peer_find(&c->probes, vi->outer_saddr);
	ret = rl_probe_answer(data, vi, c->opts.underlay_mac,
			      peer ? peer->encap.outer_dst_mac : NULL,
			      c->opts.sport_min, c->opts.sport_max);
	if (ret < 0)
		goto bad;
	if (tx_put(c, &c->underlay, d->addr, (__u32)ret)) {
		RL_CNT_ADD(c->pcnt.probe_tx_failed, 1);
		free_chain(c, s, idx, 1);
		return;
	}
	RL_CNT_ADD(c->pcnt.probe_requests_answered, 1);
	return;
bad:
	RL_CNT_ADD(c->pcnt.probe_bad, 1);
	free_chain(c, s, idx, 1);
}

/* One packet from the wire: to the pod it is for. Returns false for a link
 * probe (not a pod packet, counted apart), true otherwise. */
static bool from_wire(struct rl_core *c, struct rl_sock *s, __u32 idx, __u32 k)
{
	const struct xdp_desc *d = rl_ring_desc(&s->rx, idx);
	struct rl_vxlan_info vi;
	struct rl_pkt_info info;
	struct rl_sock *ep;
	__u8 *data = frame_data(c, d->addr), *inner;
	int err;

	if (k > 1) {
		err = -RL_DROP_BAD_CHAIN;	/* the underlay socket is not multi-buffer */
		goto drop;
	}
	err = rl_parse_vxlan(data, d->len, c->opts.vni, c->opts.vxlan_port, &vi);
	if (err)
		goto drop;
	if (rl_probe_match(data, &vi)) {
		probe_rx(c, s, idx, &vi);
		return false;
	}
	inner = data + vi.inner_off;
	err = rl_parse_inner(inner, vi.inner_len, false, &info);
	if (err)
		goto drop;
	ep = rl_fwd_local_lookup(&c->fwd, info.daddr);
	if (!ep) {
		err = -RL_DROP_NO_ENDPOINT;
		goto drop;
	}
	rl_set_macs(inner, ep->pod_mac, ep->host_mac);
	err = tx_enqueue(c, ep, d->addr + vi.inner_off, RL_ETH_HLEN + info.ip_tot_len);
	if (err)
		goto drop;
	RL_CNT_ADD(c->cnt.decap, 1);
	RL_CNT_ADD(ep->cnt.decap, 1);
	return true;
drop:
	count_drop(c, s, -err);
	free_chain(c, s, idx, k);
	return true;
}

/* Send one request to @p, timestamped @now_ns. A request that cannot go
 * (no free frame, tx ring full) is not sent at all: counted in
 * probe_tx_failed, never as lost. */
static void probe_send(struct rl_core *c, struct rl_probe_peer *p, __u64 now_ns)
{
	struct rl_probe_msg m;
	__u64 f;

	f = rl_pool_alloc(c->pool, RL_OWNER_WORKER);
	if (f == RL_POOL_EMPTY) {
		RL_CNT_ADD(c->pcnt.probe_tx_failed, 1);
		return;
	}
	rl_probe_request(&c->probes, p, now_ns, &m);
	rl_probe_build(frame_data(c, f + RL_TX_HEADROOM), &p->encap, p->hash, &m);
	if (tx_put(c, &c->underlay, f + RL_TX_HEADROOM, RL_PROBE_FRAME_LEN)) {
		rl_pool_free(c->pool, f);
		RL_CNT_ADD(c->pcnt.probe_tx_failed, 1);
		return;
	}
	rl_probe_sent(&c->probes, p);
	RL_CNT_ADD(c->pcnt.probes_sent, 1);
}

/* Probe requests due now. A round, one request to every peer, starts every
 * probe interval and sends at most RL_PROBE_BURST per loop; a worker more
 * than an interval late starts the next round one interval from now rather
 * than catching up in a burst. Returns the requests sent. */
static __u32 probe_tick(struct rl_core *c)
{
	struct rl_probe_table *t = &c->probes;
	__u32 sent = 0;
	__u64 now;

	if (!c->probe_interval_ns || !t->n)
		return 0;
	now = mono_ns();
	if (!c->probe_in_round) {
		if (now < c->probe_next_ns)
			return 0;
		c->probe_in_round = true;
		c->probe_cursor = 0;
		if (now - c->probe_next_ns < c->probe_interval_ns)
			c->probe_next_ns += c->probe_interval_ns;
		else
			c->probe_next_ns = now + c->probe_interval_ns;
	}
	/* a peer forgotten mid-round moves the last one into its place: at
	 * worst one peer waits for the next round */
	while (c->probe_cursor < t->n && sent < RL_PROBE_BURST) {
		probe_send(c, t->peers[c->probe_cursor++], now);
		sent++;
	}
	if (c->probe_cursor >= t->n)
		c->probe_in_round = false;
	return sent;
}

/* Descriptors in the packet starting at rx index @idx, looking at no more
 * than @avail: 0 if its end is not in the ring yet. */
static __u32 chain_len(struct rl_sock *s, __u32 idx, __u32 avail)
{
	__u32 n;

	for (n = 1; n <= avail; n++) {
		if (!(rl_ring_desc(&s->rx, idx + n - 1)->options & XDP_PKT_CONTD))
			return n;
	}
	return 0;
}

/* Handle the packet of @k descriptors at rx index @idx of @s; false if it
 * was no packet of the pods' (a probe), so rx_batch() does not count it. */
typedef bool (*rl_rx_fn)(struct rl_core *c, struct rl_sock *s, __u32 idx, __u32 k);

/* Up to a batch of packets from @s's rx ring through @fn. Returns the number
 * of descriptors consumed. */
static __u32 rx_batch(struct rl_core *c, struct rl_sock *s, rl_rx_fn fn)
{
	__u32 n, idx, i = 0, k, j, bytes;
	bool pod_packet;

	n = rl_ring_cons_peek(&s->rx, c->opts.batch_size + RL_MAX_FRAGS, &idx);
	if (!n)
		return 0;
	for (j = 0; j < n; j++)
		rl_pool_set_owner(c->pool, rl_ring_desc(&s->rx, idx + j)->addr, RL_OWNER_WORKER);
	/* the tail of a chain longer than RL_MAX_FRAGS, already counted */
	while (s->dropping_chain && i < n) {
		s->dropping_chain = rl_ring_desc(&s->rx, idx + i)->options & XDP_PKT_CONTD;
		free_chain(c, s, idx + i, 1);
		i++;
	}
	while (i < n) {
		k = chain_len(s, idx + i, n - i);
		if (!k) {
			if (n - i < RL_MAX_FRAGS)
				break;	/* the rest of the chain is still coming */
			count_drop(c, s, RL_DROP_BAD_CHAIN);
			free_chain(c, s, idx + i, n - i);
			s->dropping_chain = true;
			i = n;
			break;
		}
		bytes = 0;
		for (j = 0; j < k; j++)
			bytes += rl_ring_desc(&s->rx, idx + i + j)->len;
		if (k > RL_MAX_FRAGS) {
			count_drop(c, s, RL_DROP_BAD_CHAIN);
			free_chain(c, s, idx + i, k);
			pod_packet = true;
		} else {
			pod_packet = fn(c, s, idx + i, k);
		}
		if (pod_packet) {
			RL_CNT_ADD(s->cnt.rx_packets, 1);
			RL_CNT_ADD(s->cnt.rx_bytes, bytes);
			RL_CNT_ADD(c->cnt.rx_packets, 1);
			RL_CNT_ADD(c->cnt.rx_bytes, bytes);
		}
		i += k;
	}
	/* descriptors left for the next loop go back to their socket */
	for (j = i; j < n; j++)
		rl_pool_set_owner(c->pool, rl_ring_desc(&s->rx, idx + j)->addr, s->owner);
	rl_ring_cons_unpeek(&s->rx, n - i);
	rl_ring_cons_release(&s->rx);
	return i;
}

/* Milliseconds poll() may sleep: short while frames are in flight (the
 * pool refills from completions), never past the next probe round. */
static int sleep_ms(struct rl_core *c)
{
	int ms = c->tx_outstanding ? RL_POLL_MS_INFLIGHT : RL_POLL_MS_IDLE;
	__u64 now, wait;

	if (!c->probe_interval_ns || !c->probes.n)
		return ms;
	now = mono_ns();
	wait = c->probe_next_ns > now ? (c->probe_next_ns - now + 999999) / 1000000 : 0;
	return wait < (__u64)ms ? (int)wait : ms;
}

/* Sleep until a socket has something, a command arrives, or the timeout. */
static void worker_sleep(struct rl_core *c)
{
	__u64 v;
	__u32 i, n = 0;

	c->pfds[n++] = (struct pollfd){ .fd = c->wake_fd, .events = POLLIN };
	c->pfds[n++] = (struct pollfd){ .fd = c->underlay.fd, .events = POLLIN };
	for (i = 0; i < c->n_active; i++)
		c->pfds[n++] = (struct pollfd){ .fd = c->active[i]->fd, .events = POLLIN };
	c->sleeps++;
	poll(c->pfds, n, sleep_ms(c));
	if (c->pfds[0].revents & POLLIN) {
		if (read(c->wake_fd, &v, sizeof(v)) < 0) {
			/* EAGAIN: another reader got it first; nothing to do */
		}
	}
}

/* @s's counters, the kernel's XDP_STATISTICS, the frames it holds and how
 * full its four rings are. */
static void sock_stats(struct rl_core *c, struct rl_sock *s, struct rl_sock_stats *out)
{
	out->counters = s->cnt;
	rl_sock_kstats(s, &out->kernel);
	out->zero_copy = s->zero_copy;
	out->frames_owned = rl_pool_count_owner(c->pool, s->owner);
	out->rx_entries = rl_ring_entries(&s->rx);
	out->tx_entries = rl_ring_entries(&s->tx);
	out->fill_entries = rl_ring_entries(&s->fill);
	out->comp_entries = rl_ring_entries(&s->comp);
}

/* The served endpoint in @slot and its index in active[] (@pos), or NULL. */
static struct rl_sock *active_find(struct rl_core *c, __u32 slot, __u32 *pos)
{
	__u32 i;

	for (i = 0; i < c->n_active; i++) {
		if (c->active[i]->slot == slot) {
			*pos = i;
			return c->active[i];
		}
	}
	return NULL;
}

/* Build the encap parameters of a remote podCIDR from the core's options. */
static void encap_params(const struct rl_core *c, const struct rl_remote_opts *r,
			 struct rl_encap_params *p)
{
	memset(p, 0, sizeof(*p));
	memcpy(p->outer_src_mac, c->opts.underlay_mac, 6);
	memcpy(p->outer_dst_mac, r->next_hop_mac, 6);
	memcpy(p->inner_src_mac, c->opts.vtep_mac, 6);
	memcpy(p->inner_dst_mac, r->vtep_mac, 6);
	p->outer_saddr = c->opts.underlay_ip;
	p->outer_daddr = r->node_ip;
	p->vni = c->opts.vni;
	p->dport = c->opts.vxlan_port;
	p->sport_min = c->opts.sport_min;
	p->sport_max = c->opts.sport_max;
	p->ttl = 64;
}

/* First sequence number for a new peer: milliseconds since boot. Requests
 * go out at most one per RL_PROBE_INTERVAL_MIN_MS, slower than this clock,
 * so a node forgotten and probed again starts past the requests of its
 * previous life, whose stray replies are then late, not taken for new ones. */
static __u32 probe_first_seq(void)
{
	return (__u32)(mono_ns() / 1000000);
}

/* Insert or replace the route of @r and count it towards its node's
 * probes. 0, or -errno of the route table or the probe table (then nothing
 * changed). */
static int route_set(struct rl_core *c, const struct rl_remote_opts *r)
{
	const struct rl_route *old = rl_fwd_route_get(&c->fwd, r->cidr, r->prefixlen);
	__be32 old_node = old ? old->encap.outer_daddr : 0;
	bool replaced = old != NULL;
	struct rl_encap_params p;
	int err;

	encap_params(c, r, &p);
	err = rl_probe_peer_ref(&c->probes, &p, probe_first_seq());
	if (err)
		return err;
	err = rl_fwd_route_set(&c->fwd, r->cidr, r->prefixlen, &p);
	if (err) {
		rl_probe_peer_unref(&c->probes, p.outer_daddr);
		return err;
	}
	if (replaced)
		rl_probe_peer_unref(&c->probes, old_node);
	return 0;
}

/* Remove the route @cidr/@plen; its node is forgotten by the probes with
 * its last route. 0 or -ENOENT. */
static int route_del(struct rl_core *c, __be32 cidr, __u8 plen)
{
	const struct rl_route *old = rl_fwd_route_get(&c->fwd, cidr, plen);
	__be32 node = old ? old->encap.outer_daddr : 0;
	int err;

	err = rl_fwd_route_del(&c->fwd, cidr, plen);
	if (!err)
		rl_probe_peer_unref(&c->probes, node);
	return err;
}

void rl_worker_run_cmd(struct rl_core *c, struct rl_cmd *cmd)
{
	const struct rl_remote_opts *r;
	struct rl_core_stats *st;
	struct rl_link_stat *ls;
	struct rl_sock *s;
	__u32 pos;

	cmd->result = 0;
	switch (cmd->type) {
	case RL_CMD_ADD_SOCK:
		s = cmd->arg;
		if (s == &c->underlay) {
			rl_worker_refill(c, s);
			break;
		}
		cmd->result = rl_fwd_local_add(&c->fwd, s->ip, s);
		if (cmd->result)
			break;
		c->active[c->n_active++] = s;
		rl_worker_refill(c, s);
		break;
	case RL_CMD_DEL_SOCK:
		s = active_find(c, cmd->u32, &pos);
		if (!s) {
			cmd->result = -ENOENT;
			break;
		}
		rl_fwd_local_del(&c->fwd, s->ip);
		c->active[pos] = c->active[--c->n_active];
		/* its tx frames in flight are reclaimed with the rest */
		c->tx_outstanding -= s->tx_inflight;
		cmd->out = s;
		break;
	case RL_CMD_RECLAIM:
		rl_pool_reclaim(c->pool, (__u16)cmd->u32);
		break;
	case RL_CMD_SET_ROUTE:
		cmd->result = route_set(c, cmd->arg);
		break;
	case RL_CMD_DEL_ROUTE:
		r = cmd->arg;
		cmd->result = route_del(c, r->cidr, r->prefixlen);
		break;
	case RL_CMD_STATS:
		st = cmd->arg;
		memset(st, 0, sizeof(*st));
		st->worker = c->cnt;
		sock_stats(c, &c->underlay, &st->underlay);
		st->frames_total = c->pool->n_frames;
		st->frames_free = c->pool->top;
		st->frames_worker = rl_pool_count_owner(c->pool, RL_OWNER_WORKER);
		/* counted per owner, not derived: a frame lost by a socket that
		 * went away shows up as free + worker + sockets < total */
		st->frames_sockets = rl_pool_count_owner(c->pool, c->underlay.owner);
		for (pos = 0; pos < c->n_active; pos++)
			st->frames_sockets += rl_pool_count_owner(c->pool, c->active[pos]->owner);
		st->bad_frees = c->pool->bad_frees;
		st->n_endpoints = c->n_active;
		st->hugepages = c->hugepages;
		st->running = c->started;
		st->loops = c->loops;
		st->sleeps = c->sleeps;
		st->probe = c->pcnt;
		st->probe.probe_peers = c->probes.n;
		st->probe.probe_interval_ms = c->opts.probe_interval_ms;
		break;
	case RL_CMD_LINK_STATS:
		ls = cmd->arg;
		for (pos = 0; pos < c->probes.n && pos < cmd->u32; pos++)
			ls[pos] = c->probes.peers[pos]->st;
		cmd->result = (int)c->probes.n;
		break;
	case RL_CMD_EP_STATS:
		s = active_find(c, cmd->u32, &pos);
		if (!s) {
			cmd->result = -ENOENT;
			break;
		}
		sock_stats(c, s, cmd->arg);
		break;
	case RL_CMD_STOP:
	case RL_CMD_NONE:
		break;
	}
}

/* Take and run a pending command; true if it was RL_CMD_STOP. */
static bool worker_take_cmd(struct rl_core *c)
{
	__u32 expect = 1;
	bool stop;

	if (__atomic_load_n(&c->cmd_pending, __ATOMIC_ACQUIRE) != 1)
		return false;
	if (!__atomic_compare_exchange_n(&c->cmd_pending, &expect, 2, false,
					 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		return false;	/* cancelled by a caller that timed out */
	rl_worker_run_cmd(c, &c->cmd);
	stop = c->cmd.type == RL_CMD_STOP;
	__atomic_store_n(&c->cmd_pending, 0, __ATOMIC_RELEASE);
	return stop;
}

void *rl_worker_main(void *arg)
{
	struct rl_core *c = arg;
	__u32 idle = 0, i, work;
	cpu_set_t set;

	if (c->opts.cpu >= 0) {
		CPU_ZERO(&set);
		CPU_SET(c->opts.cpu, &set);
		pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	}
	for (;;) {
		if (worker_take_cmd(c))
			break;
		c->loops++;
		work = rx_batch(c, &c->underlay, from_wire);
		for (i = 0; i < c->n_active; i++)
			work += rx_batch(c, c->active[i], from_pod);
		if (!work || !(c->loops % RL_PROBE_CLOCK_EVERY))
			work += probe_tick(c);
		tx_flush(c, &c->underlay);
		drain_comp(c, &c->underlay);
		for (i = 0; i < c->n_active; i++) {
			tx_flush(c, c->active[i]);
			drain_comp(c, c->active[i]);
			rl_worker_refill(c, c->active[i]);
		}
		rl_worker_refill(c, &c->underlay);
		if (work || c->opts.busy_poll) {
			idle = 0;
			continue;
		}
		if (++idle < RL_IDLE_SPINS)
			continue;
		idle = 0;
		worker_sleep(c);
	}
	return NULL;
}
