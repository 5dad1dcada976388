// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * xdpsink: attach bench_sink (bench_xdp.bpf.c) to one interface and report
 * how many probe frames it dropped, until told to stop.
 *
 *   xdpsink -o bench_xdp.o -i IFNAME [-m native|skb] [-I interval_ms] [-d max_s]
 *
 * Prints "attached IFNAME MODE" once the program is on the interface, then
 * one "T N" line per interval: CLOCK_MONOTONIC in nanoseconds (the clock
 * Python's time.monotonic() reads, the same in every network namespace) and
 * the total frames dropped so far. SIGINT or SIGTERM, or max_s seconds,
 * detach the program (only ours: XDP_FLAGS_REPLACE with our fd) and end
 * with a last sample and "detached". It never replaces a program someone
 * else attached (XDP_FLAGS_UPDATE_IF_NOEXIST): attaching then fails.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <net/if.h>
#include <linux/if_link.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

static volatile sig_atomic_t stop;

/* SIGINT/SIGTERM: end the sampling loop; main() then detaches. */
static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

/* CLOCK_MONOTONIC in nanoseconds. */
static unsigned long long now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (unsigned long long)t.tv_sec * 1000000000ULL + (unsigned long long)t.tv_nsec;
}

/* Sum of the per-CPU slot 0 of @map_fd over @ncpu CPUs into @out; 0 or -errno. */
static int read_total(int map_fd, int ncpu, unsigned long long *out)
{
	__u64 vals[ncpu];
	__u32 key = 0;
	int i;

	if (bpf_map_lookup_elem(map_fd, &key, vals))
		return -errno;
	*out = 0;
	for (i = 0; i < ncpu; i++)
		*out += vals[i];
	return 0;
}

/* Print one sample line; the reader parses it, so flush it at once. */
static void sample(int map_fd, int ncpu)
{
	unsigned long long total = 0;

	if (read_total(map_fd, ncpu, &total) == 0) {
		printf("%llu %llu\n", now_ns(), total);
		fflush(stdout);
	}
}

/* Sleep @ms milliseconds unless a signal ends the run first. */
static void nap(unsigned int ms)
{
	struct timespec t = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };

	if (!stop)
		nanosleep(&t, NULL);
}

/* Print the usage line; returns the exit status for a bad command line. */
static int usage(void)
{
	fprintf(stderr, "usage: xdpsink -o OBJ -i IFNAME [-m native|skb] [-I ms] [-d max_s]\n");
	return 2;
}

/*
 * Load bench_sink, attach it, sample its count until stopped, detach. Exit 0, 1 when loading,
 * attaching or detaching failed (with the reason on stderr), 2 for a bad command line.
 */
int main(int argc, char **argv)
{
	const char *obj_path = NULL, *ifname = NULL, *mode_name = "native";
	unsigned int interval_ms = 200, max_s = 600;
	LIBBPF_OPTS(bpf_xdp_attach_opts, detach_opts);
	struct bpf_program *prog;
	struct bpf_object *obj;
	unsigned long long deadline;
	int ifindex, map_fd, prog_fd, ncpu, opt, err;
	__u32 mode;

	while ((opt = getopt(argc, argv, "o:i:m:I:d:")) != -1) {
		switch (opt) {
		case 'o':
			obj_path = optarg;
			break;
		case 'i':
			ifname = optarg;
			break;
		case 'm':
			mode_name = optarg;
			break;
		case 'I':
			interval_ms = (unsigned int)atoi(optarg);
			break;
		case 'd':
			max_s = (unsigned int)atoi(optarg);
			break;
		default:
			return usage();
		}
	}
	if (!obj_path || !ifname || !interval_ms || !max_s)
		return usage();
	if (!strcmp(mode_name, "native"))
		mode = XDP_FLAGS_DRV_MODE;
	else if (!strcmp(mode_name, "skb"))
		mode = XDP_FLAGS_SKB_MODE;
	else
		return usage();
	ifindex = (int)if_nametoindex(ifname);
	if (!ifindex) {
		fprintf(stderr, "xdpsink: no interface %s\n", ifname);
		return 1;
	}
	ncpu = libbpf_num_possible_cpus();
	if (ncpu <= 0) {
		fprintf(stderr, "xdpsink: cannot count CPUs\n");
		return 1;
	}
	libbpf_set_strict_mode(LIBBPF_STRICT_ALL);
	obj = bpf_object__open_file(obj_path, NULL);
	if (!obj) {
		fprintf(stderr, "xdpsink: open %s: %s\n", obj_path, strerror(errno));
		return 1;
	}
	prog = bpf_object__find_program_by_name(obj, "bench_sink");
	if (!prog) {
		fprintf(stderr, "xdpsink: no bench_sink in %s\n", obj_path);
		return 1;
	}
	bpf_object__for_each_program(prog, obj)
		bpf_program__set_autoload(prog, !strcmp(bpf_program__name(prog), "bench_sink"));
	err = bpf_object__load(obj);
	if (err) {
		fprintf(stderr, "xdpsink: load: %s\n", strerror(-err));
		return 1;
	}
	prog_fd = bpf_program__fd(bpf_object__find_program_by_name(obj, "bench_sink"));
	map_fd = bpf_object__find_map_fd_by_name(obj, "bench_cnt");
	err = bpf_xdp_attach(ifindex, prog_fd, mode | XDP_FLAGS_UPDATE_IF_NOEXIST, NULL);
	if (err) {
		fprintf(stderr, "xdpsink: attach to %s (%s): %s\n", ifname, mode_name,
			strerror(-err));
		return 1;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	printf("attached %s %s\n", ifname, mode_name);
	fflush(stdout);
	deadline = now_ns() + (unsigned long long)max_s * 1000000000ULL;
	while (!stop && now_ns() < deadline) {
		sample(map_fd, ncpu);
		nap(interval_ms);
	}
	sample(map_fd, ncpu);
	detach_opts.old_prog_fd = prog_fd;
	err = bpf_xdp_detach(ifindex, mode | XDP_FLAGS_REPLACE, &detach_opts);
	if (err)
		fprintf(stderr, "xdpsink: detach from %s: %s\n", ifname, strerror(-err));
	printf("detached\n");
	bpf_object__close(obj);
	return err ? 1 : 0;
}
