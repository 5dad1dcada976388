/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Every map of Ringlane's XDP programs, declared once.
 *
 * Both objects (from_pod.o, from_wire.o) include this file, so each carries
 * a definition of every map, used or not. All of them are pinned by name
 * (LIBBPF_PIN_BY_NAME): the first object loaded creates the maps in the pin
 * directory the loader passes as pin_root_path, every later load (the other
 * object, or the same one after an agent restart) reuses them. That is how
 * the two programs, the ring core and the agent see the same maps, and why
 * the definitions must never differ between objects: libbpf refuses to reuse
 * a pin whose type, key/value size, max_entries or flags disagree.
 *
 * Value and key layouts live in abi.h; a layout change is an ABI change
 * (bump RL_ABI_VERSION, recorded in rl_meta).
 */
#ifndef RINGLANE_MAPS_H
#define RINGLANE_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "ringlane/abi.h"

/* AF_XDP sockets of the ring core; slot layout in abi.h. Written by the ring
 * core (it owns the socket fds). An empty slot is the fallback switch:
 * bpf_redirect_map() then returns its XDP_PASS default. */
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, RL_XSK_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rl_xsks SEC(".maps");

/* Host-side veth ifindex -> endpoint. from_pod looks up the veth a frame
 * arrived on; no entry means the pod is not accelerated. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RL_MAX_ENDPOINTS);
	__type(key, __u32);
	__type(value, struct rl_endpoint_info);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rl_endpoints SEC(".maps");

/* Accelerated pod IPv4 (network order) -> its socket. from_wire redirects
 * decapsulation work only for these addresses. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RL_MAX_ENDPOINTS);
	__type(key, __be32);
	__type(value, struct rl_local_ip_info);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rl_local_ips SEC(".maps");

/* Remote podCIDR -> owning node. The kernel requires BPF_F_NO_PREALLOC for
 * LPM tries (they allocate nodes on update). */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, RL_MAX_REMOTE_CIDRS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct rl_lpm4_key);
	__type(value, struct rl_remote_info);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rl_remote_cidrs SEC(".maps");

/* Underlay addresses: known VTEPs (nodes, extraVteps) and this node's own
 * (RL_VTEP_F_*). The allow-list of from_wire, the deny-list of from_pod. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RL_MAX_VTEPS);
	__type(key, __be32);
	__type(value, struct rl_vtep_info);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rl_vteps SEC(".maps");

/* Bulk TCP flows moved to the kernel path (see RL_TCP_AUTO). LRU: a flow
 * that ends simply ages out; a flow evicted while still running is moved
 * again by its next super-frame. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, RL_MAX_FLOWS);
	__type(key, struct rl_flow_key);
	__type(value, struct rl_flow_info);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rl_flows SEC(".maps");

/* Per-CPU counters indexed by enum rl_xdp_stat: per-CPU so that the hot
 * path increments without atomics; readers sum over possible CPUs. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RL_XS_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rl_xdp_stats SEC(".maps");

/* rl_meta[0].abi_version: which ABI created the pinned maps (0 = fresh).
 * The programs never read it; it is here so that it is pinned next to the
 * maps it describes. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rl_meta);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rl_meta SEC(".maps");

/*
 * Policy (abi.h, docs/policy.md): rl_policy[0] holds the current
 * generation's LPM trie, or nothing (no policy: allow all, track nothing).
 * The agent builds each generation in a map of its own and swaps it in with
 * one update of slot 0; the programs look the slot up once per packet and
 * use whichever trie they got until they return (RCU keeps it alive).
 *
 * The inner map declared here is only a template: libbpf creates it to tell
 * the kernel the shape every inner map must have (type, key and value size,
 * flags; bpf_map_meta_equal() compares max_entries only for array inner
 * maps, but the agent's tries use the same anyway), then closes it. Slot 0 stays empty: no values are declared. The agent's tries
 * (agent/xdp/src/bpfobj.c, rl_policy__new_trie) must match this shape
 * exactly or the kernel refuses the update with EINVAL.
 *
 * Reusing the pin: libbpf compares the pinned outer map's type, key and
 * value size (4: a map fd), max_entries and flags with this definition and
 * reuses it, skipping the template altogether; the kernel kept the inner
 * shape with the pinned map, and the verifier reads it from there.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	/* Anonymous: a named rl_* struct would land in the objects' BTF, where
	 * tests/unit/test_abi.py expects only abi.h's structs. Sizes rather
	 * than __type(): clang 14 emits the key and value structs, reached only
	 * through this nested declaration, as BTF forward declarations, whose
	 * size libbpf cannot tell (EINVAL at open). The kernel matches inner
	 * maps by shape, not BTF (BTF would only matter for special fields --
	 * spin locks, timers, kptrs -- which these values have none of), and
	 * the agent's tries carry none. */
	__array(values, struct {
		__uint(type, BPF_MAP_TYPE_LPM_TRIE);
		__uint(max_entries, RL_MAX_POLICY_ENTRIES);
		__uint(map_flags, BPF_F_NO_PREALLOC);
		__uint(key_size, sizeof(struct rl_policy_key));
		__uint(value_size, sizeof(struct rl_policy_value));
	});
} rl_policy SEC(".maps");

/* Flows a policy check allowed, by original tuple (struct rl_ct_key), so
 * that their replies pass (lib/policy.h). LRU: nothing expires them but
 * eviction by newer flows. Written by both programs. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, RL_MAX_POLICY_CT);
	__type(key, struct rl_ct_key);
	__type(value, struct rl_ct_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rl_policy_ct SEC(".maps");

/* Local pod IPv4 (network order) -> its counters (enum rl_ep_counter).
 * The agent creates and deletes the entries; the programs only update the
 * ones that exist, so no packet, spoofed or not, ever allocates one. Per-CPU
 * for the same reason as rl_xdp_stats. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, RL_MAX_ENDPOINTS);
	__type(key, __be32);
	__type(value, struct rl_ep_counters);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rl_ep_stats SEC(".maps");

/* struct rl_flow_sample records, read by the agent (FlowSampleReader). A
 * ring buffer has neither key nor value; its size must be a power-of-two
 * multiple of the page size. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, RL_FLOW_SAMPLES_BYTES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rl_flow_samples SEC(".maps");

#endif /* RINGLANE_MAPS_H */
