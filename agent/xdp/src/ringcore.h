/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * ringcore: the public face of the ring core, the only part Python calls.
 *
 * One core serves one node: a UMEM shared (XDP_SHARED_UMEM) by the
 * underlay socket and every pod veth socket, and one worker thread that owns
 * all their rings, the frame pool and the forwarding tables. A frame
 * received from a pod is encapsulated in its own headroom and put on the
 * underlay TX ring, and the other way round, without a copy in user space.
 *
 * Control calls below are serialised by a mutex (control path only) and run
 * on the worker between two batches, by a command the worker picks up with
 * one acquire load per loop; the per-packet path takes no lock. Every call
 * returns 0 or -errno and blocks at most RL_CMD_TIMEOUT_MS waiting for the
 * worker (-ETIMEDOUT after that).
 */
#ifndef RL_RINGCORE_H
#define RL_RINGCORE_H

#include <stddef.h>
#include <linux/types.h>
#include "ringlane/abi.h"

/* cffi:begin */
#define RL_CMD_TIMEOUT_MS 2000
#define RL_BATCH_MAX 256

/*
 * Link probes (probe.h has the frame and the arithmetic). Every
 * probe_interval_ms the worker sends one request through the overlay to
 * every node its routes lead to, and answers the requests of the others.
 * A request is decided RL_PROBE_DEADLINE_INTERVALS intervals, and at least
 * RL_PROBE_DEADLINE_MIN_MS, after it was sent, counted in requests sent to
 * that node: answered in time or lost. Loss is over the last
 * RL_PROBE_WINDOW decided requests. One peer per distinct route node, so
 * the route table's bound is the peers' bound: no routed node goes unprobed.
 * A core whose probes are off still answers, so that its peers do not take
 * a configuration difference for a broken link.
 */
#define RL_PROBE_DEFAULT_INTERVAL_MS 1000
#define RL_PROBE_INTERVAL_MIN_MS 10
#define RL_PROBE_INTERVAL_MAX_MS 60000
#define RL_PROBE_OFF 0xffffffff		/* probe_interval_ms: send none (still answer) */
#define RL_PROBE_DEADLINE_INTERVALS 3
#define RL_PROBE_DEADLINE_MIN_MS 1000
#define RL_PROBE_WINDOW 64
#define RL_PROBE_MAX_PEERS 16384	/* = RL_MAX_REMOTE_CIDRS */

struct rl_core;

struct rl_core_opts {
	size_t sz;			/* sizeof(struct rl_core_opts) */
	const char *underlay_ifname;
	__u32 underlay_queue;		/* queue the underlay socket binds to */
	__u32 n_frames;			/* UMEM frames of 4 KiB; 0: 8192 */
	__u32 ring_size;		/* underlay rings; power of two; 0: 2048 */
	__u32 ep_ring_size;		/* pod veth rings and fill level; power of two; 0: 512 */
	__u32 batch_size;		/* 1..RL_BATCH_MAX; 0: 64 */
	__u32 vni;			/* 24 bits */
	__u16 vxlan_port;		/* 0: 4789 */
	__u16 sport_min;		/* 0 with sport_max 0: RL_RING_SPORT_MIN..MAX */
	__u16 sport_max;
	__u16 overlay_mtu;		/* largest inner IPv4 packet; TCP above is segmented */
	__be32 underlay_ip;
	__u8 underlay_mac[6];
	__u8 vtep_mac[6];		/* this node's kernel VXLAN device MAC */
	int xsks_map_fd;		/* XSKMAP where sockets are published */
	int busy_poll;			/* 1: never sleep; 0: sleep in poll() when idle */
	int hugepages;			/* 1: try MAP_HUGETLB first */
	int cpu;			/* worker CPU, -1: any */
	__u32 probe_interval_ms;	/* 0: RL_PROBE_DEFAULT_INTERVAL_MS; RL_PROBE_OFF;
					 * else RL_PROBE_INTERVAL_MIN_MS..MAX_MS */
};

struct rl_endpoint_opts {
	size_t sz;
	const char *ifname;		/* host side of the pod veth */
	__u32 slot;			/* XSKMAP slot, < RL_MAX_ENDPOINTS */
	__be32 ip;			/* pod IPv4 */
	__u8 pod_mac[6];
	__u8 host_mac[6];		/* the host veth's MAC (the pod's gateway) */
};

struct rl_remote_opts {
	size_t sz;
	__be32 cidr;
	__u8 prefixlen;
	__u8 pad[3];
	__be32 node_ip;			/* the remote node's underlay IP */
	__u8 next_hop_mac[6];		/* underlay MAC to send to */
	__u8 vtep_mac[6];		/* the remote node's VXLAN device MAC */
};

struct rl_counters {
	__u64 rx_packets;
	__u64 rx_bytes;
	__u64 tx_packets;
	__u64 tx_bytes;
	__u64 encap;
	__u64 decap;
	__u64 tso_packets;		/* super-frames segmented */
	__u64 tso_segments;		/* segments they became */
	__u64 csum_filled;		/* L4 checksums completed in software */
	__u64 drops[15];		/* by enum rl_drop_reason; see RL_DROP_MAX */
};

/* The kernel's XDP_STATISTICS of one socket. */
struct rl_kstats {
	__u64 rx_dropped;
	__u64 rx_invalid_descs;
	__u64 tx_invalid_descs;
	__u64 rx_ring_full;
	__u64 rx_fill_ring_empty_descs;
	__u64 tx_ring_empty_descs;
};

struct rl_sock_stats {
	struct rl_counters counters;
	struct rl_kstats kernel;
	__u32 zero_copy;		/* 1: zero-copy bind, 0: copy mode */
	__u32 frames_owned;		/* in its fill and tx rings */
	/* ring occupancy at the snapshot: entries between consumer and producer */
	__u32 rx_entries;		/* received, not yet taken by the worker */
	__u32 tx_entries;		/* queued for the kernel to send */
	__u32 fill_entries;		/* frames the kernel may receive into */
	__u32 comp_entries;		/* sent, not yet reclaimed by the worker */
};

/* The link probes of a core, all peers together. Probe frames are counted
 * here only, never in rl_counters (not pod packets, not drops). */
struct rl_probe_counters {
	__u64 probes_sent;		/* requests put on the underlay tx ring */
	__u64 probe_replies;		/* replies to our requests, in time or late */
	__u64 probe_requests_answered;	/* other nodes' requests answered */
	__u64 probe_late;		/* replies past their deadline, or repeated */
	__u64 probe_bad;		/* malformed, other version, not ours: dropped */
	__u64 probe_tx_failed;		/* request or answer not sent: no frame, tx ring full */
	__u32 probe_peers;		/* nodes probed */
	__u32 probe_interval_ms;	/* RL_PROBE_OFF: probes off */
};

struct rl_core_stats {
	struct rl_counters worker;	/* everything this core's worker did */
	struct rl_sock_stats underlay;
	__u32 frames_total;
	__u32 frames_free;
	__u32 frames_worker;		/* in the worker's hands (0 between batches) */
	__u32 frames_sockets;		/* lent to all sockets */
	__u32 bad_frees;
	__u32 n_endpoints;
	__u32 hugepages;		/* 1: UMEM on huge pages */
	__u32 running;
	__u64 loops;
	__u64 sleeps;			/* times the worker slept in poll() */
	struct rl_probe_counters probe;
};

/* One peer node's link as this core's probes see it. Times are ns; RTT
 * fields are meaningful once received > 0. */
struct rl_link_stat {
	__be32 node_ip;			/* the peer's underlay IPv4 */
	__u32 window;			/* decided requests in the loss window, <= RL_PROBE_WINDOW */
	__u64 sent;			/* requests sent */
	__u64 received;			/* replies before their deadline */
	__u64 lost;			/* requests decided without a reply in time */
	__u64 late;			/* replies after their deadline (already lost), or repeated */
	__u64 rtt_last_ns;
	__u64 rtt_min_ns;
	__u64 rtt_max_ns;
	__u64 rtt_avg_ns;		/* EWMA, gain 1/8 (as TCP's SRTT) */
	__u64 jitter_ns;		/* mean |RTT - previous RTT|, gain 1/16 (RFC 3550 6.4.1) */
	__u64 last_reply_ns;		/* CLOCK_MONOTONIC of the last reply in time; 0: none */
	__u32 lost_window;		/* lost among the window's requests */
	__u32 loss_window_ppm;		/* lost_window per million of window; 0 if window is 0 */
};

/* Create the UMEM, the pool, the underlay socket (zero-copy if the driver
 * can, copy otherwise) and publish it in the XSKMAP. The worker is not
 * started. -EINVAL for bad options, -ENODEV, -ENOMEM, -errno of bind. */
int rl_core__create(const struct rl_core_opts *opts, struct rl_core **out);

/* Start the worker thread. -EALREADY, -errno of pthread_create. */
int rl_core__start(struct rl_core *c);

/* Stop the worker, withdraw every socket from the XSKMAP first (traffic
 * falls back to the kernel), close them, free everything. NULL: no-op. */
void rl_core__destroy(struct rl_core *c);

/* Open an AF_XDP socket on the pod veth (copy mode, multi-buffer), give it
 * frames, then publish it in the XSKMAP. -EEXIST (slot or IP taken),
 * -EINVAL, -ENODEV, -errno of bind. Nothing is left half-added. */
int rl_core__add_endpoint(struct rl_core *c, const struct rl_endpoint_opts *e);

/* Withdraw the socket from the XSKMAP, then stop serving it, close it and
 * take its frames back. -ENOENT. */
int rl_core__remove_endpoint(struct rl_core *c, __u32 slot);

/* Insert or replace a remote podCIDR. -EINVAL, -ENOSPC. */
int rl_core__set_remote(struct rl_core *c, const struct rl_remote_opts *r);

/* Remove a remote podCIDR. -ENOENT. */
int rl_core__remove_remote(struct rl_core *c, __be32 cidr, __u8 prefixlen);

/* A consistent snapshot, taken by the worker between two batches. */
int rl_core__stats(struct rl_core *c, struct rl_core_stats *out);

/* One endpoint's snapshot. -ENOENT. */
int rl_core__endpoint_stats(struct rl_core *c, __u32 slot, struct rl_sock_stats *out);

/* Copy the link stats of up to @max peers into @out, taken by the worker
 * between two batches (one consistent instant for all). Returns the number
 * of peers, which may exceed @max (then only @max were copied: call again
 * with room for all), or -EINVAL. */
int rl_core__link_stats(struct rl_core *c, struct rl_link_stat *out, __u32 max);
/* cffi:end */

_Static_assert(sizeof(((struct rl_counters *)0)->drops) / sizeof(__u64) == RL_DROP_MAX,
	       "rl_counters.drops must have one slot per enum rl_drop_reason");

_Static_assert(sizeof(struct rl_link_stat) == 96, "rl_link_stat");
_Static_assert(sizeof(struct rl_probe_counters) == 56, "rl_probe_counters");
_Static_assert(RL_PROBE_MAX_PEERS == RL_MAX_REMOTE_CIDRS,
	       "one peer per route at most: the peer bound is the route bound");

#endif /* RL_RINGCORE_H */
