/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * fwd: a worker's forwarding tables.
 *   remote podCIDR -> encap parameters (node underlay IP, next-hop MAC, VTEP MACs)
 *   local pod IPv4 -> endpoint (an opaque pointer owned by the caller)
 *
 * Each worker owns its tables outright: the control thread changes them only
 * by a command the worker runs between two batches (ringcore.c), so lookups
 * on the per-packet path take no lock, no atomic and no reference count.
 *
 * Longest-prefix match is one hash probe per prefix length in use (a
 * cluster has one or two: /24 podCIDRs), longest first.
 */
#ifndef RL_FWD_H
#define RL_FWD_H

#include <linux/types.h>
#include "pkt.h"

struct rl_hmap_slot {
	__u64 key;
	void *val;		/* NULL: slot empty */
};

/* Open addressing, linear probing, backward-shift deletion (no tombstones). */
struct rl_hmap {
	struct rl_hmap_slot *slots;
	__u32 mask;
	__u32 count;
	__u32 max;		/* at most half full, for short probes */
};

/* Set up an empty map for up to @max entries. -ENOMEM. */
int rl_hmap_init(struct rl_hmap *m, __u32 max);

/* Free the slots (not the values). */
void rl_hmap_fini(struct rl_hmap *m);

/* The value for @key, or NULL. */
void *rl_hmap_get(const struct rl_hmap *m, __u64 key);

/* Map @key to @val (non-NULL). -EEXIST if present and !@replace, -ENOSPC
 * at @max entries. */
int rl_hmap_put(struct rl_hmap *m, __u64 key, void *val, int replace);

/* Remove @key; returns its value, or NULL if absent. */
void *rl_hmap_del(struct rl_hmap *m, __u64 key);

struct rl_route {
	__be32 prefix;
	__u8 plen;
	struct rl_encap_params encap;
};

struct rl_fwd {
	struct rl_hmap routes;		/* (plen << 32 | prefix) -> struct rl_route * */
	struct rl_hmap locals;		/* ip -> endpoint */
	__u32 plen_refs[33];		/* routes per prefix length */
	__u64 plen_set;			/* bit n: some route has prefix length n */
};

/* Set up empty tables for up to @max_routes routes and @max_locals
 * endpoints. -ENOMEM. */
int rl_fwd_init(struct rl_fwd *f, __u32 max_routes, __u32 max_locals);

/* Free the tables and every route (not the endpoints). */
void rl_fwd_fini(struct rl_fwd *f);

/* Insert or replace the route for @prefix/@plen (host bits are cleared).
 * -EINVAL for plen > 32, -ENOSPC when full, -ENOMEM. */
int rl_fwd_route_set(struct rl_fwd *f, __be32 prefix, __u8 plen,
		     const struct rl_encap_params *encap);

/* Remove a route. -ENOENT if absent. */
int rl_fwd_route_del(struct rl_fwd *f, __be32 prefix, __u8 plen);

/* The route for exactly @prefix/@plen (host bits ignored), or NULL. */
const struct rl_route *rl_fwd_route_get(const struct rl_fwd *f, __be32 prefix, __u8 plen);

/* Longest-prefix match for @daddr, or NULL. */
const struct rl_route *rl_fwd_route_lookup(const struct rl_fwd *f, __be32 daddr);

/* Map @ip to @ep (non-NULL). -EEXIST if @ip is taken, -ENOSPC. */
int rl_fwd_local_add(struct rl_fwd *f, __be32 ip, void *ep);

/* Remove @ip. -ENOENT if absent. */
int rl_fwd_local_del(struct rl_fwd *f, __be32 ip);

/* The endpoint for @ip, or NULL. */
void *rl_fwd_local_lookup(const struct rl_fwd *f, __be32 ip);

#endif /* RL_FWD_H */
