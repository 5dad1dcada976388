/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * ring: single-producer/single-consumer access to the four AF_XDP rings
 * (fill, completion, rx, tx), written out here rather than taken from
 * libxdp so that the arithmetic and the memory ordering are ours to test.
 *
 * The producer and consumer indices are free-running __u32s shared with the
 * kernel; every count below is an unsigned difference, which stays correct
 * across the 2^32 wrap (the review of the Go library this descends from
 * found free-slot counts computed with signed or masked indices).
 *
 * Ordering (net/xdp/xsk_queue.h): a producer reads the consumer index with
 * acquire before writing entries, and publishes them with a release store of
 * the producer index; a consumer reads the producer index with acquire
 * before reading entries, and frees them with a release store of the
 * consumer index. Each ring has exactly one user-space thread on its side.
 */
#ifndef RL_RING_H
#define RL_RING_H

#include <linux/types.h>
#include <linux/if_xdp.h>

/* RL_INLINE: static inline for C; dropped from the cffi cdef, which calls
 * them through generated wrappers. */
#ifndef RL_INLINE
#define RL_INLINE static inline
#endif

/* cffi:begin */
struct rl_ring {
	__u32 cached_prod;	/* producer: next free slot; consumer: last seen producer */
	__u32 cached_cons;	/* producer: consumer + size; consumer: next entry to read */
	__u32 mask;
	__u32 size;
	__u32 *producer;
	__u32 *consumer;
	void *ring;
	__u32 *flags;
};

/* Initialise @r over ring memory. @is_producer selects which side we are.
 * @size must be a power of two. Never fails. */
RL_INLINE void rl_ring_init(struct rl_ring *r, __u32 *producer, __u32 *consumer, void *ring,
		  __u32 *flags, __u32 size, int is_producer);

/* Producer: number of free slots, at most @want; refreshes the cached
 * consumer index only when the cache cannot satisfy @want. */
RL_INLINE __u32 rl_ring_prod_nb_free(struct rl_ring *r, __u32 want);

/* Producer: reserve exactly @n slots or none; *@idx is the first. */
RL_INLINE __u32 rl_ring_prod_reserve(struct rl_ring *r, __u32 n, __u32 *idx);

/* Producer: publish every slot reserved so far (release). */
RL_INLINE void rl_ring_prod_submit(struct rl_ring *r);

/* Consumer: entries available, at most @want (acquire on refresh). */
RL_INLINE __u32 rl_ring_cons_nb_avail(struct rl_ring *r, __u32 want);

/* Consumer: take up to @want entries; *@idx is the first. */
RL_INLINE __u32 rl_ring_cons_peek(struct rl_ring *r, __u32 want, __u32 *idx);

/* Consumer: give back the last @n peeked entries unread. */
RL_INLINE void rl_ring_cons_unpeek(struct rl_ring *r, __u32 n);

/* Consumer: free every entry peeked so far (release). */
RL_INLINE void rl_ring_cons_release(struct rl_ring *r);

/* Whether the kernel asked to be woken (XDP_USE_NEED_WAKEUP). */
RL_INLINE int rl_ring_needs_wakeup(const struct rl_ring *r);

/* Entries in @r right now (producer - consumer, both acquire-loaded): for
 * telemetry only; either side may move on before the caller looks. */
RL_INLINE __u32 rl_ring_entries(const struct rl_ring *r);
/* cffi:end */

#define RL_RING_NEED_WAKEUP 1	/* XDP_RING_NEED_WAKEUP */

static inline __u32 rl_load_acquire(const __u32 *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static inline void rl_store_release(__u32 *p, __u32 v)
{
	__atomic_store_n(p, v, __ATOMIC_RELEASE);
}

static inline void rl_ring_init(struct rl_ring *r, __u32 *producer, __u32 *consumer,
				void *ring, __u32 *flags, __u32 size, int is_producer)
{
	r->producer = producer;
	r->consumer = consumer;
	r->ring = ring;
	r->flags = flags;
	r->size = size;
	r->mask = size - 1;
	r->cached_prod = rl_load_acquire(producer);
	r->cached_cons = rl_load_acquire(consumer);
	if (is_producer)
		r->cached_cons += size;
}

static inline __u32 rl_ring_prod_nb_free(struct rl_ring *r, __u32 want)
{
	__u32 free_entries = r->cached_cons - r->cached_prod;

	if (free_entries >= want)
		return want;
	r->cached_cons = rl_load_acquire(r->consumer) + r->size;
	free_entries = r->cached_cons - r->cached_prod;
	return free_entries < want ? free_entries : want;
}

static inline __u32 rl_ring_prod_reserve(struct rl_ring *r, __u32 n, __u32 *idx)
{
	if (rl_ring_prod_nb_free(r, n) < n)
		return 0;
	*idx = r->cached_prod;
	r->cached_prod += n;
	return n;
}

static inline void rl_ring_prod_submit(struct rl_ring *r)
{
	/* entries written before this store are visible to the consumer */
	rl_store_release(r->producer, r->cached_prod);
}

static inline __u32 rl_ring_cons_nb_avail(struct rl_ring *r, __u32 want)
{
	__u32 entries = r->cached_prod - r->cached_cons;

	if (entries < want) {
		r->cached_prod = rl_load_acquire(r->producer);
		entries = r->cached_prod - r->cached_cons;
	}
	return entries > want ? want : entries;
}

static inline __u32 rl_ring_entries(const struct rl_ring *r)
{
	return rl_load_acquire(r->producer) - rl_load_acquire(r->consumer);
}

static inline __u32 rl_ring_cons_peek(struct rl_ring *r, __u32 want, __u32 *idx)
{
	__u32 n = rl_ring_cons_nb_avail(r, want);

	if (n) {
		*idx = r->cached_cons;
		r->cached_cons += n;
	}
	return n;
}

static inline void rl_ring_cons_unpeek(struct rl_ring *r, __u32 n)
{
	r->cached_cons -= n;
}

static inline void rl_ring_cons_release(struct rl_ring *r)
{
	/* our reads of the entries happen before the kernel may reuse them */
	rl_store_release(r->consumer, r->cached_cons);
}

static inline int rl_ring_needs_wakeup(const struct rl_ring *r)
{
	return !!(__atomic_load_n(r->flags, __ATOMIC_RELAXED) & RL_RING_NEED_WAKEUP);
}

static inline __u64 *rl_ring_addr(struct rl_ring *r, __u32 idx)
{
	return &((__u64 *)r->ring)[idx & r->mask];
}

static inline struct xdp_desc *rl_ring_desc(struct rl_ring *r, __u32 idx)
{
	return &((struct xdp_desc *)r->ring)[idx & r->mask];
}

#endif /* RL_RING_H */
