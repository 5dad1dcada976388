// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* frame_pool: create/destroy and the O(n) control-path scans. See frame_pool.h. */
#include <errno.h>
#include <stdlib.h>

#include "frame_pool.h"

int rl_pool__create(__u32 n_frames, __u32 frame_shift, struct rl_pool **out)
{
	struct rl_pool *p;
	__u32 i;

	if (n_frames == 0 || frame_shift < 11 || frame_shift > 16)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->stack = calloc(n_frames, sizeof(*p->stack));
	p->owner = calloc(n_frames, sizeof(*p->owner));
	if (!p->stack || !p->owner) {
		rl_pool__destroy(p);
		return -ENOMEM;
	}
	p->n_frames = n_frames;
	p->frame_shift = frame_shift;
	/* highest address at the bottom, so frame 0 is handed out first */
	for (i = 0; i < n_frames; i++)
		p->stack[i] = (__u64)(n_frames - 1 - i) << frame_shift;
	p->top = n_frames;
	*out = p;
	return 0;
}

void rl_pool__destroy(struct rl_pool *p)
{
	if (!p)
		return;
	free(p->stack);
	free(p->owner);
	free(p);
}

__u32 rl_pool_reclaim(struct rl_pool *p, __u16 owner)
{
	__u32 i, n = 0;

	if (owner == RL_OWNER_FREE)
		return 0;
	for (i = 0; i < p->n_frames; i++) {
		if (p->owner[i] != owner)
			continue;
		p->owner[i] = RL_OWNER_FREE;
		p->stack[p->top++] = (__u64)i << p->frame_shift;
		n++;
	}
	return n;
}

__u32 rl_pool_count_owner(const struct rl_pool *p, __u16 owner)
{
	__u32 i, n = 0;

	for (i = 0; i < p->n_frames; i++)
		n += p->owner[i] == owner;
	return n;
}
