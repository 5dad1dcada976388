/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * core: the ring core's private structures, shared by ringcore.c (control
 * path: sockets, commands) and worker.c (the per-packet loop).
 */
#ifndef RL_CORE_H
#define RL_CORE_H

#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <xdp/xsk.h>

#include "frame_pool.h"
#include "fwd.h"
#include "pkt.h"
#include "probe.h"
#include "ring.h"
#include "ringcore.h"

#define RL_FRAME_SHIFT 12
#define RL_FRAME_SIZE (1U << RL_FRAME_SHIFT)
/* Where frames we build ourselves (TSO segments) start inside a chunk;
 * the same XDP_PACKET_HEADROOM the kernel leaves on receive. */
#define RL_TX_HEADROOM 256
#define RL_UNDERLAY_OWNER (RL_OWNER_SOCK_BASE + RL_UNDERLAY_SLOT_BASE)

/* Counter updates: plain adds; the worker is the only writer and readers
 * get a snapshot through a command, so no atomics are needed. */
#define RL_CNT_ADD(field, n) ((field) += (n))

/* One AF_XDP socket: a pod veth's or the underlay's. */
struct rl_sock {
	struct xsk_socket *xsk;
	struct xsk_ring_cons x_rx, x_comp;	/* libxdp's views, for creation only */
	struct xsk_ring_prod x_tx, x_fill;
	struct rl_ring rx, tx, fill, comp;	/* ours, used by the worker */
	int fd;
	__u32 slot;
	__u16 owner;			/* RL_OWNER_SOCK_BASE + slot */
	__u32 fill_target;		/* frames to keep in the fill ring */
	__u32 tx_unsent;		/* submitted since the last kick */
	__u32 tx_inflight;		/* on its tx ring, not yet completed */
	bool zero_copy;
	bool in_xskmap;
	bool dropping_chain;		/* inside an over-long chain */
	/* endpoint only */
	__be32 ip;
	__u8 pod_mac[6];
	__u8 host_mac[6];
	struct rl_counters cnt;
};

enum rl_cmd_type {
	RL_CMD_NONE = 0,
	RL_CMD_ADD_SOCK,	/* arg: struct rl_sock *, to serve */
	RL_CMD_DEL_SOCK,	/* u32: slot; stop serving, result: the sock */
	RL_CMD_RECLAIM,		/* u32: owner whose frames come back */
	RL_CMD_SET_ROUTE,	/* arg: struct rl_remote_opts * */
	RL_CMD_DEL_ROUTE,	/* arg: struct rl_remote_opts * */
	RL_CMD_STATS,		/* arg: struct rl_core_stats * */
	RL_CMD_EP_STATS,	/* u32: slot, arg: struct rl_sock_stats * */
	RL_CMD_STOP,
	RL_CMD_LINK_STATS,	/* arg: struct rl_link_stat[u32]; result: peers */
};

struct rl_cmd {
	enum rl_cmd_type type;
	void *arg;
	__u32 u32;
	int result;
	void *out;
};

struct rl_core {
	struct rl_core_opts opts;
	void *umem_area;
	size_t umem_size;
	bool hugepages;
	struct xsk_umem *umem;
	struct rl_pool *pool;
	struct rl_fwd fwd;
	struct rl_sock underlay;
	struct rl_sock *eps[RL_MAX_ENDPOINTS];	/* control side: by slot, under ctl_lock */
	struct rl_sock *active[RL_MAX_ENDPOINTS]; /* worker side: endpoints served */
	__u32 n_active;
	struct pollfd pfds[RL_MAX_ENDPOINTS + 2]; /* worker side: wake_fd, underlay, active */
	__u64 tx_outstanding;			/* frames on tx rings, not yet completed */
	struct rl_counters cnt;			/* worker-wide */
	__u64 loops, sleeps;
	/* link probes (worker side); the table follows the routes */
	struct rl_probe_table probes;
	struct rl_probe_counters pcnt;
	__u64 probe_interval_ns;		/* 0: send no requests (RL_PROBE_OFF) */
	__u64 probe_next_ns;			/* CLOCK_MONOTONIC start of the next round */
	__u32 probe_cursor;			/* next peer of the round in progress */
	bool probe_in_round;

	/* control <-> worker */
	pthread_mutex_t ctl_lock;		/* serialises control calls */
	pthread_t thread;
	bool started;
	int wake_fd;				/* eventfd: wakes the worker from poll() */
	struct rl_cmd cmd;
	__u32 cmd_pending;			/* 1: cmd is for the worker (acquire/release) */
};

/* worker.c: the thread body. */
void *rl_worker_main(void *arg);

/* worker.c: run the pending command on the calling thread, which must be
 * the worker, or the control thread while no worker runs. */
void rl_worker_run_cmd(struct rl_core *c, struct rl_cmd *cmd);

/* worker.c: top @s's fill ring up to its target from the pool. */
void rl_worker_refill(struct rl_core *c, struct rl_sock *s);

/* ringcore.c: read the kernel's XDP_STATISTICS of @s. */
void rl_sock_kstats(const struct rl_sock *s, struct rl_kstats *out);

#endif /* RL_CORE_H */
