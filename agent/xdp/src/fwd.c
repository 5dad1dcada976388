// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* fwd: a worker's forwarding tables. See fwd.h. */
#include <errno.h>
#include <stdlib.h>
#include <arpa/inet.h>

#include "fwd.h"

/* 64-bit finaliser (murmur3's fmix64): keys are IPs, sequential in a CIDR. */
static __u64 hash64(__u64 k)
{
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdULL;
	k ^= k >> 33;
	k *= 0xc4ceb9fe1a85ec53ULL;
	k ^= k >> 33;
	return k;
}

int rl_hmap_init(struct rl_hmap *m, __u32 max)
{
	__u32 cap = 16;

	while (cap < 2 * max)
		cap <<= 1;
	m->slots = calloc(cap, sizeof(*m->slots));
	if (!m->slots)
		return -ENOMEM;
	m->mask = cap - 1;
	m->count = 0;
	m->max = max;
	return 0;
}

void rl_hmap_fini(struct rl_hmap *m)
{
	free(m->slots);
	*m = (struct rl_hmap){ 0 };
}

/* Index of @key's slot, or of the empty slot where it would go. */
static __u32 hmap_find(const struct rl_hmap *m, __u64 key)
{
	__u32 i = (__u32)hash64(key) & m->mask;

	while (m->slots[i].val && m->slots[i].key != key)
		i = (i + 1) & m->mask;
	return i;
}

void *rl_hmap_get(const struct rl_hmap *m, __u64 key)
{
	return m->slots[hmap_find(m, key)].val;
}

int rl_hmap_put(struct rl_hmap *m, __u64 key, void *val, int replace)
{
	__u32 i = hmap_find(m, key);

	if (m->slots[i].val) {
		if (!replace)
			return -EEXIST;
		m->slots[i].val = val;
		return 0;
	}
	if (m->count >= m->max)
		return -ENOSPC;
	m->slots[i].key = key;
	m->slots[i].val = val;
	m->count++;
	return 0;
}

/* Shifts later entries of the probe run back into the hole, so lookups
 * never need tombstones. */
void *rl_hmap_del(struct rl_hmap *m, __u64 key)
{
	__u32 i = hmap_find(m, key), j, home;
	void *old = m->slots[i].val;

	if (!old)
		return NULL;
	m->slots[i].val = NULL;
	m->count--;
	for (j = (i + 1) & m->mask; m->slots[j].val; j = (j + 1) & m->mask) {
		home = (__u32)hash64(m->slots[j].key) & m->mask;
		/* move j into the hole i unless its home lies cyclically in (i, j] */
		if (((j - home) & m->mask) >= ((j - i) & m->mask)) {
			m->slots[i] = m->slots[j];
			m->slots[j].val = NULL;
			i = j;
		}
	}
	return old;
}

/* Network-order mask of a prefix length (0..32). */
static __be32 prefix_mask(__u8 plen)
{
	return plen == 0 ? 0 : htonl(~0U << (32 - plen));
}

/* The routes table's key: prefix length above the masked prefix. */
static __u64 route_key(__be32 prefix, __u8 plen)
{
	return ((__u64)plen << 32) | (__u32)(prefix & prefix_mask(plen));
}

int rl_fwd_init(struct rl_fwd *f, __u32 max_routes, __u32 max_locals)
{
	int err;

	*f = (struct rl_fwd){ 0 };
	err = rl_hmap_init(&f->routes, max_routes);
	if (err)
		return err;
	err = rl_hmap_init(&f->locals, max_locals);
	if (err) {
		free(f->routes.slots);
		f->routes.slots = NULL;
	}
	return err;
}

void rl_fwd_fini(struct rl_fwd *f)
{
	__u32 i;

	if (f->routes.slots) {
		for (i = 0; i <= f->routes.mask; i++)
			free(f->routes.slots[i].val);
	}
	free(f->routes.slots);
	free(f->locals.slots);
	*f = (struct rl_fwd){ 0 };
}

int rl_fwd_route_set(struct rl_fwd *f, __be32 prefix, __u8 plen,
		     const struct rl_encap_params *encap)
{
	__u64 key = route_key(prefix, plen);
	struct rl_route *r;
	int err;

	if (plen > 32)
		return -EINVAL;
	r = rl_hmap_get(&f->routes, key);
	if (r) {
		r->encap = *encap;
		return 0;
	}
	r = malloc(sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->prefix = prefix & prefix_mask(plen);
	r->plen = plen;
	r->encap = *encap;
	err = rl_hmap_put(&f->routes, key, r, 0);
	if (err) {
		free(r);
		return err;
	}
	if (f->plen_refs[plen]++ == 0)
		f->plen_set |= 1ULL << plen;
	return 0;
}

int rl_fwd_route_del(struct rl_fwd *f, __be32 prefix, __u8 plen)
{
	struct rl_route *r;

	if (plen > 32)
		return -EINVAL;
	r = rl_hmap_del(&f->routes, route_key(prefix, plen));
	if (!r)
		return -ENOENT;
	free(r);
	if (--f->plen_refs[plen] == 0)
		f->plen_set &= ~(1ULL << plen);
	return 0;
}

const struct rl_route *rl_fwd_route_get(const struct rl_fwd *f, __be32 prefix, __u8 plen)
{
	if (plen > 32)
		return NULL;
	return rl_hmap_get(&f->routes, route_key(prefix, plen));
}

const struct rl_route *rl_fwd_route_lookup(const struct rl_fwd *f, __be32 daddr)
{
	__u64 set = f->plen_set;
	const struct rl_route *r;
	int plen;

	while (set) {
		plen = 63 - __builtin_clzll(set);	/* longest first */
		r = rl_hmap_get(&f->routes, route_key(daddr, (__u8)plen));
		if (r)
			return r;
		set &= ~(1ULL << plen);
	}
	return NULL;
}

int rl_fwd_local_add(struct rl_fwd *f, __be32 ip, void *ep)
{
	return rl_hmap_put(&f->locals, ip, ep, 0);
}

int rl_fwd_local_del(struct rl_fwd *f, __be32 ip)
{
	return rl_hmap_del(&f->locals, ip) ? 0 : -ENOENT;
}

void *rl_fwd_local_lookup(const struct rl_fwd *f, __be32 ip)
{
	return rl_hmap_get(&f->locals, ip);
}
