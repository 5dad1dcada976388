// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * bench_xdp: the benchmark's own XDP programs (bench/, not part of Ringlane).
 *
 * bench_sink counts and drops the benchmark's probe traffic, IPv4/UDP to
 * BENCH_PORT, and passes everything else, so that ARP and whatever else the
 * host sends keeps working while it sits on an interface (a neighbour entry
 * that goes stale during a run must still be confirmed).
 *
 * bench_gen_tx is the program behind the BPF_PROG_RUN live-frames generator
 * (xdpgen.c): every frame it is run on is XDP_TX'ed out of the interface the
 * generator names as ingress_ifindex; on a veth that is the peer's receive.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* The discard port; xdpgen.c and bench/probes.py use the same. */
#define BENCH_PORT 9

/* Packets bench_sink dropped, per CPU; slot 0 only. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} bench_cnt SEC(".maps");

/*
 * Whether the frame between @data and @end is IPv4/UDP to BENCH_PORT with
 * an IPv4 header without options (every probe frame has none).
 */
static __always_inline int is_probe(void *data, void *end)
{
	struct ethhdr *eth = data;
	struct iphdr *iph = (void *)(eth + 1);
	struct udphdr *udp = (void *)(iph + 1);

	if ((void *)(udp + 1) > end)
		return 0;
	return eth->h_proto == bpf_htons(ETH_P_IP) && iph->ihl == 5 &&
	       iph->protocol == IPPROTO_UDP && udp->dest == bpf_htons(BENCH_PORT);
}

/* Count and drop the probe frames; XDP_PASS for everything else. */
SEC("xdp")
int bench_sink(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 key = 0;
	__u64 *n;

	if (!is_probe(data, end))
		return XDP_PASS;
	n = bpf_map_lookup_elem(&bench_cnt, &key);
	if (n)
		*n += 1;
	return XDP_DROP;
}

/* Send every frame back out of the interface it is run on (live frames: the generator's). */
SEC("xdp")
int bench_gen_tx(struct xdp_md *ctx)
{
	return XDP_TX;
}

char LICENSE[] SEC("license") = "GPL";
