/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Outcome counters of the XDP programs (rl_xdp_stats, enum rl_xdp_stat).
 *
 * Every verdict a program returns is counted exactly once, so the counters
 * explain where each packet went (ring core, kernel fallback, or plain
 * kernel path and why, or dropped and why). Per-CPU slots are incremented without atomics: an
 * XDP program runs to completion on one CPU in softirq context (native and
 * generic mode alike), so two increments of the same slot never interleave.
 */
#ifndef RINGLANE_STATS_H
#define RINGLANE_STATS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "ringlane/abi.h"
#include "ringlane/maps.h"

static __always_inline void rl_count(enum rl_xdp_stat stat)
{
	__u32 key = stat;
	__u64 *v;

	/* Never NULL for stat < RL_XS_MAX, but the verifier requires the
	 * check before the pointer may be dereferenced. */
	v = bpf_map_lookup_elem(&rl_xdp_stats, &key);
	if (v)
		*v += 1;
}

/* Count @stat and hand the packet to the kernel stack. */
static __always_inline int rl_pass(enum rl_xdp_stat stat)
{
	rl_count(stat);
	return XDP_PASS;
}

/* Count @stat and drop the packet: a rejection, never a lack of resources
 * (those are XDP_PASS to the kernel). Rejections hold with or without the
 * ring core: they are decided before any redirect. */
static __always_inline int rl_drop(enum rl_xdp_stat stat)
{
	rl_count(stat);
	return XDP_DROP;
}

#endif /* RINGLANE_STATS_H */
