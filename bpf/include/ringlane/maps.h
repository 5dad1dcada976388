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

#endif /* RINGLANE_MAPS_H */
