// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * pkt_harness: drives agent/xdp/src/pkt.c for tests/native/test_pkt*.py,
 * and probe.c (with the hash map of fwd.c) for tests/native/test_probe.py.
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
#include "probe.h"

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

/* consts: the abi.h, probe.h and ringcore.h values the tests need, so that no Python literal repeats one. */
static void cmd_consts(void)
{
	printf("{\"TRUNCATED\":%d,\"NOT_IPV4\":%d,\"BAD_IHL\":%d,\"BAD_IP_LEN\":%d,"
	       "\"NOT_VXLAN\":%d,\"BAD_VNI\":%d,\"NO_INNER_ETH\":%d,\"OVERSIZE\":%d,"
	       "\"BAD_CHAIN\":%d,\"FRAGMENT\":%d,\"MAX_FRAGS\":%d,\"ENCAP_LEN\":%d,",
	       RL_DROP_TRUNCATED, RL_DROP_NOT_IPV4, RL_DROP_BAD_IHL, RL_DROP_BAD_IP_LEN,
	       RL_DROP_NOT_VXLAN, RL_DROP_BAD_VNI, RL_DROP_NO_INNER_ETH, RL_DROP_OVERSIZE,
	       RL_DROP_BAD_CHAIN, RL_DROP_FRAGMENT, RL_MAX_FRAGS, RL_ENCAP_LEN);
	printf("\"PROBE_ETHERTYPE\":%d,\"PROBE_MAGIC\":%d,\"PROBE_VERSION\":%d,"
	       "\"PROBE_REQUEST\":%d,\"PROBE_REPLY\":%d,\"PROBE_MSG_LEN\":%d,"
	       "\"PROBE_FRAME_LEN\":%d,\"PROBE_WINDOW\":%d,\"PROBE_IN_TIME\":%d,"
	       "\"PROBE_LATE\":%d,\"PROBE_DEADLINE_INTERVALS\":%d,"
	       "\"PROBE_DEADLINE_MIN_MS\":%d,\"PROBE_INTERVAL_MIN_MS\":%d}\n",
	       RL_PROBE_ETHERTYPE, RL_PROBE_MAGIC, RL_PROBE_VERSION, RL_PROBE_REQUEST,
	       RL_PROBE_REPLY, RL_PROBE_MSG_LEN, RL_PROBE_FRAME_LEN, RL_PROBE_WINDOW,
	       RL_PROBE_IN_TIME, RL_PROBE_LATE, RL_PROBE_DEADLINE_INTERVALS,
	       RL_PROBE_DEADLINE_MIN_MS, RL_PROBE_INTERVAL_MIN_MS);
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

/* The 11 arguments of struct rl_encap_params, in its order (see cmd_encap()). */
static void encap_params_arg(char **save, struct rl_encap_params *p)
{
	memset(p, 0, sizeof(*p));
	hexfixed(save, p->outer_src_mac, 6);
	hexfixed(save, p->outer_dst_mac, 6);
	hexfixed(save, p->inner_src_mac, 6);
	hexfixed(save, p->inner_dst_mac, 6);
	hexfixed(save, (__u8 *)&p->outer_saddr, 4);
	hexfixed(save, (__u8 *)&p->outer_daddr, 4);
	p->vni = (__u32)num(save);
	p->dport = (__u16)num(save);
	p->sport_min = (__u16)num(save);
	p->sport_max = (__u16)num(save);
	p->ttl = (__u8)num(save);
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

	encap_params_arg(save, &p);
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

/* Print @m's fields as JSON members (after a leading comma). */
static void put_msg(const struct rl_probe_msg *m)
{
	printf(",\"type\":%u,\"seq\":%u,\"nonce\":%u,\"tx_ns\":%llu,\"sender\":", m->type, m->seq,
	       m->nonce, (unsigned long long)m->tx_ns);
	put_hex((const __u8 *)&m->sender_ip, 4);
	printf(",\"target\":");
	put_hex((const __u8 *)&m->target_ip, 4);
}

/*
 * probe_build <11 encap params> <hash> <type> <seq> <nonce> <sender> <target>
 *             <tx_ns>: rl_probe_build() into exactly RL_PROBE_FRAME_LEN bytes.
 */
static void cmd_probe_build(char **save)
{
	struct rl_encap_params p;
	struct rl_probe_msg m;
	__u32 hash;
	__u8 *buf;

	encap_params_arg(save, &p);
	hash = (__u32)num(save);
	memset(&m, 0, sizeof(m));
	m.type = (__u8)num(save);
	m.seq = (__u32)num(save);
	m.nonce = (__u32)num(save);
	hexfixed(save, (__u8 *)&m.sender_ip, 4);
	hexfixed(save, (__u8 *)&m.target_ip, 4);
	m.tx_ns = strtoull(tok(save), NULL, 0);
	buf = malloc(RL_PROBE_FRAME_LEN);
	if (!buf)
		die("out of memory");
	rl_probe_build(buf, &p, hash, &m);
	printf("{\"frame\":");
	put_hex(buf, RL_PROBE_FRAME_LEN);
	printf("}\n");
	free(buf);
}

/* probe_parse <vni> <port> <frame>: rl_parse_vxlan(), rl_probe_match(), rl_probe_parse(). */
static void cmd_probe_parse(char **save)
{
	__u32 vni = (__u32)num(save);
	__u16 port = (__u16)num(save);
	struct rl_vxlan_info vi;
	struct rl_probe_msg m;
	__u32 len;
	__u8 *f = hexarg(save, &len);
	int vx = rl_parse_vxlan(f, len, vni, port, &vi), ret = 0;
	bool match = false;

	if (vx == 0) {
		match = rl_probe_match(f, &vi);
		ret = rl_probe_parse(f, &vi, &m);
	}
	printf("{\"vxlan\":%d,\"match\":%s,\"ret\":%d", vx, match ? "true" : "false", ret);
	if (vx == 0 && ret == 0)
		put_msg(&m);
	printf("}\n");
	free(f);
}

/*
 * probe_answer <vni> <port> <src_mac> <dst_mac|-> <sport_min> <sport_max>
 *              <frame>: rl_parse_vxlan(), rl_probe_parse() (must accept a
 *              request), then rl_probe_answer() in place.
 */
static void cmd_probe_answer(char **save)
{
	__u32 vni = (__u32)num(save), len, dlen;
	__u16 port = (__u16)num(save), smin, smax;
	struct rl_vxlan_info vi;
	struct rl_probe_msg m;
	__u8 src[6], *dst, *f;
	int ret;

	hexfixed(save, src, 6);
	dst = hexarg(save, &dlen);
	if (dlen != 0 && dlen != 6)
		die("probe_answer: dst MAC must be 6 bytes or -");
	smin = (__u16)num(save);
	smax = (__u16)num(save);
	f = hexarg(save, &len);
	if (rl_parse_vxlan(f, len, vni, port, &vi) || rl_probe_parse(f, &vi, &m) ||
	    m.type != RL_PROBE_REQUEST)
		die("probe_answer: not a probe request");
	ret = rl_probe_answer(f, &vi, src, dlen ? dst : NULL, smin, smax);
	printf("{\"ret\":%d", ret);
	if (ret > 0) {
		if ((__u32)ret > len)
			die("probe_answer: reply longer than the request");
		printf(",\"frame\":");
		put_hex(f, (__u32)ret);
	}
	printf("}\n");
	free(dst);
	free(f);
}

/* The probe table the pt_* commands drive; pt_init starts it afresh. */
static struct rl_probe_table table;
static bool table_up;

/* IPv4 argument as 8 hex digits (network order). */
static __be32 ip_arg(char **save)
{
	__be32 ip;

	hexfixed(save, (__u8 *)&ip, 4);
	return ip;
}

/* pt_init <max_peers> <interval_ms> <nonce>: a new, empty table. */
static void cmd_pt_init(char **save)
{
	__u32 max = (__u32)num(save), interval = (__u32)num(save), nonce = (__u32)num(save);
	int ret;

	if (table_up)
		rl_probe_table_fini(&table);
	ret = rl_probe_table_init(&table, max, interval, nonce);
	table_up = ret == 0;
	printf("{\"ret\":%d,\"deadline\":%u}\n", ret, table_up ? table.deadline : 0);
}

/* Die unless pt_init ran. */
static void need_table(void)
{
	if (!table_up)
		die("pt_*: no table (pt_init first)");
}

/* pt_ref <11 encap params> <first_seq>: rl_probe_peer_ref(). */
static void cmd_pt_ref(char **save)
{
	struct rl_encap_params p;
	__u32 first;
	int ret;

	need_table();
	encap_params_arg(save, &p);
	first = (__u32)num(save);
	ret = rl_probe_peer_ref(&table, &p, first);
	printf("{\"ret\":%d,\"peers\":%u}\n", ret, table.n);
}

/* pt_unref <ip>: rl_probe_peer_unref(). */
static void cmd_pt_unref(char **save)
{
	need_table();
	rl_probe_peer_unref(&table, ip_arg(save));
	printf("{\"peers\":%u}\n", table.n);
}

/* pt_send <ip> <now_ns>: rl_probe_request() then rl_probe_sent(). */
static void cmd_pt_send(char **save)
{
	struct rl_probe_peer *p;
	struct rl_probe_msg m;
	__be32 ip;
	__u64 now;

	need_table();
	ip = ip_arg(save);
	now = strtoull(tok(save), NULL, 0);
	p = rl_probe_peer_find(&table, ip);
	if (!p)
		die("pt_send: no such peer");
	rl_probe_request(&table, p, now, &m);
	rl_probe_sent(&table, p);
	printf("{\"hash\":%u", p->hash);
	put_msg(&m);
	printf("}\n");
}

/* pt_reply <target> <sender> <seq> <nonce> <tx_ns> <now_ns>: rl_probe_reply_in(). */
static void cmd_pt_reply(char **save)
{
	struct rl_probe_msg m;
	__u64 now;

	need_table();
	memset(&m, 0, sizeof(m));
	m.type = RL_PROBE_REPLY;
	m.target_ip = ip_arg(save);
	m.sender_ip = ip_arg(save);
	m.seq = (__u32)num(save);
	m.nonce = (__u32)num(save);
	m.tx_ns = strtoull(tok(save), NULL, 0);
	now = strtoull(tok(save), NULL, 0);
	printf("{\"ret\":%d}\n", rl_probe_reply_in(&table, &m, now));
}

/* pt_stat <ip>: the peer's struct rl_link_stat, or found false. */
static void cmd_pt_stat(char **save)
{
	const struct rl_probe_peer *p;
	const struct rl_link_stat *st;

	need_table();
	p = rl_probe_peer_find(&table, ip_arg(save));
	if (!p) {
		printf("{\"found\":false}\n");
		return;
	}
	st = &p->st;
	printf("{\"found\":true,\"node_ip\":");
	put_hex((const __u8 *)&st->node_ip, 4);
	printf(",\"window\":%u,\"sent\":%llu,\"received\":%llu,\"lost\":%llu,\"late\":%llu,"
	       "\"rtt_last_ns\":%llu,\"rtt_min_ns\":%llu,\"rtt_max_ns\":%llu,\"rtt_avg_ns\":%llu,"
	       "\"jitter_ns\":%llu,\"last_reply_ns\":%llu,\"lost_window\":%u,"
	       "\"loss_window_ppm\":%u}\n",
	       st->window, (unsigned long long)st->sent, (unsigned long long)st->received,
	       (unsigned long long)st->lost, (unsigned long long)st->late,
	       (unsigned long long)st->rtt_last_ns, (unsigned long long)st->rtt_min_ns,
	       (unsigned long long)st->rtt_max_ns, (unsigned long long)st->rtt_avg_ns,
	       (unsigned long long)st->jitter_ns, (unsigned long long)st->last_reply_ns,
	       st->lost_window, st->loss_window_ppm);
}

/* pt_list: the peers' IPs in table order. */
static void cmd_pt_list(void)
{
	__u32 i;

	need_table();
	printf("{\"ips\":[");
	for (i = 0; i < table.n; i++) {
		if (i)
			putchar(',');
		put_hex((const __u8 *)&table.peers[i]->st.node_ip, 4);
		if (table.peers[i]->pos != i)
			die("pt_list: peer position out of date");
	}
	printf("]}\n");
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
		else if (strcmp(cmd, "probe_build") == 0)
			cmd_probe_build(&save);
		else if (strcmp(cmd, "probe_parse") == 0)
			cmd_probe_parse(&save);
		else if (strcmp(cmd, "probe_answer") == 0)
			cmd_probe_answer(&save);
		else if (strcmp(cmd, "pt_init") == 0)
			cmd_pt_init(&save);
		else if (strcmp(cmd, "pt_ref") == 0)
			cmd_pt_ref(&save);
		else if (strcmp(cmd, "pt_unref") == 0)
			cmd_pt_unref(&save);
		else if (strcmp(cmd, "pt_send") == 0)
			cmd_pt_send(&save);
		else if (strcmp(cmd, "pt_reply") == 0)
			cmd_pt_reply(&save);
		else if (strcmp(cmd, "pt_stat") == 0)
			cmd_pt_stat(&save);
		else if (strcmp(cmd, "pt_list") == 0)
			cmd_pt_list();
		else
			die("unknown command");
		fflush(stdout);
	}
	free(line);
	if (table_up)
		rl_probe_table_fini(&table);
	return 0;
}
