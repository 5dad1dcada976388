// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * xdpgen: a 64-byte IPv4/UDP frame generator on BPF_PROG_RUN with
 * BPF_F_TEST_XDP_LIVE_FRAMES (what xdp-trafficgen does; xdp-tools 1.3.1 does
 * not load on 6.18). bench_gen_tx XDP_TXes every frame out of IFNAME, which
 * on a veth is the peer's receive path: its XDP program, native or generic
 * (the peer needs NAPI, i.e. a native program or GRO on).
 *
 *   xdpgen -o OBJ -i IFNAME -s SRC_MAC -d DST_MAC -S SRC_IP -D DST_IP
 *          [-L ip_tot_len] [-t threads] [-c first_cpu] [-T seconds] [-r repeat]
 *
 * Thread i runs on CPU (first_cpu + i) mod nproc. -L writes another IPv4
 * total length than the frame's real one (46) into the header, to make
 * frames a receiver must reject after parsing. Frames that reach no XDP
 * program, or find the peer's ring full, are dropped by the kernel without
 * a trace here: "sent" counts frames generated, not frames delivered.
 * Prints "sent N seconds S" at the end.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <linux/bpf.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#define GEN_FRAME_LEN 60	/* 64 on the wire with the FCS */
#define GEN_PORT 9		/* bench_xdp.bpf.c's BENCH_PORT */
#define GEN_MAX_THREADS 64

struct gen {
	unsigned char frame[GEN_FRAME_LEN];
	int ifindex;
	int prog_fd;
	int first_cpu;
	unsigned int repeat;
	volatile sig_atomic_t stop;
	volatile sig_atomic_t failed;	/* a thread's BPF_PROG_RUN failed */
	unsigned long long sent[GEN_MAX_THREADS];
};

static struct gen gen;

/* SIGINT/SIGTERM: stop generating; the threads finish their current run first. */
static void on_signal(int sig)
{
	(void)sig;
	gen.stop = 1;
}

/* CLOCK_MONOTONIC in seconds. */
static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* RFC 1071 checksum of @len bytes at @buf. */
static unsigned short csum16(const void *buf, int len)
{
	const unsigned char *p = buf;
	unsigned long sum = 0;

	for (; len > 1; p += 2, len -= 2)
		sum += (unsigned long)(p[0] << 8 | p[1]);
	if (len)
		sum += (unsigned long)(p[0] << 8);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return htons((unsigned short)~sum);
}

/* Parse "aa:bb:cc:dd:ee:ff" into @out; 0 or -EINVAL. */
static int parse_mac(const char *s, unsigned char out[ETH_ALEN])
{
	unsigned int b[ETH_ALEN];
	int i;

	if (sscanf(s, "%x:%x:%x:%x:%x:%x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]) != 6)
		return -EINVAL;
	for (i = 0; i < ETH_ALEN; i++) {
		if (b[i] > 0xff)
			return -EINVAL;
		out[i] = (unsigned char)b[i];
	}
	return 0;
}

/*
 * Write the probe frame into gen.frame: Ethernet @src -> @dst, IPv4 @sip ->
 * @dip with DF and TTL 64, total length @tot_len (46 is the true one), UDP
 * port GEN_PORT to GEN_PORT without a checksum, zero payload. 0 or -EINVAL.
 */
static int build_frame(const char *src, const char *dst, const char *sip, const char *dip,
		       unsigned int tot_len)
{
	struct ether_header *eth = (void *)gen.frame;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);

	memset(gen.frame, 0, sizeof(gen.frame));
	if (parse_mac(dst, eth->ether_dhost) || parse_mac(src, eth->ether_shost))
		return -EINVAL;
	eth->ether_type = htons(ETHERTYPE_IP);
	ip->version = 4;
	ip->ihl = 5;
	ip->ttl = 64;
	ip->protocol = IPPROTO_UDP;
	ip->frag_off = htons(IP_DF);
	ip->tot_len = htons((unsigned short)tot_len);
	if (inet_pton(AF_INET, sip, &ip->saddr) != 1 || inet_pton(AF_INET, dip, &ip->daddr) != 1)
		return -EINVAL;
	ip->check = csum16(ip, sizeof(*ip));
	udp->source = htons(GEN_PORT);
	udp->dest = htons(GEN_PORT);
	udp->len = htons(GEN_FRAME_LEN - sizeof(*eth) - sizeof(*ip));
	return 0;
}

/* One generator thread (@arg: its index): live-frame runs until stopped. */
static void *worker(void *arg)
{
	long id = (long)arg;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	struct xdp_md ctx = { .data_end = GEN_FRAME_LEN, .ingress_ifindex = (__u32)gen.ifindex };
	LIBBPF_OPTS(bpf_test_run_opts, opts,
		    .data_in = gen.frame,
		    .data_size_in = GEN_FRAME_LEN,
		    .ctx_in = &ctx,
		    .ctx_size_in = sizeof(ctx),
		    .flags = BPF_F_TEST_XDP_LIVE_FRAMES,
		    .repeat = gen.repeat,
		    .batch_size = 64);
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET((int)((gen.first_cpu + id) % (ncpu > 0 ? ncpu : 1)), &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	while (!gen.stop) {
		if (bpf_prog_test_run_opts(gen.prog_fd, &opts)) {
			fprintf(stderr, "xdpgen: BPF_PROG_RUN: %s\n", strerror(errno));
			gen.failed = 1;
			gen.stop = 1;
			break;
		}
		gen.sent[id] += gen.repeat;
	}
	return NULL;
}

/* Print the usage lines; returns the exit status for a bad command line. */
static int usage(void)
{
	fprintf(stderr, "usage: xdpgen -o OBJ -i IFNAME -s SRC_MAC -d DST_MAC -S SRC_IP -D DST_IP\n"
			"              [-L ip_tot_len] [-t threads] [-c first_cpu] [-T seconds]"
			" [-r repeat]\n");
	return 2;
}

/*
 * Build the frame, load bench_gen_tx, run the threads for the given time, print the total.
 * Exit 0, 1 when the interface, the object or BPF_PROG_RUN failed, 2 for a bad command line.
 */
int main(int argc, char **argv)
{
	const char *obj_path = NULL, *ifname = NULL, *src = NULL, *dst = NULL;
	const char *sip = NULL, *dip = NULL;
	unsigned int tot_len = GEN_FRAME_LEN - sizeof(struct ether_header);
	pthread_t threads[GEN_MAX_THREADS];
	unsigned long long total = 0;
	struct bpf_program *prog;
	struct bpf_object *obj;
	double seconds = 5, t0;
	int nthreads = 1, opt, err;
	long i;

	gen.repeat = 1U << 20;
	while ((opt = getopt(argc, argv, "o:i:s:d:S:D:L:t:c:T:r:")) != -1) {
		switch (opt) {
		case 'o':
			obj_path = optarg;
			break;
		case 'i':
			ifname = optarg;
			break;
		case 's':
			src = optarg;
			break;
		case 'd':
			dst = optarg;
			break;
		case 'S':
			sip = optarg;
			break;
		case 'D':
			dip = optarg;
			break;
		case 'L':
			tot_len = (unsigned int)atoi(optarg);
			break;
		case 't':
			nthreads = atoi(optarg);
			break;
		case 'c':
			gen.first_cpu = atoi(optarg);
			break;
		case 'T':
			seconds = atof(optarg);
			break;
		case 'r':
			gen.repeat = (unsigned int)atoi(optarg);
			break;
		default:
			return usage();
		}
	}
	if (!obj_path || !ifname || !src || !dst || !sip || !dip || nthreads < 1 ||
	    nthreads > GEN_MAX_THREADS || seconds <= 0 || seconds > 600 || !gen.repeat ||
	    tot_len < 20 || tot_len > 0xffff || gen.first_cpu < 0)
		return usage();
	gen.ifindex = (int)if_nametoindex(ifname);
	if (!gen.ifindex) {
		fprintf(stderr, "xdpgen: no interface %s\n", ifname);
		return 1;
	}
	if (build_frame(src, dst, sip, dip, tot_len)) {
		fprintf(stderr, "xdpgen: bad MAC or IPv4 address\n");
		return 2;
	}
	libbpf_set_strict_mode(LIBBPF_STRICT_ALL);
	obj = bpf_object__open_file(obj_path, NULL);
	if (!obj) {
		fprintf(stderr, "xdpgen: open %s: %s\n", obj_path, strerror(errno));
		return 1;
	}
	bpf_object__for_each_program(prog, obj)
		bpf_program__set_autoload(prog, !strcmp(bpf_program__name(prog), "bench_gen_tx"));
	err = bpf_object__load(obj);
	if (err) {
		fprintf(stderr, "xdpgen: load: %s\n", strerror(-err));
		return 1;
	}
	gen.prog_fd = bpf_program__fd(bpf_object__find_program_by_name(obj, "bench_gen_tx"));
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	t0 = now_s();
	for (i = 0; i < nthreads; i++) {
		err = pthread_create(&threads[i], NULL, worker, (void *)i);
		if (err) {
			fprintf(stderr, "xdpgen: thread: %s\n", strerror(err));
			gen.failed = 1;
			gen.stop = 1;
			nthreads = (int)i;
			break;
		}
	}
	while (!gen.stop && now_s() - t0 < seconds)
		usleep(10000);
	gen.stop = 1;
	for (i = 0; i < nthreads; i++) {
		pthread_join(threads[i], NULL);
		total += gen.sent[i];
	}
	printf("sent %llu seconds %.3f\n", total, now_s() - t0);
	bpf_object__close(obj);
	return gen.failed ? 1 : 0;
}
