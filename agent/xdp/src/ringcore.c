// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * ringcore: creation, teardown, sockets and the control calls of the ring
 * core. Everything here runs on the control thread (Python's), under
 * ctl_lock; what touches rings, the pool or the tables is sent to the worker
 * as a command (see core.h and worker.c).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <bpf/bpf.h>

#include "core.h"

#ifndef XDP_USE_SG
#define XDP_USE_SG (1 << 4)	/* linux/if_xdp.h of 6.6+; Debian 12 ships 6.1's */
#endif
#ifndef SO_PREFER_BUSY_POLL
#define SO_PREFER_BUSY_POLL 69
#endif
#ifndef SO_BUSY_POLL_BUDGET
#define SO_BUSY_POLL_BUDGET 70
#endif

#define RL_DEFAULT_FRAMES 16384
#define RL_DEFAULT_RING 2048
#define RL_DEFAULT_EP_RING 512
#define RL_DEFAULT_BATCH 64
#define RL_BUSY_POLL_USECS 20
/* The options' size before probe_interval_ms was appended: a caller built
 * against that header still works, the fields it does not know read 0. */
#define RL_CORE_OPTS_SZ_V1 offsetof(struct rl_core_opts, probe_interval_ms)

/* A random id for this core's probes; the clock if the kernel has no
 * entropy to spare (it only has to differ from the previous agent's). */
static __u32 probe_nonce(void)
{
	struct timespec ts;
	__u32 v;

	if (getrandom(&v, sizeof(v), GRND_NONBLOCK) == sizeof(v))
		return v;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (__u32)(ts.tv_nsec ^ ts.tv_sec);
}

/* Whether @v is a power of two (0 is not). */
static bool is_pow2(__u32 v)
{
	return v && !(v & (v - 1));
}

/* Copy @in into @out, filling defaults; -EINVAL for values out of range. */
static int opts_normalise(const struct rl_core_opts *in, struct rl_core_opts *out)
{
	if (!in || in->sz < RL_CORE_OPTS_SZ_V1 || in->sz > sizeof(*in) || !in->underlay_ifname)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	memcpy(out, in, in->sz);
	out->sz = sizeof(*out);
	if (!out->n_frames)
		out->n_frames = RL_DEFAULT_FRAMES;
	if (!out->ring_size)
		out->ring_size = RL_DEFAULT_RING;
	if (!out->ep_ring_size)
		out->ep_ring_size = RL_DEFAULT_EP_RING;
	if (!out->batch_size)
		out->batch_size = RL_DEFAULT_BATCH;
	if (!out->vxlan_port)
		out->vxlan_port = RL_VXLAN_PORT_DEFAULT;
	if (!out->sport_min && !out->sport_max) {
		out->sport_min = RL_RING_SPORT_MIN;
		out->sport_max = RL_RING_SPORT_MAX;
	}
	if (!out->probe_interval_ms)
		out->probe_interval_ms = RL_PROBE_DEFAULT_INTERVAL_MS;
	if (out->probe_interval_ms != RL_PROBE_OFF &&
	    (out->probe_interval_ms < RL_PROBE_INTERVAL_MIN_MS ||
	     out->probe_interval_ms > RL_PROBE_INTERVAL_MAX_MS))
		return -EINVAL;
	if (!is_pow2(out->ring_size) || !is_pow2(out->ep_ring_size) ||
	    out->batch_size > RL_BATCH_MAX || out->vni > 0xffffff ||
	    out->sport_min > out->sport_max || out->overlay_mtu < 576 ||
	    out->overlay_mtu > RL_FRAME_SIZE - RL_TX_HEADROOM - RL_ENCAP_LEN - RL_ETH_HLEN ||
	    out->n_frames < 2 * out->ring_size || out->xsks_map_fd < 0 ||
	    out->underlay_queue >= RL_MAX_UNDERLAY_QUEUES)
		return -EINVAL;
	return 0;
}

/* UMEM memory: huge pages when asked and available, 4 KiB pages otherwise. */
static int umem_map(struct rl_core *c)
{
	int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE;

	c->umem_size = (size_t)c->opts.n_frames * RL_FRAME_SIZE;
	if (c->opts.hugepages) {
		c->umem_area = mmap(NULL, c->umem_size, PROT_READ | PROT_WRITE,
				    flags | MAP_HUGETLB, -1, 0);
		if (c->umem_area != MAP_FAILED) {
			c->hugepages = true;
			return 0;
		}
	}
	c->umem_area = mmap(NULL, c->umem_size, PROT_READ | PROT_WRITE, flags, -1, 0);
	if (c->umem_area == MAP_FAILED) {
		c->umem_area = NULL;
		return -errno;
	}
	return 0;
}

/* Copy libxdp's ring views into ours once the socket exists. */
static void sock_init_rings(struct rl_sock *s)
{
	rl_ring_init(&s->rx, s->x_rx.producer, s->x_rx.consumer, s->x_rx.ring,
		     s->x_rx.flags, s->x_rx.size, 0);
	rl_ring_init(&s->tx, s->x_tx.producer, s->x_tx.consumer, s->x_tx.ring,
		     s->x_tx.flags, s->x_tx.size, 1);
	rl_ring_init(&s->fill, s->x_fill.producer, s->x_fill.consumer, s->x_fill.ring,
		     s->x_fill.flags, s->x_fill.size, 1);
	rl_ring_init(&s->comp, s->x_comp.producer, s->x_comp.consumer, s->x_comp.ring,
		     s->x_comp.flags, s->x_comp.size, 0);
}

/* Whether the socket @fd was bound in zero-copy mode (false if unknown). */
static bool sock_is_zero_copy(int fd)
{
	struct xdp_options o = { 0 };
	socklen_t l = sizeof(o);

	if (getsockopt(fd, SOL_XDP, XDP_OPTIONS, &o, &l))
		return false;
	return !!(o.flags & XDP_OPTIONS_ZEROCOPY);
}

/* Open an AF_XDP socket on @ifname/@queue sharing the core's UMEM. */
static int sock_open(struct rl_core *c, struct rl_sock *s, const char *ifname,
		     __u32 queue, __u32 ring_size, __u16 bind_flags)
{
	struct xsk_socket_config cfg = {
		.rx_size = ring_size,
		.tx_size = ring_size,
		.libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD,
		.bind_flags = bind_flags,
	};
	int err;

	err = xsk_socket__create_shared(&s->xsk, ifname, queue, c->umem, &s->x_rx,
					&s->x_tx, &s->x_fill, &s->x_comp, &cfg);
	if (err)
		return err;
	s->fd = xsk_socket__fd(s->xsk);
	s->zero_copy = sock_is_zero_copy(s->fd);
	sock_init_rings(s);
	return 0;
}

/* Put @s in its XSKMAP slot: from now on XDP may redirect to it. 0 or -errno. */
static int xskmap_publish(struct rl_core *c, struct rl_sock *s)
{
	__u32 key = s->slot;
	int fd = s->fd;

	if (bpf_map_update_elem(c->opts.xsks_map_fd, &key, &fd, 0))
		return -errno;
	s->in_xskmap = true;
	return 0;
}

/* Empty @s's XSKMAP slot if it was published: XDP passes to the kernel. */
static void xskmap_withdraw(struct rl_core *c, struct rl_sock *s)
{
	__u32 key = s->slot;

	if (s->in_xskmap)
		bpf_map_delete_elem(c->opts.xsks_map_fd, &key);
	s->in_xskmap = false;
}

/* Ask the kernel to busy-poll socket @fd (best effort). */
static void busy_poll_setup(int fd)
{
	int on = 1, usecs = RL_BUSY_POLL_USECS, budget = RL_DEFAULT_BATCH;

	/* best effort: kernels without these options just keep plain polling */
	setsockopt(fd, SOL_SOCKET, SO_PREFER_BUSY_POLL, &on, sizeof(on));
	setsockopt(fd, SOL_SOCKET, SO_BUSY_POLL, &usecs, sizeof(usecs));
	setsockopt(fd, SOL_SOCKET, SO_BUSY_POLL_BUDGET, &budget, sizeof(budget));
}

/* Send @cmd to the worker and wait for its result. The worker takes a
 * command by moving cmd_pending 1 -> 2 and finishes it with 2 -> 0; a
 * command still at 1 after the timeout is cancelled (1 -> 0), so the worker
 * never runs a command whose caller has given up on it. */
static int core_cmd(struct rl_core *c, struct rl_cmd *cmd)
{
	const struct timespec pause = { .tv_nsec = 20000 };
	struct timespec start, now;
	__u32 expect = 1;
	__u64 one = 1;

	if (!c->started) {
		rl_worker_run_cmd(c, cmd);
		return cmd->result;
	}
	c->cmd = *cmd;
	__atomic_store_n(&c->cmd_pending, 1, __ATOMIC_RELEASE);
	if (write(c->wake_fd, &one, sizeof(one)) < 0) {
		/* the eventfd counter is saturated: the worker is awake anyway */
	}
	clock_gettime(CLOCK_MONOTONIC, &start);
	while (__atomic_load_n(&c->cmd_pending, __ATOMIC_ACQUIRE)) {
		nanosleep(&pause, NULL);
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((now.tv_sec - start.tv_sec) * 1000 +
		    (now.tv_nsec - start.tv_nsec) / 1000000 < RL_CMD_TIMEOUT_MS)
			continue;
		if (__atomic_compare_exchange_n(&c->cmd_pending, &expect, 0, false,
						__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			return -ETIMEDOUT;
		expect = 1;	/* the worker has it: wait for the end */
	}
	*cmd = c->cmd;
	return cmd->result;
}

int rl_core__create(const struct rl_core_opts *opts, struct rl_core **out)
{
	struct xsk_umem_config ucfg = { 0 };
	struct rl_cmd cmd = { 0 };
	struct rl_core *c;
	int err;

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->wake_fd = -1;
	err = opts_normalise(opts, &c->opts);
	if (err)
		goto err_free;
	if (!if_nametoindex(c->opts.underlay_ifname)) {
		err = -ENODEV;
		goto err_free;
	}
	/* ifname points into the caller's memory: keep our own copy */
	c->opts.underlay_ifname = strdup(opts->underlay_ifname);
	if (!c->opts.underlay_ifname) {
		err = -ENOMEM;
		goto err_free;
	}
	pthread_mutex_init(&c->ctl_lock, NULL);
	c->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (c->wake_fd < 0) {
		err = -errno;
		goto err_name;
	}
	err = rl_pool__create(c->opts.n_frames, RL_FRAME_SHIFT, &c->pool);
	if (err)
		goto err_wake;
	err = rl_fwd_init(&c->fwd, RL_MAX_REMOTE_CIDRS, RL_MAX_ENDPOINTS);
	if (err)
		goto err_pool;
	/* one spare peer: a route moved to a new node holds both for a moment */
	err = rl_probe_table_init(&c->probes, RL_PROBE_MAX_PEERS + 1,
				  c->opts.probe_interval_ms == RL_PROBE_OFF ?
				  RL_PROBE_DEFAULT_INTERVAL_MS : c->opts.probe_interval_ms,
				  probe_nonce());
	if (err)
		goto err_fwd;
	if (c->opts.probe_interval_ms != RL_PROBE_OFF)
		c->probe_interval_ns = (__u64)c->opts.probe_interval_ms * 1000000;
	err = umem_map(c);
	if (err)
		goto err_probes;
	ucfg.fill_size = c->opts.ring_size;
	ucfg.comp_size = c->opts.ring_size;
	ucfg.frame_size = RL_FRAME_SIZE;
	ucfg.frame_headroom = 0;
	err = xsk_umem__create(&c->umem, c->umem_area, c->umem_size,
			       &c->underlay.x_fill, &c->underlay.x_comp, &ucfg);
	if (err)
		goto err_unmap;
	c->underlay.slot = RL_UNDERLAY_SLOT_BASE + c->opts.underlay_queue;
	c->underlay.owner = RL_UNDERLAY_OWNER;
	c->underlay.fill_target = c->opts.ring_size;
	/* The first socket's bind decides for every socket sharing the UMEM
	 * (the kernel refuses flags on XDP_SHARED_UMEM binds): need_wakeup,
	 * multi-buffer (the pods' TSO super-frames arrive as descriptor
	 * chains), and no XDP_COPY/XDP_ZEROCOPY so the kernel takes
	 * zero-copy where the driver has it; XDP_OPTIONS says which. */
	err = sock_open(c, &c->underlay, c->opts.underlay_ifname, c->opts.underlay_queue,
			c->opts.ring_size, XDP_USE_NEED_WAKEUP | XDP_USE_SG);
	if (err == -EINVAL)	/* a kernel without multi-buffer AF_XDP (< 6.6) */
		err = sock_open(c, &c->underlay, c->opts.underlay_ifname,
				c->opts.underlay_queue, c->opts.ring_size, XDP_USE_NEED_WAKEUP);
	if (err)
		goto err_umem;
	if (c->opts.busy_poll)
		busy_poll_setup(c->underlay.fd);
	cmd.type = RL_CMD_ADD_SOCK;
	cmd.arg = &c->underlay;
	err = core_cmd(c, &cmd);
	if (err)
		goto err_sock;
	err = xskmap_publish(c, &c->underlay);
	if (err)
		goto err_sock;
	*out = c;
	return 0;

err_sock:
	xsk_socket__delete(c->underlay.xsk);
err_umem:
	xsk_umem__delete(c->umem);
err_unmap:
	munmap(c->umem_area, c->umem_size);
err_probes:
	rl_probe_table_fini(&c->probes);
err_fwd:
	rl_fwd_fini(&c->fwd);
err_pool:
	rl_pool__destroy(c->pool);
err_wake:
	close(c->wake_fd);
err_name:
	free((void *)c->opts.underlay_ifname);
	pthread_mutex_destroy(&c->ctl_lock);
err_free:
	free(c);
	return err;
}

int rl_core__start(struct rl_core *c)
{
	int err;

	pthread_mutex_lock(&c->ctl_lock);
	if (c->started) {
		err = -EALREADY;
	} else {
		err = -pthread_create(&c->thread, NULL, rl_worker_main, c);
		c->started = !err;
	}
	pthread_mutex_unlock(&c->ctl_lock);
	return err;
}

/* Stop serving the endpoint in @slot and release everything it holds. The
 * XSKMAP entry goes first, so the veth's traffic falls back to the kernel
 * before the socket disappears. Caller holds ctl_lock. */
static int endpoint_remove_locked(struct rl_core *c, __u32 slot)
{
	struct rl_cmd cmd = { .type = RL_CMD_DEL_SOCK, .u32 = slot };
	struct rl_sock *s;
	int err;

	if (slot >= RL_MAX_ENDPOINTS)
		return -EINVAL;
	{
		__u32 key = slot;

		/* withdraw first even though the worker owns the sock */
		bpf_map_delete_elem(c->opts.xsks_map_fd, &key);
	}
	err = core_cmd(c, &cmd);
	if (err)
		return err;
	s = cmd.out;
	s->in_xskmap = false;
	xsk_socket__delete(s->xsk);
	/* closed: the kernel holds none of its frames any more */
	cmd = (struct rl_cmd){ .type = RL_CMD_RECLAIM, .u32 = s->owner };
	core_cmd(c, &cmd);
	free(s);
	return 0;
}

void rl_core__destroy(struct rl_core *c)
{
	struct rl_cmd cmd = { 0 };
	__u32 slot;

	if (!c)
		return;
	pthread_mutex_lock(&c->ctl_lock);
	xskmap_withdraw(c, &c->underlay);
	for (slot = 0; slot < RL_MAX_ENDPOINTS; slot++) {
		if (c->eps[slot])
			endpoint_remove_locked(c, slot);
	}
	if (c->started) {
		cmd.type = RL_CMD_STOP;
		core_cmd(c, &cmd);
		pthread_join(c->thread, NULL);
		c->started = false;
	}
	pthread_mutex_unlock(&c->ctl_lock);
	xsk_socket__delete(c->underlay.xsk);
	xsk_umem__delete(c->umem);
	munmap(c->umem_area, c->umem_size);
	rl_probe_table_fini(&c->probes);
	rl_fwd_fini(&c->fwd);
	rl_pool__destroy(c->pool);
	close(c->wake_fd);
	free((void *)c->opts.underlay_ifname);
	pthread_mutex_destroy(&c->ctl_lock);
	free(c);
}

int rl_core__add_endpoint(struct rl_core *c, const struct rl_endpoint_opts *e)
{
	struct rl_cmd cmd = { .type = RL_CMD_ADD_SOCK };
	struct rl_sock *s;
	int err;

	if (!e || e->sz < sizeof(*e) || !e->ifname || e->slot >= RL_MAX_ENDPOINTS)
		return -EINVAL;
	if (!if_nametoindex(e->ifname))
		return -ENODEV;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->slot = e->slot;
	s->owner = RL_OWNER_SOCK_BASE + e->slot;
	s->fill_target = c->opts.ep_ring_size;
	s->ip = e->ip;
	memcpy(s->pod_mac, e->pod_mac, 6);
	memcpy(s->host_mac, e->host_mac, 6);

	pthread_mutex_lock(&c->ctl_lock);
	if (c->eps[e->slot]) {
		err = -EEXIST;
		goto err_unlock;
	}
	/* bind flags come from the underlay socket (shared UMEM) */
	err = sock_open(c, s, e->ifname, 0, c->opts.ep_ring_size, 0);
	if (err)
		goto err_unlock;
	cmd.arg = s;
	err = core_cmd(c, &cmd);
	if (err)
		goto err_close;
	/* served and primed with frames: only now may the XDP program use it */
	c->eps[e->slot] = s;
	err = xskmap_publish(c, s);
	if (err) {
		endpoint_remove_locked(c, e->slot);
		c->eps[e->slot] = NULL;
		pthread_mutex_unlock(&c->ctl_lock);
		return err;
	}
	pthread_mutex_unlock(&c->ctl_lock);
	return 0;

err_close:
	xsk_socket__delete(s->xsk);
	cmd = (struct rl_cmd){ .type = RL_CMD_RECLAIM, .u32 = s->owner };
	core_cmd(c, &cmd);
err_unlock:
	pthread_mutex_unlock(&c->ctl_lock);
	free(s);
	return err;
}

int rl_core__remove_endpoint(struct rl_core *c, __u32 slot)
{
	int err;

	if (slot >= RL_MAX_ENDPOINTS)
		return -EINVAL;
	pthread_mutex_lock(&c->ctl_lock);
	if (!c->eps[slot]) {
		err = -ENOENT;
	} else {
		err = endpoint_remove_locked(c, slot);
		if (!err)
			c->eps[slot] = NULL;
	}
	pthread_mutex_unlock(&c->ctl_lock);
	return err;
}

/* Run one command under ctl_lock. */
static int core_cmd_locked(struct rl_core *c, struct rl_cmd *cmd)
{
	int err;

	pthread_mutex_lock(&c->ctl_lock);
	err = core_cmd(c, cmd);
	pthread_mutex_unlock(&c->ctl_lock);
	return err;
}

int rl_core__set_remote(struct rl_core *c, const struct rl_remote_opts *r)
{
	struct rl_cmd cmd = { .type = RL_CMD_SET_ROUTE, .arg = (void *)r };

	if (!r || r->sz < sizeof(*r) || r->prefixlen > 32)
		return -EINVAL;
	return core_cmd_locked(c, &cmd);
}

int rl_core__remove_remote(struct rl_core *c, __be32 cidr, __u8 prefixlen)
{
	struct rl_remote_opts r = { .sz = sizeof(r), .cidr = cidr, .prefixlen = prefixlen };
	struct rl_cmd cmd = { .type = RL_CMD_DEL_ROUTE, .arg = &r };

	if (prefixlen > 32)
		return -EINVAL;
	return core_cmd_locked(c, &cmd);
}

int rl_core__stats(struct rl_core *c, struct rl_core_stats *out)
{
	struct rl_cmd cmd = { .type = RL_CMD_STATS, .arg = out };

	return core_cmd_locked(c, &cmd);
}

int rl_core__endpoint_stats(struct rl_core *c, __u32 slot, struct rl_sock_stats *out)
{
	struct rl_cmd cmd = { .type = RL_CMD_EP_STATS, .u32 = slot, .arg = out };

	if (slot >= RL_MAX_ENDPOINTS)
		return -EINVAL;
	return core_cmd_locked(c, &cmd);
}

int rl_core__link_stats(struct rl_core *c, struct rl_link_stat *out, __u32 max)
{
	struct rl_cmd cmd = { .type = RL_CMD_LINK_STATS, .arg = out, .u32 = max };

	if (!out && max)
		return -EINVAL;
	return core_cmd_locked(c, &cmd);
}

void rl_sock_kstats(const struct rl_sock *s, struct rl_kstats *out)
{
	struct xdp_statistics st = { 0 };
	socklen_t l = sizeof(st);

	memset(out, 0, sizeof(*out));
	if (getsockopt(s->fd, SOL_XDP, XDP_STATISTICS, &st, &l))
		return;
	out->rx_dropped = st.rx_dropped;
	out->rx_invalid_descs = st.rx_invalid_descs;
	out->tx_invalid_descs = st.tx_invalid_descs;
	out->rx_ring_full = st.rx_ring_full;
	out->rx_fill_ring_empty_descs = st.rx_fill_ring_empty_descs;
	out->tx_ring_empty_descs = st.tx_ring_empty_descs;
}
