// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * fuzz_pkt: libFuzzer target for agent/xdp/src/pkt.c and the frame half of
 * probe.c (built and run by test_pkt_fuzz.py).
 *
 * Input: RL_FUZZ_CTRL control bytes, then a frame. The control bytes pick
 * how the frame is cut into a descriptor chain, the TSO MTU and the encap
 * parameters. Every buffer given to pkt.c is an exactly-sized heap copy, so
 * ASan sees any access past a length; beyond memory safety, oracles check
 * the results with a checksum written independently of pkt.c and abort()
 * on a wrong one, which libFuzzer reports as a crash.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pkt.h"
#include "probe.h"

#define RL_FUZZ_CTRL	6
#define FUZZ_VNI	0x123456
#define FUZZ_PORT	RL_VXLAN_PORT_DEFAULT
/* rl_tso_next() calls per input: more than the longest input's payload bytes. */
#define FUZZ_MAX_SEGS	(1 << 17)

/* Stop with a message that names the broken property; libFuzzer saves the input. */
static void oracle(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_pkt oracle failed: %s\n", what);
		abort();
	}
}

/* Exactly-sized heap copy, so that ASan flags reads past @len. */
static uint8_t *dup_exact(const uint8_t *p, size_t len)
{
	uint8_t *b = malloc(len);

	if (!b && len)
		abort();
	if (len)
		memcpy(b, p, len);
	return b;
}

/* Big-endian 16-bit load for the oracles (kept apart from pkt.c's helpers on purpose). */
static uint32_t be16(const uint8_t *p)
{
	return (uint32_t)p[0] << 8 | p[1];
}

/* RFC 1071 sum byte pair by byte pair: slow and obviously right, unlike pkt.c's fast one. */
static uint32_t sum16(const uint8_t *p, size_t len, uint32_t sum)
{
	size_t i;

	for (i = 0; i + 1 < len; i += 2)
		sum += be16(p + i);
	if (len & 1)
		sum += (uint32_t)p[len - 1] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return sum;
}

/* Whether a TCP/UDP segment's checksum verifies with its pseudo header. */
static int l4_csum_ok(const uint8_t *ip, const uint8_t *l4, uint32_t l4_len)
{
	uint32_t sum = sum16(ip + 12, 8, 0) + ip[9] + l4_len;

	return sum16(l4, l4_len, sum) == 0xffff;
}

/* Small deterministic generator for the chain layout, seeded from the control bytes. */
static uint32_t next_rand(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

/* rl_l4_csum_fill() and rl_ipv4_dec_ttl() on a copy, with checksum oracles. */
static void fuzz_csum(const uint8_t *frame, size_t len)
{
	struct rl_pkt_info info, info2;
	uint8_t *f;
	uint32_t ihl_len, l4_len;
	int ok_before;

	if (rl_parse_inner(frame, (uint32_t)len, true, &info2) == 0)
		oracle(info2.l4_off <= len && info2.l4_off - info2.l3_off <= info2.ip_tot_len,
		       "parse_inner(allow_short) bounds");
	if (rl_parse_inner(frame, (uint32_t)len, false, &info))
		return;
	oracle(info.l3_off == RL_ETH_HLEN && info.ip_tot_len + RL_ETH_HLEN <= len &&
	       info.l4_off <= RL_ETH_HLEN + info.ip_tot_len, "parse_inner bounds");
	oracle(rl_parse_inner(frame, (uint32_t)len, true, &info2) == 0 &&
	       memcmp(&info, &info2, sizeof(info)) == 0, "allow_short changes a full parse");

	f = dup_exact(frame, len);
	if (rl_l4_csum_fill(f, (uint32_t)len, &info) == 0 && !info.is_fragment &&
	    (info.ip_proto == 6 || info.ip_proto == 17)) {
		const uint8_t *l4 = f + info.l4_off;
		size_t field = info.l4_off + (info.ip_proto == 6 ? 16 : 6);

		ihl_len = info.l4_off - info.l3_off;
		l4_len = info.ip_tot_len - ihl_len;
		if (info.ip_proto == 17)
			l4_len = be16(l4 + 4);
		oracle(memcmp(f, frame, field) == 0 &&
		       memcmp(f + field + 2, frame + field + 2, len - field - 2) == 0,
		       "csum_fill wrote outside its field");
		if (info.ip_proto == 6 || be16(l4 + 6) != 0)
			oracle(l4_csum_ok(f + info.l3_off, l4, l4_len), "L4 checksum wrong");
	}
	free(f);

	if (info.ttl > 1) {
		ihl_len = info.l4_off - info.l3_off;
		f = dup_exact(frame, len);
		ok_before = sum16(f + info.l3_off, ihl_len, 0) == 0xffff;
		rl_ipv4_dec_ttl(f, &info);
		oracle(f[info.l3_off + 8] == info.ttl - 1, "TTL not decremented");
		if (ok_before)
			oracle(sum16(f + info.l3_off, ihl_len, 0) == 0xffff, "TTL checksum update");
		free(f);
	}
}

/* A probe the VXLAN parser accepted: rl_probe_parse(), and a request
 * through rl_probe_answer(), whose reply must parse back as the same probe
 * with the type changed, a valid outer checksum and swapped addresses. */
static void fuzz_probe(const uint8_t *frame, size_t len, const struct rl_vxlan_info *vi)
{
	static const uint8_t mac[6] = { 2, 0, 0, 0, 0, 9 };
	struct rl_probe_msg m, back;
	struct rl_vxlan_info vi2;
	uint8_t *f;
	int ret;

	if (rl_probe_parse(frame, vi, &m) || m.type != RL_PROBE_REQUEST)
		return;
	f = dup_exact(frame, len);
	ret = rl_probe_answer(f, vi, mac, NULL, 49152, 65535);
	if (ret < 0) {
		oracle(ret == -EBADMSG && vi->inner_off != RL_ENCAP_LEN, "answer refused a request");
	} else {
		oracle(ret == RL_PROBE_FRAME_LEN && (size_t)ret <= len, "answer length");
		oracle(sum16(f + RL_ETH_HLEN, RL_IPV4_HLEN, 0) == 0xffff, "answer IPv4 checksum");
		oracle(memcmp(f + 26, frame + 30, 4) == 0 && memcmp(f + 30, frame + 26, 4) == 0,
		       "answer addresses");
		oracle(rl_parse_vxlan(f, (uint32_t)ret, FUZZ_VNI, FUZZ_PORT, &vi2) == 0 &&
		       rl_probe_parse(f, &vi2, &back) == 0, "answer does not parse back");
		m.type = RL_PROBE_REPLY;
		oracle(memcmp(&m, &back, sizeof(m)) == 0, "answer changed the payload");
	}
	free(f);
}

/* rl_parse_vxlan(), then the inner frame through rl_parse_inner() as decap would. */
static void fuzz_vxlan(const uint8_t *frame, size_t len)
{
	struct rl_vxlan_info vi;
	struct rl_pkt_info info;
	uint8_t *inner;

	if (rl_parse_vxlan(frame, (uint32_t)len, FUZZ_VNI, FUZZ_PORT, &vi))
		return;
	oracle(vi.vni == FUZZ_VNI && vi.inner_off + RL_ETH_HLEN + RL_IPV4_HLEN <= len,
	       "parse_vxlan bounds");
	inner = dup_exact(frame + vi.inner_off, len - vi.inner_off);
	(void)rl_parse_inner(inner, (uint32_t)(len - vi.inner_off), false, &info);
	free(inner);
	if (rl_probe_match(frame, &vi))
		fuzz_probe(frame, len, &vi);
}

/* rl_encap() in front of the frame; the result must parse back as our VXLAN. */
static void fuzz_encap(const uint8_t *ctrl, const uint8_t *frame, size_t len)
{
	struct rl_encap_params p;
	struct rl_vxlan_info vi;
	struct rl_pkt_info info;
	uint32_t hash = 0;
	uint8_t *buf;
	int ret;

	if (len > 65535 - RL_IPV4_HLEN - RL_UDP_HLEN - RL_VXLAN_HDR_LEN)
		return;
	memset(&p, 0, sizeof(p));
	memset(p.outer_dst_mac, ctrl[0], 6);
	p.outer_saddr = 0x0100000a;
	p.outer_daddr = 0x0200000a;
	p.vni = FUZZ_VNI;
	p.dport = FUZZ_PORT;
	p.sport_min = (uint16_t)(ctrl[1] << 8);
	p.sport_max = (uint16_t)(ctrl[2] << 8 | 0xff);
	p.ttl = ctrl[3];
	if (rl_parse_inner(frame, (uint32_t)len, false, &info) == 0)
		hash = rl_flow_hash(&info);

	buf = malloc(RL_ENCAP_LEN + len);
	if (!buf)
		abort();
	memcpy(buf + RL_ENCAP_LEN, frame, len);
	rl_encap(buf, (uint32_t)len, &p, hash);
	oracle(sum16(buf + RL_ETH_HLEN, RL_IPV4_HLEN, 0) == 0xffff, "outer IPv4 checksum");
	if (p.sport_min <= p.sport_max)
		oracle(be16(buf + 34) >= p.sport_min && be16(buf + 34) <= p.sport_max,
		       "sport out of range");
	ret = rl_parse_vxlan(buf, (uint32_t)(RL_ENCAP_LEN + len), FUZZ_VNI, FUZZ_PORT, &vi);
	if (len >= RL_ETH_HLEN + RL_IPV4_HLEN)
		oracle(ret == 0 && vi.inner_off == RL_ENCAP_LEN, "encap does not parse back");
	else
		oracle(ret != 0, "encap of a runt parses");
	free(buf);
}

/* rl_tso_init()/rl_tso_next() over the frame cut into a chain; checks every segment. */
static void fuzz_tso(const uint8_t *ctrl, const uint8_t *frame, size_t len)
{
	uint32_t seed = (uint32_t)ctrl[0] << 24 | ctrl[1] << 16 | ctrl[2] << 8 | ctrl[3] | 1;
	uint32_t mtu = 41 + ((uint32_t)ctrl[4] << 8 | ctrl[5]) % 9200;
	uint32_t room = RL_ETH_HLEN + mtu, off = 0, i, nseg, done = 0;
	struct rl_chain chain;
	struct rl_tso_state st;
	uint8_t *dst;
	int ret;

	memset(&chain, 0, sizeof(chain));
	chain.n = 1 + next_rand(&seed) % RL_MAX_FRAGS;
	for (i = 0; i < chain.n; i++) {
		uint32_t left = (uint32_t)len - off;
		uint32_t r = next_rand(&seed);
		uint32_t n = r % 4 == 0 ? r % 8 : (r >> 3) % 4097;

		if (i == chain.n - 1 || n > left)
			n = left;
		chain.buf[i] = dup_exact(frame + off, n);
		chain.len[i] = n;
		off += n;
	}
	if (ctrl[0] & 1)	/* sometimes a destination one byte short */
		room--;

	ret = rl_tso_init(&st, &chain, mtu);
	if (ret == 0) {
		const uint8_t *payload = frame + st.hdr_len;

		oracle(off == len && st.hdr_len <= chain.len[0], "tso_init accepted a bad chain");
		dst = malloc(room);
		if (!dst)
			abort();
		for (nseg = 0; nseg < FUZZ_MAX_SEGS; nseg++) {
			uint32_t ihl_len, plen;
			const uint8_t *ip = dst + RL_ETH_HLEN;

			ret = rl_tso_next(&st, dst, room);
			if (ret <= 0)
				break;
			oracle((uint32_t)ret <= room && (uint32_t)ret >= st.hdr_len,
			       "segment size");
			ihl_len = (uint32_t)(ip[0] & 0xf) * 4;
			oracle(be16(ip + 2) == (uint32_t)ret - RL_ETH_HLEN && be16(ip + 2) <= mtu,
			       "segment IPv4 length");
			oracle(sum16(ip, ihl_len, 0) == 0xffff, "segment IPv4 checksum");
			oracle(l4_csum_ok(ip, ip + ihl_len, (uint32_t)ret - RL_ETH_HLEN - ihl_len),
			       "segment TCP checksum");
			plen = (uint32_t)ret - st.hdr_len;
			oracle(done + plen <= st.payload_total &&
			       memcmp(dst + st.hdr_len, payload + done, plen) == 0,
			       "segment payload");
			done += plen;
		}
		oracle(nseg < FUZZ_MAX_SEGS, "tso_next does not end");
		if (ret < 0)
			oracle(ret == -RL_DROP_OVERSIZE && room < RL_ETH_HLEN + mtu,
			       "tso_next error");
		else
			oracle(ret == 0 && done == st.payload_total, "tso lost payload");
		free(dst);
	}
	for (i = 0; i < chain.n; i++)
		free((void *)chain.buf[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *ctrl = data;
	uint8_t *frame;
	size_t len;

	if (size < RL_FUZZ_CTRL || size - RL_FUZZ_CTRL > 65535 + RL_ETH_HLEN + 64)
		return 0;
	len = size - RL_FUZZ_CTRL;
	frame = dup_exact(data + RL_FUZZ_CTRL, len);
	fuzz_csum(frame, len);
	fuzz_vxlan(frame, len);
	fuzz_encap(ctrl, frame, len);
	fuzz_tso(ctrl, frame, len);
	free(frame);
	return 0;
}
