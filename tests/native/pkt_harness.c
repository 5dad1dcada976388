// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * pkt_harness: drives agent/xdp/src/pkt.c for tests/native/test_pkt*.py.
 *
 * One command per line on stdin, one JSON object per line on stdout (see
 * pkt_harness.py for the protocol). Byte strings travel as lowercase hex,
 * "-" for empty. Every buffer handed to pkt.c is a heap copy of exactly the
 * bytes given, so AddressSanitizer reports any access past a length.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include "pkt.h"

/* Upper bound on segments per tso command, so a bug cannot loop forever. */
#define MAX_SEGS 70000

/* Abort with a message on a malformed command: it is a bug in the Python side. */
static void die(const char *what)
{
	fprintf(stderr, "pkt_harness: %s\n", what);
	exit(2);
}

/* Next space-separated token of the current line, or die. */
static char *tok(char **save)
{
	char *t = strtok_r(NULL, " \n", save);

	if (!t)
		die("missing argument");
	return t;
}

/* Integer argument (decimal or 0x hex). */
static unsigned long num(char **save)
{
	char *t = tok(save), *end;
	unsigned long v = strtoul(t, &end, 0);

	if (*end)
		die("bad number");
	return v;
}

/* Value of one hex digit, or die. */
static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	die("bad hex digit");
	return 0;
}

/* Hex argument as an exactly-sized heap buffer ("-" is empty). */
static __u8 *hexarg(char **save, __u32 *len)
{
	char *t = tok(save);
	size_t n, i;
	__u8 *b;

	n = strcmp(t, "-") == 0 ? 0 : strlen(t);
	if (n % 2)
		die("odd hex length");
	b = malloc(n / 2);
	if (!b && n)
		die("out of memory");
	for (i = 0; i < n / 2; i++)
		b[i] = (__u8)(hexval(t[2 * i]) << 4 | hexval(t[2 * i + 1]));
	*len = (__u32)(n / 2);
	return b;
}

/* Fixed-size hex argument (a MAC address), or die. */
static void hexfixed(char **save, __u8 *dst, __u32 want)
{
	__u32 len;
	__u8 *b = hexarg(save, &len);

	if (len != want)
		die("wrong fixed-size hex length");
	memcpy(dst, b, want);
	free(b);
}

/* Print @len bytes as a JSON string of hex digits. */
static void put_hex(const __u8 *p, __u32 len)
{
	static const char digits[] = "0123456789abcdef";
	__u32 i;

	putchar('"');
	for (i = 0; i < len; i++) {
		putchar(digits[p[i] >> 4]);
		putchar(digits[p[i] & 0xf]);
	}
	putchar('"');
}

/* consts: the abi.h values the tests need, so that no Python literal repeats one. */
static void cmd_consts(void)
{
	printf("{\"TRUNCATED\":%d,\"NOT_IPV4\":%d,\"BAD_IHL\":%d,\"BAD_IP_LEN\":%d,"
	       "\"NOT_VXLAN\":%d,\"BAD_VNI\":%d,\"NO_INNER_ETH\":%d,\"OVERSIZE\":%d,"
	       "\"BAD_CHAIN\":%d,\"FRAGMENT\":%d,\"MAX_FRAGS\":%d,\"ENCAP_LEN\":%d}\n",
	       RL_DROP_TRUNCATED, RL_DROP_NOT_IPV4, RL_DROP_BAD_IHL, RL_DROP_BAD_IP_LEN,
	       RL_DROP_NOT_VXLAN, RL_DROP_BAD_VNI, RL_DROP_NO_INNER_ETH, RL_DROP_OVERSIZE,
	       RL_DROP_BAD_CHAIN, RL_DROP_FRAGMENT, RL_MAX_FRAGS, RL_ENCAP_LEN);
}

/* inner <allow_short> <frame>: rl_parse_inner() and, on success, rl_flow_hash(). */
static void cmd_inner(char **save)
{
	bool allow_short = num(save) != 0;
	struct rl_pkt_info info;
	__u32 len;
	__u8 *f = hexarg(save, &len);
	int ret = rl_parse_inner(f, len, allow_short, &info);

	printf("{\"ret\":%d", ret);
	if (ret == 0) {
		printf(",\"l3_off\":%u,\"l4_off\":%u,\"tot_len\":%u,\"proto\":%u,\"ttl\":%u,"
		       "\"frag\":%u,\"sport\":%u,\"dport\":%u,\"hash\":%u,\"saddr\":",
		       info.l3_off, info.l4_off, info.ip_tot_len, info.ip_proto, info.ttl,
		       info.is_fragment, ntohs(info.sport), ntohs(info.dport),
		       rl_flow_hash(&info));
		put_hex((const __u8 *)&info.saddr, 4);
		printf(",\"daddr\":");
		put_hex((const __u8 *)&info.daddr, 4);
	}
	printf("}\n");
	free(f);
}

/* vxlan <vni> <port> <frame>: rl_parse_vxlan(). */
static void cmd_vxlan(char **save)
{
	__u32 vni = (__u32)num(save);
	__u16 port = (__u16)num(save);
	struct rl_vxlan_info vi;
	__u32 len;
	__u8 *f = hexarg(save, &len);
	int ret = rl_parse_vxlan(f, len, vni, port, &vi);

	printf("{\"ret\":%d", ret);
	if (ret == 0) {
		printf(",\"inner_off\":%u,\"inner_len\":%u,\"vni\":%u,\"outer_saddr\":",
		       vi.inner_off, vi.inner_len, vi.vni);
		put_hex((const __u8 *)&vi.outer_saddr, 4);
	}
	printf("}\n");
	free(f);
}

/* csum <allow_short> <frame>: rl_parse_inner(), then rl_l4_csum_fill() in place. */
static void cmd_csum(char **save)
{
	bool allow_short = num(save) != 0;
	struct rl_pkt_info info;
	__u32 len;
	__u8 *f = hexarg(save, &len);
	int parse = rl_parse_inner(f, len, allow_short, &info);
	int ret = parse ? parse : rl_l4_csum_fill(f, len, &info);

	printf("{\"parse\":%d,\"ret\":%d,\"frame\":", parse, ret);
	put_hex(f, len);
	printf("}\n");
	free(f);
}

/* ttl <frame>: rl_parse_inner(), then rl_ipv4_dec_ttl(). */
static void cmd_ttl(char **save)
{
	struct rl_pkt_info info;
	__u32 len;
	__u8 *f = hexarg(save, &len);
	int ret = rl_parse_inner(f, len, false, &info);

	if (ret == 0)
		rl_ipv4_dec_ttl(f, &info);
	printf("{\"ret\":%d,\"frame\":", ret);
	put_hex(f, len);
	printf("}\n");
	free(f);
}

/* macs <dst> <src> <frame>: rl_set_macs(). */
static void cmd_macs(char **save)
{
	__u8 dst[6], src[6];
	__u32 len;
	__u8 *f;

	hexfixed(save, dst, 6);
	hexfixed(save, src, 6);
	f = hexarg(save, &len);
	if (len < RL_ETH_HLEN)
		die("macs: frame shorter than Ethernet");
	rl_set_macs(f, dst, src);
	printf("{\"frame\":");
	put_hex(f, len);
	printf("}\n");
	free(f);
}

/*
 * encap <outer_src> <outer_dst> <inner_src> <inner_dst> <saddr> <daddr> <vni>
 *       <dport> <sport_min> <sport_max> <ttl> <hash> <inner frame>:
 * rl_encap() into a buffer of exactly RL_ENCAP_LEN + inner length bytes.
 */
static void cmd_encap(char **save)
{
	struct rl_encap_params p;
	__u32 hash, len;
	__u8 *inner, *buf;

	memset(&p, 0, sizeof(p));
	hexfixed(save, p.outer_src_mac, 6);
	hexfixed(save, p.outer_dst_mac, 6);
	hexfixed(save, p.inner_src_mac, 6);
	hexfixed(save, p.inner_dst_mac, 6);
	hexfixed(save, (__u8 *)&p.outer_saddr, 4);
	hexfixed(save, (__u8 *)&p.outer_daddr, 4);
	p.vni = (__u32)num(save);
	p.dport = (__u16)num(save);
	p.sport_min = (__u16)num(save);
	p.sport_max = (__u16)num(save);
	p.ttl = (__u8)num(save);
	hash = (__u32)num(save);
	inner = hexarg(save, &len);
	buf = malloc(RL_ENCAP_LEN + len);
	if (!buf)
		die("out of memory");
	if (len)
		memcpy(buf + RL_ENCAP_LEN, inner, len);
	rl_encap(buf, len, &p, hash);
	printf("{\"frame\":");
	put_hex(buf, RL_ENCAP_LEN + len);
	printf("}\n");
	free(buf);
	free(inner);
}

/*
 * tso <mtu> <room> <len,len,...|-> <frame>: split the frame into separately
 * allocated buffers of the given lengths, rl_tso_init(), then rl_tso_next()
 * into an exactly @room-sized buffer until it returns <= 0.
 */
static void cmd_tso(char **save)
{
	__u32 mtu = (__u32)num(save), room = (__u32)num(save);
	char *lens = tok(save), *lsave = NULL, *t;
	struct rl_chain chain;
	struct rl_tso_state st;
	__u32 len, off = 0, i, nsegs = 0;
	__u8 *f, *dst;
	int ret;

	memset(&chain, 0, sizeof(chain));
	if (strcmp(lens, "-") == 0)	/* an empty chain */
		lens[0] = '\0';
	for (t = strtok_r(lens, ",", &lsave); t; t = strtok_r(NULL, ",", &lsave)) {
		if (chain.n == RL_MAX_FRAGS)
			die("tso: too many buffers");
		chain.len[chain.n++] = (__u32)strtoul(t, NULL, 0);
	}
	f = hexarg(save, &len);
	for (i = 0; i < chain.n; i++) {
		__u8 *b;

		if (chain.len[i] > len - off)
			die("tso: buffer lengths exceed the frame");
		b = malloc(chain.len[i]);
		if (!b && chain.len[i])
			die("out of memory");
		if (chain.len[i])
			memcpy(b, f + off, chain.len[i]);
		chain.buf[i] = b;
		off += chain.len[i];
	}
	if (off != len)
		die("tso: buffer lengths do not add up to the frame");

	ret = rl_tso_init(&st, &chain, mtu);
	printf("{\"init\":%d", ret);
	if (ret == 0) {
		printf(",\"mss\":%u,\"hdr_len\":%u,\"payload_total\":%u,\"segs\":[",
		       st.mss, st.hdr_len, st.payload_total);
		dst = malloc(room);
		if (!dst && room)
			die("out of memory");
		for (;;) {
			ret = rl_tso_next(&st, dst, room);
			if (ret <= 0 || nsegs == MAX_SEGS)
				break;
			if ((__u32)ret > room)
				die("tso: segment longer than room");
			if (nsegs++)
				putchar(',');
			put_hex(dst, (__u32)ret);
		}
		printf("],\"end\":%d", ret);
		free(dst);
	}
	printf("}\n");
	for (i = 0; i < chain.n; i++)
		free((void *)chain.buf[i]);
	free(f);
}

int main(void)
{
	char *line = NULL, *save, *cmd;
	size_t cap = 0;

	while (getline(&line, &cap, stdin) > 0) {
		cmd = strtok_r(line, " \n", &save);
		if (!cmd)
			continue;
		if (strcmp(cmd, "consts") == 0)
			cmd_consts();
		else if (strcmp(cmd, "inner") == 0)
			cmd_inner(&save);
		else if (strcmp(cmd, "vxlan") == 0)
			cmd_vxlan(&save);
		else if (strcmp(cmd, "csum") == 0)
			cmd_csum(&save);
		else if (strcmp(cmd, "ttl") == 0)
			cmd_ttl(&save);
		else if (strcmp(cmd, "macs") == 0)
			cmd_macs(&save);
		else if (strcmp(cmd, "encap") == 0)
			cmd_encap(&save);
		else if (strcmp(cmd, "tso") == 0)
			cmd_tso(&save);
		else
			die("unknown command");
		fflush(stdout);
	}
	free(line);
	return 0;
}
