/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * frame_pool: the UMEM's free frames, as an O(1) LIFO stack (the Go library
 * scanned a bool array linearly for every allocation), plus an owner tag per
 * frame so that every frame is accounted for at all times:
 *
 *     free + sum over owners == total
 *
 * Owners are RL_OWNER_WORKER (in the worker's hands between a ring and
 * another) or RL_OWNER_SOCK_BASE + XSKMAP slot (lent to that socket's fill
 * or tx ring). When a socket is closed, the frames it still owned come back
 * with rl_pool_reclaim().
 *
 * A pool belongs to one worker thread; nothing here is thread-safe, by
 * design: single owner, no locks, no atomics.
 */
#ifndef RL_FRAME_POOL_H
#define RL_FRAME_POOL_H

#include <linux/types.h>

/* RL_INLINE: static inline for C; dropped from the cffi cdef, which calls
 * them through generated wrappers. */
#ifndef RL_INLINE
#define RL_INLINE static inline
#endif

/* cffi:begin */
#define RL_OWNER_FREE 0
#define RL_OWNER_WORKER 1
#define RL_OWNER_SOCK_BASE 2
#define RL_POOL_EMPTY 0xffffffffffffffff

struct rl_pool {
	__u64 *stack;		/* free frame base addresses */
	__u16 *owner;		/* per frame index */
	__u32 top;		/* number of free frames */
	__u32 n_frames;
	__u32 frame_shift;	/* log2(frame size) */
	__u32 bad_frees;	/* double frees and out-of-range addresses seen */
};

/* Create a pool of @n_frames frames of 2^@frame_shift bytes, all free.
 * -EINVAL for n_frames == 0 or frame_shift outside [11, 16]; -ENOMEM. */
int rl_pool__create(__u32 n_frames, __u32 frame_shift, struct rl_pool **out);

/* Free the pool's memory (not the UMEM). NULL is a no-op. */
void rl_pool__destroy(struct rl_pool *p);

/* Take a free frame for @owner: its base address, or RL_POOL_EMPTY. O(1). */
RL_INLINE __u64 rl_pool_alloc(struct rl_pool *p, __u16 owner);

/* Return the frame holding @addr (any offset inside it) to the pool. O(1).
 * -EINVAL (and bad_frees++) for an address outside the UMEM or a frame that
 * is already free; the pool is left unchanged then. */
RL_INLINE int rl_pool_free(struct rl_pool *p, __u64 addr);

/* Hand the frame holding @addr to @owner. O(1). */
RL_INLINE void rl_pool_set_owner(struct rl_pool *p, __u64 addr, __u16 owner);

/* Owner of the frame holding @addr (RL_OWNER_FREE if free). */
RL_INLINE __u16 rl_pool_owner(const struct rl_pool *p, __u64 addr);

/* Free every frame owned by @owner; the count freed. O(n_frames): for the
 * control path only (a socket was closed). */
__u32 rl_pool_reclaim(struct rl_pool *p, __u16 owner);

/* Frames owned by @owner. O(n_frames): stats and tests only. */
__u32 rl_pool_count_owner(const struct rl_pool *p, __u16 owner);
/* cffi:end */

static inline __u32 rl_pool_index(const struct rl_pool *p, __u64 addr)
{
	return (__u32)(addr >> p->frame_shift);
}

static inline __u64 rl_pool_alloc(struct rl_pool *p, __u16 owner)
{
	__u64 addr;

	if (p->top == 0)
		return RL_POOL_EMPTY;
	addr = p->stack[--p->top];
	p->owner[rl_pool_index(p, addr)] = owner;
	return addr;
}

static inline int rl_pool_free(struct rl_pool *p, __u64 addr)
{
	__u32 i = rl_pool_index(p, addr);

	if (i >= p->n_frames || p->owner[i] == RL_OWNER_FREE) {
		p->bad_frees++;
		return -22; /* -EINVAL without dragging errno.h into cffi */
	}
	p->owner[i] = RL_OWNER_FREE;
	p->stack[p->top++] = (__u64)i << p->frame_shift;
	return 0;
}

static inline void rl_pool_set_owner(struct rl_pool *p, __u64 addr, __u16 owner)
{
	__u32 i = rl_pool_index(p, addr);

	if (i < p->n_frames)
		p->owner[i] = owner;
}

static inline __u16 rl_pool_owner(const struct rl_pool *p, __u64 addr)
{
	__u32 i = rl_pool_index(p, addr);

	return i < p->n_frames ? p->owner[i] : RL_OWNER_FREE;
}

#endif /* RL_FRAME_POOL_H */
